"""The machine's peaks, measured where the cases run: read bandwidth (a 1 GiB
sum) for memory-bound cases, matmul FLOP/s for compute-bound ones, and the free
memory a case must fit in.

A case is held to the peak its probe reaches in the case's own interleaved
rounds (``timing.run_case``): on a shared machine either peak moves by half
within a minute, so a figure taken once at the start would judge each case
against a different machine. ``measure_peaks`` gives the figures at the start,
for the header of the report.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

# The read-bandwidth probe: a float32 sum over 1 GiB, 32 times the L3 cache.
READ_PROBE_BYTES = 1 << 30


@dataclass(frozen=True)
class Probe:
    """A workload that shows the machine's peak: run in a case's own rounds,
    its rate is the peak that case is held to."""

    name: str
    fn: Callable[[], Any]
    work: float  # bytes read or floating-point operations per call


def best_seconds(fn: Callable[[], Any], repeats: int) -> float:
    """The fastest of ``repeats`` runs after a warm-up: a peak is what the machine
    can do, and on a shared machine the median drifts with the neighbours' load."""
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


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
        if n == 2048 or best_seconds(lambda a=a: a @ a, 1) > 0.05:
            return Probe("matmul probe", lambda a=a: a @ a, 2 * n**3)
        n *= 2


def probe_rate(probe: Probe, repeats: int = 5) -> float:
    """The probe's work per second (bytes/s or FLOP/s), the best of ``repeats`` runs."""
    return probe.work / best_seconds(probe.fn, repeats)


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


def memory_bound(case: Any) -> bool:
    """Whether a case is scored by ``bytes_read`` (it has no ``flops``, or 0) rather
    than by FLOP/s."""
    return not getattr(case, "flops", None)


def case_work(case: Any) -> tuple[float, str]:
    """What one call of a case does, and the unit of its rate."""
    if not memory_bound(case):
        return case.flops, "GFLOP/s"
    return case.bytes_read, "GB/s"


def peak_probe(case: Any, dtype_name: str, peaks: dict[str, float], probes: dict) -> Probe:
    """The probe a case is held to: read bandwidth for memory-bound cases; for
    compute-bound ones, the matmul of the case's dtype or of float32, whichever
    was faster at the start (a CPU without bf16 instructions computes a bf16
    op in fp32, so its peak is the fp32 one)."""
    if memory_bound(case):
        return probes["read"]
    return probes[max((dtype_name, "float32"), key=lambda d: peaks[f"matmul_{d}"])]
