"""The CUDA sampling kernel (csrc/kernels/sampling.cuh), run on the CPU through
the emulation harness: the same tokens as the CPU kernel and the reference."""

import math

import pytest
import torch
from emulation import load_binding
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from aigc_sdk import ops
from aigc_sdk.ops import reference
from aigc_sdk.ops._extension import has_kernel

pytestmark = pytest.mark.build

# Without GNU-unique symbols each binding keeps its own copy of the emulator's
# inline thread_locals; with them, the first binding loaded in the process
# would own the dynamic shared memory pool of the bindings loaded after it.
EMU_FLAGS = ["-fno-gnu-unique"]
DTYPE_CODE = {torch.float32: 0, torch.float16: 1, torch.bfloat16: 2}
STATUS = {
    -1: "NaN",
    -2: "all -inf",
    -3: "temperature",
    -4: "top_k",
    -5: "top_p",
    -6: "min_p",
    -7: "repetition_penalty",
    -8: "prev_tokens",
}


@pytest.fixture(scope="module")
def emu():
    return load_binding("sample", "tests/sample_emulation.cpp", extra_cflags=EMU_FLAGS)


def rows(logits, **params):
    defaults = dict(temperature=1.0, top_k=0, top_p=1.0, min_p=0.0, seed=0, offset=0)
    defaults.update(params)
    return {k: ops.sampling._per_row(k, v, logits) for k, v in defaults.items()}


def cuda_tokens(emu, logits, prev=None, penalty=None, row_ids=None, **params):
    """Tokens (or negative statuses) of the emulated kernel, launched as sample.cu does."""
    r = rows(logits, **params)
    B, V = logits.shape
    tokens = torch.full((B,), -100, dtype=torch.int64)
    work = torch.empty(B, V)
    pen = None if penalty is None else ops.sampling._per_row("repetition_penalty", penalty, logits)
    emu.sample(
        DTYPE_CODE[logits.dtype],
        logits,
        logits.stride(0),
        B,
        V,
        r["temperature"],
        r["top_k"],
        r["top_p"],
        r["min_p"],
        r["seed"],
        r["offset"],
        prev,
        0 if prev is None else prev.shape[1],
        pen,
        work,
        tokens,
        row_ids,
    )
    return tokens


def reference_tokens(logits, prev=None, penalty=None, **params):
    r = rows(logits, **params)
    pen = None if penalty is None else ops.sampling._per_row("repetition_penalty", penalty, logits)
    return reference.sample(logits, *r.values(), prev, pen)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    B=st.integers(1, 4),
    V=st.sampled_from([1, 3, 64, 511, 512, 513, 3000]),
    dtype=st.sampled_from(list(DTYPE_CODE)),
    spread=st.sampled_from([0.01, 1.0, 8.0]),
    temperature=st.sampled_from([0.0, 0.3, 1.0, 2.0]),
    top_k=st.sampled_from([0, 1, 3, 40, 5000]),
    top_p=st.sampled_from([1.0, 0.95, 0.5, 0.05]),
    min_p=st.sampled_from([0.0, 0.01, 0.3]),
    seed=st.integers(0, 2**63 - 1),
    offset=st.integers(0, 2**33),
    quantize=st.booleans(),
)
def test_same_tokens_as_cpu_and_reference(
    emu, B, V, dtype, spread, temperature, top_k, top_p, min_p, seed, offset, quantize
):
    g = torch.Generator().manual_seed(seed % 2**32)
    logits = torch.randn(B, V, generator=g) * spread
    logits = (logits.round() if quantize else logits).to(dtype)
    params = dict(
        temperature=temperature, top_k=top_k, top_p=top_p, min_p=min_p, seed=seed, offset=offset
    )
    want = reference_tokens(logits, **params)
    assert torch.equal(cuda_tokens(emu, logits, **params), want)
    if has_kernel("sample", "cpu"):
        assert torch.equal(ops.sample(logits, **params), want)


def test_row_ids_key_the_draws(emu):
    # Rows of several requests in one launch, each keyed by its own row number:
    # the kernel draws what the reference and the CPU kernel draw.
    torch.manual_seed(3)
    logits = torch.randn(6, 700) * 2
    row_ids = torch.tensor([0, 1, 0, 0, 1, 2])
    params = dict(temperature=1.0, top_p=0.9, seed=torch.tensor([5, 5, 9, 7, 7, 7]), offset=3)
    r = rows(logits, **params)
    want = reference.sample(logits, *r.values(), None, None, row_ids)
    assert torch.equal(cuda_tokens(emu, logits, row_ids=row_ids, **params), want)
    if has_kernel("sample", "cpu"):
        assert torch.equal(ops.sample(logits, row_ids=row_ids, **params), want)


def test_wide_vocabulary_and_penalty(emu):
    torch.manual_seed(5)
    logits = (torch.randn(3, 50257) * 3).bfloat16()
    prev = torch.tensor([[1, 2, 2, -1], [7, 8, 9, 10], [-1, -1, -1, -1]])
    params = dict(
        temperature=torch.tensor([0.7, 0.0, 1.1]),
        top_k=torch.tensor([50, 0, 0]),
        top_p=torch.tensor([0.9, 1.0, 0.8]),
        seed=torch.tensor([1, 2, 3]),
        offset=9,
    )
    want = reference_tokens(logits, prev=prev, penalty=torch.tensor([1.3, 1.2, 2.0]), **params)
    got = cuda_tokens(emu, logits, prev=prev, penalty=torch.tensor([1.3, 1.2, 2.0]), **params)
    assert torch.equal(got, want)


def test_ties_infinities_and_row_strides(emu):
    logits = torch.tensor(
        [[3.0, 1.0, 2.0, 2.0, 0.0, 2.0], [math.inf, 5.0, math.inf, -math.inf, 0.0, 1.0]]
    ).repeat(200, 1)
    for params in (dict(top_k=2), dict(top_p=0.3), dict(min_p=0.2), dict(temperature=0.0)):
        assert torch.equal(
            cuda_tokens(emu, logits, seed=4, **params), reference_tokens(logits, seed=4, **params)
        )
    wide = torch.randn(4, 3, 700)[:, 1, :]  # rows 2100 elements apart
    assert torch.equal(
        cuda_tokens(emu, wide, seed=8, top_p=0.7),
        reference_tokens(wide.contiguous(), seed=8, top_p=0.7),
    )


def test_bad_rows_get_statuses(emu):
    logits = torch.zeros(4, 100)
    logits[1, 5] = math.nan
    logits[2] = -math.inf
    tokens = cuda_tokens(emu, logits, top_p=torch.tensor([0.5, 0.5, 0.5, 0.0]))
    assert [STATUS.get(int(t), int(t)) for t in tokens[1:]] == ["NaN", "all -inf", "top_p"]
    assert 0 <= int(tokens[0]) < 100
    one = logits[:1]  # tensors: the wrapper checks numbers before any kernel
    assert STATUS[int(cuda_tokens(emu, one, temperature=torch.tensor([-1.0]))[0])] == "temperature"
    assert STATUS[int(cuda_tokens(emu, one, temperature=torch.tensor([math.inf]))[0])] == (
        "temperature"
    )
    assert STATUS[int(cuda_tokens(emu, one, top_k=torch.tensor([-1]))[0])] == "top_k"
    assert STATUS[int(cuda_tokens(emu, one, min_p=torch.tensor([1.5]))[0])] == "min_p"
    prev = torch.tensor([[100]])
    assert STATUS[int(cuda_tokens(emu, one, prev=prev, penalty=1.5)[0])] == "prev_tokens"
    penalty = torch.tensor([0.0])
    assert STATUS[int(cuda_tokens(emu, one, prev=prev * 0, penalty=penalty)[0])] == (
        "repetition_penalty"
    )
