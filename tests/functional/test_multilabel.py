"""Soft margin, multi-label soft margin and multi-label margin losses against torch.nn.functional on every
backend (values, autograd with the fast paths on and off, closed-form gradients)."""

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

import polyloss as pl

REDUCTIONS = ["none", "mean", "sum"]


def _scores(shape, seed=0):
    rng = np.random.default_rng(seed)
    return 2 * rng.normal(size=shape), rng


@pytest.mark.parametrize("shape", [(7,), (3, 4), (2, 3, 2)])
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("int_target", [False, True])
def test_soft_margin_matches_torch(xp, shape, reduction, int_target):
    x, rng = _scores(shape)
    y = np.where(rng.uniform(size=shape) < 0.5, -1, 1)
    y = y if int_target else y.astype(np.float64)
    check_against_torch(xp, pl.soft_margin_loss, F.soft_margin_loss, (x, y), {"reduction": reduction})


def test_soft_margin_is_finite_where_pytorchs_overflows(xp):
    # PyTorch's log1p(exp(-y x)) is inf here and its gradient NaN; the limit is -y x and -y
    x = np.array([-800.0, 800.0, -1e30])
    y = np.array([1.0, -1.0, 1.0])
    expected = (np.array([800.0, 800.0, 1e30]), np.array([-1.0, 1.0, -1.0]))
    check_multi(xp, pl.soft_margin_loss, (x, y), {"reduction": "none"}, expected)


@pytest.mark.parametrize("shape", [(5,), (4, 5), (2, 3, 4)])
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("weight", [None, "classes", "full"])
def test_multilabel_soft_margin_matches_torch(xp, shape, reduction, weight):
    x, rng = _scores(shape, seed=1)
    y = (rng.uniform(size=shape) < 0.4).astype(np.float64)
    options = {"reduction": reduction}
    if weight == "classes":
        options["weight"] = rng.uniform(0.1, 2.0, size=shape[-1:])
    elif weight == "full":
        options["weight"] = rng.uniform(0.1, 2.0, size=shape)
    check_against_torch(xp, pl.multilabel_soft_margin_loss, F.multilabel_soft_margin_loss, (x, y), options)


def test_multilabel_soft_margin_soft_and_bool_labels(xp):
    x, rng = _scores((4, 3), seed=2)
    soft = rng.uniform(size=(4, 3))
    check_against_torch(xp, pl.multilabel_soft_margin_loss, F.multilabel_soft_margin_loss, (x, soft), {})
    hard = soft < 0.5
    expected = (F.multilabel_soft_margin_loss(t64(x), t64(hard.astype(np.float64))).numpy(), None)
    value = pl.multilabel_soft_margin_loss(xp.asarray(x), xp.asarray(hard))
    np.testing.assert_allclose(xp.to_numpy(value), expected[0], rtol=10 * xp.rtol)


def _label_lists(n, c, rng):
    """Each row: a random number of distinct class indices, then -1, then anything in [-1, C)."""
    target = rng.integers(-1, c, size=(n, c))
    for row in target:
        k = rng.integers(0, c + 1)
        row[:k] = rng.permutation(c)[:k]
        if k < c:
            row[k] = -1
    return target


@pytest.mark.parametrize("shape", [(6,), (5, 6), (2, 3, 4)])
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_multilabel_margin_matches_torch(xp, shape, reduction):
    x, rng = _scores(shape, seed=3)
    c = shape[-1]
    rows = int(np.prod(shape[:-1]))
    target = _label_lists(rows, c, rng).reshape(shape)
    if len(shape) == 1:
        target = _label_lists(1, c, rng)[0]

    def ref(a, t, reduction):
        out = F.multilabel_margin_loss(a.reshape(-1, c), t.reshape(-1, c), reduction=reduction)
        if reduction == "none":
            return out.reshape(shape[:-1])
        return out

    check_against_torch(xp, pl.multilabel_margin_loss, ref, (x, target), {"reduction": reduction})


def test_multilabel_margin_repeated_targets_and_kink(xp):
    x = np.array([[0.0, 1.0, 0.5, 0.0], [1.0, 0.0, 0.0, 2.0]])
    target = np.array([[1, 1, -1, 0], [0, 3, -1, -1]])  # repeats count twice; z = 0 at class 2 of row 0
    check_against_torch(xp, pl.multilabel_margin_loss, F.multilabel_margin_loss, (x, target), {"reduction": "none"})


def test_multilabel_margin_narrow_integer_targets(xp):
    x, rng = _scores((4, 5), seed=4)
    target = _label_lists(4, 5, rng)
    expected = (F.multilabel_margin_loss(t64(x), t64(target)).numpy(), None)
    for dtype in (np.int8, np.int16, np.int32):
        value = pl.multilabel_margin_loss(xp.asarray(x), xp.asarray(target, dtype=getattr(xp.ns, dtype.__name__)))
        np.testing.assert_allclose(xp.to_numpy(value), expected[0], rtol=10 * xp.rtol)


@pytest.mark.parametrize("bad", [5, -2])
def test_multilabel_margin_target_out_of_range(bad):
    x, _ = _scores((2, 5), seed=5)
    target = np.array([[1, -1, 0, 0, 0], [0, 1, 2, 3, 4]])
    target[0, 3] = bad  # after the first -1: PyTorch refuses it too
    for fast in (True, False):
        with pl.fast_paths(fast):
            for lib in (np.asarray, t64):
                with pytest.raises(ValueError, match=f"target of multilabel_margin_loss holds {bad}"):
                    pl.multilabel_margin_loss(lib(x), lib(target))


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_fast_paths_equal_generic(reduction):
    x, rng = _scores((6, 5), seed=6)
    y = np.where(rng.uniform(size=(6, 5)) < 0.5, -1.0, 1.0)
    assert_fast_equals_generic(pl.soft_margin_loss, (x, y), reduction=reduction)
    assert_fast_equals_generic(pl.multilabel_soft_margin_loss, (x, (y > 0) * 1.0), reduction=reduction,
                               weight=rng.uniform(size=5))
    assert_fast_equals_generic(pl.multilabel_margin_loss, (x, _label_lists(6, 5, rng)), reduction=reduction)
    x3, _ = _scores((2, 3, 5), seed=7)
    assert_fast_equals_generic(pl.multilabel_margin_loss, (x3, _label_lists(6, 5, rng).reshape(2, 3, 5)),
                               reduction=reduction)


def test_multilabel_margin_nan_score_is_kept():
    x, _ = _scores((3, 4), seed=8)
    x[1, 2] = np.nan
    target = np.array([[0, -1, 0, 0], [1, 2, -1, 0], [3, -1, 0, 0]])
    for fast in (True, False):
        with pl.fast_paths(fast):
            out = pl.multilabel_margin_loss(t64(x), t64(target), reduction="none")
        assert torch.isnan(out[1]) and torch.isfinite(out[[0, 2]]).all()


def test_compiles_fullgraph():
    x, rng = _scores((6, 5), seed=9)
    y = np.where(rng.uniform(size=(6, 5)) < 0.5, -1.0, 1.0)
    assert_compiles(pl.soft_margin_loss, (x, y))
    assert_compiles(pl.multilabel_soft_margin_loss, (x, (y > 0) * 1.0))
    assert_compiles(pl.multilabel_margin_loss, (x, _label_lists(6, 5, rng)))
