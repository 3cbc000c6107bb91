"""Margin losses: multi_margin against torch.nn.functional, hinge against the closed form."""

from __future__ import annotations

from functools import partial

import numpy as np
import pytest
from _support import F
from _support import assert_close
from _support import check_against
from _support import run_polyloss
from _support import torch

import polyloss as pl

REDUCTIONS = ["none", "mean", "sum"]


def _hinge_reference(margin, squared):
    def ref(x, y, reduction="mean"):
        signed = torch.where(y == 0, -1.0, y.to(x.dtype))
        h = torch.clamp(margin - signed * x, min=0.0)
        h = h * h if squared else h
        return {"none": h, "mean": h.mean(), "sum": h.sum()}[reduction]
    return ref


@pytest.mark.parametrize("shape", [(9,), (4, 5), (2, 3, 4)])
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("margin", [0.0, 1.0, 2.0])
@pytest.mark.parametrize("labels", ["pm1", "01", "mixed"])
@pytest.mark.parametrize("squared", [False, True])
def test_hinge(xp, shape, reduction, margin, labels, squared):
    rng = np.random.default_rng(0)
    x = 2 * rng.normal(size=shape) + 0.0123  # keep away from the kink
    y = rng.integers(0, 2, size=shape)
    y = (2 * y - 1) if labels == "pm1" else y
    if labels == "mixed":  # -1, 0 and 1 together (0 means -1): the general sign map, not the sign labels' shortcut
        y = rng.integers(-1, 2, size=shape)
        y.flat[:2] = [-1, 0]
    fn = pl.squared_hinge_loss if squared else pl.hinge_loss
    options = {"margin": margin, "reduction": reduction}
    value, grad = run_polyloss(xp, fn, x, y.astype(float), options)
    ref = _hinge_reference(margin, squared)
    xt = torch.tensor(x, requires_grad=True)
    out = ref(xt, torch.tensor(y, dtype=torch.float64), reduction=reduction)
    out.sum().backward()
    assert_close(value, out.detach().numpy(), xp, scale=10)
    if grad is not None:
        assert_close(grad, xt.grad.numpy(), xp, scale=10)
    # integer and boolean labels give the same numbers
    other = fn(xp.asarray(x), xp.asarray(y), **options)
    assert_close(xp.to_numpy(other), value, xp)
    if labels == "01":
        other = fn(xp.asarray(x), xp.asarray(y.astype(bool)), **options)
        assert_close(xp.to_numpy(other), value, xp)


def test_hinge_gradient_at_kink_is_finite_subgradient_zero():
    x = torch.tensor([1.0, -1.0, 0.5], dtype=torch.float64, requires_grad=True)
    y = torch.tensor([1.0, -1.0, 1.0], dtype=torch.float64)
    pl.hinge_loss(x, y, reduction="sum").backward()
    assert torch.equal(x.grad, torch.tensor([0.0, 0.0, -1.0], dtype=torch.float64))


def _torch_multi_margin(axis):
    def ref(x, t, **kw):
        c = x.shape[axis]
        x2 = x.movedim(axis, -1).reshape(-1, c)
        out = F.multi_margin_loss(x2, t.reshape(-1), **kw)
        return out.reshape(t.shape) if kw.get("reduction") == "none" else out
    return ref


@pytest.mark.parametrize("shape,axis", [((6, 5), -1), ((5, 6), 0), ((2, 5, 3), 1), ((5,), 0)])
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("p", [1, 2])
@pytest.mark.parametrize("margin", [0.5, 1.0])
@pytest.mark.parametrize("weighted", [False, True])
def test_multi_margin(xp, shape, axis, reduction, p, margin, weighted):
    rng = np.random.default_rng(1)
    x = rng.normal(size=shape) + 0.0071
    c = shape[axis]
    t = rng.integers(0, c, size=tuple(s for i, s in enumerate(shape) if i != axis % len(shape)))
    options = {"reduction": reduction, "p": p, "margin": margin}
    if weighted:
        options["weight"] = rng.uniform(0.2, 2, size=c)
    if len(shape) == 1:
        ref_options = dict(options)
        check_against(xp, pl.multi_margin_loss, F.multi_margin_loss, x, t, {**options, "axis": axis},
                      ref_options=ref_options)
    else:
        check_against(xp, pl.multi_margin_loss, _torch_multi_margin(axis), x, t, {**options, "axis": axis},
                      ref_options=options)


# -- NaN is never hidden, on any path -------------------------------------------------------------------------


@pytest.mark.parametrize("fast", [True, False], ids=["fast", "generic"])
@pytest.mark.parametrize("p", [1, 2])
def test_torch_multi_margin_kernel_never_hides_nan(fast, p):
    # ATen's kernel adds a term only where m - x_y + x_j > 0, false for NaN: it would return 0 here
    x = torch.tensor([[0.5, float("nan"), 0.1], [0.2, 0.3, 0.4]], dtype=torch.float64, requires_grad=True)
    t = torch.tensor([0, 2])
    with pl.fast_paths(fast):
        out = pl.multi_margin_loss(x, t, p=p, reduction="none")
    assert out[0].isnan() and out[1].isfinite()
    out.sum().backward()
    # NaN in the NaN's term and the target's class (index 0); the other active term (z = 0.6) keeps its 1/3 (p=1)
    assert x.grad[0, :2].isnan().all() and x.grad[0, 2].isfinite() and x.grad[1].isfinite().all()
    xf = x.detach().nan_to_num(0.0).requires_grad_(True)
    with pl.fast_paths(fast):
        out = pl.multi_margin_loss(xf, t, p=p)
    assert (type(out.grad_fn).__name__ == "MultiMarginLossBackward0") == fast  # finite: the native kernel


@pytest.mark.parametrize("name", ["hinge_loss", "squared_hinge_loss"])
def test_nan_score_gives_nan_value_and_gradient_on_every_path(xp, name):
    x = np.array([[0.5, np.nan, 2.0], [0.0, 3.0, -0.25]])
    y = np.array([[1.0, -1.0, 1.0], [-1.0, 1.0, -1.0]])
    for fast in (True, False):
        with pl.fast_paths(fast):
            value, grad = pl.value_and_grad(name, xp.asarray(x), xp.asarray(y), reduction="none")
        value, grad = xp.to_numpy(value), xp.to_numpy(grad)
        assert np.isnan(value[0, 1]) and np.isnan(grad[0, 1])
        assert np.isfinite(np.delete(value.ravel(), 1)).all() and np.isfinite(np.delete(grad.ravel(), 1)).all()


def test_relu_keeps_nan(xp):
    from polyloss._namespace import resolve
    from polyloss.backend._base import Backend

    values = xp.asarray(np.array([np.nan, -1.0, 0.0, 2.0]))
    backend = resolve(values)
    for relu in (backend.relu, partial(Backend.relu, backend)):  # the backend's own and the portable fallback
        out = xp.to_numpy(relu(values))
        assert np.isnan(out[0]) and list(out[1:]) == [0.0, 0.0, 2.0]
