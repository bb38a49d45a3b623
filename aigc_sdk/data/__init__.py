"""Datasets that need no download: a path, or a built-in name.

A trainer turns ``--data`` into datasets with one call per modality::

    splits = image_dataset(spec, size=32, channels=1)   # "digits" or a folder of images
    splits = audio_dataset(spec, sample_rate=16000)     # "tones" or WAV/FLAC files
    splits = text_dataset(spec)                         # "stdlib" or text files

Each returns ``Splits(train, eval, info)``. Built-ins work offline on a fresh
machine: ``digits`` (scikit-learn's bundled 8x8 digits, upsampled), ``tones``
(synthesized notes and chords at 16 kHz) and ``stdlib`` (the Python standard
library's own source files). A bad path or unreadable file is a ``DataError``
naming it.
"""

from __future__ import annotations

from pathlib import Path

from .splits import DataError, Splits, is_held_out, resolve_path, split_names

BUILTINS = {"digits": "image", "tones": "audio", "stdlib": "text"}

__all__ = [
    "BUILTINS",
    "DataError",
    "Document",
    "Splits",
    "TokenBlocks",
    "audio_dataset",
    "image_dataset",
    "is_held_out",
    "join_documents",
    "split_names",
    "text_dataset",
]


def _only(kind: str) -> dict[str, str]:
    return {name: k for name, k in BUILTINS.items() if k == kind}


def _builtin_or_path(spec: str | Path | None, kind: str) -> str | Path:
    if spec is None or str(spec) == "":
        raise DataError(
            f"this trainer needs --data: a path or a built-in {kind} dataset "
            f"({', '.join(_only(kind))})"
        )
    found = resolve_path(spec, BUILTINS, "--data")
    if isinstance(found, str) and BUILTINS[found] != kind:
        raise DataError(
            f"--data {found!r} is a built-in {BUILTINS[found]} dataset; this trainer needs "
            f"{kind} data (built-in: {', '.join(_only(kind))}, or a path)"
        )
    return found


def image_dataset(
    spec: str | Path | None, *, size: int = 32, channels: int = 1, holdout: float = 0.05
) -> Splits:
    """``digits`` or image files (a file or a folder; class sub-folders give labels)."""
    from . import images

    found = _builtin_or_path(spec, "image")
    if found == "digits":
        return images.digits(size, channels)
    return images.image_folder(found, size, channels, holdout)


def audio_dataset(
    spec: str | Path | None,
    *,
    sample_rate: int = 16000,
    clip_seconds: float = 1.0,
    holdout: float = 0.05,
) -> Splits:
    """``tones`` or audio files (WAV, FLAC, OGG) cut into mono clips at ``sample_rate``."""
    from . import audio

    found = _builtin_or_path(spec, "audio")
    if found == "tones":
        return audio.tones(sample_rate, clip_seconds)
    return audio.audio_folder(found, sample_rate, clip_seconds, holdout)


def text_dataset(spec: str | Path | None, *, holdout: float = 0.05) -> Splits:
    """``stdlib`` or text files: ``Splits`` of lists of ``Document(name, text)``."""
    from . import text

    found = _builtin_or_path(spec, "text")
    if found == "stdlib":
        return text.stdlib(holdout)
    return text.text_folder(found, holdout)


def __getattr__(name: str):
    # The text helpers import torch: only when asked for.
    if name in ("Document", "TokenBlocks", "join_documents"):
        from . import text

        return getattr(text, name)
    raise AttributeError(f"module 'aigc_sdk.data' has no attribute {name!r}")
