"""DCGAN generator and discriminator, optionally class-conditional.

The generator is a stack of ``ConvTranspose2d -> BatchNorm2d -> ReLU`` blocks
(1x1 -> 4x4 -> 8x8 -> ... -> size) ending in ``ConvTranspose2d -> tanh``:
exactly the pattern the fused ``upsample_conv2d`` op computes in one pass,
so ``fuse_generator`` can fold every block for inference.

The discriminator mirrors it with strided convolutions and LeakyReLU, and
takes either spectral norm (the default, for hinge or non-saturating loss) or
batch norm (classic DCGAN). A conditional model embeds the class label into
the generator's input and uses a projection discriminator (Miyato & Koyama
2018): ``D(x, y) = psi(phi(x)) + <embed(y), phi(x)>``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from itertools import pairwise

import torch
import torch.nn.functional as F
from torch import nn

from aigc_sdk.nn import FusedUpsample, UpBlock


@dataclass(frozen=True)
class GANConfig:
    """The architecture; stored in config.json next to the weights."""

    latent: int = 64  # size of z
    width: int = 32  # channels of the last hidden block; doubled per block towards 4x4
    size: int = 32  # output height and width (a power of two >= 8)
    channels: int = 1  # 1 (grey) or 3 (RGB)
    classes: int = 0  # 0: unconditional; else the number of class labels
    embed: int = 16  # size of the label embedding fed to the generator

    def __post_init__(self) -> None:
        if self.size < 8 or self.size & (self.size - 1):
            raise ValueError(f"size must be a power of two >= 8, got {self.size}")
        if self.channels not in (1, 3):
            raise ValueError(f"channels must be 1 or 3, got {self.channels}")
        for name in ("latent", "width", "embed"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.classes < 0:
            raise ValueError(f"classes must be >= 0, got {self.classes}")

    @property
    def upsamplings(self) -> int:
        """Stride-2 hidden blocks between the 4x4 start and the output layer."""
        return int(math.log2(self.size)) - 3

    def hidden_widths(self) -> list[int]:
        """Channels of each hidden block, from the 4x4 one down to size/2."""
        return [self.width * 2 ** (self.upsamplings - i) for i in range(self.upsamplings + 1)]


class GeneratorNet(nn.Module):
    """z (and a label) -> image in [-1, 1]."""

    def __init__(self, config: GANConfig) -> None:
        super().__init__()
        self.config = config
        widths = config.hidden_widths()
        cin = config.latent + (config.embed if config.classes else 0)
        self.label_embed = nn.Embedding(config.classes, config.embed) if config.classes else None
        blocks = [UpBlock(cin, widths[0], stride=1, padding=0)]  # 1x1 -> 4x4
        blocks += [UpBlock(a, b, stride=2, padding=1) for a, b in pairwise(widths)]
        self.blocks = nn.Sequential(*blocks)
        self.to_image = nn.ConvTranspose2d(widths[-1], config.channels, 4, 2, 1)
        self.out_act = nn.Tanh()
        self.apply(_dcgan_init)

    def latent_input(self, z: torch.Tensor, labels: torch.Tensor | None) -> torch.Tensor:
        """The [n, latent(+embed), 1, 1] tensor the first block upsamples."""
        if self.label_embed is not None:
            if labels is None:
                raise ValueError("a conditional generator needs labels")
            z = torch.cat([z, self.label_embed(labels)], dim=1)
        return z[:, :, None, None]

    def synthesis(self, latent_input: torch.Tensor) -> torch.Tensor:
        """[n, latent(+embed), 1, 1] -> images; the part ``fuse_generator`` folds."""
        return self.out_act(self.to_image(self.blocks(latent_input)))

    def forward(self, z: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        return self.synthesis(self.latent_input(z, labels))


class DiscriminatorNet(nn.Module):
    """image (and a label) -> one real/fake logit per image."""

    def __init__(self, config: GANConfig, spectral_norm: bool = True) -> None:
        super().__init__()
        sn = nn.utils.parametrizations.spectral_norm if spectral_norm else (lambda m: m)
        widths = list(reversed(config.hidden_widths()))  # size/2 ... 4x4
        layers: list[nn.Module] = [sn(nn.Conv2d(config.channels, widths[0], 4, 2, 1))]
        layers.append(nn.LeakyReLU(0.2))
        for a, b in pairwise(widths):
            layers.append(sn(nn.Conv2d(a, b, 4, 2, 1, bias=spectral_norm)))
            if not spectral_norm:
                layers.append(nn.BatchNorm2d(b))
            layers.append(nn.LeakyReLU(0.2))
        self.features = nn.Sequential(*layers)
        feature_size = widths[-1] * 16  # 4x4 map, flattened
        self.head = sn(nn.Linear(feature_size, 1))
        self.label_embed = (
            sn(nn.Embedding(config.classes, feature_size)) if config.classes else None
        )
        self.apply(_dcgan_init)

    def forward(self, images: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        phi = self.features(images).flatten(1)
        logits = self.head(phi).squeeze(1)
        if self.label_embed is not None:
            logits = logits + (self.label_embed(labels) * phi).sum(1)
        return logits


def fuse_generator(model: GeneratorNet) -> nn.Sequential:
    """``model.synthesis`` as fused layers: each block is one ``upsample_conv2d`` call.

    In eval mode each ``FusedUpsample`` folds its BatchNorm's running statistics
    into a per-channel scale and shift applied inside the op, with the ReLU (or
    the output's tanh) as its epilogue. The result holds copies of the weights.
    """
    layers = [block.fused() for block in model.blocks]
    layers.append(FusedUpsample.from_modules(model.to_image, None, model.out_act))
    return nn.Sequential(*layers).eval().requires_grad_(False)


def _dcgan_init(module: nn.Module) -> None:
    # DCGAN's N(0, 0.02) weights; BatchNorm scales around 1.
    if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear, nn.Embedding)):
        weight = getattr(module, "parametrizations", None)
        target = weight.weight.original if weight is not None else module.weight
        nn.init.normal_(target, 0.0, 0.02)
        if getattr(module, "bias", None) is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.BatchNorm2d):
        nn.init.normal_(module.weight, 1.0, 0.02)
        nn.init.zeros_(module.bias)


# -- losses ---------------------------------------------------------------------


def discriminator_loss(real: torch.Tensor, fake: torch.Tensor, kind: str) -> torch.Tensor:
    """Loss of the discriminator given its logits on real and generated images."""
    if kind == "hinge":
        return F.relu(1 - real).mean() + F.relu(1 + fake).mean()
    if kind == "ns":  # the standard GAN loss, -log D(x) - log(1 - D(G(z)))
        return F.softplus(-real).mean() + F.softplus(fake).mean()
    raise ValueError(f"unknown GAN loss {kind!r} (expected 'hinge' or 'ns')")


def generator_loss(fake: torch.Tensor, kind: str) -> torch.Tensor:
    """Loss of the generator given the discriminator's logits on its images."""
    if kind == "hinge":
        return -fake.mean()
    if kind == "ns":  # non-saturating: -log D(G(z))
        return F.softplus(-fake).mean()
    raise ValueError(f"unknown GAN loss {kind!r} (expected 'hinge' or 'ns')")


# -- latents ---------------------------------------------------------------------


def slerp(a: torch.Tensor, b: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Spherical interpolation between latents a and b ([n, d]) at fractions t ([k])."""
    a_n, b_n = F.normalize(a, dim=-1), F.normalize(b, dim=-1)
    omega = torch.acos((a_n * b_n).sum(-1).clamp(-1 + 1e-7, 1 - 1e-7))[:, None, None]
    t = t[None, :, None]
    so = torch.sin(omega)
    return (torch.sin((1 - t) * omega) * a[:, None] + torch.sin(t * omega) * b[:, None]) / so
