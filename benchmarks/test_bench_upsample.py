"""upsample_conv2d under pytest-benchmark: FusedUpsample against the same layer
in PyTorch (ConvTranspose + BatchNorm in eval mode + activation), eager and
compiled, on the cases of aigc_sdk/bench/upsample.py: the DCGAN generator's
layers, a 1-D audio layer and the whole generator (batch 16; AIGC_BENCH_FULL=1
for batch 64). One group per shape and dtype; extra_info holds GFLOP/s.

    pytest benchmarks/test_bench_upsample.py --benchmark-columns=median,ops
"""

import pytest
import torch

from aigc_sdk.bench import upsample

from .op_harness import QUICK, case_fixture, measure, median_seconds

CASES = [c for dtype in (torch.float32, torch.bfloat16) for c in upsample.cases(QUICK, dtype)]
CONTENDERS = ["aigc", "eager", "eager+compile"]
case_inputs = case_fixture(CASES)


@pytest.mark.parametrize("contender", CONTENDERS)
def test_upsample_conv2d(benchmark, case_inputs, contender):
    case, inputs = case_inputs
    fn = case.contenders(inputs, compile=contender.endswith("compile"))[contender]
    out = measure(benchmark, f"upsample_conv2d {case.name}", fn)
    assert out.dtype == case.dtype and bool(out.isfinite().all())
    if (seconds := median_seconds(benchmark)) is not None:
        benchmark.extra_info["gflops"] = case.flops / seconds / 1e9
