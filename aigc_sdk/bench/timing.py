"""The runner of ``aigc bench``: every contender of a case timed in interleaved
rounds, medians, and one row per case in the one format the report reads.

A row (``run_case``), as ``bench.json`` holds it: ``op``, ``case`` (its name),
``dtype``; ``ms``: contender -> median milliseconds per call ("aigc" is the
fused op); ``speedup``: peer -> peer time / aigc time; ``rate`` and ``unit``:
the fused op's GB/s (memory-bound) or GFLOP/s (compute-bound); ``peak``: the
probe's bytes or FLOP per second in the case's own rounds; ``fraction_of_peak``:
rate / peak.
"""

from __future__ import annotations

import importlib
import statistics
import time
from typing import Any

from . import FAMILIES
from .probes import Probe, available_memory, case_work, make_probes, measure_peaks, peak_probe


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


def run_case(
    op: str, case: Any, dtype_name: str, repeats: int, compile: bool, probe: Probe
) -> dict:
    """One case's row: its contenders and ``probe`` timed in the same rounds."""
    if compile:
        import torch

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
    work, unit = case_work(case)
    return {
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
    """The rows of every case of op family ``op`` (a key of ``FAMILIES``); a case
    that needs over 70% of the free memory is skipped, with a line on the console."""
    import torch

    module = importlib.import_module(FAMILIES[op], __package__)
    rows = []
    case_list = module.cases(quick, getattr(torch, dtype_name))
    task = progress.add_task(op, total=len(case_list))
    for case in case_list:
        progress.update(task, description=f"{op}: {case.name}")
        if hasattr(case, "peak_bytes") and case.peak_bytes() > 0.7 * available_memory():
            progress.console.print(
                f"{op} {case.name}: skipped, needs {case.peak_bytes() / 2**30:.1f} GiB"
            )
        else:
            probe = peak_probe(case, dtype_name, peaks, probes)
            rows.append(run_case(op, case, dtype_name, repeats, compile, probe))
        progress.advance(task)
    return rows


def run(
    ops: list[str], quick: bool, dtype_name: str, repeats: int, compile: bool, progress
) -> tuple[dict[str, float], list[dict]]:
    """The machine's peaks at the start and the rows of every case of ``ops``."""
    probes = make_probes()  # over a GiB, freed on return: before the table and the chart
    peaks = measure_peaks(probes)
    rows = []
    for op in ops:
        rows += run_family(op, quick, dtype_name, repeats, compile, peaks, probes, progress)
    return peaks, rows
