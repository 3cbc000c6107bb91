"""Regression losses against torch.nn.functional on every backend."""

from __future__ import annotations

import numpy as np
import pytest
from _support import F
from _support import assert_close
from _support import assert_fast_path_matches_generic
from _support import check_against
from _support import run_polyloss
from _support import t64
from _support import torch

import polyloss as pl

SHAPES = [(7,), (4, 5), (2, 3, 4)]
REDUCTIONS = ["none", "mean", "sum"]


def _data(shape, seed=0):
    rng = np.random.default_rng(seed)
    return 2 * rng.normal(size=shape), 2 * rng.normal(size=shape), rng.uniform(0.1, 2.0, size=shape)


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("name", ["mse_loss", "l1_loss"])
def test_mse_l1_match_torch(xp, name, shape, reduction, weighted):
    x, y, w = _data(shape)
    options = {"reduction": reduction}
    if weighted:
        options["weight"] = w
    check_against(xp, getattr(pl, name), getattr(F, name), x, y, options)


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("beta", [0.0, 0.5, 1.0, 3.0])
def test_smooth_l1_matches_torch(xp, shape, reduction, beta):
    x, y, _ = _data(shape)
    check_against(xp, pl.smooth_l1_loss, F.smooth_l1_loss, x, y, {"beta": beta, "reduction": reduction})


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("beta", [0.0, 1.0])
def test_weighted_smooth_l1_is_mean_of_weighted(xp, reduction, beta):
    x, y, w = _data((4, 5), seed=3)
    value, grad = run_polyloss(xp, pl.smooth_l1_loss, x, y, {"beta": beta, "weight": w, "reduction": reduction})
    xt = t64(x, requires_grad=True)
    ref = F.smooth_l1_loss(xt, t64(y), beta=beta, reduction="none") * t64(w)
    ref = {"none": ref, "mean": ref.mean(), "sum": ref.sum()}[reduction]
    ref.sum().backward()
    assert_close(value, ref.detach().numpy(), xp, scale=10)
    if grad is not None:
        assert_close(grad, xt.grad.numpy(), xp, scale=10)


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("delta", [0.3, 1.0, 2.5])
@pytest.mark.parametrize("weighted", [False, True])
def test_huber_matches_torch(xp, shape, reduction, delta, weighted):
    x, y, w = _data(shape, seed=1)
    options = {"delta": delta, "reduction": reduction}
    if weighted:
        options["weight"] = w
    check_against(xp, pl.huber_loss, F.huber_loss, x, y, options)


def test_weight_broadcasts_without_enlarging(xp):
    x, y, _ = _data((4, 5))
    w = np.linspace(0.5, 2.0, 5)
    value, _ = run_polyloss(xp, pl.mse_loss, x, y, {"weight": w})
    full = np.broadcast_to(w, x.shape)
    expected = np.sum(full * (x - y) ** 2) / np.sum(full)
    assert_close(value, expected, xp)


def test_zero_total_weight_gives_zero_not_nan(xp):
    x, y, _ = _data((3, 2))
    value, grad = run_polyloss(xp, pl.mse_loss, x, y, {"weight": np.zeros((3, 2))})
    assert value == 0.0
    if grad is not None:
        assert np.all(grad == 0.0)


def test_smooth_l1_beta_zero_has_finite_gradient_at_zero():
    x = torch.zeros(5, dtype=torch.float64, requires_grad=True)
    pl.smooth_l1_loss(x, torch.zeros(5, dtype=torch.float64), beta=0.0).backward()
    assert torch.isfinite(x.grad).all() and (x.grad == 0).all()
    with pl.fast_paths(False):
        x.grad = None
        pl.smooth_l1_loss(x, torch.zeros(5, dtype=torch.float64), beta=0.0).backward()
        assert torch.isfinite(x.grad).all() and (x.grad == 0).all()


@pytest.mark.parametrize("name,options", [
    ("mse_loss", {}), ("l1_loss", {}), ("smooth_l1_loss", {"beta": 0.7}), ("huber_loss", {"delta": 0.7}),
])
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_fast_path_equals_generic(name, options, reduction):
    x, y, _ = _data((6, 3), seed=5)
    assert_fast_path_matches_generic(getattr(pl, name), x, y, reduction=reduction, **options)
