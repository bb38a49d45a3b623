"""Audio datasets: WAV/FLAC files cut into clips, and synthesized tones.

Every item is ``(waveform, label)``: a float tensor ``[1, samples]`` in [-1, 1]
at the requested sample rate (mono) and an int label (for tones, the MIDI
root note; for files, the index of the file's class folder or 0).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .splits import DataError, Splits, split_names

AUDIO_SUFFIXES = (".wav", ".flac", ".ogg", ".aiff", ".aif")
TONES_TRAIN, TONES_EVAL = 2048, 256


# -- synthesized tones ---------------------------------------------------------

MAJOR, MINOR = (0, 4, 7), (0, 3, 7)
SHAPES = ((0,), (0, 7), MAJOR, MINOR, (0, 4, 7, 11), (0, 3, 7, 10))


def _midi_hz(note: float) -> float:
    return 440.0 * 2 ** ((note - 69) / 12)


def _envelope(n: int, rate: int, rng: np.random.Generator) -> np.ndarray:
    """Attack-decay-sustain-release, with the note released before the clip ends."""
    attack = int(rate * rng.uniform(0.005, 0.08))
    decay = int(rate * rng.uniform(0.05, 0.3))
    sustain = rng.uniform(0.3, 0.8)
    release = int(rate * rng.uniform(0.05, 0.3))
    held = max(1, int(n * rng.uniform(0.4, 0.85)) - attack - decay)
    env = np.concatenate(
        [
            np.linspace(0, 1, attack, endpoint=False),
            np.linspace(1, sustain, decay, endpoint=False),
            np.full(held, sustain),
            np.linspace(sustain, 0, release),
        ]
    )
    out = np.zeros(n)
    out[: min(n, len(env))] = env[:n]
    return out


def synth_tone(index: int, samples: int, rate: int) -> tuple[np.ndarray, int]:
    """Clip ``index``: a note or chord with harmonics and an envelope (deterministic)."""
    rng = np.random.default_rng([20240611, index])
    root = int(rng.integers(48, 73))
    shape = SHAPES[int(rng.integers(len(SHAPES)))]
    t = np.arange(samples) / rate
    brightness = rng.uniform(0.2, 0.7)
    wave = np.zeros(samples, dtype=np.float32)
    for interval in shape:
        freq = _midi_hz(root + interval) * (1 + rng.normal(0, 0.002))
        # The phase is wrapped in float64 (exact for long clips), then float32 sin/cos,
        # much faster than float64's.
        cycles = freq * t + rng.uniform(0, 1)
        cycles -= np.floor(cycles)  # np.mod is far slower
        theta = (2 * math.pi * cycles).astype(np.float32)
        # Harmonics by the recurrence sin((h+1)x) = 2 cos(x) sin(hx) - sin((h-1)x):
        # two transcendental calls per note instead of one per harmonic.
        previous, current = np.zeros(samples, dtype=np.float32), np.sin(theta)
        two_cos = 2 * np.cos(theta)
        for harmonic in range(1, 6):
            if freq * harmonic >= rate / 2:
                break
            wave += np.float32(brightness ** (harmonic - 1)) * current
            previous, current = current, two_cos * current - previous
    wave *= _envelope(samples, rate, rng).astype(np.float32)
    peak = float(np.abs(wave).max())
    wave *= np.float32(rng.uniform(0.5, 0.9) / max(peak, 1e-9))
    return wave, root


class Tones(torch.utils.data.Dataset):
    """``count`` synthesized clips; item ``i`` is clip ``offset + i``, the same on every machine."""

    def __init__(self, count: int, offset: int, sample_rate: int, clip_samples: int) -> None:
        self.count, self.offset = count, offset
        self.sample_rate, self.clip_samples = sample_rate, clip_samples

    def __len__(self) -> int:
        return self.count

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        if not 0 <= index < self.count:
            raise IndexError(index)
        wave, root = synth_tone(self.offset + index, self.clip_samples, self.sample_rate)
        return torch.from_numpy(wave).unsqueeze(0), root


def tones(sample_rate: int = 16000, clip_seconds: float = 1.0) -> Splits:
    """2048 training and 256 held-out clips of notes and chords (MIDI 48-84)."""
    clip = _clip_samples(sample_rate, clip_seconds)
    return Splits(
        Tones(TONES_TRAIN, 0, sample_rate, clip),
        Tones(TONES_EVAL, TONES_TRAIN, sample_rate, clip),
        {"name": "tones", "kind": "audio", "sample_rate": sample_rate, "clip_samples": clip},
    )


def _clip_samples(sample_rate: int, clip_seconds: float) -> int:
    if sample_rate <= 0 or clip_seconds <= 0:
        raise DataError(
            f"sample_rate and clip_seconds must be positive, got {sample_rate}, {clip_seconds}"
        )
    return max(1, round(sample_rate * clip_seconds))


# -- audio files -------------------------------------------------------------


@dataclass(frozen=True)
class _Clip:
    file: int
    start: int  # in the file's own frames


class AudioClips(torch.utils.data.Dataset):
    """Fixed-length mono clips cut from audio files, resampled on access."""

    def __init__(
        self,
        files: list[Path],
        rates: list[int],
        clips: list[_Clip],
        labels: list[int],
        sample_rate: int,
        clip_samples: int,
    ) -> None:
        self.files, self.rates, self.clips, self.labels = files, rates, clips, labels
        self.sample_rate, self.clip_samples = sample_rate, clip_samples

    def __len__(self) -> int:
        return len(self.clips)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        import soundfile

        clip = self.clips[index]
        path, rate = self.files[clip.file], self.rates[clip.file]
        frames = math.ceil(self.clip_samples * rate / self.sample_rate)
        try:
            data, _ = soundfile.read(
                str(path), start=clip.start, frames=frames, dtype="float32", always_2d=True
            )
        except Exception as exc:  # soundfile raises several types for bad files
            raise DataError(f"cannot read audio file {path}: {exc}") from None
        wave = torch.from_numpy(data.mean(axis=1))
        wave = torch.nn.functional.pad(wave, (0, frames - len(wave)))
        return resample(wave, rate, self.sample_rate, self.clip_samples).unsqueeze(0), (
            self.labels[clip.file]
        )


def resample(wave: torch.Tensor, rate: int, target: int, samples: int) -> torch.Tensor:
    """Linear-interpolation resampling of a 1-D waveform to exactly ``samples`` samples."""
    if rate == target and len(wave) == samples:
        return wave
    out = torch.nn.functional.interpolate(
        wave.view(1, 1, -1), size=samples, mode="linear", align_corners=False
    )
    return out.view(-1)


def audio_files(root: Path) -> list[Path]:
    if root.is_file():
        return [root]
    files = sorted(
        p
        for p in root.rglob("*")
        if p.suffix.lower() in AUDIO_SUFFIXES
        and p.is_file()
        and not any(part.startswith(".") for part in p.relative_to(root).parts)
    )
    if not files:
        raise DataError(f"no audio files ({', '.join(AUDIO_SUFFIXES)}) under {root}")
    return files


def audio_folder(
    root: Path, sample_rate: int = 16000, clip_seconds: float = 1.0, holdout: float = 0.05
) -> Splits:
    """Audio files (a file or a folder) cut into ``clip_seconds`` clips; short files padded.

    Whole files are held out (by a stable hash of their path), so no clip of a
    held-out recording is trained on. Files in class sub-folders are labelled by
    their folder's index in ``info["classes"]``; otherwise every label is 0 and
    ``info["classes"]`` is empty.
    """
    import soundfile

    clip = _clip_samples(sample_rate, clip_seconds)
    files = audio_files(root)
    rates, lengths = [], []
    for path in files:
        try:
            info = soundfile.info(str(path))
        except Exception as exc:  # soundfile raises several types for bad files
            raise DataError(f"cannot read audio file {path}: {exc}") from None
        rates.append(int(info.samplerate))
        lengths.append(int(info.frames))
    base = root if root.is_dir() else root.parent
    relative = [p.relative_to(base).as_posix() for p in files]
    in_folders = all(len(Path(r).parts) >= 2 for r in relative)
    classes = sorted({Path(r).parts[0] for r in relative}) if in_folders else ["audio"]
    labels = [classes.index(Path(r).parts[0]) if in_folders else 0 for r in relative]
    train, held = split_names(relative, holdout)

    def subset(indices: list[int]) -> AudioClips:
        clips = []
        for i in indices:
            step = clip * rates[i] / sample_rate  # one clip, in the file's frames
            count = max(1, int(lengths[i] // step))
            clips += [_Clip(i, int(k * step)) for k in range(count)]
        return AudioClips(files, rates, clips, labels, sample_rate, clip)

    return Splits(
        subset(train),
        subset(held) if held else None,
        {
            "name": str(root),
            "kind": "audio",
            "sample_rate": sample_rate,
            "clip_samples": clip,
            "classes": classes if in_folders else [],
        },
    )
