"""Cosine embedding, margin ranking, triplet margin and hinge embedding losses against torch.nn.functional
on every backend (values, autograd with the fast paths on and off, closed-form gradients)."""

from __future__ import annotations

import numpy as np
import pytest
from _support import F
from _support import t64
from functional._second_set_support import assert_compiles
from functional._second_set_support import assert_fast_equals_generic
from functional._second_set_support import check_against_torch

import polyloss as pl

REDUCTIONS = ["none", "mean", "sum"]


def _signs(shape, rng):
    return np.where(rng.uniform(size=shape) < 0.5, -1.0, 1.0)


def _pairs(shape, seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=shape), rng.normal(size=shape), rng


@pytest.mark.parametrize("shape", [(6,), (5, 4)])
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("margin", [0.0, 0.3, -0.5])
@pytest.mark.parametrize("int_target", [False, True])
def test_cosine_embedding_matches_torch(xp, shape, reduction, margin, int_target):
    x1, x2, rng = _pairs(shape)
    y = _signs(shape[:-1], rng)
    if int_target:
        y = y.astype(np.int64)
    options = {"margin": margin, "reduction": reduction}
    check_against_torch(xp, pl.cosine_embedding_loss, F.cosine_embedding_loss, (x1, x2, y), options)


def test_cosine_embedding_batched_embeddings(xp):
    # (..., D): PyTorch takes (N, D) only; the reference runs on the rows
    x1, x2, rng = _pairs((2, 3, 4), seed=1)
    y = _signs((2, 3), rng)

    def ref(a, b, t, reduction):
        out = F.cosine_embedding_loss(a.reshape(-1, 4), b.reshape(-1, 4), t.reshape(-1), reduction=reduction)
        return out.reshape(2, 3) if reduction == "none" else out

    for reduction in REDUCTIONS:
        check_against_torch(xp, pl.cosine_embedding_loss, ref, (x1, x2, y), {"reduction": reduction})


def test_cosine_embedding_zero_vector_and_kink(xp):
    x1 = np.array([[1.0, 0.0], [0.0, 0.0], [0.6, 0.8]])
    x2 = np.array([[0.0, 1.0], [1.0, 1.0], [0.6, 0.8]])
    y = np.array([-1.0, -1.0, 1.0])
    # at a zero vector the gradient is x2 / sqrt(1e-12 |x2|^2): PyTorch's autograd meets it 2e-9 apart
    check_against_torch(xp, pl.cosine_embedding_loss, F.cosine_embedding_loss, (x1, x2, y), {"reduction": "none"},
                        scale=100 if xp.dtype_name == "float64" else 10)


@pytest.mark.parametrize("shape", [(7,), (3, 4), (2, 3, 2)])
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("margin", [0.0, 0.5, -0.2])
def test_margin_ranking_matches_torch(xp, shape, reduction, margin):
    x1, x2, rng = _pairs(shape, seed=2)
    y = _signs(shape, rng)
    options = {"margin": margin, "reduction": reduction}
    check_against_torch(xp, pl.margin_ranking_loss, F.margin_ranking_loss, (x1, x2, y), options)


def test_margin_ranking_kink_is_pytorchs(xp):
    x1 = np.array([1.0, 2.0, 0.5])
    x2 = np.array([1.0, 1.0, 0.0])
    y = np.array([1.0, -1.0, 1.0])
    check_against_torch(xp, pl.margin_ranking_loss, F.margin_ranking_loss, (x1, x2, y), {"reduction": "none"})


TRIPLET_OPTIONS = [
    {},
    {"margin": 0.5, "p": 1.0},
    {"margin": 2.0, "p": 3.0, "swap": True},
    {"p": 1.5, "eps": 0.0, "swap": True},
    {"p": 0.5, "eps": 1e-3},
    {"p": float("inf"), "swap": True},
]


@pytest.mark.parametrize("shape", [(6,), (5, 4), (2, 3, 4)])
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("options", TRIPLET_OPTIONS, ids=[str(o) for o in TRIPLET_OPTIONS])
def test_triplet_margin_matches_torch(xp, shape, reduction, options):
    rng = np.random.default_rng(3)
    a, p, n = (rng.normal(size=shape) for _ in range(3))
    check_against_torch(xp, pl.triplet_margin_loss, F.triplet_margin_loss, (a, p, n),
                        {**options, "reduction": reduction})


def test_triplet_kinks_are_pytorchs(xp):
    # z = 0 (the hinge's kink), a zero difference (the norm's), a swap tie
    a = np.array([[0.0, 0.0], [0.0, 0.0], [0.0, 0.0]])
    p = np.array([[1.0, 0.0], [0.0, 0.0], [1.0, 0.0]])
    n = np.array([[0.0, 2.0], [0.0, 0.0], [1.0, 1.0]])
    for swap in (False, True):
        for norm in (2.0, float("inf")):
            check_against_torch(xp, pl.triplet_margin_loss, F.triplet_margin_loss, (a, p, n),
                                {"eps": 0.0, "swap": swap, "p": norm, "reduction": "none"})


@pytest.mark.parametrize("shape", [(7,), (3, 4)])
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("margin", [1.0, 0.0, 2.5, -1.0])
def test_hinge_embedding_matches_torch(xp, shape, reduction, margin):
    x, _, rng = _pairs(shape, seed=4)
    y = _signs(shape, rng)
    x = np.abs(x) * 2
    x.flat[0] = margin  # the kink
    check_against_torch(xp, pl.hinge_embedding_loss, F.hinge_embedding_loss, (x, y),
                        {"margin": margin, "reduction": reduction})


@pytest.mark.parametrize("name", ["cosine_embedding_loss", "margin_ranking_loss", "hinge_embedding_loss"])
def test_labels_must_be_plus_or_minus_one(name):
    x1, x2, _ = _pairs((3, 4), seed=5)
    y = np.array([1.0, 0.0, -1.0]) if name == "cosine_embedding_loss" else np.ones((3, 4))
    y[..., 1] = 0.0
    arrays = (x1, y) if name == "hinge_embedding_loss" else (x1, x2, y)
    for fast in (True, False):
        with pl.fast_paths(fast):
            for lib in (np.asarray, t64):
                with pytest.raises(ValueError, match=r"target .*1 or -1, got 0\.0"):
                    getattr(pl, name)(*[lib(a) for a in arrays])


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_fast_paths_equal_generic(reduction):
    x1, x2, rng = _pairs((6, 5), seed=6)
    n = rng.normal(size=(6, 5))
    assert_fast_equals_generic(pl.cosine_embedding_loss, (x1, x2, _signs((6,), rng)), reduction=reduction, margin=0.1)
    assert_fast_equals_generic(pl.margin_ranking_loss, (x1, x2, _signs((6, 5), rng)), reduction=reduction, margin=0.3)
    assert_fast_equals_generic(pl.triplet_margin_loss, (x1, x2, n), reduction=reduction, swap=True, p=3.0)
    assert_fast_equals_generic(pl.hinge_embedding_loss, (np.abs(x1), _signs((6, 5), rng)), reduction=reduction)


def test_compiles_fullgraph():
    x1, x2, rng = _pairs((6, 5), seed=7)
    assert_compiles(pl.cosine_embedding_loss, (x1, x2, _signs((6,), rng)))
    assert_compiles(pl.margin_ranking_loss, (x1, x2, _signs((6, 5), rng)))
    assert_compiles(pl.triplet_margin_loss, (x1, x2, rng.normal(size=(6, 5))), swap=True)
    assert_compiles(pl.hinge_embedding_loss, (x1, _signs((6, 5), rng)))


def test_margin_ranking_fused_node_at_a_large_size_gives_pytorchs_numbers():
    """From 32768 elements, where only ``input1`` needs a gradient, the torch fast path is one fused node of the
    family's closed form (below, ATen's kernel): PyTorch's value and gradient, NaN and the kink included."""
    import torch
    import torch.nn.functional as F

    rng = np.random.default_rng(11)
    x1, x2 = rng.normal(size=(256, 256)), rng.normal(size=(256, 256))
    y = rng.choice([-1.0, 1.0], size=(256, 256))
    x2[0, 0] = x1[0, 0] + 0.1 * y[0, 0]  # the kink: m - y (x1 - x2) = 0 at m = 0.1
    x1[1, 1] = np.nan
    for reduction in ("mean", "sum", "none"):
        a = torch.tensor(x1, requires_grad=True)
        out = pl.margin_ranking_loss(a, torch.tensor(x2), torch.tensor(y), margin=0.1, reduction=reduction)
        assert "Fused" in type(out.grad_fn).__name__
        b = torch.tensor(x1, requires_grad=True)
        expected = F.margin_ranking_loss(b, torch.tensor(x2), torch.tensor(y), margin=0.1, reduction=reduction)
        np.testing.assert_allclose(out.detach().numpy(), expected.detach().numpy(), rtol=1e-12)
        (grad,) = torch.autograd.grad(out.sum(), a)
        (expected_grad,) = torch.autograd.grad(expected.sum(), b)
        np.testing.assert_allclose(grad.numpy(), expected_grad.numpy(), rtol=1e-12, atol=1e-15)
    with pytest.raises(ValueError, match="labels 1 or -1"):
        bad = y.copy()
        bad[3, 3] = 0.5
        pl.margin_ranking_loss(torch.tensor(x1, requires_grad=True), torch.tensor(x2), torch.tensor(bad))
    small = torch.tensor(x1[:4], requires_grad=True)
    out = pl.margin_ranking_loss(small, torch.tensor(x2[:4]), torch.tensor(y[:4]))
    assert "Fused" not in type(out.grad_fn).__name__
