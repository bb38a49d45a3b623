"""Exponential moving average of a model's weights."""

from __future__ import annotations

import copy

import torch


class EMA:
    """A frozen copy of ``model`` that follows it: ``avg += (1 - d) * (w - avg)``.

    The decay ramps up as ``min(decay, (1 + n) / (10 + n))`` after ``n``
    updates, so the average does not drag the random initialisation along
    for thousands of steps. Buffers (e.g. batch-norm statistics) are copied.
    """

    def __init__(self, model: torch.nn.Module, decay: float) -> None:
        self.decay = decay
        self.updates = 0
        self.model = copy.deepcopy(model).eval().requires_grad_(False)

    @torch.no_grad()
    def update(self, model: torch.nn.Module) -> None:
        self.updates += 1
        decay = min(self.decay, (1 + self.updates) / (10 + self.updates))
        for avg, live in zip(self.model.parameters(), model.parameters(), strict=True):
            if avg.dtype.is_floating_point:
                avg.lerp_(live.detach(), 1 - decay)
            else:
                avg.copy_(live)
        for avg, live in zip(self.model.buffers(), model.buffers(), strict=True):
            avg.copy_(live)
