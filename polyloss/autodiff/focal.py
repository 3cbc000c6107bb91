"""Closed-form gradients of the focal losses (see :mod:`polyloss.functional.focal`)."""

from __future__ import annotations

from typing import Any

from polyloss._namespace import resolve
from polyloss.autodiff._common import apply_sample_seed
from polyloss.autodiff._common import one_hot
from polyloss.autodiff._common import pointwise_scale
from polyloss.autodiff.classification import index_seed
from polyloss.backend._base import Backend
from polyloss.functional._common import compute_dtype
from polyloss.functional._common import finish
from polyloss.functional.classification import class_axis_inputs
from polyloss.functional.classification import index_targets
from polyloss.functional.classification import pick
from polyloss.functional.classification import take_per_class

__all__ = ["sigmoid_focal_loss_grad", "softmax_focal_loss_grad"]


def _modulator(backend: Backend, u: Any, gamma: float) -> tuple[Any, Any]:
    """``(u**gamma, d u**gamma / du)`` for ``u >= 0``; the derivative is taken as 0 at ``u = 0``.

    For ``0 < gamma < 1`` the power's own derivative is infinite at 0, but it
    always meets a factor that vanishes faster (the true limit is 0), where
    autograd would give 0 * inf = NaN.
    """
    xp = backend.xp
    if gamma == 2.0:
        return u * u, 2.0 * u
    if gamma == 1.0:
        return u, xp.ones_like(u)
    positive = u > 0
    return u**gamma, xp.where(positive, gamma * xp.where(positive, u, 1.0) ** (gamma - 1.0), 0.0)


def sigmoid_focal_loss_grad(
    input: Any, target: Any, *, alpha: float = 0.25, gamma: float = 2.0, reduction: str = "mean",
    cotangent: Any = None,
) -> Any:
    r"""Gradient of :func:`polyloss.sigmoid_focal_loss` with respect to the logits.

    With :math:`p = \sigma(x)`, :math:`u = 1 - p_t = y(1 - p) + (1 - y)p` and
    :math:`\mathrm{ce} = -\log p_t`:

    .. math::
        \partial\ell/\partial x = \alpha_t\,[\,u^\gamma (p - y)
            + \gamma u^{\gamma-1} (1 - 2y)\,p (1 - p)\,\mathrm{ce}\,]

    (soft labels allowed; :math:`p - y` is written :math:`(1-y)p - y(1-p)`
    and :math:`1 - p` as :math:`\sigma(-x)`, both without cancellation).
    """
    backend = resolve(input, target)
    x, y = compute_dtype(backend, input, target)
    gamma = float(gamma)
    alpha = float(alpha)
    p, q = backend.sigmoid(x), backend.sigmoid(-x)
    g = (1.0 - y) * p - y * q
    if gamma != 0.0:
        log_p = backend.log_sigmoid(x)
        ce = -(y * log_p + (1.0 - y) * (log_p - x))
        mod, dmod = _modulator(backend, y * q + (1.0 - y) * p, gamma)
        g = mod * g + dmod * ((1.0 - 2.0 * y) * p * q) * ce
    if alpha >= 0:
        g = g * (alpha * y + (1.0 - alpha) * (1.0 - y))
    up = pointwise_scale(backend, x, None, reduction, cotangent, normalize_by_weight=False)
    return finish(backend, g * up, input)


def softmax_focal_loss_grad(
    input: Any,
    target: Any,
    *,
    axis: int = -1,
    alpha: Any = None,
    gamma: float = 2.0,
    ignore_index: int = -100,
    reduction: str = "mean",
    cotangent: Any = None,
) -> Any:
    r"""Gradient of :func:`polyloss.softmax_focal_loss` with respect to the logits.

    With :math:`L = \log p_y`, :math:`u = 1 - e^L` and
    :math:`f(L) = -u^\gamma L`,
    :math:`\partial\ell/\partial x_k = \alpha_y f'(L)\,([k = y] - p_k)` where
    :math:`f'(L) = \gamma u^{\gamma-1} e^L L - u^\gamma`; 0 for ignored samples.
    """
    backend = resolve(input, target)
    xp = backend.xp
    alpha_array = None if alpha is None or isinstance(alpha, (int, float)) else alpha
    axis, _ = class_axis_inputs(backend, input, target, axis, allow_probabilities=False)
    x, a = compute_dtype(backend, input, alpha_array)
    gamma = float(gamma)
    logp = backend.log_softmax(x, axis)
    valid, safe = index_targets(backend, target, ignore_index)
    logp_y = pick(backend, logp, safe, axis)
    if gamma == 0.0:
        coef = -xp.ones_like(logp_y)
    else:
        mod, dmod = _modulator(backend, -xp.expm1(logp_y), gamma)
        coef = dmod * xp.exp(logp_y) * logp_y - mod
    if a is not None:
        coef = coef * take_per_class(backend, a, safe)
    elif alpha is not None:
        coef = coef * float(alpha)
    hot = xp.astype(one_hot(backend, safe, x.shape[axis], axis, x.ndim), x.dtype)
    g = (hot - xp.exp(logp)) * xp.expand_dims(coef, axis=axis)
    # "mean" is over the non-ignored samples (alpha does not enter the denominator)
    seed = index_seed(backend, x, target, valid, None, reduction, cotangent)
    return finish(backend, apply_sample_seed(backend, g, seed, axis), input)
