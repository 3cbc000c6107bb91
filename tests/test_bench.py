"""The benchmark's helpers and the NumPy fast paths it motivated (values against NumPy written here)."""

from __future__ import annotations

import numpy as np
import pytest

import polyloss as pl
from polyloss._tools import bench as _bench
from polyloss.boxes import max_argmax_rows
from polyloss.boxes import top_k_mask


def _logsumexp(x):
    m = x.max(-1, keepdims=True)
    return np.log(np.exp(x - m).sum(-1)) + m[:, 0]


@pytest.mark.parametrize("ignore", [False, True])
def test_numpy_cross_entropy_and_nll_fast_paths(ignore):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((50, 7))
    t = rng.integers(0, 7, 50)
    if ignore:
        t[::3] = -100
    keep = t != -100
    expected_ce = np.mean(_logsumexp(x)[keep] - x[np.arange(50), np.where(keep, t, 0)][keep])
    expected_nll = -np.mean(x[np.arange(50), np.where(keep, t, 0)][keep])
    np.testing.assert_allclose(pl.cross_entropy(x, t), expected_ce, rtol=1e-12)
    np.testing.assert_allclose(pl.nll_loss(x, t), expected_nll, rtol=1e-12)
    all_ignored = np.full(50, -100)
    assert float(pl.cross_entropy(x, all_ignored)) == 0.0
    assert float(pl.nll_loss(x, all_ignored)) == 0.0


def test_numpy_bce_and_hinge_fast_paths():
    rng = np.random.default_rng(1)
    p = rng.uniform(0, 1, (20, 30))
    p[0, 0], p[0, 1] = 0.0, 1.0
    y = rng.integers(0, 2, (20, 30)).astype(np.float64)
    with np.errstate(divide="ignore"):
        expected = -np.mean(y * np.maximum(np.log(p), -100) + (1 - y) * np.maximum(np.log(1 - p), -100))
    np.testing.assert_allclose(pl.binary_cross_entropy(p, y), expected, rtol=1e-12)
    s = rng.standard_normal((20, 30))
    signed = 2 * y - 1
    np.testing.assert_allclose(pl.hinge_loss(s, y), np.mean(np.maximum(0, 1 - signed * s)), rtol=1e-12)
    np.testing.assert_allclose(pl.squared_hinge_loss(s, signed, reduction="sum"),
                               np.sum(np.maximum(0, 1 - signed * s) ** 2), rtol=1e-12)
    with pytest.raises(ValueError, match="labels in"):
        pl.hinge_loss(s, y * 2)


def test_top_k_mask_equals_a_stable_ranking_with_ties():
    rng = np.random.default_rng(2)
    keys = rng.integers(0, 5, (6, 40)).astype(np.float64)  # many ties
    k = rng.integers(0, 45, (6, 1))
    backend = pl.get_backend("numpy")
    for descending in (False, True):
        order = np.argsort(-keys if descending else keys, axis=-1, kind="stable")
        ranks = np.argsort(order, axis=-1, kind="stable")
        np.testing.assert_array_equal(top_k_mask(backend, keys, k, descending=descending), ranks < k)


def test_max_argmax_rows_takes_the_first_maximum():
    rng = np.random.default_rng(3)
    q = rng.integers(0, 3, (4, 9, 25)).astype(np.float32)
    best, index = max_argmax_rows(pl.get_backend("numpy").xp, q)
    np.testing.assert_array_equal(best, q.max(axis=-2))
    np.testing.assert_array_equal(index, q.argmax(axis=-2))


def test_cross_entropy_materialises_no_one_hot():
    torch = pytest.importorskip("torch")
    x = torch.randn(256, 1000, requires_grad=True)
    t = torch.randint(0, 1000, (256,))
    for enabled in (True, False):
        def step(enabled=enabled):
            with pl.fast_paths(enabled):
                torch.autograd.grad(pl.cross_entropy(x, t), x)

        seen = _bench.logits_sized_outputs(step, (256, 1000))
        assert seen and all("float" in dtype for _, dtype in seen), seen
        assert len(seen) <= (3 if enabled else 5), seen


def test_recipe_inputs_have_the_stated_sizes():
    ssd = _bench.ssd_inputs()
    assert ssd["class_logits"].shape == (32, 8732, 21) and ssd["gt_boxes"].shape == (32, 10, 4)
    assert all(1 <= c <= 10 for c in ssd["counts"])
    rpn = _bench.rpn_inputs()
    assert rpn["objectness"].shape == (8, 20000) and rpn["rpn_deltas"].shape == (8, 20000, 4)


@pytest.mark.parametrize("name", ["sigmoid_focal_loss", "giou_loss", "diou_loss", "ciou_loss"])
def test_torch_references_of_the_chains_of_small_ops_give_polyloss_values(name):
    torch = pytest.importorskip("torch")
    x, y = (torch.from_numpy(a).double() for a in _bench._data(name, 64, 32, np.random.default_rng(5)))
    assert name in _bench.TORCH_ONLY
    if name != "sigmoid_focal_loss":
        assert x.shape == (512, 4)
    reference = _bench._torch_reference(name)(x, y)
    with pl.fast_paths(False):
        np.testing.assert_allclose(reference.item(), pl.get_loss(name)(x, y).item(), rtol=1e-12)


def test_gpu_rows_only_where_a_gpu_is():
    from polyloss._tools.bench import _synchronized
    from polyloss._tools.bench import gpu_backends

    torch = pytest.importorskip("torch")
    found = gpu_backends()
    assert ("torch-cuda" in found) == torch.cuda.is_available()
    calls = []
    timed = _synchronized(lambda: calls.append("work") or 7, lambda: calls.append("sync"))
    assert timed() == 7 and calls == ["work", "sync"]


def test_torch_rows_on_a_named_device():
    from polyloss._tools.bench import bench_torch

    pytest.importorskip("torch")
    rows = bench_torch(["mse_loss"], {"tiny": (2, 3)}, repeat=1, threads=[None], progress=lambda m: None,
                       device="cpu")
    assert {r.backend for r in rows} == {"torch"} and {r.mode for r in rows} == {"forward", "forward+backward"}


def test_table_columns_stay_aligned_for_long_size_names():
    from polyloss._tools.bench import Row
    from polyloss._tools.bench import format_table

    rows = [Row("cross_entropy", "torch", size, "forward", "1", 2.0, 1.0, None) for size in ("tiny", "65536x1000")]
    lines = format_table(rows).splitlines()
    assert len({line.index("forward") for line in lines[1:]}) == 1
    assert lines[0].index("mode") == lines[1].index("forward")


def test_recipe_rows_on_a_named_device_run_polyloss_generic_and_torchvision(monkeypatch):
    # the GPU rows call the same function with device="cuda" and a synchronisation
    from polyloss._tools import bench as _bench

    pytest.importorskip("torch")
    calls = []

    def once(fn, repeat, min_time=0.05):
        fn()
        calls.append(fn)
        return 1.0

    monkeypatch.setattr(_bench, "_median_time", once)
    monkeypatch.setattr(_bench, "_median_and_spread", lambda fn, repeat, min_time=0.05: (once(fn, repeat), 0.0))
    monkeypatch.setattr(_bench, "_interleaved", lambda fns, repeat, min_time=0.05: [(once(f, repeat), 0.0)
                                                                                    for f in fns])
    rows = _bench._bench_torch_recipe("rpn", "cpu", repeat=1, threads=[1], progress=lambda m: None)
    assert [r.mode for r in rows] == ["forward", "forward+backward"]
    assert all(r.backend == "torch" and r.generic_s == 1.0 for r in rows)
    if _bench.torchvision_available():
        assert all(r.vs_torchvision == 1.0 for r in rows) and len(calls) == 6


def test_second_set_rows_time_polyloss_against_each_reference(monkeypatch):
    pytest.importorskip("torch")
    from polyloss._tools import bench as _bench
    from polyloss._tools import bench_second

    calls = []

    def once(fn, repeat, min_time=0.05):
        calls.append(fn)
        fn()
        return 1.0 + len(calls) % 2  # reference and polyloss alternate: ratios 2 / 1 and 1 / 2 tell them apart

    monkeypatch.setattr(_bench, "_interleaved", lambda fns, repeat, min_time=0.05: [(once(f, repeat), 0.0)
                                                                                    for f in fns])
    rows = bench_second.bench_torch_second(repeat=1, progress=lambda m: None)
    assert [r.loss for r in rows] == list(bench_second._torch_cases(np.random.default_rng(0)))
    assert {r.loss for r in rows} <= set(pl.losses())
    rows += bench_second.bench_segmentation(repeat=1, progress=lambda m: None, memory=False, shape=(2, 3, 8, 8))
    rows += bench_second.bench_ctc(repeat=1, progress=lambda m: None)
    assert {r.table for r in rows} == {"torch", "segmentation", "ctc"}
    assert all(r.ratio == 0.5 for r in rows)  # the reference is timed first, polyloss second
    table = bench_second.format_second_table(rows)
    for r in rows:
        assert r.loss in table


def test_second_set_peak_memory_is_measured_in_a_fresh_interpreter():
    pytest.importorskip("torch")
    import sys

    from polyloss._tools import bench_second

    if sys.platform != "linux":
        pytest.skip("ru_maxrss is read on Linux only")
    assert bench_second.peak_mib("polyloss", "dice_loss") > 0


def test_hand_written_fused_references_agree_with_value_and_grad():
    """The bench's hand-written NumPy value-and-gradient references compute what polyloss computes."""
    for case, (name, arrays, options, reference, ref_args) in _bench._vg_cases(64, 7, np.random.default_rng(3)).items():
        value, grad = pl.value_and_grad(name, *arrays, **options)
        ref_value, ref_grad = reference(*ref_args)
        np.testing.assert_allclose(value, ref_value, rtol=2e-5, err_msg=case)
        np.testing.assert_allclose(grad, ref_grad, rtol=2e-4, atol=1e-7, err_msg=case)


def test_value_and_grad_table_flags_spread_rows():
    rows = _bench.bench_value_and_grad({"8x5": (8, 5)}, repeat=2, progress=lambda m: None, cases=["mse_loss"])
    assert [r.case for r in rows] == ["mse_loss"] and rows[0].reference_peak > 0
    rows[0].spread = 0.5
    table = _bench.format_grad_table(rows)
    assert table.splitlines()[1].endswith(" *") and "unreliable" in table


def test_yolov1_torch_reference_gives_the_recipe_value_and_gradient():
    torch = pytest.importorskip("torch")
    loss, (pred,), reference, name = _bench.recipe_case("yolov1", 6)
    assert name == "hand-vectorised torch" and tuple(pred.shape) == (6, 7, 7, 30)
    x = pred.clone().requires_grad_()  # float32, as the rows
    ours, theirs = loss(x), reference(x)
    np.testing.assert_allclose(ours.item(), theirs.item(), rtol=1e-6)
    (g_ours,), (g_theirs,) = torch.autograd.grad(ours, x), torch.autograd.grad(theirs, x)
    np.testing.assert_allclose(g_ours.numpy(), g_theirs.numpy(), rtol=1e-5, atol=1e-6)


def test_faster_rcnn_rows_sample_the_same_counts_as_torchvision():
    torch = pytest.importorskip("torch")
    if not _bench.torchvision_available():
        pytest.skip("torchvision is not importable")
    data = _bench.faster_rcnn_inputs(2)
    assert data["proposals"].shape == (2, 2000, 4) and data["class_logits"].shape == (2, 512, 91)
    loss, preds, reference, name = _bench.recipe_case("faster_rcnn", 2)
    assert name == "torchvision" and reference is not None
    args = tuple(p.clone().requires_grad_(True) for p in preds)
    for f in (loss, reference):  # both consume all 2 x 512 head rows (fastrcnn_loss checks the count)
        out = f(*args)
        grads = torch.autograd.grad(out, args)
        assert bool(torch.isfinite(out)) and all(g.shape == a.shape for g, a in zip(grads, args, strict=True))


def test_scaling_and_compile_tables_list_every_row():
    rows = [_bench.ScalingRow("ssd", 2, "forward", 2e-3, 4e-3, "torchvision", None),
            _bench.ScalingRow("yolov1", 64, "forward+backward", 3e-3, None, "hand-vectorised torch", 0.9)]
    lines = _bench.format_scaling_table(rows).splitlines()
    assert len(lines) == 3 and "0.50" in lines[1] and "n/a" in lines[2] and "0.90" in lines[2]
    compiled = [_bench.CompileRow("ssd", 8, 0.04, 0.03, 41.5, 0)]
    table = _bench.format_compile_table(compiled)
    assert "0.75" in table and "41.5" in table and table.splitlines()[1].rstrip().endswith("0")


def test_interleaved_timing_takes_each_callables_loops_in_turn_after_a_warm_up(monkeypatch):
    import types

    from polyloss._tools import bench as _bench

    order = []

    def fake_timeit(fn, number):  # every call takes one second
        for _ in range(number):
            fn()
        return float(number)

    monkeypatch.setattr(_bench, "timeit", types.SimpleNamespace(timeit=fake_timeit))

    def make(name):
        return lambda: order.append(name)

    results = _bench._interleaved([make("a"), make("b")], repeat=3, min_time=0.5)
    # calibration: one call each reaches min_time on this clock; then one warm-up each; then a b a b a b
    assert order == ["a", "b", "a", "b", "a", "b", "a", "b", "a", "b"]
    assert [r[0] for r in results] == [1.0, 1.0] and all(r[1] == 0.0 for r in results)
