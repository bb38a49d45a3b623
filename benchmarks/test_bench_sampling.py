"""sample under pytest-benchmark: the fused op against the usual PyTorch top-p
pipeline (softmax, sort, cumsum, mask, multinomial), eager and compiled, on the
cases of aigc_sdk/bench/sampling.py (quick subset; AIGC_BENCH_FULL=1 for
B in {1, 8, 64} x V in {32000, 50257, 128256}). One group per shape.

    pytest benchmarks/test_bench_sampling.py --benchmark-columns=median,ops
"""

import pytest

from aigc_sdk.bench import sampling

from .op_harness import QUICK, case_fixture, measure

CASES = sampling.cases(quick=QUICK)
CONTENDERS = ["aigc", "torch", "torch+compile"]
case_inputs = case_fixture(CASES)


@pytest.mark.parametrize("contender", CONTENDERS)
def test_sample(benchmark, case_inputs, contender):
    case, inputs = case_inputs
    fn = case.contenders(inputs, compile=contender.endswith("compile"))[contender]
    tokens = measure(benchmark, f"sample {case.name}", fn)
    assert tokens.shape == (case.B,) and bool(((tokens >= 0) & (tokens < case.V)).all())
