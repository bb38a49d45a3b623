"""Data order that can be resumed at any step and split across processes.

Each epoch is a permutation drawn from ``(seed, epoch)`` alone. A training
step takes the next ``global_batch`` indices of it; rank ``r`` of ``w`` loads
every ``w``-th of those starting at ``r``. So the union over ranks of one
step's batches is exactly what a single process with the same global batch
would load, and resuming needs only ``(epoch, offset)``.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import torch

from ..data import DataError
from .state import SHUFFLE_STREAM, derived_seed


@dataclass
class DataPosition:
    """Where the next step's batch starts: the epoch and the samples used in it so far."""

    epoch: int = 0
    offset: int = 0


class StepBatches(torch.utils.data.Sampler[list[int]]):
    """Yields this rank's index list for each step of one epoch, from ``start`` on."""

    def __init__(
        self, size: int, per_rank: int, world_size: int, rank: int, seed: int, shuffle: bool = True
    ) -> None:
        self.size, self.per_rank = size, per_rank
        self.world_size, self.rank = world_size, rank
        self.seed, self.shuffle = seed, shuffle
        self.global_batch = per_rank * world_size
        if size < self.global_batch:
            raise DataError(
                f"the training set has {size} samples: fewer than one global batch of "
                f"{self.global_batch} (batch_size x grad_accum x processes); lower batch_size"
            )
        self.position = DataPosition()

    def order(self, epoch: int) -> torch.Tensor:
        if not self.shuffle:
            return torch.arange(self.size)
        generator = torch.Generator().manual_seed(derived_seed(self.seed, SHUFFLE_STREAM, epoch))
        return torch.randperm(self.size, generator=generator)

    def fits(self, offset: int) -> bool:
        """Whether a whole global batch remains in the epoch after ``offset`` samples."""
        return offset + self.global_batch <= self.size

    def __iter__(self) -> Iterator[list[int]]:
        order = self.order(self.position.epoch)
        offset = self.position.offset
        while self.fits(offset):
            chunk = order[offset : offset + self.global_batch]
            yield chunk[self.rank :: self.world_size].tolist()
            offset += self.global_batch

    def __len__(self) -> int:
        return max(0, (self.size - self.position.offset) // self.global_batch)
