"""Dice, Jaccard and Tversky losses against segmentation_models_pytorch (smp) in float64.

smp's ``DiceLoss``, ``JaccardLoss`` and ``TverskyLoss`` give the values (``"mean"``; the
per-class vector for ``"none"``/``"sum"`` through their ``aggregate_loss`` hook) and,
by torch autograd, the gradients the closed-form ones are compared with on every backend.
"""

from __future__ import annotations

import zlib

import numpy as np
import pytest
from _support import torch

import polyloss as pl
from polyloss._torchvision import import_torchvision

import_torchvision()  # smp imports timm, which imports torchvision
smp_losses = pytest.importorskip("segmentation_models_pytorch.losses")

LOSSES = {
    "dice_loss": (pl.dice_loss, "DiceLoss"),
    "jaccard_loss": (pl.jaccard_loss, "JaccardLoss"),
    "tversky_loss": (pl.tversky_loss, "TverskyLoss"),
}
REDUCTIONS = ["mean", "none", "sum"]


def smp_reference(name, mode, reduction, **options):
    """smp's loss; for "none" / "sum" the per-class losses through its ``classes=[c]`` option
    (Tversky's power applied to the reduced value)."""
    cls = getattr(smp_losses, LOSSES[name][1])
    if reduction == "mean":
        return cls(mode, **options)
    gamma = options.pop("gamma", 1.0)
    if name == "tversky_loss":
        options["gamma"] = 1.0

    def reference(x, t):
        if mode == "binary":
            per_class = cls(mode, **options)(x, t).reshape(1)
        else:
            per_class = torch.stack([cls(mode, classes=[c], **options)(x, t) for c in range(x.shape[1])])
        return (per_class if reduction == "none" else per_class.sum()) ** gamma

    return reference


def _data(mode, rng, *, ignore, from_logits, shape=(2, 3, 5, 4)):
    n, c, *space = shape
    if mode == "binary":
        c = 1
    x = 2.0 * rng.normal(size=(n, c, *space))
    if mode == "multiclass":
        t = rng.integers(0, c, (n, *space))
        if rng.random() < 0.5:
            t[t == c - 1] = 0  # an absent class: its loss counts 0
    elif mode == "multilabel":
        t = (rng.random((n, c, *space)) < 0.4).astype(np.float64)
        t[:, c - 1] = 0.0  # an absent class
    else:
        t = (rng.random((n, *space)) < 0.4).astype(np.float64)
    if ignore is not None:
        hit = rng.random(t.shape) < 0.2
        t = np.where(hit, ignore, t).astype(t.dtype)
    if not from_logits:
        x = np.exp(x) / np.exp(x).sum(axis=1, keepdims=True) if mode == "multiclass" else 1 / (1 + np.exp(-x))
    return x, t


def _compare(xp, name, x, t, options, ref_options, mode, reduction, axis=1):
    fn = LOSSES[name][0]
    xt = torch.tensor(np.moveaxis(x, axis, 1), dtype=torch.float64, requires_grad=True)
    tt = torch.tensor(t if mode != "multilabel" else np.moveaxis(t, axis, 1))
    expected = smp_reference(name, mode, reduction, **ref_options)(xt, tt)
    expected.sum().backward()
    ref_grad = np.moveaxis(xt.grad.numpy(), 1, axis)
    opts = {"mode": mode, "reduction": reduction, "axis": axis, **options}
    value = fn(xp.asarray(x), xp.asarray(t), **opts)
    scale = 10 * xp.rtol
    np.testing.assert_allclose(xp.to_numpy(value), expected.detach().numpy(), rtol=scale, atol=10 * xp.atol)
    v2, grad = pl.value_and_grad(fn, xp.asarray(x), xp.asarray(t), **opts)
    np.testing.assert_allclose(xp.to_numpy(v2), xp.to_numpy(value), rtol=xp.rtol, atol=xp.atol)
    np.testing.assert_allclose(xp.to_numpy(grad), ref_grad, rtol=scale, atol=10 * xp.atol)
    if xp.is_torch:
        xin = xp.asarray(x, requires_grad=True)
        fn(xin, xp.asarray(t), **opts).sum().backward()
        np.testing.assert_allclose(xp.to_numpy(xin.grad), xp.to_numpy(grad), rtol=scale, atol=10 * xp.atol)


@pytest.mark.parametrize("name", list(LOSSES))
@pytest.mark.parametrize("mode", ["multiclass", "binary", "multilabel"])
@pytest.mark.parametrize("ignore", [None, -1])
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_matches_smp(xp, name, mode, ignore, reduction):
    rng = np.random.default_rng(zlib.crc32(f"{name}{mode}{ignore}{reduction}".encode()))
    x, t = _data(mode, rng, ignore=ignore, from_logits=True)
    options = {"ignore_index": ignore}
    _compare(xp, name, x, t, options, dict(options), mode, reduction)


@pytest.mark.parametrize("name", list(LOSSES))
@pytest.mark.parametrize("mode", ["multiclass", "binary", "multilabel"])
def test_probabilities_and_smooth(xp, name, mode):
    rng = np.random.default_rng(7)
    x, t = _data(mode, rng, ignore=None, from_logits=False)
    options = {"from_logits": False, "smooth": 1.0, "eps": 1e-5}
    _compare(xp, name, x, t, options, dict(options), mode, "mean")


@pytest.mark.parametrize("alpha,beta,gamma", [(0.3, 0.7, 1.0), (0.7, 0.3, 0.75), (0.5, 0.5, 2.0), (1.0, 1.0, 1.5)])
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_tversky_options(xp, alpha, beta, gamma, reduction):
    rng = np.random.default_rng(8)
    x, t = _data("multiclass", rng, ignore=-1, from_logits=True)
    options = {"alpha": alpha, "beta": beta, "gamma": gamma, "ignore_index": -1}
    _compare(xp, "tversky_loss", x, t, options, dict(options), "multiclass", reduction)


@pytest.mark.parametrize("name", list(LOSSES))
@pytest.mark.parametrize("mode", ["multiclass", "multilabel"])
def test_class_axis_last(xp, name, mode):
    rng = np.random.default_rng(9)
    x, t = _data(mode, rng, ignore=None, from_logits=True)
    x = np.moveaxis(x, 1, -1)
    if mode == "multilabel":
        t = np.moveaxis(t, 1, -1)
    _compare(xp, name, x, t, {}, {}, mode, "mean", axis=-1)


def test_tversky_half_half_is_dice_and_one_one_is_jaccard(xp):
    rng = np.random.default_rng(10)
    x, t = _data("multiclass", rng, ignore=None, from_logits=True)
    xs, ts = xp.asarray(x), xp.asarray(t)
    dice = xp.to_numpy(pl.dice_loss(xs, ts, reduction="none"))
    jaccard = xp.to_numpy(pl.jaccard_loss(xs, ts, reduction="none"))
    np.testing.assert_allclose(xp.to_numpy(pl.tversky_loss(xs, ts, reduction="none")), dice, rtol=10 * xp.rtol)
    np.testing.assert_allclose(xp.to_numpy(pl.tversky_loss(xs, ts, alpha=1.0, beta=1.0, reduction="none")), jaccard,
                               rtol=10 * xp.rtol)


@pytest.mark.parametrize("name", list(LOSSES))
def test_ignored_pixels_leave_every_sum(xp, name):
    """An ignored pixel changes nothing, whatever its prediction: the loss equals the loss without it."""
    rng = np.random.default_rng(11)
    x = rng.normal(size=(1, 3, 1, 6))
    t = rng.integers(0, 3, (1, 1, 6))
    t[0, 0, 2] = 255
    fn = LOSSES[name][0]
    with_ignored = fn(xp.asarray(x), xp.asarray(t), ignore_index=255, reduction="none")
    keep = [0, 1, 3, 4, 5]
    without = fn(xp.asarray(x[..., keep]), xp.asarray(t[..., keep]), reduction="none")
    np.testing.assert_allclose(xp.to_numpy(with_ignored), xp.to_numpy(without), rtol=10 * xp.rtol)
    x[0, :, 0, 2] = [50.0, -50.0, 3.0]
    again = fn(xp.asarray(x), xp.asarray(t), ignore_index=255, reduction="none")
    np.testing.assert_allclose(xp.to_numpy(again), xp.to_numpy(without), rtol=10 * xp.rtol)
    _, grad = pl.value_and_grad(fn, xp.asarray(x), xp.asarray(t), ignore_index=255)
    assert np.all(xp.to_numpy(grad)[0, :, 0, 2] == 0.0)


@pytest.mark.parametrize("name", list(LOSSES))
def test_soft_masks_use_smps_soft_intersection(xp, name):
    rng = np.random.default_rng(12)
    x = rng.normal(size=(2, 3, 4, 4))
    t = rng.uniform(size=(2, 3, 4, 4))
    _compare(xp, name, x, t, {"smooth": 0.5}, {"smooth": 0.5}, "multilabel", "none")


# -- Lovasz ----------------------------------------------------------------------------------------


@pytest.fixture
def smp_lovasz(monkeypatch):
    """smp's ``LovaszLoss`` in float64: its ``_lovasz_grad`` casts to float32 (``.float()``), which
    ``torch.dot`` then rejects next to float64 errors; the same function keeping the dtype is patched in."""
    lovasz = pytest.importorskip("segmentation_models_pytorch.losses.lovasz")

    def lovasz_grad(gt_sorted):
        gt = gt_sorted.double()
        total = gt.sum()
        jaccard = 1.0 - (total - gt.cumsum(0)) / (total + (1 - gt).cumsum(0))
        if len(gt) > 1:
            jaccard[1:] = jaccard[1:] - jaccard[:-1].clone()
        return jaccard

    monkeypatch.setattr(lovasz, "_lovasz_grad", lovasz_grad)
    return lovasz.LovaszLoss


def _lovasz_data(mode, rng, ignore, shape=(3, 4, 5, 6)):
    n, c, *space = shape
    c = 1 if mode == "binary" else c
    x = rng.normal(size=(n, c, *space))
    if mode == "multiclass":
        t = rng.integers(0, c, (n, *space))
        t[t == c - 1] = 0  # an absent class
    else:
        t = (rng.random((n, c, *space)) < 0.4).astype(np.float64)
    if ignore is not None:
        t = np.where(rng.random(t.shape) < 0.2, ignore, t).astype(t.dtype)
    return x, t


def _check_lovasz(xp, x, t, expected, ref_grad, options):
    scale = 10 * xp.rtol
    value = pl.lovasz_loss(xp.asarray(x), xp.asarray(t), **options)
    np.testing.assert_allclose(xp.to_numpy(value), expected, rtol=scale, atol=10 * xp.atol)
    v2, grad = pl.value_and_grad(pl.lovasz_loss, xp.asarray(x), xp.asarray(t), **options)
    np.testing.assert_allclose(xp.to_numpy(v2), xp.to_numpy(value), rtol=xp.rtol, atol=xp.atol)
    np.testing.assert_allclose(xp.to_numpy(grad), ref_grad, rtol=scale, atol=10 * xp.atol)
    if xp.is_torch:
        xin = xp.asarray(x, requires_grad=True)
        pl.lovasz_loss(xin, xp.asarray(t), **options).sum().backward()
        np.testing.assert_allclose(xp.to_numpy(xin.grad), xp.to_numpy(grad), rtol=scale, atol=10 * xp.atol)


@pytest.mark.parametrize("mode", ["multiclass", "binary", "multilabel"])
@pytest.mark.parametrize("per_image", [False, True])
@pytest.mark.parametrize("ignore", [None, -1])
def test_lovasz_matches_smp(xp, smp_lovasz, mode, per_image, ignore):
    rng = np.random.default_rng(zlib.crc32(f"lovasz{mode}{per_image}{ignore}".encode()))
    x, t = _lovasz_data(mode, rng, ignore)
    xt = torch.tensor(x, requires_grad=True)
    expected = smp_lovasz(mode, per_image=per_image, ignore_index=ignore)(xt, torch.tensor(t))
    expected.backward()
    options = {"mode": mode, "per_image": per_image, "ignore_index": ignore}
    _check_lovasz(xp, x, t, expected.detach().numpy(), xt.grad.numpy(), options)
    # "none" and "sum": per image (each image on its own in smp), or per class / the one loss
    rows = xp.to_numpy(pl.lovasz_loss(xp.asarray(x), xp.asarray(t), **options, reduction="none"))
    total = xp.to_numpy(pl.lovasz_loss(xp.asarray(x), xp.asarray(t), **options, reduction="sum"))
    np.testing.assert_allclose(total, rows.sum(), rtol=10 * xp.rtol)
    if per_image:
        each = [smp_lovasz(mode, ignore_index=ignore)(torch.tensor(x[i:i + 1]), torch.tensor(t[i:i + 1])).item()
                for i in range(len(x))]
        np.testing.assert_allclose(rows, each, rtol=10 * xp.rtol, atol=10 * xp.atol)
    elif mode == "multiclass":
        assert rows.shape == (x.shape[1],) and rows[-1] == 0.0  # the absent class
        np.testing.assert_allclose(rows.sum() / np.count_nonzero(rows), expected.item(), rtol=10 * xp.rtol)
    else:
        assert rows.shape == (1,)


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_lovasz_cotangents_and_class_axis_last(xp, reduction):
    rng = np.random.default_rng(21)
    x, t = _lovasz_data("multiclass", rng, -1)
    x = np.moveaxis(x, 1, -1)
    options = {"axis": -1, "per_image": True, "ignore_index": -1, "reduction": reduction}
    if not xp.is_torch:
        pytest.skip("torch autograd is the reference here")
    xin = xp.asarray(x, requires_grad=True)
    out = pl.lovasz_loss(xin, xp.asarray(t), **options)
    c = np.random.default_rng(0).normal(size=tuple(out.shape))
    out.backward(xp.asarray(c))
    _, grad = pl.value_and_grad(pl.lovasz_loss, xp.asarray(x), xp.asarray(t), cotangent=xp.asarray(c), **options)
    np.testing.assert_allclose(xp.to_numpy(grad), xp.to_numpy(xin.grad), rtol=10 * xp.rtol, atol=10 * xp.atol)


def test_lovasz_probabilities_input(xp, smp_lovasz):
    """``from_logits=False`` takes softmax probabilities (smp always applies the softmax: given the logits)."""
    rng = np.random.default_rng(22)
    x, t = _lovasz_data("multiclass", rng, None)
    p = np.exp(x) / np.exp(x).sum(axis=1, keepdims=True)
    expected = smp_lovasz("multiclass")(torch.tensor(x), torch.tensor(t)).item()
    out = pl.lovasz_loss(xp.asarray(p), xp.asarray(t), from_logits=False)
    np.testing.assert_allclose(xp.to_numpy(out), expected, rtol=10 * xp.rtol)
