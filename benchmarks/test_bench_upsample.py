"""upsample_conv2d under pytest-benchmark: FusedUpsample against the same layer
in PyTorch (ConvTranspose + BatchNorm in eval mode + activation), eager and
compiled, on the cases of aigc_sdk/bench/upsample.py: the DCGAN generator's
layers, a 1-D audio layer and the whole generator (batch 16; AIGC_BENCH_FULL=1
for batch 64). One group per shape and dtype; extra_info holds GFLOP/s.

    pytest benchmarks/test_bench_upsample.py --benchmark-columns=median,ops
"""

import os

import pytest
import torch

from aigc_sdk.bench import upsample

QUICK = os.environ.get("AIGC_BENCH_FULL") != "1"
CASES = [c for dtype in (torch.float32, torch.bfloat16) for c in upsample.cases(QUICK, dtype)]
CONTENDERS = ["aigc", "eager", "eager+compile"]


@pytest.fixture(scope="module", params=CASES, ids=lambda c: c.name.replace(" ", "-"))
def case_inputs(request):
    return request.param, request.param.inputs()


@pytest.mark.parametrize("contender", CONTENDERS)
def test_upsample_conv2d(benchmark, case_inputs, contender):
    case, inputs = case_inputs
    fn = case.contenders(inputs, compile=contender.endswith("compile"))[contender]
    benchmark.group = f"upsample_conv2d {case.name}"
    out = benchmark.pedantic(fn, rounds=5, warmup_rounds=1)
    assert out.dtype == case.dtype and bool(out.isfinite().all())
    if benchmark.stats is None:  # --benchmark-disable: a smoke run, no figures
        return
    benchmark.extra_info.update(
        gflops=case.flops / benchmark.stats.stats.median / 1e9,
        threads=torch.get_num_threads(),
    )
