"""decode_attention under pytest-benchmark: the fused op, SDPA and
torch.compile(SDPA) on the cases of aigc_sdk/bench/attention.py (the quick
subset; AIGC_BENCH_FULL=1 for every shape). Each group is one shape, so
pytest-benchmark's table compares the contenders side by side; extra_info
holds the fraction of the read bandwidth, probed right after each
contender's rounds.

    pytest benchmarks/test_bench_attention.py --benchmark-columns=median,ops
"""

import pytest

from aigc_sdk.bench import attention

from .op_harness import QUICK, bandwidth, case_fixture, measure, median_seconds

CASES = attention.cases(quick=QUICK)
CONTENDERS = ["aigc", "sdpa", "sdpa+compile"]
case_inputs = case_fixture(CASES)


@pytest.mark.parametrize("contender", CONTENDERS)
def test_decode_attention(benchmark, case_inputs, contender, read_probe):
    case, inputs = case_inputs
    fn = case.contenders(inputs, compile=contender.endswith("compile"))[contender]
    result = measure(benchmark, f"decode_attention {case.name}", fn)
    assert result.shape == inputs[0].shape
    if (seconds := median_seconds(benchmark)) is not None:
        benchmark.extra_info.update(
            kv_bytes=case.kv_bytes, **bandwidth(read_probe, case.kv_bytes, seconds)
        )
