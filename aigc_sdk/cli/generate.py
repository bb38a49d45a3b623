"""``aigc generate NAME [--seed N] [-n N] [--FIELD VALUE ...] [--out PATH] [--stream]``:
run a generator; its request fields are options."""

from __future__ import annotations

import argparse
import json
import sys
import textwrap
from pathlib import Path
from typing import Any

from ..errors import AigcError
from ..generation import range_text
from ..media import MEDIA_SUFFIX, OUTPUT_FORMATS, OutputPathError, check_output_path
from .arguments import METAVARS, ArgumentParser, field_flag, field_kind, request_kwargs
from .common import generator_options, make_sdk, os_error_message

DEFAULT_OUT = "out"  # the one folder `aigc generate` creates unasked
_OUT_HELP = (
    "a file, whose suffix picks the format ("
    + "; ".join(f"{m}: {' '.join(OUTPUT_FORMATS[m])}" for m in OUTPUT_FORMATS)
    + ") and whose folder must exist; or a directory ending in / for one file per output, "
    f"created if missing (default: {DEFAULT_OUT}/NAME.png, .txt or .wav; {DEFAULT_OUT}/ is created)"
)


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "generate",
        allow_abbrev=False,
        add_help=False,
        help="run a generator",
        description="Run a generator. Any request field is an option: --prompt, "
        "--max-new-tokens, --temperature, --top-k, --top-p, --min-p, --seconds ... "
        "(--prompt twice makes a batch; --stop 'a|b' gives two stop strings). "
        "aigc generate NAME --help lists NAME's own fields with their types, defaults "
        "and limits.",
    )
    p.add_argument("name", nargs="?")
    p.add_argument(
        "-h", "--help", action="store_true", help="show this help (with NAME: its fields)"
    )
    p.add_argument("--out", metavar="PATH", help=_OUT_HELP)
    p.add_argument("--seed", type=int, help="random seed (default: a fresh one)")
    p.add_argument("-n", type=int, help="number of outputs")
    p.add_argument(
        "--weights",
        help="weights to load instead of the defaults: a checkpoint directory, or for the "
        "chat generator a .gguf file or Hugging Face model folder",
    )
    p.add_argument("--device", help="cpu (default) or cuda")
    p.add_argument("--dtype", help="activation dtype of generators that take one (chat)")
    p.add_argument("--stream", action="store_true", help="print text as it is generated")


def _default_out(name: str, modality: str) -> str:
    return f"{DEFAULT_OUT}/{name}{MEDIA_SUFFIX[modality]}"


def _bounds_text(prop: dict[str, Any]) -> str:
    most = prop.get("maxLength", prop.get("x-maxCharacters"))
    if most is not None:
        return f"at most {most:g} characters"
    return range_text(prop)


def _field_help(prop: dict[str, Any]) -> str:
    """'help text (in [1, 64]; default 1)': a field's line in ``--help``."""
    facts = [text for text in (_bounds_text(prop),) if text]
    default = prop.get("default")
    if default not in (None, "", []):
        shown = "|".join(default) if isinstance(default, list) else json.dumps(default)
        facts.append(f"default {shown}")
    about = prop.get("description", "")
    return f"{about} ({'; '.join(facts)})" if facts and about else about or "; ".join(facts)


def generator_help(sdk, name: str, generate_parser: argparse.ArgumentParser) -> str:
    """``aigc generate NAME --help``: the generator, its request fields, the command's options."""
    entry = sdk.generators.get(name)
    schema = sdk.request_schema(name)
    about = f"{name}: {entry.modality} generator of plugin {entry.plugin}"
    if entry.description:
        about += f": {entry.description}"
    parser = argparse.ArgumentParser(
        prog=f"aigc generate {name}",
        usage=f"aigc generate {name} [--FIELD VALUE ...] [--out PATH] [--stream] ...",
        description=f"{textwrap.fill(about, 79)}\n\n{schema['description']}".rstrip(),
        epilog=textwrap.fill(
            "Fields are options: --field-name VALUE or --field-name=VALUE; a list is 'a|b'. "
            "The limits are this SDK's; a host application sets its own with "
            "SDK(limits=...).",
            79,
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
        add_help=False,
        allow_abbrev=False,
    )
    fields = parser.add_argument_group(f"request fields of {name} ({schema['title']})")
    for field_name, prop in schema["properties"].items():
        flags = ["-n", "--n"] if field_name == "n" else [field_flag(field_name)]
        fields.add_argument(*flags, metavar=METAVARS[field_kind(prop)], help=_field_help(prop))
    options = parser.add_argument_group("options")
    for action in generate_parser._actions:  # the command's own options, as `aigc generate -h`
        if action.option_strings and action.dest not in schema["properties"]:
            options._add_action(action)
    return parser.format_help()


def cmd_generate(args: argparse.Namespace, extra: list[str], parser: ArgumentParser) -> int:
    if args.name is None:
        if args.help:
            parser.print_help()
            return 0
        parser.error("the following arguments are required: name")
    sdk = make_sdk(args)
    if args.help:
        print(generator_help(sdk, args.name, parser))
        return 0
    modality = sdk.generators.get(args.name).modality
    request_type = sdk.request_type(args.name)
    kwargs = request_kwargs(request_type, extra, parser.option_names(), args.name)
    if args.seed is not None:
        kwargs["seed"] = args.seed
    if args.n is not None:
        kwargs["n"] = args.n
    # Everything the user can get wrong is checked before a model (and torch) loads.
    sdk.request(args.name, **kwargs)
    if args.out and not args.stream:
        try:
            check_output_path(args.out, modality)
        except OutputPathError as exc:  # its message starts with the path
            raise AigcError(f"--out {exc}") from None
    options = generator_options(args)
    if args.stream:
        for piece in sdk.stream(args.name, options=options, **kwargs):
            sys.stdout.write(piece)
            sys.stdout.flush()
        sys.stdout.write("\n")
        return 0
    result = sdk.generate(args.name, options=options, **kwargs)
    out = args.out or _default_out(args.name, result.modality)
    if not args.out:
        Path(DEFAULT_OUT).mkdir(exist_ok=True)
    try:
        written = result.save(out)
    except OutputPathError as exc:  # its message starts with the path
        raise AigcError(f"--out {exc}") from None
    except OSError as exc:
        raise AigcError(f"--out {out}: cannot write {os_error_message(exc)}") from None
    if result.modality == "text" and not args.out:
        print("\n\n".join(result.texts), flush=True)
    for path in written:
        print(f"wrote {path}", file=sys.stderr)
    return 0
