"""What a generator is, what it is asked, and what it answers.

A generator declares a request dataclass (``ImageRequest``, ``TextRequest``,
``AudioRequest`` or a subclass adding its own fields). The SDK builds that
request from keyword arguments, so an unknown or invalid argument is an error
naming it before any model code runs.

A request field describes itself in its dataclass metadata (``request_field``
writes it): ``help`` (one line), and the bounds ``minimum``,
``exclusiveMinimum``, ``maximum``, ``exclusiveMaximum`` (JSON-schema names),
which ``Request.__post_init__`` enforces for int, float and bool fields.
``request_schema`` turns all of it into the JSON-schema-like description that
``aigc generate NAME --help``, ``aigc plugins --json`` and hosts show.
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import inspect
import math
import threading
import types
import typing
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from .errors import RequestError, UserError

if TYPE_CHECKING:
    import torch

    from .batching import BatchEngine

MODALITIES = ("image", "text", "audio")
FLOAT32_TINY = 1.1754943508222875e-38  # the smallest normal float32
FLOAT32_MAX = 3.4028234663852886e38
BOUNDS = ("minimum", "exclusiveMinimum", "maximum", "exclusiveMaximum")


def request_field(
    default: Any = dataclasses.MISSING,
    help: str = "",  # noqa: A002 - mirrors argparse
    *,
    ge: float | None = None,
    gt: float | None = None,
    le: float | None = None,
    lt: float | None = None,
) -> Any:
    """A request field with a help line and bounds (``ge``: >=, ``gt``: >, ``le``, ``lt``).

    The bounds are checked when the request is made and shown in help; the
    same metadata written by hand (``field(metadata={"help": ..., "minimum":
    0})``) works the same way.
    """
    bounds = dict(zip(BOUNDS, (ge, gt, le, lt), strict=True))
    meta = {"help": help, **{k: v for k, v in bounds.items() if v is not None}}
    if isinstance(default, (list, dict, set)):
        raise TypeError("a request field's default must be immutable (use a tuple)")
    return field(default=default, metadata=meta)


def check(condition: bool, name: str, expected: str, value: Any) -> None:
    """Raises ``RequestError("NAME must be EXPECTED, got VALUE")`` unless ``condition``.

    The one-line form every request error takes; a request subclass's
    ``__post_init__`` uses it for the checks its metadata cannot express.
    """
    if not condition:
        raise RequestError(f"{name} must be {expected}, got {value!r}")


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def closest(word: str, names: list[str]) -> str | None:
    """The name in ``names`` most like ``word`` (a likely typo), or None."""
    found = difflib.get_close_matches(word, names, n=1)
    return found[0] if found else None


# -- field types ---------------------------------------------------------------


def _type_schema(hint: Any) -> dict[str, Any]:
    """The JSON-schema type of a field's annotation ({} when it has none we can name)."""
    if hint is type(None):
        return {"type": "null"}
    simple = {bool: "boolean", int: "integer", float: "number", str: "string", Path: "string"}
    if hint in simple:
        return {"type": simple[hint]}
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (tuple, list):
        items = args[0] if args and (origin is list or args[-1:] == (Ellipsis,)) else None
        return {"type": "array", **({"items": _type_schema(items)} if items else {})}
    if origin in (typing.Union, types.UnionType):
        members = [_type_schema(a) for a in args if a is not type(None)]
        nullable = type(None) in args
        if len(members) == 1 and isinstance(members[0].get("type"), str):
            kind = members[0]["type"]
            return {**members[0], "type": [kind, "null"] if nullable else kind}
        return {"anyOf": members + ([{"type": "null"}] if nullable else [])}
    return {}


@functools.cache
def _field_types(cls: type) -> dict[str, dict[str, Any]]:
    """Each field's JSON-schema type, from the class's resolved annotations."""
    try:
        hints = typing.get_type_hints(cls)
    except Exception:  # an annotation naming what only a type checker imports
        hints = {}
    return {f.name: _type_schema(hints.get(f.name, Any)) for f in dataclasses.fields(cls)}


def _scalar_kind(schema: dict[str, Any]) -> tuple[str | None, bool]:
    """(integer | number | boolean | None, None allowed) for the checks __post_init__ makes."""
    kind = schema.get("type")
    nullable = False
    if isinstance(kind, list):
        nullable = "null" in kind
        kind = next((k for k in kind if k != "null"), None)
    return (kind if kind in ("integer", "number", "boolean") else None), nullable


def range_text(meta: Mapping[str, Any]) -> str:
    """'in [0, 1]', '>= 1', 'in (0, 60]' ... for the bounds in ``meta`` (field
    metadata or a ``request_schema`` property), or ''."""
    low = (meta["minimum"], "[") if "minimum" in meta else None
    if "exclusiveMinimum" in meta:
        low = (meta["exclusiveMinimum"], "(")
    high = (meta["maximum"], "]") if "maximum" in meta else None
    if "exclusiveMaximum" in meta:
        high = (meta["exclusiveMaximum"], ")")
    if low and high:
        return f"in {low[1]}{low[0]:g}, {high[0]:g}{high[1]}"
    if low:
        return f"{'>=' if low[1] == '[' else '>'} {low[0]:g}"
    if high:
        return f"{'<=' if high[1] == ']' else '<'} {high[0]:g}"
    return ""


def _in_range(value: float, meta: Mapping[str, Any]) -> bool:
    return (
        value >= meta.get("minimum", -math.inf)
        and value > meta.get("exclusiveMinimum", -math.inf)
        and value <= meta.get("maximum", math.inf)
        and value < meta.get("exclusiveMaximum", math.inf)
    )


def _check_field(f: dataclasses.Field, schema: dict[str, Any], value: Any) -> None:
    kind, nullable = _scalar_kind(schema)
    if kind is None or (nullable and value is None):
        return
    if kind == "boolean":
        check(isinstance(value, bool), f.name, "true or false", value)
        return
    ok = _is_int(value) if kind == "integer" else _is_number(value) and math.isfinite(value)
    bounded = "maximum" in f.metadata or "exclusiveMaximum" in f.metadata
    expected = "an integer" if kind == "integer" else "a number" if bounded else "a finite number"
    bounds = range_text(f.metadata)
    expected += f" {bounds}" if bounds else ""
    if nullable:
        expected += " or None"
    check(ok and _in_range(value, f.metadata), f.name, expected, value)


# -- requests ------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class Request:
    """Fields every request has. ``seed=None`` draws a fresh seed.

    ``limits`` caps what one request may ask for, before any work starts:
    a number field's largest value, a text field's length in characters.
    A subclass changes them with ``limits = {**Base.limits, "n": 16}``; a
    host changes them with ``SDK(limits=...)``; ``None`` lifts one.
    """

    limits: ClassVar[Mapping[str, float | None]] = {"n": 64}

    seed: int | None = request_field(
        None, "random seed: the same seed gives the same output (default: a fresh one)", ge=0
    )
    n: int = request_field(1, "number of outputs", ge=1)

    def __post_init__(self) -> None:
        types_ = _field_types(type(self))
        for f in dataclasses.fields(self):
            _check_field(f, types_[f.name], getattr(self, f.name))

    @classmethod
    def field_names(cls) -> list[str]:
        return [f.name for f in dataclasses.fields(cls)]

    @classmethod
    def from_kwargs(cls, **kwargs: Any) -> Request:
        """Builds a request, naming unknown arguments and the accepted ones.

        The class's ``limits`` apply; ``from_dict`` takes a host's instead.
        """
        return cls.from_dict(kwargs)

    @classmethod
    def from_dict(
        cls,
        values: Mapping[str, Any],
        *,
        limits: Mapping[str, float | None] | None = None,
        generator: str | None = None,
    ) -> Request:
        """A checked request from ``values``: unknown names, invalid values and
        values over the limits are a ``RequestError``.

        ``limits`` override the class's (``None`` lifts one); ``generator``
        names the generator in messages instead of the class.
        """
        known = cls.field_names()
        unknown = sorted(set(values) - set(known))
        if unknown:
            what = f"generator {generator}" if generator else cls.__name__
            hint = closest(unknown[0], known)
            raise RequestError(
                f"unknown argument{'s' if len(unknown) > 1 else ''} {', '.join(unknown)} "
                f"for {what}{f' (did you mean {hint}?)' if hint else ''}; "
                f"accepted: {', '.join(sorted(known))}"
            )
        request = cls(**values)
        request.check_limits(limits, generator)
        return request

    @classmethod
    def effective_limits(
        cls, overrides: Mapping[str, float | None] | None = None
    ) -> dict[str, float | None]:
        """The class's limits with ``overrides`` applied, for the fields this class has."""
        names = set(cls.field_names())
        merged = {**cls.limits, **(overrides or {})}
        return {k: v for k, v in merged.items() if k in names}

    def check_limits(
        self, overrides: Mapping[str, float | None] | None = None, generator: str | None = None
    ) -> None:
        """Raises ``RequestError`` naming the first field over its limit."""
        where = f" for {generator}" if generator else ""
        for name, maximum in self.effective_limits(overrides).items():
            if maximum is None:
                continue
            for value in self.limited_values(name):
                if isinstance(value, str):
                    if len(value) > maximum:
                        raise RequestError(
                            f"{name} must be at most {maximum:g} characters{where}, "
                            f"got {len(value)}"
                        )
                elif _is_number(value) and value > maximum:
                    raise RequestError(f"{name} must be <= {maximum:g}{where}, got {value!r}")

    def limited_values(self, name: str) -> list[Any]:
        """The values a limit on field ``name`` applies to: numbers (capped) and
        strings (their length capped); each string of a tuple by default.

        A subclass overrides it for a field that is neither, e.g. to count a
        conversation's characters: ``["".join(m["content"] for m in self.messages)]``.
        """
        value = getattr(self, name)
        return list(value) if isinstance(value, tuple) else [value]


def request_schema(
    cls: type[Request], limits: Mapping[str, float | None] | None = None
) -> dict[str, Any]:
    """A JSON-schema-like description of request class ``cls``.

    ``{"title", "description", "type": "object", "additionalProperties":
    false, "properties": {field: {"type", "default", "description",
    "minimum", "maximum", "maxLength", ...}}}``: the field types, defaults,
    help lines and bounds, with the limits (``cls.limits`` with ``limits``
    applied) as ``maximum`` (numbers), ``maxLength`` (text) or
    ``x-maxCharacters`` (the characters of another field's text, e.g. a
    conversation). Every value is JSON-serializable.
    """
    effective = cls.effective_limits(limits)
    types_ = _field_types(cls)
    properties: dict[str, Any] = {}
    for f in dataclasses.fields(cls):
        prop = dict(types_[f.name])
        if f.default is not dataclasses.MISSING:
            prop["default"] = _jsonable(f.default)
        description = f.metadata.get("help") or _docstring_help(cls, f.name)
        if description:
            prop["description"] = description
        prop.update({k: f.metadata[k] for k in BOUNDS if k in f.metadata})
        maximum = effective.get(f.name)
        if maximum is not None:
            kinds = json_types(prop)
            if "integer" in kinds or "number" in kinds:
                key = "maximum"
            elif "string" in kinds:
                key = "maxLength"
            else:  # limited_values turned the field into text: its characters are capped
                key = "x-maxCharacters"
            prop[key] = min(maximum, prop.get(key, math.inf))
        properties[f.name] = prop
    doc = inspect.getdoc(cls) or ""
    return {
        "title": cls.__name__,
        "description": doc,
        "type": "object",
        "additionalProperties": False,
        "properties": properties,
    }


def json_types(prop: Mapping[str, Any]) -> list[str]:
    """Every JSON type a schema property allows (its ``type`` and its ``anyOf`` members')."""
    found: list[str] = []
    for part in [prop, *prop.get("anyOf", [])]:
        kind = part.get("type")
        found += kind if isinstance(kind, list) else [kind] if kind else []
    return found


def _jsonable(value: Any) -> Any:
    if isinstance(value, tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return repr(value)


def _docstring_help(cls: type, name: str) -> str:
    """A field's line in an ``Attributes:`` section of the class docstring, or ''.

    ``name: text`` or ``name (type): text``, indented under ``Attributes:``
    as in Google-style docstrings; the first request class in the MRO that
    documents the field wins.
    """
    for klass in cls.__mro__:
        doc = inspect.getdoc(klass) if "__doc__" in vars(klass) else None
        lines = iter((doc or "").splitlines())
        for line in lines:
            if line.strip() in ("Attributes:", "Args:", "Fields:"):
                break
        for line in lines:
            if line and not line.startswith(" "):
                break
            head, sep, text = line.strip().partition(":")
            if sep and head.split(" (")[0] == name:
                return text.strip()
    return ""


@dataclass(frozen=True, kw_only=True)
class ImageRequest(Request):
    """Image generation: ``n`` images from ``seed``."""

    limits: ClassVar[Mapping[str, float | None]] = {**Request.limits, "n": 1024}


@dataclass(frozen=True, kw_only=True)
class SamplingRequest(Request):
    """The sampling controls text and audio generators share.

    ``temperature=0`` is greedy decoding; ``top_k=0``, ``top_p=1`` and
    ``min_p=0`` switch those filters off; ``repetition_penalty=1`` is off.
    """

    limits: ClassVar[Mapping[str, float | None]] = {**Request.limits, "max_new_tokens": 4096}

    max_new_tokens: int = request_field(256, "most tokens to generate", ge=0)
    temperature: float = request_field(1.0, "sampling temperature (0: greedy)", ge=0)
    top_k: int = request_field(0, "draw from the k likeliest tokens only (0: off)", ge=0)
    top_p: float = request_field(
        1.0, "draw from the fewest likeliest tokens holding this probability (1: off)", gt=0, le=1
    )
    min_p: float = request_field(
        0.0, "drop tokens under this fraction of the likeliest one's probability (0: off)",
        ge=0, le=1,
    )  # fmt: skip
    repetition_penalty: float = request_field(
        1.0, "make tokens already in the sequence less likely (1: off, > 1: fewer repeats)", gt=0
    )
    stop: tuple[str, ...] = request_field(
        (), "stop strings ('a|b' on the command line): the text ends after the first one"
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        # The samplers compute in float32: a value that becomes 0 or infinity there would
        # reach them as something other than what was asked (and fail inside the kernel).
        for name in ("temperature", "top_p", "min_p", "repetition_penalty"):
            value = getattr(self, name)
            check(
                value == 0 or FLOAT32_TINY <= value <= FLOAT32_MAX,
                name,
                f"0 or in [{FLOAT32_TINY:.3g}, {FLOAT32_MAX:.3g}] (the samplers use float32)",
                value,
            )
        stop = (self.stop,) if isinstance(self.stop, str) else self.stop
        check(
            isinstance(stop, (tuple, list)) and all(isinstance(s, str) and s for s in stop),
            "stop",
            "a string or a sequence of non-empty strings",
            self.stop,
        )
        object.__setattr__(self, "stop", tuple(stop))


@dataclass(frozen=True, kw_only=True)
class TextRequest(SamplingRequest):
    """Text generation from ``prompt`` (a string, or a list for a batch)."""

    # 32k characters is about the 8k-token context of the built-in chat model.
    limits: ClassVar[Mapping[str, float | None]] = {**SamplingRequest.limits, "prompt": 32_768}

    prompt: str | tuple[str, ...] = request_field(
        "", "text to continue (--prompt twice on the command line makes a batch)"
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        prompts = (self.prompt,) if isinstance(self.prompt, str) else self.prompt
        check(
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

    def check_limits(
        self, overrides: Mapping[str, float | None] | None = None, generator: str | None = None
    ) -> None:
        super().check_limits(overrides, generator)
        most = self.effective_limits(overrides).get("n")
        if most is not None and len(self.prompts) > most:
            where = f" for {generator}" if generator else ""
            raise RequestError(
                f"prompt: a batch must have at most {most:g} prompts{where} (the limit of n), "
                f"got {len(self.prompts)}"
            )


@dataclass(frozen=True, kw_only=True)
class AudioRequest(SamplingRequest):
    """Audio generation: ``n`` clips of ``seconds`` each."""

    limits: ClassVar[Mapping[str, float | None]] = {**SamplingRequest.limits, "seconds": 60}

    seconds: float = request_field(1.0, "length of each clip in seconds", gt=0)


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
        output, the directory made if missing; a file path gets one file
        (several images become a grid, several texts one file separated by
        blank lines, several clips numbered files) in the format its suffix
        names (``media.OUTPUT_FORMATS``), in a folder that must exist: any
        other suffix, or a missing folder, is an ``OutputPathError`` before
        anything is written. Each attachment ``{suffix: data}`` is written beside
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


class TextStream:
    """One sequence's output text as it is generated, ended by the first stop string.

    A text generator feeds it what it decodes, a piece of text at a time (``add``)
    or, given a ``decoder``, a token id at a time (``push``); each call returns the
    part of its input that belongs to the output, so the pieces a generator
    streams join to exactly its final text. ``finish()`` ends the text (at the
    end-of-text token, or when the token budget is spent) and returns the rest.

    The text ends at the first stop string to end (the earliest end; the longest
    of several ending there), even one spread over several pieces; ``done`` is
    then true and ``stop`` names it, and later input is ignored.

    ``keep_stop=True`` (the SDK's generators): the stop string stays at the end
    of the text, and every piece is returned as soon as it comes. ``keep_stop=False``
    (OpenAI's API): the stop string is left out, so a tail that could be the
    start of a stop string is held back until a later piece (or ``finish``)
    shows whether it is one.

    ``decoder``: any object with ``push(token) -> str`` (the text that token
    completes, holding back an unfinished character) and ``flush() -> str``
    (the rest); a tokenizer's incremental detokenizer. Token healing, leaving
    out bytes of the first token that the prompt already has, belongs to the
    decoder: it knows the tokens' bytes.
    """

    def __init__(
        self, stops: Iterable[str] = (), *, decoder: Any = None, keep_stop: bool = True
    ) -> None:
        self.stops = tuple(s for s in stops if s)
        self.decoder = decoder
        self.keep_stop = keep_stop
        self.text = ""  # the output so far: everything returned
        self.done = False
        self.stop: str | None = None
        self._seen = ""  # every character added (up to the stop that ended it)
        self._longest = max(map(len, self.stops), default=0)

    def add(self, piece: str) -> str:
        """Appends ``piece``; returns what of the output it makes certain."""
        if self.done or not piece:
            return ""
        start = len(self._seen)
        self._seen += piece
        # Only a stop ending inside the new piece can be new: search from just before it.
        window = max(0, start - self._longest + 1)
        found = [
            (at + len(s), -len(s)) for s in self.stops if (at := self._seen.find(s, window)) >= 0
        ]
        if found:
            end, minus_length = min(found)
            self._seen, self.stop, self.done = (
                self._seen[:end],
                self._seen[end + minus_length : end],
                True,
            )
            return self._emit(end if self.keep_stop else end + minus_length)
        return self._emit(len(self._seen) - (0 if self.keep_stop else self._held()))

    def push(self, token: int) -> str:
        """Decodes ``token`` with the decoder and appends its text."""
        return self.add(self.decoder.push(token))

    def finish(self) -> str:
        """Ends the text: the decoder's last characters and anything held back."""
        if self.done:
            return ""
        piece = self.add(self.decoder.flush()) if self.decoder is not None else ""
        if not self.done:
            piece += self._emit(len(self._seen))
        self.done = True
        return piece

    def _emit(self, upto: int) -> str:
        piece = self._seen[len(self.text) : max(upto, len(self.text))]
        self.text += piece
        return piece

    def _held(self) -> int:
        """The length of the longest end of the text that begins a stop string."""
        unsent = len(self._seen) - len(self.text)
        for size in range(min(unsent, self._longest - 1), 0, -1):
            tail = self._seen[-size:]
            if any(s.startswith(tail) for s in self.stops):
                return size
        return 0


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
