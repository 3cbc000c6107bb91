"""Regression losses: squared error, absolute error, smooth L1 and Huber, with their closed-form gradients.

Each loss is declared with ``@loss`` and its gradient, next to it, with ``@gradient(...)``.
"""

from __future__ import annotations

from typing import Any

from polyloss import _checks as v
from polyloss._namespace import resolve
from polyloss.functional._common import compute_dtype
from polyloss.functional._common import finish
from polyloss.functional._common import optional_array
from polyloss.functional._common import pointwise_inputs
from polyloss.functional._common import try_fast_path
from polyloss.functional._define import gradient
from polyloss.functional._define import loss
from polyloss.functional._reductions import pointwise_scale
from polyloss.functional._reductions import reduce_weighted

__all__ = [
    "huber_loss",
    "huber_loss_grad",
    "l1_loss",
    "l1_loss_grad",
    "mse_loss",
    "mse_loss_grad",
    "smooth_l1_loss",
    "smooth_l1_loss_grad",
]


@loss
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


@loss
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


@loss
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


@loss
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


# -- closed-form gradients ----------------------------------------------------------------------


@gradient(mse_loss)
def mse_loss_grad(
    input: Any, target: Any, *, weight: Any = None, reduction: str = "mean", cotangent: Any = None
) -> Any:
    r"""Gradient of :func:`polyloss.mse_loss`: :math:`2 w (x - y)` times the reduction's factor."""
    backend = resolve(input, target)
    x, y, w = compute_dtype(backend, input, target, weight)
    up = pointwise_scale(backend, x, w, reduction, cotangent, normalize_by_weight=True)
    return finish(backend, 2.0 * (x - y) * up, input)


@gradient(l1_loss)
def l1_loss_grad(
    input: Any, target: Any, *, weight: Any = None, reduction: str = "mean", cotangent: Any = None
) -> Any:
    r"""Gradient of :func:`polyloss.l1_loss`: :math:`w\,\operatorname{sign}(x - y)`, 0 at :math:`x = y` (PyTorch)."""
    backend = resolve(input, target)
    x, y, w = compute_dtype(backend, input, target, weight)
    up = pointwise_scale(backend, x, w, reduction, cotangent, normalize_by_weight=True)
    return finish(backend, backend.xp.sign(x - y) * up, input)


@gradient(smooth_l1_loss)
def smooth_l1_loss_grad(
    input: Any, target: Any, *, beta: float = 1.0, weight: Any = None, reduction: str = "mean",
    cotangent: Any = None,
) -> Any:
    r"""Gradient of :func:`polyloss.smooth_l1_loss`.

    :math:`d / \beta` where :math:`|d| < \beta`, :math:`\operatorname{sign}(d)`
    elsewhere (continuous at :math:`|d| = \beta`); ``beta=0`` gives
    :math:`\operatorname{sign}(d)`, 0 at :math:`d = 0`, as PyTorch's backward.
    """
    backend = resolve(input, target)
    xp = backend.xp
    x, y, w = compute_dtype(backend, input, target, weight)
    d = x - y
    beta = float(beta)
    g = xp.sign(d) if beta == 0.0 else xp.where(xp.abs(d) < beta, d / beta, xp.sign(d))
    up = pointwise_scale(backend, x, w, reduction, cotangent, normalize_by_weight=False)
    return finish(backend, g * up, input)


@gradient(huber_loss)
def huber_loss_grad(
    input: Any, target: Any, *, delta: float = 1.0, weight: Any = None, reduction: str = "mean",
    cotangent: Any = None,
) -> Any:
    r"""Gradient of :func:`polyloss.huber_loss`.

    :math:`d` where :math:`|d| < \delta`, else :math:`\delta\,\operatorname{sign}(d)`, as PyTorch's backward.
    """
    backend = resolve(input, target)
    xp = backend.xp
    x, y, w = compute_dtype(backend, input, target, weight)
    d = x - y
    delta = float(delta)
    g = xp.where(xp.abs(d) < delta, d, delta * xp.sign(d))
    up = pointwise_scale(backend, x, w, reduction, cotangent, normalize_by_weight=False)
    return finish(backend, g * up, input)
