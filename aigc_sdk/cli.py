"""The ``aigc`` command: a thin layer over the SDK's Python API.

    aigc plugins [--json]
    aigc plugin new NAME [--dir DIR]
    aigc generate NAME [--seed N] [-n N] [--FIELD VALUE ...] [--out PATH] [--stream]
    aigc chat [NAME] [--system TEXT] [--weights FILE.gguf|FOLDER] [--FIELD VALUE ...]
    aigc train NAME [ARGS ...]
    aigc bench [OP ...]
    aigc serve [--host 127.0.0.1] [--port 8000] [--api-key KEY] [--generators a,b] [--max-batch N]
    aigc doctor [--json]

User errors print one line and exit 1; command-line syntax errors print one
line and exit 2, as argparse does. No traceback either way.
"""

from __future__ import annotations

import argparse
import json
import sys
import textwrap
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from .arguments import ArgumentParser, did_you_mean
from .errors import AigcError
from .generation import check_device, json_types, range_text, request_schema
from .media import MEDIA_SUFFIX, OUTPUT_FORMATS, OutputPathError, check_output_path

EXIT_USER_ERROR = 1
DEFAULT_OUT = "out"  # the one folder `aigc generate` creates unasked
_OUT_HELP = (
    "a file, whose suffix picks the format ("
    + "; ".join(f"{m}: {' '.join(OUTPUT_FORMATS[m])}" for m in OUTPUT_FORMATS)
    + ") and whose folder must exist; or a directory ending in / for one file per output, "
    f"created if missing (default: {DEFAULT_OUT}/NAME.png, .txt or .wav; {DEFAULT_OUT}/ is created)"
)


def _fail(message: str) -> int:
    print(f"aigc: error: {message}", file=sys.stderr)
    return EXIT_USER_ERROR


def _os_error_message(exc: OSError) -> str:
    """A file-system error as the path and the problem, without the errno noise."""
    reason = exc.strerror or str(exc)
    if isinstance(exc, FileExistsError | NotADirectoryError):
        reason = f"{reason} (a file is where a directory is needed)"
    return f"{exc.filename}: {reason}" if exc.filename else reason


def _make_sdk(args: argparse.Namespace):
    from .sdk import SDK

    return SDK(disable=args.disable or ())


# -- plugins -----------------------------------------------------------------


def cmd_plugins(args: argparse.Namespace) -> int:
    sdk = _make_sdk(args)
    infos = sdk.plugins()
    if args.json:
        listed = [info.as_dict(tracebacks=args.verbose) for info in infos]
        for plugin in listed:
            for detail in plugin["generator_details"]:
                detail.update(_request_description(sdk, detail["name"]))
        print(json.dumps(listed, indent=2))
        return 0
    if not any(info.status == "loaded" for info in infos) and not sdk.autoload:
        from .plugins import entry_points

        installed = ", ".join(ep.name for ep in entry_points()) or "none"
        print(
            "no plugins loaded: plugin autoload is off (AIGC_DISABLE_PLUGIN_AUTOLOAD); name "
            f"the plugins to load in AIGC_PLUGINS=a,b (installed: {installed})"
        )
    elif not infos:
        print("no plugins installed (entry-point group aigc_sdk.plugins)")
    for info in infos:
        origin = f"{info.distribution} {info.version}" if info.distribution else info.module
        print(f"{info.name}  [{info.status}]  {origin or ''}".rstrip())
        for kind, details in (
            ("generators", info.generator_details),
            ("trainers", info.trainer_details),
        ):
            if details:
                print(f"  {kind}:")
                _print_table([d["name"], d.get("modality", ""), d["description"]] for d in details)
        if info.hooks:
            print(f"  hooks:      {', '.join(info.hooks)}")
        for error in info.errors:
            print(f"  error:      {error}")
            if args.verbose and error in info.tracebacks:
                print(textwrap.indent(info.tracebacks[error].rstrip(), " " * 6))
    return 0


def _request_description(sdk, name: str) -> dict[str, Any]:
    """``{"request": schema}`` of a generator for ``aigc plugins --json``, without loading
    weights: ``null`` when only an instance could tell, ``request_error`` when it fails."""
    try:
        request_type = sdk.generators.get(name).request_type()
        if request_type is None:
            return {"request": None}
        return {"request": request_schema(request_type, sdk.limits_for(name))}
    except AigcError as exc:
        return {"request": None, "request_error": str(exc)}


def _print_table(rows: Iterable[list[str]]) -> None:
    """Rows as aligned columns under a section of ``aigc plugins``; empty columns dropped."""
    rows = list(rows)
    columns = [i for i in range(len(rows[0])) if any(row[i] for row in rows)]
    widths = {i: max(len(row[i]) for row in rows) for i in columns}
    for row in rows:
        cells = [row[i] if i == columns[-1] else row[i].ljust(widths[i]) for i in columns]
        print(("    " + "  ".join(cells)).rstrip())


def cmd_plugin_new(args: argparse.Namespace) -> int:
    from .scaffold import new_plugin

    path = new_plugin(args.name, Path(args.dir))
    print(f"created {path}")
    print(f"install it with: pip install -e {path}   then: aigc plugins")
    return 0


# -- generate ----------------------------------------------------------------


def _parse_bool(text: str) -> bool:
    lowered = text.lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise ValueError(text)


def _split(text: str) -> tuple[str, ...]:
    return tuple(text.split("|"))


# What a field's command-line text becomes, by the JSON type its schema gives it
# (the first that applies: a prompt is a string or a batch, a label a name or an index).
_PARSERS = [("string", str), ("array", _split), ("integer", int), ("number", float)]
_PARSERS += [("boolean", _parse_bool)]
_METAVARS = {"string": "TEXT", "array": "'A|B'", "integer": "INT", "number": "NUMBER"}
_METAVARS["boolean"] = "true|false"


def _kind(prop: dict[str, Any]) -> str:
    kinds = json_types(prop)
    return next((kind for kind, _ in _PARSERS if kind in kinds), "string")


def _field_parser(request_type: type) -> dict[str, Any]:
    """Maps each request field to a function parsing its command-line text."""
    parsers = dict(_PARSERS)
    properties = request_schema(request_type)["properties"]
    return {name: parsers[_kind(prop)] for name, prop in properties.items()}


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _request_kwargs(
    request_type: type,
    pairs: list[str],
    cli_options: Iterable[str] = (),
    generator: str | None = None,
) -> dict[str, Any]:
    """The request fields given as ``--field value`` options, parsed by their types."""
    parsers = _field_parser(request_type)
    kwargs: dict[str, Any] = {}
    i = 0
    while i < len(pairs):
        flag = pairs[i]
        if not flag.startswith("--"):
            raise AigcError(f"unexpected argument {flag!r}")
        key, _, value = flag[2:].partition("=")
        key = key.replace("-", "_")
        if key not in parsers:
            accepted = [_flag(k) for k in sorted(parsers)]
            # The generator's own fields first: a command option only for a typo of one.
            hint = did_you_mean(flag, accepted) or did_you_mean(flag, cli_options)
            what = f"generator {generator}" if generator else request_type.__name__
            raise AigcError(
                f"unknown option {_flag(key)} for {what}{hint}; accepted: {', '.join(accepted)}"
                + (f" (aigc generate {generator} --help)" if generator else "")
            )
        if not value:
            i += 1
            if i >= len(pairs):
                raise AigcError(f"option --{key.replace('_', '-')} needs a value")
            value = pairs[i]
        try:
            parsed = parsers[key](value)
        except ValueError:
            raise AigcError(f"option --{key.replace('_', '-')}: invalid value {value!r}") from None
        if key == "prompt" and "prompt" in kwargs:  # --prompt twice makes a batch
            previous = kwargs["prompt"]
            parsed = (*((previous,) if isinstance(previous, str) else previous), parsed)
        kwargs[key] = parsed
        i += 1
    return kwargs


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
        flags = ["-n", "--n"] if field_name == "n" else [_flag(field_name)]
        fields.add_argument(*flags, metavar=_METAVARS[_kind(prop)], help=_field_help(prop))
    options = parser.add_argument_group("options")
    for action in generate_parser._actions:  # the command's own options, as `aigc generate -h`
        if action.option_strings and action.dest not in schema["properties"]:
            options._add_action(action)
    return parser.format_help()


def _generator_options(args: argparse.Namespace) -> dict[str, Any]:
    """--weights, --device and --dtype as the generator's constructor options (when given)."""
    options: dict[str, Any] = {}
    if args.weights:
        options["weights"] = args.weights
    if args.device:
        check_device(args.device, "--device")
        options["device"] = args.device
    if getattr(args, "dtype", None):
        options["dtype"] = args.dtype
    return options


def cmd_generate(args: argparse.Namespace, extra: list[str], parser: ArgumentParser) -> int:
    if args.name is None:
        if args.help:
            parser.print_help()
            return 0
        parser.error("the following arguments are required: name")
    sdk = _make_sdk(args)
    if args.help:
        print(generator_help(sdk, args.name, parser))
        return 0
    modality = sdk.generators.get(args.name).modality
    request_type = sdk.request_type(args.name)
    kwargs = _request_kwargs(request_type, extra, parser.option_names(), args.name)
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
    options = _generator_options(args)
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
        raise AigcError(f"--out {out}: cannot write {_os_error_message(exc)}") from None
    if result.modality == "text" and not args.out:
        print("\n\n".join(result.texts), flush=True)
    for path in written:
        print(f"wrote {path}", file=sys.stderr)
    return 0


# -- chat --------------------------------------------------------------------

CHAT_EXIT = ("/exit", "/quit")
# Named options of `aigc chat` (typed, so that a value is never taken for the NAME).
CHAT_SAMPLING = [
    ("--max-new-tokens", int, "tokens per answer at most"),
    ("--temperature", float, "0 is greedy"),
    ("--top-k", int, "keep the k most likely tokens (0: off)"),
    ("--top-p", float, "keep the smallest set holding this probability (1: off)"),
    ("--min-p", float, "drop tokens below min_p times the top one's probability (0: off)"),
    ("--repetition-penalty", float, "1 is off"),
    ("--stop", lambda text: tuple(text.split("|")), "stop strings, separated by |"),
]


def cmd_chat(args: argparse.Namespace, extra: list[str]) -> int:
    """An interactive, multi-turn conversation with a chat generator, streamed."""
    sdk = _make_sdk(args)
    name = args.name
    unknown = [flag for flag in extra if flag.startswith("--")]
    if unknown and name not in sdk.generators.names():
        # argparse took the unknown option's value for NAME: name the option instead.
        raise AigcError(f"unknown option {unknown[0]} for aigc chat (see aigc chat --help)")
    request_type = sdk.request_type(name)
    if "messages" not in request_type.field_names():
        raise AigcError(f"{name} is not a chat generator (its requests take no messages)")
    kwargs = _request_kwargs(request_type, extra, generator=name)
    for flag, _, _ in CHAT_SAMPLING:
        key = flag[2:].replace("-", "_")
        if getattr(args, key) is not None:
            kwargs[key] = getattr(args, key)
    if args.seed is not None:
        kwargs["seed"] = args.seed
    # Everything the user can get wrong is checked before the model loads.
    sdk.request(name, messages=[{"role": "user", "content": "check"}], **kwargs)
    options = _generator_options(args)
    sdk.generator(name, **options)
    interactive = sys.stdin.isatty()
    if interactive:
        print(f"Chatting with {name}. Type /exit or press Ctrl-D to quit.", file=sys.stderr)
    messages: list[dict[str, str]] = []
    if args.system:
        messages.append({"role": "system", "content": args.system})
    while True:
        try:
            line = input("> ") if interactive else sys.stdin.readline()
        except EOFError:
            break
        if not interactive and not line:  # end of the piped input
            break
        line = line.strip()
        if line in CHAT_EXIT:
            break
        if not line:
            continue
        messages.append({"role": "user", "content": line})
        reply = []
        for piece in sdk.stream(name, options=options, messages=messages, **kwargs):
            reply.append(piece)
            sys.stdout.write(piece)
            sys.stdout.flush()
        sys.stdout.write("\n")
        sys.stdout.flush()
        messages.append({"role": "assistant", "content": "".join(reply)})
    if interactive:
        print(file=sys.stderr)
    return 0


# -- the rest ----------------------------------------------------------------


def cmd_train(args: argparse.Namespace, extra: list[str]) -> int:
    from .training import cli_main

    return cli_main(_make_sdk(args), args.name, extra)


def cmd_bench(args: argparse.Namespace, extra: list[str]) -> int:
    from .bench import main as bench_main

    return bench_main(extra)


def cmd_serve(args: argparse.Namespace) -> int:
    import os

    # The web stack loads only for this command: the other commands stay fast.
    from .sdk import SDK
    from .serve import SERVER_LIMITS, run

    api_key = args.api_key or os.environ.get("AIGC_API_KEY") or None
    names = None
    if args.generators:
        names = [name.strip() for name in args.generators.split(",") if name.strip()]
    if args.host not in ("127.0.0.1", "localhost", "::1") and api_key is None:
        print(
            f"aigc: warning: serving on {args.host} without an API key: anyone who can reach "
            f"this port can use it (set --api-key or AIGC_API_KEY)",
            file=sys.stderr,
        )
    sdk = SDK(disable=args.disable or (), limits=SERVER_LIMITS)
    run(
        args.host,
        args.port,
        sdk=sdk,
        api_key=api_key,
        generators=names,
        max_batch=args.max_batch,
        max_queue=args.max_queue,
        context=args.context,
        max_body=args.max_body,
        preload=args.preload,
        threads=args.threads,
    )
    return 0


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise ValueError(text)
    return value


def _count(text: str) -> int:
    value = int(text)
    if value < 0:
        raise ValueError(text)
    return value


def cmd_doctor(args: argparse.Namespace) -> int:
    from .doctor import collect, render

    report = collect(_make_sdk(args))
    print(json.dumps(report, indent=2) if args.json else render(report))
    return 0


def build_parser() -> ArgumentParser:
    parser = ArgumentParser(
        prog="aigc", description="Generate images, text and audio.", allow_abbrev=False
    )
    parser.add_argument(
        "--disable",
        action="append",
        metavar="PLUGIN",
        help="do not load this plugin (repeatable; also AIGC_DISABLE_PLUGINS=a,b)",
    )
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser(
        "plugins", help="list installed plugins and what they provide", allow_abbrev=False
    )
    p.add_argument("--json", action="store_true")
    p.add_argument(
        "-v", "--verbose", action="store_true", help="show the full traceback of each failure"
    )

    p = sub.add_parser("plugin", help="plugin authoring tools", allow_abbrev=False)
    plugin_sub = p.add_subparsers(dest="plugin_command", required=True)
    new = plugin_sub.add_parser(
        "new", help="write a ready-to-install plugin package", allow_abbrev=False
    )
    new.add_argument("name", help="plugin name, e.g. 'noise' (package aigc_noise)")
    new.add_argument("--dir", default=".", help="where to create the package directory")

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

    p = sub.add_parser(
        "chat",
        allow_abbrev=False,
        help="chat with a chat model, streaming (ends on Ctrl-D or /exit)",
        description="An interactive conversation; every turn sees the whole conversation. "
        "Sampling options are request fields: --temperature, --top-p, --max-new-tokens, "
        "--stop 'a|b' ...",
    )
    p.add_argument("name", nargs="?", default="chat", help="chat generator (default: chat)")
    p.add_argument("--system", help="system prompt")
    p.add_argument("--weights", help="a .gguf file or Hugging Face model folder")
    p.add_argument("--dtype", choices=("float32", "bfloat16"), help="activation dtype")
    p.add_argument("--device", help="cpu (default) or cuda")
    p.add_argument("--seed", type=int)
    for flag, kind, what in CHAT_SAMPLING:
        p.add_argument(flag, type=kind, help=what)

    p = sub.add_parser(
        "train",
        help="train a model (see: aigc train NAME --help)",
        add_help=False,
        allow_abbrev=False,
    )
    p.add_argument("name")

    sub.add_parser(
        "bench", help="benchmark the fused ops against PyTorch", add_help=False, allow_abbrev=False
    )

    p = sub.add_parser(
        "serve",
        allow_abbrev=False,
        help="serve the generators over HTTP: the OpenAI API and a playground page",
        description="An HTTP server for every installed generator: the OpenAI API "
        "(/v1/chat/completions, /v1/completions, /v1/images/generations, /v1/models), "
        "/v1/generate/NAME, /health, /metrics and a playground page at /. Stops on "
        "SIGTERM or Ctrl-C after the requests in flight finish.",
    )
    p.add_argument(
        "--host", default="127.0.0.1", help="address to listen on (default: this machine only)"
    )
    p.add_argument("--port", type=int, default=8000, help="port (default: 8000)")
    p.add_argument(
        "--api-key",
        help="require 'Authorization: Bearer KEY' on every endpoint but /health "
        "(also AIGC_API_KEY, which keeps the key out of the process list)",
    )
    p.add_argument("--generators", help="serve only these, e.g. chat,gan (default: all)")
    p.add_argument(
        "--max-batch",
        type=_positive_int,
        default=8,
        help="text sequences decoded together by continuous batching (default: 8)",
    )
    p.add_argument(
        "--max-queue",
        type=_count,
        default=32,
        help="requests a generator queues beyond those it runs; more get 429 (default: 32)",
    )
    p.add_argument(
        "--context",
        type=_positive_int,
        help="tokens one text sequence may hold, prompt and answer (default: 2048)",
    )
    p.add_argument(
        "--max-body", type=_positive_int, default=1 << 20, help="largest request body, in bytes"
    )
    p.add_argument("--preload", action="store_true", help="load the generators at start-up")
    p.add_argument(
        "--threads",
        type=_positive_int,
        help="torch's intra-op threads (default: one per core; 1 on a machine shared with "
        "other work, see docs/plugins.md)",
    )

    p = sub.add_parser("doctor", help="versions, build and kernel status", allow_abbrev=False)
    p.add_argument("--json", action="store_true")
    return parser


def _report_plugin_problems_briefly() -> None:
    """One stderr line per plugin problem, instead of a warning with source lines."""
    import logging
    import warnings

    from .plugins import PluginWarning

    class OneLine(logging.Formatter):
        # A failure's record carries its traceback; `aigc plugins --verbose` shows it.
        def formatException(self, exc_info) -> str:  # noqa: N802 - logging's name
            return ""

    warnings.simplefilter("ignore", PluginWarning)
    handler = logging.StreamHandler()
    handler.setFormatter(OneLine("aigc: warning: %(message)s"))
    plugin_log = logging.getLogger("aigc_sdk.plugins")
    plugin_log.addHandler(handler)
    plugin_log.setLevel(logging.WARNING)


def main(argv: list[str] | None = None) -> int:
    _report_plugin_problems_briefly()
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    try:
        if args.command == "generate":
            return cmd_generate(args, extra, parser.subcommand("generate"))
        if args.command == "chat":
            return cmd_chat(args, extra)
        if args.command in ("train", "bench"):
            return {"train": cmd_train, "bench": cmd_bench}[args.command](args, extra)
        if extra:
            parser.subcommand(args.command).error(f"unrecognized arguments: {' '.join(extra)}")
        if args.command == "plugins":
            return cmd_plugins(args)
        if args.command == "plugin":
            return cmd_plugin_new(args)
        if args.command == "serve":
            return cmd_serve(args)
        return cmd_doctor(args)
    except AigcError as exc:
        return _fail(str(exc))
    except OSError as exc:  # a path the user named that cannot be read or written
        return _fail(_os_error_message(exc))
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
