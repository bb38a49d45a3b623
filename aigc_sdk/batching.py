"""Continuous batching: an optional capability of text generators, for servers.

A generator that can decode many requests together returns an engine from
``Generator.batch_engine(max_batch, context=None)``; the default returns None
and a host then runs requests one at a time through ``SDK.generate`` /
``SDK.stream``. ``aigc serve`` uses an engine when there is one. A generator
offering one follows this protocol (``aigc_llm.batching.BatchEngine`` is the
built-in one):

``engine.submit(request, listener) -> BatchTicket``
    Thread-safe, returns at once. ``request`` is the generator's checked
    request; a request the engine cannot take (a prompt longer than its
    context, more sequences than it has slots) raises ``RequestError`` here,
    before anything is queued. The engine owns one or more threads; from them
    it calls ``listener`` with a ``Piece`` for each new bit of text of each
    sequence of the request, in order, and with a ``Piece`` carrying a
    ``finish_reason`` as the last event of each sequence. A failure of the
    model ends the request with one call ``listener(exception)`` instead.
    The listener must return quickly (hand the event to a queue): it runs on
    the decode thread.

``ticket.cancel()``
    The request leaves the batch at the next step boundary, its slots freed;
    the listener is not called again. Cancelling a finished request is a no-op.

``engine.stats() -> BatchStats`` (waiting and running requests, slots in use)
and ``engine.close()`` (stops the threads; requests still pending get a
``RuntimeError``) complete it.

Each request keeps its own sampling parameters and seed; its text must not
depend on which other requests share its batch.
"""

from __future__ import annotations

import queue
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal, Protocol

if TYPE_CHECKING:
    from .generation import Request

__all__ = [
    "BatchEngine",
    "BatchStats",
    "BatchTicket",
    "FinishReason",
    "Listener",
    "Piece",
    "iter_pieces",
]

FinishReason = Literal["stop", "length"]


@dataclass(frozen=True)
class Piece:
    """New text of sequence ``index`` of a request.

    ``finish_reason`` is set on the sequence's last piece: ``"stop"`` (an end
    token or a stop string, which stays at the end of the text as in
    ``SDK.generate``) or ``"length"`` (``max_new_tokens`` or the context
    reached). ``tokens`` is the number of tokens the sequence has generated.
    """

    index: int
    text: str
    finish_reason: FinishReason | None = None
    tokens: int = 0


@dataclass(frozen=True)
class BatchStats:
    waiting: int  # requests submitted and not yet started
    running: int  # requests decoding
    slots_used: int  # sequences decoding
    slots: int


Listener = Callable[["Piece | BaseException"], None]


class BatchTicket(Protocol):
    """One submitted request."""

    seed: int  # the request's seed (drawn when the request had none)
    sequences: int  # how many sequences (answers) the request makes
    prompt_tokens: list[int]  # tokens in each sequence's prompt

    def cancel(self) -> None: ...


class BatchEngine(Protocol):
    max_batch: int  # the most sequences decoding at once
    context: int  # the most tokens (prompt and answer) one sequence holds

    def submit(self, request: Request, listener: Listener) -> BatchTicket: ...

    def stats(self) -> BatchStats: ...

    def close(self) -> None: ...


def iter_pieces(
    engine: BatchEngine, request: Request, timeout: float | None = None
) -> Iterator[Piece]:
    """Submits ``request`` and yields its pieces as they come (a blocking iterator).

    A model failure is raised here; leaving the loop early cancels the request.
    ``timeout`` bounds the wait for each piece (``queue.Empty`` when it passes).
    """
    events: queue.SimpleQueue[Piece | BaseException] = queue.SimpleQueue()
    ticket = engine.submit(request, events.put)
    remaining = ticket.sequences
    try:
        while remaining:
            event = events.get(timeout=timeout)
            if isinstance(event, BaseException):
                raise event
            if event.finish_reason is not None:
                remaining -= 1
            yield event
    finally:
        if remaining:
            ticket.cancel()
