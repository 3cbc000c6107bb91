"""Varifocal, quality focal and distribution focal losses against float64 NumPy transcriptions of mmdetection.

References (transcribed formula by formula, not copied):
``mmdet/models/losses/varifocal_loss.py`` (``varifocal_loss``) and
``mmdet/models/losses/gfocal_loss.py`` (``quality_focal_loss``, ``distribution_focal_loss``)
of open-mmlab/mmdetection. The gradients are checked against central finite differences
of those transcriptions (float64) and, on torch, against autograd through polyloss.
"""

from __future__ import annotations

import numpy as np
import pytest

import polyloss as pl

REDUCTIONS = ["none", "mean", "sum"]


def _sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def _bce_with_logits(x, t):
    # F.binary_cross_entropy_with_logits(reduction="none")
    return np.maximum(x, 0) - x * t + np.log1p(np.exp(-np.abs(x)))


def _reduce(loss, reduction):
    return {"none": loss, "mean": loss.mean() if loss.size else 0.0, "sum": loss.sum()}[reduction]


def mmdet_varifocal(pred, target, alpha=0.75, gamma=2.0, iou_weighted=True, reduction="mean"):
    p = _sigmoid(pred)
    positive = (target > 0.0).astype(float)
    negative = (target <= 0.0).astype(float)
    first = target * positive if iou_weighted else positive
    focal_weight = first + alpha * np.abs(p - target) ** gamma * negative
    return _reduce(_bce_with_logits(pred, target) * focal_weight, reduction)


def mmdet_quality_focal(pred, label, score, beta=2.0, reduction="mean"):
    p = _sigmoid(pred)
    loss = _bce_with_logits(pred, np.zeros_like(pred)) * p**beta
    bg = pred.shape[1]
    pos = np.nonzero((label >= 0) & (label < bg))[0]
    pos_label = label[pos]
    scale = score[pos] - p[pos, pos_label]
    loss[pos, pos_label] = _bce_with_logits(pred[pos, pos_label], score[pos]) * np.abs(scale) ** beta
    return _reduce(loss.sum(axis=1), reduction)


def _cross_entropy_rows(pred, index):
    m = pred.max(axis=1, keepdims=True)
    lse = np.log(np.exp(pred - m).sum(axis=1)) + m[:, 0]
    return lse - pred[np.arange(len(index)), index]


def mmdet_distribution_focal(pred, label, reduction="mean"):
    dis_left = label.astype(np.int64)
    dis_right = dis_left + 1
    weight_left = dis_right - label
    weight_right = label - dis_left
    # mmdetection indexes bin n + 1 at label = n (weight 0): polyloss takes the CE at bin n there
    safe_right = np.minimum(dis_right, pred.shape[1] - 1)
    loss = _cross_entropy_rows(pred, dis_left) * weight_left + _cross_entropy_rows(pred, safe_right) * weight_right
    return _reduce(loss, reduction)


def _finite_differences(ref, x, rest, options, h=1e-6):
    numeric = np.zeros_like(x)
    for i in range(x.size):
        e = np.zeros_like(x)
        e.flat[i] = h
        numeric.flat[i] = (np.sum(ref(x + e, *rest, **options)) - np.sum(ref(x - e, *rest, **options))) / (2 * h)
    return numeric


def _check(xp, fn, ref, x, rest, options, *, extra=None):
    """Value vs the reference, closed-form gradient vs finite differences, and on torch autograd vs closed form.

    ``rest``: the other positional arrays; ``extra``: arrays passed by keyword to
    ``value_and_grad`` (it takes two positional arrays).
    """
    extra = extra or {}
    expected = ref(x, *rest, **{**options, **extra})
    args = [xp.asarray(a) for a in rest]
    kw = {k: xp.asarray(a) for k, a in extra.items()}
    value = fn(xp.asarray(x), *args, **kw, **options)
    np.testing.assert_allclose(xp.to_numpy(value), expected, rtol=10 * xp.rtol, atol=10 * xp.atol)
    v2, grad = pl.value_and_grad(fn, xp.asarray(x), *args, **kw, **options)
    np.testing.assert_allclose(xp.to_numpy(v2), xp.to_numpy(value), rtol=xp.rtol, atol=xp.atol)
    numeric = _finite_differences(lambda a, *r, **o: ref(a, *r, **o), x, rest, {**options, **extra})
    np.testing.assert_allclose(xp.to_numpy(grad), numeric, rtol=max(1e-6, 10 * xp.rtol), atol=1e-7 + 10 * xp.atol)
    if xp.is_torch:
        xin = xp.asarray(x, requires_grad=True)
        fn(xin, *args, **kw, **options).sum().backward()
        np.testing.assert_allclose(xp.to_numpy(xin.grad), xp.to_numpy(grad), rtol=10 * xp.rtol, atol=10 * xp.atol)


def _detector_targets(rng, n, c):
    """IoU-aware targets: one class per positive row holding an IoU, zeros elsewhere."""
    target = np.zeros((n, c))
    rows = rng.random(n) < 0.5
    cols = rng.integers(0, c, n)
    target[np.arange(n)[rows], cols[rows]] = rng.uniform(0.05, 1.0, rows.sum())
    return target


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("alpha,gamma", [(0.75, 2.0), (0.25, 1.5), (1.0, 0.0), (0.5, 0.5)])
@pytest.mark.parametrize("iou_weighted", [True, False])
def test_varifocal(xp, reduction, alpha, gamma, iou_weighted):
    rng = np.random.default_rng(0)
    x = 2.0 * rng.normal(size=(6, 4))
    t = _detector_targets(rng, 6, 4)
    _check(xp, pl.varifocal_loss, mmdet_varifocal, x, [t],
           {"alpha": alpha, "gamma": gamma, "iou_weighted": iou_weighted, "reduction": reduction})


def test_varifocal_soft_targets_any_shape(xp):
    rng = np.random.default_rng(1)
    x = rng.normal(size=(2, 3, 5))
    t = np.where(rng.random((2, 3, 5)) < 0.5, 0.0, rng.random((2, 3, 5)))
    _check(xp, pl.varifocal_loss, mmdet_varifocal, x, [t], {"reduction": "mean"})


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("beta", [2.0, 1.0, 0.0, 0.5])
def test_quality_focal(xp, reduction, beta):
    rng = np.random.default_rng(2)
    n, c = 7, 4
    x = 2.0 * rng.normal(size=(n, c))
    label = rng.integers(0, c + 1, n)  # c is the background
    score = rng.uniform(0.0, 1.0, n)
    _check(xp, pl.quality_focal_loss, mmdet_quality_focal, x, [label], {"beta": beta, "reduction": reduction},
           extra={"score": score})


@pytest.mark.parametrize("dtype", ["int64", "int32", "uint8", "int16"])
def test_quality_focal_label_dtypes(xp, dtype):
    rng = np.random.default_rng(3)
    x = rng.normal(size=(5, 3))
    label = np.array([0, 3, 2, 1, 3])
    score = rng.uniform(size=5)
    expected = mmdet_quality_focal(x, label, score)
    ns = xp.ns
    out = pl.quality_focal_loss(xp.asarray(x), xp.asarray(label, dtype=getattr(ns, dtype)), xp.asarray(score))
    np.testing.assert_allclose(xp.to_numpy(out), expected, rtol=10 * xp.rtol)


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("bins", [2, 5, 17])
def test_distribution_focal(xp, reduction, bins):
    rng = np.random.default_rng(4)
    n = 9
    x = 2.0 * rng.normal(size=(n, bins))
    label = rng.uniform(0.0, bins - 1, n)
    label[0], label[1], label[2] = 0.0, bins - 1.0, 1.0  # the ends and an integer inside
    _check(xp, pl.distribution_focal_loss, mmdet_distribution_focal, x, [label], {"reduction": reduction})


def test_distribution_focal_at_the_last_bin_is_its_cross_entropy(xp):
    x = np.array([[0.3, -1.0, 2.0, 0.5]])
    out = pl.distribution_focal_loss(xp.asarray(x), xp.asarray(np.array([3.0])))
    np.testing.assert_allclose(xp.to_numpy(out), _cross_entropy_rows(x, np.array([3]))[0], rtol=10 * xp.rtol)


def test_distribution_focal_ultralytics_layout(xp):
    """ultralytics' DFL: (N * 4, reg_max) rows, the mean over the four sides per anchor."""
    rng = np.random.default_rng(5)
    x = rng.normal(size=(3, 4, 16))
    label = rng.uniform(0, 14.99, (3, 4))
    per_side = pl.distribution_focal_loss(xp.asarray(x), xp.asarray(label), reduction="none")
    expected = mmdet_distribution_focal(x.reshape(-1, 16), label.reshape(-1), reduction="none").reshape(3, 4)
    np.testing.assert_allclose(xp.to_numpy(per_side), expected, rtol=10 * xp.rtol)


def test_saturated_logits_give_the_limit(xp):
    x = np.array([[40.0, -40.0], [-40.0, 40.0]])
    t = np.array([[1.0, 0.0], [0.0, 1.0]])
    value, grad = pl.value_and_grad(pl.varifocal_loss, xp.asarray(x), xp.asarray(t))
    assert np.all(np.isfinite(xp.to_numpy(grad)))
    assert abs(float(xp.to_numpy(value))) < 1e-15


def test_options_beyond_the_dtype_are_value_errors(xp):
    x, t = xp.asarray(np.zeros((2, 2))), xp.asarray(np.zeros((2, 2)))
    if xp.float_dtype == xp.ns.float32:
        with pytest.raises(ValueError, match="gamma"):
            pl.varifocal_loss(x, t, gamma=1e300)
    else:
        assert np.isfinite(xp.to_numpy(pl.varifocal_loss(x, t, gamma=1e300)))
