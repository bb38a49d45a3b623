"""The ``gan`` generator's request: importable without torch, so the SDK checks
a request (and ``aigc generate gan --help`` lists its options) before any
model code or weights load.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from aigc_sdk import ImageRequest, RequestError, check, request_field


@dataclass(frozen=True, kw_only=True)
class GANRequest(ImageRequest):
    """``n`` images; or, with ``interpolate=k``, ``n`` walks of ``k`` frames each.

    ``truncation`` (psi in [0, 1]) pulls every latent towards the prior's mean,
    trading variety for fidelity as in StyleGAN's truncation trick (applied to
    z: a DCGAN has no mapping network); 1 is off. ``label`` picks the class of a
    conditional model (None: a random class per image).
    """

    truncation: float = request_field(
        1.0, "pull latents towards the mean: less variety, more fidelity (1: off)", ge=0, le=1
    )
    interpolate: int = request_field(
        0, "frames of a latent walk per output, 2 to 256 (0: off; each output is a row)"
    )
    label: int | None = request_field(
        None, "class of a conditional model, e.g. the digit (default: random per image)"
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        k = self.interpolate
        check(
            k == 0 or 2 <= k <= 256,
            "interpolate",
            "0 (off) or a number of frames in [2, 256]",
            k,
        )

    def check_limits(
        self, overrides: Mapping[str, float | None] | None = None, generator: str | None = None
    ) -> None:
        # A walk makes n * interpolate images: the limit of n bounds them all.
        super().check_limits(overrides, generator)
        most = self.effective_limits(overrides).get("n")
        images = self.n * max(self.interpolate, 1)
        if most is not None and images > most:
            where = f" for {generator}" if generator else ""
            raise RequestError(
                f"n x interpolate must be <= {most:g} images{where} (the limit of n), "
                f"got {self.n} x {self.interpolate} = {images}"
            )
