"""pytest-benchmark: Transformer decode, fused ops vs plain PyTorch vs HF transformers.

    pytest benchmarks/test_bench_transformer.py --benchmark-group-by=param:batch

One run (one torch thread) = a 16-token prompt and 64 new tokens per row (sampling with
temperature/top-k/top-p), prefill included; the model has the shape of the
shipped default weights. Times are compared within the run, never asserted.
``benchmarks/decode_throughput.py`` prints the same comparison as tokens/s.
"""

from __future__ import annotations

import pytest
import torch

from .decode_throughput import hf_available, make_decoders

NEW_TOKENS = 64


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """One torch thread: a small model's decode gains nothing from a second one, and on a
    busy machine OpenMP threads waiting for each other dominate every figure."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module", params=[1, 16], ids=lambda b: f"batch{b}")
def decoders(request, one_thread):
    return request.param, make_decoders(request.param, 16, NEW_TOKENS)


@pytest.mark.parametrize("name", ["fused", "plain", "hf"])
def test_decode(benchmark, decoders, name):
    batch, runs = decoders
    if name == "hf" and not hf_available():
        pytest.skip("Hugging Face transformers is not installed (pip install -e '.[bench]')")
    run = runs[name]
    benchmark.group = f"decode batch={batch}"
    benchmark.extra_info["tokens"] = batch * NEW_TOKENS
    out = benchmark.pedantic(run, args=(1,), rounds=3, iterations=1, warmup_rounds=1)
    assert tuple(out.shape) == (batch, NEW_TOKENS)
    if benchmark.stats is None:  # --benchmark-disable: a smoke run, no figures
        return
    benchmark.extra_info["tokens_per_s"] = batch * NEW_TOKENS / benchmark.stats.stats.median
