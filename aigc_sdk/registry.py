"""Names of generators and trainers, the plugins providing them, lazy factories."""

from __future__ import annotations

import difflib
import importlib
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .errors import PluginError, UnknownNameError
from .generation import MODALITIES, Request


@dataclass
class Entry:
    """One registered generator or trainer.

    ``factory`` is a class, a callable, or a lazy ``"module:attr"`` string
    resolved on first use, so registering imports no model code. ``request``
    (a ``Request`` subclass or a lazy string naming one) lets the SDK check a
    request and describe the generator's options without importing the
    factory's module, which usually imports torch.
    """

    kind: str  # generator | trainer
    name: str
    plugin: str
    factory: Any
    modality: str | None = None
    description: str = ""
    request: Any = None
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def resolve(self) -> Callable[..., Any]:
        with self._lock:
            if isinstance(self.factory, str):
                self.factory = _import_attr(self.factory, self)
            return self.factory

    def request_type(self) -> type[Request] | None:
        """The request class: the one registered, else the factory's ``Request``.

        None when neither names one (a factory function): only an instance can tell.
        """
        with self._lock:
            if isinstance(self.request, str):
                self.request = _import_attr(self.request, self)
        if self.request is not None:
            if not (isinstance(self.request, type) and issubclass(self.request, Request)):
                raise PluginError(
                    f"{self.kind} {self.name!r} of plugin {self.plugin!r}: request= names "
                    f"{self.request!r}, not a subclass of aigc_sdk.Request"
                )
            return self.request
        found = getattr(self.resolve(), "Request", None)
        return found if isinstance(found, type) and issubclass(found, Request) else None

    def describe(self) -> dict[str, Any]:
        out = {"name": self.name, "plugin": self.plugin, "description": self.description}
        if self.modality is not None:
            out["modality"] = self.modality
        return out


def _import_attr(path: str, entry: Entry) -> Any:
    module_name, _, attr = path.partition(":")
    try:
        value = importlib.import_module(module_name)
        for part in attr.split(".") if attr else []:
            value = getattr(value, part)
    except Exception as exc:
        raise PluginError(
            f"{entry.kind} {entry.name!r} of plugin {entry.plugin!r}: cannot load {path!r}: "
            f"{type(exc).__name__}: {exc}"
        ) from exc
    return value


class Registry:
    """Generators or trainers by name; a name two plugins claim is unusable."""

    def __init__(self, kind: str, on_clash: Callable[[list[str], str], None]) -> None:
        self.kind = kind
        self.entries: dict[str, Entry] = {}
        self.clashes: dict[str, list[str]] = {}
        self._claims: dict[str, list[Entry]] = {}  # every entry of a name, clashing or not
        self.on_clash = on_clash  # (owners, message): told to every plugin involved
        self.empty_note = f"No {kind}s are installed"  # ends an unknown-name error when empty

    def register_callback(self, plugin: str, on_error: Callable[[str], None]):
        """The ``register`` function handed to one plugin's registration hook."""

        def register(
            name: str,
            factory: Any,
            *,
            modality: str | None = None,
            description: str = "",
            request: Any = None,
        ) -> None:
            problem = self._validate(name, factory, modality, request)
            if problem:
                on_error(f"register({name!r}): {problem}")
                return
            self.add(Entry(self.kind, name, plugin, factory, modality, description, request))

        return register

    def _validate(
        self, name: Any, factory: Any, modality: str | None, request: Any = None
    ) -> str | None:
        if not isinstance(name, str) or not name or not name.replace("-", "_").isidentifier():
            return "name must be a non-empty identifier-like string"
        if not (callable(factory) or (isinstance(factory, str) and ":" in factory)):
            return "factory must be a class, a callable or a 'module:attr' string"
        if self.kind == "generator" and modality not in MODALITIES:
            return f"modality must be one of {', '.join(MODALITIES)}, got {modality!r}"
        if request is not None and not (
            (isinstance(request, str) and ":" in request)
            or (isinstance(request, type) and issubclass(request, Request))
        ):
            return "request must be a Request subclass or a 'module:attr' string"
        return None

    def add(self, entry: Entry) -> None:
        self._claims.setdefault(entry.name, []).append(entry)
        if entry.name in self.clashes:
            self.clashes[entry.name].append(entry.plugin)
        elif entry.name in self.entries:
            first = self.entries.pop(entry.name)
            self.clashes[entry.name] = [first.plugin, entry.plugin]
        else:
            self.entries[entry.name] = entry
            return
        owners = self.clashes[entry.name]
        both = " and ".join(repr(p) for p in owners)
        self.on_clash(owners, f"{self.kind} name {entry.name!r} is provided by both {both}")

    def get(self, name: str) -> Entry:
        if name in self.clashes:
            owners = " and ".join(repr(p) for p in self.clashes[name])
            raise PluginError(
                f"{self.kind} {name!r} is provided by both {owners}; disable one of them "
                f"(AIGC_DISABLE_PLUGINS=name or SDK(disable=[...]))"
            )
        try:
            return self.entries[name]
        except KeyError:
            raise UnknownNameError(self._unknown_message(name)) from None

    def _unknown_message(self, name: str) -> str:
        known = sorted(self.entries)
        message = f"unknown {self.kind} {name!r}"
        close = difflib.get_close_matches(name, known, n=1)
        message += f"; did you mean {close[0]!r}?" if close else "."
        return message + (f" Known: {', '.join(known)}" if known else f" {self.empty_note}")

    def names(self) -> list[str]:
        return sorted(self.entries)

    def by_plugin(self, plugin: str) -> list[str]:
        return sorted(
            [n for n, e in self.entries.items() if e.plugin == plugin]
            + [n for n, owners in self.clashes.items() if plugin in owners]
        )

    def details(self, plugin: str) -> list[dict[str, Any]]:
        """``Entry.describe()`` of everything ``plugin`` registered, by name."""
        mine = [e for claims in self._claims.values() for e in claims if e.plugin == plugin]
        return [e.describe() for e in sorted(mine, key=lambda e: e.name)]

    def remove_plugin(self, plugin: str) -> None:
        """Forgets everything ``plugin`` registered; a name it clashed on is usable again
        when a single plugin is left claiming it."""
        for name, claims in list(self._claims.items()):
            kept = [e for e in claims if e.plugin != plugin]
            if len(kept) == len(claims):
                continue
            self.entries.pop(name, None)
            self.clashes.pop(name, None)
            if not kept:
                del self._claims[name]
                continue
            self._claims[name] = kept
            if len(kept) == 1:
                self.entries[name] = kept[0]
            else:
                self.clashes[name] = [e.plugin for e in kept]
