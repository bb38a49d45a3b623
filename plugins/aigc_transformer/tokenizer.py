"""Byte-level BPE (GPT-2 style), trained and saved with Hugging Face ``tokenizers``.

Every string round-trips exactly: the base alphabet is the 256 bytes, so no
text is ever unknown. A checkpoint keeps the tokenizer beside the weights as
``tokenizer.json``. ``TextDecoder`` turns a growing token stream into text
without ever emitting half of a UTF-8 character.
"""

from __future__ import annotations

import codecs
import functools
from collections.abc import Iterable
from pathlib import Path

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

TOKENIZER_FILE = "tokenizer.json"
END_OF_TEXT = "<|endoftext|>"  # separates documents; generating it ends a sequence


@functools.cache
def byte_alphabet() -> dict[str, int]:
    """GPT-2's map from the printable stand-in characters of byte-level BPE to bytes."""
    printable = [*range(ord("!"), ord("~") + 1), *range(0xA1, 0xAD), *range(0xAE, 0x100)]
    chars = list(printable)
    extra = 0
    for b in range(256):
        if b not in printable:
            printable.append(b)
            chars.append(256 + extra)
            extra += 1
    return {chr(c): b for b, c in zip(printable, chars, strict=True)}


class BPETokenizer:
    """A byte-level BPE tokenizer with one special token, ``<|endoftext|>``."""

    def __init__(self, tokenizer: Tokenizer) -> None:
        self._tok = tokenizer
        self.eos_id = tokenizer.token_to_id(END_OF_TEXT)
        if self.eos_id is None:
            raise ValueError(f"the tokenizer has no {END_OF_TEXT} token")
        self.vocab_size = tokenizer.get_vocab_size()
        alphabet = byte_alphabet()
        special = {END_OF_TEXT}
        table = [b""] * self.vocab_size
        for piece, index in tokenizer.get_vocab().items():
            table[index] = b"" if piece in special else bytes(alphabet[c] for c in piece)
        self.token_bytes: list[bytes] = table

    # -- making and storing -------------------------------------------------

    @classmethod
    def train(cls, texts: Iterable[str], vocab_size: int = 2048) -> BPETokenizer:
        """Learns ``vocab_size`` tokens (256 bytes + merges + the special token) from texts."""
        tok = Tokenizer(models.BPE())
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        tok.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(
            vocab_size=vocab_size,
            special_tokens=[END_OF_TEXT],
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
            show_progress=False,
        )
        tok.train_from_iterator(texts, trainer)
        return cls(tok)

    def to_json(self) -> str:
        return self._tok.to_str()

    @classmethod
    def from_json(cls, text: str) -> BPETokenizer:
        return cls(Tokenizer.from_str(text))

    @classmethod
    def from_file(cls, path: str | Path) -> BPETokenizer:
        return cls(Tokenizer.from_file(str(path)))

    # -- using ----------------------------------------------------------------

    def encode(self, text: str) -> list[int]:
        return self._tok.encode(text, add_special_tokens=False).ids

    def encode_batch(self, texts: list[str]) -> list[list[int]]:
        return [e.ids for e in self._tok.encode_batch(texts, add_special_tokens=False)]

    def to_bytes(self, ids: Iterable[int]) -> bytes:
        return b"".join(self.token_bytes[i] for i in ids)

    def decode(self, ids: Iterable[int]) -> str:
        """The text of ``ids``; bytes that are not valid UTF-8 become U+FFFD."""
        return self.to_bytes(ids).decode("utf-8", errors="replace")

    def tokens_starting_with(self, prefix: bytes) -> list[int]:
        """Every token whose bytes begin with ``prefix`` (for token healing)."""
        return [i for i, data in enumerate(self.token_bytes) if data.startswith(prefix) and data]


class TextDecoder:
    """Incremental detokenizer: ``push(token)`` returns the text that became complete.

    A BPE token may end inside a multi-byte UTF-8 character; those bytes wait
    until the character is complete. The concatenation of every ``push`` and
    the final ``flush`` equals ``tokenizer.decode(all tokens)``.
    """

    def __init__(self, tokenizer: BPETokenizer, skip: int = 0) -> None:
        """``skip``: bytes of the first token to leave out, those a healed prompt
        already has (token healing)."""
        self._bytes = tokenizer.token_bytes
        self._utf8 = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._skip = skip

    def push(self, token: int) -> str:
        """The text completed by ``token``."""
        skip, self._skip = self._skip, 0
        return self._utf8.decode(self._bytes[token][skip:])

    def flush(self) -> str:
        return self._utf8.decode(b"", final=True)
