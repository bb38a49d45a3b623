"""The ``vae`` generator: prior samples, reconstructions, interpolations.

    aigc generate vae --seed 3 -n 64 --out grid.png                  # from the prior
    aigc generate vae --reconstruct digit.png -n 4 --out recon.png   # mean + 3 posterior draws
    aigc generate vae --interpolate 'a.png|b.png' --frames 8 --out walk.png

Input images are read like the training data: greyscale, centre-cropped,
resized to the model's size, and inverted when their background is light
(the digits are white on black).
"""

from __future__ import annotations

import math
from pathlib import Path

import torch

from aigc_sdk import GenerationResult, Generator, RequestError, checkpoint, media, resolve_seed

from .model import VAE, VAEConfig, fuse_decoder, per_image_terms, split_output
from .request import VAERequest

PLUGIN = "vae"
DEFAULT_WEIGHTS = Path(__file__).parent / "weights" / "vae"
CHUNK = 256  # images per forward pass: bounds memory for large n


def load_image(path: str, option: str, size: int, channels: int) -> torch.Tensor:
    """One image file as [1, channels, size, size] in [-1, 1], digit-style (light on dark)."""
    import numpy as np
    from PIL import Image, ImageOps, UnidentifiedImageError

    try:
        with Image.open(path) as img:
            img = ImageOps.exif_transpose(img).convert("L" if channels == 1 else "RGB")
            img = ImageOps.fit(img, (size, size), Image.Resampling.BICUBIC)
    except FileNotFoundError:
        raise RequestError(f"{option}: image file {path} does not exist") from None
    except (OSError, ValueError, UnidentifiedImageError, Image.DecompressionBombError) as exc:
        raise RequestError(f"{option}: cannot read image file {path}: {exc}") from None
    pixels = torch.from_numpy(np.asarray(img, dtype=np.float32).copy()) / 255.0
    pixels = pixels.reshape(size, size, channels).permute(2, 0, 1)
    border = torch.cat([pixels[:, 0], pixels[:, -1], pixels[:, :, 0], pixels[:, :, -1]], dim=1)
    if border.mean() > 0.5:  # dark ink on light paper: flip to the training data's polarity
        pixels = 1 - pixels
    return (pixels * 2 - 1)[None]


class VAEGenerator(Generator):
    """A convolutional VAE; images are the means of the decoder's pixel distributions."""

    modality = "image"
    Request = VAERequest
    thread_safe = True  # generate() reads the model only; every draw uses the request's seed

    def __init__(
        self, weights: str | Path | None = None, device: str = "cpu", fused: bool = True
    ) -> None:
        """``fused=False`` decodes with the plain PyTorch layers (the benchmarks' baseline)."""
        source = Path(weights) if weights is not None else DEFAULT_WEIGHTS
        self.model, _ = checkpoint.load_model(source, VAE, VAEConfig, plugin=PLUGIN, device=device)
        self.model.requires_grad_(False)
        self.config = self.model.config
        self.device = torch.device(device)
        self.fused = fused
        # Decoding runs each block as one fused op with its BatchNorm folded in.
        self.fused_decoder = fuse_decoder(self.model.decoder) if fused else None

    def _decoder_output(self, z: torch.Tensor) -> torch.Tensor:
        if self.fused_decoder is None:
            return self.model.decoder(z)
        return self.fused_decoder(z[:, :, None, None])

    # -- building blocks (public: the evaluation tool uses them) ------------------

    @torch.no_grad()
    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Latents [m, latent] -> images in [-1, 1] (the decoder's means), in chunks."""
        out = [
            split_output(self._decoder_output(chunk.to(self.device)))[0].clamp(-1, 1).cpu()
            for chunk in z.split(CHUNK)
        ]
        return torch.cat(out)

    @torch.no_grad()
    def encode(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Images [m, c, h, w] in [-1, 1] -> posterior mean and log-variance."""
        mean, logvar = self.model.encoder(images.to(self.device))
        return mean.cpu(), logvar.cpu()

    @torch.no_grad()
    def negative_elbo(self, images: torch.Tensor, seed: int = 0) -> torch.Tensor:
        """-ELBO in nats of each image ([m]), quantized to 8 bits, one posterior draw each."""
        rng = torch.Generator().manual_seed(seed)
        out = []
        for chunk in images.split(CHUNK):
            recon, kl = per_image_terms(self.model, chunk.to(self.device), rng)
            out.append((recon + kl).cpu())
        return torch.cat(out)

    def load(self, path: str, option: str) -> torch.Tensor:
        return load_image(path, option, self.config.size, self.config.channels)

    # -- requests -----------------------------------------------------------------

    def generate(self, request: VAERequest) -> GenerationResult:
        seed = resolve_seed(request.seed)
        rng = torch.Generator().manual_seed(seed)
        if request.reconstruct is not None:
            return self._reconstruct(request, rng, seed)
        if request.interpolate:
            return self._interpolate(request, seed)
        z = self.model.sample_prior(request.n, rng, request.temperature)
        return self._result(self.decode(z), seed, latents=z)

    def _reconstruct(self, request: VAERequest, rng: torch.Generator, seed: int):
        image = self.load(request.reconstruct, "reconstruct")
        mean, logvar = self.encode(image)
        noise = torch.randn(request.n - 1, self.config.latent, generator=rng)
        z = torch.cat([mean, mean + noise * (0.5 * logvar).exp() * request.temperature])
        neg_elbo = self.negative_elbo(image, seed)
        return self._result(self.decode(z), seed, latents=z, input=image, neg_elbo=neg_elbo)

    def _interpolate(self, request: VAERequest, seed: int):
        a, b = (self.load(p, "interpolate") for p in request.interpolate)
        means, _ = self.encode(torch.cat([a, b]))
        t = torch.linspace(0, 1, request.frames)[:, None]
        z = torch.lerp(means[:1], means[1:], t)
        return self._result(self.decode(z), seed, latents=z, input=torch.cat([a, b]))

    def _result(self, pixels: torch.Tensor, seed: int, **tensors) -> GenerationResult:
        return GenerationResult(
            "image", images=media.to_pil(pixels), tensors={"images": pixels, **tensors}, seed=seed
        )

    def save_pretrained(self, directory: str | Path) -> Path:
        return save_vae(self.model, directory)


def save_vae(model: VAE, directory: str | Path) -> Path:
    """Writes a VAE in the format ``VAEGenerator`` loads."""
    return checkpoint.save_model(directory, model, model.config, plugin=PLUGIN)


def bits_per_dim(nats: float, dims: int) -> float:
    """Nats per image -> bits per pixel value."""
    return nats / (dims * math.log(2))
