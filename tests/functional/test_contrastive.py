"""NT-Xent (SimCLR) against its closed form in float64.

References: a direct NumPy transcription of the formula (a loop over the views) for the
values and central finite differences of it for the gradient, and SimCLR's usual torch
implementation (``F.cross_entropy`` over the similarity matrix with the diagonal masked and
the partner views as targets) for torch autograd.
"""

from __future__ import annotations

import numpy as np
import pytest
from _support import F
from _support import torch

import polyloss as pl

REDUCTIONS = ["none", "mean", "sum"]


def nt_xent_numpy(z1, z2, temperature=0.5, reduction="mean"):
    z = np.concatenate([z1, z2])
    u = z / np.maximum(np.linalg.norm(z, axis=1, keepdims=True), 1e-12)
    n2 = len(z)
    losses = np.zeros(n2)
    for i in range(n2):
        s = u @ u[i] / temperature
        others = [k for k in range(n2) if k != i]
        m = s[others].max()
        losses[i] = -s[(i + n2 // 2) % n2] + m + np.log(np.exp(s[others] - m).sum())
    return {"none": losses, "mean": losses.mean() if n2 else 0.0, "sum": losses.sum()}[reduction]


def nt_xent_torch(z1, z2, temperature=0.5, reduction="mean"):
    z = F.normalize(torch.cat([z1, z2]), dim=1)
    n2 = z.shape[0]
    logits = (z @ z.T / temperature).masked_fill(torch.eye(n2, dtype=torch.bool), float("-inf"))
    target = (torch.arange(n2) + n2 // 2) % n2
    return F.cross_entropy(logits, target, reduction=reduction)


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("temperature", [0.5, 0.07, 1.0, 10.0])
@pytest.mark.parametrize("n,d", [(4, 3), (1, 5), (6, 8)])
def test_nt_xent(xp, reduction, temperature, n, d):
    rng = np.random.default_rng(n * 100 + d)
    z1, z2 = rng.normal(size=(n, d)), rng.normal(size=(n, d))
    options = {"temperature": temperature, "reduction": reduction}
    expected = nt_xent_numpy(z1, z2, **options)
    value, grad = pl.value_and_grad(pl.nt_xent_loss, xp.asarray(z1), xp.asarray(z2), **options)
    direct = pl.nt_xent_loss(xp.asarray(z1), xp.asarray(z2), **options)
    np.testing.assert_allclose(xp.to_numpy(direct), expected, rtol=10 * xp.rtol, atol=10 * xp.atol)
    np.testing.assert_allclose(xp.to_numpy(value), xp.to_numpy(direct), rtol=xp.rtol, atol=xp.atol)
    h = 1e-6
    numeric = np.zeros_like(z1)
    for i in range(z1.size):
        e = np.zeros_like(z1)
        e.flat[i] = h
        numeric.flat[i] = (np.sum(nt_xent_numpy(z1 + e, z2, **options))
                           - np.sum(nt_xent_numpy(z1 - e, z2, **options))) / (2 * h)
    np.testing.assert_allclose(xp.to_numpy(grad), numeric, rtol=max(1e-6, 10 * xp.rtol), atol=1e-7 + 10 * xp.atol)
    if xp.is_torch:
        a = torch.tensor(z1, requires_grad=True)
        nt_xent_torch(a, torch.tensor(z2), **options).sum().backward()
        np.testing.assert_allclose(xp.to_numpy(grad), a.grad.numpy(), rtol=10 * xp.rtol, atol=10 * xp.atol)
        xin = xp.asarray(z1, requires_grad=True)
        pl.nt_xent_loss(xin, xp.asarray(z2), **options).sum().backward()
        np.testing.assert_allclose(xp.to_numpy(xin.grad), xp.to_numpy(grad), rtol=10 * xp.rtol, atol=10 * xp.atol)


def test_matches_the_cross_entropy_formulation(xp):
    rng = np.random.default_rng(3)
    z1, z2 = rng.normal(size=(5, 4)), rng.normal(size=(5, 4))
    expected = nt_xent_torch(torch.tensor(z1), torch.tensor(z2), reduction="none").numpy()
    out = pl.nt_xent_loss(xp.asarray(z1), xp.asarray(z2), reduction="none")
    np.testing.assert_allclose(xp.to_numpy(out), expected, rtol=10 * xp.rtol, atol=10 * xp.atol)


def test_zero_view_is_finite(xp):
    z1 = np.array([[0.0, 0.0], [1.0, 2.0]])
    z2 = np.array([[0.5, -1.0], [1.0, 1.0]])
    value, grad = pl.value_and_grad(pl.nt_xent_loss, xp.asarray(z1), xp.asarray(z2))
    np.testing.assert_allclose(xp.to_numpy(value), nt_xent_numpy(z1, z2), rtol=10 * xp.rtol)
    assert np.all(np.isfinite(xp.to_numpy(grad)))
