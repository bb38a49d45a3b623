"""The harness the op benchmarks share (test_bench_{attention,quant,sampling,upsample}.py).

Each of them times a fused op against its PyTorch peers on the cases of
``aigc_sdk.bench.<op>``: one module-scoped fixture per case (its inputs made
once), one pytest-benchmark group per case so the table shows the contenders
side by side, and the same rounds for every contender.
"""

from __future__ import annotations

import os
from typing import Any

import pytest
import torch

from aigc_sdk import bench

# The quick subset of each op's cases unless AIGC_BENCH_FULL=1 asks for all of them.
QUICK = os.environ.get("AIGC_BENCH_FULL") != "1"


def case_fixture(cases: list[Any]):
    """A module-scoped fixture giving ``(case, inputs)`` for each case; a case whose
    inputs and peers would take over 70% of the free memory is skipped."""

    @pytest.fixture(scope="module", params=cases, ids=lambda c: c.name.replace(" ", "-"))
    def case_inputs(request):
        case = request.param
        if hasattr(case, "peak_bytes") and case.peak_bytes() > 0.7 * bench.available_memory():
            pytest.skip(f"needs {case.peak_bytes() / 2**30:.1f} GiB")
        return case, case.inputs()

    return case_inputs


def measure(benchmark, group: str, fn, rounds: int = 5) -> Any:
    """Times ``fn`` in benchmark group ``group``; returns its output."""
    benchmark.group = group
    benchmark.extra_info["threads"] = torch.get_num_threads()
    return benchmark.pedantic(fn, rounds=rounds, warmup_rounds=1)


def median_seconds(benchmark) -> float | None:
    """The median of the rounds, or None under --benchmark-disable (a smoke run)."""
    return None if benchmark.stats is None else benchmark.stats.stats.median


def bandwidth(read_probe, bytes_read: int, seconds: float) -> dict[str, float]:
    """The read bandwidth probed now and the fraction of it ``bytes_read`` in
    ``seconds`` reached. Probed right after the contender's rounds: on a shared
    machine the bandwidth drifts within minutes, so one figure per session would
    score equal rates unequally."""
    rate = bench.probe_rate(read_probe, repeats=3)
    return {"read_bandwidth_gbs": rate / 1e9, "bandwidth_fraction": bytes_read / seconds / rate}
