"""sample under pytest-benchmark: the fused op against the usual PyTorch top-p
pipeline (softmax, sort, cumsum, mask, multinomial), eager and compiled, on the
cases of aigc_sdk/bench/sampling.py (quick subset; AIGC_BENCH_FULL=1 for
B in {1, 8, 64} x V in {32000, 50257, 128256}). One group per shape.

    pytest benchmarks/test_bench_sampling.py --benchmark-columns=median,ops
"""

import os

import pytest
import torch

from aigc_sdk.bench import sampling

CASES = sampling.cases(quick=os.environ.get("AIGC_BENCH_FULL") != "1")
CONTENDERS = ["aigc", "torch", "torch+compile"]


@pytest.fixture(scope="module", params=CASES, ids=lambda c: c.name.replace(" ", "-"))
def case_inputs(request):
    return request.param, request.param.inputs()


@pytest.mark.parametrize("contender", CONTENDERS)
def test_sample(benchmark, case_inputs, contender):
    case, inputs = case_inputs
    fn = case.contenders(inputs, compile=contender.endswith("compile"))[contender]
    benchmark.group = f"sample {case.name}"
    tokens = benchmark.pedantic(fn, rounds=5, warmup_rounds=1)
    benchmark.extra_info.update(threads=torch.get_num_threads())
    assert tokens.shape == (case.B,) and bool(((tokens >= 0) & (tokens < case.V)).all())
