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

import threading
import time
from collections.abc import Iterable, Iterator
from typing import Any

from . import plugins as _plugins
from .errors import PluginError
from .generation import GenerationResult, Generator, InstanceLock, Request
from .plugins import PluginHost, PluginInfo
from .registry import Registry

_END = object()  # marks the end of a stream's inner iterator


class SDK:
    """Plugins, generators and trainers for one host.

    Args:
        plugins: extra plugins to register: objects or modules with hook
            implementations, or names (an installed entry point's name, or an
            importable module path). With autoload off these are the only ones.
        disable: entry-point names (or distribution names) never to load;
            ``AIGC_DISABLE_PLUGINS=a,b`` adds to it. A disabled plugin is
            never imported.
        autoload: discover installed plugins through the ``aigc_sdk.plugins``
            entry points; ``AIGC_DISABLE_PLUGIN_AUTOLOAD=1`` turns it off, and
            then ``AIGC_PLUGINS=a,b`` names the plugins to load.
        trace: log every hook call (logger ``aigc_sdk.trace``);
            ``AIGC_TRACE_PLUGINS=1`` turns it on.
    """

    def __init__(
        self,
        plugins: Iterable[Any] = (),
        *,
        disable: Iterable[str] = (),
        autoload: bool | None = None,
        trace: bool | None = None,
    ) -> None:
        self._lock = threading.RLock()
        self._host = PluginHost(
            trace=_plugins.env_flag("AIGC_TRACE_PLUGINS") if trace is None else trace
        )
        self.generators = Registry("generator", self._clash)
        self.trainers = Registry("trainer", self._clash)
        self._instances: dict[tuple, tuple[Generator, InstanceLock]] = {}
        self.disabled = set(disable) | set(_plugins.env_list("AIGC_DISABLE_PLUGINS"))
        if autoload is None:
            autoload = not _plugins.env_flag("AIGC_DISABLE_PLUGIN_AUTOLOAD")
        explicit = list(plugins)
        if not autoload:
            explicit += _plugins.env_list("AIGC_PLUGINS")
        self._load(autoload, explicit)

    # -- plugins -----------------------------------------------------------

    def _load(self, autoload: bool, explicit: list[Any]) -> None:
        entry_points = {ep.name: ep for ep in _plugins.entry_points()}
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

    def _is_disabled(self, ep) -> bool:
        dist = ep.dist.name if ep.dist is not None else None
        return ep.name in self.disabled or (dist is not None and dist in self.disabled)

    def _load_named(self, name: str, entry_points: dict) -> None:
        if name in self.disabled:
            return
        if name in self._host.infos and self._host.infos[name].status == "loaded":
            return
        ep = entry_points.get(name)
        if ep is not None:
            if not self._is_disabled(ep) and not self._host.pm.has_plugin(name):
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

        self._host.call_each(
            "aigc_register_generators",
            info.name,
            register=self.generators.register_callback(info.name, on_error),
        )
        self._host.call_each(
            "aigc_register_trainers",
            info.name,
            register=self.trainers.register_callback(info.name, on_error),
        )

    def _clash(self, owners: list[str], message: str) -> None:
        for owner in owners:
            if owner in self._host.infos:
                self._host.problem(self._host.infos[owner], message)

    def plugins(self) -> list[PluginInfo]:
        """Every plugin seen: loaded, disabled or failed, with what it provides."""
        with self._lock:
            infos = sorted(self._host.infos.values(), key=lambda i: i.name)
            for info in infos:
                info.generators = self.generators.by_plugin(info.name)
                info.trainers = self.trainers.by_plugin(info.name)
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
            generator.name = name
            pair = (generator, InstanceLock(needed=not generator.thread_safe))
            with self._lock:
                self._instances[key] = pair
            return pair

    def request(self, name: str, **kwargs: Any) -> Request:
        """Validates keyword arguments into the generator's request type."""
        entry = self.generators.get(name)
        factory = entry.resolve()
        request_type = getattr(factory, "Request", None) or self.generator(name).Request
        return request_type.from_kwargs(**kwargs)

    def generate(
        self, name: str, *, options: dict[str, Any] | None = None, **kwargs: Any
    ) -> GenerationResult:
        """Runs generator ``name``; keyword arguments are its request fields."""
        generator, lock = self._instance(name, options or {})
        request = generator.Request.from_kwargs(**kwargs)
        self.notify("aigc_before_generate", generator=generator, request=request)
        start = time.perf_counter()
        with lock:
            result = generator.generate(request)
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
        generator, lock = self._instance(name, options or {})
        if generator.modality != "text":
            raise PluginError(
                f"generator {name!r} makes {generator.modality}, not text: it cannot stream"
            )
        request = generator.Request.from_kwargs(**kwargs)
        return self._stream(generator, lock, request)

    def _stream(self, generator: Generator, lock: InstanceLock, request: Request) -> Iterator[str]:
        self.notify("aigc_before_generate", generator=generator, request=request)
        start = time.perf_counter()
        pieces: list[str] = []
        # The lock guards each step of the generator, never a yield: holding it
        # while the caller has the piece would deadlock a generate() made between
        # pieces and block every other thread until the stream ends.
        with lock:
            inner = iter(generator.stream(request))
        try:
            while True:
                with lock:
                    piece = next(inner, _END)
                if piece is _END:
                    break
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
