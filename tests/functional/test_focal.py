"""Focal losses against float64 transcriptions of torchvision's and the paper's formulas."""

from __future__ import annotations

import numpy as np
import pytest
from _support import F
from _support import check_against
from _support import run_polyloss
from _support import torch
from _support import torchvision_sigmoid_focal

import polyloss as pl

REDUCTIONS = ["none", "mean", "sum"]


def _torchvision_sigmoid_focal(x, t, alpha=0.25, gamma=2.0, reduction="mean"):
    loss = torchvision_sigmoid_focal(x, t, alpha, gamma)
    return {"none": loss, "mean": loss.mean(), "sum": loss.sum()}[reduction]


@pytest.mark.parametrize("shape", [(9,), (4, 5), (2, 3, 4)])
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("alpha", [0.25, 0.75, -1.0])
@pytest.mark.parametrize("gamma", [0.0, 1.5, 2.0])
def test_sigmoid_focal(xp, shape, reduction, alpha, gamma):
    rng = np.random.default_rng(0)
    x = 3 * rng.normal(size=shape)
    t = rng.integers(0, 2, size=shape).astype(float)
    check_against(xp, pl.sigmoid_focal_loss, _torchvision_sigmoid_focal, x, t,
                  {"alpha": alpha, "gamma": gamma, "reduction": reduction})


def _softmax_focal_reference(axis):
    def ref(x, t, alpha=None, gamma=2.0, ignore_index=-100, reduction="mean"):
        x = x.movedim(axis, -1)
        logp = torch.log_softmax(x, dim=-1)
        valid = t != ignore_index
        safe = torch.where(valid, t, 0)
        logp_t = logp.gather(-1, safe.unsqueeze(-1)).squeeze(-1)
        p_t = logp_t.exp()
        loss = -((1 - p_t) ** gamma) * logp_t
        if alpha is not None:
            loss = loss * (alpha[safe] if isinstance(alpha, torch.Tensor) else alpha)
        loss = torch.where(valid, loss, 0.0)
        if reduction == "none":
            return loss
        if reduction == "sum":
            return loss.sum()
        return loss.sum() / valid.sum().clamp_min(1)
    return ref


@pytest.mark.parametrize("shape,axis", [((6, 5), -1), ((2, 5, 3), 1)])
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("alpha", [None, 0.25, "array"])
@pytest.mark.parametrize("gamma", [0.0, 2.0, 1.5])
@pytest.mark.parametrize("ignore", [False, True])
def test_softmax_focal(xp, shape, axis, reduction, alpha, gamma, ignore):
    rng = np.random.default_rng(1)
    x = 2 * rng.normal(size=shape)
    c = shape[axis]
    t = rng.integers(0, c, size=tuple(s for i, s in enumerate(shape) if i != axis % len(shape)))
    if ignore:
        t.flat[::3] = -100
    options = {"reduction": reduction, "gamma": gamma, "axis": axis}
    ref_options = {"reduction": reduction, "gamma": gamma}
    if alpha == "array":
        options["alpha"] = ref_options["alpha"] = rng.uniform(0.2, 1, size=c)
    elif alpha is not None:
        options["alpha"] = ref_options["alpha"] = alpha
    check_against(xp, pl.softmax_focal_loss, _softmax_focal_reference(axis), x, t, options, ref_options=ref_options)


def test_softmax_focal_gamma_zero_is_cross_entropy(xp):
    rng = np.random.default_rng(2)
    x, t = rng.normal(size=(7, 4)), rng.integers(0, 4, 7)
    focal, _ = run_polyloss(xp, pl.softmax_focal_loss, x, t, {"gamma": 0.0}, grad=False)
    ce = F.cross_entropy(torch.tensor(x), torch.tensor(t)).item()
    np.testing.assert_allclose(focal, ce, rtol=xp.rtol * 10)


# -- one element-wise definition: the PyTorch fused path is the family's formula, gamma < 1 included -------------


@pytest.mark.parametrize("gamma", [0.5, 1e-3, 0.0, 1.0, 2.0, 3.5])
@pytest.mark.parametrize("soft", [False, True], ids=["hard", "soft"])
def test_torch_fused_path_equals_generic_for_every_gamma(gamma, soft):
    rng = np.random.default_rng(3)
    x = 4.0 * rng.standard_normal((6, 5))
    x[0, :4] = [800.0, -800.0, 40.0, -40.0]  # p_t = 1 (or nearly): the factor's derivative is infinite there
    y = rng.uniform(0, 1, (6, 5)) if soft else rng.integers(0, 2, (6, 5)).astype(float)
    y[0, :4] = [1.0, 0.0, 1.0, 0.0]
    grads = []
    for fast in (True, False):
        xt = torch.tensor(x, requires_grad=True)
        with pl.fast_paths(fast):
            out = pl.sigmoid_focal_loss(xt, torch.tensor(y), gamma=gamma, reduction="sum")
        assert (type(out.grad_fn).__name__ == "_FusedBackward") == fast
        out.backward()
        grads.append((out.detach(), xt.grad))
    (v_fast, g_fast), (v_gen, g_gen) = grads
    torch.testing.assert_close(v_fast, v_gen, rtol=1e-12, atol=0)
    # atol: at x = -40, y = 0 autograd's d ce / dx = 1 - sigma(-x) cancels to 0 where the closed form has p = 4e-18
    torch.testing.assert_close(g_fast, g_gen, rtol=1e-12, atol=1e-16)
    assert torch.isfinite(g_fast).all() and (g_fast[0, :4].abs() < 1e-10).all()  # 0 at p_t = 1: the limit


@pytest.mark.parametrize("fast", [True, False], ids=["fast", "generic"])
def test_sigmoid_focal_target_outside_unit_interval_raises_before_any_kernel(xp, fast):
    x = xp.asarray(np.zeros((2, 3)))
    readable = pl.get_backend(x).is_host_array(x)  # lazy (dask) and device arrays are not read: not checked
    for bad in (1.5, -0.5):
        y = np.full((2, 3), 0.5)
        y[1, 2] = bad
        if not readable:
            with pl.fast_paths(fast):
                assert np.isfinite(xp.to_numpy(pl.sigmoid_focal_loss(x, xp.asarray(y))))
            continue
        with pl.fast_paths(fast), pytest.raises(ValueError, match=f"target of sigmoid_focal_loss .*got {bad}"):
            pl.sigmoid_focal_loss(x, xp.asarray(y))
    y = np.full((2, 3), 0.5)
    y[0, 0] = np.nan  # NaN is not out of range: it gives NaN
    with pl.fast_paths(fast):
        assert np.isnan(xp.to_numpy(pl.sigmoid_focal_loss(x, xp.asarray(y))))


def test_softmax_focal_uint64_and_uint8_indices_equal_int64(xp):
    rng = np.random.default_rng(4)
    x = rng.normal(size=(5, 3))
    t = np.array([0, 2, 1, 1, 0])
    expected = xp.to_numpy(pl.softmax_focal_loss(xp.asarray(x), xp.asarray(t), gamma=0.5))
    for dtype in ("uint8", "uint64", "int16"):
        got = pl.softmax_focal_loss(xp.asarray(x), xp.asarray(t.astype(dtype)), gamma=0.5)
        np.testing.assert_allclose(xp.to_numpy(got), expected, rtol=xp.rtol)
