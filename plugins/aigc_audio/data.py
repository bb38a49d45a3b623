"""Training data for the WaveNet: clips as mu-law classes, and random crops of them.

``--data tones`` is the built-in offline dataset of synthesized notes and
chords (label: the MIDI root note); ``--data DIR`` is WAV/FLAC files (label:
the class sub-folder). Both come from ``aigc_sdk.data.audio_dataset``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .model import START, mu_law_encode

NOTE_NAMES = ("C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B")


def note_name(midi: int) -> str:
    """MIDI 60 -> 'C4'."""
    return f"{NOTE_NAMES[midi % 12]}{midi // 12 - 1}"


MIDI_LABELS = [note_name(m) for m in range(128)]


def load_splits(spec: str, sample_rate: int = 16000, clip_seconds: float = 1.0):
    """``Splits`` of (waveform [1, samples], label) items, and the label names.

    Tones are labelled by their MIDI root note (names 'C-1' .. 'G9'); files by
    their class sub-folder, or not at all (``[]``) when they share one folder.
    """
    from aigc_sdk.data import audio_dataset

    splits = audio_dataset(spec, sample_rate=sample_rate, clip_seconds=clip_seconds)
    if spec == "tones":
        return splits, MIDI_LABELS
    classes = splits.info["classes"]
    return splits, (list(classes) if len(classes) > 1 else [])


def crop_windows(
    classes: torch.Tensor, length: int, context: int, rng: torch.Generator | None = None
) -> torch.Tensor:
    """A random window ``[context + length]`` of each clip of ``classes`` ``[B, T]`` (int64).

    Each clip is preceded by ``context`` START marks, so a window near a clip's
    start sees what generation starts from: the marks, then the clip. The model
    reads the window and is scored on its last ``length`` samples, whose
    predictions depend on real samples only (``context`` >= the receptive field).
    """
    B, T = classes.shape
    length = min(length, T)
    start = torch.randint(T - length + 1, (B,), generator=rng)
    padded = torch.cat([torch.full((B, context), START, dtype=classes.dtype), classes], 1)
    offsets = start[:, None] + torch.arange(context + length)
    return padded.gather(1, offsets).long()


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
        """``crop_windows`` of ``batch`` random clips, and their labels."""
        index = torch.randint(len(self), (batch,), generator=rng)
        return crop_windows(self.classes[index], length, context, rng), self.labels[index]

    def whole(self, context: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Every clip, preceded by ``context`` START marks (for evaluation)."""
        start = torch.full((len(self), context), START, dtype=torch.int64)
        return torch.cat([start, self.classes.long()], 1), self.labels
