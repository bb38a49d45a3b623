"""Token streams for language-model training, and held-out bits per byte."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from .tokenizer import BPETokenizer


def token_stream(tokenizer: BPETokenizer, texts: list[str]) -> torch.Tensor:
    """All texts encoded and joined, each followed by ``<|endoftext|>`` (int32 to save memory)."""
    ids: list[int] = []
    for encoded in tokenizer.encode_batch(texts):
        ids.extend(encoded)
        ids.append(tokenizer.eos_id)
    return torch.tensor(ids, dtype=torch.int32)


def random_blocks(
    stream: torch.Tensor, batch: int, block: int, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """``batch`` random windows of the stream: inputs and next-token targets [batch, block]."""
    starts = torch.randint(len(stream) - block - 1, (batch,), generator=generator)
    window = torch.stack([stream[s : s + block + 1] for s in starts.tolist()]).long()
    return window[:, :-1], window[:, 1:]


@torch.inference_mode()
def bits_per_byte(
    model: torch.nn.Module,
    stream: torch.Tensor,
    token_bytes: list[bytes],
    block: int,
    batch: int = 8,
    max_tokens: int | None = None,
) -> dict[str, float]:
    """Held-out cross-entropy of ``stream`` in bits per UTF-8 byte (and nats per token).

    The stream is cut into consecutive blocks; every token but the first of
    each block is predicted once. ``<|endoftext|>`` is predicted too (its loss
    counts) but has no bytes, so the figure is, if anything, pessimistic.
    """
    was_training = model.training
    model.eval()
    stream = stream[: max_tokens + 1] if max_tokens else stream
    lengths = torch.tensor([len(b) for b in token_bytes], dtype=torch.float64)
    nats, tokens, nbytes = 0.0, 0, 0.0
    starts = list(range(0, len(stream) - 1, block))
    for i in range(0, len(starts), batch):
        rows = [stream[s : s + block + 1].long() for s in starts[i : i + batch]]
        width = max(len(r) for r in rows)
        padded = torch.full((len(rows), width), -1, dtype=torch.long)
        for r, row in enumerate(rows):
            padded[r, : len(row)] = row
        x, y = padded[:, :-1].clamp_min(0), padded[:, 1:]
        logits = model(x)
        loss = F.cross_entropy(logits.flatten(0, 1).float(), y.flatten(), reduction="sum",
                               ignore_index=-1)  # fmt: skip
        nats += float(loss)
        valid = y[y >= 0]
        tokens += valid.numel()
        nbytes += float(lengths[valid].sum())
    model.train(was_training)
    return {
        "loss": nats / tokens,
        "bits_per_byte": nats / math.log(2) / nbytes,
        "tokens": tokens,
        "bytes": nbytes,
    }
