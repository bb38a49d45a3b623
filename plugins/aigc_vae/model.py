"""A convolutional VAE with a discretized logistic likelihood.

Encoder: strided ``Conv2d -> BatchNorm2d -> LeakyReLU`` blocks down to 4x4,
then a 4x4 convolution to the posterior's mean and log-variance.
Decoder: ``ConvTranspose2d -> BatchNorm2d -> ReLU`` blocks from 1x1 up to
size/2 and a last ``ConvTranspose2d`` to two maps per channel, the mean and
log-scale of a logistic per pixel: the pattern the fused ``upsample_conv2d``
op computes in one pass, so ``fuse_decoder`` can fold every block.

Images are 8-bit (a PNG's 256 levels, mapped to [-1, 1]); the likelihood
gives each level its probability mass, as in PixelCNN++, so the ELBO is a
true lower bound on log p(x) and its negative is in nats per image.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from itertools import pairwise

import torch
import torch.nn.functional as F
from torch import nn

from aigc_sdk.nn import FusedUpsample, UpBlock

LEVELS = 256  # 8-bit pixels
BIN = 1.0 / (LEVELS - 1)  # half a bin's width in [-1, 1]
MIN_LOG_SCALE = -7.0


@dataclass(frozen=True)
class VAEConfig:
    """The architecture; stored in config.json next to the weights."""

    latent: int = 16
    width: int = 32  # channels of the outermost hidden blocks; doubled per block towards 4x4
    size: int = 32  # image height and width (a power of two >= 8)
    channels: int = 1
    prior: int = 0  # 0: the standard normal prior; K > 0: a learned mixture of K Gaussians

    def __post_init__(self) -> None:
        if self.size < 8 or self.size & (self.size - 1):
            raise ValueError(f"size must be a power of two >= 8, got {self.size}")
        if self.channels not in (1, 3):
            raise ValueError(f"channels must be 1 or 3, got {self.channels}")
        for name in ("latent", "width"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.prior < 0:
            raise ValueError(
                f"prior must be 0 (standard normal) or a component count, got {self.prior}"
            )

    def hidden_widths(self) -> list[int]:
        """Channels from the 4x4 map out to size/2."""
        steps = int(math.log2(self.size)) - 3
        return [self.width * 2 ** (steps - i) for i in range(steps + 1)]

    @property
    def dims(self) -> int:
        """Pixel values per image (for bits per dimension)."""
        return self.channels * self.size * self.size


class Encoder(nn.Module):
    def __init__(self, config: VAEConfig) -> None:
        super().__init__()
        widths = list(reversed(config.hidden_widths()))  # size/2 ... 4x4
        layers: list[nn.Module] = [
            nn.Conv2d(config.channels, widths[0], 4, 2, 1),
            nn.LeakyReLU(0.2),
        ]
        for a, b in pairwise(widths):
            layers += [nn.Conv2d(a, b, 4, 2, 1, bias=False), nn.BatchNorm2d(b), nn.LeakyReLU(0.2)]
        self.features = nn.Sequential(*layers)
        self.posterior = nn.Conv2d(widths[-1], 2 * config.latent, 4, 1, 0)  # 4x4 -> 1x1

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean and log-variance of q(z | x), each [n, latent]."""
        mean, logvar = self.posterior(self.features(x)).flatten(1).chunk(2, dim=1)
        return mean, logvar.clamp(-30, 20)


class Decoder(nn.Module):
    def __init__(self, config: VAEConfig) -> None:
        super().__init__()
        widths = config.hidden_widths()
        blocks = [UpBlock(config.latent, widths[0], stride=1, padding=0)]  # 1x1 -> 4x4
        blocks += [UpBlock(a, b, stride=2, padding=1) for a, b in pairwise(widths)]
        self.blocks = nn.Sequential(*blocks)
        self.to_pixels = nn.ConvTranspose2d(widths[-1], 2 * config.channels, 4, 2, 1)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        """[n, latent] -> [n, 2 * channels, size, size]: logistic means, then log-scales."""
        return self.to_pixels(self.blocks(z[:, :, None, None]))


class MixturePrior(nn.Module):
    """p(z) = sum_k pi_k N(z; mu_k, diag(sigma_k^2)), every parameter learned with the VAE.

    With the standard normal prior, a VAE whose likelihood rewards exact 8-bit
    pixels encodes each digit precisely (a large KL) and its
    aggregate posterior spreads far beyond N(0, I): samples from N(0, I) then land
    between the digits. A learned mixture follows the aggregate posterior, so
    samples from the prior are digits and the KL term (and the ELBO) improves.
    """

    def __init__(self, components: int, latent: int) -> None:
        super().__init__()
        self.means = nn.Parameter(torch.randn(components, latent))
        self.logvars = nn.Parameter(torch.zeros(components, latent))
        self.logits = nn.Parameter(torch.zeros(components))

    @torch.no_grad()
    def fit(self, z: torch.Tensor, iterations: int, rng: torch.Generator) -> None:
        """Sets the mixture to the maximum-likelihood fit of latents ``z`` (see ``fit_mixture``).

        Fitted to draws of the aggregate posterior, this maximises the ELBO's
        E_q[log p(z)] over the prior's parameters with the networks fixed:
        gradient steps alone leave the mixture lagging behind the encoder.
        """
        means, logvars, logits = fit_mixture(z, self.means.shape[0], iterations, rng)
        self.means.copy_(means)
        self.logvars.copy_(logvars)
        self.logits.copy_(logits)

    def _logvars(self) -> torch.Tensor:
        return self.logvars.clamp(-8.0, 4.0)

    def log_prob(self, z: torch.Tensor) -> torch.Tensor:
        """log p(z) of each row of z ([n, latent]) -> [n]."""
        logvars = self._logvars()
        diff = z[:, None, :] - self.means[None]
        per_component = -0.5 * (
            diff.square() * torch.exp(-logvars) + logvars + math.log(2 * math.pi)
        ).sum(-1)
        return torch.logsumexp(per_component + self.logits.log_softmax(0), dim=1)

    def sample(self, n: int, rng: torch.Generator, temperature: float = 1.0) -> torch.Tensor:
        """``n`` draws (on the CPU, from ``rng``); temperature scales each component's spread."""
        weights = self.logits.detach().float().softmax(0).cpu()
        component = torch.multinomial(weights, n, replacement=True, generator=rng)
        noise = torch.randn(n, self.means.shape[1], generator=rng)
        means, stds = self.means.detach().cpu(), (0.5 * self._logvars().detach()).exp().cpu()
        return means[component] + temperature * stds[component] * noise


@torch.no_grad()
def fit_mixture(
    z: torch.Tensor, components: int, iterations: int, rng: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Maximum-likelihood diagonal Gaussian mixture of the rows of ``z`` (EM, float64).

    Returns (means [K, d], log-variances [K, d], log-weights [K]). Started from K
    rows of ``z`` drawn with ``rng``; a variance floor keeps every component proper.
    """
    z = z.double()
    n, _ = z.shape
    means = z[torch.randperm(n, generator=rng)[:components]].clone()
    variances = z.var(0, keepdim=True).repeat(components, 1)
    log_weights = torch.full((components,), -math.log(components), dtype=z.dtype)
    for _ in range(iterations):
        log_joint = (
            -0.5
            * (
                (z[:, None] - means[None]).square() / variances[None]
                + variances.log()[None]
                + math.log(2 * math.pi)
            ).sum(-1)
            + log_weights[None]
        )
        resp = (log_joint - torch.logsumexp(log_joint, 1, keepdim=True)).exp()  # [n, K]
        counts = resp.sum(0) + 1e-10
        log_weights = (counts / n).log()
        means = resp.T @ z / counts[:, None]
        variances = (resp.T @ z.square() / counts[:, None] - means.square()).clamp(min=1e-4)
    return means.float(), variances.log().float(), log_weights.float()


class VAE(nn.Module):
    def __init__(self, config: VAEConfig) -> None:
        super().__init__()
        self.config = config
        self.encoder = Encoder(config)
        self.decoder = Decoder(config)
        self.prior = MixturePrior(config.prior, config.latent) if config.prior else None

    def forward(
        self, x: torch.Tensor, rng: torch.Generator | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Decoder output for one posterior sample of each image, the posterior, and the noise.

        ``rng`` (a CPU generator) makes the sample reproducible on any device.
        """
        mean, logvar = self.encoder(x)
        noise = torch.randn(mean.shape, generator=rng).to(mean) if rng else torch.randn_like(mean)
        z = mean + noise * (0.5 * logvar).exp()
        return self.decoder(z), mean, logvar, noise

    def log_prior(self, z: torch.Tensor) -> torch.Tensor:
        """log p(z) per row."""
        if self.prior is not None:
            return self.prior.log_prob(z)
        return -0.5 * (z.square() + math.log(2 * math.pi)).sum(1)

    def sample_prior(self, n: int, rng: torch.Generator, temperature: float = 1.0) -> torch.Tensor:
        """``n`` latents from the prior, drawn on the CPU."""
        if self.prior is not None:
            return self.prior.sample(n, rng, temperature)
        return torch.randn(n, self.config.latent, generator=rng) * temperature

    def kl(self, mean: torch.Tensor, logvar: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """KL(q(z|x) || p(z)) per image: exact for N(0, I), else the one-sample estimate
        log q(z|x) - log p(z) at z = mean + noise * std (unbiased, as the ELBO needs)."""
        if self.prior is None:
            return gaussian_kl(mean, logvar)
        z = mean + noise * (0.5 * logvar).exp()
        log_q = -0.5 * (noise.square() + logvar + math.log(2 * math.pi)).sum(1)
        return log_q - self.prior.log_prob(z)


def fuse_decoder(decoder: Decoder) -> nn.Sequential:
    """The decoder ([n, latent, 1, 1] -> means and log-scales) as fused layers.

    Each block is one ``upsample_conv2d`` call with its BatchNorm folded (eval
    mode) and its ReLU as the epilogue; the last layer is the op with a bias
    only. The result holds copies of the weights.
    """
    layers = [block.fused() for block in decoder.blocks]
    layers.append(FusedUpsample.from_modules(decoder.to_pixels))
    return nn.Sequential(*layers).eval().requires_grad_(False)


# -- likelihood and ELBO ---------------------------------------------------------------


def quantize(x: torch.Tensor) -> torch.Tensor:
    """Images in [-1, 1] rounded to the 256 levels of an 8-bit file."""
    return torch.round((x.clamp(-1, 1) + 1) * (LEVELS - 1) / 2) * 2 / (LEVELS - 1) - 1


def split_output(out: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Decoder output -> (means, log-scales) of the per-pixel logistics."""
    mean, log_scale = out.chunk(2, dim=1)
    return mean, log_scale.clamp(min=MIN_LOG_SCALE)


def discretized_logistic_log_prob(
    x: torch.Tensor, mean: torch.Tensor, log_scale: torch.Tensor
) -> torch.Tensor:
    """log P(x) per pixel for 8-bit x in [-1, 1]: the logistic's mass on x's bin.

    The lowest and highest levels take the tails (-inf, first edge] and
    [last edge, inf), so the masses of all 256 levels sum to one.
    """
    inv_scale = torch.exp(-log_scale)
    centered = x - mean
    upper = inv_scale * (centered + BIN)
    lower = inv_scale * (centered - BIN)
    log_cdf_upper = upper - F.softplus(upper)  # log sigmoid(upper)
    log_survival_lower = -F.softplus(lower)  # log (1 - sigmoid(lower))
    mass = torch.sigmoid(upper) - torch.sigmoid(lower)
    # Where the bin's mass underflows, use the density at its centre times its width.
    mid = inv_scale * centered
    log_density = mid - log_scale - 2 * F.softplus(mid) + math.log(2 * BIN)
    log_mass = torch.where(mass > 1e-5, torch.log(mass.clamp(min=1e-12)), log_density)
    return torch.where(
        x < -1 + BIN, log_cdf_upper, torch.where(x > 1 - BIN, log_survival_lower, log_mass)
    )


def gaussian_kl(mean: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(q(z|x) || N(0, I)) per image, in nats."""
    return 0.5 * (mean.square() + logvar.exp() - 1 - logvar).sum(dim=1)


def per_image_terms(
    model: VAE, x: torch.Tensor, rng: torch.Generator | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Reconstruction NLL and KL of each image ([n] each, nats), one posterior sample each.

    ``x`` is quantized to 8 bits first, so recon + KL bounds -log p of the
    image a PNG would store.
    """
    x = quantize(x)
    out, mean, logvar, noise = model(x, rng)
    recon = -discretized_logistic_log_prob(x, *split_output(out)).flatten(1).sum(1)
    return recon, model.kl(mean, logvar, noise)


def elbo_terms(model: VAE, x: torch.Tensor, beta: float = 1.0) -> dict[str, torch.Tensor]:
    """Batch means of recon, KL, the training loss (recon + beta * KL) and -ELBO (beta = 1)."""
    recon, kl = per_image_terms(model, x)
    return {
        "loss": (recon + beta * kl).mean(),
        "recon": recon.mean(),
        "kl": kl.mean(),
        "neg_elbo": (recon + kl).mean(),
    }
