"""Training checkpoints: ``run/checkpoints/step-000100/`` written atomically, never pickled.

A checkpoint directory holds ``model.safetensors`` (every model, and the EMA
copies as ``ema.<name>.*``), ``optimizer.safetensors`` (optimizer, scheduler
and trainer tensors) and ``state.json`` (step, data position, RNG states,
config, the structure of the optimizer state, SHA-256 of both files).
``atomic_directory`` writes it whole or not at all; ``latest`` is replaced
atomically afterwards. Resume takes the highest complete step directory, so
a process killed at any moment leaves a usable run.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path
from typing import Any

import torch

from ..checkpoint import atomic_directory, remove_dead_temporaries
from ..errors import CheckpointError
from ..media import atomic_write
from .state import dumps, sha256_file

CHECKPOINTS = "checkpoints"
MODEL_FILE, OPTIMIZER_FILE, STATE_FILE = "model.safetensors", "optimizer.safetensors", "state.json"
_STEP_DIR = re.compile(r"^step-(\d+)$")


def step_dir(run_dir: Path, step: int) -> Path:
    return run_dir / CHECKPOINTS / f"step-{step:06d}"


def list_checkpoints(run_dir: Path) -> list[tuple[int, Path]]:
    """Complete checkpoints (a readable state.json) by ascending step."""
    root = run_dir / CHECKPOINTS
    found = []
    if root.is_dir():
        for path in root.iterdir():
            match = _STEP_DIR.match(path.name)
            if match and path.is_dir() and (path / STATE_FILE).is_file():
                found.append((int(match.group(1)), path))
    return sorted(found)


def latest_checkpoint(run_dir: Path) -> Path | None:
    found = list_checkpoints(run_dir)
    return found[-1][1] if found else None


def _unshared(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Contiguous CPU tensors, cloning those that share memory (tied weights)."""
    seen: set[tuple[int, int]] = set()
    out = {}
    for key, value in tensors.items():
        value = value.detach().cpu().contiguous()
        ident = (value.untyped_storage().data_ptr(), value.storage_offset())
        if ident in seen or value.untyped_storage().nbytes() != value.nbytes:
            value = value.clone()
        seen.add(ident)
        out[key] = value
    return out


def write_checkpoint(
    run_dir: Path,
    step: int,
    model_tensors: dict[str, torch.Tensor],
    optimizer_tensors: dict[str, torch.Tensor],
    state: dict[str, Any],
) -> Path:
    from safetensors.torch import save_file

    target = step_dir(run_dir, step)
    with atomic_directory(target) as tmp:
        save_file(_unshared(model_tensors), str(tmp / MODEL_FILE))
        save_file(_unshared(optimizer_tensors), str(tmp / OPTIMIZER_FILE))
        state = dict(state, files={n: sha256_file(tmp / n) for n in (MODEL_FILE, OPTIMIZER_FILE)})
        (tmp / STATE_FILE).write_text(dumps(state) + "\n")
    atomic_write(run_dir / CHECKPOINTS / "latest", f"{target.name}\n".encode())
    return target


def read_state(path: Path) -> dict[str, Any]:
    file = path / STATE_FILE
    try:
        state = json.loads(file.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"{file} is damaged: {exc}") from None
    if not isinstance(state, dict) or "step" not in state:
        raise CheckpointError(f"{file} is not a training checkpoint state")
    return state


def read_checkpoint(
    path: Path,
) -> tuple[dict[str, Any], dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """(state, model tensors, optimizer tensors), each file checked against its SHA-256."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    state = read_state(path)
    loaded = []
    for name in (MODEL_FILE, OPTIMIZER_FILE):
        file = path / name
        if not file.is_file():
            raise CheckpointError(f"{file} is missing")
        expected = state.get("files", {}).get(name)
        if expected is not None and sha256_file(file) != expected:
            raise CheckpointError(f"{file} is damaged: its SHA-256 does not match {STATE_FILE}")
        try:
            loaded.append(load_file(str(file)))
        except (SafetensorError, OSError, ValueError) as exc:
            raise CheckpointError(f"{file} is damaged: {exc}") from None
    return state, loaded[0], loaded[1]


def remove_leftovers(run_dir: Path) -> None:
    """Deletes what processes killed mid-write left in a run directory.

    Half-written checkpoints of dead processes (``.step-N.tmp-PID-*``),
    checkpoints killed mid-prune (``.step-N.deleting``) and the temporary
    files of ``atomic_write`` (``.NAME.*.tmp``: latest, metrics, plots,
    samples). Called when a run starts, before it writes anything.
    """
    root = run_dir / CHECKPOINTS
    remove_dead_temporaries(root, ".step-*.tmp-*")
    for path in root.glob(".step-*.deleting") if root.is_dir() else ():
        shutil.rmtree(path, ignore_errors=True)
    for directory in (run_dir, root, run_dir / "samples"):
        for path in directory.glob(".*.tmp") if directory.is_dir() else ():
            if path.is_file():
                path.unlink(missing_ok=True)


def prune(run_dir: Path, keep: int) -> list[Path]:
    """Deletes all but the ``keep`` newest checkpoints; returns what was deleted."""
    found = list_checkpoints(run_dir)
    doomed = [path for _, path in found[:-keep]] if keep > 0 else []
    for stale in (run_dir / CHECKPOINTS).glob(".step-*.deleting"):
        shutil.rmtree(stale, ignore_errors=True)  # left by a process killed mid-delete
    for path in doomed:
        # Renamed first, so a kill mid-delete never leaves a half checkpoint that looks whole.
        trash = path.with_name(f".{path.name}.deleting")
        path.rename(trash)
        shutil.rmtree(trash, ignore_errors=True)
    return doomed
