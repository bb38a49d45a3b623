"""A CPPN: an MLP from pixel coordinates and a latent vector to colour.

Small enough to read in a minute, and it uses everything a real generator
does: a request type, a seed, a torch model, save/from_pretrained.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from aigc_sdk import GenerationResult, Generator, ImageRequest, checkpoint, media

PLUGIN = "cppn"
DEFAULT_WEIGHTS = Path(__file__).parent / "weights" / "cppn"
DEFAULT_CONFIG = {"latent": 8, "hidden": 32, "layers": 4, "size": 64}


class CPPN(nn.Module):
    def __init__(self, latent: int, hidden: int, layers: int) -> None:
        super().__init__()
        dims = [3 + latent] + [hidden] * layers
        self.hidden = nn.ModuleList(nn.Linear(a, b) for a, b in zip(dims, dims[1:], strict=False))
        self.out = nn.Linear(hidden, 3)

    def forward(self, coords: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        # coords [P, 3], z [n, latent] -> images [n, 3, P]
        n, p = z.shape[0], coords.shape[0]
        h = torch.cat([coords.expand(n, p, 3), z[:, None, :].expand(n, p, z.shape[1])], dim=-1)
        for layer in self.hidden:
            h = torch.tanh(layer(h))
        return torch.tanh(self.out(h)).transpose(1, 2)


def _coordinates(size: int) -> torch.Tensor:
    axis = torch.linspace(-2, 2, size)
    y, x = torch.meshgrid(axis, axis, indexing="ij")
    return torch.stack([x, y, (x * x + y * y).sqrt()], dim=-1).reshape(-1, 3)


class CPPNGenerator(Generator):
    modality = "image"
    Request = ImageRequest
    thread_safe = True  # no state changes during generate; the seed lives in the request

    def __init__(self, weights: str | Path | None = None, device: str = "cpu") -> None:
        config, tensors = checkpoint.load_pretrained(weights or DEFAULT_WEIGHTS, plugin=PLUGIN)
        self.config = config
        self.model = CPPN(config["latent"], config["hidden"], config["layers"]).eval()
        checkpoint.load_into(self.model, tensors, weights or DEFAULT_WEIGHTS)
        self.model.to(device)
        self.device = device

    @torch.no_grad()
    def generate(self, request: ImageRequest) -> GenerationResult:
        from aigc_sdk import resolve_seed

        seed = resolve_seed(request.seed)
        rng = torch.Generator().manual_seed(seed)  # CPU generator: a seed means the same everywhere
        z = torch.randn(request.n, self.config["latent"], generator=rng).to(self.device)
        size = self.config["size"]
        pixels = self.model(_coordinates(size).to(self.device), z).reshape(request.n, 3, size, size)
        return GenerationResult(
            "image", images=media.to_pil(pixels), tensors={"images": pixels}, seed=seed
        )

    def save_pretrained(self, directory: str | Path) -> Path:
        return checkpoint.save_pretrained(
            directory, plugin=PLUGIN, config=self.config, tensors=self.model.state_dict()
        )


def make_default_weights(directory: Path = DEFAULT_WEIGHTS, seed: int = 0) -> Path:
    """CPPN weights are random by design; these come from a fixed seed."""
    torch.manual_seed(seed)
    model = CPPN(DEFAULT_CONFIG["latent"], DEFAULT_CONFIG["hidden"], DEFAULT_CONFIG["layers"])
    for layer in model.hidden:
        nn.init.normal_(layer.weight, std=3.0 / layer.in_features**0.5)
        nn.init.normal_(layer.bias, std=0.5)
    return checkpoint.save_pretrained(
        directory, plugin=PLUGIN, config=DEFAULT_CONFIG, tensors=model.state_dict()
    )


if __name__ == "__main__":
    print(make_default_weights())
