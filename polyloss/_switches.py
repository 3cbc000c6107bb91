"""Run-time switches every layer may read: whether backends' native fast paths are used.

A leaf module (it imports nothing from polyloss) so that the backends, the
lowest layer, read the switch without importing the namespace layer;
:mod:`polyloss._namespace` re-exports :func:`fast_paths` and
:func:`fast_paths_enabled`, and ``pl.fast_paths`` is this function.

The switch is per thread: a ``threading.local`` whose attribute is set on the
instance in every thread (in ``__init__``, which ``threading.local`` runs once
per thread). Not a ``ContextVar``: ``torch.compile`` cannot trace
``ContextVar.get``. Dynamo reads a ``threading.local`` instance attribute
through ``getattr`` and guards on it the same way, per thread, so a graph
compiled with the fast paths on is not reused under ``fast_paths(False)``
(verified in ``tests/test_threads.py``); a class-level default instead of
the instance attribute would not be guarded.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["fast_paths", "fast_paths_enabled", "switches"]


class _Switches(threading.local):
    """Per-thread switches; every thread starts with the defaults (not its parent's values)."""

    fast_paths: bool

    def __init__(self) -> None:
        self.fast_paths = True  # an instance attribute in every thread: torch.compile guards on it


switches = _Switches()


def fast_paths_enabled() -> bool:
    """Whether native whole-loss kernels may be used in the calling thread (true by default)."""
    return switches.fast_paths


@contextmanager
def fast_paths(enabled: bool) -> Iterator[None]:
    """Context manager turning backends' native fast paths on or off in the calling thread.

    With ``enabled=False`` every loss runs the generic array-API code, e.g. to
    compare it with the native kernel or to benchmark it. The switch is per
    thread: other threads keep their own setting, a new thread starts with the
    fast paths on, and the previous setting comes back on exit (also on an
    exception). It is per thread, not per asyncio task or ``contextvars``
    context. A function compiled with ``torch.compile`` guards on the switch:
    called under another setting it is compiled again for that setting, and
    the numbers are the same either way (a fast path gives the generic code's
    numbers).
    """
    state = switches
    previous = state.fast_paths
    state.fast_paths = bool(enabled)
    try:
        yield
    finally:
        state.fast_paths = previous
