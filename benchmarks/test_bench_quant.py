"""quant_linear under pytest-benchmark: the fused op against PyTorch eager on
the dequantized weight (a dense matmul with the weight dequantized beforehand,
and dequantization + matmul in the timed call), on the cases of
aigc_sdk/bench/quant.py (the quick subset; AIGC_BENCH_FULL=1 for every type,
M in {1, 8, 128, 512} and SmolLM2's and a 7B model's shapes). One group per
case. extra_info holds, for the streaming cases (M <= 8), the fraction of the
read bandwidth probed right after the contender's rounds, and for the GEMM
cases (M >= 128) GFLOP/s.

    pytest benchmarks/test_bench_quant.py --benchmark-columns=median,ops
"""

import os

import pytest
import torch

from aigc_sdk import bench
from aigc_sdk.bench import quant

CASES = quant.cases(quick=os.environ.get("AIGC_BENCH_FULL") != "1")
CONTENDERS = ["aigc", "dense matmul", "dequant+matmul"]


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
def test_quant_linear(benchmark, case_inputs, contender, read_probe):
    case, inputs = case_inputs
    fn = case.contenders(inputs)[contender]
    benchmark.group = f"quant_linear {case.name}"
    out = benchmark.pedantic(fn, rounds=5, warmup_rounds=1)
    assert out.shape == (case.M, case.shape[0]) and bool(out.isfinite().all())
    if benchmark.stats is None:  # --benchmark-disable: a smoke run, no figures
        return
    seconds = benchmark.stats.stats.median
    info = {"threads": torch.get_num_threads(), "weight_bytes": case.weight_bytes}
    if case.flops:
        info["gflops"] = case.flops / seconds / 1e9
    else:
        read_bandwidth = bench.probe_rate(read_probe, repeats=3)
        info["read_bandwidth_gbs"] = read_bandwidth / 1e9
        info["bandwidth_fraction"] = case.bytes_read / seconds / read_bandwidth
    benchmark.extra_info.update(info)
