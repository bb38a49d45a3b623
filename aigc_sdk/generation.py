"""What a generator is, what it is asked, and what it answers.

A generator declares a request dataclass (``ImageRequest``, ``TextRequest``,
``AudioRequest`` or a subclass adding its own fields). The SDK builds that
request from keyword arguments, so an unknown or invalid argument is an error
naming it before any model code runs.
"""

from __future__ import annotations

import dataclasses
import math
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from .errors import RequestError, UserError

if TYPE_CHECKING:
    import torch

    from .batching import BatchEngine

MODALITIES = ("image", "text", "audio")


def _check(condition: bool, name: str, expected: str, value: Any) -> None:
    if not condition:
        raise RequestError(f"{name} must be {expected}, got {value!r}")


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


@dataclass(frozen=True, kw_only=True)
class Request:
    """Fields every request has. ``seed=None`` draws a fresh seed."""

    seed: int | None = None
    n: int = 1

    def __post_init__(self) -> None:
        _check(
            self.seed is None or (_is_int(self.seed) and self.seed >= 0),
            "seed",
            "a non-negative integer or None",
            self.seed,
        )
        _check(_is_int(self.n) and self.n >= 1, "n", "an integer >= 1", self.n)

    @classmethod
    def field_names(cls) -> list[str]:
        return [f.name for f in dataclasses.fields(cls)]

    @classmethod
    def from_kwargs(cls, **kwargs: Any) -> Request:
        """Builds a request, naming unknown arguments and the accepted ones."""
        known = set(cls.field_names())
        unknown = sorted(set(kwargs) - known)
        if unknown:
            raise RequestError(
                f"unknown argument{'s' if len(unknown) > 1 else ''} {', '.join(unknown)} "
                f"for {cls.__name__}; accepted: {', '.join(sorted(known))}"
            )
        return cls(**kwargs)


@dataclass(frozen=True, kw_only=True)
class ImageRequest(Request):
    """Image generation: ``n`` images from ``seed``."""


@dataclass(frozen=True, kw_only=True)
class SamplingRequest(Request):
    """The sampling controls text and audio generators share.

    ``temperature=0`` is greedy decoding; ``top_k=0``, ``top_p=1`` and
    ``min_p=0`` switch those filters off; ``repetition_penalty=1`` is off.
    """

    max_new_tokens: int = 256
    temperature: float = 1.0
    top_k: int = 0
    top_p: float = 1.0
    min_p: float = 0.0
    repetition_penalty: float = 1.0
    stop: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        super().__post_init__()
        _check(
            _is_int(self.max_new_tokens) and self.max_new_tokens >= 0,
            "max_new_tokens",
            "an integer >= 0",
            self.max_new_tokens,
        )
        _check(
            _is_number(self.temperature)
            and math.isfinite(self.temperature)
            and self.temperature >= 0,
            "temperature",
            "a finite number >= 0",
            self.temperature,
        )
        _check(_is_int(self.top_k) and self.top_k >= 0, "top_k", "an integer >= 0", self.top_k)
        _check(_is_number(self.top_p) and 0 < self.top_p <= 1, "top_p", "in (0, 1]", self.top_p)
        _check(_is_number(self.min_p) and 0 <= self.min_p <= 1, "min_p", "in [0, 1]", self.min_p)
        _check(
            _is_number(self.repetition_penalty)
            and math.isfinite(self.repetition_penalty)
            and self.repetition_penalty > 0,
            "repetition_penalty",
            "a finite number > 0",
            self.repetition_penalty,
        )
        stop = (self.stop,) if isinstance(self.stop, str) else self.stop
        _check(
            isinstance(stop, (tuple, list)) and all(isinstance(s, str) and s for s in stop),
            "stop",
            "a string or a sequence of non-empty strings",
            self.stop,
        )
        object.__setattr__(self, "stop", tuple(stop))


@dataclass(frozen=True, kw_only=True)
class TextRequest(SamplingRequest):
    """Text generation from ``prompt`` (a string, or a list for a batch)."""

    prompt: str | tuple[str, ...] = ""

    def __post_init__(self) -> None:
        super().__post_init__()
        prompts = (self.prompt,) if isinstance(self.prompt, str) else self.prompt
        _check(
            isinstance(prompts, (tuple, list))
            and len(prompts) > 0
            and all(isinstance(p, str) for p in prompts),
            "prompt",
            "a string or a non-empty list of strings",
            self.prompt,
        )
        object.__setattr__(
            self, "prompt", self.prompt if isinstance(self.prompt, str) else tuple(prompts)
        )

    @property
    def prompts(self) -> list[str]:
        """The prompts of the batch: ``n`` copies of a single prompt."""
        if isinstance(self.prompt, str):
            return [self.prompt] * self.n
        return list(self.prompt)


@dataclass(frozen=True, kw_only=True)
class AudioRequest(SamplingRequest):
    """Audio generation: ``n`` clips of ``seconds`` each."""

    seconds: float = 1.0

    def __post_init__(self) -> None:
        super().__post_init__()
        _check(
            _is_number(self.seconds) and 0 < self.seconds <= 600,
            "seconds",
            "a number in (0, 600]",
            self.seconds,
        )


@dataclass
class GenerationResult:
    """What a generator returns: tensors plus ready-to-save media."""

    modality: str
    images: list = field(default_factory=list)  # PIL.Image.Image
    texts: list[str] = field(default_factory=list)
    audio: Any = None  # float tensor [n, samples] in [-1, 1]
    sample_rate: int | None = None
    tensors: dict[str, Any] = field(default_factory=dict)
    seed: int | None = None
    # Extra files about the whole result (e.g. a spectrogram), by name suffix:
    # {".png": data} is saved as a.png beside a.wav (see ``save``).
    attachments: dict[str, bytes] = field(default_factory=dict)

    def save(self, path: str | Path) -> list[Path]:
        """Writes the outputs and returns the files written.

        A path ending in ``/`` (or an existing directory) gets one file per
        output; a file path gets one file (several images become a grid,
        several texts one file separated by blank lines, several clips
        numbered files). Each attachment ``{suffix: data}`` is written beside
        them: ``a.wav`` gets ``a<suffix>``, a directory ``d/`` gets
        ``d/<modality><suffix>``.
        """
        from . import media

        return media.save_result(self, path)


class Generator:
    """Base class of every generator.

    Subclasses set ``name``-independent class attributes ``modality`` and
    ``Request`` and implement ``generate``. Text generators may override
    ``stream`` to yield pieces as they are produced. The SDK serialises
    calls to one instance unless ``thread_safe`` is true.
    """

    modality: ClassVar[str] = "image"
    Request: ClassVar[type[Request]] = ImageRequest
    thread_safe: ClassVar[bool] = False

    def generate(self, request: Request) -> GenerationResult:
        raise NotImplementedError(f"{type(self).__name__}.generate")

    def stream(self, request: Request) -> Iterator[str]:
        """Yields text pieces; the default yields each whole text at once."""
        yield from self.generate(request).texts

    def batch_engine(self, max_batch: int, context: int | None = None) -> BatchEngine | None:
        """An engine decoding up to ``max_batch`` of this generator's requests together,
        or None (the default): servers then run requests one at a time.

        ``context``: the most tokens one sequence may hold (the engine's default when
        None). The protocol is in ``aigc_sdk.batching``; ``aigc serve`` uses it.
        """
        return None

    def close(self) -> None:
        """Releases resources; called when the SDK is closed."""

    @classmethod
    def from_pretrained(cls, directory: str | Path, **options: Any) -> Generator:
        """The generator with the weights ``save_pretrained(directory)`` wrote.

        ``options`` (e.g. ``device="cuda"``) go to the constructor with
        ``weights=directory``: the same as ``sdk.generator(name,
        weights=directory)``. A generator whose constructor loads weights
        some other way overrides this.
        """
        return cls(weights=directory, **options)


def resolve_seed(seed: int | None) -> int:
    """A request's seed, or a fresh one drawn from the OS when it is None."""
    if seed is not None:
        return seed
    import secrets

    return secrets.randbits(63)


def check_device(requested: str, what: str = "device") -> torch.device:
    """``requested`` (cpu, cuda or cuda:N) as a device this machine has, else a user error.

    Checked before any model is built, so a wrong ``--device`` reads as one
    line naming ``what`` instead of an assertion deep inside torch.
    """
    import torch

    try:
        device = torch.device(requested)
    except (RuntimeError, TypeError):
        device = None
    if device is None or device.type not in ("cpu", "cuda"):
        raise UserError(f"{what} {requested!r}: expected cpu, cuda or cuda:N")
    if device.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise UserError(f"{what} {requested!r}: CUDA is not available on this machine; use cpu")
        if device.index is not None and device.index >= count:
            raise UserError(f"{what} {requested!r}: this machine has {count} CUDA device(s)")
    return device


class InstanceLock:
    """A lock that does nothing for thread-safe generators."""

    def __init__(self, needed: bool) -> None:
        self._lock = threading.Lock() if needed else None

    def __enter__(self) -> None:
        if self._lock is not None:
            self._lock.acquire()

    def __exit__(self, *exc: object) -> None:
        if self._lock is not None:
            self._lock.release()
