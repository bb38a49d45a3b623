"""Continuous batching of the chat model (aigc_llm.batching.BatchEngine): requests join
and leave a running batch, and each request's text is what it would be alone."""

from __future__ import annotations

import queue
import threading
import time

import pytest

from aigc_sdk import RequestError
from aigc_sdk.batching import Piece, iter_pieces

ChatGenerator = pytest.importorskip("aigc_llm.generator").ChatGenerator

# Every test here decodes with the real chat model (SmolLM2): the model tier.
pytestmark = pytest.mark.model

# Varied sampling on purpose: every control a request carries must stay its own.
REQUESTS = [
    dict(prompt="Write a haiku about the sea.", seed=1, temperature=0.8, top_p=0.9),
    dict(prompt="What is 2+2?", seed=2, temperature=0),
    dict(prompt="Tell me a joke.", seed=3, temperature=1.0, top_k=40),
    dict(prompt="Name three colors.", seed=4, temperature=0.7, repetition_penalty=1.3),
    dict(prompt="Hi!", seed=5, temperature=1.2, min_p=0.05, n=2),
    dict(prompt="Explain gravity briefly.", seed=6, temperature=0.9, stop=[","]),
    dict(system="Answer in French.", prompt="What is Python?", seed=7, temperature=0.5),
    dict(prompt="Count to five.", seed=8, temperature=1.0),
]
TOKENS = 16


@pytest.fixture(scope="module")
def generator():
    return ChatGenerator()


@pytest.fixture(scope="module")
def engine(generator):
    engine = generator.batch_engine(8)
    yield engine
    engine.close()


def run(engine, request, busy: list | None = None, started: threading.Event | None = None):
    """Each sequence's (text, finish reason, tokens), recording (slots in use, batch width)
    at each piece in ``busy`` and setting ``started`` at the first piece."""
    events: queue.SimpleQueue = queue.SimpleQueue()

    def listener(event):
        if busy is not None:
            busy.append((engine.stats().slots_used, engine.width))
        if started is not None:
            started.set()
        events.put(event)

    ticket = engine.submit(request, listener)
    texts = [""] * ticket.sequences
    ends: dict[int, tuple[str, int]] = {}
    while len(ends) < ticket.sequences:
        event = events.get(timeout=120)
        if isinstance(event, BaseException):
            raise event
        assert isinstance(event, Piece) and event.index not in ends
        texts[event.index] += event.text
        if event.finish_reason is not None:
            ends[event.index] = (event.finish_reason, event.tokens)
    return [(texts[i], *ends[i]) for i in range(ticket.sequences)]


def test_a_request_gives_the_same_text_alone_and_among_seven_others(generator, engine):
    requests = [generator.Request(max_new_tokens=TOKENS, **fields) for fields in REQUESTS]
    lone: list = []
    alone = [run(engine, r, lone) for r in requests]
    assert {width for _, width in lone} == {1, 2}  # a batch of one (two for n=2)

    # The same requests at once, half of them joining a batch already decoding.
    together: list = [None] * len(requests)
    busy: list = []
    started = [threading.Event() for _ in requests]

    def worker(i):
        together[i] = run(engine, requests[i], busy, started[i])

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(len(requests))]
    for t in threads[:4]:
        t.start()
    assert all(event.wait(120) for event in started[:4])
    for t in threads[4:]:
        t.start()
    for t in threads:
        t.join(300)
    assert together == alone
    # Nine sequences for eight slots: the batch was full, and one request had to wait.
    # The batch grew as requests joined (its sequences copied to a wider cache).
    assert max(used for used, _ in busy) == 8
    assert {width for _, width in busy} >= {4, 8}

    for request, answers in zip(requests, alone, strict=True):
        result = generator.generate(request)
        assert [text for text, _, _ in answers] == result.texts
        assert [tokens for _, _, tokens in answers] == [len(t) for t in result.tensors["tokens"]]
    reasons = {reason for answers in alone for _, reason, _ in answers}
    assert reasons == {"stop", "length"}
    gravity = alone[5][0]
    assert gravity[1] == "stop" and gravity[0].endswith(",")  # the stop string is kept


def test_a_cancelled_request_frees_its_slot_at_once(generator, engine):
    request = generator.Request(prompt="Tell me a long story.", max_new_tokens=400, seed=9)
    pieces = iter_pieces(engine, request, timeout=120)
    for _ in range(3):
        next(pieces)
    assert engine.stats().slots_used == 1
    pieces.close()  # leaving the loop cancels
    deadline = time.monotonic() + 10
    while engine.stats().slots_used and time.monotonic() < deadline:
        time.sleep(0.01)
    assert engine.stats() == engine.stats().__class__(waiting=0, running=0, slots_used=0, slots=8)
    # The engine goes on serving, a lone request as a batch of one.
    widths: list = []
    again = run(engine, generator.Request(prompt="Hi!", max_new_tokens=4, seed=1), widths)
    assert again[0][2] >= 1 and {width for _, width in widths} == {1}


def test_requests_the_engine_cannot_hold_are_refused_before_queueing(generator):
    small = generator.batch_engine(2, context=64)
    try:
        long_prompt = generator.Request(prompt="word " * 80)
        with pytest.raises(RequestError, match="holds 64 tokens per sequence"):
            small.submit(long_prompt, lambda event: None)
        with pytest.raises(RequestError, match="n must be at most 2"):
            small.submit(generator.Request(prompt="Hi", n=3), lambda event: None)
        assert small.stats().waiting == 0

        # A full context ends the answer with "length", one token after the last position.
        counting = generator.Request(
            prompt="1, 2, 3, 4, 5, 6,", raw=True, temperature=0, max_new_tokens=500
        )
        prompt_tokens = len(generator.prompt_ids(counting)[0])
        [(text, reason, tokens)] = run(small, counting)
        assert reason == "length" and tokens == 64 - prompt_tokens + 1
        assert text.startswith(" 7, 8")

        [(text, reason, tokens)] = run(small, generator.Request(prompt="Hi", max_new_tokens=0))
        assert (text, reason, tokens) == ("", "length", 0)
    finally:
        small.close()


def test_closing_the_engine_fails_what_is_pending(generator):
    small = generator.batch_engine(1, context=128)
    events: queue.SimpleQueue = queue.SimpleQueue()
    request = generator.Request(prompt="Tell me a long story.", max_new_tokens=100, seed=3)
    small.submit(request, events.put)
    small.submit(request, events.put)  # waits: one slot
    first = events.get(timeout=120)
    assert isinstance(first, Piece)
    small.close()
    seen = []
    while not events.empty():
        seen.append(events.get())
    assert sum(isinstance(e, RuntimeError) for e in seen) == 2
    with pytest.raises(RuntimeError, match="closed"):
        small.submit(request, events.put)


class NaNRows:
    """The engine's model, its step's logits NaN in ``slot`` once ``slot`` is set."""

    def __init__(self, model):
        self.model, self.slot = model, None

    def __getattr__(self, name):
        return getattr(self.model, name)

    def step(self, *args):
        logits = self.model.step(*args)
        if self.slot is not None:
            logits = logits.clone()  # an inference tensor: no writes outside inference mode
            logits[self.slot] = float("nan")
        return logits


def test_a_request_whose_logits_turn_nan_fails_alone(generator):
    # Each request draws in its own call: NaN logits fail their request, and the
    # others in the batch decode on as they would alone.
    small = generator.batch_engine(2)
    small.model = NaNRows(small.model)
    try:
        victim = generator.Request(prompt="Tell me a long story.", max_new_tokens=200, seed=1)
        other = generator.Request(prompt="Count to five.", max_new_tokens=24, seed=2)
        [want] = run(small, other)
        first_piece = threading.Event()
        outcome: dict = {}

        def decode(name, request, started=None):
            try:
                outcome[name] = run(small, request, started=started)
            except ValueError as exc:
                outcome[name] = exc

        victim_thread = threading.Thread(target=decode, args=("victim", victim, first_piece))
        victim_thread.start()
        assert first_piece.wait(120)
        other_thread = threading.Thread(target=decode, args=("other", other))
        other_thread.start()
        while small.stats().slots_used < 2:
            time.sleep(0.001)
        small.model.slot = 0  # the victim's: it came first
        other_thread.join(120)
        victim_thread.join(120)
        assert outcome["other"] == [want]
        assert isinstance(outcome["victim"], ValueError) and "NaN" in str(outcome["victim"])
    finally:
        small.close()
