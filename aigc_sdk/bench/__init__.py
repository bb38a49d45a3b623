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
machine.

Adding an op family: a module here exposing ``cases(quick, dtype)``; each case
has ``name``, ``inputs()`` and ``contenders(inputs, compile)`` returning
``{"aigc": fn, peer: fn, ...}`` (zero-argument callables), and either
``flops`` (compute-bound) or ``bytes_read`` (memory-bound). Then list the
module in ``FAMILIES``.
"""

from __future__ import annotations

import importlib
import io
import json
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..arguments import ArgumentParser
from ..media import atomic_write

# op name -> module of cases (relative to this package)
FAMILIES = {
    "upsample_conv2d": ".upsample",
    "decode_attention": ".attention",
    "sample": ".sampling",
    "quant_linear": ".quant",
}


def median_seconds(fn, repeats: int) -> float:
    fn()  # warm-up (and compilation)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def _best_seconds(fn, repeats: int) -> float:
    """The fastest of ``repeats`` runs: a peak is what the machine can do, and
    on a shared machine the median drifts with the neighbours' load."""
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def time_interleaved(contenders: dict, repeats: int, round_seconds: float = 2e-3) -> dict:
    """Median seconds per call of each contender.

    Rounds interleave the contenders, so drift in the machine's load hits all
    alike. Within a round a fast contender runs back to back until about
    ``round_seconds`` have passed (as timeit's autorange does): a 50 us op is
    then timed over dozens of calls rather than against the timer's and the
    scheduler's noise, while a 5 ms peer still runs once per round. Each
    round starts one contender further along, so none always runs right after
    the same one, and a fast contender first makes one untimed call: after a
    1 GiB read probe the caches are cold, and a 0.1 ms op whose inputs fit in
    them would otherwise be timed against the previous contender's traffic.
    """
    calls = {}
    for name, fn in contenders.items():
        fn()  # warm-up (and compilation)
        start = time.perf_counter()
        fn()
        calls[name] = max(1, min(1000, int(round_seconds / (time.perf_counter() - start))))
    times: dict[str, list[float]] = {name: [] for name in contenders}
    order = list(contenders.items())
    for r in range(repeats):
        for name, fn in order[r % len(order) :] + order[: r % len(order)]:
            if calls[name] > 1:
                fn()
            start = time.perf_counter()
            for _ in range(calls[name]):
                fn()
            times[name].append((time.perf_counter() - start) / calls[name])
    return {name: statistics.median(t) for name, t in times.items()}


# The read-bandwidth probe: a float32 sum over 1 GiB, 32 times the L3 cache.
READ_PROBE_BYTES = 1 << 30


@dataclass(frozen=True)
class Probe:
    """A workload that shows the machine's peak: run in a case's own rounds,
    its rate is the peak that case is held to."""

    name: str
    fn: Callable[[], Any]
    work: float  # bytes read or floating-point operations per call


def read_probe() -> Probe:
    import torch

    x = torch.ones(READ_PROBE_BYTES // 4)
    return Probe("read probe", x.sum, x.nbytes)


def matmul_probe(dtype) -> Probe:
    """A square matmul at the size where one product takes ~50 ms.

    Small products under-state the peak (a 1024 fp32 product runs at half the
    speed of a 2048 one here), and a CPU without bf16 instructions multiplies
    bf16 at ~1 GFLOP/s, where a fixed 2048 product would take 20 s.
    """
    import torch

    n = 256
    while True:
        a = torch.randn(n, n).to(dtype)
        if n == 2048 or median_seconds(lambda a=a: a @ a, 1) > 0.05:
            return Probe("matmul probe", lambda a=a: a @ a, 2 * n**3)
        n *= 2


def probe_rate(probe: Probe, repeats: int = 5) -> float:
    """The probe's work per second (bytes/s or FLOP/s), the best of ``repeats`` runs."""
    return probe.work / _best_seconds(probe.fn, repeats)


def available_memory() -> int:
    """MemAvailable of /proc/meminfo in bytes (unbounded where unknown)."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 1 << 62


def make_probes() -> dict[str, Probe]:
    """The run's probes, made once: the read probe and the fp32/bf16 matmuls."""
    import torch

    return {
        "read": read_probe(),
        **{name: matmul_probe(getattr(torch, name)) for name in ("float32", "bfloat16")},
    }


def measure_peaks(probes: dict[str, Probe], repeats: int = 5) -> dict[str, float]:
    """This machine's read bandwidth (a large sum) and fp32/bf16 matmul FLOP/s."""
    return {
        "read_bandwidth" if key == "read" else f"matmul_{key}": probe_rate(probe, repeats)
        for key, probe in probes.items()
    }


def _memory_bound(case: Any) -> bool:
    return not getattr(case, "flops", None)


def _work(case: Any) -> tuple[float, str]:
    """What one call of a case does, and the unit of its rate."""
    if not _memory_bound(case):
        return case.flops, "GFLOP/s"
    nbytes = (
        getattr(case, "bytes_read", None)
        or getattr(case, "kv_bytes", None)
        or getattr(case, "logits_bytes", 0)
    )
    return nbytes, "GB/s"


def _peak_probe(case: Any, dtype_name: str, peaks: dict[str, float], probes: dict) -> Probe:
    """The probe a case is held to: read bandwidth for memory-bound cases; for
    compute-bound ones, the matmul of the case's dtype or of float32, whichever
    was faster at the start (a CPU without bf16 instructions computes a bf16
    op in fp32, so its peak is the fp32 one)."""
    if _memory_bound(case):
        return probes["read"]
    return probes[max((dtype_name, "float32"), key=lambda d: peaks[f"matmul_{d}"])]


def run_family(
    op: str,
    quick: bool,
    dtype_name: str,
    repeats: int,
    compile: bool,
    peaks: dict[str, float],
    probes: dict[str, Probe],
    progress,
) -> list[dict]:
    import torch

    module = importlib.import_module(FAMILIES[op], __name__)
    rows = []
    case_list = module.cases(quick, getattr(torch, dtype_name))
    task = progress.add_task(op, total=len(case_list))
    for case in case_list:
        progress.update(task, description=f"{op}: {case.name}")
        if hasattr(case, "peak_bytes") and case.peak_bytes() > 0.7 * available_memory():
            progress.console.print(
                f"{op} {case.name}: skipped, needs {case.peak_bytes() / 2**30:.1f} GiB"
            )
            progress.advance(task)
            continue
        probe = _peak_probe(case, dtype_name, peaks, probes)
        if compile:
            # Dynamo compiles a function for at most recompile_limit (8) shapes,
            # then runs it eagerly, which the table would show as compiled:
            # each case starts from empty caches, so its peer is compiled for it.
            torch.compiler.reset()
        inputs = case.inputs()
        contenders = {**case.contenders(inputs, compile), probe.name: probe.fn}
        times = time_interleaved(contenders, repeats)
        del inputs, contenders  # the contenders hold the inputs: free them for the next case
        peak = probe.work / times.pop(probe.name)
        fused = times["aigc"]
        work, unit = _work(case)
        rows.append(
            {
                "op": op,
                "case": case.name,
                "dtype": dtype_name,
                "ms": {name: t * 1e3 for name, t in times.items()},
                "speedup": {name: t / fused for name, t in times.items() if name != "aigc"},
                "rate": work / fused / 1e9,
                "unit": unit,
                "peak": peak,
                "fraction_of_peak": work / fused / peak,
            }
        )
        progress.advance(task)
    return rows


def render(rows: list[dict], peaks: dict[str, float], console) -> None:
    from rich.table import Table

    console.print(
        f"machine at the start: read bandwidth {peaks['read_bandwidth'] / 1e9:.1f} GB/s, matmul "
        f"{peaks['matmul_float32'] / 1e9:.0f} GFLOP/s fp32, "
        f"{peaks['matmul_bfloat16'] / 1e9:.0f} GFLOP/s bf16"
    )
    for op in dict.fromkeys(r["op"] for r in rows):
        op_rows = [r for r in rows if r["op"] == op]
        peers = list(op_rows[0]["speedup"])
        table = Table(
            title=f"{op} (ratio = peer time / aigc time; > 1 means aigc is faster)",
            min_width=min(console.width, 140),
        )
        for column in [
            "case",
            "aigc ms",
            *(f"{p} ms" for p in peers),
            *(f"x vs {p}" for p in peers),
            "aigc rate",
            "peak",
            "of peak",
        ]:
            table.add_column(column, justify="left" if column == "case" else "right")
        for r in op_rows:
            table.add_row(
                r["case"],
                f"{r['ms']['aigc']:.3f}",
                *(f"{r['ms'][p]:.3f}" for p in peers),
                *(f"{r['speedup'][p]:.2f}" for p in peers),
                f"{r['rate']:.1f} {r['unit']}",
                f"{r['peak'] / 1e9:.1f} {r['unit']}",
                f"{r['fraction_of_peak']:.0%}",
            )
        console.print(table)


def plot(rows: list[dict], path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ops = list(dict.fromkeys(r["op"] for r in rows))
    fig, axes = plt.subplots(len(ops), 1, figsize=(10, 3 + 0.45 * len(rows)), squeeze=False)
    for ax, op in zip(axes[:, 0], ops, strict=True):
        op_rows = [r for r in rows if r["op"] == op]
        peers = list(op_rows[0]["speedup"])
        height = 0.8 / max(len(peers), 1)
        for i, peer in enumerate(peers):
            ax.barh(
                [j + i * height for j in range(len(op_rows))],
                [r["speedup"][peer] for r in op_rows],
                height=height,
                label=f"vs {peer}",
            )
        ax.axvline(1.0, color="black", linewidth=0.8)
        ax.set_yticks(
            [j + 0.4 - height / 2 for j in range(len(op_rows))],
            [r["case"] for r in op_rows],
            fontsize=7,
        )
        ax.set_xlabel("speed-up of the fused op (peer time / aigc time)")
        ax.set_title(op)
        ax.legend(fontsize=7)
    fig.tight_layout()
    png = io.BytesIO()
    fig.savefig(png, format="png", dpi=110)
    plt.close(fig)
    return atomic_write(path, png.getvalue())


def main(argv: list[str] | None = None) -> int:
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
        from ..errors import UserError

        raise UserError(f"unknown op {', '.join(unknown)}; known: {', '.join(FAMILIES)}")
    from rich.console import Console
    from rich.progress import Progress

    # Piped output keeps a wide table rather than folding every case name.
    console = Console(stderr=False, width=None if sys.stdout.isatty() else 160)
    ops = args.ops or list(FAMILIES)
    with Progress(console=Console(stderr=True), transient=True) as progress:
        probes = make_probes()
        peaks = measure_peaks(probes)
        rows = []
        for op in ops:
            rows += run_family(
                op,
                not args.full,
                args.dtype,
                args.repeats,
                not args.no_compile,
                peaks,
                probes,
                progress,
            )
        del probes  # a GiB of probe, not needed for the table and the chart
    render(rows, peaks, console)
    out = Path(args.out)
    atomic_write(out / "bench.json", json.dumps({"peaks": peaks, "rows": rows}, indent=1).encode())
    chart = plot(rows, out / "bench.png")
    console.print(f"wrote {out / 'bench.json'} and {chart}")
    return 0
