"""The ``aigc`` command: a thin layer over the SDK's Python API.

    aigc plugins [--json]
    aigc plugin new NAME [--dir DIR]
    aigc generate NAME [--seed N] [-n N] [--FIELD VALUE ...] [--out PATH] [--stream]
    aigc chat [NAME] [--system TEXT] [--weights FILE.gguf|FOLDER] [--FIELD VALUE ...]
    aigc train NAME [ARGS ...]
    aigc bench [OP ...]
    aigc serve [--host 127.0.0.1] [--port 8000] [--api-key KEY] [--generators a,b] [--max-batch N]
    aigc doctor [--json]

One module per command (plugins.py holds ``plugins`` and ``plugin new``), each
with the ``add_parser`` that declares its options and the ``cmd_*`` function
that runs it; arguments.py and common.py hold what several share. This module
assembles the parser and handles errors. torch, plugins and the web stack load
inside the command functions, so ``aigc --help`` and ``aigc plugins`` stay fast.
The library never imports this package.

User errors print one line and exit 1; command-line syntax errors print one
line and exit 2, as argparse does. No traceback either way.
"""

from __future__ import annotations

import os
import sys

# How long torch's OpenMP threads spin, waiting for the next parallel region,
# before they sleep: libgomp's default (300000 rounds) keeps them on the cores
# for milliseconds after every torch op that ran in parallel, and a kernel of
# this package started in that time shares its cores with them (the kernels
# have threads of their own). A short spin still bridges torch's back-to-back
# ops. libgomp reads it once, when torch loads: set before any command imports
# torch, and a value the user set wins. docs/performance.md says more.
OPENMP_SPIN_COUNT = "10000"
os.environ.setdefault("GOMP_SPINCOUNT", OPENMP_SPIN_COUNT)

from ..errors import AigcError  # noqa: E402
from . import bench, chat, doctor, generate, plugins, serve, train  # noqa: E402
from .arguments import ArgumentParser  # noqa: E402
from .common import EXIT_USER_ERROR, os_error_message  # noqa: E402


def _fail(message: str) -> int:
    print(f"aigc: error: {message}", file=sys.stderr)
    return EXIT_USER_ERROR


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
    plugins.add_parsers(sub)  # plugins, plugin new
    for command in (generate, chat, train, bench, serve, doctor):
        command.add_parser(sub)
    return parser


def _report_plugin_problems_briefly() -> None:
    """One stderr line per plugin problem, instead of a warning with source lines."""
    import logging
    import warnings

    from ..plugins import PluginWarning

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
        # These take the rest of the command line: request fields, a trainer's or
        # the benchmark's own options.
        if args.command == "generate":
            return generate.cmd_generate(args, extra, parser.subcommand("generate"))
        if args.command == "chat":
            return chat.cmd_chat(args, extra)
        if args.command == "train":
            return train.cmd_train(args, extra)
        if args.command == "bench":
            return bench.cmd_bench(args, extra)
        if extra:
            parser.subcommand(args.command).error(f"unrecognized arguments: {' '.join(extra)}")
        if args.command == "plugins":
            return plugins.cmd_plugins(args)
        if args.command == "plugin":
            return plugins.cmd_plugin_new(args)
        if args.command == "serve":
            return serve.cmd_serve(args)
        return doctor.cmd_doctor(args)
    except AigcError as exc:
        return _fail(str(exc))
    except OSError as exc:  # a path the user named that cannot be read or written
        return _fail(os_error_message(exc))
    except KeyboardInterrupt:
        return 130
