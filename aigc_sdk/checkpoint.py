"""``save_pretrained`` / ``from_pretrained``: config.json + model.safetensors.

Never pickle. A checkpoint directory is written whole into a temporary
sibling and swapped into place atomically (Linux ``renameat2`` exchange;
elsewhere two renames), so a process killed mid-save leaves the previous
checkpoint intact. config.json records the plugin, the format version and the
SHA-256 of the weights file and of each tensor, so a damaged or mismatched
file is named, with the tensor, not loaded.

A model folder is the common case: ``save_model`` writes a module with its
config dataclass, ``load_model`` builds the module from the stored config and
loads its weights. Plugins with more to store (a tokenizer, how the model was
trained) pass it as ``extra`` and ``extra_files``.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import dataclasses
import errno
import hashlib
import itertools
import json
import os
import shutil
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import CheckpointError

if TYPE_CHECKING:
    import torch

__all__ = [
    "CONFIG_FILE",
    "FORMAT_VERSION",
    "WEIGHTS_FILE",
    "atomic_directory",
    "load_into",
    "load_model",
    "load_pretrained",
    "read_config",
    "save_model",
    "save_pretrained",
]

FORMAT_VERSION = 1
CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"


# -- atomic directories ------------------------------------------------------


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _fsync_tree(directory: Path) -> None:
    """Flushes every file to disk (and gives them the user's usual permissions)."""
    mode = 0o666 & ~_current_umask()
    for path in directory.rglob("*"):
        if path.is_file():
            os.chmod(path, mode)
            with open(path, "rb") as f:
                os.fsync(f.fileno())
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


_RENAME_EXCHANGE = 2
_AT_FDCWD = -100


def _exchange(a: Path, b: Path) -> bool:
    """Atomically swaps two paths (Linux >= 3.15); False where unsupported."""
    libc_name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(libc_name, use_errno=True)
        renameat2 = libc.renameat2
    except (OSError, AttributeError, TypeError):
        return False
    rc = renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE)
    if rc == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):
        return False
    raise OSError(err, os.strerror(err), str(b))


def _carry_over_user_files(old: Path, new: Path) -> None:
    """Files the user kept in the old directory survive the swap."""
    for path in old.rglob("*"):
        target = new / path.relative_to(old)
        if path.is_file() and not target.exists():
            target.parent.mkdir(parents=True, exist_ok=True)
            try:
                os.link(path, target)
            except OSError:
                shutil.copy2(path, target)


def remove_dead_temporaries(directory: Path, pattern: str) -> None:
    """Deletes the temporary directories matching ``pattern`` (``...tmp-PID-ID``, as
    ``atomic_directory`` names them) whose process is gone: what a kill mid-save left."""
    for stale in directory.glob(pattern) if directory.is_dir() else ():
        pid = stale.name.rsplit("-", 2)[-2]
        if pid.isdigit() and not _pid_alive(int(pid)):
            shutil.rmtree(stale, ignore_errors=True)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@contextmanager
def atomic_directory(target: str | Path) -> Iterator[Path]:
    """Yields a temporary directory that replaces ``target`` on success.

    If the block raises or the process dies, ``target`` is untouched.
    Files in an existing ``target`` that the new contents don't overwrite are
    kept (hard links), so saving never deletes what a user put there.
    """
    target = Path(target).absolute()
    target.parent.mkdir(parents=True, exist_ok=True)
    remove_dead_temporaries(target.parent, f".{target.name}.tmp-*")
    tmp = target.parent / f".{target.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    try:
        yield tmp
        if target.exists():
            if not target.is_dir():
                raise CheckpointError(f"{target} exists and is not a directory")
            _carry_over_user_files(target, tmp)
            _fsync_tree(tmp)
            if not _exchange(tmp, target):
                old = target.parent / f".{target.name}.old-{uuid.uuid4().hex[:8]}"
                os.rename(target, old)
                os.rename(tmp, target)
                tmp = old
        else:
            _fsync_tree(tmp)
            os.rename(tmp, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


# -- save / load -------------------------------------------------------------


def _tensor_extents(weights: Path) -> dict[str, tuple[int, int]]:
    """Each tensor's byte range in a safetensors file, read from its header."""
    try:
        with open(weights, "rb") as f:
            header_length = int.from_bytes(f.read(8), "little")
            header = json.loads(f.read(header_length))
        start = 8 + header_length
        return {
            name: (start + info["data_offsets"][0], start + info["data_offsets"][1])
            for name, info in header.items()
            if name != "__metadata__"
        }
    except (ValueError, KeyError, TypeError, IndexError, AttributeError) as exc:
        raise CheckpointError(f"{weights} is damaged: its header is unreadable ({exc})") from None


def _sha256(
    path: Path, extents: dict[str, tuple[int, int]] | None = None
) -> tuple[str, dict[str, str]]:
    """SHA-256 of the whole file, and of each of ``extents``' byte ranges (the
    tensors, which name what a damaged file lost), in one sequential read."""
    whole = hashlib.sha256()
    spans = sorted((begin, end, name) for name, (begin, end) in (extents or {}).items())
    parts = {name: hashlib.sha256() for _, _, name in spans}
    first, offset = 0, 0  # spans[first:] are the ranges not yet read to their end
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            whole.update(block)
            view, stop = memoryview(block), offset + len(block)
            for begin, end, name in itertools.islice(spans, first, None):
                if begin >= stop:
                    break
                parts[name].update(view[max(begin, offset) - offset : min(end, stop) - offset])
            while first < len(spans) and spans[first][1] <= stop:
                first += 1
            offset = stop
    return whole.hexdigest(), {name: digest.hexdigest() for name, digest in parts.items()}


def save_pretrained(
    directory: str | Path,
    *,
    plugin: str,
    config: dict[str, Any],
    tensors: dict[str, torch.Tensor],
    extra_files: dict[str, bytes] | None = None,
) -> Path:
    """Writes ``config`` and ``tensors`` (and extra files, e.g. a tokenizer) atomically."""
    from safetensors.torch import save_file

    directory = Path(directory)
    with atomic_directory(directory) as tmp:
        weights = tmp / WEIGHTS_FILE
        contiguous = {k: v.detach().contiguous().cpu() for k, v in tensors.items()}
        save_file(
            contiguous,
            str(weights),
            metadata={"plugin": plugin, "format_version": str(FORMAT_VERSION)},
        )
        weights_sha256, tensors_sha256 = _sha256(weights, _tensor_extents(weights))
        full_config = {
            "plugin": plugin,
            "format_version": FORMAT_VERSION,
            "weights_sha256": weights_sha256,
            "tensors_sha256": tensors_sha256,
            "config": config,
        }
        (tmp / CONFIG_FILE).write_text(json.dumps(full_config, indent=2, sort_keys=True) + "\n")
        for name, data in (extra_files or {}).items():
            (tmp / name).parent.mkdir(parents=True, exist_ok=True)
            (tmp / name).write_bytes(data)
    return directory


def read_config(directory: str | Path, plugin: str | None = None) -> dict[str, Any]:
    """Reads and checks config.json; returns the whole record (``["config"]`` is the model's)."""
    path = Path(directory) / CONFIG_FILE
    if not Path(directory).is_dir():
        raise CheckpointError(f"checkpoint directory {directory} does not exist")
    try:
        record = json.loads(path.read_text())
    except FileNotFoundError:
        raise CheckpointError(f"{path} is missing: not a checkpoint directory") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CheckpointError(f"{path} is damaged: {exc}") from None
    if not isinstance(record, dict) or not {"plugin", "format_version", "config"} <= set(record):
        raise CheckpointError(
            f"{path} is not an aigc checkpoint config (needs plugin, format_version and config)"
        )
    if record["format_version"] != FORMAT_VERSION:
        raise CheckpointError(
            f"{path} has format version {record['format_version']!r}; "
            f"this aigc-sdk reads version {FORMAT_VERSION}"
        )
    if plugin is not None and record["plugin"] != plugin:
        raise CheckpointError(f"{path} is a checkpoint of {record['plugin']!r}, not {plugin!r}")
    return record


def load_pretrained(
    directory: str | Path, plugin: str | None = None, device: str = "cpu"
) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """Returns (model config, tensors) after checking plugin, version and checksum."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    record = read_config(directory, plugin)
    weights = Path(directory) / WEIGHTS_FILE
    if not weights.is_file():
        raise CheckpointError(f"{weights} is missing")
    size = weights.stat().st_size
    extents = _tensor_extents(weights)
    cut = sorted(name for name, (_, end) in extents.items() if end > size)
    if cut:
        raise CheckpointError(
            f"{weights} is damaged: it is cut short (tensor {', '.join(cut)} incomplete)"
        )
    expected = record.get("weights_sha256")
    if expected is not None and _sha256(weights)[0] != expected:
        # Only now hash each tensor (a second read), to name what changed.
        saved = record.get("tensors_sha256") or {}
        changed = [n for n, d in _sha256(weights, extents)[1].items() if saved.get(n, d) != d]
        where = f" (tensor {', '.join(changed)} changed)" if changed else ""
        raise CheckpointError(
            f"{weights} is damaged: its SHA-256 does not match {CONFIG_FILE}{where}"
        )
    try:
        tensors = load_file(str(weights), device=device)
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(f"{weights} is damaged: {exc}") from None
    return record["config"], tensors


def load_into(
    module: torch.nn.Module, tensors: dict[str, torch.Tensor], source: str | Path
) -> None:
    """Copies ``tensors`` into ``module``, naming every missing, extra or mis-shaped tensor.

    ``source`` names the file in errors; a checkpoint directory stands for its
    model.safetensors.
    """
    if Path(source).is_dir():
        source = Path(source) / WEIGHTS_FILE
    expected = module.state_dict()
    missing = sorted(set(expected) - set(tensors))
    unexpected = sorted(set(tensors) - set(expected))
    wrong = [
        f"{k} (file {tuple(tensors[k].shape)}, model {tuple(v.shape)})"
        for k, v in expected.items()
        if k in tensors and tensors[k].shape != v.shape
    ]
    problems = []
    if missing:
        problems.append(f"missing tensors: {', '.join(missing)}")
    if unexpected:
        problems.append(f"unexpected tensors: {', '.join(unexpected)}")
    if wrong:
        problems.append(f"wrong shapes: {', '.join(wrong)}")
    if problems:
        raise CheckpointError(f"{source} does not fit the model: " + "; ".join(problems))
    module.load_state_dict(tensors, strict=True)


# -- model folders ---------------------------------------------------------------


def save_model(
    directory: str | Path,
    module: torch.nn.Module,
    config: Any,
    *,
    plugin: str,
    config_key: str | None = None,
    extra: dict[str, Any] | None = None,
    dtype: torch.dtype | None = None,
    extra_files: dict[str, bytes] | None = None,
) -> Path:
    """Writes ``module``'s weights and its config dataclass as a model folder.

    The model config is ``config``'s fields: the whole ``config`` record of
    config.json, or, with ``config_key``, its entry under that key beside
    ``extra`` (how the model was trained, its scores). ``dtype`` stores the
    floating-point tensors in that dtype (``load_model`` casts them back to
    the module's). ``load_model`` with the same ``plugin`` and ``config_key``
    reads it back.
    """
    fields = dataclasses.asdict(config)
    if config_key is None:
        if extra:
            raise ValueError("extra needs a config_key to sit beside the model config")
        record = fields
    else:
        record = {config_key: fields, **(extra or {})}
    tensors = module.state_dict()
    if dtype is not None:
        tensors = {k: v.to(dtype) if v.is_floating_point() else v for k, v in tensors.items()}
    return save_pretrained(
        directory, plugin=plugin, config=record, tensors=tensors, extra_files=extra_files
    )


def load_model(
    directory: str | Path,
    model_class: Any,
    config_class: Any,
    *,
    plugin: str,
    config_key: str | None = None,
    device: str | torch.device = "cpu",
) -> tuple[Any, dict[str, Any]]:
    """``(model_class(config) with the folder's weights, in eval mode on device, config.json's
    whole config record)`` from a folder ``save_model`` wrote.

    The stored model config must name only fields of ``config_class``: a key it
    does not know (a folder of a newer or another model) is an error naming
    the file and the key, never silently dropped, and so is a value the
    dataclass refuses.
    """
    directory = Path(directory)
    record, tensors = load_pretrained(directory, plugin)
    where = directory / CONFIG_FILE
    values = record if config_key is None else record.get(config_key)
    if not isinstance(values, dict):
        raise CheckpointError(f"{where}: no model config ({config_key or 'config'})")
    known = {f.name for f in dataclasses.fields(config_class)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise CheckpointError(
            f"{where}: unknown {config_class.__name__} keys: {', '.join(unknown)}"
        )
    try:
        config = config_class(**values)
    except (TypeError, ValueError) as exc:
        raise CheckpointError(f"{where}: bad {config_class.__name__}: {exc}") from None
    model = model_class(config)
    load_into(model, tensors, directory)
    return model.to(device).eval(), record
