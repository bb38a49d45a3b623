"""The CUDA decode-attention kernels (csrc/kernels/decode_attention.cuh), run on
the CPU through the emulation harness, against the PyTorch reference."""

import math

import pytest
import torch
from emulation import load_binding

from aigc_sdk.ops import reference

pytestmark = pytest.mark.build

# Without GNU-unique symbols each binding keeps its own copy of the emulator's
# inline thread_locals; with them, the first binding loaded in the process
# would own the dynamic shared memory pool of the bindings loaded after it.
EMU_FLAGS = ["-fno-gnu-unique"]
DTYPE_CODE = {torch.float32: 0, torch.float16: 1, torch.bfloat16: 2}
TOL = {torch.float32: 2e-5, torch.bfloat16: 2e-2, torch.float16: 2e-3}


@pytest.fixture(scope="module")
def emu():
    return load_binding(
        "decode_attention", "tests/decode_attention_emulation.cpp", extra_cflags=EMU_FLAGS
    )


def run(emu, q, k, v, lens, scale=None, chunk_len=None, num_sms=2):
    """The launch the CUDA binding performs, on CPU tensors."""
    B, H, D = q.shape
    Hkv, Tmax = k.shape[1], k.shape[2]
    plan_chunk, plan_splits = emu.plan(Hkv, Tmax, num_sms)
    chunk_len = chunk_len or plan_chunk
    splits = max(1, math.ceil(Tmax / chunk_len))
    out = torch.empty(B, H, D, dtype=q.dtype)
    lse = torch.empty(B, H)
    ws_acc = torch.empty(B, H, splits, D)
    ws_ml = torch.empty(B, H, splits, 2)
    strides = [q.stride(0), q.stride(1), *k.stride()[:3], *v.stride()[:3]]
    scale = D**-0.5 if scale is None else scale
    emu.decode_attention(
        DTYPE_CODE[q.dtype],
        q,
        k,
        v,
        lens.int(),
        out,
        lse,
        ws_acc,
        ws_ml,
        strides,
        B,
        H,
        Hkv,
        D,
        chunk_len,
        splits,
        scale,
    )
    return out, lse


def check(emu, q, k, v, lens, **kw):
    out, lse = run(emu, q, k, v, lens, **kw)
    want_out, want_lse = reference.decode_attention(q, k, v, lens, kw.get("scale"))
    tol = TOL[q.dtype]
    torch.testing.assert_close(out.float(), want_out.float(), atol=tol, rtol=tol)
    torch.testing.assert_close(lse, want_lse, atol=1e-4, rtol=1e-5)


def make(B, H, Hkv, D, T, dtype, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [
        torch.randn(*shape, generator=g).to(dtype)
        for shape in ((B, H, D), (B, Hkv, T, D), (B, Hkv, T, D))
    ]


@pytest.mark.parametrize("dtype", list(TOL))
@pytest.mark.parametrize("D", [64, 80, 96, 128])
def test_single_split_matches_reference(emu, dtype, D):
    q, k, v = make(2, 4, 2, D, 70, dtype, seed=D)
    check(emu, q, k, v, torch.tensor([70, 33]))


@pytest.mark.parametrize("dtype", list(TOL))
def test_split_kv_and_merge(emu, dtype):
    # Chunks of 64 positions: 5 splits for the longest sequence, one for the
    # shortest, none past the end of the middle one; GQA 4:1 and 1:1.
    q, k, v = make(3, 8, 2, 128, 300, dtype, seed=1)
    check(emu, q, k, v, torch.tensor([300, 50, 130]), chunk_len=64)
    q, k, v = make(1, 2, 2, 64, 200, dtype, seed=2)
    check(emu, q, k, v, torch.tensor([199]), chunk_len=64, scale=0.2)


def test_large_groups_and_block_sharing(emu):
    # G = 16 query heads per KV head: more (head, column) slots than threads.
    q, k, v = make(1, 16, 1, 128, 90, torch.float16, seed=3)
    check(emu, q, k, v, torch.tensor([90]), chunk_len=64)


def test_empty_sequences_and_strided_caches(emu):
    B, T, Hkv, H, D = 3, 96, 2, 4, 64
    k = torch.randn(B, T, Hkv, D).transpose(1, 2)  # [B, Tmax, Hkv, D] storage
    v = torch.randn(B, T, Hkv, D).transpose(1, 2)
    q = torch.randn(B, H, D)
    lens = torch.tensor([0, 96, 5])
    check(emu, q, k, v, lens, chunk_len=32)
    out, lse = run(emu, q, k, v, lens, chunk_len=32)
    assert torch.equal(out[0], torch.zeros_like(out[0]))
    assert lse[0].tolist() == [-math.inf] * H


def test_plan_fills_the_gpu():
    emu = load_binding(
        "decode_attention", "tests/decode_attention_emulation.cpp", extra_cflags=EMU_FLAGS
    )
    chunk, splits = emu.plan(8, 8192, 108)  # one sequence on an A100
    assert chunk % 32 == 0 and chunk >= 256 and 8 * splits >= 108
    assert emu.plan(8, 200, 108) == (256, 1)  # a short cache is one chunk


def test_a_sequence_does_not_depend_on_the_batch(emu):
    """A server batches requests: a sequence's output must be bit for bit the
    same alone and beside others (the plan's chunks must not depend on B).
    float32 outputs: a different chunking shows in their last bits."""
    q, k, v = make(4, 6, 2, 64, 1500, torch.float32, seed=5)
    lens = torch.tensor([1400, 40, 1500, 300])
    together, together_lse = run(emu, q, k, v, lens)
    for b in range(4):
        alone, alone_lse = run(emu, q[b : b + 1], k[b : b + 1], v[b : b + 1], lens[b : b + 1])
        assert torch.equal(alone[0], together[b]) and torch.equal(alone_lse[0], together_lse[b])
