"""``aigc chat [NAME] [--system TEXT] [--weights FILE.gguf|FOLDER] [--FIELD VALUE ...]``:
an interactive, multi-turn conversation with a chat generator, streamed."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from ..errors import AigcError
from .arguments import request_kwargs
from .common import generator_options, make_sdk

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


def add_parser(sub: Any) -> None:
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


def cmd_chat(args: argparse.Namespace, extra: list[str]) -> int:
    """An interactive, multi-turn conversation with a chat generator, streamed."""
    sdk = make_sdk(args)
    name = args.name
    unknown = [flag for flag in extra if flag.startswith("--")]
    if unknown and name not in sdk.generators.names():
        # argparse took the unknown option's value for NAME: name the option instead.
        raise AigcError(f"unknown option {unknown[0]} for aigc chat (see aigc chat --help)")
    request_type = sdk.request_type(name)
    if "messages" not in request_type.field_names():
        raise AigcError(f"{name} is not a chat generator (its requests take no messages)")
    kwargs = request_kwargs(request_type, extra, generator=name)
    for flag, _, _ in CHAT_SAMPLING:
        key = flag[2:].replace("-", "_")
        if getattr(args, key) is not None:
            kwargs[key] = getattr(args, key)
    if args.seed is not None:
        kwargs["seed"] = args.seed
    # Everything the user can get wrong is checked before the model loads.
    sdk.request(name, messages=[{"role": "user", "content": "check"}], **kwargs)
    options = generator_options(args)
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
