"""The WaveNet's training objective and held-out score, shared by every loop."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from .data import ClipBank
from .model import WaveNet


def window_loss(model: WaveNet, window: torch.Tensor, labels: torch.Tensor | None, length: int):
    """Mean cross-entropy (nats per sample) of the last ``length`` samples of ``window`` [B, T].

    The model reads samples 0..T-2 and predicts 1..T-1; only the last
    ``length`` predictions count (their whole receptive field is real data).
    """
    logits = model(window[:, :-1], labels)[:, -length:]
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), window[:, -length:].reshape(-1))


@torch.no_grad()
def heldout_bits(model: WaveNet, bank: ClipBank, batch: int = 4, chunk: int = 4000) -> float:
    """Bits per sample of every clip of ``bank`` under ``model`` (teacher forcing).

    Each clip is scored whole, sample 0 included, after a receptive field of
    silence; long clips are cut into chunks that each carry their own context.
    """
    context = model.cfg.receptive_field - 1
    # One more silent sample in front: the input from which sample 0 is predicted.
    windows, labels = bank.whole(context + 1)
    use_labels = model.label_embed is not None
    total, count = 0.0, 0
    T = bank.classes.shape[1]
    for i in range(0, len(windows), batch):
        rows, lab = windows[i : i + batch], labels[i : i + batch] if use_labels else None
        for start in range(0, T, chunk):
            length = min(chunk, T - start)
            piece = rows[:, start : start + context + 1 + length]
            total += float(window_loss(model, piece, lab, length)) * length * len(rows)
            count += length * len(rows)
    return total / count / math.log(2)
