"""Training configuration: one dataclass per trainer, set from JSON, flags or ``--set``.

A trainer's ``Config`` subclasses ``TrainConfig`` (the options every run has)
and adds its own keys, or redefines a common key to change its default::

    @dataclass
    class Config(TrainConfig):
        steps: int = option(2000, "optimizer steps")
        hidden: int = option(64, "width of the hidden layers", min=1)

Values coming from text (``--set hidden=128``, ``--hidden 128``) are parsed
by the field's type; every value is checked against the field's type,
``choices`` and ``min``/``max``. An unknown key or a bad value raises
``ConfigError`` naming the key (and suggesting the closest known one).
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import json
import math
import types
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import UserError


class ConfigError(UserError):
    """An unknown configuration key or an invalid value."""


def option(
    default: Any,
    help: str = "",  # noqa: A002 - mirrors argparse
    *,
    choices: tuple | None = None,
    min: float | None = None,  # noqa: A002
    max: float | None = None,  # noqa: A002
) -> Any:
    """A config field with a default, a help line and optional bounds."""
    meta = {"help": help, "choices": choices, "min": min, "max": max}
    if isinstance(default, (list, dict, set)):
        return dataclasses.field(default_factory=lambda: type(default)(default), metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


@dataclass
class TrainConfig:
    """The options of every training run (a trainer may change their defaults)."""

    data: str | None = option(None, "dataset: a path or a built-in name (digits, tones, stdlib)")
    steps: int = option(1000, "training steps (one training_step call each)", min=1)
    batch_size: int = option(32, "samples per micro-batch, per process", min=1)
    grad_accum: int = option(1, "micro-batches accumulated per optimizer step", min=1)
    lr: float = option(1e-3, "peak learning rate", min=0)
    weight_decay: float = option(0.0, "AdamW weight decay", min=0)
    beta1: float = option(0.9, "AdamW beta1", min=0, max=1)
    beta2: float = option(0.999, "AdamW beta2", min=0, max=1)
    lr_schedule: str = option(
        "constant", "learning-rate schedule after warm-up", choices=("constant", "cosine", "linear")
    )
    warmup_steps: int = option(0, "linear warm-up steps", min=0)
    min_lr_ratio: float = option(0.1, "final lr / peak lr for cosine and linear", min=0, max=1)
    clip_grad_norm: float = option(0.0, "clip gradients to this global norm (0: off)", min=0)
    precision: str = option(
        "auto",
        "fp32, bf16 (autocast, CPU or CUDA), fp16 (CUDA, with loss scaling) or auto",
        choices=("auto", "fp32", "bf16", "fp16"),
    )
    ema_decay: float = option(0.0, "exponential moving average of weights (0: off)", min=0, max=1)
    eval_every: int = option(200, "evaluate every N steps (0: only at the end)", min=0)
    eval_batches: int = option(0, "batches per evaluation (0: the whole held-out set)", min=0)
    sample_every: int = option(
        500, "write sample artefacts every N steps (0: only at the end)", min=0
    )
    checkpoint_every: int = option(500, "checkpoint every N steps (and at the end)", min=1)
    keep_checkpoints: int = option(3, "checkpoints kept (older ones are deleted)", min=1)
    log_every: int = option(10, "average and log metrics every N steps", min=1)
    num_workers: int = option(0, "data-loading worker processes", min=0)
    seed: int = option(0, "random seed (data order, initialisation, dropout)", min=0)
    device: str = option("auto", "cpu, cuda, cuda:N or auto")
    deterministic: bool = option(False, "ask torch for deterministic algorithms")

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            setattr(self, f.name, check_value(type(self), f, getattr(self, f.name)))

    # -- construction --------------------------------------------------------

    @classmethod
    def keys(cls) -> list[str]:
        return [f.name for f in dataclasses.fields(cls)]

    @classmethod
    def field(cls, key: str, source: str = "") -> dataclasses.Field:
        fields = {f.name: f for f in dataclasses.fields(cls)}
        if key not in fields:
            where = f" (in {source})" if source else ""
            message = f"unknown config key {key!r}{where}"
            close = difflib.get_close_matches(key, list(fields), n=1)
            if close:
                message += f"; did you mean {close[0]!r}?"
            raise ConfigError(message + f". Keys: {', '.join(fields)}")
        return fields[key]

    @classmethod
    def from_dict(cls, values: dict[str, Any], source: str = "", base: Any = None) -> Any:
        """``base`` (or the defaults) updated with ``values``; every key and value is checked."""
        merged = dataclasses.asdict(base) if base is not None else {}
        for key, value in values.items():
            merged[key] = check_value(cls, cls.field(key, source), value, source)
        known = set(cls.keys())
        return cls(**{k: v for k, v in merged.items() if k in known})

    @classmethod
    def from_json_file(cls, path: str | Path, base: Any = None) -> Any:
        path = Path(path)
        try:
            values = json.loads(path.read_text())
        except FileNotFoundError:
            raise ConfigError(f"config file {path} does not exist") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"cannot read config file {path}: {exc}") from None
        except json.JSONDecodeError as exc:
            raise ConfigError(f"config file {path} is not valid JSON: {exc}") from None
        if not isinstance(values, dict):
            raise ConfigError(f"config file {path} must hold a JSON object of key: value")
        return cls.from_dict(values, str(path), base)

    @classmethod
    def parse_assignment(cls, text: str) -> tuple[str, Any]:
        """``key=value`` from ``--set``; the value is parsed by the key's type."""
        key, sep, raw = text.partition("=")
        key = key.strip().replace("-", "_")
        if not sep or not key:
            raise ConfigError(f"--set expects key=value, got {text!r}")
        cls.field(key, "--set")
        return key, parse_text(raw)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def replace(self, **changes: Any) -> Any:
        return type(self).from_dict(changes, base=self)


# -- types --------------------------------------------------------------------


@functools.cache
def _type_hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)  # resolves string annotations: slow, so once per class


def _field_type(cls: type, f: dataclasses.Field) -> Any:
    return _type_hints(cls)[f.name]


def _unwrap_optional(tp: Any) -> tuple[Any, bool]:
    if isinstance(tp, types.UnionType) or typing.get_origin(tp) is typing.Union:
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) == 1:
            return args[0], True
    return tp, False


def _type_name(tp: Any) -> str:
    base, optional = _unwrap_optional(tp)
    name = {int: "an integer", float: "a number", str: "a string", bool: "true or false"}.get(
        base, getattr(base, "__name__", str(base))
    )
    return name + (" or null" if optional else "")


def parse_text(raw: str) -> Any:
    """A command-line value: ``none``/``null`` mean None; the rest is converted by type later."""
    text = raw.strip()
    return None if text.lower() in ("none", "null") else text


def check_value(cls: type, f: dataclasses.Field, value: Any, source: str = "") -> Any:
    """``value`` converted to the field's type and checked; ConfigError names the key."""
    tp, optional = _unwrap_optional(_field_type(cls, f))
    where = f" (in {source})" if source else ""

    def bad(expected: str) -> ConfigError:
        return ConfigError(f"config key {f.name!r} must be {expected}, got {value!r}{where}")

    if value is None:
        if optional:
            return None
        raise bad(_type_name(tp))
    value = _coerce(value, tp, bad)
    meta = f.metadata
    if meta.get("choices") and value not in meta["choices"]:
        raise bad("one of " + ", ".join(map(str, meta["choices"])))
    if meta.get("min") is not None and value < meta["min"]:
        raise bad(f">= {meta['min']}")
    if meta.get("max") is not None and value > meta["max"]:
        raise bad(f"<= {meta['max']}")
    return value


_TRUE, _FALSE = ("true", "1", "yes", "on"), ("false", "0", "no", "off")


def _coerce(value: Any, tp: Any, bad) -> Any:
    if tp is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.strip().lower() in _TRUE + _FALSE:
            return value.strip().lower() in _TRUE
        raise bad("true or false")
    if tp is int:
        if isinstance(value, str):
            try:
                value = int(value.strip().replace("_", ""))
            except ValueError:
                raise bad("an integer") from None
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        if not isinstance(value, int) or isinstance(value, bool):
            raise bad("an integer")
        return value
    if tp is float:
        if isinstance(value, str):
            try:
                value = float(value)
            except ValueError:
                raise bad("a number") from None
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            raise bad("a number")
        if not math.isfinite(value):
            raise bad("a finite number")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise bad("a string")
        return value
    origin = typing.get_origin(tp)
    if origin in (tuple, list):
        return _coerce_sequence(value, tp, origin, bad)
    return value


def _coerce_sequence(value: Any, tp: Any, origin: type, bad) -> Any:
    if isinstance(value, str):
        text = value.strip()
        try:
            value = json.loads(text) if text.startswith("[") else text.split(",")
        except json.JSONDecodeError:
            raise bad("a list") from None
    if not isinstance(value, (list, tuple)):
        raise bad("a list")
    args = [a for a in typing.get_args(tp) if a is not Ellipsis]
    item_type = args[0] if args else str
    if origin is tuple and len(args) > 1 and Ellipsis not in typing.get_args(tp):
        if len(value) != len(args):
            raise bad(f"a list of {len(args)} values")
        return tuple(_coerce(v, t, bad) for v, t in zip(value, args, strict=True))
    items = [_coerce(v.strip() if isinstance(v, str) else v, item_type, bad) for v in value]
    return tuple(items) if origin is tuple else items


def describe_type(cls: type, key: str) -> str:
    """The metavar shown in ``--help`` for a key."""
    tp, _ = _unwrap_optional(_field_type(cls, cls.field(key)))
    return {int: "INT", float: "FLOAT", str: "STR", bool: "BOOL"}.get(tp, "VALUE")


def is_bool(cls: type, key: str) -> bool:
    return _unwrap_optional(_field_type(cls, cls.field(key)))[0] is bool
