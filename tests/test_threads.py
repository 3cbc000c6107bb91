"""Thread safety of the plugin registry and the per-type namespace cache.

* First use from many threads at once: the registry is reloaded and the type ->
  backend cache cleared, then 16 threads released together by a barrier compute
  every loss on NumPy, array-api-strict and torch; each result must equal the
  single-threaded one.
* Registering and unregistering a plugin (with a loss) over and over while other
  threads compute losses and look names up: no exception, no wrong value.

``pl.fast_paths`` is a process-wide switch by design (so compiled graphs can guard
on it) and is therefore not exercised from several threads here.
"""

from __future__ import annotations

import threading
import types
from multiprocessing.pool import ThreadPool
from typing import Any

import numpy as np
import pytest
from _support import to_library

import polyloss as pl
from polyloss import _namespace
from polyloss._registry import registry
from polyloss._samples import sample

torch = pytest.importorskip("torch")
strict = pytest.importorskip("array_api_strict")

THREADS = 16
LIBRARIES = ("numpy", "strict", "torch")


def _compute(task: tuple[str, str, int]) -> float:
    name, library, seed = task
    x, y, opts = sample(name, seed)
    out = pl.get_loss(name)(to_library(library, x), to_library(library, y),
                            **{k: to_library(library, v) for k, v in opts.items()})
    return float(np.asarray(out.detach() if library == "torch" else out))


def _tasks() -> list[tuple[str, str, int]]:
    names = [n for n in pl.losses() if sample(n) is not None]
    return [(name, library, seed) for seed in range(2) for name in names for library in LIBRARIES]


@pytest.mark.parametrize("round_", range(3))
def test_first_use_from_many_threads_gives_correct_results(round_):
    tasks = _tasks()
    expected = [_compute(task) for task in tasks]
    registry.reload()
    _namespace.clear_cache()
    barrier = threading.Barrier(THREADS)

    def worker(i: int) -> list[float]:
        barrier.wait()  # every thread hits the cold registry and cache at once
        order = tasks[i % len(tasks):] + tasks[:i % len(tasks)]  # different first loss per thread
        got = dict(zip(order, map(_compute, order), strict=True))
        return [got[task] for task in tasks]

    with ThreadPool(THREADS) as pool:
        results = pool.map(worker, range(THREADS))
    for got in results:
        np.testing.assert_allclose(got, expected, rtol=1e-12, atol=0)
    assert sorted(registry.tables.losses) == pl.losses()


def _plugin() -> types.ModuleType:
    module = types.ModuleType("polyloss_thread_test_plugin")

    def double_mse(input: Any, target: Any, *, reduction: str = "mean") -> Any:
        return 2 * pl.mse_loss(input, target, reduction=reduction)

    @pl.hookimpl
    def polyloss_register_losses() -> dict[str, Any]:
        return {"thread_test_double_mse": double_mse}

    module.polyloss_register_losses = polyloss_register_losses
    return module


def test_register_plugin_while_other_threads_compute():
    tasks = _tasks()
    expected = dict(zip(tasks, map(_compute, tasks), strict=True))
    stop = threading.Event()
    errors: list[BaseException] = []
    checked = [0] * (THREADS - 1)

    def worker(i: int) -> None:
        rng = np.random.default_rng(i)
        try:
            while not stop.is_set():
                task = tasks[rng.integers(len(tasks))]
                assert _compute(task) == pytest.approx(expected[task], rel=1e-12)
                names = pl.losses()
                assert "mse_loss" in names
                if "thread_test_double_mse" in names:
                    try:
                        extra = pl.get_loss("thread_test_double_mse")
                    except ValueError:
                        pass  # unregistered between the two calls
                    else:
                        x = np.arange(4.0)
                        assert float(extra(x, x + 1)) == 2.0
                checked[i] += 1
        except BaseException as exc:  # reported in the main thread
            errors.append(exc)
            stop.set()

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(THREADS - 1)]
    for thread in threads:
        thread.start()
    try:
        for _ in range(40):
            name = pl.register_plugin(_plugin(), name="thread-test-plugin")
            assert "thread_test_double_mse" in pl.losses()
            pl.unregister_plugin(name)
            assert "thread_test_double_mse" not in pl.losses()
            if stop.is_set():
                break
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=60)
    assert not any(thread.is_alive() for thread in threads), "a worker thread hung"
    if errors:
        raise errors[0]
    assert min(checked) > 0
    assert "thread-test-plugin" not in registry.plugin_names()

