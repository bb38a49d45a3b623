"""Loading the compiled extension and telling which kernels it has.

Every op falls back to its pure-PyTorch reference (aigc_sdk/ops/reference.py)
when the extension is missing or has no kernel for the tensor's device, with
one warning per op and device saying so, as StyleGAN2's ops do.
"""

from __future__ import annotations

import functools
import threading
import warnings

import torch

# Every op of the `aigc` library; `aigc doctor` reports each of them.
OPS = ("upsample_conv2d", "decode_attention", "sample", "quant_linear")
# Ops that exist for the CPU only, to save the CPU's per-call overhead of a sequence of
# ops (llm_decode_layers: a decode step's ops above; dequantize: gguf's dequantization
# in torch ops); elsewhere their callers run that sequence op by op.
CPU_ONLY_OPS = ("llm_decode_layers", "dequantize")
# Ops that describe the build rather than compute on tensors (no device kernels).
INFO_OPS = ("build_info", "quant_linear_int8_rows")

_warned: set[tuple[str, str]] = set()
_warn_lock = threading.Lock()


@functools.cache
def load_error() -> str | None:
    """Imports aigc_sdk._C once; returns why it failed, or None."""
    try:
        from .. import _C  # noqa: F401  (importing runs the op registrations)
    except ImportError as exc:
        return f"{type(exc).__name__}: {exc}"
    return None


def build_info() -> str | None:
    """'cpu' or 'cpu+cuda': what the extension was compiled with."""
    if load_error() is not None:
        return None
    return torch.ops.aigc.build_info()


def op_defined(op: str) -> bool:
    """Whether the loaded extension defines ``aigc::op`` (a stale build may not)."""
    return load_error() is None and hasattr(torch.ops.aigc, op)


_kernels_seen: set[tuple[str, str]] = set()


def has_kernel(op: str, device_type: str) -> bool:
    """Whether the extension registered a kernel of ``op`` for ``device_type``."""
    # Asked on every call of an op (a decode loop samples each token): a
    # registration never goes away, so a yes is remembered; a no is asked again.
    if (op, device_type) in _kernels_seen:
        return True
    if not op_defined(op):
        return False
    key = {"cpu": "CPU", "cuda": "CUDA"}.get(device_type)
    if key is None:
        return False
    try:
        found = torch._C._dispatch_has_kernel_for_dispatch_key(f"aigc::{op}", key)
    except RuntimeError:  # the op is not defined at all
        return False
    if found:
        _kernels_seen.add((op, device_type))
    return found


def warn_fallback(op: str, device_type: str) -> None:
    """Warns once per (op, device) that the slow reference is in use."""
    with _warn_lock:
        if (op, device_type) in _warned:
            return
        _warned.add((op, device_type))
    reason = load_error() or f"no {device_type} kernel was compiled for it"
    warnings.warn(
        f"aigc op {op!r} on {device_type}: using the pure-PyTorch reference ({reason}); "
        "run `aigc doctor` for details",
        RuntimeWarning,
        stacklevel=3,
    )


def status() -> dict:
    """What `aigc doctor` prints about kernels."""
    return {
        "extension": "built" if load_error() is None else "missing",
        "extension_error": load_error(),
        "build": build_info(),
        "ops": {
            op: {dev: ("kernel" if has_kernel(op, dev) else "reference") for dev in ("cpu", "cuda")}
            for op in OPS
        },
    }
