"""PyTorch hinge fast path: the family's one element-wise formula (``hinge_elementwise``) in the fused backward."""

from __future__ import annotations

import numpy as np
import pytest

import polyloss as pl

torch = pytest.importorskip("torch")

LOSSES = ("hinge_loss", "squared_hinge_loss")
REDUCTIONS = ("none", "mean", "sum")


def _reference(name, x, signed, margin, reduction):
    """The benchmark's reference formula, ``clamp(m - y x, min=0)``, on -1/+1 labels."""
    h = torch.clamp(margin - signed * x, min=0)
    loss = h * h if name == "squared_hinge_loss" else h
    return {"none": loss, "mean": loss.sum() / loss.numel() if loss.numel() else loss.sum(), "sum": loss.sum()}[
        reduction]


def _labels(shape, kind, dtype, seed=0):
    signed = torch.tensor(np.random.default_rng(seed).choice([-1.0, 1.0], shape), dtype=dtype)
    binary = (signed + 1) / 2
    labels = {"signed": signed, "binary": binary, "int": binary.long(), "bool": binary.bool()}[kind]
    return labels, signed


@pytest.mark.parametrize("name", LOSSES)
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("kind", ["signed", "binary", "int", "bool"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("grad", [False, True], ids=["no_grad", "grad"])
def test_equals_the_reference_formula_exactly(name, reduction, kind, dtype, grad):
    x = torch.tensor(2.0 * np.random.default_rng(1).standard_normal((64, 33)), dtype=dtype)
    y, signed = _labels(x.shape, kind, dtype)
    margin = 0.7
    out = pl.get_loss(name)(x.clone().requires_grad_(grad), y, margin=margin, reduction=reduction)
    torch.testing.assert_close(out.detach(), _reference(name, x, signed, margin, reduction), rtol=0, atol=0)


@pytest.mark.parametrize("name", LOSSES)
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_gradient_without_and_with_grad_the_same_value(name, reduction):
    x = torch.randn(7, 5, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    y, signed = _labels(x.shape, "binary", torch.float64, seed=2)
    loss = pl.get_loss(name)
    with torch.no_grad():
        value = loss(x, y, reduction=reduction)
    xg, xr = x.clone().requires_grad_(True), x.clone().requires_grad_(True)
    out = loss(xg, y, reduction=reduction)
    assert type(out.grad_fn).__name__ == "_FusedBackward"
    torch.testing.assert_close(out.detach(), value, rtol=0, atol=0)
    expected = _reference(name, xr, signed, 1.0, reduction)
    cotangent = torch.linspace(-1.0, 2.0, out.numel(), dtype=out.dtype).reshape(out.shape)
    torch.testing.assert_close(torch.autograd.grad(out, xg, cotangent)[0],
                               torch.autograd.grad(expected, xr, cotangent)[0], rtol=1e-15, atol=0)


@pytest.mark.parametrize("name", LOSSES)
@pytest.mark.parametrize("fast", [True, False])
def test_nan_score_gives_nan_and_bad_label_raises_before_any_kernel(name, fast):
    x = torch.tensor([[0.5, -0.3], [1.5, 0.2]])
    loss = pl.get_loss(name)
    with pl.fast_paths(fast):
        for bad in (float("nan"), 2.0, 0.5, -2.0):
            y = torch.tensor([[1.0, 0.0], [bad, 1.0]])
            with pytest.raises(ValueError, match=r"target of a hinge loss .*\{-1, 1\} or \{0, 1\}"):
                loss(x.clone().requires_grad_(True), y)
        with pytest.raises(ValueError, match="target"):
            loss(x, torch.tensor([[1, 0], [3, 1]], dtype=torch.int16))
        xn = x.clone()
        xn[0, 0] = float("nan")
        assert loss(xn, torch.ones_like(x)).isnan()
        assert loss(xn, torch.ones_like(x), reduction="none")[0, 0].isnan()


@pytest.mark.parametrize("name", LOSSES)
def test_unreadable_labels_enter_as_y2_plus_y_minus_1_on_every_path(name):
    # under torch.func (as on a GPU or while compiling) labels are not read: the fast and generic paths
    # give the same numbers for any label, here s = 2^2 + 2 - 1 = 5 for a label of 2
    x = torch.tensor([0.5, -0.3, 0.1], dtype=torch.float64)
    y = torch.tensor([2.0, 0.0, 1.0], dtype=torch.float64)
    loss = pl.get_loss(name)
    value = torch.func.grad(lambda a: loss(a, y, reduction="sum"))(x)
    s = y * y + y - 1
    h = torch.clamp(1.0 - s * x, min=0)
    expected = -2 * s * h if name == "squared_hinge_loss" else torch.where(h > 0, -s, 0.0)
    torch.testing.assert_close(value, expected, rtol=1e-12, atol=0)


@pytest.mark.parametrize("name", LOSSES)
def test_margins_and_dtypes_equal_the_reference_exactly(name):
    loss = pl.get_loss(name)
    rng = np.random.default_rng(3)
    for margin in [*np.linspace(0.0, 3.0, 80).tolist(), 1.0]:
        for dtype in (torch.float32, torch.float64, torch.bfloat16):
            x = torch.tensor(rng.standard_normal((4, 3))).to(dtype)
            y, signed = _labels(x.shape, "binary", dtype, seed=int(margin * 10))
            out = loss(x, y, margin=margin, reduction="none")
            assert out.dtype == dtype
            if dtype == torch.bfloat16:  # computed in float32 and rounded
                expected = _reference(name, x.float(), signed.float(), margin, "none").to(dtype)
            else:
                expected = _reference(name, x, signed, margin, "none")
            torch.testing.assert_close(out, expected, rtol=0, atol=0)


@pytest.mark.parametrize("name", LOSSES)
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_empty_input(name, reduction):
    x = torch.zeros(0, 3, requires_grad=True)
    out = pl.get_loss(name)(x, torch.zeros(0, 3), reduction=reduction)
    assert out.shape == ((0, 3) if reduction == "none" else ())
    if reduction != "none":
        assert out.item() == 0.0
        (grad,) = torch.autograd.grad(out, x)
        assert grad.shape == (0, 3)
