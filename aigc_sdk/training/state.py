"""Nested Python state (optimizer, scheduler, RNG) as JSON plus tensors, without pickle.

``flatten(obj)`` returns a JSON-able structure in which every tensor is
replaced by a reference to an entry of a flat ``{key: tensor}`` dict (saved
with safetensors). Tuples, non-string dict keys and numpy arrays are tagged
so ``unflatten`` rebuilds exactly what ``state_dict()`` returned: an
optimizer reloads with bitwise-identical state.
"""

from __future__ import annotations

import hashlib
import json
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import CheckpointError

_TENSOR, _TUPLE, _DICT, _NDARRAY = "__tensor__", "__tuple__", "__dict__", "__ndarray__"


def flatten(obj: Any, prefix: str, tensors: dict[str, torch.Tensor]) -> Any:
    """JSON-able ``obj``; its tensors go into ``tensors`` under keys starting with ``prefix``."""
    if isinstance(obj, torch.Tensor):
        key = prefix
        tensors[key] = obj.detach().cpu().contiguous()
        return {_TENSOR: key}
    if isinstance(obj, np.ndarray):
        return {_NDARRAY: obj.tolist(), "dtype": str(obj.dtype)}
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, tuple):
        return {_TUPLE: [flatten(v, f"{prefix}.{i}", tensors) for i, v in enumerate(obj)]}
    if isinstance(obj, list):
        return [flatten(v, f"{prefix}.{i}", tensors) for i, v in enumerate(obj)]
    if isinstance(obj, dict):
        if all(isinstance(k, str) and not k.startswith("__") for k in obj):
            return {k: flatten(v, f"{prefix}.{k}", tensors) for k, v in obj.items()}
        return {
            _DICT: [
                [flatten(k, f"{prefix}.k{i}", tensors), flatten(v, f"{prefix}.{k}", tensors)]
                for i, (k, v) in enumerate(obj.items())
            ]
        }
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    raise TypeError(f"cannot store {type(obj).__name__} at {prefix!r} without pickle")


def unflatten(obj: Any, tensors: dict[str, torch.Tensor]) -> Any:
    """The inverse of ``flatten``."""
    if isinstance(obj, list):
        return [unflatten(v, tensors) for v in obj]
    if not isinstance(obj, dict):
        return obj
    if _TENSOR in obj:
        try:
            return tensors[obj[_TENSOR]]
        except KeyError:
            raise CheckpointError(
                f"tensor {obj[_TENSOR]!r} is missing from the checkpoint"
            ) from None
    if _TUPLE in obj:
        return tuple(unflatten(v, tensors) for v in obj[_TUPLE])
    if _NDARRAY in obj:
        return np.array(obj[_NDARRAY], dtype=obj["dtype"])
    if _DICT in obj:
        return {_hashable(unflatten(k, tensors)): unflatten(v, tensors) for k, v in obj[_DICT]}
    return {k: unflatten(v, tensors) for k, v in obj.items()}


def _hashable(key: Any) -> Any:
    return tuple(key) if isinstance(key, list) else key


# -- random number generators --------------------------------------------------


def rng_state() -> dict[str, Any]:
    """Every RNG a training step may draw from: torch (CPU and CUDA), numpy, random."""
    state = {
        "torch": torch.get_rng_state(),
        "numpy": np.random.get_state(),
        "python": random.getstate(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    np.random.set_state(state["numpy"])
    random.setstate(_tuples(state["python"]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state(state["cuda"])


def _tuples(value: Any) -> Any:
    return tuple(_tuples(v) for v in value) if isinstance(value, (list, tuple)) else value


class preserved_rng:
    """Runs a block (evaluation, samples) without disturbing the training RNG streams."""

    def __enter__(self) -> None:
        self._saved = rng_state()

    def __exit__(self, *exc: object) -> None:
        set_rng_state(self._saved)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


# The random streams of a run, one per purpose: derived_seed(seed, STREAM, ...),
# so that more draws for one purpose never shift another's. Every run's numbers
# depend on these values: they never change.
INIT_STREAM = 0  # model initialisation, the same on every rank
TRAINING_STREAM = 1  # the training steps' draws (dropout, noise), one stream per rank
EVALUATION_STREAM = 3  # held-out evaluation, the same at every evaluation
DATA_WORKER_STREAM = 5  # the DataLoader's worker seeds, per epoch and rank
SHUFFLE_STREAM = 7  # the order of each epoch's examples


def derived_seed(*parts: int) -> int:
    """A seed for one purpose: ``derived_seed(seed, STREAM, ...)`` with a ``*_STREAM``
    constant and what else tells its draws apart (rank, epoch, step)."""
    return int(np.random.SeedSequence(list(parts)).generate_state(1, np.uint64)[0] >> 1)


# -- files ------------------------------------------------------------------------


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def digest_tensors(tensors: dict[str, torch.Tensor], extra: str = "") -> str:
    """A fingerprint of exact tensor contents and of ``extra`` (ranks compare theirs)."""
    digest = hashlib.sha256(extra.encode())
    for key in sorted(tensors):
        value = tensors[key].detach().cpu().contiguous()
        digest.update(key.encode())
        digest.update(str(value.dtype).encode())
        digest.update(value.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def dumps(obj: Any) -> str:
    return json.dumps(obj, indent=1, sort_keys=True)
