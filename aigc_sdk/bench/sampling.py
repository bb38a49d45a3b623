"""Benchmark cases of sample: the fused op against the PyTorch pipeline most
code uses (softmax, sort, cumsum, mask, multinomial), eager and under
torch.compile. The setting is a top-p draw (temperature 0.8, top_p 0.9) on
random logits; every contender draws one token per row.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import torch

from .. import ops

FULL = [(B, V) for B in (1, 8, 64) for V in (32000, 50257, 128256)]
QUICK = [(1, 50257), (8, 32000), (64, 32000)]
TEMPERATURE, TOP_P = 0.8, 0.9


@dataclass(frozen=True)
class SamplingCase:
    B: int
    V: int
    dtype: torch.dtype = torch.float32

    @property
    def name(self) -> str:
        dt = str(self.dtype).removeprefix("torch.")
        return f"B={self.B} V={self.V} {dt} top_p={TOP_P}"

    @property
    def logits_bytes(self) -> int:
        return self.B * self.V * self.dtype.itemsize

    @property
    def bytes_read(self) -> int:
        """The bytes the figure of merit counts: the logits, read once."""
        return self.logits_bytes

    def inputs(self, seed: int = 0) -> tuple[torch.Tensor]:
        g = torch.Generator().manual_seed(seed)
        return ((torch.randn(self.B, self.V, generator=g) * 3).to(self.dtype),)

    def contenders(self, inputs, compile: bool = True) -> dict:
        """name -> zero-argument callable; "aigc" is the fused op, the rest are peers."""
        (logits,) = inputs
        gen = torch.Generator().manual_seed(1)
        out = {
            "aigc": lambda: ops.sample(logits, temperature=TEMPERATURE, top_p=TOP_P, seed=1),
            "torch": lambda: torch_top_p(logits, TEMPERATURE, TOP_P, gen),
        }
        if compile:
            compiled = compiled_torch_top_p()
            out["torch+compile"] = lambda: compiled(logits, TEMPERATURE, TOP_P, gen)
        return out


def torch_top_p(
    logits: torch.Tensor, temperature: float, top_p: float, generator: torch.Generator
) -> torch.Tensor:
    """Top-p sampling as PyTorch code usually writes it (full sort of every row)."""
    probs = torch.softmax(logits.float() / temperature, dim=-1)
    sorted_probs, order = probs.sort(dim=-1, descending=True)
    before = sorted_probs.cumsum(dim=-1) - sorted_probs  # mass of the better tokens
    sorted_probs = sorted_probs.masked_fill(before > top_p, 0.0)
    choice = torch.multinomial(sorted_probs, 1, generator=generator)
    return order.gather(-1, choice).squeeze(-1)


@functools.cache
def compiled_torch_top_p():
    return torch.compile(torch_top_p, dynamic=False)


def cases(quick: bool = True, dtype: torch.dtype = torch.float32) -> list[SamplingCase]:
    return [SamplingCase(B, V, dtype) for B, V in (QUICK if quick else FULL)]
