"""A small real trainer: a convolutional autoencoder on the built-in digits.

It exercises everything the training loop offers (dropout for RNG-exact
resume, evaluation, image samples, export) in seconds on a CPU::

    aigc train tiny --steps 300 --out runs/tiny

The example plugin registers it lazily as ``"aigc_example.tiny_trainer:TinyTrainer"``,
so this module (and torch) is imported only when the trainer is used.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from aigc_sdk import GenerationResult
from aigc_sdk.checkpoint import load_into, load_pretrained, save_pretrained
from aigc_sdk.data import image_dataset
from aigc_sdk.media import to_pil
from aigc_sdk.training import ConfigError, TrainConfig, Trainer, option

PLUGIN = "tiny"


class TinyAutoencoder(nn.Module):
    """image [n, c, s, s] in [-1, 1] -> latent [n, latent] -> image."""

    def __init__(
        self, channels: int = 1, image_size: int = 32, width: int = 16, latent: int = 16,
        dropout: float = 0.0,
    ) -> None:  # fmt: skip
        super().__init__()
        self.config = {
            "channels": channels,
            "image_size": image_size,
            "width": width,
            "latent": latent,
        }
        side = image_size // 4
        self.encoder = nn.Sequential(
            nn.Conv2d(channels, width, 4, 2, 1),
            nn.SiLU(),
            nn.Conv2d(width, 2 * width, 4, 2, 1),
            nn.SiLU(),
            nn.Flatten(),
            nn.Dropout(dropout),
            nn.Linear(2 * width * side * side, latent),
        )
        self.decoder = nn.Sequential(
            nn.Linear(latent, 2 * width * side * side),
            nn.SiLU(),
            nn.Unflatten(1, (2 * width, side, side)),
            nn.ConvTranspose2d(2 * width, width, 4, 2, 1),
            nn.SiLU(),
            nn.ConvTranspose2d(width, channels, 4, 2, 1),
            nn.Tanh(),
        )

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.encoder(images))

    @classmethod
    def from_pretrained(cls, directory: str | Path) -> TinyAutoencoder:
        config, tensors = load_pretrained(directory, PLUGIN)
        model = cls(**config)
        load_into(model, tensors, Path(directory) / "model.safetensors")
        return model.eval()


class TinyTrainer(Trainer):
    """Conv autoencoder on 32x32 digits (or any image folder): reconstruction MSE."""

    description = "tiny conv autoencoder on digits (the example plugin's trainer)"

    @dataclass
    class Config(TrainConfig):
        data: str | None = option("digits", "images: 'digits' or a folder of PNG/JPEG files")
        steps: int = option(300, "training steps", min=1)
        lr: float = option(2e-3, "peak learning rate", min=0)
        eval_every: int = option(100, "evaluate every N steps (0: only at the end)", min=0)
        sample_every: int = option(100, "sample grid every N steps (0: only at the end)", min=0)
        checkpoint_every: int = option(100, "checkpoint every N steps (and at the end)", min=1)
        image_size: int = option(32, "image side in pixels (a multiple of 4)", min=4)
        channels: int = option(1, "1 (grey) or 3 (RGB)", choices=(1, 3))
        width: int = option(16, "channels of the first convolution", min=1)
        latent: int = option(16, "latent size", min=1)
        dropout: float = option(0.1, "dropout before the latent layer", min=0, max=0.9)

        def __post_init__(self) -> None:
            super().__post_init__()
            if self.image_size % 4:
                raise ConfigError(
                    f"config key 'image_size' must be a multiple of 4, got {self.image_size}"
                )

    def datasets(self, data):
        cfg = self.config
        return image_dataset(data, size=cfg.image_size, channels=cfg.channels)

    def build(self):
        cfg = self.config
        self.net = TinyAutoencoder(cfg.channels, cfg.image_size, cfg.width, cfg.latent, cfg.dropout)
        return {"net": self.net}

    def reconstruction_loss(self, batch):
        images, _ = batch
        return F.mse_loss(self.net(images), images)

    def training_step(self, batch, ctx):
        return ctx.optimize(self.reconstruction_loss)

    def evaluation_step(self, batch):
        images, _ = batch
        return {"loss": F.mse_loss(self.inference_model("net")(images), images)}

    def samples(self):
        held_out = self.splits.eval or self.splits.train
        originals = torch.stack([held_out[i][0] for i in range(min(8, len(held_out)))])
        originals = originals.to(self.device)
        rebuilt = self.inference_model("net")(originals).float()
        return GenerationResult(
            "image",
            images=to_pil(torch.cat([originals, rebuilt])),
            tensors={"originals": originals.cpu(), "reconstructions": rebuilt.cpu()},
            seed=self.config.seed,
        )

    def export(self, directory):
        model = self.inference_model("net")
        save_pretrained(
            directory, plugin=PLUGIN, config=self.net.config, tensors=model.state_dict()
        )
