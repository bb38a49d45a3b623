"""The Transformer text generator: tokenizer, KV-cache decoding, sampling, the SDK path.

Most tests use a tiny random model with a tokenizer trained on a few stdlib
modules, so they check the machinery (cache = recompute, batch = alone,
seeds, stops, streaming) independently of the shipped weights.
"""

from __future__ import annotations

import inspect
import json
import os
import textwrap
from pathlib import Path

import pytest
import torch
from aigc_transformer import pretrained
from aigc_transformer.decode import DecodeSession, Sampling, sample_plain
from aigc_transformer.generator import TransformerGenerator
from aigc_transformer.model import ModelConfig, Transformer
from aigc_transformer.tokenizer import BPETokenizer, TextDecoder
from conftest import ROOT, run_aigc

from aigc_sdk import SDK, RequestError, TextRequest
from aigc_sdk.errors import CheckpointError

# Decode loops of tiny models on one thread (the kernels' thread splits have their own
# tests): see the one_thread fixture.
pytestmark = pytest.mark.usefixtures("one_thread")

TINY = dict(dim=64, n_layers=2, n_heads=4, n_kv_heads=2, hidden_dim=128, max_seq_len=96)


@pytest.fixture(scope="module")
def tokenizer() -> BPETokenizer:
    texts = [inspect.getsource(m) for m in (json, textwrap)] + ["naïve café — ☃ 🐍 日本語"]
    return BPETokenizer.train(texts, vocab_size=400)


@pytest.fixture(scope="module")
def model(tokenizer) -> Transformer:
    torch.manual_seed(0)
    model = Transformer(ModelConfig(vocab_size=tokenizer.vocab_size, **TINY)).eval()
    # Larger weights than the init give peaked, input-dependent logits (a real test).
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() == 2:
                p.mul_(5)
    return model


@pytest.fixture(scope="module")
def weights(tmp_path_factory, model, tokenizer) -> Path:
    return pretrained.save(tmp_path_factory.mktemp("tiny") / "tiny", model, tokenizer)


@pytest.fixture(scope="module", params=["fused", "plain"])
def generator(request, weights) -> TransformerGenerator:
    return TransformerGenerator(weights, backend=request.param)


# -- tokenizer -------------------------------------------------------------------


def test_tokenizer_round_trips_any_text(tokenizer):
    for text in ["def f(x):\n    return x + 1\n", "naïve café — ☃ 🐍 日本語", "\x00\t\r\n", ""]:
        ids = tokenizer.encode(text)
        assert tokenizer.decode(ids) == text
        assert tokenizer.to_bytes(ids) == text.encode()
    assert tokenizer.vocab_size == 400 and tokenizer.token_bytes[tokenizer.eos_id] == b""


def test_text_decoder_never_emits_half_a_character(tokenizer):
    text = "x = '🐍☃日本' + 'é' * 3"
    ids = tokenizer.encode(text)
    # Byte-level tokens split multi-byte characters somewhere in this string.
    assert any(not _is_utf8(tokenizer.token_bytes[i]) for i in ids)
    decoder = TextDecoder(tokenizer)
    pieces = [decoder.push(i) for i in ids] + [decoder.flush()]
    assert "".join(pieces) == text and not any("\ufffd" in p for p in pieces)


def test_text_decoder_replaces_invalid_bytes_like_decode(tokenizer):
    ids = [tokenizer.encode("é")[0]] if len(tokenizer.encode("é")) > 1 else []
    ids += tokenizer.encode("ab")
    decoder = TextDecoder(tokenizer)
    streamed = "".join(decoder.push(i) for i in ids) + decoder.flush()
    assert streamed == tokenizer.decode(ids)


def _is_utf8(data: bytes) -> bool:
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


# -- the KV cache ------------------------------------------------------------------


@pytest.mark.parametrize("backend", ["fused", "plain"])
def test_cached_decode_equals_full_recompute(model, backend):
    torch.manual_seed(1)
    prompt = torch.randint(model.cfg.vocab_size, (2, 7))
    follow = torch.randint(model.cfg.vocab_size, (2, 12))
    session = DecodeSession(model, batch=2, max_len=32, backend=backend)
    step_logits = [session.prefill(prompt.tolist())]
    for t in range(follow.shape[1]):
        step_logits.append(session.step(follow[:, t]))
    with torch.no_grad():
        full = model(torch.cat([prompt, follow], dim=1))
    expected = full[:, prompt.shape[1] - 1 :]
    torch.testing.assert_close(torch.stack(step_logits, dim=1), expected, atol=2e-4, rtol=1e-4)


@pytest.mark.parametrize("backend", ["fused", "plain"])
def test_ragged_batch_decodes_like_each_prompt_alone(model, backend):
    torch.manual_seed(2)
    prompts = [torch.randint(model.cfg.vocab_size, (n,)).tolist() for n in (3, 11, 1, 6)]
    follow = torch.randint(model.cfg.vocab_size, (4, 9))
    batch = DecodeSession(model, batch=4, max_len=24, backend=backend)
    together = [batch.prefill(prompts)] + [batch.step(follow[:, t]) for t in range(9)]
    for row, prompt in enumerate(prompts):
        alone = DecodeSession(model, batch=1, max_len=24, backend=backend)
        logits = [alone.prefill([prompt])]
        logits += [alone.step(follow[row : row + 1, t]) for t in range(9)]
        for a, b in zip(logits, together, strict=True):
            torch.testing.assert_close(a[0], b[row], atol=2e-4, rtol=1e-4)


def test_ragged_batch_generates_the_texts_of_each_prompt_alone(generator):
    prompts = ["import", "def parse(self, text):\n", "x"]
    kwargs = dict(max_new_tokens=24, temperature=0)
    batch = generator.generate(TextRequest(prompt=prompts, **kwargs)).texts
    alone = [generator.generate(TextRequest(prompt=p, **kwargs)).texts[0] for p in prompts]
    assert batch == alone and len(set(batch)) > 1


def test_fused_and_plain_backends_compute_the_same_logits(model):
    torch.manual_seed(3)
    prompts = [torch.randint(model.cfg.vocab_size, (n,)).tolist() for n in (5, 2)]
    follow = torch.randint(model.cfg.vocab_size, (2, 6))
    runs = []
    for backend in ("fused", "plain"):
        s = DecodeSession(model, batch=2, max_len=16, backend=backend)
        runs.append([s.prefill(prompts)] + [s.step(follow[:, t]) for t in range(6)])
    for a, b in zip(*runs, strict=True):
        torch.testing.assert_close(a, b, atol=2e-4, rtol=1e-4)


def test_the_cache_refuses_to_overflow(model):
    session = DecodeSession(model, batch=1, max_len=4)
    session.prefill([[1, 2, 3, 4]])
    with pytest.raises(RuntimeError, match="KV cache is full"):
        session.step(torch.tensor([5]))


# -- sampling ----------------------------------------------------------------------


def test_plain_sampler_filters(model):
    logits = torch.tensor([[4.0, 3.0, 2.0, 1.0, 0.0]]).repeat(200, 1)
    g = torch.Generator().manual_seed(0)
    history = torch.full((200, 1), -1)

    def drawn(**kw):
        return set(sample_plain(logits, Sampling(**kw), history, g).tolist())

    assert drawn(temperature=0) == {0}
    assert drawn(top_k=2) == {0, 1}
    assert drawn(top_p=0.5) == {0}  # p(0) = 0.64 already reaches 0.5
    assert drawn(min_p=0.3) == {0, 1}  # p(1)/p(0) = e^-1 = 0.37, p(2)/p(0) = 0.14
    assert drawn(temperature=1) == {0, 1, 2, 3, 4}
    # A strong repetition penalty on token 0 moves the greedy choice to token 1.
    seen = torch.zeros((200, 1), dtype=torch.int64)
    greedy_penalised = Sampling(temperature=0, repetition_penalty=2)
    assert set(sample_plain(logits, greedy_penalised, seen, g).tolist()) == {1}


@pytest.mark.parametrize("backend", ["fused", "plain"])
def test_same_seed_same_text_and_other_seeds_differ(weights, backend):
    generator = TransformerGenerator(weights, backend=backend)
    kwargs = dict(prompt=["def ", "class A:\n"], max_new_tokens=20, top_k=40, top_p=0.95)
    texts = {s: generator.generate(TextRequest(seed=s, **kwargs)).texts for s in (5, 5, 6)}
    assert generator.generate(TextRequest(seed=5, **kwargs)).texts == texts[5]
    assert texts[5] != texts[6]


def test_every_sampling_control_runs(generator):
    request = TextRequest(
        prompt=["a", "bcd"],
        max_new_tokens=10,
        temperature=0.7,
        top_k=20,
        top_p=0.9,
        min_p=0.05,
        repetition_penalty=1.3,
        seed=3,
    )
    first = generator.generate(request)
    assert first.texts == generator.generate(request).texts and first.seed == 3


def test_repetition_penalty_changes_greedy_text(generator):
    base = dict(prompt="for i in range(", max_new_tokens=30, temperature=0)
    plain = generator.generate(TextRequest(**base)).texts[0]
    penalised = generator.generate(TextRequest(repetition_penalty=3.0, **base)).texts[0]
    assert plain != penalised


# -- stop strings and streaming ------------------------------------------------------


def test_stop_string_ends_the_text_after_the_stop(generator):
    kwargs = dict(prompt="def main():\n", max_new_tokens=60, seed=4)
    free = generator.generate(TextRequest(**kwargs)).texts[0]
    assert len(free) > 30
    stop = free[20:23]
    stopped = generator.generate(TextRequest(stop=(stop, "never seen \x01"), **kwargs)).texts[0]
    assert stopped == free[: free.index(stop) + len(stop)]


def test_stream_yields_the_text_of_generate(generator):
    for kwargs in (
        dict(prompt="import os\n", max_new_tokens=40, seed=8, temperature=0.9),
        dict(prompt=["x = ", "def f(a, b):"], n=1, max_new_tokens=15, seed=2, stop="\n"),
        dict(prompt="if ", max_new_tokens=0),
    ):
        pieces = list(generator.stream(TextRequest(**kwargs)))
        texts = generator.generate(TextRequest(**kwargs)).texts
        assert "".join(pieces) == "\n\n".join(texts)
        assert all(isinstance(p, str) for p in pieces)


def test_stream_pieces_arrive_one_token_at_a_time(generator):
    pieces = list(generator.stream(TextRequest(prompt="#", max_new_tokens=12, seed=1)))
    assert 2 <= len(pieces) <= 12


def test_a_prompt_longer_than_the_context_is_refused_naming_the_context_length(generator):
    # The tiny model's context is 96 tokens; a prompt is never cut silently to fit.
    long = "value = compute(value)\n" * 200
    with pytest.raises(
        RequestError,
        match=r"^prompt is 3000 tokens, over the 90 that fit: this model's context length is "
        r"96 tokens, 5 of them kept for max_new_tokens",
    ):
        generator.generate(TextRequest(prompt=long, max_new_tokens=5))
    with pytest.raises(RequestError, match=r"^prompt 2 is 3000 tokens, over the 90"):
        generator.generate(TextRequest(prompt=("x", long), max_new_tokens=5))
    fits = "x = 1\n" * 5
    assert isinstance(generator.generate(TextRequest(prompt=fits, max_new_tokens=5)).texts[0], str)
    with pytest.raises(RequestError, match="max_new_tokens must be < 96"):
        generator.generate(TextRequest(prompt="x", max_new_tokens=96))


def test_token_healing_takes_back_the_last_prompt_token(generator, tokenizer):
    prompt = "def parse(self, "
    ids = tokenizer.encode(prompt)
    last = tokenizer.token_bytes[ids[-1]]
    for seed in range(3):
        result = generator.generate(TextRequest(prompt=prompt, max_new_tokens=12, seed=seed))
        tokens = result.tensors["tokens"][0].tolist()
        generated = tokenizer.to_bytes(tokens)
        assert generated.startswith(last)  # the first token re-makes the prompt's end
        assert result.texts[0] == generated[len(last) :].decode("utf-8", errors="replace")


def test_token_healing_can_be_switched_off(generator):
    from aigc_transformer.generator import TransformerRequest

    assert TransformerGenerator.Request is TransformerRequest
    kwargs = dict(prompt="x = ", max_new_tokens=20, temperature=0)
    off = generator.generate(TransformerRequest(token_healing=False, **kwargs))
    on = generator.generate(TransformerRequest(**kwargs))
    assert off.tensors["tokens"][0].tolist() != on.tensors["tokens"][0].tolist()
    with pytest.raises(RequestError, match="token_healing must be true or false"):
        TransformerRequest(token_healing="yes")


# -- checkpoints ---------------------------------------------------------------------


def test_checkpoint_round_trip_keeps_the_model_and_tokenizer(weights, model, tokenizer):
    loaded, loaded_tokenizer, config = pretrained.load(weights)
    assert config["model"] == model.cfg.to_dict()
    assert loaded_tokenizer.to_json() == tokenizer.to_json()
    x = torch.randint(model.cfg.vocab_size, (1, 10))
    with torch.no_grad():
        # Stored as float16: the logits agree to float16 precision of the weights.
        torch.testing.assert_close(loaded(x), model(x), atol=0.1, rtol=0.02)
    assert (weights / "tokenizer.json").is_file()


def test_checkpoint_without_tokenizer_is_a_clear_error(weights, tmp_path):
    import shutil

    broken = tmp_path / "broken"
    shutil.copytree(weights, broken)
    (broken / "tokenizer.json").unlink()
    with pytest.raises(CheckpointError, match="tokenizer.json is missing"):
        pretrained.load(broken)


# -- through the SDK and the CLI (shipped default weights) ----------------------------


@pytest.fixture(scope="module")
def sdk():
    return SDK(plugins=["aigc_transformer"])


def test_plugin_registers_and_generates_with_default_weights(sdk, tmp_path):
    from aigc_sdk.testing import check_generator

    result = check_generator(sdk, "transformer", tmp_path, prompt="def ", max_new_tokens=16)
    assert result.texts[0]


def test_default_weights_write_python_looking_text(sdk):
    text = sdk.generate(
        "transformer", prompt="import os\n\n\ndef ", max_new_tokens=80, temperature=0.6, seed=0
    ).texts[0]
    assert any(word in text for word in ("(", ":", "return", "self", "=")), text


@pytest.mark.cli
def test_cli_streams_generated_text(tmp_path):
    env = {
        "AIGC_DISABLE_PLUGIN_AUTOLOAD": "1",
        "AIGC_PLUGINS": "aigc_transformer",
        "PYTHONPATH": os.pathsep.join(
            filter(None, [str(ROOT), str(ROOT / "plugins"), os.environ.get("PYTHONPATH")])
        ),
    }
    args = ["generate", "transformer", "--prompt", "class Parser:\n", "--max-new-tokens", "20"]
    streamed = run_aigc(*args, "--seed", "3", "--stream", env=env)
    assert streamed.returncode == 0, streamed.stderr
    written = run_aigc(*args, "--seed", "3", "--out", str(tmp_path / "t.txt"), env=env)
    assert written.returncode == 0, written.stderr
    assert streamed.stdout == (tmp_path / "t.txt").read_text() + "\n"


# -- training ---------------------------------------------------------------------------


@pytest.mark.train
@pytest.mark.cli
def test_aigc_train_transformer_trains_a_tokenizer_and_exports_a_loadable_model(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    for module in (json, textwrap, inspect):
        (data / Path(module.__file__).name).write_text(inspect.getsource(module))
    out = tmp_path / "run"
    env = {
        "AIGC_DISABLE_PLUGIN_AUTOLOAD": "1",
        "AIGC_PLUGINS": "aigc_transformer",
        "PYTHONPATH": os.pathsep.join(
            filter(None, [str(ROOT), str(ROOT / "plugins"), os.environ.get("PYTHONPATH")])
        ),
    }
    small = ["--dim", "32", "--n-heads", "2", "--n-kv-heads", "1", "--hidden-dim", "64",
             "--n-layers", "1", "--vocab-size", "300", "--block-size", "64"]  # fmt: skip
    result = run_aigc(
        "train", "transformer", "--data", str(data), "--out", str(out), "--steps", "6",
        "--eval-every", "3", "--sample-every", "6", "--quiet", *small, env=env,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert (out / "tokenizer.json").is_file() and (out / "samples" / "step-000006.txt").is_file()
    model, tokenizer, config = pretrained.load(out / "model")
    assert tokenizer.vocab_size == 300 and config["model"]["dim"] == 32
    assert 0 < config["info"]["heldout_bits_per_byte"] < 10
    request = TextRequest(prompt="def ", seed=1, max_new_tokens=20)
    text = TransformerGenerator(out / "model").generate(request)
    assert isinstance(text.texts[0], str)
