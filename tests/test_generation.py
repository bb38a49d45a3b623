"""Requests, seeds, streaming and concurrent generation through the SDK API."""

from concurrent.futures import ThreadPoolExecutor

import pytest

from aigc_sdk import SDK, RequestError, TextRequest


@pytest.fixture(scope="module")
def sdk():
    return SDK()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"top_p": 0.0}, r"top_p must be in \(0, 1\], got 0.0"),
        ({"top_p": 1.5}, r"top_p must be in \(0, 1\]"),
        ({"temperature": -1}, "temperature must be a finite number >= 0"),
        ({"temperature": float("nan")}, "temperature must be a finite number >= 0"),
        ({"top_k": -2}, "top_k must be an integer >= 0"),
        ({"min_p": 2}, r"min_p must be in \[0, 1\]"),
        ({"n": 0}, "n must be an integer >= 1"),
        ({"seed": -1}, "seed must be a non-negative integer"),
        ({"prompt": 3}, "prompt must be a string or a non-empty list of strings"),
        ({"stop": [""]}, "stop must be a string or a sequence of non-empty strings"),
        ({"max_new_tokens": 1.5}, "max_new_tokens must be an integer >= 0"),
    ],
)
def test_invalid_request_fields_are_named(kwargs, message):
    with pytest.raises(RequestError, match=message):
        TextRequest.from_kwargs(**kwargs)


def test_unknown_request_fields_are_named_with_the_accepted_ones(sdk):
    with pytest.raises(RequestError, match=r"unknown argument promt for ImageRequest; accepted: n"):
        sdk.generate("cppn", promt="x")


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
