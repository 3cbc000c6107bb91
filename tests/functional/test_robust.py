"""log_cosh_loss against optax's ``log_cosh`` (jax on the CPU, float64) on every backend: values, closed-form
gradients and, on torch, autograd of the generic code."""

from __future__ import annotations

import numpy as np
import pytest
from functional._second_set_support import assert_compiles
from functional._second_set_support import check_multi

import polyloss as pl

REDUCTIONS = ["none", "mean", "sum"]


_CACHE: dict = {}


def _optax_log_cosh(x, y, reduction):
    """optax's numbers, computed once per data and reduction (every backend case compares with them)."""
    key = (x.tobytes(), x.shape, y.tobytes(), reduction)
    if key not in _CACHE:
        _CACHE[key] = _optax_log_cosh_uncached(x, y, reduction)
    return _CACHE[key]


def _optax_log_cosh_uncached(x, y, reduction):
    jax = pytest.importorskip("jax")
    optax = pytest.importorskip("optax")
    jax.config.update("jax_enable_x64", True)
    jnp = jax.numpy

    def total(a):
        loss = optax.losses.log_cosh(a, jnp.asarray(y))
        return {"none": loss, "mean": jnp.mean(loss), "sum": jnp.sum(loss)}[reduction]

    value = total(jnp.asarray(x))
    grad = jax.grad(lambda a: jnp.sum(total(a)))(jnp.asarray(x))
    return np.asarray(value), np.asarray(grad)


@pytest.mark.parametrize("shape", [(7,), (3, 4), (2, 3, 2)])
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("scale", [0.5, 3.0, 400.0])
def test_log_cosh_matches_optax(xp, shape, reduction, scale):
    rng = np.random.default_rng(0)
    x, y = scale * rng.normal(size=shape), rng.normal(size=shape)
    check_multi(xp, pl.log_cosh_loss, (x, y), {"reduction": reduction}, _optax_log_cosh(x, y, reduction))


def test_log_cosh_closed_form_limits(xp):
    # log cosh d = |d| - log 2 + log1p(exp(-2|d|)), finite where cosh overflows; gradient tanh
    d = np.array([0.0, 1e-8, 1.0, -30.0, 800.0, -1e30])
    expected = np.abs(d) - np.log(2.0) + np.log1p(np.exp(-2 * np.abs(d)))
    expected[:2] = d[:2] ** 2 / 2
    check_multi(xp, pl.log_cosh_loss, (d, np.zeros_like(d)), {"reduction": "none"}, (expected, np.tanh(d)))


def test_log_cosh_integer_target(xp):
    rng = np.random.default_rng(1)
    x, y = rng.normal(size=(4, 3)), rng.integers(-2, 3, size=(4, 3))
    check_multi(xp, pl.log_cosh_loss, (x, y), {}, _optax_log_cosh(x, y.astype(np.float64), "mean"))


def test_compiles_fullgraph():
    rng = np.random.default_rng(2)
    assert_compiles(pl.log_cosh_loss, (rng.normal(size=(5, 4)), rng.normal(size=(5, 4))))
