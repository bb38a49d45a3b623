"""decode_attention under pytest-benchmark: the fused op, SDPA and
torch.compile(SDPA) on the cases of aigc_sdk/bench/attention.py (the quick
subset; AIGC_BENCH_FULL=1 for every shape). Each group is one shape, so
pytest-benchmark's table compares the contenders side by side; extra_info
holds the fraction of the read bandwidth, probed right after each
contender's rounds: on a shared machine the bandwidth drifts within minutes,
so a figure measured once per session would score equal rates unequally.

    pytest benchmarks/test_bench_attention.py --benchmark-columns=median,ops
"""

import os

import pytest
import torch

from aigc_sdk import bench
from aigc_sdk.bench import attention

CASES = attention.cases(quick=os.environ.get("AIGC_BENCH_FULL") != "1")
CONTENDERS = ["aigc", "sdpa", "sdpa+compile"]


@pytest.fixture(scope="session")
def read_probe():
    return bench.read_probe()


@pytest.fixture(scope="module", params=CASES, ids=lambda c: c.name.replace(" ", "-"))
def case_inputs(request):
    case = request.param
    if case.peak_bytes() > 0.7 * bench.available_memory():
        pytest.skip(f"needs {case.peak_bytes() / 2**30:.1f} GiB")
    return case, case.inputs()


@pytest.mark.parametrize("contender", CONTENDERS)
def test_decode_attention(benchmark, case_inputs, contender, read_probe):
    case, inputs = case_inputs
    fn = case.contenders(inputs, compile=contender.endswith("compile"))[contender]
    benchmark.group = f"decode_attention {case.name}"
    result = benchmark.pedantic(fn, rounds=5, warmup_rounds=1)
    assert result.shape == inputs[0].shape
    if benchmark.stats is None:  # --benchmark-disable: a smoke run, no figures
        return
    seconds = benchmark.stats.stats.median
    read_bandwidth = bench.probe_rate(read_probe, repeats=3)
    benchmark.extra_info.update(
        kv_bytes=case.kv_bytes,
        read_bandwidth_gbs=read_bandwidth / 1e9,
        bandwidth_fraction=case.kv_bytes / seconds / read_bandwidth,
        threads=torch.get_num_threads(),
    )
