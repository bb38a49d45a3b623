"""The ``chat`` text generator: a real language model, chat or plain completion.

``messages=[{"role": "user", "content": ...}, ...]`` is rendered with the model's
own chat template; a plain ``prompt`` is sent as one user message (after
``system``, if given), or, with ``raw=True`` or for a model without a chat
template, tokenized as it is. Generation ends at the model's end-of-turn and
end-of-text tokens, at a ``stop`` string (kept at the end of the text, like the
SDK's other text generators), after ``max_new_tokens``, or when the context is full.

Every sequence of a batch draws from its own random stream (seed, row, step), so
the same seed gives the same text whatever else is in the batch.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import torch

from aigc_sdk import (
    GenerationResult,
    Generator,
    RequestError,
    TextStream,
    check_device,
    ops,
    resolve_seed,
)

from .chat_template import render_chat
from .loading import DTYPES, load
from .model import KVCache, LanguageModel
from .request import ChatRequest


class ChatGenerator(Generator):
    modality = "text"
    Request = ChatRequest
    thread_safe = True  # each call has its own KV cache; the weights are only read

    def __init__(
        self,
        weights: str | Path | None = None,
        device: str = "cpu",
        dtype: str = "float32",
        quantized: bool = True,
    ) -> None:
        """``weights``: a .gguf file or a Hugging Face folder (default: SmolLM2-135M-Instruct).
        ``dtype``: the activations' (and unquantized weights') dtype. ``quantized``: keep a
        GGUF file's quantized matrices in their block format (False dequantizes them)."""
        if dtype not in DTYPES:
            raise RequestError(f"dtype must be one of {', '.join(DTYPES)}, got {dtype!r}")
        if check_device(device).type != "cpu":
            raise RequestError(f"device {device!r}: the chat generator runs on the cpu")
        if not isinstance(quantized, bool):
            raise RequestError(f"quantized must be true or false, got {quantized!r}")
        cfg, tensors, tokenizer = load(weights, DTYPES[dtype], quantized)
        self.config, self.tokenizer = cfg, tokenizer
        self.model = LanguageModel(cfg, tensors)
        self.dtype = dtype

    @property
    def context_length(self) -> int:
        return self.config.context_length

    # -- prompts ---------------------------------------------------------------------

    def prompt_ids(self, request: ChatRequest) -> list[list[int]]:
        """The token ids of each sequence's prompt (checked against the context length)."""
        tok = self.tokenizer
        conversations: list[list[dict] | None]
        if request.messages is not None:
            conversations = [list(request.messages)] * request.n
        elif request.raw or tok.chat_template is None:
            conversations = [None] * len(request.prompts)
        else:
            conversations = [[{"role": "user", "content": p}] for p in request.prompts]
        prompts = []
        for row, messages in enumerate(conversations):
            if messages is None:
                ids = tok.encode(request.prompts[row])
                if not ids:  # nothing to condition on: start from the start-of-text token
                    start = tok.bos_id if tok.bos_id is not None else tok.eos_id
                    ids = [start]
            else:
                if request.system is not None and messages[0]["role"] != "system":
                    messages = [{"role": "system", "content": request.system}, *messages]
                text = render_chat(
                    tok.chat_template,
                    messages,
                    add_generation_prompt=True,
                    bos_token=tok.bos_token,
                    eos_token=tok.eos_token,
                )
                ids = tok.encode(text, add_special_tokens=False)
            if len(ids) >= self.context_length:
                raise RequestError(
                    f"the prompt is {len(ids)} tokens; this model's context length is "
                    f"{self.context_length} tokens"
                )
            prompts.append(ids)
        return prompts

    def batch_engine(self, max_batch: int, context: int | None = None):
        """Continuous batching of this model's requests (``aigc_llm.batching.BatchEngine``)."""
        from .batching import BatchEngine

        return BatchEngine(self, max_batch, context)

    # -- generation ------------------------------------------------------------------

    def _events(self, request: ChatRequest, seed: int, tokens_out: list[list[int]] | None = None):
        """(row, text piece) as each sequence grows; ``tokens_out`` gets each row's tokens."""
        prompts = self.prompt_ids(request)
        B = len(prompts)
        longest = max(len(p) for p in prompts)
        max_len = min(self.context_length, longest + request.max_new_tokens)
        texts = [
            TextStream(
                request.stop, decoder=self.tokenizer.stream_decoder(skip_special_tokens=True)
            )
            for _ in prompts
        ]
        if request.max_new_tokens == 0:
            return
        cache = KVCache(self.config, B, max_len, self.model.dtype)
        logits = self.model.prefill(prompts, cache, list(range(B)))
        draw = _Sampler(request, seed, prompts, max_len)
        stop_ids = self.tokenizer.stop_ids
        active = torch.ones(B, dtype=torch.bool)
        for step in range(request.max_new_tokens):
            tokens = draw(logits, step)
            for row, token in enumerate(tokens.tolist()):
                text = texts[row]
                if text.done:
                    continue
                if tokens_out is not None:
                    tokens_out[row].append(token)
                piece = text.finish() if token in stop_ids else text.push(token)
                if piece:
                    yield row, piece
                if text.done:
                    active[row] = False
            if not active.any() or step + 1 == request.max_new_tokens:
                break
            if int(cache.lengths.max()) >= max_len:  # the context is full
                break
            draw.record(tokens, active)
            logits = self.model.step(tokens, cache, active)
        for row, text in enumerate(texts):
            if not text.done and (piece := text.finish()):
                yield row, piece

    def generate(self, request: ChatRequest) -> GenerationResult:
        seed = resolve_seed(request.seed)
        rows = len(request.prompts) if request.messages is None else request.n
        pieces: list[list[str]] = [[] for _ in range(rows)]
        tokens: list[list[int]] = [[] for _ in range(rows)]
        for row, piece in self._events(request, seed, tokens):
            pieces[row].append(piece)
        return GenerationResult(
            "text",
            texts=["".join(p) for p in pieces],
            tensors={"tokens": [torch.tensor(t, dtype=torch.int64) for t in tokens]},
            seed=seed,
        )

    def stream(self, request: ChatRequest) -> Iterator[str]:
        """Yields the first sequence's text as it decodes, never splitting a character;
        the other sequences of a batch follow, each after a blank line."""
        seed = resolve_seed(request.seed)
        later: dict[int, list[str]] = {}
        for row, piece in self._events(request, seed):
            if row == 0:
                yield piece
            else:
                later.setdefault(row, []).append(piece)
        for row in sorted(later):
            yield "\n\n"
            yield from later[row]


class _Sampler:
    """Draws each row's next token with the fused sampler: per-row parameters, and
    random numbers keyed by (seed, row, step) so rows never depend on each other."""

    def __init__(self, request: ChatRequest, seed: int, prompts: list[list[int]], max_len: int):
        B = len(prompts)

        def full(value, dtype):
            return torch.full((B,), value, dtype=dtype)

        self.params = dict(
            temperature=full(request.temperature, torch.float32),
            top_k=full(request.top_k, torch.int64),
            top_p=full(request.top_p, torch.float32),
            min_p=full(request.min_p, torch.float32),
            seed=full((seed + 2**63) % 2**64 - 2**63, torch.int64),  # the 64 bits, signed
        )
        self.history = None
        if request.repetition_penalty != 1:
            self.history = torch.full((B, max_len), -1, dtype=torch.int64)
            for row, ids in enumerate(prompts):
                self.history[row, : len(ids)] = torch.tensor(ids)
            self.lengths = torch.tensor([len(p) for p in prompts])
            self.params["repetition_penalty"] = full(request.repetition_penalty, torch.float32)

    def __call__(self, logits: torch.Tensor, step: int) -> torch.Tensor:
        return ops.sample(logits, offset=step, prev_tokens=self.history, **self.params)

    def record(self, tokens: torch.Tensor, active: torch.Tensor) -> None:
        """Adds each active row's token to its history (for the repetition penalty)."""
        if self.history is None:
            return
        rows = torch.nonzero(active).flatten()
        columns = self.lengths[rows].clamp(max=self.history.shape[1] - 1)
        self.history[rows, columns] = tokens[rows]
        self.lengths[rows] += 1
