"""Plumbing shared by the closed-form gradients (not public).

Every gradient is d <cotangent, loss> / d input. The *upstream* factor is
the cotangent (ones by default) times the derivative of the reduction; each
family multiplies it into its element-wise (or per-sample) derivative.
"""

from __future__ import annotations

import math
from typing import Any

from polyloss import _validation as v
from polyloss._namespace import check_same
from polyloss.backend._base import Backend

__all__ = ["apply_sample_seed", "one_hot", "pointwise_scale", "sample_upstream", "upstream"]


def upstream(backend: Backend, cotangent: Any, value_shape: tuple[int, ...], like: Any) -> Any:
    """The cotangent as a Python float (None -> 1.0) or an array of ``value_shape`` in ``like``'s dtype."""
    if cotangent is None:
        return 1.0
    if isinstance(cotangent, bool):
        raise TypeError("cotangent must be a Python number or an array of the input's namespace, got a bool")
    if isinstance(cotangent, (int, float)):
        return float(cotangent)
    check_same(backend, cotangent, "cotangent")
    if backend.dtype_kind(cotangent.dtype) not in ("f", "i"):
        raise TypeError(f"cotangent must have a real numeric dtype, got {cotangent.dtype}")
    v.check_broadcastable(cotangent, value_shape, "cotangent", "the loss value")
    c = v.as_dtype_of(backend, cotangent, like)
    if tuple(c.shape) != tuple(value_shape):
        c = backend.xp.broadcast_to(c, tuple(value_shape))
    return c


def sample_upstream(backend: Backend, cotangent: Any, sample_shape: tuple[int, ...], reduction: str, like: Any) -> Any:
    """Upstream factor of a per-sample loss whose ``"mean"`` is over the ``sample_shape`` samples."""
    up = upstream(backend, cotangent, sample_shape if reduction == "none" else (), like)
    n = math.prod(sample_shape)
    if reduction == "mean" and n:
        up = up / n
    return up


def pointwise_scale(
    backend: Backend, x: Any, weight: Any, reduction: str, cotangent: Any, *, normalize_by_weight: bool
) -> Any:
    """Upstream factor of an element-wise loss ``reduce(w * l)`` (weight folded in)."""
    xp = backend.xp
    shape = tuple(x.shape)
    up = upstream(backend, cotangent, shape if reduction == "none" else (), x)
    if reduction == "mean":
        if weight is not None and normalize_by_weight:
            denominator = xp.sum(xp.broadcast_to(weight, shape))
            up = up / xp.where(denominator == 0, 1.0, denominator)
        else:
            n = math.prod(shape)
            if n:
                up = up / n
    return up if weight is None else up * weight


def one_hot(backend: Backend, index: Any, num_classes: int, axis: int, ndim: int) -> Any:
    """Boolean one-hot of integer ``index`` along ``axis`` of an ``ndim`` array (never materialised as floats)."""
    xp = backend.xp
    shape = [1] * ndim
    shape[axis] = num_classes
    classes = xp.reshape(xp.arange(num_classes, dtype=index.dtype, device=backend.device(index)), tuple(shape))
    return classes == xp.expand_dims(index, axis=axis)


def apply_sample_seed(backend: Backend, grad: Any, seed: Any, axis: int) -> Any:
    """``grad`` times a per-sample factor (a float, a 0-d array or an array without the class axis)."""
    if isinstance(seed, float) or seed.ndim == 0:
        return grad * seed
    return grad * backend.xp.expand_dims(seed, axis=axis)
