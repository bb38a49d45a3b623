"""Train / held-out splits that never change when files are added or reordered."""

from __future__ import annotations

import difflib
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import UserError


class DataError(UserError):
    """A dataset path, file or built-in name that cannot be used."""


@dataclass
class Splits:
    """A dataset's training part and its held-out part (``eval`` may be None).

    ``info`` says where the data came from, for the run's log and config.
    """

    train: Any
    eval: Any = None
    info: dict[str, Any] = field(default_factory=dict)

    def describe(self) -> str:
        sizes = f"{len(self.train)} train"
        if self.eval is not None:
            sizes += f" / {len(self.eval)} held out"
        return f"{self.info.get('name', 'data')} ({sizes})"


def is_held_out(key: str, fraction: float) -> bool:
    """Whether the item named ``key`` belongs to the held-out part.

    A hash of the name (not its position) decides, so adding a file to a folder
    never moves another file between train and eval.
    """
    return zlib.crc32(key.encode()) % 10_000 < fraction * 10_000


def split_names(names: list[str], fraction: float) -> tuple[list[int], list[int]]:
    """Indices of ``names`` for training and for evaluation.

    With ``fraction > 0`` and at least two items, both parts are non-empty.
    """
    if not 0 <= fraction < 1:
        raise DataError(f"holdout must be in [0, 1), got {fraction!r}")
    held = [i for i, name in enumerate(names) if is_held_out(name, fraction)]
    train = [i for i, name in enumerate(names) if not is_held_out(name, fraction)]
    if fraction > 0 and len(names) >= 2:
        if not held:
            held, train = train[-1:], train[:-1]
        elif not train:
            train, held = held[:1], held[1:]
    return train, held


def resolve_path(spec: str | Path, builtins: dict[str, Any], what: str) -> Path | str:
    """A built-in dataset name, or an existing path; otherwise a clear error."""
    text = str(spec)
    if text in builtins:
        return text
    path = Path(text).expanduser()
    if path.exists():
        return path
    message = f"{what} {text!r}: no such file or directory, and not a built-in dataset"
    close = difflib.get_close_matches(text, list(builtins), n=1)
    if close:
        message += f"; did you mean {close[0]!r}?"
    return _raise(message + f" (built-ins: {', '.join(sorted(builtins))})")


def _raise(message: str):
    raise DataError(message)
