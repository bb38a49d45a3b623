"""Decode attention: one new query token per sequence against its KV cache
(``torch.ops.aigc.decode_attention`` / ``decode_attention_lse``).

Grouped-query attention: query head ``h`` attends with KV head
``h // (H // Hkv)``, and the kernels read each KV head's cache once for all of
its query heads. Positions ``t >= seq_lens[b]`` of a cache are ignored (they
may hold anything). A sequence of length 0 gives ``out = 0`` and
``lse = -inf``. Softmax and accumulation are in float32 whatever the dtype.
Inference only (no autograd).
"""

from __future__ import annotations

import torch

from . import reference
from ._extension import has_kernel, op_defined, warn_fallback


def decode_attention(
    q: torch.Tensor,
    k_cache: torch.Tensor,
    v_cache: torch.Tensor,
    seq_lens: torch.Tensor,
    scale: float | None = None,
    *,
    return_lse: bool = False,
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """softmax(scale * q k^T) v over the first ``seq_lens[b]`` cache positions.

    q: [B, H, D]; k_cache, v_cache: [B, Hkv, Tmax, D] with H a multiple of
    Hkv, D a multiple of 8 (64, 80, 96, 128, ...); all float32, bfloat16 or
    float16 (CPU and CUDA), any strides with a contiguous last dimension
    (e.g. a [B, Tmax, Hkv, D] cache viewed with ``.transpose(1, 2)``).
    seq_lens: [B] int32/int64, each in [0, Tmax]. scale defaults to
    1/sqrt(D). Returns out [B, H, D] in q's dtype, and with
    ``return_lse=True`` also lse [B, H] float32, the natural log of the softmax
    normaliser (to merge with attention over other keys).
    """
    _check(q, k_cache, v_cache, seq_lens)
    scale = q.shape[-1] ** -0.5 if scale is None else float(scale)
    if q.stride(-1) != 1:
        q = q.contiguous()
    if k_cache.stride(-1) != 1:
        k_cache = k_cache.contiguous()
    if v_cache.stride(-1) != 1:
        v_cache = v_cache.contiguous()
    if has_kernel("decode_attention", q.device.type):
        if return_lse:
            return torch.ops.aigc.decode_attention_lse(q, k_cache, v_cache, seq_lens, scale)
        return torch.ops.aigc.decode_attention(q, k_cache, v_cache, seq_lens, scale)
    warn_fallback("decode_attention", q.device.type)
    if seq_lens.numel() and (int(seq_lens.min()) < 0 or int(seq_lens.max()) > k_cache.shape[2]):
        raise ValueError(f"decode_attention: seq_lens must be in [0, Tmax = {k_cache.shape[2]}]")
    out, lse = reference.decode_attention(q, k_cache, v_cache, seq_lens, scale)
    return (out, lse) if return_lse else out


def _check(q, k_cache, v_cache, seq_lens) -> None:
    for name, t in dict(q=q, k_cache=k_cache, v_cache=v_cache, seq_lens=seq_lens).items():
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"decode_attention: {name} must be a torch.Tensor, got {type(t)}")
    if q.dim() != 3:
        raise ValueError(f"decode_attention: q must have shape [B, H, D], got {tuple(q.shape)}")
    if k_cache.dim() != 4 or v_cache.shape != k_cache.shape:
        raise ValueError(
            "decode_attention: k_cache and v_cache must both have shape [B, Hkv, Tmax, D], "
            f"got {tuple(k_cache.shape)} and {tuple(v_cache.shape)}"
        )
    B, H, D = q.shape
    if k_cache.shape[0] != B or k_cache.shape[3] != D:
        raise ValueError(
            f"decode_attention: cache shape {tuple(k_cache.shape)} does not match q shape "
            f"{tuple(q.shape)} (want [B, Hkv, Tmax, D])"
        )
    if k_cache.shape[1] == 0 or H % k_cache.shape[1]:
        raise ValueError(
            f"decode_attention: the query heads H = {H} must be a multiple of the KV heads "
            f"Hkv = {k_cache.shape[1]}"
        )
    if D == 0 or D % 8:
        raise ValueError(f"decode_attention: head size D = {D} must be a positive multiple of 8")
    if q.dtype not in (torch.float32, torch.bfloat16, torch.float16):
        raise TypeError(f"decode_attention: q must be float32, bfloat16 or float16, got {q.dtype}")
    if k_cache.dtype != q.dtype or v_cache.dtype != q.dtype:
        raise TypeError(
            f"decode_attention: q, k_cache and v_cache must share a dtype, got {q.dtype}, "
            f"{k_cache.dtype}, {v_cache.dtype}"
        )
    if seq_lens.dtype not in (torch.int32, torch.int64) or tuple(seq_lens.shape) != (B,):
        raise ValueError(
            f"decode_attention: seq_lens must be an int32/int64 tensor of shape [{B}], "
            f"got {seq_lens.dtype} {tuple(seq_lens.shape)}"
        )
    for name, t in dict(k_cache=k_cache, v_cache=v_cache, seq_lens=seq_lens).items():
        if t.device != q.device:
            raise ValueError(f"decode_attention: {name} is on {t.device} but q is on {q.device}")


if op_defined("decode_attention"):

    @torch.library.register_fake("aigc::decode_attention")
    def _decode_attention_fake(q, k_cache, v_cache, seq_lens, scale):
        return torch.empty_like(q, memory_format=torch.contiguous_format)

    @torch.library.register_fake("aigc::decode_attention_lse")
    def _decode_attention_lse_fake(q, k_cache, v_cache, seq_lens, scale):
        out = torch.empty_like(q, memory_format=torch.contiguous_format)
        return out, q.new_empty(q.shape[:2], dtype=torch.float32)
