"""The decode-throughput figure of benchmarks/serve_load.py, on made-up streams."""

import pytest
from conftest import benchmark_module


@pytest.fixture(scope="module")
def load():
    return benchmark_module("serve_load")


def stream(load, times, tokens):
    return load.Outcome(piece_times=list(times), pieces=len(times), completion_tokens=tokens)


def test_one_stream_counts_the_tokens_after_its_first(load):
    assert load.concurrent_decode_rate([stream(load, range(11), 11)]) == pytest.approx(1.0)


def test_only_the_tokens_while_every_stream_decodes_count(load):
    # Alone, a stream makes 2 tokens/s; together, each makes 1.
    early = [i / 2 for i in range(11)] + [6, 7, 8, 9, 10]  # alone to t = 5, then with `late`
    late = [5, 6, 7, 8, 9, 10] + [10 + i / 2 for i in range(1, 6)]  # alone after t = 10
    # Both decode from t = 5 to t = 10: 5 tokens each in 5 s. Every token after each
    # stream's own first, over t = 5..12.5, would give (15 + 10) / 7.5 = 3.3 instead.
    rate = load.concurrent_decode_rate([stream(load, early, 16), stream(load, late, 11)])
    assert rate == pytest.approx(2.0)


def test_tokens_per_piece_come_from_the_usage_count(load):
    both = [stream(load, range(11), 11), stream(load, range(11), 22)]  # 1 and 2 tokens a piece
    assert load.concurrent_decode_rate(both) == pytest.approx(3.0)


def test_streams_that_never_overlap_give_no_rate(load):
    assert load.concurrent_decode_rate([stream(load, [0, 1], 2), stream(load, [2, 3], 2)]) == 0.0
    assert load.concurrent_decode_rate([]) == 0.0
