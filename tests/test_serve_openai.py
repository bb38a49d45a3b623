"""aigc serve through the official ``openai`` client: chat (streamed or not), completions,
images and models, each answer checked against the SDK's own for the same seed."""

from __future__ import annotations

import asyncio
import base64
import io

import pytest

openai = pytest.importorskip("openai")
pytest.importorskip("fastapi")

from PIL import Image  # noqa: E402
from serve_fixtures import TEST_LIMITS, serving  # noqa: E402

from aigc_sdk import SDK  # noqa: E402
from aigc_sdk.media import png_bytes  # noqa: E402
from aigc_sdk.serve import create_app  # noqa: E402

# Every test here serves the real chat model (SmolLM2): the model tier.
pytestmark = pytest.mark.model

MESSAGES = [
    {"role": "system", "content": "You are brief."},
    {"role": "user", "content": "Name a fruit and its colour."},
]


@pytest.fixture(scope="module")
def sdk():
    with SDK(limits=TEST_LIMITS) as sdk:
        yield sdk


@pytest.fixture(scope="module")
def app(sdk):
    return create_app(
        sdk, generators=["chat", "gan", "transformer"], max_batch=8, context=512, preload=True
    )


@pytest.fixture(scope="module")
def url(app):
    with serving(app) as url:
        yield url


@pytest.fixture(scope="module")
def client(url):
    return openai.OpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0, timeout=300)


@pytest.fixture(scope="module")
def chat(app, url):
    """The chat generator the server runs (loaded at start-up): the oracle."""
    return app.state.server.lanes["chat"].generator


def expected(chat, **fields):
    """(texts, finish reasons, prompt tokens, completion tokens) as the SDK makes them."""
    request = chat.Request(**fields)
    result = chat.generate(request)
    reasons = []
    for tokens in result.tensors["tokens"]:
        ended = tokens.numel() and int(tokens[-1]) in chat.tokenizer.stop_ids
        reasons.append("stop" if ended else "length")
    counts = sum(len(t) for t in result.tensors["tokens"])
    return result.texts, reasons, len(chat.prompt_ids(request)[0]), counts


def test_models_lists_every_served_generator(client):
    models = {m.id: m for m in client.models.list()}
    assert set(models) == {"chat", "gan", "transformer"}
    assert models["chat"].owned_by == "llm"
    assert models["chat"].model_extra["modality"] == "text"
    assert client.models.retrieve("gan").model_extra["modality"] == "image"
    with pytest.raises(openai.NotFoundError):
        client.models.retrieve("nope")


def test_a_chat_answer_is_the_sdk_answer_with_usage(client, chat):
    answer = client.chat.completions.create(
        model="chat", messages=MESSAGES, max_tokens=16, seed=11, temperature=0.7
    )
    texts, reasons, prompt_tokens, completion_tokens = expected(
        chat, messages=MESSAGES, seed=11, max_new_tokens=16, temperature=0.7
    )
    [choice] = answer.choices
    assert choice.message.role == "assistant"
    assert choice.message.content == texts[0] and choice.message.content
    assert choice.finish_reason == reasons[0]
    assert answer.object == "chat.completion" and answer.model == "chat"
    assert answer.usage.prompt_tokens == prompt_tokens
    assert answer.usage.completion_tokens == completion_tokens
    assert answer.usage.total_tokens == prompt_tokens + completion_tokens


def test_a_streamed_chat_arrives_in_pieces_and_ends_with_usage(client, chat):
    stream = client.chat.completions.create(
        model="chat",
        messages=MESSAGES,
        max_tokens=16,
        seed=12,
        temperature=0.7,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    texts, reasons, prompt_tokens, completion_tokens = expected(
        chat, messages=MESSAGES, seed=12, max_new_tokens=16, temperature=0.7
    )
    assert chunks[0].choices[0].delta.role == "assistant"
    pieces = [c.choices[0].delta.content for c in chunks if c.choices]
    pieces = [p for p in pieces if p]
    assert len(pieces) >= 5  # token by token, not one block at the end
    assert "".join(pieces) == texts[0]
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices]
    assert finishes[-1] == reasons[0] and set(finishes[:-1]) == {None}
    assert chunks[-1].choices == []
    assert chunks[-1].usage.prompt_tokens == prompt_tokens
    assert chunks[-1].usage.completion_tokens == completion_tokens
    assert {c.id for c in chunks} == {chunks[0].id}


def test_stop_strings_end_the_text_and_are_left_out(client, chat):
    prompt = "1, 2, 3, 4,"
    stops = [" 7", "never"]
    [kept], _, _, _ = expected(
        chat, prompt=prompt, raw=True, temperature=0, max_new_tokens=16, stop=stops
    )
    assert kept.endswith(" 7")  # the SDK keeps it
    whole = client.completions.create(
        model="chat", prompt=prompt, max_tokens=16, temperature=0, stop=stops
    )
    assert whole.choices[0].text == kept[: -len(" 7")]
    assert whole.choices[0].finish_reason == "stop"
    streamed = client.completions.create(
        model="chat", prompt=prompt, max_tokens=16, temperature=0, stop=stops, stream=True
    )
    chunks = list(streamed)
    assert "".join(c.choices[0].text for c in chunks) == kept[: -len(" 7")]
    assert chunks[-1].choices[0].finish_reason == "stop"


def test_n_answers_come_from_one_seed(client, chat):
    answer = client.chat.completions.create(
        model="chat", messages=MESSAGES, max_tokens=8, seed=5, temperature=1.0, n=2
    )
    texts, reasons, prompt_tokens, completion_tokens = expected(
        chat, messages=MESSAGES, seed=5, max_new_tokens=8, temperature=1.0, n=2
    )
    assert [c.index for c in answer.choices] == [0, 1]
    assert [c.message.content for c in answer.choices] == texts
    assert [c.finish_reason for c in answer.choices] == reasons
    assert answer.usage.prompt_tokens == prompt_tokens  # one prompt, two answers
    assert answer.usage.completion_tokens == completion_tokens


def test_completions_of_several_prompts_and_echo(client, chat):
    prompts = ["The sky is", "Water is"]
    answer = client.completions.create(
        model="chat", prompt=prompts, max_tokens=4, temperature=0, echo=True
    )
    assert [c.index for c in answer.choices] == [0, 1]
    for prompt, choice in zip(prompts, answer.choices, strict=True):
        [text], _, prompt_tokens, _ = expected(
            chat, prompt=prompt, raw=True, temperature=0, max_new_tokens=4
        )
        assert choice.text == prompt + text
    assert answer.usage.prompt_tokens == sum(
        len(chat.prompt_ids(chat.Request(prompt=p, raw=True))[0]) for p in prompts
    )


def test_images_are_the_generators_pngs_for_the_seed(client, sdk):
    answer = client.images.generate(
        model="gan", prompt="a digit", n=3, response_format="b64_json", extra_body={"seed": 7}
    )
    images = [base64.b64decode(d.b64_json) for d in answer.data]
    assert len(images) == 3
    assert all(Image.open(io.BytesIO(data)).format == "PNG" for data in images)
    own = sdk.generate("gan", n=3, seed=7).images
    assert images == [png_bytes(image) for image in own]
    with pytest.raises(openai.BadRequestError, match="b64_json"):
        client.images.generate(model="gan", prompt="x", response_format="url")


def test_mistakes_reach_the_client_as_openai_errors(client):
    with pytest.raises(openai.NotFoundError) as missing:
        client.chat.completions.create(model="nope", messages=MESSAGES)
    assert missing.value.body["code"] == "model_not_found"
    with pytest.raises(openai.BadRequestError) as hot:
        client.chat.completions.create(model="chat", messages=MESSAGES, temperature=5)
    assert hot.value.body["param"] == "temperature"
    with pytest.raises(openai.BadRequestError, match="makes image, not text"):
        client.chat.completions.create(model="gan", messages=MESSAGES)
    with pytest.raises(openai.BadRequestError) as many:
        client.chat.completions.create(model="chat", messages=MESSAGES, n=TEST_LIMITS["n"] + 1)
    assert many.value.body["param"] == "n"
    with pytest.raises(openai.BadRequestError, match="logprobs is not supported"):
        client.chat.completions.create(model="chat", messages=MESSAGES, logprobs=True)
    with pytest.raises(openai.BadRequestError, match="the limit is 2000") as chars:
        client.chat.completions.create(
            model="chat", messages=[{"role": "user", "content": "word " * 600}], max_tokens=4
        )
    assert chars.value.body["code"] == "context_length_exceeded"


def test_a_prompt_longer_than_the_context_is_refused(client, chat):
    digits = "1,2,3,4,5,6,7,8,9," * 100  # under the character limit, over the 512 tokens
    assert len(chat.prompt_ids(chat.Request(prompt=digits))[0]) > 512
    with pytest.raises(openai.BadRequestError, match="holds 512 tokens per sequence"):
        client.chat.completions.create(
            model="chat", messages=[{"role": "user", "content": digits}], max_tokens=4
        )


def test_eight_concurrent_streams_give_what_each_gives_alone(url):
    client = openai.AsyncOpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0)
    questions = ["Hi!", "What is 2+2?", "Name a colour.", "Say yes.", "Count to 3.",
                 "Name a planet.", "Tell a joke.", "Name a tree."]  # fmt: skip

    async def ask(i: int) -> str:
        stream = await client.chat.completions.create(
            model="chat",
            messages=[{"role": "user", "content": questions[i]}],
            max_tokens=12,
            seed=100 + i,
            temperature=0.9,
            stream=True,
        )
        return "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])

    async def main():
        alone = [await ask(i) for i in range(8)]
        together = await asyncio.gather(*(ask(i) for i in range(8)))
        return alone, list(together)

    alone, together = asyncio.run(main())
    assert together == alone
    assert all(alone)


def test_a_generator_without_batching_serves_through_the_same_api(client, sdk):
    question = [{"role": "user", "content": "ROMEO:"}]
    whole = client.chat.completions.create(
        model="transformer", messages=question, max_tokens=12, seed=3
    )
    own = sdk.generate("transformer", prompt="ROMEO:", max_new_tokens=12, seed=3).texts[0]
    assert whole.choices[0].message.content == own
    streamed = client.chat.completions.create(
        model="transformer", messages=question, max_tokens=12, seed=3, stream=True
    )
    assert "".join(c.choices[0].delta.content or "" for c in streamed if c.choices) == own
    with pytest.raises(openai.BadRequestError, match="takes no conversation"):
        client.chat.completions.create(model="transformer", messages=MESSAGES)
