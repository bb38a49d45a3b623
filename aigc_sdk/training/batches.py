"""Batches as the default collate makes them: tensors, lists of fields, dicts.

The loop moves them to the device and cuts them into micro-batches along
the first dimension without knowing what a trainer's samples look like.
"""

from __future__ import annotations

from typing import Any

import torch

from ..errors import UserError

_SCALARS = (str, bytes, int, float, bool)


def _is_per_sample_list(obj: Any) -> bool:
    """A list of strings/numbers (one per sample), as opposed to a list of fields."""
    return isinstance(obj, (list, tuple)) and all(isinstance(v, _SCALARS) for v in obj)


def batch_size(batch: Any) -> int:
    """The number of samples: the first dimension of the first tensor (or per-sample list)."""
    if isinstance(batch, torch.Tensor):
        return batch.shape[0] if batch.dim() else 1
    if _is_per_sample_list(batch):
        return len(batch)
    if isinstance(batch, dict):
        items = list(batch.values())
    elif isinstance(batch, (list, tuple)):
        items = list(batch)
    else:
        items = []
    for item in items:
        size = batch_size(item)
        if size:
            return size
    return 0


def _cut(obj: Any, start: int, stop: int) -> Any:
    if isinstance(obj, torch.Tensor):
        return obj[start:stop] if obj.dim() else obj
    if _is_per_sample_list(obj):
        return type(obj)(obj[start:stop])
    if isinstance(obj, dict):
        return {k: _cut(v, start, stop) for k, v in obj.items()}
    if isinstance(obj, tuple) and hasattr(obj, "_fields"):  # namedtuple
        return type(obj)(*(_cut(v, start, stop) for v in obj))
    if isinstance(obj, (list, tuple)):
        return type(obj)(_cut(v, start, stop) for v in obj)
    return obj


def split_batch(batch: Any, parts: int) -> list[Any]:
    """``parts`` micro-batches, sizes differing by at most one (views, no copies)."""
    if parts == 1:
        return [batch]
    size = batch_size(batch)
    if size < parts:
        raise UserError(f"a batch of {size} samples cannot be cut into {parts} micro-batches")
    base, extra = divmod(size, parts)
    bounds, start = [], 0
    for i in range(parts):
        stop = start + base + (1 if i < extra else 0)
        bounds.append((start, stop))
        start = stop
    return [_cut(batch, a, b) for a, b in bounds]


def to_device(batch: Any, device: torch.device) -> Any:
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=device.type == "cuda")
    if isinstance(batch, dict):
        return {k: to_device(v, device) for k, v in batch.items()}
    if isinstance(batch, tuple) and hasattr(batch, "_fields"):
        return type(batch)(*(to_device(v, device) for v in batch))
    if isinstance(batch, (list, tuple)) and not _is_per_sample_list(batch):
        return type(batch)(to_device(v, device) for v in batch)
    return batch
