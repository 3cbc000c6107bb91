"""Numerical care: extreme logits, probabilities 0 and 1, kinks, half precision."""

from __future__ import annotations

import numpy as np
import pytest

import polyloss as pl

torch = pytest.importorskip("torch")

EXTREME = np.array([[1e4, -1e4, 0.0], [-1e4, 1e4, 5.0], [1e4, 1e4, -1e4]])
LOGIT_LOSSES = [
    ("cross_entropy", np.array([1, 0, 2]), {}),
    ("cross_entropy", np.array([1, 0, 2]), {"label_smoothing": 0.1}),
    ("softmax_focal_loss", np.array([1, 0, 2]), {}),
    ("multi_margin_loss", np.array([1, 0, 2]), {"p": 2}),
    ("binary_cross_entropy_with_logits", (EXTREME > 0).astype(float)[::-1].copy(), {}),
    ("binary_cross_entropy_with_logits", (EXTREME > 0).astype(float), {"pos_weight": np.ones(3) * 2}),
    ("sigmoid_focal_loss", (EXTREME > 0).astype(float)[::-1].copy(), {}),
    ("sigmoid_focal_loss", (EXTREME > 0).astype(float), {"gamma": 1.5}),
]


@pytest.mark.parametrize("fast", [True, False])
@pytest.mark.parametrize("name,target,options", LOGIT_LOSSES)
def test_extreme_logits_finite_value_and_gradient(name, target, options, fast):
    for dtype in (torch.float32, torch.float64):
        x = torch.tensor(EXTREME, dtype=dtype, requires_grad=True)
        t = torch.tensor(target) if target.dtype.kind != "f" else torch.tensor(target, dtype=dtype)
        opts = {k: torch.tensor(v, dtype=dtype) if isinstance(v, np.ndarray) else v for k, v in options.items()}
        with pl.fast_paths(fast):
            out = pl.get_loss(name)(x, t, **opts)
        out.backward()
        assert torch.isfinite(out), (name, dtype, out)
        assert torch.isfinite(x.grad).all(), (name, dtype, x.grad)


@pytest.mark.parametrize("name,target,options", LOGIT_LOSSES)
def test_extreme_logits_finite_on_every_backend(xp, name, target, options):
    opts = {k: xp.asarray(v) if isinstance(v, np.ndarray) else v for k, v in options.items()}
    with np.errstate(over="raise", invalid="raise"):
        out = xp.to_numpy(pl.get_loss(name)(xp.asarray(EXTREME), xp.asarray(target), **opts))
    assert np.isfinite(out)


def test_extreme_logits_cross_entropy_value():
    # the true loss of a target whose logit trails the maximum by 2e4 is 2e4
    x = np.array([[1e4, -1e4]])
    assert pl.cross_entropy(x, np.array([1])) == pytest.approx(2e4)
    assert pl.binary_cross_entropy_with_logits(np.array([-1e4]), np.array([1.0])) == pytest.approx(1e4)


@pytest.mark.parametrize("fast", [True, False])
def test_bce_on_probabilities_zero_and_one(fast):
    x = torch.tensor([0.0, 1.0, 0.0, 1.0, 0.5], dtype=torch.float64, requires_grad=True)
    y = torch.tensor([0.0, 1.0, 1.0, 0.0, 1.0], dtype=torch.float64)
    with pl.fast_paths(fast):
        out = pl.binary_cross_entropy(x, y, reduction="none")
    expected = torch.tensor([0.0, 0.0, 100.0, 100.0, np.log(2.0)], dtype=torch.float64)
    torch.testing.assert_close(out, expected)
    out.sum().backward()
    assert torch.isfinite(x.grad).all()


def test_bce_zero_one_on_every_backend(xp):
    x = xp.asarray(np.array([0.0, 1.0, 0.0, 1.0]))
    y = xp.asarray(np.array([0.0, 1.0, 1.0, 0.0]))
    with np.errstate(divide="raise", invalid="raise"):
        out = xp.to_numpy(pl.binary_cross_entropy(x, y, reduction="none"))
    np.testing.assert_allclose(out, [0.0, 0.0, 100.0, 100.0])


@pytest.mark.parametrize("fast", [True, False])
@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_all_ignored_gives_zero_with_zero_gradient(fast, reduction):
    x = torch.randn(4, 3, dtype=torch.float64, requires_grad=True)
    t = torch.full((4,), -100)
    with pl.fast_paths(fast):
        out = pl.cross_entropy(x, t, reduction=reduction, weight=torch.ones(3, dtype=torch.float64))
    out.backward()
    assert out.item() == 0.0
    assert torch.equal(x.grad, torch.zeros_like(x))


HALF_CASES = [
    ("mse_loss", "reg", {}), ("l1_loss", "reg", {}), ("smooth_l1_loss", "reg", {"beta": 0.5}),
    ("huber_loss", "reg", {}), ("binary_cross_entropy", "prob", {}),
    ("binary_cross_entropy_with_logits", "bin", {}), ("sigmoid_focal_loss", "bin", {}),
    ("cross_entropy", "cls", {}), ("cross_entropy", "cls", {"label_smoothing": 0.1}),
    ("nll_loss", "logp", {}), ("kl_div", "kl", {"reduction": "batchmean"}),
    ("hinge_loss", "pm", {}), ("squared_hinge_loss", "pm", {}),
    ("multi_margin_loss", "cls", {}), ("softmax_focal_loss", "cls", {}),
]


def _half_data(kind, rng):
    x = rng.normal(size=(64, 10))
    if kind == "reg":
        return x, rng.normal(size=(64, 10))
    if kind == "prob":
        return rng.uniform(0.05, 0.95, (64, 10)), rng.integers(0, 2, (64, 10)).astype(float)
    if kind == "bin":
        return 3 * x, rng.integers(0, 2, (64, 10)).astype(float)
    if kind == "cls":
        return 3 * x, rng.integers(0, 10, 64)
    if kind == "logp":
        return x - np.log(np.exp(x).sum(-1, keepdims=True)), rng.integers(0, 10, 64)
    if kind == "kl":
        q = rng.dirichlet(np.ones(10), 64)
        return x - np.log(np.exp(x).sum(-1, keepdims=True)), q
    return x, rng.choice([-1.0, 1.0], (64, 10))


@pytest.mark.parametrize("half", ["float16", "bfloat16"])
@pytest.mark.parametrize("fast", [True, False])
@pytest.mark.parametrize("name,kind,options", HALF_CASES)
def test_half_precision_close_to_float32(name, kind, options, half, fast):
    rng = np.random.default_rng(0)
    x, y = _half_data(kind, rng)
    dtype = getattr(torch, half)
    xh = torch.tensor(x, dtype=dtype)
    x32 = xh.float()  # same rounded inputs, so the difference is the computation's
    yt = torch.tensor(y) if y.dtype.kind != "f" else torch.tensor(y, dtype=dtype)
    y32 = yt if y.dtype.kind != "f" else yt.float()
    loss = pl.get_loss(name)
    with pl.fast_paths(fast):
        out = loss(xh, yt, **options)
        ref = loss(x32, y32, **options)
    assert out.dtype == dtype
    tol = 1e-2 if half == "bfloat16" else 2e-3
    torch.testing.assert_close(out.float(), ref, rtol=tol, atol=tol)


def test_float16_numpy_close_to_float32():
    rng = np.random.default_rng(1)
    x, t = 3 * rng.normal(size=(32, 8)).astype(np.float16), rng.integers(0, 8, 32)
    out = pl.cross_entropy(x, t)
    assert out.dtype == np.float16
    np.testing.assert_allclose(float(out), float(pl.cross_entropy(x.astype(np.float32), t)), rtol=2e-3)
