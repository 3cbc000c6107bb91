"""Checks every loss of the second set shares: cotangents (vector-Jacobian products) of the closed-form
gradient against torch autograd, half precision, and the registry."""

from __future__ import annotations

import numpy as np
import pytest
from _support import F
from _support import t64
from _support import torch
from functional._second_set_rows import SECOND_SET_LOSSES

import polyloss as pl

RNG = np.random.default_rng(0)
X, X2, X3 = (RNG.normal(size=(5, 4)) for _ in range(3))
SIGNS = np.where(RNG.uniform(size=(5, 4)) < 0.5, -1.0, 1.0)
LISTS = np.array([[1, 3, -1, 0], [0, -1, 0, 0], [2, 1, 0, 3], [-1, 2, 2, 2], [3, -1, -1, -1]])


def _poly1_reference(x, t, epsilon=2.0, reduction="mean"):
    logp = torch.log_softmax(x, -1)
    logp_t = logp.gather(-1, t[:, None])[:, 0]
    loss = -logp_t + epsilon * (1 - logp_t.exp())
    return {"none": loss, "mean": loss.mean(), "sum": loss.sum()}[reduction]


def _log_cosh_reference(x, y, reduction="mean"):
    loss = torch.log(torch.cosh(x - y))
    return {"none": loss, "mean": loss.mean(), "sum": loss.sum()}[reduction]


# name -> (arrays, options, torch reference)
SAMPLES = {
    "poisson_nll_loss": ((X, np.abs(X2) * 3), {"full": True}, F.poisson_nll_loss),
    "gaussian_nll_loss": ((X, X2, np.abs(X3)), {}, F.gaussian_nll_loss),
    "cosine_embedding_loss": ((X, X2, SIGNS[:, 0]), {"margin": 0.1}, F.cosine_embedding_loss),
    "margin_ranking_loss": ((X, X2, SIGNS), {"margin": 0.5}, F.margin_ranking_loss),
    "triplet_margin_loss": ((X, X2, X3), {"swap": True}, F.triplet_margin_loss),
    "hinge_embedding_loss": ((np.abs(X), SIGNS), {}, F.hinge_embedding_loss),
    "soft_margin_loss": ((X, SIGNS), {}, F.soft_margin_loss),
    "multilabel_soft_margin_loss": ((X, (SIGNS > 0) * 1.0), {"weight": np.abs(X3[0])},
                                    F.multilabel_soft_margin_loss),
    "multilabel_margin_loss": ((X, LISTS), {}, F.multilabel_margin_loss),
    "log_cosh_loss": ((X, X2), {}, _log_cosh_reference),
    "poly1_cross_entropy": ((X, np.array([0, 3, 1, 2, 2])), {"epsilon": 1.5}, _poly1_reference),
}


def test_every_second_set_loss_is_registered_and_sampled():
    assert set(SAMPLES) == set(SECOND_SET_LOSSES)
    assert set(SECOND_SET_LOSSES) <= set(pl.losses())
    for name in SECOND_SET_LOSSES:
        assert getattr(pl, name) is pl.get_loss(name)
        assert name in pl.__all__


@pytest.mark.parametrize("name", SECOND_SET_LOSSES)
def test_cotangent_is_a_vjp(xp, name):
    arrays, options, reference = SAMPLES[name]
    tensors = [t64(a) for a in arrays]
    tensors[0].requires_grad_(True)
    opts = {k: (t64(v) if isinstance(v, np.ndarray) else v) for k, v in options.items()}
    out = reference(*tensors, **opts, reduction="none")
    cotangent = np.random.default_rng(1).normal(size=tuple(out.shape))
    (expected,) = torch.autograd.grad(out, tensors[0], grad_outputs=t64(cotangent))
    xopts = {k: (xp.asarray(v) if isinstance(v, np.ndarray) else v) for k, v in options.items()}
    value, grad = pl.value_and_grad(name, *[xp.asarray(a) for a in arrays], cotangent=xp.asarray(cotangent),
                                    reduction="none", **xopts)
    np.testing.assert_allclose(xp.to_numpy(value), out.detach().numpy(), rtol=10 * xp.rtol, atol=10 * xp.atol)
    np.testing.assert_allclose(xp.to_numpy(grad), expected.numpy(), rtol=10 * xp.rtol, atol=10 * xp.atol)
    # a Python number scales the mean's gradient
    _, g_mean = pl.value_and_grad(name, *[xp.asarray(a) for a in arrays], **xopts)
    _, g_scaled = pl.value_and_grad(name, *[xp.asarray(a) for a in arrays], cotangent=3.0, **xopts)
    np.testing.assert_allclose(xp.to_numpy(g_scaled), 3.0 * xp.to_numpy(g_mean), rtol=10 * xp.rtol, atol=1e-15)


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
@pytest.mark.parametrize("fast", [True, False])
@pytest.mark.parametrize("name", SECOND_SET_LOSSES)
def test_half_precision_is_computed_in_float32(name, dtype, fast):
    arrays, options, _ = SAMPLES[name]
    half = getattr(torch, dtype)

    def convert(a, dt):
        t = torch.from_numpy(np.ascontiguousarray(a))
        return t.to(dt) if t.is_floating_point() else t

    inputs = [convert(a, half) for a in arrays]
    inputs[0].requires_grad_(True)
    with pl.fast_paths(fast):
        out = pl.get_loss(name)(*inputs, **{k: convert(v, half) if isinstance(v, np.ndarray) else v
                                            for k, v in options.items()})
        out.backward()
        # the same half-precision numbers, computed in float32
        exact = pl.get_loss(name)(*[a.detach().float() if a.is_floating_point() else a for a in inputs],
                                  **{k: convert(v, half).float() if isinstance(v, np.ndarray) else v
                                     for k, v in options.items()})
    assert out.dtype == half and inputs[0].grad.dtype == half
    torch.testing.assert_close(out.float(), exact.to(half).float(), rtol=0, atol=0)
