"""Half precision: float16 / bfloat16 on torch and float16 on NumPy against float32.

Every registered loss, every reduction, option sets with weights / smoothing /
ignored targets, torch fast paths on and off, on 4096-element batches (so a sum
accumulated in half precision would show). Both sides see the same half-rounded
inputs, so the difference measures the computation, not the input rounding.

Tolerances (``|half - f32| <= RTOL * |f32| + ATOL * mean(|f32|)``), about twice the
unit roundoff of the result dtype plus the float32 work:

* float16  (torch and NumPy): RTOL = ATOL = 1e-3   (unit roundoff 4.9e-4)
* bfloat16 (torch):           RTOL = ATOL = 8e-3   (unit roundoff 3.9e-3)

``test_numerics.py`` already covers the "mean" reduction with default options on torch.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

import polyloss as pl

torch = pytest.importorskip("torch")

TOL = {"float16": 1e-3, "bfloat16": 8e-3}
N, C = 512, 8


def _log_softmax(x: np.ndarray) -> np.ndarray:
    z = x - x.max(-1, keepdims=True)
    return z - np.log(np.exp(z).sum(-1, keepdims=True))


def _data(name: str, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    x = rng.normal(size=(N, C))
    if name in ("mse_loss", "l1_loss", "smooth_l1_loss", "huber_loss"):
        return x, rng.normal(size=(N, C))
    if name == "binary_cross_entropy":
        return rng.uniform(0.02, 0.98, (N, C)), rng.integers(0, 2, (N, C)).astype(float)
    if name in ("binary_cross_entropy_with_logits", "sigmoid_focal_loss"):
        return 4 * x, rng.uniform(0, 1, (N, C)).round(1)
    if name in ("cross_entropy", "softmax_focal_loss", "multi_margin_loss"):
        t = rng.integers(0, C, N)
        if name != "multi_margin_loss":
            t[::7] = -100
        return 4 * x, t
    if name == "nll_loss":
        t = rng.integers(0, C, N)
        t[::5] = -100
        return _log_softmax(2 * x), t
    if name == "kl_div":
        return _log_softmax(2 * x), rng.dirichlet(np.ones(C), N)
    if name in ("hinge_loss", "squared_hinge_loss"):
        return x, rng.choice([-1.0, 1.0], (N, C))
    if name.endswith("iou_loss"):  # pixel boxes: areas overflow float16 unless computed in float32
        xy = rng.uniform(0, 1000, (N, 2))
        b1 = np.concatenate([xy, xy + rng.uniform(1, 500, (N, 2))], -1)
        return b1, b1 + rng.normal(scale=20, size=(N, 4))
    raise KeyError(name)


OPTION_SETS: dict[str, list[dict[str, Any]]] = {
    "mse_loss": [{}, {"weight": "elem"}],
    "l1_loss": [{}, {"weight": "elem"}],
    "smooth_l1_loss": [{"beta": 0.5}, {"beta": 0.0, "weight": "elem"}],
    "huber_loss": [{"delta": 0.7}, {"weight": "elem"}],
    "binary_cross_entropy": [{}, {"weight": "elem"}],
    "binary_cross_entropy_with_logits": [{}, {"pos_weight": "class", "weight": "elem"}],
    "sigmoid_focal_loss": [{}, {"gamma": 0.5, "alpha": -1.0}],
    "cross_entropy": [{}, {"weight": "class", "label_smoothing": 0.1}, {"probabilities": True}],
    "nll_loss": [{}, {"weight": "class"}],
    "softmax_focal_loss": [{}, {"alpha": "class", "gamma": 1.5}],
    "multi_margin_loss": [{}, {"p": 2, "margin": 0.5, "weight": "class"}],
    "kl_div": [{"reduction": "batchmean"}, {"log_target": True}],
    "hinge_loss": [{}, {"margin": 0.5}],
    "squared_hinge_loss": [{}],
    "iou_loss": [{}], "giou_loss": [{}], "diou_loss": [{}], "ciou_loss": [{}],
}
PARAMS = [
    pytest.param(name, i, id=f"{name}-{i}")
    for name in pl.losses() if name in OPTION_SETS for i in range(len(OPTION_SETS[name]))
]


def _inputs(name: str, i: int) -> tuple[np.ndarray, np.ndarray, dict[str, Any], list[str]]:
    rng = np.random.default_rng(1000 + i)
    x, y = _data(name, rng)
    spec = dict(OPTION_SETS[name][i])
    opts: dict[str, Any] = {}
    for key, value in spec.items():
        if value == "elem":
            opts[key] = rng.uniform(0, 2, (N, C))
        elif value == "class":
            opts[key] = rng.uniform(0.1, 2, C)
        elif key == "probabilities":
            y = rng.dirichlet(np.ones(C), N)
        else:
            opts[key] = value
    if name == "kl_div" and opts.get("log_target"):
        y = np.log(y)
    reductions = [opts.pop("reduction")] if "reduction" in opts else ["none", "sum", "mean"]
    return x, y, opts, reductions


def _check(half: np.ndarray, ref: np.ndarray, tol: float, what: str) -> None:
    half, ref = np.asarray(half, dtype=np.float64), np.asarray(ref, dtype=np.float64)
    assert np.all(np.isfinite(half)), what
    scale = float(np.mean(np.abs(ref))) if ref.size else 1.0
    np.testing.assert_allclose(half, ref, rtol=tol, atol=tol * scale, err_msg=what)


def _torch_case(name, i, dtype, fast):
    x, y, opts, reductions = _inputs(name, i)
    xh = torch.tensor(x, dtype=dtype)
    x32 = xh.float()

    def conv(a: np.ndarray, to_float32: bool) -> Any:
        if a.dtype.kind != "f":
            return torch.tensor(a)
        t = torch.tensor(a, dtype=dtype)
        return t.float() if to_float32 else t

    for reduction in reductions:
        loss = pl.get_loss(name)
        half_opts = {k: conv(v, False) if isinstance(v, np.ndarray) else v for k, v in opts.items()}
        ref_opts = {k: conv(v, True) if isinstance(v, np.ndarray) else v for k, v in opts.items()}
        xg = xh.clone().requires_grad_(True)
        with pl.fast_paths(fast):
            out = loss(xg, conv(y, False), reduction=reduction, **half_opts)
            ref = loss(x32, conv(y, True), reduction=reduction, **ref_opts)
        assert out.dtype == dtype, (out.dtype, dtype)
        out.sum().backward()
        assert xg.grad.dtype == dtype and bool(torch.isfinite(xg.grad).all()), (name, reduction)
        _check(out.detach().double().numpy(), ref.double().numpy(), TOL[str(dtype).split(".")[-1]],
               f"{name} {opts} {reduction} fast={fast}")


@pytest.mark.parametrize("fast", [True, False], ids=["fast", "generic"])
@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
@pytest.mark.parametrize("name,i", PARAMS)
def test_torch_half_close_to_float32(name, i, dtype, fast):
    _torch_case(name, i, getattr(torch, dtype), fast)


@pytest.mark.parametrize("name,i", PARAMS)
def test_numpy_float16_close_to_float32(name, i):
    x, y, opts, reductions = _inputs(name, i)
    x16 = x.astype(np.float16)

    def conv(a: np.ndarray, dtype: Any) -> np.ndarray:
        return a.astype(np.float16).astype(dtype) if a.dtype.kind == "f" else a

    loss = pl.get_loss(name)
    for reduction in reductions:
        half_opts = {k: conv(v, np.float16) if isinstance(v, np.ndarray) else v for k, v in opts.items()}
        ref_opts = {k: conv(v, np.float32) if isinstance(v, np.ndarray) else v for k, v in opts.items()}
        with np.errstate(over="raise", invalid="raise"):
            out = loss(x16, conv(y, np.float16), reduction=reduction, **half_opts)
        ref = loss(x16.astype(np.float32), conv(y, np.float32), reduction=reduction, **ref_opts)
        assert np.asarray(out).dtype == np.float16, (name, np.asarray(out).dtype)
        _check(out, ref, TOL["float16"], f"{name} {opts} {reduction}")
