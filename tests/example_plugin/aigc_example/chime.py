"""A wind chime: seeded notes of a pentatonic scale with bell-like partials.

No weights; it shows the audio side of the API (waveform + sample rate).
"""

from __future__ import annotations

import math

import torch

from aigc_sdk import AudioRequest, GenerationResult, Generator, RequestError, resolve_seed

SAMPLE_RATE = 16_000
SCALE = [0, 2, 4, 7, 9]  # major pentatonic, semitones above the root
PARTIALS = [(1.0, 1.0), (2.76, 0.5), (5.40, 0.25)]  # bell-like (ratio, amplitude)


def chime(seconds: float, rng: torch.Generator) -> torch.Tensor:
    samples = int(seconds * SAMPLE_RATE)
    t = torch.arange(samples) / SAMPLE_RATE
    out = torch.zeros(samples)
    onset = 0.0
    while onset < seconds:
        step = SCALE[int(torch.randint(len(SCALE), (1,), generator=rng))]
        octave = int(torch.randint(2, (1,), generator=rng))
        freq = 440.0 * 2 ** ((step + 12 * octave - 9) / 12)
        local = (t - onset).clamp_min(0)
        envelope = torch.where(t >= onset, torch.exp(-3.0 * local), torch.zeros_like(t))
        for ratio, amplitude in PARTIALS:
            out += amplitude * envelope * torch.sin(2 * math.pi * freq * ratio * local)
        onset += 0.15 + 0.35 * float(torch.rand((), generator=rng))
    return out / out.abs().max().clamp_min(1e-6) * 0.8


class ChimeGenerator(Generator):
    modality = "audio"
    Request = AudioRequest
    thread_safe = True

    def __init__(self, weights: str | None = None, device: str = "cpu") -> None:
        if weights is not None:
            raise ValueError("chime has no weights")

    def generate(self, request: AudioRequest) -> GenerationResult:
        if int(request.seconds * SAMPLE_RATE) < 1:
            raise RequestError(
                f"seconds must hold at least one sample (>= {1 / SAMPLE_RATE:g}), "
                f"got {request.seconds!r}"
            )
        seed = resolve_seed(request.seed)
        rng = torch.Generator().manual_seed(seed)
        audio = torch.stack([chime(request.seconds, rng) for _ in range(request.n)])
        return GenerationResult("audio", audio=audio, sample_rate=SAMPLE_RATE, seed=seed)
