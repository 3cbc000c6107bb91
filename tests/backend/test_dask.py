"""dask.array: every loss and its closed-form gradient lazily (nothing computed inside a call), equal to
NumPy; a full-batch logistic regression trained on a ``dask.distributed`` cluster equals NumPy's."""

from __future__ import annotations

import time

import numpy as np
import pytest

import polyloss as pl

da = pytest.importorskip("dask.array")
dask = pytest.importorskip("dask")

RNG = np.random.default_rng(11)
N, C = 48, 5


def _no_compute(*args, **kwargs):
    raise AssertionError("a polyloss call computed a dask graph")


def _inputs() -> dict[str, tuple[np.ndarray, np.ndarray, dict]]:
    x = RNG.normal(size=(N, C))
    p = 1.0 / (1.0 + np.exp(-x))
    soft = RNG.uniform(size=(N, C))
    binary = (RNG.uniform(size=(N, C)) > 0.5).astype(float)
    index = RNG.integers(0, C, N)
    signs = np.where(binary > 0, 1.0, -1.0)
    lo = RNG.uniform(0, 1, (N, 2))
    boxes1 = np.concatenate([lo, lo + RNG.uniform(0.2, 1.0, (N, 2))], axis=1)
    boxes2 = boxes1 + RNG.normal(scale=0.1, size=boxes1.shape)
    probabilities = soft / soft.sum(axis=1, keepdims=True)
    return {
        "mse_loss": (x, soft, {"weight": RNG.uniform(size=C)}),
        "l1_loss": (x, soft, {}),
        "smooth_l1_loss": (x, soft, {"beta": 0.5}),
        "huber_loss": (x, soft, {"delta": 0.7, "reduction": "sum"}),
        "binary_cross_entropy": (p, soft, {}),
        "binary_cross_entropy_with_logits": (x, binary, {"pos_weight": RNG.uniform(0.5, 2.0, C)}),
        "cross_entropy": (x, index, {"label_smoothing": 0.1, "weight": RNG.uniform(0.5, 2.0, C)}),
        "cross_entropy-probabilities": (x, probabilities, {}),
        "nll_loss": (np.log(p), index, {"reduction": "none"}),
        "kl_div": (np.log(probabilities), probabilities[::-1].copy(), {"reduction": "batchmean"}),
        "hinge_loss": (x, signs, {}),
        "squared_hinge_loss": (x, signs, {"margin": 0.5}),
        "multi_margin_loss": (x, index, {"p": 2}),
        "sigmoid_focal_loss": (x, binary, {}),
        "softmax_focal_loss": (x, index, {"gamma": 1.5}),
        "iou_loss": (boxes1, boxes2, {}),
        "giou_loss": (boxes1, boxes2, {}),
        "diou_loss": (boxes1, boxes2, {}),
        "ciou_loss": (boxes1, boxes2, {}),
    }


INPUTS = _inputs()


def _dask(a: np.ndarray) -> object:
    return da.from_array(a, chunks=(8,) + (-1,) * (a.ndim - 1))


def test_every_builtin_loss_is_covered():
    assert {key.split("-")[0] for key in INPUTS} >= set(pl.losses()) & set(INPUTS)
    from polyloss.functional import BUILTIN_LOSSES

    first_set = {"mse_loss", "l1_loss", "smooth_l1_loss", "huber_loss", "binary_cross_entropy",
                 "binary_cross_entropy_with_logits", "cross_entropy", "nll_loss", "kl_div", "hinge_loss",
                 "squared_hinge_loss", "multi_margin_loss", "sigmoid_focal_loss", "softmax_focal_loss",
                 "iou_loss", "giou_loss", "diou_loss", "ciou_loss"}
    assert first_set <= set(BUILTIN_LOSSES)


@pytest.mark.parametrize("key", sorted(INPUTS))
def test_loss_and_gradient_are_lazy_and_equal_numpy(key):
    x, y, options = INPUTS[key]
    fn = pl.get_loss(key.split("-")[0])
    lazy_options = {k: (_dask(v) if isinstance(v, np.ndarray) else v) for k, v in options.items()}
    with dask.config.set(scheduler=_no_compute):
        value = fn(_dask(x), _dask(y), **lazy_options)
        lazy_value, grad = pl.value_and_grad(fn, _dask(x), _dask(y), **lazy_options)
    assert isinstance(value, da.Array) and isinstance(grad, da.Array)
    expected_value, expected_grad = pl.value_and_grad(fn, x, y, **options)
    np.testing.assert_allclose(value.compute(), expected_value, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(lazy_value.compute(), expected_value, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(grad.compute(), expected_grad, rtol=1e-12, atol=1e-14)


def test_backend_of_a_dask_array():
    x = _dask(INPUTS["mse_loss"][0])
    assert pl.get_backend("dask").matches(x)
    from polyloss._namespace import backend_of

    assert backend_of(x).name == "dask"


def test_take_along_axis_with_the_class_axis_chunked():
    backend = pl.get_backend("dask")
    x = RNG.normal(size=(12, 9))
    idx = RNG.integers(0, 9, (12, 1))
    got = backend.take_along_axis(da.from_array(x, chunks=(5, 4)), da.from_array(idx, chunks=(3, 1)), axis=1)
    np.testing.assert_array_equal(got.compute(), np.take_along_axis(x, idx, axis=1))


def _logistic_regression(xp_value_and_grad, features, labels, steps: int, lr: float):
    w = np.zeros(features.shape[1])
    history = []
    for _ in range(steps):
        value, grad_logits = xp_value_and_grad(w)
        history.append(value)
        w = w - lr * grad_logits
    return w, history


@pytest.mark.slow
def test_logistic_regression_on_a_distributed_cluster_equals_numpy():
    distributed = pytest.importorskip("distributed")
    rng = np.random.default_rng(5)
    n, d, chunk = 4000, 6, 250  # 16 chunks
    features = rng.normal(size=(n, d))
    true_w = rng.normal(size=d)
    labels = (features @ true_w + rng.normal(scale=0.5, size=n) > 0).astype(float)

    def numpy_step(w):
        value, g = pl.value_and_grad("binary_cross_entropy_with_logits", features @ w, labels)
        return float(value), features.T @ g

    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None,
                                  silence_logs=40) as cluster, distributed.Client(cluster) as client:
        lazy_features = da.from_array(features, chunks=(chunk, d)).persist()
        lazy_labels = da.from_array(labels, chunks=chunk).persist()
        assert lazy_features.npartitions == n // chunk

        def dask_step(w):
            value, g = pl.value_and_grad("binary_cross_entropy_with_logits", lazy_features @ w, lazy_labels)
            value, grad = dask.compute(value, lazy_features.T @ g)
            return float(value), grad

        start = time.perf_counter()
        w_dask, history_dask = _logistic_regression(dask_step, features, labels, steps=8, lr=1.0)
        elapsed = time.perf_counter() - start
        workers = len(client.scheduler_info()["workers"])
    w_numpy, history_numpy = _logistic_regression(numpy_step, features, labels, steps=8, lr=1.0)
    assert workers == 2
    assert history_dask[-1] < history_dask[0]
    np.testing.assert_allclose(history_dask, history_numpy, rtol=1e-12)
    np.testing.assert_allclose(w_dask, w_numpy, rtol=1e-10, atol=1e-12)
    print(f"dask cluster: {workers} workers, {n // chunk} chunks, 8 steps in {elapsed:.2f} s, "
          f"max |w_dask - w_numpy| = {np.max(np.abs(w_dask - w_numpy)):.2e}")


def test_get_backend_takes_an_array_or_a_name():
    x = _dask(INPUTS["mse_loss"][0])
    assert pl.get_backend(x) is pl.get_backend("dask")
    assert pl.get_backend(np.ones(2)) is pl.get_backend("numpy")
    with pytest.raises(TypeError, match="array"):
        pl.get_backend(object())


@pytest.mark.parametrize("name", ["ssd", "yolov1", "faster_rcnn"])
def test_recipe_is_lazy_and_equals_numpy(name):
    from polyloss._samples import recipe_sample

    config, run = recipe_sample(name)
    recipe = pl.get_recipe(name, **config)
    expected = run(recipe, np.asarray)
    with dask.config.set(scheduler=_no_compute):
        lazy = run(recipe, _dask)
    assert isinstance(lazy.total, da.Array)
    np.testing.assert_allclose(lazy.total.compute(), expected.total, rtol=1e-12, atol=1e-14)
    for component, value in expected.components.items():
        np.testing.assert_allclose(lazy.components[component].compute(), value, rtol=1e-12, atol=1e-14)


def test_ctc_is_lazy_and_equals_numpy():
    from polyloss._samples import sample

    arrays, options = sample("ctc_loss")
    expected_value, expected_grad = pl.value_and_grad("ctc_loss", *arrays, **options)
    lazy = [_dask(a) for a in arrays]
    with dask.config.set(scheduler=_no_compute):
        value, grad = pl.value_and_grad("ctc_loss", *lazy, **options)
    assert isinstance(value, da.Array) and isinstance(grad, da.Array)
    np.testing.assert_allclose(value.compute(), expected_value, rtol=1e-12)
    np.testing.assert_allclose(grad.compute(), expected_grad, rtol=1e-12, atol=1e-14)
