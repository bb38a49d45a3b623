"""`aigc bench`: every fused op against PyTorch eager and torch.compile.

    aigc bench                       # every op, quick shapes
    aigc bench sample --full         # one op, every shape
    aigc bench --out bench/ --repeats 9 --no-compile

Prints one table per op (median times, ratios against each peer, and the
kernel's fraction of this machine's peak measured in the same run: read
bandwidth for memory-bound ops, matmul GFLOP/s for compute-bound ones) and
writes ``bench.json`` and ``bench.png`` in ``--out``. The peak a case is
held to is probed in that case's own interleaved rounds (a 1 GiB sum, or a
square matmul): on a shared machine either moves by half within a minute, so
a figure taken once at the start would judge each case against a different
machine. The cases, the runner and the report are in aigc_sdk/bench/.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from ..errors import UserError
from .arguments import ArgumentParser


def add_parser(sub: Any) -> None:
    # Its options are parsed by main(), which `aigc bench --help` shows.
    sub.add_parser(
        "bench", help="benchmark the fused ops against PyTorch", add_help=False, allow_abbrev=False
    )


def cmd_bench(args: argparse.Namespace, extra: list[str]) -> int:
    return main(extra)


def main(argv: list[str] | None = None) -> int:
    from ..bench import FAMILIES

    parser = ArgumentParser(prog="aigc bench", description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "ops", nargs="*", metavar="OP", help=f"ops to run (default: all of {', '.join(FAMILIES)})"
    )
    parser.add_argument("--full", action="store_true", help="every shape (slow)")
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--no-compile", action="store_true", help="skip torch.compile peers")
    parser.add_argument("--out", default="bench", help="directory for bench.json and bench.png")
    args = parser.parse_args(argv)
    unknown = [op for op in args.ops if op not in FAMILIES]
    if unknown:
        raise UserError(f"unknown op {', '.join(unknown)}; known: {', '.join(FAMILIES)}")
    import torch
    from rich.console import Console
    from rich.progress import Progress

    from ..bench import report, timing

    # Piped output keeps a wide table rather than folding every case name.
    console = Console(stderr=False, width=None if sys.stdout.isatty() else 160)
    with Progress(console=Console(stderr=True), transient=True) as progress:
        peaks, rows = timing.run(
            args.ops or list(FAMILIES),
            not args.full,
            args.dtype,
            args.repeats,
            not args.no_compile,
            progress,
        )
    report.render(rows, peaks, console)
    out = Path(args.out)
    written = report.write_json(out / "bench.json", peaks, rows, torch.get_num_threads())
    chart = report.plot(rows, out / "bench.png")
    console.print(f"wrote {written} and {chart}")
    return 0
