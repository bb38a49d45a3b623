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

import pytest

from aigc_sdk.bench import quant

from .op_harness import QUICK, bandwidth, case_fixture, measure, median_seconds

CASES = quant.cases(quick=QUICK)
CONTENDERS = ["aigc", "dense matmul", "dequant+matmul"]
case_inputs = case_fixture(CASES)


@pytest.mark.parametrize("contender", CONTENDERS)
def test_quant_linear(benchmark, case_inputs, contender, read_probe):
    case, inputs = case_inputs
    fn = case.contenders(inputs)[contender]
    out = measure(benchmark, f"quant_linear {case.name}", fn)
    assert out.shape == (case.M, case.shape[0]) and bool(out.isfinite().all())
    if (seconds := median_seconds(benchmark)) is None:
        return
    benchmark.extra_info["weight_bytes"] = case.weight_bytes
    if case.flops:
        benchmark.extra_info["gflops"] = case.flops / seconds / 1e9
    else:
        benchmark.extra_info.update(bandwidth(read_probe, case.bytes_read, seconds))
