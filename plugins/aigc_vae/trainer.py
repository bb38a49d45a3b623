"""``aigc train vae``: a convolutional VAE trained through aigc-sdk's training loop.

    aigc train vae --data digits --out runs/vae           # the shipped weights' recipe
    aigc train vae --data path/to/images --beta 4 --latent 8

The loss is recon + beta * KL (beta ramps up from 0 over ``kl_warmup``
steps, which keeps the posterior from collapsing early); evaluation reports
the true (beta = 1) negative ELBO of the held-out images in nats per image.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from aigc_sdk import GenerationResult, media
from aigc_sdk.data import image_dataset
from aigc_sdk.training import TrainConfig, Trainer, option

from .generator import save_vae
from .model import VAE, VAEConfig, elbo_terms, quantize, split_output

SAMPLE_ROWS = 8
PRIOR_EM_ITERATIONS = 200


def random_shift(images: torch.Tensor, pixels: int) -> torch.Tensor:
    """Each image moved by up to ``pixels`` in x and y, the gap filled with background (-1).

    Off by default: on the digits it makes the held-out ELBO worse (figures in
    docs/performance.md), since the held-out digits are centred like the
    training ones. Uses the global
    RNG, which the loop seeds and checkpoints.
    """
    if pixels == 0:
        return images
    n, _, h, w = images.shape
    padded = F.pad(images, (pixels,) * 4, value=-1.0)
    dy, dx = torch.randint(0, 2 * pixels + 1, (2, n)).tolist()
    return torch.stack(
        [padded[i, :, y : y + h, x : x + w] for i, (y, x) in enumerate(zip(dy, dx, strict=True))]
    )


class VAETrainer(Trainer):
    """Convolutional VAE: beta-ELBO with an 8-bit discretized logistic likelihood."""

    description = "convolutional VAE, beta-ELBO with a discretized logistic likelihood"

    @dataclass
    class Config(TrainConfig):
        data: str | None = option("digits", "images: 'digits' or a folder of PNG/JPEG files")
        steps: int = option(1200, "training steps", min=1)
        batch_size: int = option(64, "images per step", min=1)
        lr: float = option(2e-3, "peak learning rate", min=0)
        warmup_steps: int = option(100, "linear learning-rate warm-up steps", min=0)
        lr_schedule: str = option(
            "cosine",
            "learning-rate schedule after warm-up",
            choices=("constant", "cosine", "linear"),
        )
        min_lr_ratio: float = option(0.05, "final lr / peak lr", min=0, max=1)
        eval_every: int = option(500, "evaluate every N steps (0: only at the end)", min=0)
        sample_every: int = option(500, "sample grid every N steps (0: only at the end)", min=0)
        checkpoint_every: int = option(1000, "checkpoint every N steps (and at the end)", min=1)
        beta: float = option(1.0, "weight of the KL term (1: the ELBO)", min=0)
        kl_warmup: int = option(500, "steps over which beta ramps up from 0", min=0)
        shift: int = option(0, "random translation of training images, in pixels (0: off)", min=0)
        latent: int = option(16, "latent size", min=1)
        prior: int = option(
            32, "prior: 0 = standard normal, K > 0 = learned mixture of K Gaussians", min=0
        )
        refit_prior: bool = option(
            True, "at export, fit the mixture prior to the aggregate posterior by EM"
        )
        prior_draws: int = option(16, "posterior draws per training image for that fit", min=1)
        width: int = option(32, "channels of the outermost hidden blocks", min=1)
        image_size: int = option(32, "image side in pixels (a power of two >= 8)", min=8)
        channels: int = option(1, "1 (grey) or 3 (RGB)", choices=(1, 3))

    def datasets(self, data):
        cfg = self.config
        return image_dataset(data, size=cfg.image_size, channels=cfg.channels)

    def build(self):
        cfg = self.config
        self.net_config = VAEConfig(
            latent=cfg.latent,
            width=cfg.width,
            size=cfg.image_size,
            channels=cfg.channels,
            prior=cfg.prior,
        )
        self.vae = VAE(self.net_config)
        return {"vae": self.vae}

    def beta_at(self, step: int) -> float:
        warmup = self.config.kl_warmup
        return self.config.beta * (min(1.0, (step + 1) / warmup) if warmup else 1.0)

    def training_step(self, batch, ctx):
        beta = self.beta_at(ctx.step)
        images = random_shift(batch[0], self.config.shift)
        metrics = ctx.optimize(lambda micro: elbo_terms(self.vae, micro[0], beta), batch=(images,))
        return {**metrics, "beta": beta}

    def evaluation_step(self, batch):
        images, _ = batch
        terms = elbo_terms(self.inference_model("vae"), images)
        bits = terms["neg_elbo"] / (self.net_config.dims * math.log(2))
        return {
            "neg_elbo": terms["neg_elbo"],
            "recon": terms["recon"],
            "kl": terms["kl"],
            "bits_per_dim": bits,
        }

    def samples(self):
        """Rows: held-out images, their reconstructions, then prior samples."""
        model = self.inference_model("vae")
        held_out = self.splits.eval or self.splits.train
        originals = torch.stack([held_out[i][0] for i in range(SAMPLE_ROWS * 2)])
        mean, _ = model.encoder(originals.to(self.device))
        z = model.sample_prior(SAMPLE_ROWS * 4, torch.Generator().manual_seed(self.config.seed))
        z = z.to(self.device)
        decoded = split_output(model.decoder(torch.cat([mean, z])))[0].clamp(-1, 1).float()
        images = torch.cat([originals, decoded.cpu()])
        return GenerationResult("image", images=media.to_pil(images), seed=self.config.seed)

    @torch.no_grad()
    def refit_prior(self, model: VAE) -> None:
        """EM fit of the mixture prior to posterior draws of every training image."""
        cfg = self.config
        gen = torch.Generator().manual_seed(cfg.seed)
        loader = torch.utils.data.DataLoader(self.splits.train, batch_size=256)
        draws = []
        for images, _ in loader:
            mean, logvar = model.encoder(quantize(images.to(self.device)))
            mean, std = mean.float().cpu(), (0.5 * logvar).exp().float().cpu()
            noise = torch.randn(cfg.prior_draws, *mean.shape, generator=gen)
            draws.append((mean + noise * std).reshape(-1, mean.shape[1]))
        model.prior.fit(torch.cat(draws), PRIOR_EM_ITERATIONS, gen)

    def export(self, directory):
        model = self.inference_model("vae")
        if self.config.refit_prior and model.prior is not None:
            # A copy: the run's state stays as checkpointed, and the same on every process.
            model = copy.deepcopy(model)
            self.refit_prior(model)
        save_vae(model, directory)
