"""The ``vae`` generator's request: importable without torch, so the SDK checks
a request (and ``aigc generate vae --help`` lists its options) before any
model code or weights load.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from aigc_sdk import ImageRequest, RequestError, check, request_field


def _paths(value) -> tuple[str, ...]:
    if isinstance(value, str):
        return tuple(p for p in value.split("|") if p) if value else ()
    paths = isinstance(value, (list, tuple)) and all(isinstance(p, (str, Path)) for p in value)
    check(paths, "interpolate", "two image paths ('a.png|b.png')", value)
    return tuple(str(p) for p in value)


def _require_file(option: str, path: str) -> None:
    if not Path(path).is_file():
        what = "is a directory, not an image" if Path(path).is_dir() else "does not exist"
        raise RequestError(f"{option}: image file {path} {what}")


@dataclass(frozen=True, kw_only=True)
class VAERequest(ImageRequest):
    """Prior samples (``n``, ``temperature``); or a reconstruction of one image
    (``n`` outputs: the posterior mean's decoding, then posterior draws); or an
    interpolation through latent space between two images (``frames`` outputs).
    """

    temperature: float = request_field(
        1.0, "scale of the prior's spread: lower is plainer, higher wilder", ge=0, le=10
    )
    reconstruct: str | None = request_field(
        None, "image file to encode and decode (n outputs: the mean, then posterior draws)"
    )
    interpolate: tuple[str, ...] = request_field(
        (), "two image files ('a.png|b.png') to walk between through latent space"
    )
    frames: int = request_field(8, "images of an interpolation", ge=2, le=256)

    def __post_init__(self) -> None:
        super().__post_init__()
        paths = _paths(self.interpolate)
        object.__setattr__(self, "interpolate", paths)
        if paths and len(paths) != 2:
            raise RequestError(
                f"interpolate needs exactly two image paths ('a.png|b.png'), got {len(paths)}"
            )
        if paths and self.reconstruct is not None:
            raise RequestError("reconstruct and interpolate cannot be combined: pick one")
        if paths and self.n != 1:
            raise RequestError(f"n: interpolate makes `frames` images; leave n at 1, got {self.n}")
        if self.reconstruct is not None:
            path = isinstance(self.reconstruct, (str, Path)) and str(self.reconstruct)
            check(bool(path), "reconstruct", "an image path", self.reconstruct)
            object.__setattr__(self, "reconstruct", str(self.reconstruct))
            _require_file("reconstruct", self.reconstruct)
        for path in paths:
            _require_file("interpolate", path)
