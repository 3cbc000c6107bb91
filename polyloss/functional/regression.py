"""Regression losses: squared error, absolute error, smooth L1 and Huber, with their closed-form gradients.

Each loss is declared with ``@loss`` and its gradient, next to it, with ``@gradient(...)``.
"""

from __future__ import annotations

import math
from functools import partial
from typing import Any

from polyloss import _checks as v
from polyloss._namespace import resolve
from polyloss.backend._base import Backend
from polyloss.functional._common import compute_dtype
from polyloss.functional._common import finish
from polyloss.functional._common import flat_dot
from polyloss.functional._common import optional_array
from polyloss.functional._common import planned
from polyloss.functional._common import pointwise_inputs
from polyloss.functional._common import runs_fused
from polyloss.functional._common import try_fast_path
from polyloss.functional._define import gradient
from polyloss.functional._define import loss
from polyloss.functional._define import value_and_gradient
from polyloss.functional._reductions import pointwise_scale
from polyloss.functional._reductions import reduce_total
from polyloss.functional._reductions import reduce_weighted
from polyloss.typing import Array
from polyloss.typing import ArrayT
from polyloss.typing import Reduction

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


def _pointwise_checks(input: Any, target: Any, weight: Any, reduction: str, backend: Backend | None = None) -> Any:
    """The checks every regression loss (and its gradient) runs first; returns the backend."""
    backend = backend or resolve(input, target)
    pointwise_inputs(backend, input, target, reduction)
    optional_array(backend, weight, "weight", tuple(input.shape))
    return backend


def _threshold(value: Any, name: str, *, strict: bool) -> float:
    """``beta`` (>= 0) or ``delta`` (> 0) as a float; NaN and negative values are a ``ValueError``."""
    return v.check_number(value, name, strict=strict)


def _beta_in(backend: Any, beta: float, x: Any) -> float:
    """``beta`` as the computation sees it: 0 (L1) when it rounds to 0 in ``x``'s dtype (below the smallest
    subnormal), as PyTorch's kernel, whose ``|d| < beta`` then never holds."""
    if 0.0 < beta < 1e-37 and float(backend.xp.asarray(beta, dtype=x.dtype)) == 0.0:
        return 0.0
    return beta


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


def _sign(xp: Any, d: Any) -> Any:
    """``sign(d)`` with 0 at NaN: PyTorch's derivative of ``|d|`` (``sgn``) there."""
    return xp.where(d == d, xp.sign(d), 0.0)


def _clipped(backend: Any, d: Any, bound: float) -> Any:
    """``clip(d, -bound, bound)`` (a new array; ``d`` itself for a bound beyond the dtype's largest value):
    the derivative of the Huber loss, ``d`` below ``bound`` and ``bound * sign(d)`` above (NaN kept)."""
    if bound > 3.4e38 and bound > float(backend.xp.finfo(d.dtype).max):
        return d
    return backend.clip(d, min=-bound, max=bound)


def _fused_regression(
    backend: Any, input: Any, target: Any, weight: Any, reduction: str, cotangent: Any,
    terms: Any, *, normalize_by_weight: bool,
) -> tuple[Any, Any]:
    """Value and gradient of a regression loss from ``terms(d, total, up) -> (value, derivative)`` of
    ``d = x - y``: with ``total`` it returns the loss summed (no element-wise loss array), else the element-wise
    loss; the derivative is a new array (or ``d``) times ``up``, the reduction's upstream factor, in place."""
    x, y, w = compute_dtype(backend, input, target, weight)
    total = w is None and reduction != "none"
    up = pointwise_scale(backend, x, w, reduction, cotangent, normalize_by_weight=normalize_by_weight)
    value, g = terms(x - y, total, up)
    if total:
        value = reduce_total(backend, value, math.prod(x.shape), reduction)
    else:
        value = reduce_weighted(backend, value, w, reduction, normalize_by_weight=normalize_by_weight)
    return finish(backend, value, input), finish(backend, g, input)


def _sign_nan_zero(backend: Any, g: Any, total: Any) -> Any:
    """``g = sign(d)`` with NaN made 0 (``_sign``): nothing to do where the host total of ``d * g`` is finite."""
    if backend.is_host_array(g) and total is not None and math.isfinite(float(total)):
        return g
    xp = backend.xp
    return xp.where(g == g, g, 0.0)


def _l1_terms(backend: Any, d: Any, total: bool, up: Any) -> tuple[Any, Any]:
    g = backend.xp.sign(d)
    if total:
        value = flat_dot(backend, d, g)  # sum |d| = sum d sign(d), NaN kept
        g = _sign_nan_zero(backend, g, value)
    else:
        value = backend.xp.abs(d)
        g = _sign_nan_zero(backend, g, None)
    g *= up
    return value, g


def _huber_terms(backend: Any, d: Any, total: bool, up: Any, delta: float) -> tuple[Any, Any]:
    """Huber's terms; with ``g = clip(d, -delta, delta)`` the loss is ``g d - g^2 / 2`` (``g d >= g^2``:
    no cancellation), so the total needs two dot products and no other array."""
    g = _clipped(backend, d, delta)
    if total:
        value = flat_dot(backend, g, d) - 0.5 * flat_dot(backend, g, g)
    else:
        value = _huber_elementwise(backend, d, delta)
    g *= up  # a new array, or d itself (private, read above)
    return value, g


@loss
def mse_loss(input: ArrayT, target: Array, *, weight: Array | None = None, reduction: Reduction = "mean") -> ArrayT:
    r"""Mean squared error, :math:`\ell_i = w_i (x_i - y_i)^2`.

    Args:
        input: predictions, any shape, real floating dtype.
        target: same shape as ``input`` (never broadcast); floating, integer or bool.
        weight: optional element weights broadcastable to ``input``'s shape.
        reduction: ``"none"``, ``"mean"`` (default) or ``"sum"``. With
            ``weight``, ``"mean"`` is :math:`\sum_i w_i \ell_i / \sum_i w_i`
            (PyTorch's rule; 0 rather than NaN when the weights sum to 0).

    Returns:
        The loss in ``input``'s namespace, device and dtype.

    Edge rules (every regression loss, every path): NaN or ``inf - inf`` in
    ``input``/``target``/``weight`` gives NaN (never hidden); the mean of an empty
    input is 0; weights summing to 0 (all zero, or signs cancelling) give 0 times
    the weighted sum (NaN kept) and a zero gradient; a target of another shape is
    a ``ValueError``, an integer ``input`` a ``TypeError``.

    Matches ``torch.nn.functional.mse_loss``.
    """
    backend, plan, out = planned("mse_loss", (input, target), reduction, cacheable=weight is None)
    if out is not NotImplemented:
        return out
    _pointwise_checks(input, target, weight, reduction, backend)
    out = try_fast_path(backend, "mse_loss", input, target, weight=weight, reduction=reduction, plan=plan)
    if out is not NotImplemented:
        return out
    x, y, w = compute_dtype(backend, input, target, weight)
    d = x - y
    if w is None and reduction != "none":  # sum d^2 as d . d: no d * d array
        return finish(backend, reduce_total(backend, flat_dot(backend, d, d), math.prod(d.shape), reduction), input)
    return finish(backend, reduce_weighted(backend, d * d, w, reduction, normalize_by_weight=True), input)


@gradient(mse_loss)
def mse_loss_grad(
    input: Any, target: Any, *, weight: Any = None, reduction: Reduction = "mean", cotangent: Any = None
) -> Any:
    r"""Gradient of :func:`polyloss.mse_loss`: :math:`2 w (x - y)` times the reduction's factor."""
    backend = _pointwise_checks(input, target, weight, reduction)
    x, y, w = compute_dtype(backend, input, target, weight)
    up = pointwise_scale(backend, x, w, reduction, cotangent, normalize_by_weight=True)
    return finish(backend, 2.0 * (x - y) * up, input)


@value_and_gradient(mse_loss)
def _mse_loss_value_and_grad(
    input: Any, target: Any, *, weight: Any = None, reduction: str = "mean", cotangent: Any = None
) -> Any:
    backend = _pointwise_checks(input, target, weight, reduction)
    if not runs_fused(backend, "mse_loss", input):
        return NotImplemented

    def terms(d: Any, total: bool, up: Any) -> tuple[Any, Any]:
        value = flat_dot(backend, d, d) if total else d * d
        d *= 2.0 * up
        return value, d

    return _fused_regression(backend, input, target, weight, reduction, cotangent, terms, normalize_by_weight=True)


@loss
def l1_loss(input: ArrayT, target: Array, *, weight: Array | None = None, reduction: Reduction = "mean") -> ArrayT:
    r"""Mean absolute error, :math:`\ell_i = w_i |x_i - y_i|`.

    Args and reduction as :func:`mse_loss` (with ``weight``, ``"mean"`` is
    :math:`\sum w \ell / \sum w`), and the same edge rules. The gradient at
    :math:`x = y` is 0, and at a NaN difference 0 too (PyTorch's ``sgn``; the
    loss itself is NaN). Matches ``torch.nn.functional.l1_loss``.
    """
    backend, plan, out = planned("l1_loss", (input, target), reduction, cacheable=weight is None)
    if out is not NotImplemented:
        return out
    _pointwise_checks(input, target, weight, reduction, backend)
    out = try_fast_path(backend, "l1_loss", input, target, weight=weight, reduction=reduction, plan=plan)
    if out is not NotImplemented:
        return out
    x, y, w = compute_dtype(backend, input, target, weight)
    loss = backend.xp.abs(x - y)
    return finish(backend, reduce_weighted(backend, loss, w, reduction, normalize_by_weight=True), input)


@gradient(l1_loss)
def l1_loss_grad(
    input: Any, target: Any, *, weight: Any = None, reduction: Reduction = "mean", cotangent: Any = None
) -> Any:
    r"""Gradient of :func:`polyloss.l1_loss`: :math:`w\,\operatorname{sign}(x - y)`, 0 at :math:`x = y` (PyTorch)."""
    backend = _pointwise_checks(input, target, weight, reduction)
    x, y, w = compute_dtype(backend, input, target, weight)
    up = pointwise_scale(backend, x, w, reduction, cotangent, normalize_by_weight=True)
    return finish(backend, _sign(backend.xp, x - y) * up, input)


@value_and_gradient(l1_loss)
def _l1_loss_value_and_grad(
    input: Any, target: Any, *, weight: Any = None, reduction: str = "mean", cotangent: Any = None
) -> Any:
    backend = _pointwise_checks(input, target, weight, reduction)
    if not runs_fused(backend, "l1_loss", input):
        return NotImplemented
    return _fused_regression(backend, input, target, weight, reduction, cotangent, partial(_l1_terms, backend),
                             normalize_by_weight=True)


@loss
def smooth_l1_loss(
    input: ArrayT, target: Array, *, beta: float = 1.0, weight: Array | None = None, reduction: Reduction = "mean"
) -> ArrayT:
    r"""Smooth L1 loss (Girshick, *Fast R-CNN*, 2015).

    .. math::
        \ell_i = \begin{cases} 0.5\, d_i^2 / \beta & |d_i| < \beta \\
                 |d_i| - 0.5\,\beta & \text{otherwise} \end{cases},\quad d = x - y

    Args:
        beta: threshold, default 1.0, must be >= 0 (NaN is a ``ValueError``).
            ``beta=0`` is exactly L1 with a finite gradient (0 at :math:`d = 0`), as
            PyTorch; so is a ``beta`` that rounds to 0 in the input's dtype (below its
            smallest subnormal). ``beta=inf`` is 0 everywhere (the quadratic branch).
        weight: optional element weights broadcastable to ``input``; with
            weights ``"mean"`` is ``mean(w * l)`` (the Huber rule).
        reduction: ``"none"``, ``"mean"`` (default) or ``"sum"``.

    Edge rules as :func:`mse_loss`. Matches ``torch.nn.functional.smooth_l1_loss``.
    """
    backend, plan, out = planned("smooth_l1_loss", (input, target), beta, reduction, cacheable=weight is None)
    if out is not NotImplemented:
        return out
    _pointwise_checks(input, target, weight, reduction, backend)
    beta = _threshold(beta, "beta", strict=False)
    out = try_fast_path(backend, "smooth_l1_loss", input, target, beta=beta, weight=weight, reduction=reduction,
                        plan=plan)
    if out is not NotImplemented:
        return out
    x, y, w = compute_dtype(backend, input, target, weight)
    d = x - y
    beta = _beta_in(backend, beta, x)
    if beta == 0.0:
        loss = backend.xp.abs(d)
    else:
        loss = _huber_elementwise(backend, d, beta) / beta
    return finish(backend, reduce_weighted(backend, loss, w, reduction, normalize_by_weight=False), input)


@gradient(smooth_l1_loss)
def smooth_l1_loss_grad(
    input: Any, target: Any, *, beta: float = 1.0, weight: Any = None, reduction: Reduction = "mean",
    cotangent: Any = None,
) -> Any:
    r"""Gradient of :func:`polyloss.smooth_l1_loss`.

    :math:`d / \beta` where :math:`|d| < \beta`, :math:`\operatorname{sign}(d)`
    elsewhere (continuous at :math:`|d| = \beta`); ``beta=0`` gives
    :math:`\operatorname{sign}(d)`, 0 at :math:`d = 0`, as PyTorch's backward.
    """
    backend = _pointwise_checks(input, target, weight, reduction)
    beta = _threshold(beta, "beta", strict=False)
    xp = backend.xp
    x, y, w = compute_dtype(backend, input, target, weight)
    d = x - y
    beta = _beta_in(backend, beta, x)
    g = _sign(xp, d) if beta == 0.0 else _clipped(backend, d, beta) / beta  # the Huber derivative over beta
    up = pointwise_scale(backend, x, w, reduction, cotangent, normalize_by_weight=False)
    return finish(backend, g * up, input)


@value_and_gradient(smooth_l1_loss)
def _smooth_l1_loss_value_and_grad(
    input: Any, target: Any, *, beta: float = 1.0, weight: Any = None, reduction: str = "mean",
    cotangent: Any = None,
) -> Any:
    backend = _pointwise_checks(input, target, weight, reduction)
    beta = _threshold(beta, "beta", strict=False)
    if not runs_fused(backend, "smooth_l1_loss", input):
        return NotImplemented
    beta = _beta_in(backend, beta, compute_dtype(backend, input)[0])

    def terms(d: Any, total: bool, up: Any) -> tuple[Any, Any]:
        if beta == 0.0:
            return _l1_terms(backend, d, total, up)
        value, g = _huber_terms(backend, d, total, up / beta, beta)
        return value / beta, g

    return _fused_regression(backend, input, target, weight, reduction, cotangent, terms, normalize_by_weight=False)


@loss
def huber_loss(
    input: ArrayT, target: Array, *, delta: float = 1.0, weight: Array | None = None, reduction: Reduction = "mean"
) -> ArrayT:
    r"""Huber loss (Huber, *Robust Estimation of a Location Parameter*, 1964).

    .. math::
        \ell_i = \begin{cases} 0.5\, d_i^2 & |d_i| < \delta \\
                 \delta (|d_i| - 0.5\,\delta) & \text{otherwise} \end{cases}

    Args:
        delta: threshold, default 1.0, must be > 0 (as PyTorch; 0 and NaN are a
            ``ValueError``). ``delta=inf`` is :math:`0.5 d^2` everywhere.
        weight: optional element weights broadcastable to ``input``; with
            weights ``"mean"`` is ``mean(w * l)`` (PyTorch's rule for Huber).
        reduction: ``"none"``, ``"mean"`` (default) or ``"sum"``.

    Edge rules as :func:`mse_loss`. Equals ``delta * smooth_l1_loss(beta=delta)``.
    Matches ``torch.nn.functional.huber_loss``.
    """
    backend, plan, out = planned("huber_loss", (input, target), delta, reduction, cacheable=weight is None)
    if out is not NotImplemented:
        return out
    _pointwise_checks(input, target, weight, reduction, backend)
    delta = _threshold(delta, "delta", strict=True)
    out = try_fast_path(backend, "huber_loss", input, target, delta=delta, weight=weight, reduction=reduction,
                        plan=plan)
    if out is not NotImplemented:
        return out
    x, y, w = compute_dtype(backend, input, target, weight)
    loss = _huber_elementwise(backend, x - y, delta)
    return finish(backend, reduce_weighted(backend, loss, w, reduction, normalize_by_weight=False), input)


@gradient(huber_loss)
def huber_loss_grad(
    input: Any, target: Any, *, delta: float = 1.0, weight: Any = None, reduction: Reduction = "mean",
    cotangent: Any = None,
) -> Any:
    r"""Gradient of :func:`polyloss.huber_loss`.

    :math:`d` where :math:`|d| < \delta`, else :math:`\delta\,\operatorname{sign}(d)`, as PyTorch's backward.
    """
    backend = _pointwise_checks(input, target, weight, reduction)
    delta = _threshold(delta, "delta", strict=True)
    x, y, w = compute_dtype(backend, input, target, weight)
    d = x - y
    g = _clipped(backend, d, delta)
    up = pointwise_scale(backend, x, w, reduction, cotangent, normalize_by_weight=False)
    return finish(backend, g * up, input)


@value_and_gradient(huber_loss)
def _huber_loss_value_and_grad(
    input: Any, target: Any, *, delta: float = 1.0, weight: Any = None, reduction: str = "mean",
    cotangent: Any = None,
) -> Any:
    backend = _pointwise_checks(input, target, weight, reduction)
    delta = _threshold(delta, "delta", strict=True)
    if not runs_fused(backend, "huber_loss", input):
        return NotImplemented
    return _fused_regression(backend, input, target, weight, reduction, cotangent,
                             partial(_huber_terms, backend, delta=delta), normalize_by_weight=False)
