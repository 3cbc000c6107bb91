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
