"""Poisson and Gaussian NLL against torch.nn.functional on every backend (values, autograd with the fast
paths on and off, closed-form gradients)."""

from __future__ import annotations

import numpy as np
import pytest
from _support import F
from _support import t64
from _support import torch
from functional._second_set_support import assert_compiles
from functional._second_set_support import assert_fast_equals_generic
from functional._second_set_support import check_against_torch
from functional._second_set_support import check_multi
from functional._second_set_support import torch_reference

import polyloss as pl

REDUCTIONS = ["none", "mean", "sum"]


def _counts(shape, seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=shape), rng.poisson(2.5, size=shape).astype(np.float64)


@pytest.mark.parametrize("shape", [(7,), (3, 4), (2, 3, 2)])
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("log_input,full,eps", [(True, False, 1e-8), (True, True, 1e-8), (False, False, 1e-8),
                                                (False, True, 0.1)])
def test_poisson_nll_matches_torch(xp, shape, reduction, log_input, full, eps):
    x, y = _counts(shape)
    if not log_input:
        x = np.abs(x) + 0.05
    options = {"log_input": log_input, "full": full, "eps": eps, "reduction": reduction}
    check_against_torch(xp, pl.poisson_nll_loss, F.poisson_nll_loss, (x, y), options)


def test_poisson_integer_counts(xp):
    # torch takes the log of an int64 count in float32: the reference gets the counts as float64
    x, y = _counts((4, 3), seed=1)
    expected = torch_reference(F.poisson_nll_loss, (x, y), {"full": True})
    check_multi(xp, pl.poisson_nll_loss, (x, y.astype(np.int64)), {"full": True}, expected)


def _gaussian(shape, var_shape, seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=shape), rng.normal(size=shape), rng.uniform(0.0, 2.0, size=var_shape)


VAR_SHAPES = [((4, 3), (4, 3)), ((4, 3), (4,)), ((4, 3), (4, 1)), ((2, 3, 5), (2, 1, 5)), ((6,), ())]


@pytest.mark.parametrize("shapes", VAR_SHAPES, ids=[f"{a}-{b}" for a, b in VAR_SHAPES])
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("full,eps", [(False, 1e-6), (True, 1e-6), (False, 0.5)])
def test_gaussian_nll_matches_torch(xp, shapes, reduction, full, eps):
    x, y, var = _gaussian(*shapes)
    var.flat[0] = 0.0  # clamped to eps
    options = {"full": full, "eps": eps, "reduction": reduction}
    check_against_torch(xp, pl.gaussian_nll_loss, F.gaussian_nll_loss, (x, y, var), options)


@pytest.mark.parametrize("var", [0.7, 0.0, 3])
def test_gaussian_python_number_var(xp, var):
    x, y, _ = _gaussian((5, 2), ())
    value, grad = pl.value_and_grad(pl.gaussian_nll_loss, xp.asarray(x), xp.asarray(y), var, reduction="sum")
    xt = t64(x, requires_grad=True)
    ref = F.gaussian_nll_loss(xt, t64(y), float(var), reduction="sum")
    ref.backward()
    np.testing.assert_allclose(xp.to_numpy(value), ref.item(), rtol=10 * xp.rtol)
    np.testing.assert_allclose(xp.to_numpy(grad), xt.grad.numpy(), rtol=10 * xp.rtol, atol=xp.atol)


def test_gaussian_negative_var_and_bad_shape():
    x, y, var = _gaussian((4, 3), (4, 3))
    var[1, 2] = -0.5
    for fast in (True, False):
        with pl.fast_paths(fast):
            for lib in (np.asarray, t64):
                with pytest.raises(ValueError, match="var"):
                    pl.gaussian_nll_loss(lib(x), lib(y), lib(var))
    with pytest.raises(ValueError, match="var"):
        pl.gaussian_nll_loss(x, y, -1.0)
    with pytest.raises(ValueError, match="var shape"):
        pl.gaussian_nll_loss(x, y, np.ones((4, 2)))
    with pytest.raises(ValueError, match="var shape"):
        pl.gaussian_nll_loss(x, y, np.ones((1, 1)))  # two mismatched axes: PyTorch refuses it too


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_fast_paths_equal_generic(reduction):
    x, y = _counts((5, 4), seed=3)
    assert_fast_equals_generic(pl.poisson_nll_loss, (x, y), reduction=reduction, full=True)
    assert_fast_equals_generic(pl.poisson_nll_loss, (np.abs(x), y), reduction=reduction, log_input=False)
    x, y, var = _gaussian((5, 4), (5, 1), seed=4)
    assert_fast_equals_generic(pl.gaussian_nll_loss, (x, y, var), reduction=reduction, full=True)


def test_compiles_fullgraph():
    x, y = _counts((5, 4), seed=5)
    assert_compiles(pl.poisson_nll_loss, (x, y), full=True)
    x, y, var = _gaussian((5, 4), (5,), seed=6)
    assert_compiles(pl.gaussian_nll_loss, (x, y, var))


def test_var_gradient_on_the_fast_path_is_pytorchs():
    x, y, var = _gaussian((4, 3), (4, 3), seed=7)
    var[0, 0] = 1e-9
    v1, v2 = t64(var, requires_grad=True), t64(var, requires_grad=True)
    pl.gaussian_nll_loss(t64(x), t64(y), v1).backward()
    F.gaussian_nll_loss(t64(x), t64(y), v2).backward()
    torch.testing.assert_close(v1.grad, v2.grad)


def test_gaussian_fast_path_is_one_fused_node_unless_var_needs_a_gradient():
    """Only ``input`` needs a gradient: the family's closed form in one autograd node (PyTorch's numbers, the
    value at rtol 1e-12); ``var`` needs one too: ``torch.nn.functional``'s graph, whose gradient by ``var``
    is PyTorch's."""
    x, y, var = _gaussian((6, 5), (6, 1), seed=8)
    xt = t64(x, requires_grad=True)
    out = pl.gaussian_nll_loss(xt, t64(y), t64(var), full=True)
    assert "Fused" in type(out.grad_fn).__name__
    (grad,) = torch.autograd.grad(out, xt)
    xr = t64(x, requires_grad=True)
    expected = F.gaussian_nll_loss(xr, t64(y), t64(var), full=True)
    (expected_grad,) = torch.autograd.grad(expected, xr)
    np.testing.assert_allclose(out.item(), expected.item(), rtol=1e-12)
    np.testing.assert_allclose(grad.numpy(), expected_grad.numpy(), rtol=1e-12, atol=1e-15)
    out = pl.gaussian_nll_loss(t64(x, requires_grad=True), t64(y), t64(var, requires_grad=True))
    assert "Fused" not in type(out.grad_fn).__name__
