"""Reductions of a loss and their derivatives, side by side (not public).

A loss reduces its element-wise (or per-sample) values with :func:`reduce`,
:func:`reduce_weighted` or :func:`weighted_mean`; its closed-form gradient
multiplies the element-wise derivative by the *upstream* factor of the same
reduction (:func:`pointwise_scale`, :func:`sample_upstream`): the cotangent
(ones by default) times the derivative of the reduction.

Rule for a weighted mean whose weights sum to 0 (all weights 0, or mixed signs
cancelling): the value is 0 times the weighted sum (0, or NaN when the losses
hold NaN or inf: a NaN in the predictions is never hidden) and the gradient is 0.
"""

from __future__ import annotations

import math
from typing import Any

from polyloss import _checks as v
from polyloss._namespace import check_same
from polyloss.backend._base import Backend

__all__ = [
    "pointwise_scale",
    "reduce",
    "reduce_total",
    "reduce_weighted",
    "sample_upstream",
    "upstream",
    "weighted_mean",
    "weighted_mean_upstream",
]


def reduce(backend: Backend, loss: Any, reduction: str) -> Any:
    """``none`` / ``sum`` / ``mean`` of an element-wise loss (mean of empty is 0)."""
    if reduction == "none":
        return loss
    total = backend.xp.sum(loss)
    if reduction == "mean":
        n = math.prod(loss.shape)
        total = total / n if n else total
    return backend.as_array(total)


def reduce_total(backend: Backend, total: Any, count: int, reduction: str) -> Any:
    """:func:`reduce` ("sum" or "mean") of an element-wise loss of ``count`` elements given its sum."""
    if reduction == "mean" and count:
        total = total / count
    return backend.as_array(total)


def weighted_mean(backend: Backend, total: Any, denominator: Any) -> Any:
    """``total / denominator``; ``0 * total`` where the denominator is 0 (0 unless ``total`` is NaN or inf)."""
    xp = backend.xp
    zero = denominator == 0
    return backend.as_array(xp.where(zero, total * 0.0, total / xp.where(zero, 1.0, denominator)))


def reduce_weighted(backend: Backend, loss: Any, weight: Any, reduction: str, *, normalize_by_weight: bool) -> Any:
    """Reduce ``weight * loss``.

    ``normalize_by_weight``: "mean" is ``sum(w * l) / sum(w)`` (PyTorch's MSE
    and L1 rule); otherwise it is ``mean(w * l)`` (Huber, BCE).
    """
    if weight is None:
        return reduce(backend, loss, reduction)
    weighted = loss * weight
    if reduction != "mean" or not normalize_by_weight:
        return reduce(backend, weighted, reduction)
    xp = backend.xp
    return weighted_mean(backend, xp.sum(weighted), xp.sum(xp.broadcast_to(weight, loss.shape)))


# -- derivatives of the reductions ------------------------------------------------


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


def weighted_mean_upstream(backend: Backend, up: Any, denominator: Any) -> Any:
    """Derivative of :func:`weighted_mean` by ``total``: ``up / denominator``, 0 where it is 0."""
    xp = backend.xp
    zero = denominator == 0
    return xp.where(zero, 0.0, up / xp.where(zero, 1.0, denominator))


def pointwise_scale(
    backend: Backend, x: Any, weight: Any, reduction: str, cotangent: Any, *, normalize_by_weight: bool
) -> Any:
    """Upstream factor of an element-wise loss ``reduce(w * l)`` (weight folded in): the derivative of
    :func:`reduce_weighted`."""
    shape = tuple(x.shape)
    up = upstream(backend, cotangent, shape if reduction == "none" else (), x)
    if reduction == "mean":
        if weight is not None and normalize_by_weight:
            xp = backend.xp
            up = weighted_mean_upstream(backend, up, xp.sum(xp.broadcast_to(weight, shape)))
        else:
            n = math.prod(shape)
            if n:
                up = up / n
    return up if weight is None else up * weight
