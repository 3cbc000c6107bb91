"""The plugin manager and the cached registry of backends, losses and recipes.

Order of loading: built-in plugins first (registered exactly as a third party
would register one), then the ``polyloss`` entry-point group. The hooks are
called once; their answers are kept in plain dicts until a plugin is
registered or unregistered at run time.

A plugin that fails to import, or whose hook raises, is skipped with a
:class:`PluginWarning` that names it and the error. Two plugins registering
one name is a :class:`PluginConflictError` naming both, unless the later one
wraps its value in :func:`override`.

Environment:
``POLYLOSS_DISABLE_PLUGIN_AUTOLOAD=1`` skips entry points;
``POLYLOSS_PLUGINS=a,b`` loads only the entry points (or distributions) named.
"""

from __future__ import annotations

import importlib
import os
import threading
import warnings
from collections.abc import Callable
from collections.abc import Iterable
from dataclasses import dataclass
from dataclasses import field
from typing import Any

import pluggy

from polyloss import hookspecs
from polyloss._hooks import PROJECT

__all__ = [
    "Override",
    "PluginConflictError",
    "PluginFailure",
    "PluginWarning",
    "override",
    "registry",
]

BUILTIN_PLUGINS = (
    "polyloss.backend.numpy",
    "polyloss.backend.torch",
    "polyloss.backend.cupy",
    "polyloss.functional",
    "polyloss.detection.yolov1",
)
ENTRY_POINT_GROUP = PROJECT


class PluginWarning(UserWarning):
    """A plugin could not be loaded or one of its hooks raised; it was skipped."""


class PluginConflictError(ValueError):
    """Two plugins registered the same name without asking to override."""


@dataclass(frozen=True)
class Override:
    """A registered value that may replace one of the same name from another plugin."""

    value: Any


def override(value: Any) -> Override:
    """Mark ``value`` (a loss, recipe factory or backend) as replacing an existing name."""
    return Override(value)


@dataclass(frozen=True)
class PluginFailure:
    """A plugin that was skipped: its name, its distribution and why."""

    plugin: str
    distribution: str | None
    error: str


@dataclass
class _Tables:
    backends: dict[str, Any] = field(default_factory=dict)
    losses: dict[str, Callable[..., Any]] = field(default_factory=dict)
    recipes: dict[str, Callable[..., Any]] = field(default_factory=dict)
    providers: dict[tuple[str, str], str] = field(default_factory=dict)


class Registry:
    """Owns the :class:`pluggy.PluginManager` and the cached hook answers."""

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._pm: pluggy.PluginManager | None = None
        self._tables: _Tables | None = None
        self._dists: dict[str, str | None] = {}
        self.failures: list[PluginFailure] = []
        self._listeners: list[Callable[[], None]] = []

    # -- loading ----------------------------------------------------------
    @property
    def plugin_manager(self) -> pluggy.PluginManager:
        pm = self._pm
        if pm is None:
            with self._lock:
                if self._pm is None:
                    self._pm = self._load()
                pm = self._pm
        return pm

    def _load(self) -> pluggy.PluginManager:
        pm = pluggy.PluginManager(PROJECT)
        pm.add_hookspecs(hookspecs)
        self.failures = []
        for name in BUILTIN_PLUGINS:
            pm.register(importlib.import_module(name), name=name)
            self._dists[name] = "polyloss"
        if os.environ.get("POLYLOSS_DISABLE_PLUGIN_AUTOLOAD", "") not in ("", "0"):
            return pm
        wanted = _wanted_plugins()
        for ep in _entry_points():
            dist = ep.dist.name if ep.dist is not None else None
            if wanted is not None and ep.name not in wanted and dist not in wanted:
                continue
            if pm.has_plugin(ep.name):
                continue
            try:
                plugin = ep.load()
                pm.register(plugin, name=ep.name)
            except Exception as exc:
                self._fail(ep.name, dist, exc, "failed to load")
                continue
            self._dists[ep.name] = dist
        return pm

    def _fail(self, plugin: str, dist: str | None, exc: BaseException, what: str) -> None:
        failure = PluginFailure(plugin, dist, f"{type(exc).__name__}: {exc}")
        self.failures.append(failure)
        where = f"distribution {dist!r}" if dist else "no distribution"
        warnings.warn(
            f"polyloss plugin {plugin!r} ({where}) {what} and was skipped: {failure.error}",
            PluginWarning,
            stacklevel=4,
        )

    @property
    def tables(self) -> _Tables:
        tables = self._tables
        if tables is None:
            with self._lock:
                if self._tables is None:
                    self._tables = self._collect(self.plugin_manager)
                tables = self._tables
        return tables

    def _collect(self, pm: pluggy.PluginManager) -> _Tables:
        tables = _Tables()
        for hook_name, table, kind in (
            ("polyloss_register_backends", tables.backends, "backend"),
            ("polyloss_register_losses", tables.losses, "loss"),
            ("polyloss_register_recipes", tables.recipes, "recipe"),
        ):
            # get_hookimpls() lists the plugins in registration order
            for impl in getattr(pm.hook, hook_name).get_hookimpls():
                plugin_name = impl.plugin_name
                try:
                    answer = impl.function()
                    items = _as_items(answer, kind)
                except Exception as exc:
                    self._fail(plugin_name, self._dists.get(plugin_name), exc, f"raised in {hook_name}")
                    continue
                for name, value in items:
                    forced = isinstance(value, Override)
                    if forced:
                        value = value.value
                    previous = tables.providers.get((kind, name))
                    if previous is not None and not forced:
                        raise PluginConflictError(
                            f"{kind} {name!r} is registered by both plugin {previous!r} "
                            f"(distribution {self._dists.get(previous)!r}) and plugin "
                            f"{plugin_name!r} (distribution {self._dists.get(plugin_name)!r}); "
                            "wrap one in polyloss.override(...) to replace the other"
                        )
                    table[name] = value
                    tables.providers[(kind, name)] = plugin_name
        return tables

    # -- run-time registration --------------------------------------------
    def register(self, plugin: object, name: str | None = None) -> str:
        """Register a plugin object at run time; returns its name."""
        with self._lock:
            registered = self.plugin_manager.register(plugin, name=name)
            if registered is None:
                raise ValueError(f"plugin {name or plugin!r} is already registered or blocked")
            self._dists.setdefault(registered, None)
            try:
                self._collect(self.plugin_manager)
            except Exception:
                self.plugin_manager.unregister(name=registered)
                raise
            self._invalidate()
            return registered

    def unregister(self, name: str) -> None:
        """Remove a plugin registered under ``name``."""
        with self._lock:
            if self.plugin_manager.unregister(name=name) is None:
                raise ValueError(f"no polyloss plugin named {name!r} is registered")
            self._invalidate()

    def reload(self) -> None:
        """Forget everything and load the plugins again (e.g. after installing one)."""
        with self._lock:
            self._pm = None
            self._invalidate()

    def _invalidate(self) -> None:
        self._tables = None
        for listener in self._listeners:
            listener()

    def on_change(self, listener: Callable[[], None]) -> None:
        self._listeners.append(listener)

    # -- queries ----------------------------------------------------------
    def provider(self, kind: str, name: str) -> tuple[str, str | None]:
        plugin = self.tables.providers[(kind, name)]
        return plugin, self._dists.get(plugin)

    def plugin_names(self) -> list[str]:
        return sorted(name for name, _ in self.plugin_manager.list_name_plugin())


def _as_items(answer: Any, kind: str) -> Iterable[tuple[str, Any]]:
    if answer is None:
        return ()
    if kind == "backend":
        items = []
        for backend in answer:
            inner = backend.value if isinstance(backend, Override) else backend
            items.append((inner.name, backend))
        return items
    if not hasattr(answer, "items"):
        raise TypeError(f"a {kind} hook must return a mapping name -> value, got {type(answer).__name__}")
    return list(answer.items())


def _wanted_plugins() -> set[str] | None:
    raw = os.environ.get("POLYLOSS_PLUGINS")
    if raw is None:
        return None
    return {part.strip() for part in raw.split(",") if part.strip()}


def _entry_points() -> list[Any]:
    from importlib.metadata import entry_points

    return sorted(entry_points(group=ENTRY_POINT_GROUP), key=lambda ep: ep.name)


registry = Registry()
