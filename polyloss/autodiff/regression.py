"""Closed-form gradients of the regression losses (see :mod:`polyloss.functional.regression`)."""

from __future__ import annotations

from typing import Any

from polyloss._namespace import resolve
from polyloss.autodiff._common import pointwise_scale
from polyloss.functional._common import compute_dtype
from polyloss.functional._common import finish

__all__ = ["huber_loss_grad", "l1_loss_grad", "mse_loss_grad", "smooth_l1_loss_grad"]


def mse_loss_grad(
    input: Any, target: Any, *, weight: Any = None, reduction: str = "mean", cotangent: Any = None
) -> Any:
    r"""Gradient of :func:`polyloss.mse_loss`: :math:`2 w (x - y)` times the reduction's factor."""
    backend = resolve(input, target)
    x, y, w = compute_dtype(backend, input, target, weight)
    up = pointwise_scale(backend, x, w, reduction, cotangent, normalize_by_weight=True)
    return finish(backend, 2.0 * (x - y) * up, input)


def l1_loss_grad(
    input: Any, target: Any, *, weight: Any = None, reduction: str = "mean", cotangent: Any = None
) -> Any:
    r"""Gradient of :func:`polyloss.l1_loss`: :math:`w\,\operatorname{sign}(x - y)`, 0 at :math:`x = y` (PyTorch)."""
    backend = resolve(input, target)
    x, y, w = compute_dtype(backend, input, target, weight)
    up = pointwise_scale(backend, x, w, reduction, cotangent, normalize_by_weight=True)
    return finish(backend, backend.xp.sign(x - y) * up, input)


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
