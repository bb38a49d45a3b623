"""Token sampling: temperature, repetition penalty, top-k, top-p, min-p and the
draw in a few passes over the logits, no sort (``torch.ops.aigc.sample``).

The law, identical on every device and in ``reference.sample``:

* ``x`` = logits as float32; the ids in ``prev_tokens`` (each once, negative
  ids are padding) get the CTRL repetition penalty: ``x / penalty`` if
  ``x > 0`` else ``x * penalty``.
* ``temperature == 0``: greedy, the token is ``argmax x`` (the lowest index
  among equal maxima); top-k/top-p/min-p and the seed play no part.
* Otherwise the weight of a token is ``e = exp((x - max x) / temperature)``
  (computed as ``(x - max x) * (1 / temperature)`` in float32), in [0, 1]:
  its probability relative to the most likely token. If some ``x`` are
  ``+inf``, those tokens share the probability equally and the others get
  none.
* The kept tokens are those with ``e >= tau``, ``tau`` the largest of
  - top-k: the k-th largest ``e``; tokens tied with it are kept too, so ties
    can keep more than k tokens (``top_k >= V`` keeps all);
  - top-p: the smallest ``e``-threshold whose kept tokens (within top-k) hold
    at least a fraction ``top_p`` of the top-k probability; ties at the
    threshold are all kept;
  - min-p: ``min_p`` itself (``e >= min_p`` means ``p >= min_p * p_max``).
* The draw is an inverse-CDF in token-id order over the kept tokens, with
  probabilities quantised to integer multiples of 2^-40 of the top
  token's (tokens below that, p < 1e-12 * p_max, are never drawn). Its 64
  random bits are Philox 4x32-10 keyed by ``seed``, counter
  ``(offset, row)``: the same seed, offset and row give the same token on the
  CPU, on CUDA and in the reference. Generation loops pass the step number as
  ``offset`` so that each step draws fresh numbers. ``row`` is the row's index,
  or its entry of ``row_ids``: a batch holding several requests passes each
  request's own row numbers, so that a request draws the same tokens wherever
  its rows sit in the batch.
* ``seed=None`` takes one seed from torch's default CPU generator, so
  ``torch.manual_seed`` makes a run reproducible.

Errors (``ValueError``): NaN logits, a row whose logits are all ``-inf``, and
parameters out of range, each naming the argument (and the row). On CUDA the
data-dependent checks cost one device synchronisation per call.
"""

from __future__ import annotations

import math
import numbers

import torch

from . import reference
from ._extension import has_kernel, op_defined, warn_fallback

_PARAMS = {  # name: (dtype, predicate on a number, what is expected)
    "temperature": (torch.float32, lambda v: math.isfinite(v) and v >= 0, "a finite number >= 0"),
    "top_k": (torch.int64, lambda v: v >= 0, "an integer >= 0 (0 = off)"),
    "top_p": (torch.float32, lambda v: 0 < v <= 1, "a number in (0, 1] (1 = off)"),
    "min_p": (torch.float32, lambda v: 0 <= v <= 1, "a number in [0, 1] (0 = off)"),
    "offset": (torch.int64, lambda v: -(2**63) <= v < 2**64, "a 64-bit integer"),
    "seed": (torch.int64, lambda v: -(2**63) <= v < 2**64, "a 64-bit integer"),
    "row_ids": (torch.int64, lambda v: -(2**63) <= v < 2**64, "a 64-bit integer"),
    "repetition_penalty": (
        torch.float32,
        lambda v: math.isfinite(v) and v > 0,
        "a finite number > 0 (1 = off)",
    ),
}


def sample(
    logits: torch.Tensor,
    *,
    temperature: float | torch.Tensor = 1.0,
    top_k: int | torch.Tensor = 0,
    top_p: float | torch.Tensor = 1.0,
    min_p: float | torch.Tensor = 0.0,
    seed: int | torch.Tensor | None = None,
    offset: int | torch.Tensor = 0,
    prev_tokens: torch.Tensor | None = None,
    repetition_penalty: float | torch.Tensor = 1.0,
    row_ids: torch.Tensor | None = None,
) -> torch.Tensor:
    """Draws one token id per row of ``logits`` ([B, V] or [V]; float32, bfloat16
    or float16) and returns them as int64 ([B], or a 0-d tensor for [V]).

    Every parameter is a number or a per-row tensor of shape [B], so a batch can
    mix settings. ``top_k=0``, ``top_p=1``, ``min_p=0`` and
    ``repetition_penalty=1`` are off; ``temperature=0`` is greedy.
    ``prev_tokens`` ([B, n] or [n] int64, negative = padding) are the ids the
    repetition penalty applies to. ``row_ids`` ([B] int64) are the row numbers
    keyed into the draws in place of 0..B-1. See the module docstring for the
    exact law.
    """
    if not isinstance(logits, torch.Tensor):
        raise TypeError(f"sample: logits must be a torch.Tensor, got {type(logits).__name__}")
    single = logits.dim() == 1
    if single:
        logits = logits.unsqueeze(0)
        if isinstance(prev_tokens, torch.Tensor) and prev_tokens.dim() == 1:
            prev_tokens = prev_tokens.unsqueeze(0)
    if logits.dim() != 2:
        raise ValueError(f"sample: logits must have shape [B, V] or [V], got {tuple(logits.shape)}")
    if logits.dtype not in (torch.float32, torch.bfloat16, torch.float16):
        raise TypeError(f"sample: logits must be float32, bfloat16 or float16, got {logits.dtype}")
    if seed is None:  # one draw from the default generator: torch.manual_seed governs it
        seed = int(torch.randint(-(2**63), 2**63 - 1, (), dtype=torch.int64))
    rows = {
        name: _per_row(name, value, logits)
        for name, value in dict(
            temperature=temperature, top_k=top_k, top_p=top_p, min_p=min_p, seed=seed, offset=offset
        ).items()
    }
    penalty = None
    if prev_tokens is not None and not _is_number_equal(repetition_penalty, 1.0):
        prev_tokens = _prev_tokens(prev_tokens, logits)
        penalty = _per_row("repetition_penalty", repetition_penalty, logits)
    else:
        prev_tokens = None
    if row_ids is not None:
        if not isinstance(row_ids, torch.Tensor):
            raise TypeError(f"sample: row_ids must be a tensor, got {type(row_ids).__name__}")
        if row_ids.shape != logits.shape[:1]:
            raise ValueError(
                f"sample: row_ids must have shape [{logits.shape[0]}] (a row number per row), "
                f"got {tuple(row_ids.shape)}"
            )
        row_ids = _per_row("row_ids", row_ids, logits)
    args = (logits, *rows.values(), prev_tokens, penalty, row_ids)
    if has_kernel("sample", logits.device.type):
        tokens = torch.ops.aigc.sample(*args)
    else:
        warn_fallback("sample", logits.device.type)
        _check_values(rows, penalty, prev_tokens, logits.shape[1])
        tokens = reference.sample(*args)
    return tokens[0] if single else tokens


def _is_number_equal(value, number: float) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool) and value == number


def _per_row(name: str, value, logits: torch.Tensor) -> torch.Tensor:
    """A parameter as a [B] tensor of its dtype on the logits' device."""
    dtype, valid, expected = _PARAMS[name]
    B = logits.shape[0]
    if isinstance(value, torch.Tensor):
        # A decode loop passes the same ready rows every step (one call per request
        # and token): taken as they are, without the conversions' dispatches.
        if (
            value.dtype == dtype
            and value.shape == (B,)
            and value.is_contiguous()
            and value.device == logits.device
        ):
            return value
        if value.dim() > 1 or (value.dim() == 1 and value.shape[0] != B):
            raise ValueError(
                f"sample: {name} must be a number or a tensor of shape [{B}] "
                f"(one value per row), got shape {tuple(value.shape)}"
            )
        if value.device != logits.device:
            raise ValueError(
                f"sample: {name} is on {value.device} but logits is on {logits.device}"
            )
        if value.is_floating_point() and dtype == torch.int64:
            raise TypeError(f"sample: {name} must hold integers, got {value.dtype}")
        if value.is_complex() or value.dtype == torch.bool:
            raise TypeError(f"sample: {name} must be a real tensor, got {value.dtype}")
        return value.to(dtype).expand(B).contiguous()
    kind = type(value)  # exact int/float first: the ABC checks cost microseconds per call
    is_int = kind is int or (
        kind is not float and isinstance(value, numbers.Integral) and kind is not bool
    )
    is_real = is_int or kind is float or (isinstance(value, numbers.Real) and kind is not bool)
    if not (is_int if dtype == torch.int64 else is_real):
        raise TypeError(f"sample: {name} must be {expected} or a tensor, got {value!r}")
    if not valid(value):
        raise ValueError(f"sample: {name} must be {expected}, got {value!r}")
    if name in ("seed", "offset"):
        value = (value + 2**63) % 2**64 - 2**63  # the same 64 bits as a signed int64
        return torch.full((B,), value, dtype=dtype, device=logits.device)
    return _constant_row(value, B, dtype, logits.device)


_constant_rows: dict[tuple, torch.Tensor] = {}


def _constant_row(value, B: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """``torch.full((B,), value)``, made once per setting: a decode loop passes the
    same temperature/top-k/top-p/min-p every step, and four fresh tensors per
    token cost more than the draw itself at batch 1. The op never writes them."""
    if torch.compiler.is_compiling():  # fake tensors must not be kept
        return torch.full((B,), value, dtype=dtype, device=device)
    key = (value, B, dtype, device)
    row = _constant_rows.get(key)
    if row is None:
        if len(_constant_rows) > 1024:
            _constant_rows.clear()
        with torch.inference_mode(False):
            row = _constant_rows[key] = torch.full((B,), value, dtype=dtype, device=device)
    return row


def _prev_tokens(prev_tokens, logits: torch.Tensor) -> torch.Tensor:
    if not isinstance(prev_tokens, torch.Tensor):
        raise TypeError(f"sample: prev_tokens must be a tensor, got {type(prev_tokens).__name__}")
    if prev_tokens.dim() != 2 or prev_tokens.shape[0] != logits.shape[0]:
        raise ValueError(
            f"sample: prev_tokens must have shape [{logits.shape[0]}, n] "
            f"(negative ids are padding), got {tuple(prev_tokens.shape)}"
        )
    if prev_tokens.is_floating_point() or prev_tokens.dtype == torch.bool:
        raise TypeError(f"sample: prev_tokens must hold integer token ids, got {prev_tokens.dtype}")
    if prev_tokens.device != logits.device:
        raise ValueError(
            f"sample: prev_tokens is on {prev_tokens.device} but logits is on {logits.device}"
        )
    return prev_tokens.to(torch.int64).contiguous()


def _check_values(rows: dict, penalty, prev_tokens, vocab: int) -> None:
    """The kernels' per-row checks, for the reference fallback."""
    checks = dict(rows, repetition_penalty=penalty) if penalty is not None else rows
    for name, tensor in checks.items():
        _, valid, expected = _PARAMS[name]
        for row, value in enumerate(tensor.tolist()):
            if not valid(value):
                raise ValueError(f"sample: {name}[{row}] = {value!r}: must be {expected}")
    if prev_tokens is not None and prev_tokens.numel() and int(prev_tokens.max()) >= vocab:
        raise ValueError(f"sample: prev_tokens holds an id >= the vocabulary size {vocab}")


if op_defined("sample"):

    @torch.library.register_fake("aigc::sample")
    def _sample_fake(
        logits, temperature, top_k, top_p, min_p, seed, offset, prev=None, pen=None, row_ids=None
    ):
        return logits.new_empty((logits.shape[0],), dtype=torch.int64)
