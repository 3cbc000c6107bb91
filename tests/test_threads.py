"""Thread safety of the plugin registry and the per-type namespace cache.

* First use from many threads at once: the registry is reloaded and the type ->
  backend cache cleared, then 16 threads released together by a barrier compute
  every loss on NumPy, array-api-strict and torch; each result must equal the
  single-threaded one.
* Registering and unregistering a plugin (with a loss) over and over while other
  threads compute losses and look names up: no exception, no wrong value.
* ``pl.fast_paths`` is per thread: two threads toggling it at once never see each
  other's setting, and the main thread's is unchanged after; a graph compiled by
  ``torch.compile`` guards on the calling thread's setting.
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
    arrays, opts = sample(name, seed)
    out = pl.get_loss(name)(*[to_library(library, a) for a in arrays],
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



# -- the fast-path switch is per thread ----------------------------------------------------------

TOGGLES = 500


def test_fast_paths_toggled_by_two_threads_at_once():
    from polyloss._switches import fast_paths_enabled

    barrier = threading.Barrier(2, timeout=60)
    errors: list[str] = []

    def toggler(first: bool) -> None:
        for i in range(TOGGLES):
            setting = first if i % 2 else not first  # always the opposite of the other thread's
            with pl.fast_paths(setting):
                barrier.wait()  # both threads inside their own setting
                if fast_paths_enabled() is not setting:
                    errors.append(f"set {setting}, read {fast_paths_enabled()}")
                with pl.fast_paths(not setting):  # nested
                    if fast_paths_enabled() is setting:
                        errors.append("nested setting not seen")
                if _namespace.fast_paths_enabled() is not setting:
                    errors.append("outer setting not restored")
                barrier.wait()
        if not fast_paths_enabled():
            errors.append("left off in its own thread")

    threads = [threading.Thread(target=toggler, args=(first,)) for first in (True, False)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not errors, errors[:5]
    assert _namespace.fast_paths_enabled() is True  # the main thread's switch is untouched


def test_fast_paths_setting_does_not_leak_into_other_threads():
    off = threading.Event()
    checked = threading.Event()
    seen: dict[str, bool] = {}

    def switch_off() -> None:
        with pl.fast_paths(False):
            off.set()
            checked.wait(timeout=30)
            seen["own"] = _namespace.fast_paths_enabled()

    def observe() -> None:
        off.wait(timeout=30)
        seen["other"] = _namespace.fast_paths_enabled()
        checked.set()

    with pl.fast_paths(False):  # the main thread's setting is not inherited either
        threads = [threading.Thread(target=switch_off), threading.Thread(target=observe)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
        assert _namespace.fast_paths_enabled() is False
    assert seen == {"own": False, "other": True}
    assert _namespace.fast_paths_enabled() is True


def test_switch_state_is_what_the_loss_code_reads():
    from polyloss._switches import switches

    assert _namespace._switches is switches  # read as _switches.fast_paths by the loss plumbing
    with pl.fast_paths(False):
        assert switches.fast_paths is False
    assert switches.fast_paths is True


def test_compiled_loss_guards_on_the_calling_threads_switch():
    x = torch.randn(4, 3, dtype=torch.float64)
    y = torch.randn(4, 3, dtype=torch.float64)
    expected = pl.mse_loss(x, y)  # eager first: this test is about the switch, not first use
    graphs: list[set[str]] = []

    def record(gm: Any, example_inputs: Any) -> Any:
        graphs.append({getattr(node.target, "__name__", str(node.target)) for node in gm.graph.nodes
                       if node.op == "call_function"})
        return gm.forward

    torch._dynamo.reset()
    compiled = torch.compile(pl.mse_loss, fullgraph=True, backend=record)
    fast = compiled(x, y)
    with pl.fast_paths(False):
        generic = compiled(x, y)
    again = compiled(x, y)
    other: dict[str, Any] = {}

    def in_thread() -> None:
        with pl.fast_paths(False):
            other["generic"] = compiled(x, y)
        other["fast"] = compiled(x, y)

    thread = threading.Thread(target=in_thread)
    thread.start()
    thread.join(timeout=120)
    assert len(graphs) == 2, graphs  # one graph per setting, each reused by the other thread
    assert "mse_loss" in graphs[0]  # the fast path: PyTorch's own kernel
    assert "mse_loss" not in graphs[1] and "sub" in graphs[1]  # the generic code
    for value in (fast, generic, again, other["generic"], other["fast"]):
        torch.testing.assert_close(value, expected)
