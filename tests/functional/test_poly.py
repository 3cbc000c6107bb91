"""poly1_cross_entropy against optax's ``poly_loss_cross_entropy`` (jax on the CPU, float64) on every
backend: values, closed-form gradients and, on torch, autograd of the generic code."""

from __future__ import annotations

import numpy as np
import pytest
from _support import t64
from functional._second_set_support import assert_compiles
from functional._second_set_support import check_multi

import polyloss as pl

REDUCTIONS = ["none", "mean", "sum"]


_CACHE: dict = {}


def _optax_poly1(x, q, epsilon, axis, reduction):
    """optax on class probabilities ``q`` (a one-hot for class indices), with the class axis ``axis``
    (computed once per data and options: every backend case compares with the same numbers)."""
    key = (x.tobytes(), x.shape, q.tobytes(), epsilon, axis, reduction)
    if key not in _CACHE:
        _CACHE[key] = _optax_poly1_uncached(x, q, epsilon, axis, reduction)
    return _CACHE[key]


def _optax_poly1_uncached(x, q, epsilon, axis, reduction):
    jax = pytest.importorskip("jax")
    optax = pytest.importorskip("optax")
    jax.config.update("jax_enable_x64", True)
    jnp = jax.numpy

    def total(a):
        loss = optax.losses.poly_loss_cross_entropy(a, jnp.asarray(q), epsilon=epsilon, axis=axis)
        return {"none": loss, "mean": jnp.mean(loss), "sum": jnp.sum(loss)}[reduction]

    value = total(jnp.asarray(x))
    grad = jax.grad(lambda a: jnp.sum(total(a)))(jnp.asarray(x))
    return np.asarray(value), np.asarray(grad)


def _one_hot(t, c, axis):
    return np.moveaxis(np.eye(c)[t], -1, axis)


LAYOUTS = [((6, 5), -1), ((2, 3, 4), -1), ((2, 4, 3), 1), ((5,), 0)]


@pytest.mark.parametrize("layout", LAYOUTS, ids=[f"{s}-axis{a}" for s, a in LAYOUTS])
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("epsilon", [2.0, 1.0, -1.0, 0.0])
def test_poly1_index_targets_match_optax(xp, layout, reduction, epsilon):
    shape, axis = layout
    rng = np.random.default_rng(0)
    x = 3 * rng.normal(size=shape)
    c = shape[axis]
    t = rng.integers(0, c, size=tuple(np.delete(shape, axis % len(shape))))
    expected = _optax_poly1(x, _one_hot(t, c, axis), epsilon, axis, reduction)
    check_multi(xp, pl.poly1_cross_entropy, (x, t), {"epsilon": epsilon, "axis": axis, "reduction": reduction},
                expected)


@pytest.mark.parametrize("layout", LAYOUTS[:3], ids=[f"{s}-axis{a}" for s, a in LAYOUTS[:3]])
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("epsilon", [2.0, -0.5])
def test_poly1_probability_targets_match_optax(xp, layout, reduction, epsilon):
    shape, axis = layout
    rng = np.random.default_rng(1)
    x = 3 * rng.normal(size=shape)
    q = rng.uniform(size=shape)
    q = q / q.sum(axis=axis, keepdims=True)
    expected = _optax_poly1(x, q, epsilon, axis, reduction)
    check_multi(xp, pl.poly1_cross_entropy, (x, q), {"epsilon": epsilon, "axis": axis, "reduction": reduction},
                expected)


def test_poly1_epsilon_zero_is_cross_entropy(xp):
    rng = np.random.default_rng(2)
    x, t = rng.normal(size=(6, 4)), rng.integers(0, 4, size=6)
    a = pl.poly1_cross_entropy(xp.asarray(x), xp.asarray(t), epsilon=0.0)
    b = pl.cross_entropy(xp.asarray(x), xp.asarray(t))
    np.testing.assert_allclose(xp.to_numpy(a), xp.to_numpy(b), rtol=10 * xp.rtol)


def test_poly1_narrow_integer_targets(xp):
    rng = np.random.default_rng(3)
    x, t = rng.normal(size=(6, 4)), rng.integers(0, 4, size=6)
    expected = pl.poly1_cross_entropy(x, t)
    for name in ("int8", "uint8", "int16", "int32"):
        if not hasattr(xp.ns, name):
            continue
        value = pl.poly1_cross_entropy(xp.asarray(x), xp.asarray(t, dtype=getattr(xp.ns, name)))
        np.testing.assert_allclose(xp.to_numpy(value), expected, rtol=10 * xp.rtol)


def test_poly1_class_index_out_of_range():
    x, t = np.zeros((3, 4)), np.array([0, 4, 1])
    for lib in (np.asarray, t64):
        with pytest.raises(ValueError, match="class index 4"):
            pl.poly1_cross_entropy(lib(x), lib(t))


def test_compiles_fullgraph():
    rng = np.random.default_rng(4)
    assert_compiles(pl.poly1_cross_entropy, (rng.normal(size=(5, 4)), rng.integers(0, 4, size=5)))
