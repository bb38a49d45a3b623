"""Text datasets: text files and folders, and the Python standard library's source.

A text dataset is a list of documents; a trainer encodes them with its own
tokenizer and cuts the token stream into blocks with ``TokenBlocks``.
"""

from __future__ import annotations

import functools
import sysconfig
from dataclasses import dataclass
from pathlib import Path

import torch

from .splits import DataError, Splits, split_names

TEXT_SUFFIXES = (
    ".txt", ".md", ".rst", ".py", ".pyi", ".json", ".csv", ".tsv", ".html", ".xml", ".tex",
    ".c", ".h", ".cc", ".cpp", ".hpp", ".cu", ".js", ".ts", ".rs", ".go", ".java", ".sh",
    ".toml", ".yaml", ".yml", ".ini", ".cfg",
)  # fmt: skip
STDLIB_SKIP = {"site-packages", "dist-packages", "test", "tests", "idle_test", "__pycache__"}


@dataclass(frozen=True)
class Document:
    name: str  # the path relative to the dataset's root
    text: str


def read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise DataError(f"{path} is not UTF-8 text: {exc.reason} at byte {exc.start}") from None
    except OSError as exc:
        raise DataError(f"cannot read {path}: {exc.strerror or exc}") from None


def text_files(root: Path) -> list[Path]:
    """A file, or the text files (by suffix, or with none) in a folder, sorted."""
    if root.is_file():
        return [root]
    files = sorted(
        p
        for p in root.rglob("*")
        if p.is_file()
        and (p.suffix.lower() in TEXT_SUFFIXES or not p.suffix)
        and not any(part.startswith(".") for part in p.relative_to(root).parts)
    )
    if not files:
        raise DataError(f"no text files ({', '.join(TEXT_SUFFIXES[:4])}, ...) under {root}")
    return files


def _documents(root: Path, files: list[Path]) -> list[Document]:
    base = root if root.is_dir() else root.parent
    return [Document(p.relative_to(base).as_posix(), read_text(p)) for p in files]


def _split(docs: list[Document], holdout: float, info: dict) -> Splits:
    if len(docs) == 1:  # one file: hold out its tail instead
        text = docs[0].text
        cut = len(text) - int(len(text) * holdout)
        return Splits(
            [Document(docs[0].name, text[:cut])],
            [Document(docs[0].name + "#tail", text[cut:])] if cut < len(text) else None,
            info,
        )
    train, held = split_names([d.name for d in docs], holdout)
    return Splits([docs[i] for i in train], [docs[i] for i in held] or None, info)


def text_folder(root: Path, holdout: float = 0.05) -> Splits:
    """Documents from a text file or folder; whole files are held out by a stable hash.

    A single file holds out its last ``holdout`` fraction of characters.
    """
    docs = _documents(root, text_files(root))
    return _split(docs, holdout, {"name": str(root), "kind": "text", "files": len(docs)})


def stdlib_root() -> Path:
    return Path(sysconfig.get_path("stdlib"))


@functools.lru_cache(maxsize=1)
def _stdlib_documents() -> tuple[Document, ...]:
    root = stdlib_root()
    files = sorted(
        p for p in root.rglob("*.py") if not STDLIB_SKIP & set(p.relative_to(root).parts[:-1])
    )
    if not files:
        raise DataError(f"no Python source files in the standard library at {root}")
    docs = []
    for path in files:
        try:
            docs.append(Document(path.relative_to(root).as_posix(), read_text(path)))
        except DataError:
            continue  # a few stdlib files are deliberately not UTF-8 (encoding tests)
    return tuple(docs)


def stdlib(holdout: float = 0.05) -> Splits:
    """The Python standard library's own .py files (tests excluded), about 12 MB.

    Whole files are held out by a stable hash of their path.
    """
    docs = list(_stdlib_documents())
    return _split(docs, holdout, {"name": "stdlib", "kind": "text", "root": str(stdlib_root())})


class TokenBlocks(torch.utils.data.Dataset):
    """Consecutive blocks of a token stream: item ``i`` is ``(x, y)`` with ``y = x`` shifted by one.

    Blocks do not overlap, so an epoch sees each token once; shuffling the
    block order is the sampler's job.
    """

    def __init__(self, tokens: torch.Tensor, block_size: int) -> None:
        if tokens.dim() != 1:
            raise ValueError(f"tokens must be 1-D, got shape {tuple(tokens.shape)}")
        if len(tokens) < block_size + 1:
            raise DataError(
                f"the text has {len(tokens)} tokens: too short for one block of {block_size}"
            )
        self.tokens, self.block_size = tokens, block_size

    def __len__(self) -> int:
        return (len(self.tokens) - 1) // self.block_size

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        if not 0 <= index < len(self):
            raise IndexError(index)
        start = index * self.block_size
        chunk = self.tokens[start : start + self.block_size + 1]
        return chunk[:-1], chunk[1:]


def join_documents(docs: list[Document], separator: str = "\n\n") -> str:
    return separator.join(d.text for d in docs)
