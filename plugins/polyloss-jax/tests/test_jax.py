"""polyloss on JAX arrays: the conformance grid eagerly and under jax.jit, closed-form references,
jax.grad against finite differences, recipes, and the plugin's registration."""

from __future__ import annotations

import importlib.metadata
import math
import subprocess
import sys
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from polyloss_jax import JaxBackend

import polyloss as pl
from polyloss._registry import registry
from polyloss.testing.cases import Case
from polyloss.testing.conformance import BackendConformance
from polyloss.testing.conformance import check_recipe

RNG = np.random.default_rng(7)


def _installed() -> bool:
    try:
        importlib.metadata.distribution("polyloss-jax")
    except importlib.metadata.PackageNotFoundError:
        return False
    return True


# -- registration --------------------------------------------------------------


@pytest.mark.skipif(not _installed(), reason="polyloss-jax is not pip-installed (entry point absent)")
def test_entry_point_registers_the_backend_from_this_distribution():
    registry.reload()
    assert "jax" in pl.backends()
    assert registry.provider("backend", "jax") == ("jax", "polyloss-jax")
    assert not [f for f in registry.failures if f.plugin == "jax"]


def test_jax_arrays_resolve_to_the_plugin_backend_also_when_traced():
    from polyloss._namespace import backend_of

    x = jnp.ones(3)
    assert isinstance(backend_of(x), JaxBackend)
    seen = []
    jax.jit(lambda a: seen.append(backend_of(a)) or a)(x)
    assert isinstance(seen[0], JaxBackend)


def test_importing_the_plugin_does_not_import_jax():
    code = "import sys, polyloss, polyloss_jax, polyloss as pl; pl.backends(); print('jax' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False", out.stderr


# -- conformance grid ------------------------------------------------------------


class TestJaxConformance(BackendConformance):
    backend = "jax"


class TestJaxJitConformance(BackendConformance):
    backend = "jax"

    def transform(self, fn: Callable[..., Any]) -> Callable[..., Any]:
        return jax.jit(fn)


class TestJaxFloat32Conformance(BackendConformance):
    backend = "jax"
    rtol, atol = 2e-5, 1e-6

    def asarray(self, a: np.ndarray) -> Any:
        return jnp.asarray(a, dtype=jnp.float32 if a.dtype.kind == "f" else jnp.int64)


def test_result_is_a_jax_array_in_the_input_dtype():
    for dtype in (jnp.float32, jnp.float64):
        x = jnp.asarray(RNG.normal(size=(4, 3)), dtype=dtype)
        out = pl.cross_entropy(x, jnp.asarray([0, 2, 1, 1]))
        assert isinstance(out, jax.Array) and out.dtype == dtype and out.shape == ()


# -- independent references (closed-form float64 NumPy, written here) --------------


def _log_softmax(x: np.ndarray) -> np.ndarray:
    z = x - x.max(-1, keepdims=True)
    return z - np.log(np.exp(z).sum(-1, keepdims=True))


def _np_sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


X = RNG.normal(size=(6, 4)) * 2
Y = RNG.normal(size=(6, 4))
P = RNG.uniform(0.05, 0.95, size=(6, 4))
B = RNG.integers(0, 2, size=(6, 4)).astype(float)
LABELS = np.array([0, 3, 1, 2, 3, 0])
W = np.array([0.5, 1.0, 2.0, 1.5])

REFERENCES: dict[str, tuple[Callable[..., Any], np.ndarray, np.ndarray, dict[str, Any], float]] = {
    "mse": (pl.mse_loss, X, Y, {}, float(np.mean((X - Y) ** 2))),
    "l1-sum": (pl.l1_loss, X, Y, {"reduction": "sum"}, float(np.sum(np.abs(X - Y)))),
    "smooth_l1-beta0.5": (
        pl.smooth_l1_loss, X, Y, {"beta": 0.5},
        float(np.mean(np.where(np.abs(X - Y) < 0.5, 0.5 * (X - Y) ** 2 / 0.5, np.abs(X - Y) - 0.25))),
    ),
    "huber-delta2": (
        pl.huber_loss, X, Y, {"delta": 2.0},
        float(np.mean(np.where(np.abs(X - Y) < 2, 0.5 * (X - Y) ** 2, 2 * (np.abs(X - Y) - 1)))),
    ),
    "bce": (pl.binary_cross_entropy, P, B, {}, float(np.mean(-(B * np.log(P) + (1 - B) * np.log(1 - P))))),
    "bce_logits-pos_weight": (
        pl.binary_cross_entropy_with_logits, X, B, {"pos_weight": W},
        float(np.mean(-(W * B * np.log(_np_sigmoid(X)) + (1 - B) * np.log(1 - _np_sigmoid(X))))),
    ),
    "cross_entropy-weight": (
        pl.cross_entropy, X, LABELS, {"weight": W},
        float(-np.sum(W[LABELS] * _log_softmax(X)[np.arange(6), LABELS]) / np.sum(W[LABELS])),
    ),
    "cross_entropy-smoothing": (
        pl.cross_entropy, X, LABELS, {"label_smoothing": 0.2},
        float(np.mean(-(0.8 * _log_softmax(X)[np.arange(6), LABELS] + 0.2 * _log_softmax(X).mean(-1)))),
    ),
    "nll-sum": (pl.nll_loss, _log_softmax(X), LABELS, {"reduction": "sum"},
                float(-np.sum(_log_softmax(X)[np.arange(6), LABELS]))),
    "kl_div-batchmean": (
        pl.kl_div, _log_softmax(X), np.exp(_log_softmax(Y)), {"reduction": "batchmean"},
        float(np.sum(np.exp(_log_softmax(Y)) * (_log_softmax(Y) - _log_softmax(X))) / 6),
    ),
    "hinge": (pl.hinge_loss, X, 2 * B - 1, {}, float(np.mean(np.maximum(0, 1 - (2 * B - 1) * X)))),
    "sigmoid_focal": (
        pl.sigmoid_focal_loss, X, B, {},
        float(np.mean(
            np.where(B == 1, 0.25, 0.75)
            * (1 - np.where(B == 1, _np_sigmoid(X), 1 - _np_sigmoid(X))) ** 2
            * -np.log(np.where(B == 1, _np_sigmoid(X), 1 - _np_sigmoid(X)))
        )),
    ),
}


@pytest.mark.parametrize("jit", [False, True], ids=["eager", "jit"])
@pytest.mark.parametrize("key", sorted(REFERENCES))
def test_against_closed_form_float64_numpy(key, jit):
    fn, x, y, options, expected = REFERENCES[key]
    opts = {k: jnp.asarray(v) if isinstance(v, np.ndarray) else v for k, v in options.items()}

    def call(a: Any, b: Any) -> Any:
        return fn(a, b, **opts)

    out = (jax.jit(call) if jit else call)(jnp.asarray(x), jnp.asarray(y))
    assert out.dtype == jnp.float64
    np.testing.assert_allclose(float(out), expected, rtol=1e-12, atol=1e-14)


def test_xp_fixture_runs_on_jax_too(xp: Case):
    # the same test body on numpy, array-api-strict, torch and (through register_case) JAX
    out = pl.mse_loss(xp.asarray(X), xp.asarray(Y), reduction="none")
    np.testing.assert_allclose(xp.to_numpy(out), (X - Y) ** 2, rtol=xp.rtol, atol=xp.atol)


def test_xp_fixture_lists_the_registered_jax_cases(request):
    from polyloss.testing.cases import available_cases

    names = {case.name: reason for case, reason in available_cases()}
    assert names["jax-f64"] is None and names["jax-f32"] is None


# -- gradients ------------------------------------------------------------------------


def _central_differences(f: Callable[[np.ndarray], float], x: np.ndarray, h: float = 1e-6) -> np.ndarray:
    g = np.zeros_like(x)
    for i in np.ndindex(x.shape):
        e = np.zeros_like(x)
        e[i] = h
        g[i] = (f(x + e) - f(x - e)) / (2 * h)
    return g


BOXES1 = np.array([[0.0, 0.0, 2.0, 3.0], [1.0, 1.0, 4.0, 2.5], [2.0, 0.5, 3.0, 4.0]])
BOXES2 = np.array([[0.5, 0.2, 2.5, 2.0], [0.0, 1.5, 3.0, 3.0], [5.0, 5.0, 6.0, 7.0]])
GRAD_CASES = {
    "cross_entropy": (pl.cross_entropy, X, LABELS, {"label_smoothing": 0.1}),
    "smooth_l1_loss": (pl.smooth_l1_loss, X, Y, {"beta": 0.7}),
    "sigmoid_focal_loss": (pl.sigmoid_focal_loss, X, B, {"gamma": 1.5}),
    "softmax_focal_loss": (pl.softmax_focal_loss, X, LABELS, {}),
    "giou_loss": (pl.giou_loss, BOXES1, BOXES2, {}),
    "diou_loss": (pl.diou_loss, BOXES1, BOXES2, {}),  # not ciou: its alpha is held constant (torchvision)
    "multi_margin_loss": (pl.multi_margin_loss, X, LABELS, {"p": 2}),
}


@pytest.mark.parametrize("name", sorted(GRAD_CASES))
def test_jax_grad_matches_finite_differences(name):
    fn, x, y, options = GRAD_CASES[name]
    target = jnp.asarray(y)
    grad = jax.jit(jax.grad(lambda a: fn(a, target, **options)))(jnp.asarray(x))
    numeric = _central_differences(lambda a: float(fn(jnp.asarray(a), target, **options)), x)
    np.testing.assert_allclose(np.asarray(grad), numeric, rtol=1e-6, atol=1e-8)


def test_jax_grad_agrees_with_polyloss_closed_form_gradient_on_numpy():
    for name in ("cross_entropy", "sigmoid_focal_loss", "smooth_l1_loss"):
        fn, x, y, options = GRAD_CASES[name]
        grad = jax.grad(lambda a, fn=fn, y=y, options=options: fn(a, jnp.asarray(y), **options))(jnp.asarray(x))
        _, closed_form = pl.value_and_grad(fn, x, y, **options)
        np.testing.assert_allclose(np.asarray(grad), closed_form, rtol=1e-10, atol=1e-12, err_msg=name)


def test_gradients_are_finite_at_extreme_logits_under_jit():
    x = jnp.asarray([[1e4, -1e4, 0.0], [-1e4, 1e4, 50.0]])
    for loss, target in ((pl.cross_entropy, jnp.asarray([1, 0])),
                         (pl.binary_cross_entropy_with_logits, jnp.asarray([[1.0, 0.0, 1.0], [0.0, 0.0, 1.0]]))):
        value, grad = jax.jit(jax.value_and_grad(lambda a, loss=loss, t=target: loss(a, t)))(x)
        assert math.isfinite(float(value)) and bool(jnp.isfinite(grad).all()), loss.__name__


def test_stop_gradient_blocks_the_gradient():
    backend = JaxBackend()
    g = jax.grad(lambda a: jnp.sum(backend.stop_gradient(a) * a))(jnp.asarray([1.0, 2.0]))
    np.testing.assert_allclose(np.asarray(g), [1.0, 2.0])  # d/da (c * a) with c held constant


def test_vmap_over_a_batch_of_problems():
    xs = jnp.asarray(RNG.normal(size=(3, 5, 4)))
    ts = jnp.asarray(RNG.integers(0, 4, size=(3, 5)))
    batched = jax.vmap(lambda a, t: pl.cross_entropy(a, t))(xs, ts)
    one_by_one = [float(pl.cross_entropy(xs[i], ts[i])) for i in range(3)]
    np.testing.assert_allclose(np.asarray(batched), one_by_one, rtol=1e-12)


def test_value_checks_of_host_backends_are_skipped_under_jit():
    # the backend is not a host backend: an out-of-range class cannot be seen while tracing,
    # so no Python control flow on values runs and jit traces; on NumPy it is a ValueError
    with pytest.raises(ValueError, match="target"):
        pl.cross_entropy(X, np.array([0, 9, 1, 2, 3, 0]))
    out = jax.jit(pl.cross_entropy)(jnp.asarray(X), jnp.asarray([0, 1, 1, 2, 3, 0]))
    assert out.shape == ()


# -- recipes on JAX ----------------------------------------------------------------------


JAX_CASES = [Case("jax-f64", "jax.numpy", "float64"), Case("jax-f32", "jax.numpy", "float32", rtol=2e-5, atol=1e-6)]


def _yolo_inputs(rng: np.random.Generator) -> tuple[Any, ...]:
    pred = rng.normal(size=(2, 7, 7, 30)) * 0.3
    boxes = np.array([[[0.1, 0.1, 0.4, 0.5], [0.52, 0.55, 0.9, 0.8]], [[0.2, 0.3, 0.6, 0.7], [0.0, 0.0, 0.0, 0.0]]])
    return pred, boxes, np.array([[1, 3], [5, -1]])


def _yolo_empty(rng: np.random.Generator) -> tuple[Any, ...]:
    pred, boxes, labels = _yolo_inputs(rng)
    return pred, boxes, np.full_like(labels, -1)


def test_yolov1_recipe_on_jax_matches_numpy():
    report = check_recipe("yolov1", _yolo_inputs, make_empty_inputs=_yolo_empty, cases=JAX_CASES)
    assert report.cases == ["jax-f64", "jax-f32"]
    assert report.components == ["coord", "obj", "noobj", "class"]


def test_yolov1_recipe_under_jit_and_grad():
    pred, boxes, labels = _yolo_inputs(np.random.default_rng(0))
    recipe = pl.get_recipe("yolov1")
    eager = recipe(pred, boxes, labels)
    total, grad = jax.jit(jax.value_and_grad(
        lambda p: recipe(p, jnp.asarray(boxes), jnp.asarray(labels)).total
    ))(jnp.asarray(pred))
    np.testing.assert_allclose(float(total), float(eager.total), rtol=1e-12)
    assert bool(jnp.isfinite(grad).all()) and float(jnp.abs(grad).sum()) > 0


def _ssd_inputs(rng: np.random.Generator) -> tuple[Any, ...]:
    p = 12
    centre, size = rng.uniform(0.1, 0.9, size=(p, 2)), rng.uniform(0.1, 0.3, size=(p, 2))
    priors = np.concatenate([centre - size / 2, centre + size / 2], axis=1)
    gt = np.array([[[0.1, 0.1, 0.4, 0.45], [0.5, 0.5, 0.8, 0.9]], [[0.2, 0.3, 0.5, 0.6], [0.0, 0.0, 0.0, 0.0]]])
    return rng.normal(size=(2, p, 4)) * 0.1, rng.normal(size=(2, p, 4)), priors, gt, np.array([[1, 2], [3, -1]])


def _ssd_empty(rng: np.random.Generator) -> tuple[Any, ...]:
    *arrays, labels = _ssd_inputs(rng)
    return (*arrays, np.full_like(labels, -1))


@pytest.mark.skipif("ssd" not in pl.recipes(), reason="this polyloss has no ssd recipe")
def test_ssd_recipe_on_jax_eager_and_jit():
    check_recipe("ssd", _ssd_inputs, config={"num_classes": 4}, make_empty_inputs=_ssd_empty, cases=JAX_CASES)
    inputs = _ssd_inputs(np.random.default_rng(0))
    recipe = pl.get_recipe("ssd", num_classes=4)
    eager = float(recipe(*inputs).total)
    jitted = jax.jit(lambda *a: recipe(*a, validate=False).total)(*[jnp.asarray(a) for a in inputs])
    np.testing.assert_allclose(float(jitted), eager, rtol=1e-12)


def test_faster_rcnn_rpn_and_head_under_jit():
    """With an int seed the sampler's keys are a hash computed in the traced function: the eager sample."""
    recipe = pl.get_recipe("faster_rcnn", num_classes=3, seed=0, rpn_batch_size=4, validate=False)
    rng = np.random.default_rng(0)
    anchors = np.array([[0, 0, 10, 10], [5, 5, 20, 20], [30, 30, 60, 50], [0, 40, 15, 60.0], [2, 2, 12, 13]])
    gt, labels = np.array([[[1, 1, 11, 12], [28, 30, 58, 52.0]]]), np.array([[1, 2]])
    objectness, deltas = rng.normal(size=(1, 5)), 0.1 * rng.normal(size=(1, 5, 4))
    inputs = [jnp.asarray(v) for v in (anchors, objectness, deltas, gt, labels)]
    eager = recipe.rpn_loss(*inputs)
    jitted = jax.jit(lambda *a: recipe.rpn_loss(*a).components)(*inputs)
    for name, value in eager.components.items():
        np.testing.assert_allclose(float(jitted[name]), float(value), rtol=1e-12)
    sampled = recipe.sample_proposals(jnp.asarray(anchors[None]), inputs[3], inputs[4])
    r = sampled.labels.shape[1]
    logits, box_deltas = jnp.asarray(rng.normal(size=(1, r, 3))), jnp.asarray(rng.normal(size=(1, r, 3, 4)))
    head = jax.jit(lambda c, b: recipe.roi_loss(c, b, sampled).total)(logits, box_deltas)
    np.testing.assert_allclose(float(head), float(recipe.roi_loss(logits, box_deltas, sampled).total), rtol=1e-12)


def test_faster_rcnn_sampling_under_jit_takes_a_traced_seed():
    """A step counter as a 0-d array seed: traced, so one compiled function gives each step the int's sample."""
    recipe = pl.get_recipe("faster_rcnn", num_classes=3, rpn_batch_size=3, validate=False)
    rng = np.random.default_rng(1)
    corners = rng.uniform(0, 40, (40, 2))
    anchors = np.concatenate([corners, corners + rng.uniform(8, 20, (40, 2))], axis=1)
    gt, labels = np.array([[[1, 1, 21, 22], [18, 20, 38, 42.0]]] * 2), np.array([[1, 2]] * 2)
    objectness, deltas = rng.normal(size=(2, 40)), 0.1 * rng.normal(size=(2, 40, 4))
    inputs = [jnp.asarray(v) for v in (anchors, objectness, deltas, gt, labels)]
    traces = []

    def rpn(step, *arrays):
        traces.append(1)
        return recipe.rpn_loss(*arrays, seed=step).components

    jitted = jax.jit(rpn)
    totals = set()
    for step in (0, 1, 7):
        got = jitted(jnp.asarray(step, dtype=jnp.int64), *inputs)
        eager = recipe.rpn_loss(*inputs, seed=step).components
        for name, value in eager.items():
            np.testing.assert_allclose(float(got[name]), float(value), rtol=1e-12, err_msg=f"step {step} {name}")
        totals.add(round(sum(float(v) for v in got.values()), 12))
    assert len(traces) == 1 and len(totals) == 3
