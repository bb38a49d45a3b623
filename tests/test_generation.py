"""Requests, seeds, streaming and concurrent generation through the SDK API."""

import random
import re
import string
import threading
import time
import types
from concurrent.futures import ThreadPoolExecutor

import pytest
from conftest import run_python

from aigc_sdk import (
    SDK,
    AudioRequest,
    GenerationResult,
    Generator,
    ImageRequest,
    PluginError,
    RequestError,
    TextRequest,
    hookimpl,
)


@pytest.fixture(scope="module")
def sdk():
    return SDK()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"top_p": 0.0}, r"top_p must be a number in \(0, 1\], got 0.0"),
        ({"top_p": 1.5}, r"top_p must be a number in \(0, 1\]"),
        ({"temperature": -1}, "temperature must be a finite number >= 0"),
        ({"temperature": float("nan")}, "temperature must be a finite number >= 0"),
        ({"top_k": -2}, "top_k must be an integer >= 0"),
        ({"min_p": 2}, r"min_p must be a number in \[0, 1\]"),
        ({"n": 0}, "n must be an integer >= 1"),
        ({"seed": -1}, "seed must be an integer >= 0 or None"),
        ({"top_k": True}, "top_k must be an integer >= 0, got True"),
        ({"prompt": 3}, "prompt must be a string or a non-empty list of strings"),
        ({"stop": [""]}, "stop must be a string or a sequence of non-empty strings"),
        ({"max_new_tokens": 1.5}, "max_new_tokens must be an integer >= 0"),
    ],
)
def test_invalid_request_fields_are_named(kwargs, message):
    with pytest.raises(RequestError, match=message):
        TextRequest.from_kwargs(**kwargs)


def test_unknown_request_fields_name_the_generator_the_closest_field_and_the_accepted_ones(sdk):
    with pytest.raises(
        RequestError, match=r"^unknown argument promt for generator cppn; accepted: n, seed$"
    ):
        sdk.generate("cppn", promt="x")
    with pytest.raises(
        RequestError,
        match=r"^unknown argument promt for generator markov \(did you mean prompt\?\); "
        r"accepted: max_new_tokens, ",
    ):
        sdk.generate("markov", promt="x")
    with pytest.raises(RequestError, match=r"for TextRequest \(did you mean top_k\?\)"):
        TextRequest.from_kwargs(topk=3)


def test_a_bad_request_fails_before_any_model_code_loads():
    # Through the built-in plugins' registered request classes: torch is never imported.
    code = """
import sys
from aigc_sdk import SDK, RequestError
sdk = SDK()
for name, kwargs in [("gan", {"n": -1}), ("gan", {"n": 100000}), ("audio", {"seconds": 0}),
                     ("transformer", {"top_p": 0}), ("vae", {"frames": 1})]:
    try:
        sdk.generate(name, **kwargs)
    except RequestError as exc:
        print(exc)
print("torch imported:", "torch" in sys.modules)
"""
    out = run_python(code)
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == [
        "n must be an integer >= 1, got -1",
        "n must be <= 1024 for gan, got 100000",
        "seconds must be a finite number > 0, got 0",
        "top_p must be a number in (0, 1], got 0",
        "frames must be an integer in [2, 256], got 1",
        "torch imported: False",
    ]


class CountingGenerator(Generator):
    """Counts its instances: a request must be refused before one is made."""

    modality = "image"
    Request = ImageRequest
    thread_safe = True
    made = 0

    def __init__(self):
        type(self).made += 1

    def generate(self, request):
        return GenerationResult("image", images=[], seed=request.seed)


def _sdk_with(register_calls, **sdk_options):
    plugin = types.ModuleType("counting_plugin")

    @hookimpl
    def aigc_register_generators(register):
        for args, kwargs in register_calls:
            register(*args, **kwargs)

    plugin.aigc_register_generators = aigc_register_generators
    sdk = SDK(autoload=False, **sdk_options)
    sdk.register(plugin)
    return sdk


def test_requests_are_checked_before_the_generator_is_created():
    sdk = _sdk_with([(("count", CountingGenerator), {"modality": "image"})])
    CountingGenerator.made = 0
    for bad in ({"n": 0}, {"n": 5000}, {"sede": 1}):
        with pytest.raises(RequestError):
            sdk.generate("count", **bad)
    assert CountingGenerator.made == 0
    sdk.generate("count", n=2)
    assert CountingGenerator.made == 1


def test_a_registered_request_class_must_be_the_generators_own():
    sdk = _sdk_with(
        [
            (("count", CountingGenerator), {"modality": "image", "request": TextRequest}),
            (("bad", CountingGenerator), {"modality": "image", "request": "not a class"}),
        ]
    )
    (info,) = [p for p in sdk.plugins() if p.name == "counting_plugin"]
    assert "register('bad'): request must be a Request subclass" in " ".join(info.errors)
    assert sdk.request_type("count") is TextRequest
    with pytest.raises(PluginError, match="its Request is ImageRequest, but TextRequest was"):
        sdk.generate("count")


def test_limits_are_declared_by_the_request_and_overridden_by_the_host():
    assert ImageRequest.limits["n"] == 1024 and TextRequest.limits["prompt"] == 32_768
    assert AudioRequest.limits["seconds"] == 60 and TextRequest.limits["max_new_tokens"] == 4096
    with pytest.raises(RequestError, match=r"^n must be <= 64, got 65$"):
        TextRequest.from_kwargs(n=65)
    with pytest.raises(RequestError, match=r"prompt must be at most 32768 characters, got 40000"):
        TextRequest.from_kwargs(prompt="x" * 40_000)
    with pytest.raises(RequestError, match=r"a batch must have at most 64 prompts"):
        TextRequest.from_kwargs(prompt=["x"] * 65)
    with pytest.raises(RequestError, match=r"^seconds must be <= 60, got 61$"):
        AudioRequest.from_kwargs(seconds=61)
    # Requests made directly (a plugin's own tests, benchmarks) are not capped.
    assert ImageRequest(n=5000).n == 5000

    host = SDK(limits={"n": 2, "max_new_tokens": None, "cppn": {"n": 3}, "markov": {"top_k": 5}})
    assert host.limits_for("markov") == {
        "n": 2,
        "max_new_tokens": None,
        "prompt": 32_768,
        "top_k": 5,
    }
    assert host.limits_for("cppn") == {"n": 3}
    assert len(host.generate("cppn", n=3, seed=1).images) == 3
    with pytest.raises(RequestError, match=r"^n must be <= 3 for cppn, got 4$"):
        host.generate("cppn", n=4)
    with pytest.raises(RequestError, match=r"^n must be <= 2 for markov, got 3$"):
        host.request("markov", n=3)
    with pytest.raises(RequestError, match=r"^top_k must be <= 5 for markov, got 6$"):
        host.request("markov", top_k=6)
    assert host.request("markov", max_new_tokens=10_000).max_new_tokens == 10_000
    assert host.request_schema("cppn")["properties"]["n"]["maximum"] == 3
    assert "maximum" not in host.request_schema("markov")["properties"]["max_new_tokens"]
    for bad, where in [({"n": 0}, "limits['n']"), ({"gan": {"n": "x"}}, "limits['gan']['n']")]:
        with pytest.raises(RequestError, match=rf"^{re.escape(where)} must be a number > 0"):
            SDK(limits=bad, autoload=False)


def test_request_normalises_stop_and_prompt_batches():
    request = TextRequest.from_kwargs(prompt=["a", "bc"], stop="\n")
    assert request.stop == ("\n",) and request.prompts == ["a", "bc"]
    assert TextRequest(prompt="x", n=3).prompts == ["x", "x", "x"]


def test_same_seed_same_output_different_seed_different_output(sdk):
    def pixels(seed):
        return [i.tobytes() for i in sdk.generate("cppn", seed=seed, n=2).images]

    assert pixels(7) == pixels(7)
    assert pixels(7) != pixels(8)
    audio = [sdk.generate("chime", seed=s, seconds=0.2).audio for s in (1, 1, 2)]
    assert audio[0].equal(audio[1]) and not audio[0].equal(audio[2])


def test_stream_yields_the_same_text_as_generate(sdk):
    kwargs = dict(prompt="The ", max_new_tokens=40, seed=11, temperature=0.9, top_k=20)
    pieces = list(sdk.stream("markov", **kwargs))
    assert len(pieces) == 40
    assert "".join(pieces) == sdk.generate("markov", **kwargs).texts[0]


def test_stop_sequence_ends_the_text_at_the_stop(sdk):
    free = sdk.generate("markov", prompt="a", max_new_tokens=200, seed=3).texts[0]
    stop = free[20:22]
    stopped = sdk.generate("markov", prompt="a", max_new_tokens=200, seed=3, stop=stop).texts[0]
    assert stopped == free[: free.index(stop) + len(stop)]


def test_greedy_decoding_ignores_the_seed(sdk):
    texts = {
        sdk.generate("markov", prompt="x", max_new_tokens=30, temperature=0, seed=s).texts[0]
        for s in range(3)
    }
    assert len(texts) == 1


def test_streaming_an_image_generator_is_an_error(sdk):
    from aigc_sdk import PluginError

    with pytest.raises(PluginError, match="makes image, not text"):
        sdk.stream("cppn")


@pytest.mark.parametrize("name", ["cppn", "markov"])
def test_concurrent_generation_from_threads_matches_sequential(sdk, name):
    kwargs = {"cppn": {"n": 2}, "markov": {"prompt": "de", "max_new_tokens": 50}}[name]

    def run(seed):
        result = sdk.generate(name, seed=seed, **kwargs)
        return [i.tobytes() for i in result.images] or result.texts

    sequential = [run(seed) for seed in range(8)]
    with ThreadPoolExecutor(max_workers=8) as pool:
        concurrent = list(pool.map(run, range(8)))
    assert concurrent == sequential


def test_generator_is_created_once_under_concurrent_first_use():
    sdk = SDK()
    with ThreadPoolExecutor(max_workers=8) as pool:
        instances = set(map(id, pool.map(lambda _: sdk.generator("markov"), range(16))))
    assert len(instances) == 1


class ScratchTextGenerator(Generator):
    """Random letters; ``generate`` keeps its state on the instance, so it is not thread-safe."""

    modality = "text"
    Request = TextRequest
    thread_safe = False

    def stream(self, request):
        rng = random.Random(request.seed)  # local: an open stream survives calls between pieces
        for _ in range(request.max_new_tokens):
            yield rng.choice(string.ascii_lowercase)

    def generate(self, request):
        self.rng = random.Random(request.seed)
        letters = []
        for _ in range(request.max_new_tokens):
            time.sleep(0.001)  # other threads run here: without the SDK's lock they reseed self.rng
            letters.append(self.rng.choice(string.ascii_lowercase))
        return GenerationResult("text", texts=["".join(letters)], seed=request.seed)


def _letters(count, seed):
    rng = random.Random(seed)
    return "".join(rng.choice(string.ascii_lowercase) for _ in range(count))


@pytest.fixture
def scratch_sdk():
    plugin = types.ModuleType("scratch_plugin")

    @hookimpl
    def aigc_register_generators(register):
        register("scratch", ScratchTextGenerator, modality="text")

    plugin.aigc_register_generators = aigc_register_generators
    sdk = SDK(autoload=False)
    sdk.register(plugin)
    return sdk


def _finishes(call, timeout=30.0):
    """Runs ``call`` in a thread; its result, or None if it is still blocked at the timeout."""
    results = []
    worker = threading.Thread(target=lambda: results.append(call()), daemon=True)
    worker.start()
    worker.join(timeout)
    return results[0] if results else None


def test_generate_while_a_stream_is_open_does_not_wait_for_the_stream(scratch_sdk):
    stream = scratch_sdk.stream("scratch", max_new_tokens=12, seed=5)
    first = next(stream)
    # The same non-thread-safe instance: generate() gets its lock between two pieces.
    result = _finishes(lambda: scratch_sdk.generate("scratch", max_new_tokens=3, seed=1))
    assert result is not None, "generate() blocked behind an open stream"
    assert result.texts == [_letters(3, seed=1)]
    assert scratch_sdk.generate("scratch", max_new_tokens=3, seed=2).texts == [_letters(3, 2)]
    assert first + _finishes(lambda: "".join(stream)) == _letters(12, seed=5)


def test_concurrent_generation_on_a_non_thread_safe_generator_matches_sequential(scratch_sdk):
    def run(seed):
        return scratch_sdk.generate("scratch", max_new_tokens=20, seed=seed).texts[0]

    sequential = [run(seed) for seed in range(8)]
    assert len(set(sequential)) == 8
    with ThreadPoolExecutor(max_workers=8) as pool:
        concurrent = list(pool.map(run, range(8)))
    assert concurrent == sequential


def test_request_schema_describes_fields_types_defaults_bounds_and_limits():
    import json
    from dataclasses import dataclass, field

    from aigc_sdk.generation import request_field, request_schema

    @dataclass(frozen=True, kw_only=True)
    class RippleRequest(TextRequest):
        """Ripples.

        Attributes:
            speed (float): how fast the ripples spread
        """

        limits = {**TextRequest.limits, "speed": 5}
        speed: float = field(default=1.0, metadata={"exclusiveMinimum": 0})
        shape: str | None = request_field(None, "ring or square")

    schema = request_schema(RippleRequest, {"n": 8})
    json.dumps(schema)  # every value is JSON
    assert (schema["title"], schema["type"], schema["additionalProperties"]) == (
        "RippleRequest",
        "object",
        False,
    )
    props = schema["properties"]
    assert list(props)[:3] == ["seed", "n", "max_new_tokens"]
    assert props["speed"] == {
        "type": "number",
        "default": 1.0,
        "description": "how fast the ripples spread",
        "exclusiveMinimum": 0,
        "maximum": 5,
    }
    assert props["shape"] == {
        "type": ["string", "null"],
        "default": None,
        "description": "ring or square",
    }
    assert props["n"]["maximum"] == 8 and props["seed"]["type"] == ["integer", "null"]
    assert props["stop"]["type"] == "array" and props["stop"]["default"] == []
    assert props["prompt"]["anyOf"] == [
        {"type": "string"},
        {"type": "array", "items": {"type": "string"}},
    ]
    assert props["prompt"]["maxLength"] == 32_768
    # The metadata bounds are enforced as well as shown; the limits only through from_dict.
    with pytest.raises(RequestError, match=r"^speed must be a finite number > 0, got 0$"):
        RippleRequest(speed=0)
    with pytest.raises(RequestError, match=r"^speed must be <= 5, got 6$"):
        RippleRequest.from_kwargs(speed=6)


def test_a_request_caps_the_text_of_a_structured_field_through_limited_values():
    from dataclasses import dataclass

    from aigc_sdk.generation import request_schema

    @dataclass(frozen=True, kw_only=True)
    class NotesRequest(TextRequest):
        limits = {**TextRequest.limits, "notes": 10}
        notes: tuple[dict, ...] = ()

        def limited_values(self, name):
            if name == "notes":
                return ["".join(note["text"] for note in self.notes)]
            return super().limited_values(name)

    assert NotesRequest.from_kwargs(notes=({"text": "abcde"}, {"text": "fghij"})).notes
    with pytest.raises(RequestError, match=r"^notes must be at most 10 characters, got 11$"):
        NotesRequest.from_kwargs(notes=({"text": "abcde"}, {"text": "fghijk"}))
    notes = request_schema(NotesRequest)["properties"]["notes"]
    assert notes["type"] == "array" and notes["x-maxCharacters"] == 10
