"""Finding, loading and calling plugins, one broken plugin at a time.

pluggy's own ``load_setuptools_entrypoints`` stops at the first plugin that
fails to import and calls every implementation of a hook in one go, so one
bad plugin breaks all of them. Here each entry point is loaded on its own and
each hook implementation is called on its own; failures are recorded against
the plugin that caused them and reported, never raised into the host.
"""

from __future__ import annotations

import importlib
import logging
import os
import warnings
from dataclasses import dataclass, field
from importlib import metadata
from typing import Any

import pluggy

from . import hookspecs

ENTRY_POINT_GROUP = "aigc_sdk.plugins"
log = logging.getLogger("aigc_sdk.plugins")
trace_log = logging.getLogger("aigc_sdk.trace")


class PluginWarning(UserWarning):
    """A plugin failed to load or one of its hooks raised."""


@dataclass
class PluginInfo:
    """What ``aigc plugins`` shows about one plugin."""

    name: str
    module: str | None = None
    distribution: str | None = None
    version: str | None = None
    status: str = "loaded"  # loaded | disabled | failed
    errors: list[str] = field(default_factory=list)
    hooks: list[str] = field(default_factory=list)
    generators: list[str] = field(default_factory=list)
    trainers: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


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


class PluginHost:
    """One pluggy PluginManager plus the bookkeeping that isolates plugins."""

    def __init__(self, trace: bool = False) -> None:
        self.pm = pluggy.PluginManager(hookspecs.PROJECT_NAME)
        self.pm.add_hookspecs(hookspecs)
        self.infos: dict[str, PluginInfo] = {}
        self.trace = trace
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
            self.fail(info, f"failed to import {what}: {_describe(exc)}")
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
            self.fail(info, f"cannot register: {_describe(exc)}")
            return
        info.hooks = sorted(caller.name for caller in self.pm.get_hookcallers(plugin) or [])

    def fail(self, info: PluginInfo, message: str) -> None:
        """Records that a plugin could not load or one of its hooks raised."""
        info.status = "failed"
        self.problem(info, message)

    def problem(self, info: PluginInfo, message: str) -> None:
        """Records a problem that leaves the plugin loaded (e.g. a name clash)."""
        if message in info.errors:
            return
        info.errors.append(message)
        log.warning("plugin %s: %s", info.name, message)
        warnings.warn(f"aigc plugin {info.name!r}: {message}", PluginWarning, stacklevel=4)

    # -- calling -----------------------------------------------------------

    def call_each(self, hook_name: str, plugin_name: str | None = None, **kwargs: Any) -> None:
        """Calls every implementation of a hook (or one plugin's), isolating failures.

        Order is pluggy's (last registered first, tryfirst/trylast honoured).
        """
        caller = getattr(self.pm.hook, hook_name)
        for impl in reversed(caller.get_hookimpls()):
            if plugin_name is not None and impl.plugin_name != plugin_name:
                continue
            args = [kwargs[name] for name in impl.argnames]
            if self.trace:
                trace_log.debug(
                    "%s[%s](%s)",
                    hook_name,
                    impl.plugin_name,
                    ", ".join(f"{k}={v!r}" for k, v in zip(impl.argnames, args, strict=True)),
                )
            try:
                result = impl.function(*args)
            except (Exception, SystemExit) as exc:  # sys.exit() in a hook must not end the host
                info = self.infos.setdefault(impl.plugin_name, PluginInfo(name=impl.plugin_name))
                self.fail(info, f"hook {hook_name} raised {_describe(exc)}")
                continue
            if self.trace:
                trace_log.debug("%s[%s] -> %r", hook_name, impl.plugin_name, result)
