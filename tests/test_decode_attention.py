"""aigc.decode_attention against the PyTorch reference and SDPA."""

import math

import pytest
import torch
import torch.nn.functional as F
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from aigc_sdk import ops
from aigc_sdk.ops import reference
from aigc_sdk.ops._extension import has_kernel

pytestmark = pytest.mark.skipif(
    not has_kernel("decode_attention", "cpu"), reason="extension not built"
)

TOL = {torch.float32: 2e-5, torch.bfloat16: 2e-2, torch.float16: 2e-3}


def make(B, H, Hkv, D, T, dtype, seed=0):
    g = torch.Generator().manual_seed(seed)
    q = torch.randn(B, H, D, generator=g).to(dtype)
    k = torch.randn(B, Hkv, T, D, generator=g).to(dtype)
    v = torch.randn(B, Hkv, T, D, generator=g).to(dtype)
    return q, k, v


def assert_matches_reference(q, k, v, lens, scale=None):
    out, lse = ops.decode_attention(q, k, v, lens, scale, return_lse=True)
    want_out, want_lse = reference.decode_attention(q, k, v, lens, scale)
    assert out.dtype == q.dtype and out.shape == q.shape
    tol = TOL[q.dtype]
    torch.testing.assert_close(out.float(), want_out.float(), atol=tol, rtol=tol)
    torch.testing.assert_close(lse, want_lse, atol=1e-4, rtol=1e-5)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    B=st.integers(1, 4),
    Hkv=st.sampled_from([1, 2, 3]),
    G=st.sampled_from([1, 2, 3, 4, 5, 8]),
    D=st.sampled_from([8, 64, 80, 96, 128]),
    T=st.sampled_from([1, 5, 31, 32, 33, 300, 1100]),
    dtype=st.sampled_from(list(TOL)),
    lens_kind=st.sampled_from(["full", "random", "with_empty"]),
    seed=st.integers(0, 2**31),
)
def test_matches_reference(B, Hkv, G, D, T, dtype, lens_kind, seed):
    q, k, v = make(B, G * Hkv, Hkv, D, T, dtype, seed)
    g = torch.Generator().manual_seed(seed)
    lens = {
        "full": torch.full((B,), T),
        "random": torch.randint(1, T + 1, (B,), generator=g),
        "with_empty": torch.randint(0, T + 1, (B,), generator=g),
    }[lens_kind]
    if lens_kind == "with_empty":
        lens[0] = 0
    assert_matches_reference(q, k, v, lens.to(torch.int32 if seed % 2 else torch.int64))


@pytest.mark.parametrize("dtype", list(TOL))
def test_long_sequences_split_into_chunks_and_merge(dtype):
    # One sequence, one KV head: the kernel splits the KV positions across work
    # items and merges their softmax states.
    q, k, v = make(1, 4, 1, 128, 9000, dtype, seed=3)
    assert_matches_reference(q, k, v, torch.tensor([8999]))
    q, k, v = make(3, 8, 2, 64, 5000, dtype, seed=4)
    assert_matches_reference(q, k, v, torch.tensor([5000, 1, 2600]), scale=0.3)


def test_a_sequence_does_not_depend_on_the_batch_or_the_threads():
    """A server batches requests: a sequence's output must be bit for bit the same
    alone, beside others of any length, and on one or two threads (long ones are
    split into chunks and merged, so the chunks must not depend on the rest).
    float32 outputs: a different chunking shows in their last bits."""
    q, k, v = make(4, 6, 2, 64, 3000, torch.float32, seed=5)
    lens = torch.tensor([2900, 40, 3000, 300])
    threads = torch.get_num_threads()
    try:
        results = []
        for n in (1, 2):
            torch.set_num_threads(n)
            together = ops.decode_attention(q, k, v, lens)
            alone = [
                ops.decode_attention(q[b : b + 1], k[b : b + 1], v[b : b + 1], lens[b : b + 1])[0]
                for b in range(4)
            ]
            results += [together, torch.stack(alone)]
    finally:
        torch.set_num_threads(threads)
    for other in results[1:]:
        assert torch.equal(other, results[0])


@pytest.mark.parametrize("dtype", list(TOL))
@pytest.mark.parametrize("G", [2, 3, 4, 6, 8, 9])
@pytest.mark.parametrize("D", [64, 80, 96, 128])
def test_head_blocks(G, D, dtype):
    # With AVX-512 a G that is a multiple of 4 runs four heads a pass over K
    # and V, a multiple of 3 three, another even G two: every head of each
    # block, tiles of odd and even length (the quads take rows two at a time,
    # the others up to four), and a cache whose rows are strided
    # ([B, Tmax, Hkv, D] viewed as [B, Hkv, Tmax, D]).
    q, k, v = make(3, 2 * G, 2, D, 70, dtype, seed=G + D)
    assert_matches_reference(q, k, v, torch.tensor([70, 33, 1]))
    k_strided = k.transpose(1, 2).contiguous().transpose(1, 2)
    v_strided = v.transpose(1, 2).contiguous().transpose(1, 2)
    assert_matches_reference(q, k_strided, v_strided, torch.tensor([66, 3, 31]))


def test_head_quads_inf_in_a_lone_last_row():
    # A tile's last row when its length is odd: an inf in V there is inf in
    # the output, as in the reference, not NaN.
    q, k, v = make(1, 8, 2, 128, 40, torch.float32, seed=9)
    v[0, 0, 32, 5] = math.inf
    out = ops.decode_attention(q, k, v, torch.tensor([33]))
    want, _ = reference.decode_attention(q, k, v, torch.tensor([33]))
    assert out[0, :4, 5].tolist() == [math.inf] * 4
    assert not out.isnan().any()
    torch.testing.assert_close(out, want, atol=2e-5, rtol=2e-5)


def test_agrees_with_sdpa_and_gqa():
    q, k, v = make(2, 32, 8, 128, 700, torch.float32, seed=5)
    lens = torch.tensor([700, 700])
    want = F.scaled_dot_product_attention(q.unsqueeze(2), k, v, enable_gqa=True).squeeze(2)
    torch.testing.assert_close(ops.decode_attention(q, k, v, lens), want, atol=2e-5, rtol=2e-5)


def test_empty_sequence_gives_zeros_and_negative_infinity():
    q, k, v = make(2, 4, 2, 64, 10, torch.float32)
    out, lse = ops.decode_attention(q, k, v, torch.tensor([0, 10]), return_lse=True)
    assert torch.equal(out[0], torch.zeros_like(out[0]))
    assert lse[0].tolist() == [-math.inf] * 4
    assert torch.isfinite(lse[1]).all()
    q, k, v = make(2, 2, 2, 64, 0, torch.float32)  # Tmax = 0
    assert torch.equal(ops.decode_attention(q, k, v, torch.tensor([0, 0])), torch.zeros_like(q))


def test_positions_past_the_length_are_ignored():
    q, k, v = make(1, 2, 1, 64, 50, torch.float32)
    k2, v2 = k.clone(), v.clone()
    k2[:, :, 20:] = math.nan
    v2[:, :, 20:] = 1e30
    lens = torch.tensor([20])
    assert torch.equal(ops.decode_attention(q, k, v, lens), ops.decode_attention(q, k2, v2, lens))


def test_strided_caches():
    # A [B, Tmax, Hkv, D] cache viewed as [B, Hkv, Tmax, D], and a strided q.
    B, T, Hkv, H, D = 2, 100, 2, 4, 64
    k = torch.randn(B, T, Hkv, D).transpose(1, 2)
    v = torch.randn(B, T, Hkv, D).transpose(1, 2)
    q = torch.randn(H, B, D).transpose(0, 1)
    assert not (k.is_contiguous() or q.is_contiguous())
    assert_matches_reference(q, k, v, torch.tensor([100, 37]))
    # A non-contiguous last dimension is copied by the wrapper.
    assert_matches_reference(q, k, torch.randn(B, Hkv, D, T).transpose(2, 3), torch.tensor([3, 9]))


def test_lse_merges_two_halves():
    # Attention over [0, T) from two halves merged through their lse.
    q, k, v = make(1, 4, 2, 64, 200, torch.float32, seed=8)
    o1, l1 = ops.decode_attention(
        q, k[:, :, :120], v[:, :, :120], torch.tensor([120]), return_lse=True
    )
    o2, l2 = ops.decode_attention(
        q, k[:, :, 120:], v[:, :, 120:], torch.tensor([80]), return_lse=True
    )
    lse = torch.logaddexp(l1, l2)
    merged = o1 * (l1 - lse).exp().unsqueeze(-1) + o2 * (l2 - lse).exp().unsqueeze(-1)
    out, want_lse = ops.decode_attention(q, k, v, torch.tensor([200]), return_lse=True)
    torch.testing.assert_close(merged, out, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(lse, want_lse)


def test_invalid_inputs_give_clear_errors():
    q, k, v = make(2, 4, 2, 64, 10, torch.float32)
    lens = torch.tensor([10, 10])
    with pytest.raises(ValueError, match="multiple of the KV heads"):
        ops.decode_attention(q[:, :3], k, v, lens)
    with pytest.raises(ValueError, match=r"seq_lens\[1\] = 11 is outside \[0, Tmax = 10\]"):
        ops.decode_attention(q, k, v, torch.tensor([10, 11]))
    with pytest.raises(ValueError, match=r"seq_lens\[0\] = -1"):
        ops.decode_attention(q, k, v, torch.tensor([-1, 0]))
    with pytest.raises(TypeError, match="must share a dtype"):
        ops.decode_attention(q, k.bfloat16(), v, lens)
    with pytest.raises(TypeError, match="q must be float32"):
        ops.decode_attention(q.double(), k.double(), v.double(), lens)
    with pytest.raises(ValueError, match="seq_lens must be an int32/int64 tensor"):
        ops.decode_attention(q, k, v, lens.float())
    with pytest.raises(ValueError, match="must both have shape"):
        ops.decode_attention(q, k, v[:, :, :5], lens)
    with pytest.raises(ValueError, match="multiple of 8"):
        ops.decode_attention(q[..., :60], k[..., :60], v[..., :60], lens)
    with pytest.raises(ValueError, match=r"D\) of q, k_cache and v_cache must be contiguous"):
        torch.ops.aigc.decode_attention(
            q, k, v.transpose(2, 3).contiguous().transpose(2, 3), lens, 0.1
        )


def test_opcheck():
    q, k, v = make(2, 4, 2, 64, 40, torch.float32)
    lens = torch.tensor([40, 7], dtype=torch.int32)
    for op in (
        torch.ops.aigc.decode_attention.default,
        torch.ops.aigc.decode_attention_lse.default,
    ):
        torch.library.opcheck(op, (q, k, v, lens, 0.125))


def test_reference_fallback(monkeypatch):
    q, k, v = make(1, 2, 1, 64, 20, torch.float32)
    lens = torch.tensor([15])
    want = ops.decode_attention(q, k, v, lens)
    monkeypatch.setattr(ops.attention, "has_kernel", lambda op, device: False)
    monkeypatch.setattr(ops._extension, "_warned", set())
    with pytest.warns(RuntimeWarning, match="pure-PyTorch reference"):
        got = ops.decode_attention(q, k, v, lens)
    torch.testing.assert_close(got, want, atol=1e-6, rtol=1e-5)
