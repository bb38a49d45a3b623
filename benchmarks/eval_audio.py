"""Measures the audio generator: is it music, how well does it fit, how fast is it.

    python benchmarks/eval_audio.py [--weights DIR] [--clips 32] [--out bench/audio.json]

1. Neither silence nor noise: RMS level (dBFS) and spectral flatness (Wiener
   entropy: 0 for a pure tone, ~0.56 for white noise with this estimator) of
   generated clips beside held-out training clips (as recorded, and after the
   8-bit mu-law round trip the model works in) and beside white noise.
2. Held-out negative log-likelihood in bits per sample (8 = a uniform guess).
3. Generation speed: real-time factor (wall seconds per second of audio; < 1
   is faster than real time) of the conv-queue generator (NumPy and torch
   steps) with the fused sampler, against naive generation that runs the
   whole network over the receptive field for every sample. The naive loop
   is timed on a short clip and scaled to one second (it is linear in length).

Timings are taken in one process, interleaved, best of ``--repeats``; the
machine is shared, so ratios are more meaningful than absolute times.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "plugins"))

from aigc_audio.data import ClipBank, load_splits  # noqa: E402
from aigc_audio.generator import (  # noqa: E402
    WaveNetRequest,
    generate_classes,
    resolve_labels,
)
from aigc_audio.model import (  # noqa: E402
    START,
    ConvQueues,
    NumpyConvQueues,
    WaveNet,
    mu_law_decode,
    mu_law_encode,
)
from aigc_audio.objective import heldout_bits  # noqa: E402
from aigc_audio.spectrogram import spectrogram_png  # noqa: E402
from aigc_audio.weights import load_wavenet  # noqa: E402

from aigc_sdk.ops import sample  # noqa: E402

SAMPLING = ("temperature", "top_k", "top_p", "min_p")

# -- 1. level and flatness ---------------------------------------------------------


def frame_power(clip: torch.Tensor, n_fft: int = 512, hop: int = 256) -> torch.Tensor:
    """Power spectra [frames, bins] of Hann-windowed frames of a mono clip."""
    frames = clip.unfold(0, n_fft, hop) * torch.hann_window(n_fft)
    return torch.fft.rfft(frames).abs().pow(2)


def level_and_flatness(clips: torch.Tensor, floor_db: float = -50.0) -> dict[str, float]:
    """Mean RMS (dBFS) of the clips, and mean spectral flatness of their non-silent frames.

    Flatness = geometric mean / arithmetic mean of a frame's power spectrum.
    Frames quieter than ``floor_db`` are left out (the tail of a released note
    is silence in both data and samples; its flatness says nothing).
    """
    rms = clips.pow(2).mean(-1).sqrt()
    flat, loud = [], 0
    for clip in clips:
        power = frame_power(clip.float()) + 1e-12
        frame_db = 10 * torch.log10(power.mean(-1) * 2 / 512 / 0.375 + 1e-12)  # ~ dBFS of a frame
        keep = frame_db > floor_db
        loud += int(keep.sum())
        if keep.any():
            p = power[keep]
            flat.append(p.log().mean(-1).exp() / p.mean(-1))
    flatness = torch.cat(flat).mean().item() if flat else float("nan")
    return {
        "rms_dbfs": 20 * math.log10(max(rms.mean().item(), 1e-9)),
        "spectral_flatness": flatness,
        "loud_frame_fraction": loud / (len(clips) * frame_power(clips[0]).shape[0]),
    }


# -- 3. speed ------------------------------------------------------------------------


@torch.no_grad()
def naive_generate(model: WaveNet, samples: int, labels, seed: int) -> torch.Tensor:
    """Each sample from a full forward over the last receptive field: O(field x layers) each."""
    rf = model.cfg.receptive_field
    x = torch.full((len(labels), rf), START, dtype=torch.int64)
    for t in range(samples):
        logits = model(x[:, -rf:], labels)[:, -1]
        nxt = sample(logits, seed=seed, offset=t)
        x = torch.cat([x, nxt[:, None]], 1)
    return x[:, rf:]


def time_it(fn, repeats: int) -> tuple[float, float]:
    """Best wall and CPU seconds of ``repeats`` calls."""
    wall, cpu = math.inf, math.inf
    for _ in range(repeats):
        w, c = time.perf_counter(), time.process_time()
        fn()
        wall, cpu = min(wall, time.perf_counter() - w), min(cpu, time.process_time() - c)
    return wall, cpu


def speed(model: WaveNet, repeats: int, naive_seconds: float) -> dict[str, float]:
    rate = model.cfg.sample_rate
    label = torch.tensor([60]) if model.cfg.labels else None

    def queues(kind):
        return lambda: generate_classes(model, rate, label, n=1, seed=1, queues_type=kind)

    naive_samples = max(1, round(naive_seconds * rate))
    results = {}
    for name, fn, seconds in (
        ("queues_numpy", queues(NumpyConvQueues), 1.0),
        ("queues_torch", queues(ConvQueues), 1.0),
        ("naive", lambda: naive_generate(model, naive_samples, label, 1), naive_seconds),
    ):
        wall, cpu = time_it(fn, repeats if name != "naive" else 1)
        results[f"rtf_{name}"] = wall / seconds
        results[f"cpu_rtf_{name}"] = cpu / seconds
    batch = 4  # n clips share each step: the per-clip cost falls
    labels = label.repeat(batch) if label is not None else None
    wall, _ = time_it(lambda: generate_classes(model, rate // 4, labels, n=batch, seed=1), 1)
    results["rtf_queues_numpy_batch4_per_clip"] = wall / 0.25 / batch
    results["naive_timed_seconds"] = naive_seconds
    results["speedup_numpy_vs_naive"] = results["rtf_naive"] / results["rtf_queues_numpy"]
    results["speedup_torch_vs_naive"] = results["rtf_naive"] / results["rtf_queues_torch"]
    results["cpu_speedup_numpy_vs_naive"] = (
        results["cpu_rtf_naive"] / results["cpu_rtf_queues_numpy"]
    )
    return results


# -- main ----------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--weights", help="checkpoint directory (default: the shipped weights)")
    p.add_argument("--clips", type=int, default=32, help="held-out clips scored / compared")
    p.add_argument("--generated", type=int, default=8, help="clips generated (1 s each)")
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--naive-seconds", type=float, default=0.05)
    p.add_argument("--out", type=Path, default=ROOT / "bench" / "audio.json")
    args = p.parse_args(argv)
    torch.set_num_threads(1)

    model, config = load_wavenet(args.weights)
    splits, _ = load_splits("tones")
    held = ClipBank.from_dataset(splits.eval, limit=args.clips)
    data = torch.stack([splits.eval[i][0][0] for i in range(args.clips)])
    rng = torch.Generator().manual_seed(0)
    labels = resolve_labels(model, None, args.generated, rng)
    sampling = {  # the generator's defaults, and the model's own distribution
        "default": {k: getattr(WaveNetRequest(), k) for k in SAMPLING},
        "temperature_1": {"temperature": 1.0, "top_k": 0, "top_p": 1.0, "min_p": 0.0},
    }
    generated = {}
    for name, params in sampling.items():
        classes = generate_classes(
            model, model.cfg.sample_rate, labels, n=args.generated, seed=0, **params
        )
        generated[name] = mu_law_decode(classes)
    noise = (torch.rand(args.generated, model.cfg.sample_rate) * 2 - 1) * 0.5
    report = {
        "weights": str(args.weights or "default"),
        "training": config.get("training", {}),
        "sampling": sampling,
        "level_and_flatness": {
            **{f"generated_{k}": level_and_flatness(v) for k, v in generated.items()},
            "data": level_and_flatness(data),
            "data_mu_law": level_and_flatness(mu_law_decode(mu_law_encode(data))),
            "white_noise": level_and_flatness(noise),
            "silence_rms_dbfs": -math.inf,
        },
        "heldout_bits_per_sample": heldout_bits(model, held),
        "heldout_clips": args.clips,
        "speed": speed(model, args.repeats, args.naive_seconds),
        "threads": torch.get_num_threads(),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    names = model.cfg.labels
    titles = [f"{names[i]}, {k}" for k in generated for i in labels[:3].tolist()] if names else None
    clips = torch.cat([v[:3] for v in generated.values()])
    png = spectrogram_png(clips, model.cfg.sample_rate, titles, max_panels=len(clips))
    args.out.with_suffix(".png").write_bytes(png)
    print(json.dumps(report, indent=2))
    return report


if __name__ == "__main__":
    main()
