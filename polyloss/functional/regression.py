"""Regression losses: squared error, absolute error, smooth L1 and Huber."""

from __future__ import annotations

from typing import Any

from polyloss import _validation as v
from polyloss._namespace import resolve
from polyloss.functional._common import compute_dtype
from polyloss.functional._common import finish
from polyloss.functional._common import optional_array
from polyloss.functional._common import pointwise_inputs
from polyloss.functional._common import reduce_weighted
from polyloss.functional._common import try_fast_path

__all__ = ["huber_loss", "l1_loss", "mse_loss", "smooth_l1_loss"]


def mse_loss(input: Any, target: Any, *, weight: Any = None, reduction: str = "mean") -> Any:
    r"""Mean squared error, :math:`\ell_i = w_i (x_i - y_i)^2`.

    Args:
        input: predictions, any shape, real floating dtype.
        target: same shape as ``input`` (never broadcast).
        weight: optional element weights broadcastable to ``input``'s shape.
        reduction: ``"none"``, ``"mean"`` (default) or ``"sum"``. With
            ``weight``, ``"mean"`` is :math:`\sum_i w_i \ell_i / \sum_i w_i`
            (PyTorch's rule; 0 rather than NaN when all weights are 0).

    Returns:
        The loss in ``input``'s namespace, device and dtype.

    Matches ``torch.nn.functional.mse_loss``.
    """
    backend = resolve(input, target)
    pointwise_inputs(backend, input, target, reduction)
    optional_array(backend, weight, "weight", tuple(input.shape))
    out = try_fast_path(backend, "mse_loss", input, target, weight=weight, reduction=reduction)
    if out is not NotImplemented:
        return out
    x, y, w = compute_dtype(backend, input, target, weight)
    d = x - y
    return finish(backend, reduce_weighted(backend, d * d, w, reduction, normalize_by_weight=True), input)


def l1_loss(input: Any, target: Any, *, weight: Any = None, reduction: str = "mean") -> Any:
    r"""Mean absolute error, :math:`\ell_i = w_i |x_i - y_i|`.

    Args and reduction as :func:`mse_loss` (with ``weight``, ``"mean"`` is
    :math:`\sum w \ell / \sum w`). The gradient at :math:`x = y` is 0, as in
    PyTorch. Matches ``torch.nn.functional.l1_loss``.
    """
    backend = resolve(input, target)
    pointwise_inputs(backend, input, target, reduction)
    optional_array(backend, weight, "weight", tuple(input.shape))
    out = try_fast_path(backend, "l1_loss", input, target, weight=weight, reduction=reduction)
    if out is not NotImplemented:
        return out
    x, y, w = compute_dtype(backend, input, target, weight)
    loss = backend.xp.abs(x - y)
    return finish(backend, reduce_weighted(backend, loss, w, reduction, normalize_by_weight=True), input)


def _huber_elementwise(backend: Any, d: Any, delta: float) -> Any:
    # with q = min(|d|, delta): q (|d| - q/2) is 0.5 d^2 below delta and delta (|d| - delta/2) above,
    # with the right gradient everywhere and no select (slow on some CPUs). At |d| = delta the gradient
    # q'(|d| - q) + q = delta whatever clip's gradient at its bound (q' is 1 or 0 by backend)
    xp = backend.xp
    a = xp.abs(d)
    if delta > 3.4e38 and delta > float(xp.finfo(d.dtype).max):
        q = a  # torch cannot clip at a bound beyond the dtype; every finite |d| is below it anyway
    else:
        q = backend.clip(a, max=delta)
    return q * (a - 0.5 * q)


def smooth_l1_loss(
    input: Any, target: Any, *, beta: float = 1.0, weight: Any = None, reduction: str = "mean"
) -> Any:
    r"""Smooth L1 loss (Girshick, *Fast R-CNN*, 2015).

    .. math::
        \ell_i = \begin{cases} 0.5\, d_i^2 / \beta & |d_i| < \beta \\
                 |d_i| - 0.5\,\beta & \text{otherwise} \end{cases},\quad d = x - y

    Args:
        beta: threshold, default 1.0, must be >= 0. ``beta=0`` is exactly L1
            with a finite gradient (0 at :math:`d = 0`), as PyTorch.
        weight: optional element weights broadcastable to ``input``; with
            weights ``"mean"`` is ``mean(w * l)`` (the Huber rule).
        reduction: ``"none"``, ``"mean"`` (default) or ``"sum"``.

    Matches ``torch.nn.functional.smooth_l1_loss``.
    """
    backend = resolve(input, target)
    pointwise_inputs(backend, input, target, reduction)
    beta = v.check_number(beta, "beta")
    optional_array(backend, weight, "weight", tuple(input.shape))
    out = try_fast_path(backend, "smooth_l1_loss", input, target, beta=beta, weight=weight, reduction=reduction)
    if out is not NotImplemented:
        return out
    x, y, w = compute_dtype(backend, input, target, weight)
    d = x - y
    if beta == 0.0:
        loss = backend.xp.abs(d)
    else:
        loss = _huber_elementwise(backend, d, beta) / beta
    return finish(backend, reduce_weighted(backend, loss, w, reduction, normalize_by_weight=False), input)


def huber_loss(
    input: Any, target: Any, *, delta: float = 1.0, weight: Any = None, reduction: str = "mean"
) -> Any:
    r"""Huber loss (Huber, *Robust Estimation of a Location Parameter*, 1964).

    .. math::
        \ell_i = \begin{cases} 0.5\, d_i^2 & |d_i| < \delta \\
                 \delta (|d_i| - 0.5\,\delta) & \text{otherwise} \end{cases}

    Args:
        delta: threshold, default 1.0, must be > 0 (as PyTorch).
        weight: optional element weights broadcastable to ``input``; with
            weights ``"mean"`` is ``mean(w * l)`` (PyTorch's rule for Huber).
        reduction: ``"none"``, ``"mean"`` (default) or ``"sum"``.

    Equals ``delta * smooth_l1_loss(beta=delta)``. Matches
    ``torch.nn.functional.huber_loss``.
    """
    backend = resolve(input, target)
    pointwise_inputs(backend, input, target, reduction)
    delta = v.check_number(delta, "delta", strict=True)
    optional_array(backend, weight, "weight", tuple(input.shape))
    out = try_fast_path(backend, "huber_loss", input, target, delta=delta, weight=weight, reduction=reduction)
    if out is not NotImplemented:
        return out
    x, y, w = compute_dtype(backend, input, target, weight)
    loss = _huber_elementwise(backend, x - y, delta)
    return finish(backend, reduce_weighted(backend, loss, w, reduction, normalize_by_weight=False), input)
