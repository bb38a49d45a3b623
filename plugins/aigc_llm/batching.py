"""Continuous batching of chat requests over one KV cache of sequence slots.

``BatchEngine`` implements ``aigc_sdk.batching``'s engine protocol for the chat
generator. One decode thread owns a ``KVCache`` of ``max_batch`` slots of
``context`` positions each. At every step boundary it

1. drops cancelled requests and frees their slots;
2. admits waiting requests, first come first served, while enough slots are free
   for all their sequences: each is prefilled alone into its own slots, and its
   first tokens are drawn;
3. runs one ``LanguageModel.step`` over the slots in use (decode attention reads
   each slot's own length), then draws each request's next tokens.

A sequence that ends (end token, stop string, ``max_new_tokens``, full context)
frees its slot at once. Each row of a step costs its own multiplies, so the
batch runs at the narrowest of the widths 1, 2, 4, ..., ``max_batch`` that holds
its sequences: a step runs over the first ``width`` slots of the cache (a
``KVCache.prefix`` view), and when the width shrinks the sequences beyond it are
copied into free slots below (after ``SHRINK_AFTER`` steps: sequences come and
go). A lone request decodes as a batch of one.

Independence. Each request is sampled in its own call of ``ops.sample``, its
sequences as rows 0..n-1 and its own step count as the offset, exactly as
``ChatGenerator.generate`` does; the quantized matmuls of a decode step treat
each row alone. So a request's text does not depend on what shares its batch,
and equals ``generate``'s for the same seed while it fits the engine's context.
"""

from __future__ import annotations

import collections
import threading
from dataclasses import dataclass, field

import torch

from aigc_sdk import RequestError, TextStream
from aigc_sdk.batching import BatchStats, Listener, Piece
from aigc_sdk.generation import resolve_seed

from .generator import ChatGenerator, _Sampler
from .model import KVCache
from .request import ChatRequest

# Positions each sequence holds unless told otherwise. SmolLM2's float32 cache takes
# 46 KB a position: 8 slots of 1024 positions take 0.38 GB.
DEFAULT_CONTEXT = 1024
# Steps a narrower batch must have sufficed before the engine moves to it.
SHRINK_AFTER = 16


@dataclass(eq=False)
class _Job:
    """One submitted request and its decoding state."""

    request: ChatRequest
    listener: Listener
    seed: int
    prompts: list[list[int]]
    max_len: int  # the most positions any of its sequences may reach
    slots: list[int | None] = field(default_factory=list)  # per sequence; None once it ended
    lengths: list[int] = field(default_factory=list)  # per sequence, as in the cache
    tokens: list[int] = field(default_factory=list)  # per sequence, generated so far
    step: int = 0
    cancelled: bool = False
    texts: list[TextStream] = field(default_factory=list)
    sampler: _Sampler | None = None

    @property
    def sequences(self) -> int:
        return len(self.prompts)

    @property
    def prompt_tokens(self) -> list[int]:
        return [len(p) for p in self.prompts]

    def cancel(self) -> None:
        self.cancelled = True


class BatchEngine:
    """Decodes chat requests together; see the module docstring and ``aigc_sdk.batching``."""

    def __init__(
        self, generator: ChatGenerator, max_batch: int = 8, context: int | None = None
    ) -> None:
        if not isinstance(max_batch, int) or max_batch < 1:
            raise RequestError(f"max_batch must be an integer >= 1, got {max_batch!r}")
        if context is not None and (not isinstance(context, int) or context < 2):
            raise RequestError(f"context must be an integer >= 2, got {context!r}")
        self.generator = generator
        self.model = generator.model
        self.stop_ids = generator.tokenizer.stop_ids
        self.max_batch = max_batch
        self.context = min(context or DEFAULT_CONTEXT, generator.context_length)
        self.model.check_length(self.context)
        # Widths the batch runs at: powers of two, and max_batch.
        self.widths = sorted({min(2**k, max_batch) for k in range(max_batch.bit_length() + 1)})
        cfg, dtype = generator.config, self.model.dtype
        self._slots = KVCache(cfg, max_batch, self.context, dtype)
        self.cache = self._slots.prefix(1)  # the slots a step runs over
        self._owner: list[_Job | None] = [None]  # the job decoding in each slot of the cache
        self._next = torch.zeros(1, dtype=torch.int64)  # each slot's token to append
        self._narrow_steps = 0  # consecutive steps a narrower width would have held the batch
        self._waiting: collections.deque[_Job] = collections.deque()
        self._running: list[_Job] = []
        self._cond = threading.Condition()
        self._closed = False
        self._thread = threading.Thread(target=self._loop, name="aigc-chat-batch", daemon=True)
        self._thread.start()

    # -- the protocol ------------------------------------------------------------------

    def submit(self, request: ChatRequest, listener: Listener) -> _Job:
        if not isinstance(request, ChatRequest):
            raise RequestError(f"expected a ChatRequest, got {type(request).__name__}")
        prompts = self.generator.prompt_ids(request)
        if len(prompts) > self.max_batch:
            raise RequestError(
                f"n must be at most {self.max_batch} (the server's batch size), got {len(prompts)}"
            )
        longest = max(len(p) for p in prompts)
        if longest >= self.context:
            raise RequestError(
                f"the prompt is {longest} tokens; this server holds {self.context} tokens "
                f"per sequence (prompt and answer)"
            )
        job = _Job(
            request=request,
            listener=listener,
            seed=resolve_seed(request.seed),
            prompts=prompts,
            max_len=min(self.context, longest + request.max_new_tokens),
        )
        with self._cond:
            if self._closed:
                raise RuntimeError("the batch engine is closed")
            self._waiting.append(job)
            self._cond.notify()
        return job

    @property
    def width(self) -> int:
        """Slots of the cache in use now (the rows of a decode step)."""
        return self.cache.slots

    def stats(self) -> BatchStats:
        with self._cond:
            return BatchStats(
                waiting=len(self._waiting),
                running=len(self._running),
                slots_used=sum(o is not None for o in self._owner),
                slots=self.max_batch,
            )

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify()
        self._thread.join()

    # -- the decode thread ---------------------------------------------------------------

    def _loop(self) -> None:
        while True:
            with self._cond:
                while not self._closed and not self._waiting and not self._running:
                    self._cond.wait()
                if self._closed:
                    pending = list(self._waiting) + self._running
                    self._waiting.clear()
                    break
                admitted = self._admit()
            for job in admitted:
                self._start(job)
            self._drop_cancelled()
            if self._running:
                self._step()
        for job in pending:
            self._emit(job, RuntimeError("the batch engine was closed"))

    def _admit(self) -> list[_Job]:
        """Waiting jobs (in order) that fit the batch now, given slots at the width that
        holds them all; called under the lock."""
        decoding = sum(owner is not None for owner in self._owner)
        admitted = []
        while self._waiting:
            job = self._waiting[0]
            if job.cancelled:
                self._waiting.popleft()
                continue
            if decoding + job.sequences > self.max_batch:
                break
            self._waiting.popleft()
            decoding += job.sequences
            admitted.append(job)
        self._resize(decoding)
        free = [slot for slot, owner in enumerate(self._owner) if owner is None]
        for job in admitted:
            job.slots, free = free[: job.sequences], free[job.sequences :]
            for slot in job.slots:
                self._owner[slot] = job
            self._running.append(job)
        return admitted

    def _resize(self, sequences: int) -> None:
        """Moves the batch to the narrowest width holding ``sequences``: at once to grow
        or when no sequence must be copied; to shrink, only once a narrower width has
        sufficed for SHRINK_AFTER steps (sequences come and go: copying them back and
        forth would cost more than the wider steps)."""
        width = next(w for w in self.widths if w >= max(sequences, 1))
        decoding = any(owner is not None for owner in self._owner)
        if width < self.width and decoding:
            self._narrow_steps += 1
            if self._narrow_steps < SHRINK_AFTER:
                return
        self._narrow_steps = 0
        if width != self.width:
            self._repack(width)

    def _repack(self, width: int) -> None:
        """Moves the batch to ``width`` slots: the decoding sequences keep their order in
        the first slots (a sequence only ever moves down, so none is overwritten)."""
        owner: list[_Job | None] = [None] * width
        tokens = torch.zeros(width, dtype=torch.int64)
        moved: dict[int, int] = {}
        for slot, job in enumerate(self._owner):
            if job is None:
                continue
            to = len(moved)
            if to != slot:
                self._slots.move(slot, to)
            tokens[to], owner[to], moved[slot] = self._next[slot], job, to
        for job in self._running:
            job.slots = [None if s is None else moved[s] for s in job.slots]
        self._slots.lengths[len(moved) :] = 0
        self.cache, self._owner, self._next = self._slots.prefix(width), owner, tokens

    def _start(self, job: _Job) -> None:
        """Prefills a new job into its slots and draws its first tokens."""
        request = job.request
        decoder = self.generator.tokenizer.stream_decoder
        job.texts = [
            TextStream(request.stop, decoder=decoder(skip_special_tokens=True)) for _ in job.prompts
        ]
        job.lengths = [len(p) for p in job.prompts]
        job.tokens = [0] * job.sequences
        if request.max_new_tokens == 0:
            self._finish_all(job, "length")
            return
        try:
            logits = self.model.prefill(job.prompts, self.cache, list(job.slots))
            job.sampler = _Sampler(request, job.seed, job.prompts, job.max_len)
        except Exception as exc:  # noqa: BLE001 - the request fails, the engine goes on
            self._fail(job, exc)
            return
        self._advance(job, logits)

    def _step(self) -> None:
        """One decode step over every slot; free slots are masked out."""
        active = torch.tensor([owner is not None for owner in self._owner])
        try:
            logits = self.model.step(self._next, self.cache, active)
        except Exception as exc:  # noqa: BLE001 - every running request fails, the engine goes on
            for job in list(self._running):
                self._fail(job, exc)
            self.cache.lengths.zero_()
            return
        for job in list(self._running):
            for row, slot in enumerate(job.slots):
                if slot is not None:
                    job.lengths[row] += 1
            job.step += 1
            live = [(row, slot) for row, slot in enumerate(job.slots) if slot is not None]
            if len(live) == job.sequences:
                rows = logits[job.slots[0] : job.slots[0] + 1] if job.sequences == 1 else None
                rows = rows if rows is not None else logits[torch.tensor(job.slots)]
            else:  # ended sequences keep their row numbers (their draws are ignored)
                rows = torch.zeros((job.sequences, logits.shape[1]), dtype=logits.dtype)
                for row, slot in live:
                    rows[row] = logits[slot]
            self._advance(job, rows)

    def _advance(self, job: _Job, logits: torch.Tensor) -> None:
        """Draws ``job``'s tokens from ``logits`` [sequences, V] and hands out the text,
        mirroring ``ChatGenerator._events``."""
        try:
            tokens = job.sampler(logits, job.step)
        except Exception as exc:  # noqa: BLE001 - e.g. NaN logits: this request fails
            self._fail(job, exc)
            return
        for row, token in enumerate(tokens.tolist()):
            text = job.texts[row]
            if text.done or job.cancelled:
                continue
            job.tokens[row] += 1
            piece = text.finish() if token in self.stop_ids else text.push(token)
            if text.done:
                self._end(job, row, piece, "stop")
                continue
            self._next[job.slots[row]] = token
            if piece:
                self._emit(job, Piece(row, piece, None, job.tokens[row]))
        if job.cancelled or job not in self._running:
            return
        if job.step + 1 >= job.request.max_new_tokens or max(job.lengths) >= job.max_len:
            self._finish_all(job, "length")
            return
        if job.sampler.history is not None:
            live = torch.tensor([slot is not None for slot in job.slots])
            job.sampler.record(tokens, live)

    def _end(self, job: _Job, row: int, piece: str, reason: str) -> None:
        """Sequence ``row`` of ``job`` is done: its slot is freed and its last piece sent."""
        slot = job.slots[row]
        if slot is not None:
            self._free(slot)
            job.slots[row] = None
        if all(s is None for s in job.slots):
            self._unlist(job)
        self._emit(job, Piece(row, piece, reason, job.tokens[row]))

    def _finish_all(self, job: _Job, reason: str) -> None:
        for row, text in enumerate(job.texts):
            if not text.done:
                self._end(job, row, text.finish(), reason)
        self._unlist(job)

    def _fail(self, job: _Job, exc: BaseException) -> None:
        self._release(job)
        self._emit(job, exc)

    def _drop_cancelled(self) -> None:
        for job in [j for j in self._running if j.cancelled]:
            self._release(job)

    def _release(self, job: _Job) -> None:
        for row, slot in enumerate(job.slots):
            if slot is not None:
                self._free(slot)
                job.slots[row] = None
        self._unlist(job)

    def _unlist(self, job: _Job) -> None:
        with self._cond:
            if job in self._running:
                self._running.remove(job)

    def _free(self, slot: int) -> None:
        with self._cond:
            self._owner[slot] = None
        self.cache.lengths[slot] = 0
        self._next[slot] = 0

    def _emit(self, job: _Job, event: Piece | BaseException) -> None:
        if job.cancelled:
            return
        try:
            job.listener(event)
        except Exception:  # noqa: BLE001 - a broken listener cancels only its own request
            job.cancelled = True
            self._release(job)
