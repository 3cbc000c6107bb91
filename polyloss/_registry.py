"""The plugin manager and the cached registry of backends, losses and recipes.

Order of loading: built-in plugins first (registered exactly as a third party
would register one), then the ``polyloss`` entry-point group sorted by entry
point name, then plugins registered at run time with
:func:`polyloss.register_plugin`. Loading is lazy (the first listing, look-up
or array of an unseen type) and happens once, under a lock; the hooks are
called once and their answers kept in plain dicts until a plugin is
registered or unregistered at run time, or :meth:`Registry.reload` is called.
Each of those changes bumps :attr:`Registry.generation`; a cache built from the
registry's answers (as :mod:`polyloss._namespace`'s type -> backend cache)
keeps the generation it was built at and is stale once that differs.

An entry-point plugin that fails to import, implements an unknown hook, whose
hook raises, or that registers a name another plugin already registered is
skipped as a whole, with a :class:`PluginWarning` naming the plugin, its
distribution and the error (also kept in ``registry.failures``); every other
plugin still works. A name clash names both plugins and both distributions
(:class:`PluginConflictError`); the value wrapped in :func:`override` wins,
whichever loads first. At run time (``register_plugin``) the same errors are
raised instead, and nothing changes.

Environment:
``POLYLOSS_DISABLE_PLUGIN_AUTOLOAD=1`` skips entry points, except those named
in ``POLYLOSS_PLUGINS``; ``POLYLOSS_PLUGINS=a,b`` loads only the entry points
or distributions named (case, ``-`` and ``_`` do not matter).
"""

from __future__ import annotations

import importlib
import os
import threading
import warnings
from collections.abc import Callable
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
    "polyloss.backend.dask",
    "polyloss.functional",
    "polyloss.detection.ssd",
    "polyloss.detection.faster_rcnn",
    "polyloss.detection.yolov1",
    "polyloss.detection.detr",
    "polyloss.detection.fcos",
    "polyloss.detection.yolov8",
)
ENTRY_POINT_GROUP = PROJECT


_HOOKS = (
    ("polyloss_register_backends", "backend"),
    ("polyloss_register_losses", "loss"),
    ("polyloss_register_recipes", "recipe"),
)


class PluginWarning(UserWarning):
    """A plugin could not be loaded, one of its hooks raised, or it clashed with another; it was skipped."""


class PluginConflictError(ValueError):
    """Two plugins registered the same name without asking to override."""


@dataclass(frozen=True)
class Override:
    """A registered value that may replace one of the same name from another plugin."""

    value: Any


def override(value: Any) -> Override:
    """Mark ``value`` (a loss, recipe factory or backend) as replacing an existing name.

    Return ``{"mse_loss": polyloss.override(my_mse)}`` from a hook (or put
    ``polyloss.override(MyBackend())`` in a backend list) to replace the entry
    of that name whichever plugin loads first. Two overrides of one name are
    still a conflict.
    """
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
    forced: dict[tuple[str, str], bool] = field(default_factory=dict)

    def table(self, kind: str) -> dict[str, Any]:
        return {"backend": self.backends, "loss": self.losses, "recipe": self.recipes}[kind]


class Registry:
    """Owns the :class:`pluggy.PluginManager` and the cached hook answers.

    Both are built lazily, once, under a lock (the first use may come from
    several threads at once); readers afterwards take no lock.

    :attr:`generation` is an integer bumped (under the lock) by every
    :meth:`register`, :meth:`unregister` and :meth:`reload`, after the new
    tables are in place: a reader that sees a generation reads tables at
    least that new. Caches derived from the tables compare the generation they
    were filled at with this one instead of being told of changes.
    """

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._pm: pluggy.PluginManager | None = None
        self._tables: _Tables | None = None
        self._dists: dict[str, str | None] = {}
        self.failures: list[PluginFailure] = []
        self._listeners: list[Callable[[], None]] = []
        self.generation = 0

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
        self._dists = {}
        for name in BUILTIN_PLUGINS:
            pm.register(importlib.import_module(name), name=name)
            self._dists[name] = "polyloss"
        disabled = os.environ.get("POLYLOSS_DISABLE_PLUGIN_AUTOLOAD", "").strip().lower() not in ("", "0", "false")
        wanted = _wanted_plugins()
        if disabled and wanted is None:
            return pm
        found: set[str] = set()
        for ep in _entry_points():
            dist = ep.dist.name if ep.dist is not None else None
            if wanted is not None:
                keys = {_normalize(ep.name), _normalize(dist)} & wanted
                if not keys:
                    continue
                found |= keys
            if pm.has_plugin(ep.name):
                other = self._dists.get(ep.name)
                error = PluginConflictError(
                    f"entry point name {ep.name!r} is already used by distribution {other!r}"
                )
                self._fail(ep.name, dist, error, "was not loaded")
                continue
            try:
                plugin = ep.load()
            except Exception as exc:
                self._fail(ep.name, dist, exc, "failed to import")
                continue
            try:
                pm.register(plugin, name=ep.name)
                _check_hooks(pm, plugin)
            except Exception as exc:
                if pm.has_plugin(ep.name):
                    pm.unregister(name=ep.name)
                self._fail(ep.name, dist, exc, "failed to register")
                continue
            self._dists[ep.name] = dist
        for missing in sorted((wanted or set()) - found):
            warnings.warn(
                f"POLYLOSS_PLUGINS names {missing!r} but no installed distribution or entry point in the "
                f"{ENTRY_POINT_GROUP!r} group is called so",
                PluginWarning,
                stacklevel=2,
            )
        return pm

    def _fail(self, plugin: str, dist: str | None, exc: BaseException, what: str) -> None:
        failure = PluginFailure(plugin, dist, f"{type(exc).__name__}: {exc}")
        self.failures.append(failure)
        where = f"distribution {dist!r}" if dist else "no distribution"
        warnings.warn(
            f"polyloss plugin {plugin!r} ({where}) {what} and was skipped: {failure.error}",
            PluginWarning,
            stacklevel=2,
        )

    def _skip(self, pm: pluggy.PluginManager, plugin: str, exc: BaseException, what: str) -> None:
        # unregistered so that later rebuilds of the tables neither call it nor warn again
        pm.unregister(name=plugin)
        self._fail(plugin, self._dists.get(plugin), exc, what)

    @property
    def tables(self) -> _Tables:
        tables = self._tables
        if tables is None:
            with self._lock:
                if self._tables is None:
                    self._tables = self._collect(self.plugin_manager)
                tables = self._tables
        return tables

    def _collect(self, pm: pluggy.PluginManager, strict: frozenset[str] = frozenset()) -> _Tables:
        """Call every hook once, plugin by plugin in registration order.

        A plugin contributes all its names or none: one whose hook raises, or
        one that clashes with an earlier plugin, is skipped as a whole. Errors
        of built-in plugins and of those in ``strict`` (registered at run time
        by the caller) are raised instead.
        """
        tables = _Tables()
        impls = {
            hook: {impl.plugin_name: impl for impl in getattr(pm.hook, hook).get_hookimpls()} for hook, _ in _HOOKS
        }
        for plugin_name, plugin in list(pm.list_name_plugin()):
            if plugin is None:  # blocked
                continue
            loud = plugin_name in strict or self._dists.get(plugin_name) == "polyloss"
            items: list[tuple[str, str, Any]] = []
            hook = ""
            try:
                for hook, kind in _HOOKS:
                    impl = impls[hook].get(plugin_name)
                    if impl is not None:
                        items += [(kind, name, value) for name, value in _as_items(impl.function(), kind)]
            except Exception as exc:
                if loud:
                    raise
                self._skip(pm, plugin_name, exc, f"raised in {hook}")
                continue
            try:
                self._merge(tables, plugin_name, items)
            except PluginConflictError as exc:
                if loud:
                    raise
                self._skip(pm, plugin_name, exc, "clashes with another plugin")
        return tables

    def _merge(self, tables: _Tables, plugin_name: str, items: list[tuple[str, str, Any]]) -> None:
        """Add one plugin's answers, or raise :class:`PluginConflictError` leaving ``tables`` untouched."""
        accepted: list[tuple[str, str, Any, bool]] = []
        for kind, name, value in items:
            forced = isinstance(value, Override)
            if forced:
                value = value.value
            previous = tables.providers.get((kind, name))
            if previous is not None and previous != plugin_name:
                previous_forced = tables.forced[(kind, name)]
                if previous_forced and not forced:
                    continue  # an override that loaded first keeps its place
                if forced == previous_forced:
                    raise PluginConflictError(
                        f"{kind} {name!r} is registered by both plugin {previous!r} "
                        f"(distribution {self._dists.get(previous)!r}) and plugin {plugin_name!r} "
                        f"(distribution {self._dists.get(plugin_name)!r}); "
                        + ("both ask to override it" if forced else
                           "wrap one in polyloss.override(...) to replace the other")
                    )
            accepted.append((kind, name, value, forced))
        for kind, name, value, forced in accepted:
            tables.table(kind)[name] = value
            tables.providers[(kind, name)] = plugin_name
            tables.forced[(kind, name)] = forced

    # -- run-time registration --------------------------------------------
    def register(self, plugin: object, name: str | None = None) -> str:
        """Register a plugin object at run time; returns its name.

        Unlike an entry point, a plugin registered here that clashes or whose
        hook raises is not skipped: the error is raised and nothing changes.
        """
        with self._lock:
            pm = self.plugin_manager
            self.tables  # noqa: B018 - entry-point plugins are loaded (and reported) before this one
            if name is not None and pm.has_plugin(name):
                raise ValueError(f"a polyloss plugin named {name!r} is already registered")
            registered = pm.register(plugin, name=name)
            if registered is None:
                raise ValueError(f"plugin {name or plugin!r} is blocked")
            self._dists[registered] = None
            try:
                _check_hooks(pm, plugin)
                tables = self._collect(pm, strict=frozenset({registered}))
            except Exception:
                pm.unregister(name=registered)
                del self._dists[registered]
                raise
            self._changed(tables)
            return registered

    def unregister(self, name: str) -> None:
        """Remove a plugin registered under ``name`` and invalidate the caches."""
        with self._lock:
            if self.plugin_manager.unregister(name=name) is None:
                raise ValueError(f"no polyloss plugin named {name!r} is registered")
            self._dists.pop(name, None)
            self._changed(None)

    def reload(self) -> None:
        """Forget everything (run-time plugins too) and load the plugins again, e.g. after installing one."""
        with self._lock:
            self._pm = None
            self._changed(None)

    def _changed(self, tables: _Tables | None) -> None:
        """Install ``tables`` (None: rebuilt on next use), then bump :attr:`generation` (caller holds the lock)."""
        self._tables = tables
        self.generation += 1
        for listener in self._listeners:
            listener()

    def on_change(self, listener: Callable[[], None]) -> None:
        """Call ``listener()`` after every change of the plugins (polyloss's own caches compare :attr:`generation`)."""
        self._listeners.append(listener)

    # -- queries ----------------------------------------------------------
    def provider(self, kind: str, name: str) -> tuple[str, str | None]:
        """``(plugin name, distribution)`` that provides the ``kind`` ("backend", "loss", "recipe") ``name``."""
        plugin = self.tables.providers[(kind, name)]
        return plugin, self._dists.get(plugin)

    def plugin_names(self) -> list[str]:
        """Sorted names of the registered plugins (built-in module names, entry-point names, run-time names)."""
        return sorted(name for name, plugin in self.plugin_manager.list_name_plugin() if plugin is not None)

    def distribution(self, plugin: str) -> str | None:
        """The distribution a registered plugin came from (``"polyloss"`` for built-ins, None at run time)."""
        return self._dists.get(plugin)


def _check_hooks(pm: pluggy.PluginManager, plugin: object) -> None:
    """Reject a plugin that implements a hook polyloss does not define (usually a typo)."""
    for caller in pm.get_hookcallers(plugin) or ():
        if caller.spec is None:
            known = ", ".join(hook for hook, _ in _HOOKS)
            raise TypeError(f"it implements {caller.name!r}, which is not a polyloss hook (known: {known})")


def _as_items(answer: Any, kind: str) -> list[tuple[str, Any]]:
    if answer is None:
        return []
    if kind == "backend":
        if hasattr(answer, "items") or isinstance(answer, (str, bytes)):
            raise TypeError(f"polyloss_register_backends must return a sequence of Backend objects, got "
                            f"{type(answer).__name__}")
        from polyloss.backend._base import Backend

        items = []
        for backend in answer:
            inner = backend.value if isinstance(backend, Override) else backend
            if not isinstance(inner, Backend):
                raise TypeError(f"polyloss_register_backends returned {inner!r}, which is not a polyloss.Backend")
            items.append((inner.name, backend))
        return items
    if not hasattr(answer, "items"):
        raise TypeError(f"a {kind} hook must return a mapping name -> value, got {type(answer).__name__}")
    items = list(answer.items())
    for name, value in items:
        inner = value.value if isinstance(value, Override) else value
        if not isinstance(name, str) or not callable(inner):
            raise TypeError(f"a {kind} hook must map names (str) to callables, got {name!r}: {inner!r}")
    return items


def _normalize(name: str | None) -> str:
    return (name or "").strip().lower().replace("-", "_").replace(".", "_")


def _wanted_plugins() -> set[str] | None:
    raw = os.environ.get("POLYLOSS_PLUGINS")
    if raw is None or not raw.strip():
        return None
    return {_normalize(part) for part in raw.split(",") if part.strip()}


def _entry_points() -> list[Any]:
    from importlib.metadata import entry_points

    return sorted(entry_points(group=ENTRY_POINT_GROUP), key=lambda ep: ep.name)


registry = Registry()
