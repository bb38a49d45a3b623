"""A character-level Markov chain that streams text.

The chain's counts are tensors in a safetensors checkpoint like any model's
weights, and sampling honours the SDK's shared controls (temperature, top-k,
top-p, min-p, repetition penalty, stop strings, seed).

    python -m aigc_example.markov CORPUS.txt OUT_DIR   # count a corpus
    python -m aigc_example.markov                      # remake the default weights
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import torch

from aigc_sdk import (
    GenerationResult,
    Generator,
    TextRequest,
    TextStream,
    checkpoint,
    resolve_seed,
)

PLUGIN = "markov"
DEFAULT_WEIGHTS = Path(__file__).parent / "weights" / "markov"
ORDER = 3


def count(text: str, order: int = ORDER) -> dict[str, torch.Tensor]:
    """Counts which character follows each `order`-character context."""
    alphabet = sorted(set(text))
    index = {c: i for i, c in enumerate(alphabet)}
    ids = torch.tensor([index[c] for c in text], dtype=torch.int64)
    windows = ids.unfold(0, order + 1, 1)  # [N, order + 1]
    contexts, inverse = torch.unique(windows[:, :order], dim=0, return_inverse=True)
    table = torch.zeros(len(contexts), len(alphabet), dtype=torch.int32)
    table.index_put_(
        (inverse, windows[:, order]), torch.ones_like(inverse, dtype=torch.int32), accumulate=True
    )
    codepoints = torch.tensor([ord(c) for c in alphabet], dtype=torch.int32)
    # int16 keeps the default weights small; counts past 32767 change nothing audible.
    return {
        "alphabet": codepoints,
        "contexts": contexts.to(torch.int16),
        "counts": table.clamp_max(32767).to(torch.int16),
    }


def filter_logits(logits: torch.Tensor, request: TextRequest) -> torch.Tensor:
    """Applies temperature, top-k, top-p and min-p to one row of logits."""
    if request.temperature == 0:
        return torch.where(logits == logits.max(), 0.0, float("-inf"))
    logits = logits / request.temperature
    probs = logits.softmax(-1)
    keep = torch.ones_like(probs, dtype=torch.bool)
    if request.top_k:
        keep &= probs >= probs.topk(min(request.top_k, probs.numel())).values[-1]
    if request.top_p < 1:
        sorted_probs, order = probs.sort(descending=True)
        before = sorted_probs.cumsum(0) - sorted_probs
        keep_sorted = before < request.top_p
        keep &= torch.zeros_like(keep).scatter(0, order, keep_sorted)
    if request.min_p:
        keep &= probs >= request.min_p * probs.max()
    return logits.masked_fill(~keep, float("-inf"))


class MarkovGenerator(Generator):
    modality = "text"
    Request = TextRequest
    thread_safe = True

    def __init__(self, weights: str | Path | None = None, device: str = "cpu") -> None:
        _, tensors = checkpoint.load_pretrained(weights or DEFAULT_WEIGHTS, plugin=PLUGIN)
        self.alphabet = [chr(c) for c in tensors["alphabet"].tolist()]
        self.index = {c: i for i, c in enumerate(self.alphabet)}
        self.counts = tensors["counts"].float()
        self.rows = {tuple(ctx): i for i, ctx in enumerate(tensors["contexts"].tolist())}

    def _logits(self, context: list[int], history: list[int], penalty: float) -> torch.Tensor:
        row = self.rows.get(tuple(context[-ORDER:]))
        counts = self.counts[row] if row is not None else self.counts.sum(0)
        logits = counts.clamp_min(1e-3).log()
        if penalty != 1 and history:
            seen = torch.tensor(sorted(set(history)))
            logits[seen] = torch.where(
                logits[seen] > 0, logits[seen] / penalty, logits[seen] * penalty
            )
        return logits

    def _pieces(self, prompt: str, request: TextRequest, rng: torch.Generator) -> Iterator[str]:
        context = [self.index[c] for c in prompt if c in self.index]
        text = TextStream(request.stop)  # ends at the first stop string, kept in the text
        for _ in range(request.max_new_tokens):
            logits = filter_logits(
                self._logits(context, context, request.repetition_penalty), request
            )
            token = int(torch.multinomial(logits.softmax(-1), 1, generator=rng))
            context.append(token)
            piece = text.add(self.alphabet[token])
            if piece:
                yield piece
            if text.done:
                return

    def stream(self, request: TextRequest) -> Iterator[str]:
        rng = torch.Generator().manual_seed(resolve_seed(request.seed))
        for i, prompt in enumerate(request.prompts):
            if i:
                yield "\n\n"
            yield from self._pieces(prompt, request, rng)

    def generate(self, request: TextRequest) -> GenerationResult:
        seed = resolve_seed(request.seed)
        rng = torch.Generator().manual_seed(seed)
        texts = ["".join(self._pieces(p, request, rng)) for p in request.prompts]
        return GenerationResult("text", texts=texts, seed=seed)


def train(text: str, out: Path) -> Path:
    return checkpoint.save_pretrained(
        out, plugin=PLUGIN, config={"order": ORDER}, tensors=count(text)
    )


def default_corpus() -> str:
    """The docstrings of a few standard-library modules: on every machine, no download."""
    import argparse
    import collections
    import difflib
    import inspect
    import json
    import textwrap

    docs = []
    for module in (json, collections, difflib, argparse, textwrap, inspect):
        for name, obj in inspect.getmembers(module):
            doc = inspect.getdoc(obj)
            if doc and not name.startswith("_"):
                docs.append(doc)
    return "\n\n".join(docs)


if __name__ == "__main__":
    if len(sys.argv) == 3:
        print(train(Path(sys.argv[1]).read_text(encoding="utf-8"), Path(sys.argv[2])))
    else:
        print(train(default_corpus(), DEFAULT_WEIGHTS))
