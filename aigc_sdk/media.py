"""Turning tensors into files a person can open: images (PNG, JPEG, WebP),
grids, audio (WAV, FLAC, Ogg Vorbis) and text.

Every file is written atomically (a temporary file renamed into place), so a
process killed mid-write never leaves a half-written image or clip behind.
"""

from __future__ import annotations

import io
import math
import os
import tempfile
import wave
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from .errors import UserError

if TYPE_CHECKING:
    import torch
    from PIL import Image

    from .generation import GenerationResult

__all__ = [
    "MEDIA_SUFFIX",
    "OUTPUT_FORMATS",
    "OutputPathError",
    "atomic_write",
    "audio_bytes",
    "check_output_path",
    "image_bytes",
    "make_grid",
    "png_bytes",
    "read_wav",
    "save_audio",
    "save_image",
    "save_result",
    "save_wav",
    "to_pil",
    "wav_bytes",
]

# The suffixes each modality can be written as and the format each names; the
# first is the default (a directory's numbered files, the CLI's out/NAME.*).
OUTPUT_FORMATS: dict[str, dict[str, str]] = {
    "image": {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".webp": "WEBP"},
    "text": {".txt": "text", ".md": "text"},
    "audio": {".wav": "WAV", ".flac": "FLAC", ".ogg": "OGG"},
}
MEDIA_SUFFIX = {modality: next(iter(formats)) for modality, formats in OUTPUT_FORMATS.items()}


class OutputPathError(UserError, ValueError):
    """An output path the result cannot be saved to as asked (a user error)."""


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write(path: str | Path, data: bytes) -> Path:
    """Writes ``data`` to ``path`` through a temporary file and a rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as exc:
        exc.filename = str(path)  # the file asked for, not the temporary's random name
        raise
    try:
        os.fchmod(fd, 0o666 & ~_umask())  # mkstemp makes 0600; give the user's usual mode
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def to_pil(images: torch.Tensor) -> list[Image.Image]:
    """Converts [n, c, h, w] floats in [-1, 1] (c = 1 or 3) to PIL images."""
    from PIL import Image

    if images.dim() == 3:
        images = images.unsqueeze(0)
    if images.dim() != 4 or images.shape[1] not in (1, 3):
        raise ValueError(f"images must be [n, 1|3, h, w], got {tuple(images.shape)}")
    pixels = ((images.detach().float().cpu().clamp(-1, 1) + 1) * 127.5).round().byte()
    pixels = pixels.permute(0, 2, 3, 1).numpy()
    mode = "L" if pixels.shape[-1] == 1 else "RGB"
    return [Image.fromarray(p[..., 0] if mode == "L" else p, mode) for p in pixels]


def make_grid(
    images: Sequence[Image.Image], columns: int | None = None, padding: int = 2
) -> Image.Image:
    """Tiles images into one picture, as square as the count allows."""
    from PIL import Image

    if not images:
        raise ValueError("make_grid needs at least one image")
    columns = columns or math.ceil(math.sqrt(len(images)))
    rows = math.ceil(len(images) / columns)
    w, h = images[0].size
    grid = Image.new("RGB", (columns * (w + padding) + padding, rows * (h + padding) + padding))
    for i, img in enumerate(images):
        r, c = divmod(i, columns)
        grid.paste(img.convert("RGB"), (padding + c * (w + padding), padding + r * (h + padding)))
    return grid


def _format(modality: str, path: Path) -> str:
    formats = OUTPUT_FORMATS[modality]
    suffix = path.suffix.lower()
    if suffix not in formats:
        raise OutputPathError(f"{path}: {_suffix_problem(modality, suffix)}")
    return formats[suffix]


def _suffix_problem(modality: str, suffix: str) -> str:
    what = f"cannot write {modality} as {suffix}" if suffix else "has no file suffix"
    return f"{what}; expected {_accepted(modality)}, or a directory ending in /"


def _accepted(modality: str) -> str:
    suffixes = list(OUTPUT_FORMATS[modality])
    return ", ".join(suffixes[:-1]) + f" or {suffixes[-1]}" if len(suffixes) > 1 else suffixes[0]


def png_bytes(image: Image.Image) -> bytes:
    return image_bytes(image, "PNG")


def image_bytes(image: Image.Image, fmt: str = "PNG") -> bytes:
    """``image`` encoded as PNG, JPEG or WEBP (lossy formats at quality 95)."""
    buf = io.BytesIO()
    if fmt in ("JPEG", "WEBP"):
        if image.mode not in ("L", "RGB"):
            image = image.convert("RGB")
        image.save(buf, format=fmt, quality=95)
    else:
        image.save(buf, format=fmt)
    return buf.getvalue()


def save_image(image: Image.Image, path: str | Path) -> Path:
    """Writes ``image`` in the format its suffix names (.png, .jpg/.jpeg, .webp)."""
    return atomic_write(path, image_bytes(image, _format("image", Path(path))))


def wav_bytes(waveform: torch.Tensor, sample_rate: int) -> bytes:
    """16-bit PCM WAV of a mono [samples] or [channels, samples] waveform in [-1, 1]."""
    import numpy as np
    import torch

    audio = waveform.detach().float().cpu()
    if audio.dim() == 1:
        audio = audio.unsqueeze(0)
    if audio.dim() != 2:
        raise ValueError(
            f"waveform must be [samples] or [channels, samples], got {tuple(audio.shape)}"
        )
    pcm = (audio.clamp(-1, 1) * 32767).round().to(torch.int16)
    frames = np.ascontiguousarray(pcm.t().numpy())
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(audio.shape[0])
        w.setsampwidth(2)
        w.setframerate(int(sample_rate))
        w.writeframes(frames.tobytes())
    return buf.getvalue()


def save_wav(waveform: torch.Tensor, sample_rate: int, path: str | Path) -> Path:
    return atomic_write(path, wav_bytes(waveform, sample_rate))


def audio_bytes(waveform: torch.Tensor, sample_rate: int, fmt: str = "WAV") -> bytes:
    """A waveform in [-1, 1] as WAV or FLAC (16-bit PCM) or OGG (Vorbis)."""
    if fmt == "WAV":
        return wav_bytes(waveform, sample_rate)
    import soundfile

    audio = waveform.detach().float().cpu()
    if audio.dim() == 1:
        audio = audio.unsqueeze(0)
    subtype = {"FLAC": "PCM_16", "OGG": "VORBIS"}[fmt]
    buf = io.BytesIO()
    soundfile.write(buf, audio.clamp(-1, 1).t().numpy(), int(sample_rate), subtype, format=fmt)
    return buf.getvalue()


def save_audio(waveform: torch.Tensor, sample_rate: int, path: str | Path) -> Path:
    """Writes a waveform in the format its suffix names (.wav, .flac, .ogg)."""
    return atomic_write(path, audio_bytes(waveform, sample_rate, _format("audio", Path(path))))


def read_wav(path: str | Path) -> tuple[torch.Tensor, int]:
    """Reads any file soundfile reads (WAV, FLAC, OGG) as float [channels, samples]."""
    import soundfile
    import torch

    try:
        data, rate = soundfile.read(str(path), dtype="float32", always_2d=True)
    except Exception as exc:  # soundfile raises several types for bad files
        raise UserError(f"cannot read audio file {path}: {exc}") from exc
    return torch.from_numpy(data.T.copy()), rate


def _is_dir_target(path: Path, raw: str) -> bool:
    return raw.endswith(("/", os.sep)) or path.is_dir()


def check_output_path(path: str | Path, modality: str) -> None:
    """Raises ``OutputPathError`` unless a ``modality`` result can be saved to ``path``.

    A directory (a path ending in ``/``, or one that exists) is made as
    needed. A file path needs a suffix the modality can write
    (``OUTPUT_FORMATS``) and an existing folder: a mistyped folder is an
    error, not a new directory tree.
    """
    raw, path = str(path), Path(path)
    if _is_dir_target(path, raw):
        return
    suffix = path.suffix.lower()
    if suffix not in OUTPUT_FORMATS[modality]:
        raise OutputPathError(f"{path}: {_suffix_problem(modality, suffix)}")
    parent = path.parent
    if not parent.exists():
        raise OutputPathError(
            f"{path}: folder {parent} does not exist; create it, or end the path with / "
            "to write a directory"
        )


def _numbered(directory: Path, index: int, suffix: str) -> Path:
    return directory / f"{index:04d}{suffix}"


def save_result(result: GenerationResult, path: str | Path) -> list[Path]:
    check_output_path(path, result.modality)
    raw = str(path)
    path = Path(path)
    as_dir = _is_dir_target(path, raw)
    attachments = {
        _attachment_path(path, as_dir, result.modality, suffix): data
        for suffix, data in result.attachments.items()
    }
    if path in attachments:
        usual = path.with_suffix(MEDIA_SUFFIX.get(result.modality, ""))
        hint = f" such as {usual.name}" if usual not in attachments else ""
        raise OutputPathError(
            f"{path}: an attachment of the {result.modality} result would overwrite the "
            f"output; expected another output file name{hint}"
        )
    written = _save_outputs(result, path, as_dir)
    return written + [atomic_write(target, data) for target, data in attachments.items()]


def _attachment_path(path: Path, as_dir: bool, modality: str, suffix: str) -> Path:
    """Where attachment ``suffix`` goes: beside the output file, or inside the directory."""
    if not suffix or "/" in suffix or os.sep in suffix:
        raise ValueError(f"attachment names are suffixes such as '.png', got {suffix!r}")
    if as_dir:
        return path / f"{modality}{suffix}"
    return path.with_name(path.stem + suffix)


def _save_outputs(result: GenerationResult, path: Path, as_dir: bool) -> list[Path]:
    if result.modality == "image":
        if as_dir:
            return [
                save_image(img, _numbered(path, i, MEDIA_SUFFIX["image"]))
                for i, img in enumerate(result.images)
            ]
        image = result.images[0] if len(result.images) == 1 else make_grid(result.images)
        return [save_image(image, path)]
    if result.modality == "text":
        if as_dir:
            return [
                atomic_write(_numbered(path, i, MEDIA_SUFFIX["text"]), t.encode())
                for i, t in enumerate(result.texts)
            ]
        return [atomic_write(path, "\n\n".join(result.texts).encode())]
    if result.modality == "audio":
        clips = result.audio if result.audio.dim() == 2 else result.audio.unsqueeze(0)
        if as_dir:
            targets = [_numbered(path, i, MEDIA_SUFFIX["audio"]) for i in range(len(clips))]
        elif len(clips) == 1:
            targets = [path]
        else:
            targets = [
                path.with_name(f"{path.stem}-{i:04d}{path.suffix}") for i in range(len(clips))
            ]
        return [
            save_audio(clip, result.sample_rate, t) for clip, t in zip(clips, targets, strict=True)
        ]
    raise ValueError(f"unknown modality {result.modality!r}")
