"""The engine behind ``aigc bench``: fused ops against PyTorch eager and torch.compile.

    aigc bench [FAMILY-or-CASE...] [--out DIR] [--quick]
    python -m aigc_sdk.bench upsample --out bench-out

For every case it times each implementation in the same process (interleaved,
median of several repeats: other processes share the CPU), prints a table of
speed-up ratios against the peers, the throughput of each implementation and
its fraction of a peak measured in the same run (torch.mm for FLOP-bound
cases, a large copy for byte-bound ones), and writes ``bench.json`` and
``bench.png`` into the output directory.

Adding a family of cases: create ``aigc_sdk/bench/<family>.py`` with

    def cases(quick: bool) -> list[Case]:
        ...build inputs once, return Case objects...

and nothing else: modules of this package are discovered by name (``pkgutil``),
and ``aigc bench <family>`` selects one (so does any name in the module's optional
``ALIASES`` tuple, e.g. the op's name); other words select cases by name substring.
A :class:`Case` holds zero-argument callables keyed by implementation:
``"fused"`` (ours), ``"eager"`` (the PyTorch baseline) and any peers
(``"compile"``, ...); every ratio is fused against each of them. It also holds
the work one call does (``work`` in ``unit`` "FLOP" or "B") and the peak to
compare the throughput with (``peak``: "matmul" or "bandwidth"), and optionally
``check``, returning the fused output's error against the eager one, run
before timing. See aigc_sdk/bench/upsample.py for a complete family.
Quick mode must build small inputs: the test suite runs it.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import pkgutil
import platform
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["Case", "discover", "main", "measure_peaks", "run"]

BASELINE = "eager"
OURS = "fused"


@dataclass
class Case:
    """One benchmark: the same computation done by several implementations."""

    family: str  # the module's name: "upsample", "attention", ...
    name: str  # unique within the family, e.g. "dcgan 512->256 4x4 fp32"
    impls: dict[str, Callable[[], object]]  # "fused", "eager", "compile", ...
    work: float  # work per call, in `unit`
    unit: str = "FLOP"  # "FLOP" or "B" (bytes moved)
    peak: str = "matmul"  # which measured peak the fused throughput is a fraction of
    dtype: str = "float32"  # the matmul peak is measured in this dtype (and in float32)
    check: Callable[[], float] | None = None  # returns max |fused - eager| (relative)
    tolerance: float = 1e-3
    notes: str = ""
    extra: dict = field(default_factory=dict)

    @property
    def key(self) -> str:
        return f"{self.family}/{self.name}"


# ---------------------------------------------------------------------------
# Discovery.
# ---------------------------------------------------------------------------


def families() -> list[str]:
    """Names of the case modules of this package."""
    return sorted(m.name for m in pkgutil.iter_modules(__path__) if not m.name.startswith("_"))


def _module(family: str):
    return importlib.import_module(f"{__name__}.{family}")


def discover(selection: Sequence[str] = (), quick: bool = False) -> list[Case]:
    """The cases selected by family names (or a module's ALIASES, e.g. the op name
    "upsample_conv2d"), plus those whose name contains any other selector."""
    aliases = {f: {f, *getattr(_module(f), "ALIASES", ())} for f in families()}
    chosen = {f for f, names in aliases.items() if names & set(selection)}
    substrings = [s for s in selection if not any(s in names for names in aliases.values())]
    cases: list[Case] = []
    for family in families():
        if selection and family not in chosen and not substrings:
            continue
        for case in _module(family).cases(quick):
            if not selection or family in chosen or any(s in case.name for s in substrings):
                cases.append(case)
    if selection and not cases:
        raise SystemExit(
            f"aigc bench: nothing matches {' '.join(selection)}; families: {', '.join(families())}"
        )
    return cases


# ---------------------------------------------------------------------------
# Timing.
# ---------------------------------------------------------------------------


def _time_once(fn: Callable[[], object], number: int) -> float:
    start = time.perf_counter()
    for _ in range(number):
        fn()
    return (time.perf_counter() - start) / number


def _calls_per_sample(fn: Callable[[], object], min_time: float) -> int:
    """Calls per timed sample so that a sample lasts at least min_time."""
    elapsed = _time_once(fn, 1)
    if elapsed >= min_time:
        return 1
    return max(1, min(1000, int(min_time / max(elapsed, 1e-7))))


def time_case(case: Case, repeats: int, min_time: float, advance: Callable[[], None]) -> dict:
    """Median seconds per call of each implementation, sampled round-robin."""
    import torch

    samples: dict[str, list[float]] = {name: [] for name in case.impls}
    with torch.inference_mode():
        numbers = {}
        for name, fn in case.impls.items():
            fn()  # warm-up (torch.compile compiles here)
            numbers[name] = _calls_per_sample(fn, min_time)
            advance()
        for _ in range(repeats):
            for name, fn in case.impls.items():
                samples[name].append(_time_once(fn, numbers[name]))
                advance()
    return {
        name: {"median_s": statistics.median(s), "min_s": min(s), "samples_s": s}
        for name, s in samples.items()
    }


# ---------------------------------------------------------------------------
# Peaks, measured in the same run.
# ---------------------------------------------------------------------------


def _matmul_peak(dtype_name: str, quick: bool) -> float:
    import torch

    dtype = getattr(torch, dtype_name)
    n = 256 if quick or dtype is not torch.float32 else 1024
    a, b = torch.randn(n, n).to(dtype), torch.randn(n, n).to(dtype)
    seconds = min(_time_once(lambda: torch.mm(a, b), 1) for _ in range(3 if quick else 7))
    return 2 * n**3 / seconds


def _bandwidth_peak(quick: bool) -> float:
    import torch

    n = (8 if quick else 64) << 20  # bytes
    src = torch.empty(n // 4)
    src.fill_(1.0)
    dst = torch.empty_like(src)
    seconds = min(_time_once(lambda: dst.copy_(src), 1) for _ in range(5))
    return 2 * n / seconds  # read + write


def measure_peaks(cases: Sequence[Case], quick: bool) -> dict[str, float]:
    """The peaks the cases refer to: 'matmul_<dtype>' in FLOP/s, 'bandwidth' in B/s."""
    peaks: dict[str, float] = {}
    for case in cases:
        if case.peak == "matmul":
            for dtype in {case.dtype, "float32"}:
                if f"matmul_{dtype}" not in peaks:
                    peaks[f"matmul_{dtype}"] = _matmul_peak(dtype, quick)
        elif case.peak == "bandwidth" and "bandwidth" not in peaks:
            peaks["bandwidth"] = _bandwidth_peak(quick)
    return peaks


def peak_for(case: Case, peaks: dict[str, float]) -> tuple[str, float] | None:
    """The peak a case's throughput is compared with. For matmul: the faster of torch.mm
    in the case's dtype and in float32 (a kernel may compute low precision in fp32 when
    the CPU has no fast low-precision path)."""
    if case.peak == "bandwidth":
        return ("bandwidth", peaks["bandwidth"]) if "bandwidth" in peaks else None
    options = [(f"matmul_{d}", peaks.get(f"matmul_{d}")) for d in (case.dtype, "float32")]
    options = [(k, v) for k, v in options if v]
    return max(options, key=lambda kv: kv[1]) if options else None


# ---------------------------------------------------------------------------
# Running, reporting.
# ---------------------------------------------------------------------------


def environment() -> dict:
    import torch

    cpu = platform.processor()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if "model name" in line)
    except (OSError, StopIteration):
        pass
    return {
        "torch": torch.__version__,
        "python": platform.python_version(),
        "cpu": cpu,
        "threads": torch.get_num_threads(),
        "load_average": os.getloadavg() if hasattr(os, "getloadavg") else None,
        "time": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }


def run(
    ops: Sequence[str] = (),
    out_dir: str | os.PathLike | None = "bench-out",
    quick: bool = False,
    repeats: int | None = None,
    min_time: float | None = None,
    console=None,
    progress: bool = True,
) -> dict:
    """Runs the selected cases; prints the table; writes bench.json and bench.png.

    Returns the results as written to bench.json.
    """
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    # Wide when not a terminal (logs, CI), so the table is not wrapped at 80 columns.
    console = console or Console(width=None if sys.stdout.isatty() else 200)
    repeats = repeats or (2 if quick else 7)
    min_time = min_time if min_time is not None else (0.002 if quick else 0.05)
    cases = discover(ops, quick)
    peaks = measure_peaks(cases, quick)
    results = []
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        console=console,
        disable=not progress,
        transient=True,
    ) as bar:
        steps = sum(len(c.impls) * (repeats + 1) for c in cases)
        task = bar.add_task("benchmarking", total=steps)
        for case in cases:
            bar.update(task, description=f"{case.key}")
            error = _check(case)
            timings = time_case(case, repeats, min_time, lambda: bar.advance(task))
            results.append(_result(case, timings, error, peaks))
    report = {"environment": environment(), "peaks": peaks, "repeats": repeats, "cases": results}
    print_table(report, console)
    if out_dir is not None:
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        (out / "bench.json").write_text(json.dumps(report, indent=2))
        plot(report, out / "bench.png")
        console.print(f"wrote {out / 'bench.json'} and {out / 'bench.png'}")
    return report


def _check(case: Case) -> float | None:
    import torch

    if case.check is None:
        return None
    with torch.inference_mode():
        return float(case.check())


def _result(case: Case, timings: dict, error: float | None, peaks: dict) -> dict:
    median = {name: t["median_s"] for name, t in timings.items()}
    peak = peak_for(case, peaks)
    throughput = {name: case.work / s for name, s in median.items()}
    return {
        "family": case.family,
        "name": case.name,
        "dtype": case.dtype,
        "work": case.work,
        "unit": case.unit,
        "timings": timings,
        "speedup": {
            name: median[name] / median[OURS] for name in median if name != OURS and OURS in median
        },
        "throughput": throughput,
        "peak": {"name": peak[0], "value": peak[1]} if peak else None,
        "fraction_of_peak": {n: v / peak[1] for n, v in throughput.items()} if peak else None,
        "check_error": error,
        "check_ok": None if error is None else bool(error <= case.tolerance),
        "notes": case.notes,
        **({"extra": case.extra} if case.extra else {}),
    }


def _rate(value: float, unit: str) -> str:
    return f"{value / 1e9:.1f} G{'FLOP' if unit == 'FLOP' else 'B'}/s"


def print_table(report: dict, console) -> None:
    from rich.table import Table

    peaks = ", ".join(
        f"{k} {_rate(v, 'B' if k == 'bandwidth' else 'FLOP')}" for k, v in report["peaks"].items()
    )
    env = report["environment"]
    load = ", ".join(f"{x:.1f}" for x in env["load_average"] or [])
    title = (
        f"aigc bench: fused / peers, median of {report['repeats']} interleaved repeats "
        f"({env['threads']} threads, load average {load})"
    )
    table = Table(title=title, caption=f"peaks measured in this run: {peaks}")
    peers = sorted({p for c in report["cases"] for p in c["speedup"]}, key=_peer_order)
    table.add_column("case")
    table.add_column(f"{OURS} ms", justify="right")
    for peer in peers:
        table.add_column(f"{peer} ms", justify="right")
    for peer in peers:
        table.add_column(f"x vs {peer}", justify="right")
    table.add_column(f"{OURS} rate", justify="right")
    table.add_column("of peak", justify="right")
    table.add_column("check", justify="right")
    for c in report["cases"]:
        t = {n: v["median_s"] * 1e3 for n, v in c["timings"].items()}
        fraction = c["fraction_of_peak"][OURS] if c["fraction_of_peak"] else None
        check = "-" if c["check_ok"] is None else ("ok" if c["check_ok"] else "MISMATCH")
        table.add_row(
            f"{c['family']}/{c['name']}",
            f"{t[OURS]:.2f}",
            *[f"{t[p]:.2f}" if p in t else "-" for p in peers],
            *[f"{c['speedup'][p]:.2f}x" if p in c["speedup"] else "-" for p in peers],
            _rate(c["throughput"][OURS], c["unit"]),
            f"{fraction:.0%} {c['peak']['name']}" if fraction is not None else "-",
            check,
        )
    console.print(table)


def _peer_order(name: str) -> tuple[int, str]:
    return (0 if name == BASELINE else 1, name)


def plot(report: dict, path: Path) -> None:
    """A horizontal bar chart of speed-ups of the fused op over each peer."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cases = report["cases"]
    peers = sorted({p for c in cases for p in c["speedup"]}, key=_peer_order)
    height = max(2.5, 0.45 * len(cases) * max(1, len(peers)) + 1.0)
    fig, ax = plt.subplots(figsize=(9, height))
    bar = 0.8 / max(1, len(peers))
    for i, peer in enumerate(peers):
        ys = [k + i * bar for k in range(len(cases))]
        xs = [c["speedup"].get(peer, 0.0) for c in cases]
        ax.barh(ys, xs, height=bar, label=f"fused vs {peer}")
        for y, x in zip(ys, xs, strict=True):
            if x:
                ax.text(x, y, f" {x:.2f}x", va="center", fontsize=7)
    ax.axvline(1.0, color="black", linewidth=0.8)
    ax.set_yticks([k + bar * (len(peers) - 1) / 2 for k in range(len(cases))])
    ax.set_yticklabels([f"{c['family']}/{c['name']}" for c in cases], fontsize=7)
    ax.invert_yaxis()
    ax.set_xlabel("speed-up of the fused op (higher is better; 1 = same time)")
    env = report["environment"]
    ax.set_title(f"aigc bench ({env['cpu']}, {env['threads']} threads)", fontsize=9)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="aigc bench",
        description="Time the fused ops against PyTorch eager and torch.compile.",
    )
    parser.add_argument(
        "ops", nargs="*", help=f"families ({', '.join(families())}) or case-name substrings"
    )
    parser.add_argument("--out", default="bench-out", help="directory for bench.json/bench.png")
    parser.add_argument("--quick", action="store_true", help="small shapes, few repeats")
    parser.add_argument("--repeats", type=int, help="timed repeats per implementation")
    parser.add_argument("--threads", type=int, help="torch.set_num_threads before running")
    parser.add_argument("--list", action="store_true", help="list the cases and exit")
    args = parser.parse_args(argv)
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    if args.list:
        for case in discover(args.ops, args.quick):
            print(f"{case.key}  [{', '.join(case.impls)}]")
        return 0
    run(args.ops, args.out, quick=args.quick, repeats=args.repeats)
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
