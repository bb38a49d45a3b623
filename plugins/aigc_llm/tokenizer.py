"""Tokenizers of real language models, built from a GGUF file's metadata or a Hugging Face folder.

Both become a ``tokenizers.Tokenizer`` assembled the way transformers assembles it for the same
file, so token ids agree with ``AutoTokenizer.from_pretrained(folder, gguf_file=...)`` and with
``AutoTokenizer.from_pretrained(folder)``: the model was trained on those ids.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, pre_tokenizers, processors

from aigc_sdk import CheckpointError

# llama.cpp's token types (gguf.TokenType); only these two change how text is split.
_CONTROL = 3
_USER_DEFINED = 4

# Control tokens that end a turn in the chat formats in use (llama.cpp stops at the same
# texts). A model's EOS id alone can miss them: some Llama-3 Instruct GGUFs name
# <|end_of_text|> as EOS while answers end with <|eot_id|>; Phi-3 ends turns with <|end|>.
_END_OF_TURN = frozenset(
    {
        "<|im_end|>",
        "<|eot_id|>",
        "<|eom_id|>",
        "<|end|>",
        "<|endoftext|>",
        "<|end_of_text|>",
        "<end_of_turn>",
        "<|return|>",
        "<EOT>",
    }
)

# Pre-tokenizer split patterns by ``tokenizer.ggml.pre``, as transformers maps them; any other
# value (gpt2, smollm, starcoder, ...) gets the GPT-2 pattern built into ByteLevel.
_LLAMA3_SPLIT = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}"
    r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)
_QWEN2_SPLIT = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}"
    r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)
_TEKKEN_SPLIT = (
    r"[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+"
    r"|[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*"
    r"|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)
_GPT4O_SPLIT = (
    r"[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+"
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)?"
    r"|[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*"
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)?"
    r"|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)
_SPLITS = {
    **dict.fromkeys(
        [
            "llama3",
            "llama-v3",
            "llama-bpe",
            "falcon3",
            "falcon-h1",
            "pixtral",
            "midm-2.0",
            "lfm2",
            "jina-v5-nano",
            "dbrx",
            "smaug-bpe",
        ],
        _LLAMA3_SPLIT,
    ),
    **dict.fromkeys(["qwen2", "deepseek-r1-qwen", "kormo", "f2llmv2", "megrez"], _QWEN2_SPLIT),
    "tekken": _TEKKEN_SPLIT,
    **dict.fromkeys(["gpt-4o", "llama4", "kanana2", "talkie", "minimax-m2"], _GPT4O_SPLIT),
}

# Architectures whose SentencePiece vocabularies need conventions of their own (Gemma's
# whitespace tokens and merge order, Phi-3's normalizer) that this module does not implement.
_OTHER_SENTENCEPIECE = frozenset({"gemma", "gemma2", "gemma3", "gemma4", "phi3"})


def _byte_alphabet() -> dict[int, str]:
    """GPT-2's byte-to-character table: printable bytes stand for themselves, the others are
    moved to U+0100 and up, so every byte string is spelled in visible characters."""
    table = {b: chr(b) for b in [*range(0x21, 0x7F), *range(0xA1, 0xAD), *range(0xAE, 0x100)]}
    shifted = (b for b in range(256) if b not in table)
    for offset, byte in enumerate(shifted):
        table[byte] = chr(0x100 + offset)
    return table


_BYTES = _byte_alphabet()
_BYTE_CHARS = frozenset(_BYTES.values())


def _as_ids(ids: Iterable[int]) -> list[int]:
    return [int(i) for i in ids]


class StreamDecoder:
    """Turns generated token ids into text as they come, one call per token.

    Each ``push`` decodes the tokens not yet settled together with the ones settled last (the
    "prefix"), and emits what they add to the prefix's text. Decoding the prefix along makes
    each window start where its text really continues: SentencePiece strips one leading space
    and byte-level BPE needs whole characters, and both then apply alike to the prefix alone
    and to the window. An unfinished UTF-8 character at the end decodes as U+FFFD: it is held
    back, the text before it is not.

    Tokens settle (become the next prefix) when their text ends in a finished character and
    they do not end in a byte-fallback token: SentencePiece decodes a run of byte tokens as a
    whole, so a run must not be cut between two windows. Each call decodes a few tokens (a
    run of byte tokens at most), however long the text.
    """

    def __init__(self, tokenizer: Tokenizer, byte_ids: frozenset[int], skip_special_tokens: bool):
        self._tokenizer = tokenizer
        self._byte_ids = byte_ids
        self._skip = skip_special_tokens
        self._ids: list[int] = []  # the window: prefix tokens, then tokens not yet settled
        self._read = 0  # how many of self._ids are the prefix
        self._prefix_text = ""
        self._sent = 0  # characters after the prefix's text already emitted

    def _decode(self, ids: list[int]) -> str:
        return self._tokenizer.decode(ids, skip_special_tokens=self._skip)

    def push(self, token_id: int) -> str:
        token_id = int(token_id)
        self._ids.append(token_id)
        text = self._decode(self._ids)
        if not text.startswith(self._prefix_text):  # only after invalid UTF-8: wait for more
            return ""
        complete = text.rstrip("\ufffd")
        piece = complete[len(self._prefix_text) + self._sent :]
        # A window whose text did not grow keeps its prefix, whose text is known not to be
        # empty: decoders strip a leading space from whatever text comes first.
        if (
            complete == text
            and len(text) > len(self._prefix_text)
            and token_id not in self._byte_ids
        ):
            self._ids = self._ids[self._read :]
            self._read = len(self._ids)
            self._prefix_text = self._decode(self._ids)
            self._sent = 0
        else:
            self._sent += len(piece)
        return piece

    def flush(self) -> str:
        """The rest of the text, even if it ends in an unfinished character. This ends the
        text: tokens pushed afterwards start a new one."""
        text = self._decode(self._ids)
        start = len(self._prefix_text) + self._sent
        piece = text[start:] if text.startswith(self._prefix_text) else ""
        self._ids, self._read, self._prefix_text, self._sent = [], 0, "", 0
        return piece


class LMTokenizer:
    """A language model's tokenizer: text to ids and back, its special tokens, its chat template."""

    def __init__(
        self,
        tokenizer: Tokenizer,
        *,
        bos: tuple[int, str] | None,
        eos: tuple[int, str],
        stop_ids: Iterable[int] = (),
        chat_template: str | None = None,
    ):
        self.tokenizer = tokenizer
        self.bos_id, self.bos_token = (None, None) if bos is None else bos
        self.eos_id, self.eos_token = eos
        self.chat_template = chat_template
        specials = {
            token.content: index
            for index, token in tokenizer.get_added_tokens_decoder().items()
            if token.special
        }
        turn_ends = {index for content, index in specials.items() if content in _END_OF_TURN}
        self.stop_ids = frozenset({self.eos_id, *turn_ends, *stop_ids})
        # Whether encode() starts with BOS is the post-processor's business; ask it.
        first = tokenizer.encode("", add_special_tokens=True).ids[:1]
        self.add_bos = self.bos_id is not None and first == [self.bos_id]
        self._byte_ids: frozenset[int] | None = None

    @property
    def vocab_size(self) -> int:
        return self.tokenizer.get_vocab_size(with_added_tokens=True)

    def encode(self, text: str, add_special_tokens: bool = True) -> list[int]:
        return self.tokenizer.encode(text, add_special_tokens=add_special_tokens).ids

    def encode_batch(self, texts: list[str], add_special_tokens: bool = True) -> list[list[int]]:
        encodings = self.tokenizer.encode_batch(texts, add_special_tokens=add_special_tokens)
        return [encoding.ids for encoding in encodings]

    def decode(self, ids: Iterable[int], skip_special_tokens: bool = False) -> str:
        return self.tokenizer.decode(_as_ids(ids), skip_special_tokens=skip_special_tokens)

    def stream_decoder(self, skip_special_tokens: bool = False) -> StreamDecoder:
        if self._byte_ids is None:
            self._byte_ids = _byte_fallback_ids(self.tokenizer)
        return StreamDecoder(self.tokenizer, self._byte_ids, skip_special_tokens)

    # -- GGUF -------------------------------------------------------------------------------

    @classmethod
    def from_gguf(cls, metadata: Mapping[str, Any], source: str) -> LMTokenizer:
        """The tokenizer a GGUF file describes in its ``tokenizer.*`` metadata.

        ``metadata`` maps each key to its plain Python value, as ``field.contents()`` gives it.
        """

        def fail(what: str) -> CheckpointError:
            return CheckpointError(f"{source}: {what}")

        kind = metadata.get("tokenizer.ggml.model")
        tokens = metadata.get("tokenizer.ggml.tokens")
        if kind is None:
            raise fail("has no tokenizer (no tokenizer.ggml.model in its metadata)")
        if kind not in ("gpt2", "llama"):
            raise fail(
                f"tokenizer.ggml.model {kind!r} is not supported "
                "(supported: 'gpt2' byte-level BPE, 'llama' SentencePiece BPE)"
            )
        architecture = metadata.get("general.architecture")
        if kind == "llama" and architecture in _OTHER_SENTENCEPIECE:
            raise fail(
                f"the SentencePiece tokenizer of architecture {architecture!r} is not supported"
            )
        if not isinstance(tokens, list) or not tokens:
            raise fail("has no tokenizer.ggml.tokens (the vocabulary)")
        tokens = [str(token) for token in tokens]

        def per_token(key: str) -> list | None:
            values = metadata.get(key)
            if values is not None and len(values) != len(tokens):
                raise fail(f"{key} has {len(values)} entries for {len(tokens)} tokens")
            return values

        def token_id(name: str) -> int | None:
            key = f"tokenizer.ggml.{name}_token_id"
            index = metadata.get(key)
            if index is None:
                return None
            if not 0 <= int(index) < len(tokens):
                raise fail(f"{key} is {index}, outside the vocabulary of {len(tokens)} tokens")
            return int(index)

        token_types = per_token("tokenizer.ggml.token_type") or [1] * len(tokens)
        scores = per_token("tokenizer.ggml.scores")
        merges = metadata.get("tokenizer.ggml.merges")
        merge_pairs = None if merges is None else [tuple(str(m).split(" ")) for m in merges]

        if kind == "gpt2":
            if merge_pairs is None:
                raise fail("has a byte-level BPE vocabulary but no tokenizer.ggml.merges")
            _check_merges(merge_pairs, {_spell(t) for t in tokens}, fail)
            tokenizer, known = _byte_level(tokens, merge_pairs, metadata.get("tokenizer.ggml.pre"))
            add_bos_default = False
        else:
            if merge_pairs is None:
                if scores is None:
                    raise fail("has neither tokenizer.ggml.merges nor tokenizer.ggml.scores")
                merge_pairs = _merges_from_scores(tokens, scores)
            _check_merges(merge_pairs, set(tokens), fail)
            tokenizer, known = _sentencepiece(tokens, merge_pairs)
            # llama.cpp adds BOS to a SentencePiece vocabulary unless the file says otherwise.
            add_bos_default = True

        # Control tokens (<|im_start|>...) are special: matched whole in text, skippable when
        # decoding. User-defined ones (<think>...) are matched whole too but are ordinary text.
        tokenizer.add_special_tokens(
            [
                AddedToken(token, special=True, normalized=False)
                for token, kind_ in zip(tokens, token_types, strict=True)
                if kind_ == _CONTROL and known(token)
            ]
        )
        tokenizer.add_tokens(
            [
                AddedToken(token, special=False, normalized=False)
                for token, kind_ in zip(tokens, token_types, strict=True)
                if kind_ == _USER_DEFINED and known(token)
            ]
        )
        ids = {name: token_id(name) for name in ("bos", "eos", "unknown", "padding", "eot", "eom")}
        tokenizer.add_special_tokens(
            [
                AddedToken(tokens[ids[name]], special=True, normalized=False)
                for name in ("bos", "eos", "unknown", "padding")
                if ids[name] is not None and known(tokens[ids[name]])
            ]
        )

        eos = ids["eos"] if ids["eos"] is not None else ids["eot"]
        if eos is None:
            raise fail("names no end token (tokenizer.ggml.eos_token_id or eot_token_id)")
        bos = ids["bos"]
        add_bos = bool(metadata.get("tokenizer.ggml.add_bos_token", add_bos_default))
        add_eos = bool(metadata.get("tokenizer.ggml.add_eos_token", False))
        tokenizer.post_processor = _template(
            tokens[bos] if add_bos and bos is not None else None,
            bos,
            tokens[eos] if add_eos else None,
            eos,
        )
        template = metadata.get("tokenizer.chat_template")
        return cls(
            tokenizer,
            bos=None if bos is None else (bos, tokens[bos]),
            eos=(eos, tokens[eos]),
            stop_ids=[i for i in (ids["eot"], ids["eom"]) if i is not None],
            chat_template=template if isinstance(template, str) and template else None,
        )

    # -- Hugging Face folder ----------------------------------------------------------------

    @classmethod
    def from_folder(cls, folder: Path) -> LMTokenizer:
        """The tokenizer of a Hugging Face model folder: tokenizer.json and the config files
        that name its special tokens, chat template and end-of-generation ids."""
        folder = Path(folder)
        path = folder / "tokenizer.json"
        if not path.is_file():
            raise CheckpointError(
                f"{folder}: no tokenizer.json (the model's tokenizer) in the folder"
            )
        try:
            tokenizer = Tokenizer.from_file(str(path))
        except Exception as error:  # the Rust parser reports every defect as a plain Exception
            raise CheckpointError(
                f"{path}: not a readable tokenizer ({_one_line(error)})"
            ) from None

        config = _read_json(folder / "tokenizer_config.json")
        generation = _read_json(folder / "generation_config.json")
        model_config = _read_json(folder / "config.json")

        def named_token(key: str) -> str | None:
            value = config.get(key)
            if isinstance(value, Mapping):  # a serialized AddedToken
                value = value.get("content")
            if isinstance(value, str) and tokenizer.token_to_id(value) is not None:
                return value
            for source in (generation, model_config):  # fall back to the ids in the configs
                index = source.get(f"{key}_id")
                if isinstance(index, list):
                    index = index[0] if index else None
                if isinstance(index, int) and tokenizer.id_to_token(index) is not None:
                    return tokenizer.id_to_token(index)
            return None

        # transformers makes these four special tokens when tokenizer.json has them as plain
        # vocabulary: never split, skipped when decoding with skip_special_tokens.
        added = {token.content for token in tokenizer.get_added_tokens_decoder().values()}
        named = {
            key: named_token(key) for key in ("bos_token", "eos_token", "unk_token", "pad_token")
        }
        tokenizer.add_special_tokens(
            [
                AddedToken(token, special=True, normalized=False)
                for token in named.values()
                if token is not None and token not in added
            ]
        )
        bos, eos = named["bos_token"], named["eos_token"]
        if eos is None:
            raise CheckpointError(
                f"{folder}: no end-of-sequence token (eos_token in tokenizer_config.json "
                "or eos_token_id in generation_config.json)"
            )

        # generation_config.json lists every id that ends an answer (Llama-3: end of text,
        # end of turn, end of message); config.json may name some of them too.
        stop_ids = []
        for source in (generation, model_config):
            ends = source.get("eos_token_id")
            for index in ends if isinstance(ends, list) else [ends]:
                if isinstance(index, int) and tokenizer.id_to_token(index) is not None:
                    stop_ids.append(index)
        return cls(
            tokenizer,
            bos=None if bos is None else (tokenizer.token_to_id(bos), bos),
            eos=(tokenizer.token_to_id(eos), eos),
            stop_ids=stop_ids,
            chat_template=_folder_chat_template(folder, config),
        )


def _byte_fallback_ids(tokenizer: Tokenizer) -> frozenset[int]:
    """The ids of SentencePiece's byte tokens <0x00>..<0xFF>, if the model falls back to them."""
    if not getattr(tokenizer.model, "byte_fallback", False):
        return frozenset()
    vocab = tokenizer.get_vocab(with_added_tokens=False)
    return frozenset(vocab[f"<0x{b:02X}>"] for b in range(256) if f"<0x{b:02X}>" in vocab)


def _spell(token: str) -> str:
    """A byte-level token in the byte alphabet; one written as raw text is respelled from its
    UTF-8 bytes."""
    if set(token) <= _BYTE_CHARS:
        return token
    return "".join(_BYTES[b] for b in token.encode("utf-8"))


def _check_merges(merges: list[tuple[str, ...]], vocab: set[str], fail) -> None:
    # tokenizers' BPE panics (no Python exception) on a merge whose result is not a token.
    for index, pair in enumerate(merges):
        if len(pair) != 2 or not {pair[0], pair[1], pair[0] + pair[1]} <= vocab:
            raise fail(
                f"tokenizer.ggml.merges[{index}] {' '.join(pair)!r} is not two tokens "
                "of the vocabulary that join into a third"
            )


def _byte_level(tokens: list[str], merges: list[tuple[str, ...]], pre: str | None):
    vocab = {_spell(token): index for index, token in enumerate(tokens)}
    model = models.BPE(
        vocab=vocab,
        merges=merges,
        continuing_subword_prefix="",
        end_of_word_suffix="",
        fuse_unk=False,
        dropout=None,
    )
    tokenizer = Tokenizer(model)
    split = _SPLITS.get(pre)
    if split is None:
        tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    else:
        tokenizer.pre_tokenizer = pre_tokenizers.Sequence(
            [
                pre_tokenizers.Split(Regex(split), behavior="isolated"),
                pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
            ]
        )
    tokenizer.decoder = decoders.ByteLevel()

    # A control token spelled outside the byte alphabet is a mislabelled text token: adding
    # it would give it a new id past the model's vocabulary.
    def known(token: str) -> bool:
        return set(token) <= _BYTE_CHARS

    return tokenizer, known


def _sentencepiece(tokens: list[str], merges: list[tuple[str, ...]]):
    vocab = {token: index for index, token in enumerate(tokens)}
    model = models.BPE(vocab=vocab, merges=merges, fuse_unk=True, byte_fallback=True, dropout=None)
    tokenizer = Tokenizer(model)
    # "first": one "▁" in front of the text, not in front of each piece between special tokens.
    tokenizer.pre_tokenizer = pre_tokenizers.Metaspace(
        replacement="\u2581", prepend_scheme="first", split=False
    )
    tokenizer.decoder = decoders.Sequence(
        [
            decoders.Replace("\u2581", " "),
            decoders.ByteFallback(),
            decoders.Fuse(),
            decoders.Strip(content=" ", left=1, right=0),
        ]
    )
    return tokenizer, vocab.__contains__


def _merges_from_scores(tokens: list[str], scores: list[float]) -> list[tuple[str, str]]:
    """The merges a SentencePiece BPE vocabulary implies, when the file lists none.

    Every split of a token into two tokens of the vocabulary is a merge, ranked by the merged
    token's score (best first), then by the left piece's length and the right's (longest
    first); equal ones keep the vocabulary's order. These are transformers' ranks: ties are
    common, and a different order gives different ids."""
    vocab = set(tokens)
    candidates = [
        (token[:cut], token[cut:], score)
        for token, score in dict(zip(tokens, scores, strict=True)).items()
        for cut in range(1, len(token))
        if token[:cut] in vocab and token[cut:] in vocab
    ]
    candidates.sort(key=lambda c: (c[2], len(c[0]), len(c[1])), reverse=True)
    return [(left, right) for left, right, _ in candidates]


def _template(bos: str | None, bos_id: int | None, eos: str | None, eos_id: int):
    single = ([f"{bos}:0"] if bos else []) + ["$A:0"] + ([f"{eos}:0"] if eos else [])
    pair = single + ([f"{bos}:1"] if bos else []) + ["$B:1"] + ([f"{eos}:1"] if eos else [])
    specials = ([(bos, bos_id)] if bos else []) + ([(eos, eos_id)] if eos else [])
    return processors.TemplateProcessing(single=single, pair=pair, special_tokens=specials)


def _read_json(path: Path) -> dict:
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise CheckpointError(f"{path}: not valid JSON ({_one_line(error)})") from None
    if not isinstance(data, dict):
        raise CheckpointError(f"{path}: expected a JSON object, got {type(data).__name__}")
    return data


def _folder_chat_template(folder: Path, config: Mapping[str, Any]) -> str | None:
    # transformers' order: the .jinja file, then the processor-style JSON, then the config.
    jinja = folder / "chat_template.jinja"
    if jinja.is_file():
        return jinja.read_text(encoding="utf-8")
    template = _read_json(folder / "chat_template.json").get("chat_template")
    if template is None:
        template = config.get("chat_template")
    if isinstance(template, list):  # named templates: [{"name": ..., "template": ...}]
        named = {t.get("name"): t.get("template") for t in template if isinstance(t, Mapping)}
        template = named.get("default")
    return template if isinstance(template, str) and template else None


def _one_line(error: BaseException) -> str:
    return " ".join(str(error).split())
