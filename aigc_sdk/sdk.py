"""The SDK object: what a host application embeds.

    sdk = SDK()                                   # discovers installed plugins
    sdk.generate("gan", seed=3, n=16).save("grid.png")
    for piece in sdk.stream("transformer", prompt="def "):
        print(piece, end="")

Each SDK has its own plugin manager, registries and generator instances: two
SDK objects in one process share nothing. Creating one imports plugin modules
(their hooks) but no model code; a generator's model loads on first use.
"""

from __future__ import annotations

import difflib
import threading
import time
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from . import plugins as _plugins
from .errors import PluginError, RequestError
from .generation import GenerationResult, Generator, InstanceLock, Request, request_schema
from .plugins import PluginHost, PluginInfo
from .registry import Registry

_END = object()  # marks the end of a stream's inner iterator


class SDK:
    """Plugins, generators and trainers for one host.

    Args:
        plugins: extra plugins to register: objects or modules with hook
            implementations, or names (an installed entry point's name, or an
            importable module path). With autoload off these are the only ones.
        disable: plugins never to load, by entry-point name, module or
            distribution name; ``AIGC_DISABLE_PLUGINS=a,b`` adds to it unless
            ``env=False``. A disabled plugin is never imported; a name matching
            no installed plugin is a ``PluginWarning`` naming the closest one.
        autoload: discover installed plugins through the ``aigc_sdk.plugins``
            entry points; ``AIGC_DISABLE_PLUGIN_AUTOLOAD=1`` turns it off, and
            then ``AIGC_PLUGINS=a,b`` names the plugins to load.
        trace: log every hook call (logger ``aigc_sdk.trace``);
            ``AIGC_TRACE_PLUGINS=1`` turns it on.
        env: read the ``AIGC_*`` plugin variables above. ``env=False`` makes
            the arguments the whole configuration: what a host that must not
            depend on its user's shell, or a test, wants.
        limits: maximums a request may ask for, over the request classes'
            own (``Request.limits``): ``{"n": 16}`` for every generator with
            that field, ``{"gan": {"n": 4096}}`` for one generator (it wins
            over the first form); ``None`` lifts a limit. Numbers cap a
            field's value, text fields their length in characters. Checked
            before a generator is created or run.
    """

    def __init__(
        self,
        plugins: Iterable[Any] = (),
        *,
        disable: Iterable[str] = (),
        autoload: bool | None = None,
        trace: bool | None = None,
        env: bool = True,
        limits: Mapping[str, Any] | None = None,
    ) -> None:
        self.limits = _checked_limits(limits or {})
        self._lock = threading.RLock()
        self._host = PluginHost(
            trace=(env and _plugins.env_flag("AIGC_TRACE_PLUGINS")) if trace is None else trace,
            on_failed=self._forget,
        )
        self.generators = Registry("generator", self._clash)
        self.trainers = Registry("trainer", self._clash)
        self._instances: dict[tuple, tuple[Generator, InstanceLock]] = {}
        self._clash_owners: dict[str, list[str]] = {}  # a clash's message -> the plugins told
        from_env = _plugins.env_list("AIGC_DISABLE_PLUGINS") if env else []
        self.disabled = set(disable) | set(from_env)
        if autoload is None:
            autoload = not (env and _plugins.env_flag("AIGC_DISABLE_PLUGIN_AUTOLOAD"))
        self.autoload = autoload
        explicit = list(plugins)
        if not autoload:
            explicit += _plugins.env_list("AIGC_PLUGINS") if env else []
            for registry in (self.generators, self.trainers):
                registry.empty_note = (
                    f"No {registry.kind}s are loaded: plugin autoload is off; name the plugins "
                    f"to load with AIGC_PLUGINS=a,b or SDK(plugins=[...])"
                )
        entry_points = {ep.name: ep for ep in _plugins.entry_points()}
        self._warn_unmatched_disable(entry_points, set(disable), from_env, explicit)
        self._load(autoload, explicit, entry_points)

    # -- plugins -----------------------------------------------------------

    def _load(self, autoload: bool, explicit: list[Any], entry_points: dict) -> None:
        for ep in entry_points.values():
            if self._is_disabled(ep):
                self._host.mark_disabled(ep)
            elif autoload:
                self._announce(self._host.load_entry_point(ep))
        for plugin in explicit:
            if isinstance(plugin, str):
                self._load_named(plugin, entry_points)
            else:
                self.register(plugin)

    @staticmethod
    def _names_of(ep) -> set[str]:
        """What a person may call an installed plugin: its name, module or distribution."""
        names = {ep.name, ep.module}
        if ep.dist is not None:
            names.add(ep.dist.name)
        return names

    def _is_disabled(self, ep) -> bool:
        return not self._names_of(ep).isdisjoint(self.disabled)

    def _warn_unmatched_disable(
        self, entry_points: dict, given: set[str], from_env: list[str], explicit: list[Any]
    ) -> None:
        known = {name for ep in entry_points.values() for name in self._names_of(ep)}
        known |= {p for p in explicit if isinstance(p, str)}
        for source, names in (("", given), (" (from AIGC_DISABLE_PLUGINS)", from_env)):
            for name in sorted(set(names) - known):
                close = difflib.get_close_matches(name, sorted(known), n=1)
                hint = (
                    f"did you mean {close[0]!r}?"
                    if close
                    else f"installed: {', '.join(sorted(entry_points)) or 'none'}"
                )
                self._host.warn(
                    f"cannot disable {name!r}{source}: no installed plugin has that name, "
                    f"module or distribution; {hint}"
                )

    def _load_named(self, name: str, entry_points: dict) -> None:
        if name in self.disabled or name in self._host.infos:  # loaded, disabled or failed
            return
        # A module name an entry point loads means that plugin, under its own name.
        ep = entry_points.get(name) or next(
            (e for e in entry_points.values() if e.module == name and not e.attr), None
        )
        if ep is not None:
            if not self._is_disabled(ep) and ep.name not in self._host.infos:
                self._announce(self._host.load_entry_point(ep))
            return
        info = self._host.load_module(name)
        if info is not None:
            self._announce(info)

    def register(self, plugin: Any, name: str | None = None) -> PluginInfo:
        """Registers a plugin object or module at run time and asks what it provides."""
        with self._lock:
            info = self._host.register_object(plugin, name)
            self._announce(info)
            return info

    def _announce(self, info: PluginInfo) -> None:
        """Calls one plugin's registration hooks, recording what it provides."""
        if info.status != "loaded":
            return

        def on_error(message: str) -> None:
            self._host.problem(info, message)

        def while_loaded(register: Any) -> Any:
            # A plugin that failed (even later, keeping the callback) registers nothing.
            def call(*args: Any, **kwargs: Any) -> None:
                if info.status == "loaded":
                    register(*args, **kwargs)

            return call

        self._host.call_each(
            "aigc_register_generators",
            info.name,
            register=while_loaded(self.generators.register_callback(info.name, on_error)),
        )
        self._host.call_each(
            "aigc_register_trainers",
            info.name,
            register=while_loaded(self.trainers.register_callback(info.name, on_error)),
        )

    def _clash(self, owners: list[str], message: str) -> None:
        self._clash_owners[message] = list(owners)
        for owner in owners:
            if owner in self._host.infos:
                self._host.problem(self._host.infos[owner], message)

    def _forget(self, plugin_name: str) -> None:
        """Drops everything a failed plugin provided: names, cached generators, clashes."""
        with self._lock:
            names = set(self.generators.by_plugin(plugin_name))
            self.generators.remove_plugin(plugin_name)
            self.trainers.remove_plugin(plugin_name)
            for key in [k for k in self._instances if k[0] in names]:
                del self._instances[key]
            for message, owners in list(self._clash_owners.items()):
                if plugin_name not in owners:
                    continue
                del self._clash_owners[message]
                for owner in owners:
                    info = self._host.infos.get(owner)
                    if owner != plugin_name and info is not None and message in info.errors:
                        info.errors.remove(message)

    def plugins(self) -> list[PluginInfo]:
        """Every plugin seen: loaded, disabled or failed, with what it provides."""
        with self._lock:
            infos = sorted(self._host.infos.values(), key=lambda i: i.name)
            for info in infos:
                info.generators = self.generators.by_plugin(info.name)
                info.trainers = self.trainers.by_plugin(info.name)
                info.generator_details = self.generators.details(info.name)
                info.trainer_details = self.trainers.details(info.name)
            return infos

    def notify(self, hook_name: str, **kwargs: Any) -> None:
        """Calls a lifecycle hook on every plugin; a raising plugin is reported, not fatal."""
        self._host.call_each(hook_name, **kwargs)

    @property
    def plugin_manager(self):
        """The underlying ``pluggy.PluginManager`` (for advanced hosts)."""
        return self._host.pm

    # -- generators --------------------------------------------------------

    def generator(self, name: str, **options: Any) -> Generator:
        """The generator ``name``, created on first use with ``options``.

        Options go to the generator's factory (for built-ins: ``weights=DIR``
        to load other weights, ``device="cuda"``); each distinct set of
        options gives its own cached instance.
        """
        return self._instance(name, options)[0]

    def _instance(self, name: str, options: dict[str, Any]) -> tuple[Generator, InstanceLock]:
        key = (name, tuple(sorted((k, repr(v)) for k, v in options.items())))
        with self._lock:
            if key in self._instances:
                return self._instances[key]
            entry = self.generators.get(name)
        factory = entry.resolve()
        declared = entry.request_type()
        # Creation happens outside the SDK lock (it may load weights) but under the
        # entry's, so two threads asking for one generator create it once.
        with entry._lock:
            with self._lock:
                if key in self._instances:
                    return self._instances[key]
            try:
                generator = factory(**options)
            except TypeError as exc:
                raise PluginError(f"generator {name!r} of plugin {entry.plugin!r}: {exc}") from exc
            if not isinstance(generator, Generator):
                raise PluginError(
                    f"generator {name!r} of plugin {entry.plugin!r} returned "
                    f"{type(generator).__name__}, not an aigc_sdk.Generator"
                )
            if declared is not None and generator.Request is not declared:
                raise PluginError(
                    f"generator {name!r} of plugin {entry.plugin!r}: its Request is "
                    f"{generator.Request.__name__}, but {declared.__name__} was registered"
                )
            generator.name = name
            pair = (generator, InstanceLock(needed=not generator.thread_safe))
            with self._lock:
                self._instances[key] = pair
            return pair

    def request_type(self, name: str) -> type[Request]:
        """Generator ``name``'s request class, found without loading its weights
        when the plugin registered it (or the factory class names it)."""
        found = self.generators.get(name).request_type()
        return found if found is not None else self.generator(name).Request

    def limits_for(self, name: str) -> dict[str, float | None]:
        """The limits this SDK applies to generator ``name``'s requests."""
        shared = {k: v for k, v in self.limits.items() if not isinstance(v, Mapping)}
        own = self.limits.get(name)
        return self.request_type(name).effective_limits(
            {**shared, **(own if isinstance(own, Mapping) else {})}
        )

    def request_schema(self, name: str) -> dict[str, Any]:
        """``aigc_sdk.generation.request_schema`` of generator ``name``, with this SDK's limits."""
        return request_schema(self.request_type(name), self.limits_for(name))

    def request(self, name: str, **kwargs: Any) -> Request:
        """Validates keyword arguments into the generator's request type.

        Unknown or invalid fields and values over the limits are a
        ``RequestError``; no weights load unless the plugin gives no way to
        find the request class without creating the generator.
        """
        return self.request_type(name).from_dict(
            kwargs, limits=self.limits_for(name), generator=name
        )

    def _checked_request(
        self, name: str, options: dict[str, Any], kwargs: dict[str, Any]
    ) -> tuple[Request, Generator, InstanceLock]:
        # The request is checked before the generator exists: a bad one costs no weights.
        request = self.request(name, **kwargs) if self.generators.get(name).request_type() else None
        generator, lock = self._instance(name, options)
        if request is None:
            request = generator.Request.from_dict(
                kwargs, limits=self.limits_for(name), generator=name
            )
        return request, generator, lock

    def generate(
        self, name: str, *, options: dict[str, Any] | None = None, **kwargs: Any
    ) -> GenerationResult:
        """Runs generator ``name``; keyword arguments are its request fields."""
        request, generator, lock = self._checked_request(name, options or {}, kwargs)
        self.notify("aigc_before_generate", generator=generator, request=request)
        start = time.perf_counter()
        with lock:
            result = generator.generate(request)
        self._check_result(generator, result)
        self.notify(
            "aigc_after_generate",
            generator=generator,
            request=request,
            result=result,
            seconds=time.perf_counter() - start,
        )
        return result

    def stream(
        self, name: str, *, options: dict[str, Any] | None = None, **kwargs: Any
    ) -> Iterator[str]:
        """Yields the text pieces of a text generator as they are produced."""
        modality = self.generators.get(name).modality
        if modality != "text":
            raise PluginError(f"generator {name!r} makes {modality}, not text: it cannot stream")
        request, generator, lock = self._checked_request(name, options or {}, kwargs)
        return self._stream(generator, lock, request)

    def _stream(self, generator: Generator, lock: InstanceLock, request: Request) -> Iterator[str]:
        self.notify("aigc_before_generate", generator=generator, request=request)
        start = time.perf_counter()
        pieces: list[str] = []
        # The lock guards each step of the generator, never a yield: holding it
        # while the caller has the piece would deadlock a generate() made between
        # pieces and block every other thread until the stream ends.
        with lock:
            inner = generator.stream(request)
        try:
            inner = iter(inner)
        except TypeError:
            raise PluginError(
                f"{self._owner(generator.name)}: stream() returned {type(inner).__name__}; "
                f"expected an iterator of str pieces"
            ) from None
        try:
            while True:
                with lock:
                    piece = next(inner, _END)
                if piece is _END:
                    break
                if not isinstance(piece, str):
                    raise PluginError(
                        f"{self._owner(generator.name)}: stream() yielded "
                        f"{type(piece).__name__}; expected str pieces"
                    )
                pieces.append(piece)
                yield piece
        finally:
            # A stream abandoned early runs the generator's cleanup under the lock too.
            close = getattr(inner, "close", None)
            if close is not None:
                with lock:
                    close()
        result = GenerationResult("text", texts=["".join(pieces)], seed=request.seed)
        self.notify(
            "aigc_after_generate",
            generator=generator,
            request=request,
            result=result,
            seconds=time.perf_counter() - start,
        )

    def _owner(self, name: str) -> str:
        entry = self.generators.entries.get(name)
        return f"generator {name!r}" + (f" of plugin {entry.plugin!r}" if entry else "")

    def _check_result(self, generator: Generator, result: Any) -> None:
        """A plugin's answer as the contract says, else one line naming the generator
        (rather than an AttributeError wherever the caller first touches it)."""
        if isinstance(result, GenerationResult) and result.modality == generator.modality:
            return
        got = (
            f"a {result.modality} result"
            if isinstance(result, GenerationResult)
            else "None"
            if result is None
            else f"a {type(result).__name__}"
        )
        raise PluginError(
            f"{self._owner(generator.name)}: generate() returned {got}; expected a "
            f"GenerationResult of modality {generator.modality!r}"
        )

    # -- trainers ----------------------------------------------------------

    def trainer(self, name: str, **options: Any) -> Any:
        """A new trainer ``name`` made with ``options`` (trainers are not cached)."""
        entry = self.trainers.get(name)
        return entry.resolve()(**options)

    def close(self) -> None:
        """Closes every generator this SDK created."""
        with self._lock:
            instances, self._instances = list(self._instances.values()), {}
        for generator, _ in instances:
            generator.close()

    def __enter__(self) -> SDK:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _checked_limits(limits: Mapping[str, Any]) -> dict[str, Any]:
    """``SDK(limits=...)`` as given, or a ``RequestError`` naming the bad entry."""

    def is_limit(value: Any) -> bool:
        return value is None or (
            isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0
        )

    for key, value in limits.items():
        own = value.items() if isinstance(value, Mapping) else [(None, value)]
        for field_name, limit in own:
            if not is_limit(limit):
                where = f"limits[{key!r}]" + (f"[{field_name!r}]" if field_name else "")
                raise RequestError(
                    f"{where} must be a number > 0 or None (no limit), got {limit!r}"
                )
    return {k: dict(v) if isinstance(v, Mapping) else v for k, v in limits.items()}
