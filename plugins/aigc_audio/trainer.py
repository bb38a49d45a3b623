"""``aigc train audio``: the WaveNet through the SDK's training loop.

    aigc train audio --data tones --out runs/audio          # the default weights' recipe
    aigc train audio --data DIR --steps 4000 --out runs/mine  # WAV/FLAC files, class folders

Each step takes ``batch_size`` clips from the loop's sampler and scores a
random window of ``crop`` samples of each, after a receptive field of real
context (silence before a clip's start). Held-out evaluation reports bits per
sample over whole clips; samples are generated with the conv-queue generator
and saved as WAV + spectrogram. ``model/`` is a directory the ``audio``
generator loads with ``--weights``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from aigc_sdk import GenerationResult
from aigc_sdk.training import ConfigError, TrainConfig, Trainer, option

from .data import crop_windows, load_splits
from .generator import generate_classes
from .model import WaveNet, WaveNetConfig, mu_law_decode, mu_law_encode
from .objective import clip_nats, window_loss
from .spectrogram import spectrogram_png
from .weights import save_wavenet


class WaveNetTrainer(Trainer):
    """WaveNet on audio: 'tones' (synthesized notes and chords, 16 kHz) or WAV/FLAC files."""

    description = "WaveNet on 'tones' (synthesized notes and chords) or a folder of WAV/FLAC"

    @dataclass
    class Config(TrainConfig):
        data: str | None = option("tones", "audio: 'tones' or a folder/file of WAV, FLAC, OGG")
        steps: int = option(800, "training steps", min=1)
        batch_size: int = option(2, "clips per step (one random crop each)", min=1)
        lr: float = option(3e-3, "peak learning rate", min=0)
        lr_schedule: str = option(
            "cosine",
            "learning-rate schedule after warm-up",
            choices=("constant", "cosine", "linear"),
        )
        warmup_steps: int = option(50, "linear warm-up steps", min=0)
        min_lr_ratio: float = option(0.05, "final lr / peak lr", min=0, max=1)
        clip_grad_norm: float = option(1.0, "clip gradients to this global norm (0: off)", min=0)
        precision: str = option(
            "fp32", "fp32 (bf16 autocast is slower for this model on a CPU)",
            choices=("auto", "fp32", "bf16", "fp16"),
        )  # fmt: skip
        eval_every: int = option(100, "evaluate every N steps (0: only at the end)", min=0)
        eval_batches: int = option(2, "held-out batches per evaluation (0: all)", min=0)
        sample_every: int = option(0, "generate samples every N steps (0: only at the end)", min=0)
        checkpoint_every: int = option(100, "checkpoint every N steps (and at the end)", min=1)
        crop: int = option(4000, "scored samples per crop", min=1)
        sample_rate: int = option(16000, "sample rate the data is resampled to", min=1000)
        clip_seconds: float = option(1.0, "length of the dataset's clips", min=0.01)
        residual: int = option(32, "residual channels", min=1)
        gate: int = option(32, "channels of each gate half", min=1)
        skip: int = option(64, "skip and output-head channels", min=1)
        dilation_cycle: int = option(10, "dilations 1, 2, ..., 2^(cycle-1) per stack", min=1)
        stacks: int = option(2, "stacks of the dilation cycle", min=1)
        label_dim: int = option(16, "size of the global-conditioning embedding", min=1)
        conditional: bool = option(True, "condition on the data's labels (note or class folder)")
        sample_seconds: float = option(0.5, "length of each sample clip", min=0.01)
        sample_clips: int = option(2, "clips generated per sample", min=1)

        def __post_init__(self) -> None:
            super().__post_init__()
            if self.precision == "fp16":
                raise ConfigError("config key 'precision': fp16 is not supported by the WaveNet")

    def datasets(self, data):
        cfg = self.config
        splits, labels = load_splits(data, cfg.sample_rate, cfg.clip_seconds)
        self.labels = labels if cfg.conditional else []
        return splits

    def model_config(self) -> WaveNetConfig:
        cfg = self.config
        return WaveNetConfig(
            sample_rate=cfg.sample_rate,
            residual=cfg.residual,
            gate=cfg.gate,
            skip=cfg.skip,
            dilations=[2**i for i in range(cfg.dilation_cycle)] * cfg.stacks,
            labels=list(self.labels),
            label_dim=cfg.label_dim,
        )

    def build(self):
        self.net = WaveNet(self.model_config())
        return {"net": self.net}

    def _classes_and_labels(self, batch):
        waves, labels = batch
        classes = mu_law_encode(waves.reshape(waves.shape[0], -1))
        return classes, (labels.long() if self.labels else None)

    def crop_loss(self, batch):
        classes, labels = self._classes_and_labels(batch)
        context = self.net.cfg.receptive_field
        window = crop_windows(classes.cpu(), self.config.crop, context).to(classes.device)
        loss = window_loss(self.net, window, labels, min(self.config.crop, classes.shape[1]))
        return {"loss": loss, "bits": loss.detach() / math.log(2)}

    def training_step(self, batch, ctx):
        metrics = ctx.optimize(self.crop_loss)
        _, labels = self._classes_and_labels(batch)
        if labels is not None:  # what the generator draws from when no label is asked for
            counts = torch.bincount(labels, minlength=len(self.labels))
            self.net.label_counts += ctx.sum_over_processes(counts)
        return metrics

    def evaluation_step(self, batch):
        classes, labels = self._classes_and_labels(batch)
        nats = clip_nats(self.inference_model("net"), classes, labels)
        return {"bits": nats / math.log(2)}

    def samples(self):
        cfg = self.config
        model = self.inference_model("net")
        n = cfg.sample_clips
        rng = torch.Generator().manual_seed(cfg.seed)
        labels = None
        if self.labels:
            counts = model.label_counts.float().cpu()
            weights = counts if counts.sum() > 0 else torch.ones(len(self.labels))
            labels = torch.multinomial(weights, n, replacement=True, generator=rng)
        with torch.autocast(self.device.type, enabled=False):
            classes = generate_classes(
                model, round(cfg.sample_seconds * cfg.sample_rate), labels, n=n, seed=cfg.seed
            )
        audio = mu_law_decode(classes).cpu()
        titles = [self.labels[i] for i in labels.tolist()] if labels is not None else None
        result = GenerationResult("audio", audio=audio, sample_rate=cfg.sample_rate, seed=cfg.seed)
        result.attachments[".png"] = spectrogram_png(audio, cfg.sample_rate, titles)
        return result

    def export(self, directory):
        cfg = self.config
        save_wavenet(
            self.inference_model("net"),
            directory,
            training={
                "trainer": "aigc train audio",
                "steps": self.step,
                "config": cfg.to_dict(),
            },
        )
