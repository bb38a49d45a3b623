"""The ``gan`` generator: samples, truncation, latent interpolation, class labels.

aigc generate gan --seed 3 -n 64 --out grid.png
aigc generate gan --seed 3 -n 8 --interpolate 8 --out walk.png   # one walk per row
aigc generate gan --seed 3 -n 16 --truncation 0.7 --label 4 --out fours.png
"""

from __future__ import annotations

from pathlib import Path

import torch

from aigc_sdk import GenerationResult, Generator, RequestError, checkpoint, media, resolve_seed

from .model import GANConfig, GeneratorNet, fuse_generator, slerp
from .request import GANRequest

PLUGIN = "gan"
DEFAULT_WEIGHTS = Path(__file__).parent / "weights" / "gan"
CHUNK = 256  # images per forward pass: bounds memory for large n
LABEL_STREAM = 0x5DEECE66D  # mixed into the seed for the labels' random stream


class GANGenerator(Generator):
    """A DCGAN generator (the EMA weights of a trained run)."""

    modality = "image"
    Request = GANRequest
    thread_safe = True  # generate() reads the model only; the seed lives in the request

    def __init__(
        self, weights: str | Path | None = None, device: str = "cpu", fused: bool = True
    ) -> None:
        """``fused=False`` runs the plain PyTorch layers (the benchmarks' baseline)."""
        source = Path(weights) if weights is not None else DEFAULT_WEIGHTS
        self.model, _ = checkpoint.load_model(
            source, GeneratorNet, GANConfig, plugin=PLUGIN, device=device
        )
        self.model.requires_grad_(False)
        self.config = self.model.config
        self.device = torch.device(device)
        self.fused = fused
        # Inference runs each block as one fused op with its BatchNorm folded in.
        self.synthesis = fuse_generator(self.model) if fused else self.model.synthesis

    # -- latents ----------------------------------------------------------------

    def _labels(self, request: GANRequest, count: int, rng: torch.Generator) -> torch.Tensor | None:
        classes = self.config.classes
        if not classes:
            if request.label is not None:
                raise RequestError("label: this GAN is unconditional (trained without labels)")
            return None
        if request.label is None:
            return torch.randint(0, classes, (count,), generator=rng)
        if not 0 <= request.label < classes:
            raise RequestError(f"label must be in [0, {classes - 1}], got {request.label}")
        return torch.full((count,), request.label, dtype=torch.long)

    def _condition(self, labels: torch.Tensor | None) -> torch.Tensor | None:
        if labels is None:
            return None
        return self.model.label_embed(labels.to(self.device)).cpu()

    def latent_inputs(self, request: GANRequest, seed: int) -> dict[str, torch.Tensor]:
        """The generator inputs a request asks for, drawn on the CPU from ``seed``."""
        # Labels come from a stream of their own, so image i depends on (seed, i) only:
        # the first images of n=8 are those of n=4.
        rng = torch.Generator().manual_seed(seed)
        label_rng = torch.Generator().manual_seed(seed ^ LABEL_STREAM)
        latent, n = self.config.latent, request.n
        if not request.interpolate:
            z = torch.randn(n, latent, generator=rng) * request.truncation
            labels = self._labels(request, n, label_rng)
            cond = self._condition(labels)
        else:
            k = request.interpolate
            ends = torch.randn(2, n, latent, generator=rng) * request.truncation
            t = torch.linspace(0, 1, k)
            z = slerp(ends[0], ends[1], t).reshape(n * k, latent)
            labels = self._labels(request, 2 * n, label_rng)
            cond = self._condition(labels)
            if cond is not None:  # walk between the two labels' embeddings too
                a, b = cond[:n, None], cond[n:, None]
                cond = torch.lerp(a, b, t[None, :, None]).reshape(n * k, -1)
                labels = torch.stack([labels[:n], labels[n:]], 1)
        inputs = {"latents": z}
        if cond is not None:
            inputs["labels"] = labels
            z = torch.cat([z, cond], dim=1)
        inputs["input"] = z[:, :, None, None]
        return inputs

    # -- generation -------------------------------------------------------------

    @torch.no_grad()
    def synthesize(self, latent_input: torch.Tensor) -> torch.Tensor:
        """Images in [-1, 1] from [m, latent(+embed), 1, 1] inputs, in chunks."""
        out = [self.synthesis(chunk.to(self.device)).cpu() for chunk in latent_input.split(CHUNK)]
        return torch.cat(out)

    def generate(self, request: GANRequest) -> GenerationResult:
        seed = resolve_seed(request.seed)
        inputs = self.latent_inputs(request, seed)
        pixels = self.synthesize(inputs.pop("input"))
        return GenerationResult(
            "image", images=media.to_pil(pixels), tensors={"images": pixels, **inputs}, seed=seed
        )

    def save_pretrained(self, directory: str | Path) -> Path:
        return save_generator(self.model, directory)


def save_generator(model: GeneratorNet, directory: str | Path) -> Path:
    """Writes a generator network in the format ``GANGenerator`` loads."""
    return checkpoint.save_model(directory, model, model.config, plugin=PLUGIN)
