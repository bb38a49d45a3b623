"""How the server runs one generator: created on first use, bounded admission, and
either a continuous-batching engine (text generators offering one) or one request
at a time in a worker thread (every other generator, under the SDK's locks)."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from starlette.concurrency import run_in_threadpool

from ..batching import Piece
from ..errors import UserError
from ..generation import GenerationResult, Request
from .errors import APIError

if TYPE_CHECKING:
    from ..batching import BatchEngine
    from ..sdk import SDK
    from .metrics import Metrics

_END = object()


@dataclass
class TextRun:
    """A text generation under way: its pieces (``Piece``, one ``finish_reason`` per
    sequence) come from ``pieces()``; leaving that loop early cancels the rest."""

    sequences: int
    prompt_tokens: list[int]  # per sequence; 0 when the generator does not say
    seed: int | None
    _events: asyncio.Queue = field(repr=False)
    _cancel: Any = field(repr=False)
    first_piece_at: float | None = None
    completion_tokens: int = 0

    async def pieces(self) -> AsyncIterator[Piece]:
        remaining = self.sequences
        try:
            while remaining:
                event = await self._events.get()
                if isinstance(event, BaseException):
                    remaining = 0
                    raise event
                if event.text and self.first_piece_at is None:
                    self.first_piece_at = time.perf_counter()
                if event.finish_reason is not None:
                    remaining -= 1
                    self.completion_tokens += event.tokens
                yield event
        finally:
            if remaining:
                self._cancel()


class Lane:
    """One served generator."""

    def __init__(
        self,
        sdk: SDK,
        name: str,
        *,
        max_batch: int,
        max_queue: int,
        context: int | None,
        metrics: Metrics,
    ) -> None:
        entry = sdk.generators.get(name)
        self.sdk, self.name, self.metrics = sdk, name, metrics
        self.modality = entry.modality
        self.plugin = entry.plugin
        self.description = entry.description
        self.max_batch, self.max_queue, self.context = max_batch, max_queue, context
        self.generator = None
        self.engine: BatchEngine | None = None
        self.in_flight = 0  # admitted and not finished
        self.running = 0  # of those, generating now (without an engine)
        self._loading = asyncio.Lock()
        self._serial = asyncio.Lock()

    # -- admission -------------------------------------------------------------------

    @property
    def capacity(self) -> int:
        """Requests this lane holds (running and queued) before it answers 429."""
        if self.engine is not None:
            concurrent = self.engine.max_batch
        else:
            concurrent = self.max_batch if self.modality == "text" and self.generator is None else 1
        return concurrent + self.max_queue

    def admit(self) -> None:
        """Takes a place in the lane or raises a 429; ``leave()`` gives it back."""
        if self.in_flight >= self.capacity:
            self.metrics.generations.labels(self.name, "rejected").inc()
            raise APIError(
                429,
                f"generator {self.name!r} is busy: {self.in_flight} requests are running or "
                f"queued, its limit; retry later",
                code="queue_full",
                headers={"Retry-After": "1"},
            )
        self.in_flight += 1

    def leave(self) -> None:
        self.in_flight -= 1

    def load(self) -> tuple[int, int]:
        """(waiting, running) requests, for the metrics."""
        running = self.running
        if self.engine is not None:
            running = self.engine.stats().running
        return max(self.in_flight - running, 0), running

    # -- set-up ------------------------------------------------------------------------

    async def ready(self) -> None:
        """Creates the generator (and its engine) on first use; a failure is retried next time."""
        if self.generator is not None:
            return
        async with self._loading:
            if self.generator is not None:
                return
            try:
                generator = await run_in_threadpool(self.sdk.generator, self.name)
                engine = None
                if self.modality == "text":
                    engine = await run_in_threadpool(
                        generator.batch_engine, self.max_batch, self.context
                    )
            except Exception as exc:
                raise APIError(
                    500, f"generator {self.name!r} could not be loaded: {exc}", code="load_failed"
                ) from exc
            self.engine, self.generator = engine, generator

    def close(self) -> None:
        if self.engine is not None:
            self.engine.close()
            self.engine = None

    async def request(self, fields: dict[str, Any]) -> Request:
        """The checked request (a user mistake is a 400 naming the field)."""
        return await run_in_threadpool(lambda: self.sdk.request(self.name, **fields))

    # -- running ---------------------------------------------------------------------

    async def generate(self, fields: dict[str, Any]) -> GenerationResult:
        """One whole generation, one at a time, in a worker thread."""
        start = time.perf_counter()
        async with self._serial:
            self.running += 1
            try:
                result = await run_in_threadpool(lambda: self.sdk.generate(self.name, **fields))
            except UserError:
                raise
            except Exception:
                self._failed()
                raise
            finally:
                self.running -= 1
        self._done(start)
        return result

    async def text(self, request: Request, fields: dict[str, Any], stream: bool) -> TextRun:
        """Starts a text generation; its pieces come from ``TextRun.pieces()``."""
        loop = asyncio.get_running_loop()
        events: asyncio.Queue = asyncio.Queue()

        def deliver(event: Piece | BaseException) -> None:
            loop.call_soon_threadsafe(events.put_nowait, event)

        if self.engine is not None:
            ticket = await run_in_threadpool(self.engine.submit, request, deliver)
            self.sdk.notify("aigc_before_generate", generator=self.generator, request=request)
            return TextRun(ticket.sequences, list(ticket.prompt_tokens), ticket.seed, events,
                           ticket.cancel)  # fmt: skip
        sequences = _sequences(request)
        cancelled = threading.Event()
        if stream and sequences == 1:
            work = self._stream_serially(request, fields, deliver, cancelled)
        else:
            work = self._generate_serially(fields, sequences, deliver)
        task = asyncio.ensure_future(work)
        task.add_done_callback(lambda t: t.cancelled() or t.exception())  # no "never retrieved"
        return TextRun(sequences, [0] * sequences, request.seed, events, cancelled.set)

    async def _generate_serially(self, fields, sequences: int, deliver) -> None:
        try:
            result = await self.generate(fields)
        except BaseException as exc:  # noqa: BLE001 - the reader raises it
            deliver(exc)
            return
        tokens = result.tensors.get("tokens") if isinstance(result.tensors, dict) else None
        stops = _stops(fields)
        for index, text in enumerate(result.texts[:sequences]):
            count = len(tokens[index]) if tokens is not None and index < len(tokens) else 0
            reason = _finish_reason(text, stops, count, fields)
            deliver(Piece(index, text, reason, count))

    async def _stream_serially(self, request, fields, deliver, cancelled) -> None:
        start = time.perf_counter()
        stops = _stops(fields)
        async with self._serial:
            self.running += 1
            try:

                def pump() -> None:
                    text, count = [], 0
                    pieces = self.sdk.stream(self.name, **fields)
                    try:
                        for piece in pieces:
                            if cancelled.is_set():
                                return
                            text.append(piece)
                            count += 1
                            deliver(Piece(0, piece, None, count))
                    finally:
                        pieces.close()
                    reason = _finish_reason("".join(text), stops, count, fields)
                    deliver(Piece(0, "", reason, count))

                await run_in_threadpool(pump)
            except BaseException as exc:  # noqa: BLE001 - the reader raises it
                if not isinstance(exc, UserError):
                    self._failed()
                deliver(exc)
                return
            finally:
                self.running -= 1
        self._done(start)

    def finished(self, run: TextRun, request: Request, texts: list[str], start: float) -> None:
        """Counts a finished text generation (and tells the plugins, for an engine's)."""
        tokens = self.metrics.tokens
        tokens.labels(self.name, "prompt").inc(sum(run.prompt_tokens))
        tokens.labels(self.name, "completion").inc(run.completion_tokens)
        if run.first_piece_at is not None:
            self.metrics.first_token_seconds.labels(self.name).observe(run.first_piece_at - start)
        if self.engine is not None:
            self._done(start)
            result = GenerationResult("text", texts=texts, seed=run.seed)
            self.sdk.notify(
                "aigc_after_generate",
                generator=self.generator,
                request=request,
                result=result,
                seconds=time.perf_counter() - start,
            )

    def cancelled(self) -> None:
        self.metrics.generations.labels(self.name, "cancelled").inc()

    def failed(self) -> None:
        """An engine's request failed (a serial one is counted where it runs)."""
        if self.engine is not None:
            self._failed()

    def _failed(self) -> None:
        self.metrics.generations.labels(self.name, "error").inc()
        self.metrics.errors.labels(self.name).inc()

    def _done(self, start: float) -> None:
        self.metrics.generations.labels(self.name, "ok").inc()
        self.metrics.generation_seconds.labels(self.name).observe(time.perf_counter() - start)


def _sequences(request: Request) -> int:
    prompts = getattr(request, "prompts", None)
    if getattr(request, "messages", None) is None and isinstance(prompts, list):
        return len(prompts)
    return request.n


def _stops(fields: dict[str, Any]) -> tuple[str, ...]:
    stop = fields.get("stop") or ()
    return (stop,) if isinstance(stop, str) else tuple(stop)


def _finish_reason(text: str, stops: tuple[str, ...], tokens: int, fields: dict[str, Any]) -> str:
    """Why a generator without an engine stopped, as far as its text tells."""
    if any(text.endswith(s) for s in stops):
        return "stop"
    limit = fields.get("max_new_tokens")
    return "length" if limit is not None and tokens >= limit else "stop"
