"""``aigc train gan``: a DCGAN trained through aigc-sdk's training loop.

    aigc train gan --data digits --out runs/gan            # the shipped weights' recipe
    aigc train gan --data path/to/images --loss ns --no-spectral-norm --no-conditional

Two optimizers alternate every step (discriminator, then generator); the
loop keeps an EMA of the generator, and ``export`` writes that EMA, its
batch-norm statistics re-estimated, in the format ``GANGenerator`` loads.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch

from aigc_sdk import GenerationResult, media
from aigc_sdk.data import image_dataset
from aigc_sdk.training import TrainConfig, Trainer, option

from .generator import save_generator
from .model import (
    DiscriminatorNet,
    GANConfig,
    GeneratorNet,
    discriminator_loss,
    generator_loss,
)

SAMPLE_GRID = 64


class GANTrainer(Trainer):
    """DCGAN: hinge or non-saturating loss, spectral norm, EMA generator, optional labels."""

    description = "DCGAN with hinge or non-saturating loss, spectral norm, EMA generator"
    ema_models = ("generator",)  # the discriminator's average is of no use

    @dataclass
    class Config(TrainConfig):
        data: str | None = option("digits", "images: 'digits' or a folder of PNG/JPEG files")
        steps: int = option(1500, "training steps (one D and one G update each)", min=1)
        batch_size: int = option(64, "real images per step", min=1)
        lr: float = option(2e-4, "generator learning rate", min=0)
        lr_d: float = option(2e-4, "discriminator learning rate", min=0)
        beta1: float = option(0.0, "Adam beta1 (both networks)", min=0, max=1)
        beta2: float = option(0.99, "Adam beta2 (both networks)", min=0, max=1)
        ema_decay: float = option(0.999, "EMA of the generator's weights (0: off)", min=0, max=1)
        eval_every: int = option(0, "the GAN has no held-out loss; see benchmarks/", min=0)
        sample_every: int = option(250, "sample grid every N steps (0: only at the end)", min=0)
        checkpoint_every: int = option(500, "checkpoint every N steps (and at the end)", min=1)
        loss: str = option("hinge", "adversarial loss", choices=("hinge", "ns"))
        spectral_norm: bool = option(True, "spectral norm in D (else batch norm, classic DCGAN)")
        conditional: bool = option(True, "condition on the dataset's class labels")
        latent: int = option(64, "size of z", min=1)
        width: int = option(32, "channels of the last hidden block (doubled towards 4x4)", min=1)
        image_size: int = option(32, "image side in pixels (a power of two >= 8)", min=8)
        channels: int = option(1, "1 (grey) or 3 (RGB)", choices=(1, 3))
        bn_batches: int = option(32, "batches that re-estimate the EMA's batch-norm stats", min=0)

    def datasets(self, data):
        cfg = self.config
        return image_dataset(data, size=cfg.image_size, channels=cfg.channels)

    def build(self):
        cfg = self.config
        classes = len(self.splits.train.classes) if cfg.conditional else 0
        if classes == 1:  # a folder without class sub-folders: nothing to condition on
            classes = 0
        self.net_config = GANConfig(
            latent=cfg.latent,
            width=cfg.width,
            size=cfg.image_size,
            channels=cfg.channels,
            classes=classes,
        )
        self.generator = GeneratorNet(self.net_config)
        self.discriminator = DiscriminatorNet(self.net_config, spectral_norm=cfg.spectral_norm)
        return {"generator": self.generator, "discriminator": self.discriminator}

    def configure_optimizers(self):
        cfg = self.config
        betas = (cfg.beta1, cfg.beta2)
        return {
            "d": self.adamw(self.discriminator.parameters(), lr=cfg.lr_d, betas=betas),
            "g": self.adamw(self.generator.parameters(), lr=cfg.lr, betas=betas),
        }

    # -- one step ------------------------------------------------------------------

    def _fake(self, labels: torch.Tensor) -> torch.Tensor:
        z = torch.randn(len(labels), self.net_config.latent, device=self.device)
        return self.generator(z, labels if self.net_config.classes else None)

    def _labels(self, labels: torch.Tensor) -> torch.Tensor | None:
        return labels if self.net_config.classes else None

    def discriminator_step(self, batch):
        real, labels = batch
        with torch.no_grad():
            fake = self._fake(labels)
        y = self._labels(labels)
        real_logits = self.discriminator(real, y)
        fake_logits = self.discriminator(fake, y)
        return {
            "loss": discriminator_loss(real_logits, fake_logits, self.config.loss),
            "d_real": real_logits.mean(),
            "d_fake": fake_logits.mean(),
        }

    def generator_step(self, batch):
        _, labels = batch  # the fake batch reuses the real batch's label mix
        fake_logits = self.discriminator(self._fake(labels), self._labels(labels))
        return generator_loss(fake_logits, self.config.loss)

    def training_step(self, batch, ctx):
        d = ctx.optimize(self.discriminator_step, "d")
        # D's weights are constants for the G update: skip their gradients.
        self.discriminator.requires_grad_(False)
        try:
            g = ctx.optimize(self.generator_step, "g")
        finally:
            self.discriminator.requires_grad_(True)
        return {
            "d_loss": d["loss"],
            "g_loss": g["loss"],
            "d_real": d["d_real"],
            "d_fake": d["d_fake"],
        }

    # -- samples and export ------------------------------------------------------------

    def samples(self):
        # The loop seeds the RNG with the run's seed: the same latents at every call.
        z = torch.randn(SAMPLE_GRID, self.net_config.latent)
        labels = torch.arange(SAMPLE_GRID) % max(1, self.net_config.classes)
        model = self.inference_model("generator")
        images = model(z.to(self.device), self._labels(labels.to(self.device))).float().cpu()
        return GenerationResult("image", images=media.to_pil(images), seed=self.config.seed)

    @torch.no_grad()
    def recalibrated_generator(self) -> GeneratorNet:
        """A copy of the EMA generator with batch-norm statistics measured on its own activations.

        The EMA copies the live model's running statistics, which belong to the
        live weights; re-estimating them for the averaged weights is cheap and
        removes that mismatch. The EMA itself is left as trained: it is part of
        the run's state, which stays the same on every process and as
        checkpointed, while only rank 0 exports.
        """
        model = self.inference_model("generator")
        if self.config.bn_batches == 0 or model is self.generator:
            return model
        model = copy.deepcopy(model)
        bns = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
        saved = [m.momentum for m in bns]
        for m in bns:
            m.reset_running_stats()
            m.momentum = None  # a cumulative average over the batches below
        classes = max(1, self.net_config.classes)
        gen = torch.Generator().manual_seed(self.config.seed)
        model.train()
        try:
            for _ in range(self.config.bn_batches):
                z = torch.randn(256, self.net_config.latent, generator=gen)
                labels = torch.randint(0, classes, (256,), generator=gen)
                model(z.to(self.device), self._labels(labels.to(self.device)))
        finally:
            model.eval()
            for m, momentum in zip(bns, saved, strict=True):
                m.momentum = momentum
        return model

    def export(self, directory):
        save_generator(self.recalibrated_generator(), directory)
