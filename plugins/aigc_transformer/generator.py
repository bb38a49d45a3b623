"""The ``transformer`` text generator: prompts in, text (or a stream of pieces) out.

Every prompt starts with ``<|endoftext|>``, which in training marks the start
of a file; generating it ends the sequence. A batch of prompts of different
lengths decodes together (ragged KV cache). Stop strings end a sequence and
are kept at the end of its text, like the SDK's other text generators.

Token healing (on by default): a prompt such as ``"def "`` ends in a token
(a lone space) that the tokenizer would rarely produce there, since BPE joins
a space to the word after it. The last prompt token is therefore taken back
and the first new token must start with its bytes, which are then left out
of the output: the model chooses ``" parse"`` instead of continuing after a
stray ``" "``.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import torch

from aigc_sdk import (
    GenerationResult,
    Generator,
    RequestError,
    TextRequest,
    TextStream,
    resolve_seed,
)

from . import pretrained
from .decode import BACKENDS, DecodeSession, DecodeWeights, Sampling, decode
from .model import Transformer
from .request import TransformerRequest
from .tokenizer import BPETokenizer, TextDecoder


class TransformerGenerator(Generator):
    modality = "text"
    Request = TransformerRequest
    thread_safe = True  # each call has its own KV cache; the weights are only read

    def __init__(
        self, weights: str | Path | None = None, device: str = "cpu", backend: str = "fused"
    ) -> None:
        model, tokenizer, config = pretrained.load(weights, device)
        self._setup(model, tokenizer, config, backend)

    @classmethod
    def from_model(
        cls, model: Transformer, tokenizer: BPETokenizer, backend: str = "fused"
    ) -> TransformerGenerator:
        """A generator around an in-memory model (e.g. the one being trained)."""
        generator = cls.__new__(cls)
        generator._setup(model.eval(), tokenizer, {"model": model.cfg.to_dict()}, backend)
        return generator

    def _setup(self, model, tokenizer, config, backend: str) -> None:
        if backend not in BACKENDS:
            raise ValueError(f"backend must be one of {', '.join(BACKENDS)}, got {backend!r}")
        self.model, self.tokenizer, self.config = model, tokenizer, config
        self.decode_weights = DecodeWeights(model)  # a snapshot of the weights
        self.backend = backend
        self._healing_cache: dict[bytes, list[int]] = {}

    # -- prompts ---------------------------------------------------------------

    def encode_prompt(self, prompt: str, max_new_tokens: int, which: str = "prompt") -> list[int]:
        """``<|endoftext|>`` + the prompt's tokens; a prompt that leaves no room for
        ``max_new_tokens`` in the context is a ``RequestError`` (never cut silently)."""
        limit = self.model.cfg.max_seq_len
        if max_new_tokens >= limit:
            raise RequestError(
                f"max_new_tokens must be < {limit} (this model's context length), "
                f"got {max_new_tokens}"
            )
        ids = [self.tokenizer.eos_id, *self.tokenizer.encode(prompt)]
        room = limit - max_new_tokens - 1  # the start marker takes one place
        if len(ids) - 1 > room:
            raise RequestError(
                f"{which} is {len(ids) - 1} tokens, over the {room} that fit: this model's "
                f"context length is {limit} tokens, {max_new_tokens} of them kept for "
                f"max_new_tokens (and 1 for the start marker); shorten it or lower max_new_tokens"
            )
        return ids

    def _heal(self, prompts: list[list[int]]):
        """Takes back each prompt's last token: (prompts, bytes taken back per prompt,
        [B, V] mask of the tokens allowed first)."""
        allowed = torch.ones((len(prompts), self.tokenizer.vocab_size), dtype=torch.bool)
        healed = []
        for row, ids in enumerate(prompts):
            if len(ids) < 2:  # only <|endoftext|>: nothing to heal
                healed.append(0)
                continue
            last = self.tokenizer.token_bytes[ids[-1]]
            allowed[row] = False
            allowed[row, self._tokens_starting_with(last)] = True
            healed.append(len(last))
            prompts[row] = ids[:-1]
        return prompts, healed, allowed

    def _tokens_starting_with(self, prefix: bytes) -> list[int]:
        if prefix not in self._healing_cache:  # a race only computes one entry twice
            self._healing_cache[prefix] = self.tokenizer.tokens_starting_with(prefix)
        return self._healing_cache[prefix]

    # -- generation --------------------------------------------------------------

    def _events(
        self, request: TextRequest, seed: int, tokens_out: list[list[int]] | None = None
    ) -> Iterator[tuple[int, str]]:
        """(row, text piece) as each sequence of the batch grows. ``tokens_out`` (one
        list per row) receives each sequence's tokens, end-of-text included."""
        batch = request.prompts
        one = isinstance(request.prompt, str)
        prompts = [
            self.encode_prompt(p, request.max_new_tokens, "prompt" if one else f"prompt {i + 1}")
            for i, p in enumerate(batch)
        ]
        healed, first_allowed = [0] * len(prompts), None
        if getattr(request, "token_healing", True) and request.max_new_tokens:
            prompts, healed, first_allowed = self._heal(prompts)
        sequences = [
            TextStream(request.stop, decoder=TextDecoder(self.tokenizer, skip)) for skip in healed
        ]
        session = DecodeSession(
            self.model,
            batch=len(prompts),
            max_len=max(len(p) for p in prompts) + request.max_new_tokens,
            backend=self.backend,
            weights=self.decode_weights,
        )
        sampling = Sampling(
            temperature=request.temperature,
            top_k=request.top_k,
            top_p=request.top_p,
            min_p=request.min_p,
            repetition_penalty=request.repetition_penalty,
            seed=seed,
        )
        eos = self.tokenizer.eos_id
        steps = decode(session, prompts, sampling, request.max_new_tokens, first_allowed)
        for tokens in steps:
            for row, token in enumerate(tokens.tolist()):
                seq = sequences[row]
                if seq.done:
                    continue
                if tokens_out is not None:
                    tokens_out[row].append(token)
                piece = seq.finish() if token == eos else seq.push(token)
                if piece:
                    yield row, piece
            if all(seq.done for seq in sequences):
                break
        for row, seq in enumerate(sequences):
            if not seq.done and (piece := seq.finish()):
                yield row, piece

    def generate(self, request: TextRequest) -> GenerationResult:
        seed = resolve_seed(request.seed)
        pieces: list[list[str]] = [[] for _ in request.prompts]
        tokens: list[list[int]] = [[] for _ in request.prompts]
        for row, piece in self._events(request, seed, tokens):
            pieces[row].append(piece)
        return GenerationResult(
            "text",
            texts=["".join(p) for p in pieces],
            tensors={"tokens": [torch.tensor(t, dtype=torch.int64) for t in tokens]},
            seed=seed,
        )

    def stream(self, request: TextRequest) -> Iterator[str]:
        """Yields the first sequence's text as it decodes, never splitting a character.

        A batch decodes together; the other sequences follow once it is done,
        each after a blank line (as ``GenerationResult.save`` separates texts),
        so the joined stream equals the joined texts of ``generate``.
        """
        seed = resolve_seed(request.seed)
        later: list[list[str]] = [[] for _ in request.prompts]
        for row, piece in self._events(request, seed):
            if row == 0:
                yield piece
            else:
                later[row].append(piece)
        for pieces in later[1:]:
            yield "\n\n"
            yield from pieces
