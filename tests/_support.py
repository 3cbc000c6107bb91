"""Shared test helpers: references computed independently (PyTorch, float64 NumPy)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

import polyloss as pl

torch = pytest.importorskip("torch")
F = torch.nn.functional


def t64(a: Any, requires_grad: bool = False) -> Any:
    """NumPy -> float64 (or int64) torch tensor for a reference computation."""
    a = np.asarray(a)
    if a.dtype.kind == "f":
        out = torch.tensor(a, dtype=torch.float64)
        return out.requires_grad_(requires_grad)
    if a.dtype.kind == "b":
        return torch.tensor(a)
    return torch.tensor(a, dtype=torch.int64)


def to_xp(xp: Any, value: Any) -> Any:
    if isinstance(value, np.ndarray):
        return xp.asarray(value)
    return value


def run_polyloss(xp: Any, fn: Callable[..., Any], x: np.ndarray, y: np.ndarray, options: dict[str, Any],
                 *, grad: bool = True) -> tuple[np.ndarray, np.ndarray | None]:
    """Value (and, on torch, the autograd gradient of its sum) as float64 NumPy."""
    opts = {k: to_xp(xp, v) for k, v in options.items()}
    xin = xp.asarray(x, requires_grad=grad and xp.is_torch)
    out = fn(xin, xp.asarray(y), **opts)
    assert type(out) is type(xin) or (xp.library == "numpy" and isinstance(out, np.ndarray)), type(out)
    assert out.dtype == xin.dtype, (out.dtype, xin.dtype)
    g = None
    if grad and xp.is_torch:
        out.sum().backward()
        g = xp.to_numpy(xin.grad)
    return xp.to_numpy(out), g


def run_reference(
    ref: Callable[..., Any], x: np.ndarray, y: np.ndarray, options: dict[str, Any]
) -> tuple[np.ndarray, np.ndarray]:
    """A torch float64 reference: value and the gradient of its sum."""
    xt = t64(x, requires_grad=True)
    opts = {k: (t64(v) if isinstance(v, np.ndarray) else v) for k, v in options.items()}
    out = ref(xt, t64(y), **opts)
    out.sum().backward()
    return out.detach().numpy(), xt.grad.numpy()


def assert_close(actual: Any, expected: Any, xp: Any, *, scale: float = 1.0, what: str = "value") -> None:
    np.testing.assert_allclose(
        np.asarray(actual, dtype=float), np.asarray(expected, dtype=float),
        rtol=xp.rtol * scale, atol=xp.atol * scale + xp.rtol * scale * 1e-3, err_msg=what,
    )


def check_against(xp: Any, fn: Callable[..., Any], ref: Callable[..., Any], x: np.ndarray, y: np.ndarray,
                  options: dict[str, Any], *, ref_options: dict[str, Any] | None = None) -> None:
    """polyloss on case ``xp`` == torch float64 reference, values and (on torch) gradients."""
    value, grad = run_polyloss(xp, fn, x, y, options)
    ref_value, ref_grad = run_reference(ref, x, y, options if ref_options is None else ref_options)
    assert value.shape == ref_value.shape
    assert_close(value, ref_value, xp, scale=10)
    if grad is not None:
        assert_close(grad, ref_grad, xp, scale=10, what="gradient")


def fast_and_generic(fn: Callable[..., Any], *args: Any, **options: Any) -> tuple[Any, Any]:
    """The loss with the backend's fast paths on, then off."""
    fast = fn(*args, **options)
    with pl.fast_paths(False):
        generic = fn(*args, **options)
    return fast, generic


def assert_fast_path_matches_generic(fn: Callable[..., Any], x: np.ndarray, y: np.ndarray, **options: Any) -> None:
    """On float64 torch tensors, the fast path's value and autograd gradient equal the generic path's."""
    xt = t64(x, requires_grad=True)
    fast, generic = fast_and_generic(fn, xt, t64(y), **options)
    torch.testing.assert_close(fast, generic, rtol=1e-12, atol=1e-14)
    (g_fast,) = torch.autograd.grad(fast.sum(), xt)
    (g_generic,) = torch.autograd.grad(generic.sum(), xt)
    torch.testing.assert_close(g_fast, g_generic, rtol=1e-12, atol=1e-14)


def torchvision_sigmoid_focal(x: Any, t: Any, alpha: float = 0.25, gamma: float = 2.0) -> Any:
    """Element-wise ``torchvision.ops.sigmoid_focal_loss``, written out (no torchvision needed)."""
    p = torch.sigmoid(x)
    ce = F.binary_cross_entropy_with_logits(x, t, reduction="none")
    p_t = p * t + (1 - p) * (1 - t)
    loss = ce * ((1 - p_t) ** gamma)
    if alpha >= 0:
        loss = (alpha * t + (1 - alpha) * (1 - t)) * loss
    return loss


def to_library(library: str, a: Any) -> Any:
    """A NumPy array as an array of ``library`` ("numpy", "strict" or "torch"); anything else unchanged."""
    if not isinstance(a, np.ndarray):
        return a
    if library == "torch":
        return torch.from_numpy(a.copy())
    if library == "strict":
        import array_api_strict

        if a.dtype == np.float16:  # array-api-strict has no float16
            a = a.astype(np.float32)
        return array_api_strict.asarray(a)
    return a
