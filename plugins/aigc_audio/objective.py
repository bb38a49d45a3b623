"""The WaveNet's training objective and held-out score, shared by every loop."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from .data import ClipBank
from .model import START, WaveNet


def window_loss(model: WaveNet, window: torch.Tensor, labels: torch.Tensor | None, length: int):
    """Mean cross-entropy (nats per sample) of the last ``length`` samples of ``window`` [B, T].

    The model reads samples 0..T-2 and predicts 1..T-1; only the last
    ``length`` predictions count (their whole receptive field is real data).
    """
    logits = model(window[:, :-1], labels)[:, -length:]
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), window[:, -length:].reshape(-1))


@torch.no_grad()
def clip_nats(
    model: WaveNet, classes: torch.Tensor, labels: torch.Tensor | None, chunk: int = 4000
) -> torch.Tensor:
    """Mean cross-entropy (nats per sample) of whole clips ``classes`` [B, T] (teacher forcing).

    Every sample is scored, sample 0 included, after a receptive field of
    START marks; long clips are cut into chunks that each carry their own context.
    """
    context = model.cfg.receptive_field
    B, T = classes.shape
    start = torch.full((B, context), START, dtype=torch.int64, device=classes.device)
    padded = torch.cat([start, classes.long()], 1)
    total = classes.new_zeros((), dtype=torch.float32)
    for start in range(0, T, chunk):
        length = min(chunk, T - start)
        piece = padded[:, start : start + context + length]
        total += window_loss(model, piece, labels, length).float() * length
    return total / T


@torch.no_grad()
def heldout_bits(model: WaveNet, bank: ClipBank, batch: int = 4) -> float:
    """Bits per sample of every clip of ``bank`` under ``model``."""
    use_labels = model.label_embed is not None
    nats = 0.0
    for i in range(0, len(bank), batch):
        rows = bank.classes[i : i + batch]
        labels = bank.labels[i : i + batch] if use_labels else None
        nats += float(clip_nats(model, rows, labels)) * len(rows)
    return nats / len(bank) / math.log(2)
