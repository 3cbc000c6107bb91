"""From input arrays to their backend, cached per array type.

``resolve(x, y)`` is the only thing a loss asks before computing: one dict
lookup keyed by ``type(x)`` after the first call. On a miss the registered
backends whose library is already imported are asked in turn; failing those,
any namespace ``array_api_compat`` understands gets a generic backend.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from polyloss.backend._base import Backend
from polyloss.backend._base import GenericBackend

__all__ = ["fast_paths", "fast_paths_enabled", "resolve", "backend_of"]

_by_type: dict[type, Backend] = {}
_generic_by_namespace: dict[int, GenericBackend] = {}
_lock = threading.Lock()


class _Switches:
    # a plain attribute (not a ContextVar) so that torch.compile can trace and guard the read
    fast_paths = True


_switches = _Switches()

_HOST_NAMESPACES = ("array_api_strict",)


def clear_cache() -> None:
    """Forget every cached type -> backend answer (called when plugins change)."""
    with _lock:
        _by_type.clear()
        _generic_by_namespace.clear()


def _lookup(x: Any, arg: str) -> Backend:
    from polyloss._registry import registry

    tables = registry.tables
    for backend in tables.backends.values():
        module = backend.module_name
        if module is not None and module not in sys.modules:
            continue
        if backend.matches(x):
            _remember(type(x), backend, tables)
            return backend
    import array_api_compat

    try:
        xp = array_api_compat.array_namespace(x)
    except TypeError:
        raise TypeError(
            f"{arg} must be an array of an array-API library (NumPy, CuPy, PyTorch, "
            f"array-api-strict or one a backend plugin adds), got {type(x).__module__}."
            f"{type(x).__qualname__}"
        ) from None
    backend = _generic_by_namespace.get(id(xp))
    if backend is None:
        host = xp.__name__.split(".")[0] in _HOST_NAMESPACES
        backend = _generic_by_namespace.setdefault(id(xp), GenericBackend(xp, host=host))
    _remember(type(x), backend, tables)
    return backend


def _remember(kind: type, backend: Backend, tables: object) -> None:
    """Cache ``kind -> backend`` unless the plugins changed while it was looked up (a stale answer).

    Lock-free, so that torch.compile can trace a first call: the registry drops its
    tables before it clears this cache, so a lookup that raced a register/unregister
    either sees the new tables here and withdraws its answer, or is cleared after.
    """
    from polyloss._registry import registry

    _by_type[kind] = backend
    if registry._tables is not tables:
        _by_type.pop(kind, None)


def backend_of(x: Any, arg: str = "input") -> Backend:
    """The backend of one array (cached per type)."""
    backend = _by_type.get(type(x))
    return backend if backend is not None else _lookup(x, arg)


def resolve(input: Any, target: Any = None, *, input_name: str = "input", target_name: str = "target") -> Backend:
    """Backend shared by ``input`` and ``target``; ``TypeError`` if they differ."""
    backend = _by_type.get(type(input))
    if backend is None:
        backend = _lookup(input, input_name)
    if target is not None and type(target) is not type(input):
        check_same(backend, target, target_name, input_name)
    return backend


def check_same(backend: Backend, other: Any, name: str, input_name: str = "input") -> None:
    """Raise ``TypeError`` unless ``other`` belongs to ``backend``'s namespace."""
    if other is None:
        return
    other_backend = _by_type.get(type(other))
    if other_backend is None:
        other_backend = _lookup(other, name)
    if other_backend is not backend and other_backend.xp is not backend.xp:
        raise TypeError(
            f"{name} is a {type(other).__module__}.{type(other).__qualname__} "
            f"({other_backend.name}) but {input_name} is from {backend.name}: "
            "mixed array namespaces are not supported; convert one of them"
        )


def fast_paths_enabled() -> bool:
    """Whether native whole-loss kernels may be used (true by default)."""
    return _switches.fast_paths


@contextmanager
def fast_paths(enabled: bool) -> Iterator[None]:
    """Context manager turning backends' native fast paths on or off.

    With ``enabled=False`` every loss runs the generic array-API code, e.g. to
    compare it with the native kernel or to benchmark it. The switch is
    process-wide (not per thread), so that compiled graphs can guard on it.
    """
    previous = _switches.fast_paths
    _switches.fast_paths = bool(enabled)
    try:
        yield
    finally:
        _switches.fast_paths = previous


def _on_registry_change() -> None:
    clear_cache()


def _install_listener() -> None:
    from polyloss._registry import registry

    registry.on_change(_on_registry_change)


_install_listener()
