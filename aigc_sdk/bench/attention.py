"""Benchmark cases of decode_attention: the fused op against PyTorch's
F.scaled_dot_product_attention (eager, and under torch.compile), with the
fraction of the machine's read bandwidth each one reaches.

Decode attention reads every K/V byte once, so its figure of merit is
KV bytes / time / read bandwidth, the bandwidth measured in the same
interleaved rounds as the case (see aigc_sdk/bench/probes.py).
Shapes: H = 32 query heads, D = 128, full-length sequences (SDPA gets no mask),
Hkv = 32 (no GQA) or 8 (4:1 GQA, SDPA with enable_gqa=True).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from .. import ops

H, D = 32, 128
FULL = [(B, T, Hkv) for B in (1, 8, 32) for T in (512, 2048, 8192) for Hkv in (32, 8)]
QUICK = [(1, 2048, 32), (1, 2048, 8), (8, 2048, 32), (8, 2048, 8)]


@dataclass(frozen=True)
class AttentionCase:
    B: int
    T: int
    Hkv: int
    dtype: torch.dtype = torch.float32

    @property
    def name(self) -> str:
        dt = str(self.dtype).removeprefix("torch.")
        return f"B={self.B} T={self.T} H={H} Hkv={self.Hkv} D={D} {dt}"

    @property
    def kv_bytes(self) -> int:
        return 2 * self.B * self.Hkv * self.T * D * self.dtype.itemsize

    @property
    def bytes_read(self) -> int:
        """The bytes the figure of merit counts: the K/V caches, read once."""
        return self.kv_bytes

    def peak_bytes(self) -> int:
        """Memory the case needs: the caches, plus a GQA-expanded copy SDPA may make."""
        expansion = H // self.Hkv if self.Hkv != H else 0
        return self.kv_bytes * (1 + expansion)

    def inputs(self, seed: int = 0) -> tuple[torch.Tensor, ...]:
        g = torch.Generator().manual_seed(seed)
        q = torch.randn(self.B, H, D, generator=g, dtype=self.dtype)
        k = torch.randn(self.B, self.Hkv, self.T, D, generator=g, dtype=self.dtype)
        v = torch.randn(self.B, self.Hkv, self.T, D, generator=g, dtype=self.dtype)
        return q, k, v, torch.full((self.B,), self.T, dtype=torch.int32)

    def contenders(self, inputs, compile: bool = True) -> dict:
        """name -> zero-argument callable; "aigc" is the fused op, the rest are peers."""
        q, k, v, lens = inputs
        gqa = self.Hkv != H
        out = {
            "aigc": lambda: ops.decode_attention(q, k, v, lens),
            "sdpa": lambda: sdpa_decode(q, k, v, gqa),
        }
        if compile:
            compiled = compiled_sdpa_decode()
            out["sdpa+compile"] = lambda: compiled(q, k, v, gqa)
        return out


def sdpa_decode(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, gqa: bool) -> torch.Tensor:
    """Decode attention with PyTorch's SDPA: one query position per sequence."""
    return F.scaled_dot_product_attention(q.unsqueeze(2), k, v, enable_gqa=gqa).squeeze(2)


@functools.cache
def compiled_sdpa_decode():
    return torch.compile(sdpa_decode, dynamic=False)


def cases(quick: bool = True, dtype: torch.dtype = torch.float32) -> list[AttentionCase]:
    return [AttentionCase(B, T, Hkv, dtype) for B, T, Hkv in (QUICK if quick else FULL)]
