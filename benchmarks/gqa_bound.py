"""How close decode_attention's GQA path comes to what this machine allows.

    python benchmarks/gqa_bound.py [--batch 1 8] [--tokens 8192] [--rounds 30]

`aigc bench` holds decode_attention to the read probe (a 1 GiB ``x.sum()``),
a rate no kernel can beat. With 4:1 GQA the kernel also owes 4 multiply-adds
per cached float, and on a CPU whose cores fetch memory only as fast as they
keep requests in flight, time spent on arithmetic is not free. This script
measures, in the same interleaved rounds as the probe, each one from cold
caches (right after a probe call):

* aigc:        ``aigc_sdk.ops.decode_attention``, as `aigc bench` runs it;
* ideal loop:  benchmarks/gqa_bound.cpp, the kernel's memory schedule (32-row
               tiles read in address order, the tile two ahead requested into
               L2 through the arithmetic) with only the multiply-adds no kernel
               can skip, on registers: the rate the kernel could reach;
* stream only: the same loop without the arithmetic.

Each figure is the share of the probe's rate in its own round (median and
range over rounds); "aigc / ideal" is the kernel's rate over the ideal loop's,
round by round. The loop is compiled on first use into build/gqa_bound/.
Needs an AVX-512 CPU.
"""

from __future__ import annotations

import argparse
import hashlib
import statistics
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from aigc_sdk import ops  # noqa: E402
from aigc_sdk.bench import read_probe  # noqa: E402
from aigc_sdk.bench.attention import AttentionCase  # noqa: E402

SOURCE = Path(__file__).with_name("gqa_bound.cpp")
CFLAGS = ["-O3", "-march=native", "-fopenmp"]


def build():
    """The compiled ideal loop (a Python module), built once per source and flags."""
    if torch.backends.cpu.get_cpu_capability() != "AVX512":
        raise SystemExit("gqa_bound: the ideal loop is written for AVX-512; this CPU lacks it")
    from torch.utils import cpp_extension

    digest = hashlib.sha256(SOURCE.read_bytes() + " ".join(CFLAGS).encode()).hexdigest()[:16]
    directory = ROOT / "build" / "gqa_bound" / digest
    directory.mkdir(parents=True, exist_ok=True)
    return cpp_extension.load(
        name="aigc_gqa_bound",
        sources=[str(SOURCE)],
        extra_cflags=CFLAGS,
        extra_ldflags=["-fopenmp"],
        build_directory=str(directory),
    )


def measure(case: AttentionCase, loop, rounds: int, probe) -> dict[str, list[float]]:
    """Per round, each contender's share of the probe's rate in that round."""
    q, k, v, lens = case.inputs()
    groups = q.shape[1] // k.shape[1]
    contenders = {
        "aigc": lambda: ops.decode_attention(q, k, v, lens),
        "ideal loop": lambda: loop.ideal_gqa_loop(k, v, groups),
        "stream only": lambda: loop.ideal_gqa_loop(k, v, 0),
    }
    for fn in contenders.values():
        fn()  # warm-up
    shares: dict[str, list[float]] = {name: [] for name in contenders}
    probe_rates = []
    order = list(contenders.items())
    for r in range(rounds):
        start = time.perf_counter()
        probe.fn()
        probe_rate = probe.work / (time.perf_counter() - start)
        probe_rates.append(probe_rate)
        for position, (name, fn) in enumerate(order[r % len(order) :] + order[: r % len(order)]):
            # From cold caches: at B=1 the cache (64 MB) is twice the L3, and
            # a contender run right after another found part of it there
            # (loops measured that way read up to 1.3x the probe's rate). The
            # first follows the timed probe already.
            if position > 0:
                probe.fn()
            start = time.perf_counter()
            fn()
            shares[name].append(case.kv_bytes / (time.perf_counter() - start) / probe_rate)
    shares["probe GB/s"] = [rate / 1e9 for rate in probe_rates]
    return shares


def render(results: dict[str, dict[str, list[float]]]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(
        title="decode_attention, H=32 D=128 fp32, vs its ideal loop "
        "(share of the read probe in each round: median (range))"
    )
    for column in ("case", "probe GB/s", "aigc", "ideal loop", "stream only", "aigc / ideal"):
        table.add_column(column, justify="left" if column == "case" else "right")

    def span(values: list[float]) -> str:
        return f"{statistics.median(values):.0%} ({min(values):.0%}-{max(values):.0%})"

    for name, shares in results.items():
        ratio = [a / b for a, b in zip(shares["aigc"], shares["ideal loop"], strict=True)]
        table.add_row(
            name,
            f"{statistics.median(shares['probe GB/s']):.1f}",
            span(shares["aigc"]),
            span(shares["ideal loop"]),
            span(shares["stream only"]),
            f"{statistics.median(ratio):.2f}",
        )
    Console(width=None if sys.stdout.isatty() else 120).print(table)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--tokens", type=int, default=8192, help="cached positions T")
    parser.add_argument("--kv-heads", type=int, default=8, help="Hkv (of H = 32 query heads)")
    parser.add_argument("--rounds", type=int, default=30)
    args = parser.parse_args(argv)
    loop = build()
    probe = read_probe()
    results = {}
    for batch in args.batch:
        case = AttentionCase(batch, args.tokens, args.kv_heads)
        results[f"B={batch} T={args.tokens} Hkv={args.kv_heads}"] = measure(
            case, loop, args.rounds, probe
        )
    render(results)


if __name__ == "__main__":
    main()
