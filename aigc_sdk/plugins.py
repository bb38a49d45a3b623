"""Finding, loading and calling plugins, one broken plugin at a time.

pluggy's own ``load_setuptools_entrypoints`` stops at the first plugin that
fails to import, and its call loop lets one raising implementation end a
hook call for every plugin. Here each entry point is loaded on its own, and
hooks go through pluggy's call loop (so ``tryfirst``/``trylast`` and
wrappers, old-style ``hookwrapper=True`` and new-style ``wrapper=True``, work
as pluggy documents) with every implementation guarded: an exception is
recorded against the plugin that raised it, the plugin is marked failed and
unregistered, and the call goes on without it. Nothing is raised into the host.
"""

from __future__ import annotations

import importlib
import logging
import os
import sys
import threading
import traceback
import warnings
from collections.abc import Callable, Generator
from dataclasses import dataclass, field
from importlib import metadata
from typing import Any

import pluggy

from . import hookspecs

ENTRY_POINT_GROUP = "aigc_sdk.plugins"
log = logging.getLogger("aigc_sdk.plugins")
trace_log = logging.getLogger("aigc_sdk.trace")

# A PluginWarning points at the host's call into the SDK (the frame outside the
# outermost one in _SDK_DIR); a plugin's traceback starts after frames in either.
_SDK_DIR = os.path.dirname(os.path.abspath(__file__)) + os.sep
_INTERNAL_DIRS = (_SDK_DIR, os.path.dirname(os.path.abspath(pluggy.__file__)) + os.sep)
_GUARDED = "_aigc_guarded"  # set on an implementation function once it is guarded


class PluginWarning(UserWarning):
    """A plugin failed to load or one of its hooks raised."""


@dataclass
class PluginInfo:
    """What ``aigc plugins`` shows about one plugin.

    ``errors`` are one-line summaries; ``tracebacks`` maps a summary to the
    full traceback of the exception behind it (``aigc plugins --verbose``).
    ``generator_details`` and ``trainer_details`` hold each provided
    generator's and trainer's name, modality and description.
    """

    name: str
    module: str | None = None
    distribution: str | None = None
    version: str | None = None
    status: str = "loaded"  # loaded | disabled | failed
    errors: list[str] = field(default_factory=list)
    hooks: list[str] = field(default_factory=list)
    generators: list[str] = field(default_factory=list)
    trainers: list[str] = field(default_factory=list)
    generator_details: list[dict[str, Any]] = field(default_factory=list)
    trainer_details: list[dict[str, Any]] = field(default_factory=list)
    tracebacks: dict[str, str] = field(default_factory=dict)

    def as_dict(self, tracebacks: bool = False) -> dict[str, Any]:
        out = dict(self.__dict__)
        if not tracebacks:
            del out["tracebacks"]
        return out


def env_list(name: str) -> list[str]:
    return [item.strip() for item in os.environ.get(name, "").split(",") if item.strip()]


def env_flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in ("1", "true", "yes", "on")


def entry_points() -> list[metadata.EntryPoint]:
    """The installed plugins' entry points, in a stable order."""
    found = metadata.entry_points(group=ENTRY_POINT_GROUP)
    unique = {(ep.name, ep.value): ep for ep in found}  # a path listed twice shows a dist twice
    return sorted(unique.values(), key=lambda ep: ep.name)


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


def _caller_stacklevel() -> int:
    """The ``stacklevel`` that makes a ``warnings.warn`` in the caller of this function
    name the host's call into aigc_sdk: the frame just outside the outermost SDK frame
    (a plugin's frames in between, e.g. its ``register(...)`` call, are skipped too)."""
    frame = sys._getframe(1)  # the function calling warnings.warn: stacklevel 1
    level, outermost = 1, 1
    while frame is not None:
        if frame.f_code.co_filename.startswith(_SDK_DIR):
            outermost = level
        frame = frame.f_back
        level += 1
    return outermost + 1


def _plugin_traceback(exc: BaseException) -> str:
    """The traceback of a plugin's exception from the plugin's first frame on."""
    tb = exc.__traceback__
    while tb is not None and tb.tb_next is not None:
        filename = tb.tb_frame.f_code.co_filename
        if not (filename.startswith(_INTERNAL_DIRS) or "importlib" in filename):
            break
        tb = tb.tb_next
    return "".join(traceback.format_exception(type(exc), exc, tb))


class PluginHost:
    """One pluggy PluginManager plus the bookkeeping that isolates plugins.

    ``on_failed(name)`` is called after a plugin has failed and been
    unregistered, so its owner can drop what the plugin provided.
    """

    def __init__(self, trace: bool = False, on_failed: Callable[[str], None] | None = None):
        self.pm = pluggy.PluginManager(hookspecs.PROJECT_NAME)
        self.pm.add_hookspecs(hookspecs)
        self.infos: dict[str, PluginInfo] = {}
        self.trace = trace
        self.on_failed = on_failed
        # Guarding an implementation and failing a plugin each happen once, whichever
        # of several threads calling hooks gets there first.
        self._lock = threading.RLock()
        if trace and not trace_log.handlers and not logging.getLogger().handlers:
            handler = logging.StreamHandler()
            handler.setFormatter(logging.Formatter("aigc trace: %(message)s"))
            trace_log.addHandler(handler)
            trace_log.setLevel(logging.DEBUG)

    # -- loading -----------------------------------------------------------

    def load_entry_point(self, ep: metadata.EntryPoint) -> PluginInfo:
        info = PluginInfo(name=ep.name, module=ep.value)
        if ep.dist is not None:
            info.distribution, info.version = ep.dist.name, ep.dist.version
        self.infos[ep.name] = info
        plugin = self._import(ep.load, ep.value, info)
        if plugin is not None:
            self._register(plugin, info)
        return info

    def load_module(self, module_name: str) -> PluginInfo | None:
        """Imports and registers a module by name; None if it is registered already."""
        info = PluginInfo(name=module_name, module=module_name)
        self.infos[module_name] = info
        plugin = self._import(lambda: importlib.import_module(module_name), module_name, info)
        if plugin is None:
            return info
        if self.pm.is_registered(plugin):  # already loaded, e.g. through its entry point
            del self.infos[module_name]
            return None
        self._register(plugin, info)
        return info

    def _import(self, load: Any, what: str, info: PluginInfo) -> Any:
        """Runs ``load``; a failure is recorded against the plugin and None returned."""
        try:
            return load()
        except KeyboardInterrupt:
            raise
        except BaseException as exc:  # a plugin's import may raise anything, SystemExit included
            self.fail(info, f"failed to import {what}: {_describe(exc)}", exc)
            return None

    def register_object(self, plugin: Any, name: str | None = None) -> PluginInfo:
        name = name or getattr(plugin, "__name__", None) or type(plugin).__name__
        if name in self.infos and self.infos[name].status == "loaded":
            raise ValueError(f"a plugin named {name!r} is already registered")
        info = PluginInfo(name=name, module=getattr(plugin, "__name__", None))
        self.infos[name] = info
        self._register(plugin, info)
        return info

    def mark_disabled(self, ep: metadata.EntryPoint) -> None:
        info = PluginInfo(name=ep.name, module=ep.value, status="disabled")
        if ep.dist is not None:
            info.distribution, info.version = ep.dist.name, ep.dist.version
        self.infos[ep.name] = info

    def _register(self, plugin: Any, info: PluginInfo) -> None:
        try:
            self.pm.register(plugin, name=info.name)
        except Exception as exc:  # e.g. a hookimpl with an unknown hook name or bad arguments
            self.fail(info, f"cannot register: {_describe(exc)}", exc)
            return
        info.hooks = sorted(caller.name for caller in self.pm.get_hookcallers(plugin) or [])

    # -- failures ----------------------------------------------------------

    def fail(self, info: PluginInfo, message: str, exc: BaseException | None = None) -> None:
        """Records that a plugin could not load or one of its hooks raised.

        A failed plugin contributes nothing: it is unregistered from pluggy (no
        hook of it runs again) and ``on_failed`` drops what it registered.
        """
        with self._lock:
            first = info.status != "failed"
            info.status = "failed"
            plugin = self.pm.get_plugin(info.name) if first else None
            if plugin is not None:
                self.pm.unregister(plugin, name=info.name)
        self.problem(info, message, exc)
        if not first:
            return
        if self.on_failed is not None:
            self.on_failed(info.name)

    def problem(self, info: PluginInfo, message: str, exc: BaseException | None = None) -> None:
        """Records a problem that leaves the plugin loaded (e.g. a name clash)."""
        if message in info.errors:
            return
        info.errors.append(message)
        if exc is not None:
            info.tracebacks[message] = _plugin_traceback(exc)
        # The record carries the traceback; the CLI prints records as one line.
        log.warning("plugin %s: %s", info.name, message, exc_info=exc)
        if exc is not None and self.trace:
            trace_log.debug("plugin %s failed", info.name, exc_info=exc)
        warnings.warn(
            f"aigc plugin {info.name!r}: {message}", PluginWarning, stacklevel=_caller_stacklevel()
        )

    def warn(self, message: str) -> None:
        """A problem of the host's configuration that no plugin is to blame for."""
        log.warning("%s", message)
        warnings.warn(f"aigc: {message}", PluginWarning, stacklevel=_caller_stacklevel())

    def _hook_failed(self, plugin_name: str, hook_name: str, message: str, exc=None) -> None:
        info = self.infos.setdefault(plugin_name, PluginInfo(name=plugin_name))
        self.fail(info, f"hook {hook_name} {message}", exc)

    def _active(self, plugin_name: str) -> bool:
        info = self.infos.get(plugin_name)
        return info is None or info.status != "failed"

    # -- calling -----------------------------------------------------------

    def call_each(self, hook_name: str, plugin_name: str | None = None, **kwargs: Any) -> None:
        """Calls a hook through pluggy's call loop (or only one plugin's implementations).

        Each implementation runs guarded: one that raises fails its plugin
        and the others still run. Return values are ignored.
        """
        caller = getattr(self.pm.hook, hook_name)
        if plugin_name is not None:
            if not self.pm.has_plugin(plugin_name):
                return
            others = [p for name, p in self.pm.list_name_plugin() if name != plugin_name]
            caller = self.pm.subset_hook_caller(hook_name, remove_plugins=others)
        for impl in caller.get_hookimpls():
            if not getattr(impl.function, _GUARDED, False):
                with self._lock:
                    if not getattr(impl.function, _GUARDED, False):
                        self._guard(hook_name, impl)
        caller(**kwargs)

    def _guard(self, hook_name: str, impl: Any) -> None:
        # pluggy calls ``impl.function`` from its call loop; replacing it with a
        # guarded version is how an exception stays with its plugin while
        # ordering and wrappers stay pluggy's. argnames were read at registration.
        if impl.wrapper:
            guarded = self._guard_wrapper(hook_name, impl, impl.function, new_style=True)
        elif impl.hookwrapper:
            guarded = self._guard_wrapper(hook_name, impl, impl.function, new_style=False)
        else:
            guarded = self._guard_function(hook_name, impl, impl.function)
        setattr(guarded, _GUARDED, True)
        impl.function = guarded

    def _trace_call(self, hook_name: str, impl: Any, args: tuple, what: str = "") -> None:
        if self.trace:
            trace_log.debug(
                "%s[%s]%s(%s)",
                hook_name,
                impl.plugin_name,
                what,
                ", ".join(f"{k}={v!r}" for k, v in zip(impl.argnames, args, strict=False)),
            )

    def _guard_function(self, hook_name: str, impl: Any, function: Callable) -> Callable:
        def guarded(*args: Any, **kwargs: Any) -> Any:
            if not self._active(impl.plugin_name):
                return None
            self._trace_call(hook_name, impl, args)
            try:
                result = function(*args, **kwargs)
            except (Exception, SystemExit) as exc:  # sys.exit() in a hook must not end the host
                self._hook_failed(impl.plugin_name, hook_name, f"raised {_describe(exc)}", exc)
                return None
            if self.trace:
                trace_log.debug("%s[%s] -> %r", hook_name, impl.plugin_name, result)
            return result

        return guarded

    def _guard_wrapper(
        self, hook_name: str, impl: Any, function: Callable, new_style: bool
    ) -> Callable:
        """A wrapper whose own exceptions (before or after its yield) fail its plugin.

        A new-style wrapper is sent the inner results and its return value
        replaces them; an old-style one is sent pluggy's ``Result`` (and pluggy
        ignores what it returns). A failing wrapper leaves the outcome as it was.
        """
        name = impl.plugin_name

        def failed(message: str, exc: BaseException | None = None) -> None:
            self._hook_failed(name, hook_name, f"(wrapper) {message}", exc)

        def guarded(*args: Any, **kwargs: Any) -> Generator[None, Any, Any]:
            if not self._active(name):
                return (yield)
            self._trace_call(hook_name, impl, args, " wrapper")
            try:
                teardown = function(*args, **kwargs)
                next(teardown)
            except StopIteration:
                failed("did not yield")
                return (yield)
            except (Exception, SystemExit) as exc:
                failed(f"raised {_describe(exc)}", exc)
                return (yield)
            try:
                outcome = yield
            except BaseException:  # not a plugin's error (those are guarded): e.g. Ctrl-C
                teardown.close()
                raise
            if not self._active(name):  # failed in a hook it wraps: it contributes nothing
                teardown.close()
                return outcome
            try:
                teardown.send(outcome)
            except StopIteration as stop:
                return stop.value if new_style else None
            except (Exception, SystemExit) as exc:
                failed(f"raised {_describe(exc)}", exc)
                return outcome
            teardown.close()
            failed("yielded twice; a wrapper yields exactly once")
            return outcome

        return guarded
