"""Training data for the WaveNet: clips as mu-law classes, and random crops of them.

``--data tones`` is the built-in offline dataset of synthesized notes and
chords (label: the MIDI root note); ``--data DIR`` is WAV/FLAC files (label:
the class sub-folder). Both come from ``aigc_sdk.data.audio_dataset``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .model import SILENCE, mu_law_encode

NOTE_NAMES = ("C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B")


def note_name(midi: int) -> str:
    """MIDI 60 -> 'C4'."""
    return f"{NOTE_NAMES[midi % 12]}{midi // 12 - 1}"


MIDI_LABELS = [note_name(m) for m in range(128)]


def load_splits(spec: str, sample_rate: int = 16000, clip_seconds: float = 1.0):
    """``Splits`` of (waveform [1, samples], label) items and the label names."""
    try:
        from aigc_sdk.data import audio_dataset
    except ImportError:  # the trainer's data package has not landed on this branch yet
        if spec != "tones":
            raise
        return _fallback_tones(sample_rate, clip_seconds), MIDI_LABELS

    splits = audio_dataset(spec, sample_rate=sample_rate, clip_seconds=clip_seconds)
    labels = MIDI_LABELS if spec == "tones" else list(splits.info.get("classes") or [])
    return splits, labels


@dataclass
class ClipBank:
    """Every clip of a dataset in memory as uint8 mu-law classes [N, T], with labels [N]."""

    classes: torch.Tensor
    labels: torch.Tensor

    @classmethod
    def from_dataset(cls, dataset, limit: int | None = None) -> ClipBank:
        count = len(dataset) if limit is None else min(limit, len(dataset))
        waves, labels = [], []
        for i in range(count):
            wave, label = dataset[i]
            waves.append(mu_law_encode(wave.reshape(-1)).to(torch.uint8))
            labels.append(int(label))
        return cls(torch.stack(waves), torch.tensor(labels, dtype=torch.int64))

    def __len__(self) -> int:
        return len(self.labels)

    def crops(
        self, batch: int, length: int, context: int, rng: torch.Generator
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Random windows ``[batch, context + length]`` (int64) and their labels.

        Each clip is preceded by ``context`` samples of silence, so a window
        near a clip's start sees what generation sees: silence, then the note.
        The model reads the window and is scored on its last ``length`` samples,
        whose predictions depend on real samples only (``context`` >= the
        receptive field).
        """
        n, T = self.classes.shape
        index = torch.randint(n, (batch,), generator=rng)
        start = torch.randint(T - length + 1, (batch,), generator=rng)
        padded = torch.cat([torch.full((n, context), SILENCE, dtype=torch.uint8), self.classes], 1)
        rows = [padded[i, s : s + context + length] for i, s in zip(index, start, strict=True)]
        return torch.stack(rows).long(), self.labels[index]

    def whole(self, context: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Every clip, preceded by ``context`` samples of silence (for evaluation)."""
        silence = torch.full((len(self), context), SILENCE, dtype=torch.uint8)
        return torch.cat([silence, self.classes], 1).long(), self.labels


# -- until aigc_sdk.data lands: the same tones, synthesized here ---------------


def _fallback_tones(sample_rate: int, clip_seconds: float):
    """The trainer helper's ``tones`` (same algorithm and seeds): 2048 + 256 clips."""
    from types import SimpleNamespace

    clip = max(1, round(sample_rate * clip_seconds))

    class Tones(torch.utils.data.Dataset):
        def __init__(self, count: int, offset: int) -> None:
            self.count, self.offset = count, offset

        def __len__(self) -> int:
            return self.count

        def __getitem__(self, index: int):
            wave, root = _synth_tone(self.offset + index, clip, sample_rate)
            return torch.from_numpy(wave).unsqueeze(0), root

    return SimpleNamespace(
        train=Tones(2048, 0), eval=Tones(256, 2048), info={"name": "tones", "kind": "audio"}
    )


def _envelope(n, rate, rng):
    import numpy as np

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


def _synth_tone(index, samples, rate):
    import math

    import numpy as np

    shapes = ((0,), (0, 7), (0, 4, 7), (0, 3, 7), (0, 4, 7, 11), (0, 3, 7, 10))
    rng = np.random.default_rng([20240611, index])
    root = int(rng.integers(48, 73))
    shape = shapes[int(rng.integers(len(shapes)))]
    t = np.arange(samples) / rate
    brightness = rng.uniform(0.2, 0.7)
    wave = np.zeros(samples)
    for interval in shape:
        freq = 440.0 * 2 ** ((root + interval - 69) / 12) * (1 + rng.normal(0, 0.002))
        phase = rng.uniform(0, 2 * math.pi)
        for harmonic in range(1, 6):
            if freq * harmonic >= rate / 2:
                break
            wave += brightness ** (harmonic - 1) * np.sin(2 * math.pi * freq * harmonic * t + phase)
    wave *= _envelope(samples, rate, rng)
    wave *= rng.uniform(0.5, 0.9) / max(np.abs(wave).max(), 1e-9)
    return wave.astype(np.float32), root
