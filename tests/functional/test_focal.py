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
