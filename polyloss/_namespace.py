"""From input arrays to their backend, cached per array type.

``resolve(x, y)`` is the only thing a loss asks before computing: one dict
lookup keyed by ``type(x)`` after the first call. On a miss the registered
backends whose library is already imported are asked in turn; failing those,
any namespace ``array_api_compat`` understands gets a generic backend.

The cache belongs to one :attr:`registry.generation <polyloss._registry.Registry.generation>`:
a plugin registered, unregistered or reloaded bumps the generation and the
cache's answers are no longer used (no callback from the registry, no look at
its internals).

Under ``torch.compile`` (dynamo), reading the cache is *assumed constant*
(the mark :func:`torch.compiler.assume_constant_result` sets, set here by hand
since ``import polyloss`` imports no torch): dynamo calls :func:`_slot` for real
while tracing and bakes the answer, a slot number, into the trace, so that no
guard is installed on the cache's contents and the cache filling up later
compiles nothing again. The backend is then read from :data:`_slots`, a dict
only ever added to, so the graph's guard on that one entry always holds. A
miss while tracing (the process's first polyloss call is a compiled one) is
answered by :func:`_slot_for_tracing`, also assumed constant: the registry is
built, the backend found (a real empty tensor of the traced type stands for
the fake one) and its lazy caches filled, all outside the trace, so neither
the registry's lock nor a pluggy hook call is traced. Dynamo guards on
:attr:`registry.generation`: a compiled loss is compiled again after a plugin
change. In eager mode the price is one Python call per lookup.

:func:`fast_paths` and :func:`fast_paths_enabled` (per-thread) live in
:mod:`polyloss._switches`, which the backends import; they are re-exported here.
"""

from __future__ import annotations

import sys
import threading
from typing import Any

from polyloss._registry import registry
from polyloss._switches import fast_paths
from polyloss._switches import fast_paths_enabled
from polyloss._switches import switches as _switches  # noqa: F401 - read as ``_switches.fast_paths`` by loss code
from polyloss.backend._base import Backend
from polyloss.backend._base import GenericBackend

__all__ = ["fast_paths", "fast_paths_enabled", "resolve", "backend_of", "check_same", "clear_cache"]

_HOST_NAMESPACES = ("array_api_strict",)

# every dtype name a namespace may have; their kinds are cached when a backend is first found
_DTYPE_NAMES = (
    "bool", "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64",
    "float16", "bfloat16", "float32", "float64", "complex64", "complex128",
)


class _Cache:
    """The ``type -> slot`` answers of one registry generation (a slot indexes :data:`_slots`)."""

    __slots__ = ("by_type", "generation")

    def __init__(self, generation: int) -> None:
        self.generation = generation
        self.by_type: dict[type, int] = {}


_cache = _Cache(-1)
# Every backend ever resolved, by slot number, only ever added to: a slot always names the same
# backend, so a compiled graph reading ``_slots[i]`` guards on that one entry (a dict, not a list:
# dynamo guards a list's length, which would recompile every graph when a backend is added). It
# grows by the backends of each registry generation that arrays were looked up under.
_slots: dict[int, Backend] = {}
_slot_by_id: dict[int, int] = {}  # id(backend) -> slot; the backends are kept alive by _slots
_slot_lock = threading.Lock()
_generic_by_namespace: dict[int, GenericBackend] = {}  # not plugin-dependent: kept across generations


def clear_cache() -> None:
    """Forget every cached type -> backend answer (plugin changes need no call: see the module's docstring)."""
    global _cache
    _cache = _Cache(-1)
    _generic_by_namespace.clear()


def _slot(kind: type, generation: int) -> int:
    """The slot of the cached backend of arrays of type ``kind`` if the cache is of ``generation``, else -1.

    Assumed constant under ``torch.compile``: see the module's docstring.
    """
    cache = _cache
    return cache.by_type.get(kind, -1) if cache.generation == generation else -1


# What torch.compiler.assume_constant_result(fn) does; set by hand because ``import polyloss``
# must not import torch, and the first traced call may come before polyloss sees torch.
_slot._dynamo_marked_constant = True  # type: ignore[attr-defined]


def _lookup(x: Any, arg: str) -> Backend:
    """Find, cache and return the backend of ``x`` (a cache miss)."""
    kind = type(x)
    if _tracing():
        slot = _slot_for_tracing(kind, registry.generation)
        if slot >= 0:
            return _slots[slot]
    generation = registry.generation  # read before the tables: an answer from newer tables is only kept unused
    backend = _find(x, arg, registry.tables)
    _store(kind, backend, generation)
    return backend


def _find(x: Any, arg: str, tables: Any) -> Backend:
    for backend in tables.backends.values():
        module = backend.module_name
        if module is not None and module not in sys.modules:
            continue
        if backend.matches(x):
            found: Backend = backend
            return found
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
    return backend


def _store(kind: type, backend: Backend, generation: int) -> int:
    """Cache ``kind -> backend``, found from the tables of ``generation`` (or newer); return its slot.

    Lock-free but for a new backend's slot: a cache is replaced whole when the
    generation moves on, and an answer is only ever read back under the
    generation it was stored with, so a lookup that raced a plugin change
    leaves at most an unused entry.
    """
    global _cache
    slot = _slot_of(backend)
    cache = _cache
    if cache.generation != generation:
        if registry.generation != generation:
            return slot  # the plugins changed during the lookup: the answer is not kept
        cache = _cache = _Cache(generation)
    cache.by_type[kind] = slot
    return slot


def _slot_of(backend: Backend) -> int:
    slot = _slot_by_id.get(id(backend))
    if slot is not None:
        return slot
    _warm(backend)  # outside the lock: it may import the array library
    with _slot_lock:
        slot = _slot_by_id.get(id(backend))
        if slot is None:
            slot = len(_slots)
            _slots[slot] = backend
            _slot_by_id[id(backend)] = slot
        return slot


def _warm(backend: Backend) -> None:
    """Fill the backend's lazy caches (namespace, dtype kinds) once, so that a graph traced later does not
    read them empty and compile again when they fill up."""
    try:
        xp = backend.xp
        for name in _DTYPE_NAMES:
            dtype = getattr(xp, name, None)
            if dtype is not None:
                backend.dtype_kind(dtype)
    except Exception:  # a backend whose namespace cannot tell: its caches fill on use
        pass


def _tracing() -> bool:
    """Whether dynamo (torch.compile) is tracing this call."""
    torch = sys.modules.get("torch")
    return torch is not None and bool(torch.compiler.is_compiling())


def _slot_for_tracing(kind: type, generation: int) -> int:
    """The slot of the backend of traced arrays of type ``kind``, found outside the trace (assumed constant).

    Dynamo runs this for real while tracing: the registry is built and a real
    empty tensor of ``kind`` is asked for (``matches`` takes an array, the
    traced one is a fake). -1 for a type that is not a tensor type: the
    lookup is then traced.
    """
    slot = _slot(kind, generation)
    if slot >= 0:
        return slot
    probe = _probe(kind)
    if probe is None:
        return -1
    return _store(kind, _find(probe, "input", registry.tables), generation)


_slot_for_tracing._dynamo_marked_constant = True  # type: ignore[attr-defined]


def _probe(kind: type) -> Any:
    torch = sys.modules.get("torch")
    if torch is None or not (isinstance(kind, type) and issubclass(kind, torch.Tensor)):
        return None
    probe = torch.empty(0)
    if kind is not torch.Tensor:
        try:
            probe = probe.as_subclass(kind)
        except Exception:  # a wrapper subclass: a plain tensor stands for it
            pass
    return probe


def backend_of(x: Any, arg: str = "input") -> Backend:
    """The backend of one array (cached per type)."""
    slot = _slot(type(x), registry.generation)
    return _slots[slot] if slot >= 0 else _lookup(x, arg)


def resolve(input: Any, target: Any = None, *, input_name: str = "input", target_name: str = "target") -> Backend:
    """Backend shared by ``input`` and ``target``; ``TypeError`` if they differ."""
    slot = _slot(type(input), registry.generation)
    backend = _slots[slot] if slot >= 0 else _lookup(input, input_name)
    if target is not None and type(target) is not type(input):
        check_same(backend, target, target_name, input_name)
    return backend


def check_same(backend: Backend, other: Any, name: str, input_name: str = "input") -> None:
    """Raise ``TypeError`` unless ``other`` belongs to ``backend``'s namespace."""
    if other is None:
        return
    slot = _slot(type(other), registry.generation)
    other_backend = _slots[slot] if slot >= 0 else _lookup(other, name)
    if other_backend is not backend and other_backend.xp is not backend.xp:
        raise TypeError(
            f"{name} is a {type(other).__module__}.{type(other).__qualname__} "
            f"({other_backend.name}) but {input_name} is from {backend.name}: "
            "mixed array namespaces are not supported; convert one of them"
        )
