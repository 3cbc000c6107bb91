"""Focal losses (Lin et al., *Focal Loss for Dense Object Detection*, ICCV 2017), with their closed-form gradients.

Each loss is declared with ``@loss`` and its gradient, next to it, with ``@gradient(...)``.
"""

from __future__ import annotations

from typing import Any

from polyloss import _checks as v
from polyloss._namespace import resolve
from polyloss.backend._base import Backend
from polyloss.functional._common import apply_sample_seed
from polyloss.functional._common import compute_dtype
from polyloss.functional._common import finish
from polyloss.functional._common import one_hot
from polyloss.functional._common import pointwise_inputs
from polyloss.functional._common import try_fast_path
from polyloss.functional._define import gradient
from polyloss.functional._define import loss
from polyloss.functional._reductions import pointwise_scale
from polyloss.functional._reductions import reduce
from polyloss.functional._reductions import weighted_mean
from polyloss.functional.classification import class_axis_inputs
from polyloss.functional.classification import class_weight
from polyloss.functional.classification import index_seed
from polyloss.functional.classification import index_targets
from polyloss.functional.classification import pick
from polyloss.functional.classification import take_per_class

__all__ = [
    "sigmoid_focal_loss",
    "sigmoid_focal_loss_grad",
    "softmax_focal_loss",
    "softmax_focal_loss_grad",
]


def _check_gamma(gamma: Any) -> float:
    return v.check_number(gamma, "gamma")


def _modulating_factor(backend: Any, m: Any, gamma: float) -> Any:
    """``m ** gamma`` (``m = 1 - p_t >= 0``) with a finite gradient where ``m`` is 0.

    For ``0 < gamma < 1`` the derivative ``gamma * m ** (gamma - 1)`` is infinite at
    ``m = 0`` (a saturated, correct prediction) and autograd would give ``inf * 0 = nan``.
    There the factor is taken as 0 below the dtype's smallest normal number: the loss
    term it multiplies is itself below that number, so the value changes by less than it.
    """
    if gamma == 2.0:
        return m * m
    if gamma >= 1.0:
        return m**gamma
    xp = backend.xp
    ok = m >= xp.finfo(m.dtype).smallest_normal
    return xp.where(ok, xp.where(ok, m, 1.0) ** gamma, 0.0)


@loss
def sigmoid_focal_loss(
    input: Any, target: Any, *, alpha: float = 0.25, gamma: float = 2.0, reduction: str = "mean"
) -> Any:
    r"""Sigmoid focal loss, element-wise on logits.

    .. math::
        \ell_i = -\alpha_t (1 - p_t)^\gamma \log p_t,\quad
        p_t = p\,y + (1 - p)(1 - y),\quad \alpha_t = \alpha y + (1 - \alpha)(1 - y)

    where :math:`p = \sigma(x)`; :math:`-\log p_t` is the binary cross-entropy
    with logits, computed through the log-sigmoid (finite for any logit), and
    :math:`1 - p_t = y\,\sigma(-x) + (1 - y)\,\sigma(x)` without cancellation.

    Args:
        input: logits, any shape.
        target: binary (or soft) labels of the same shape.
        alpha: weight of positives in [0, 1], default 0.25; a negative value
            disables the alpha factor (torchvision's convention).
        gamma: focusing parameter >= 0, default 2.0.
        reduction: ``"none"``, ``"mean"`` (default; torchvision's default is
            ``"none"``) or ``"sum"``.

    Matches ``torchvision.ops.sigmoid_focal_loss``.
    """
    backend = resolve(input, target)
    pointwise_inputs(backend, input, target, reduction)
    gamma = _check_gamma(gamma)
    alpha = v.check_number(alpha, "alpha", minimum=None, maximum=1.0)
    out = try_fast_path(backend, "sigmoid_focal_loss", input, target, alpha=alpha, gamma=gamma, reduction=reduction)
    if out is not NotImplemented:
        return out
    x, y = compute_dtype(backend, input, target)
    log_p = backend.log_sigmoid(x)
    log_1mp = log_p - x
    ce = -(y * log_p + (1.0 - y) * log_1mp)
    if gamma != 0.0:
        one_minus_pt = y * backend.sigmoid(-x) + (1.0 - y) * backend.sigmoid(x)
        ce = ce * _modulating_factor(backend, one_minus_pt, gamma)
    if alpha >= 0:
        ce = (alpha * y + (1.0 - alpha) * (1.0 - y)) * ce
    return finish(backend, reduce(backend, ce, reduction), input)


@loss
def softmax_focal_loss(
    input: Any,
    target: Any,
    *,
    axis: int = -1,
    alpha: Any = None,
    gamma: float = 2.0,
    ignore_index: int = -100,
    reduction: str = "mean",
) -> Any:
    r"""Multi-class focal loss on softmax probabilities.

    .. math::
        \ell_i = -\alpha_{y_i}\,(1 - p_{i,y_i})^\gamma \log p_{i,y_i}

    with :math:`\log p = \operatorname{log\_softmax}(x)` and
    :math:`1 - p_y = -\operatorname{expm1}(\log p_y)` (accurate as :math:`p_y \to 1`).
    ``gamma=0`` and ``alpha=None`` is exactly :func:`cross_entropy`.

    Args:
        input: logits, class axis ``axis`` (default -1).
        target: integer class indices, ``input``'s shape without the class axis.
        alpha: None (default, no class factor), a Python number (one factor
            for every class) or an array ``(C,)`` of per-class factors.
        gamma: focusing parameter >= 0, default 2.0.
        ignore_index: targets equal to it contribute nothing (default -100).
        reduction: ``"none"``, ``"mean"`` (default: over the non-ignored
            samples, 0 if all are ignored) or ``"sum"``.
    """
    backend = resolve(input, target)
    v.check_reduction(reduction)
    gamma = _check_gamma(gamma)
    v.check_ignore_index(ignore_index)
    axis, _ = class_axis_inputs(backend, input, target, axis, allow_probabilities=False)
    num_classes = input.shape[axis]
    alpha_array = None
    if alpha is not None and not isinstance(alpha, (int, float)):
        class_weight(backend, alpha, num_classes, name="alpha")
        alpha_array = alpha
    elif alpha is not None:
        alpha = v.check_number(alpha, "alpha")
    v.check_class_indices(backend, target, num_classes, ignore_index=ignore_index)
    xp = backend.xp
    x, a = compute_dtype(backend, input, alpha_array)
    logp = backend.log_softmax(x, axis)
    valid, safe = index_targets(backend, target, ignore_index)
    logp_y = pick(backend, logp, safe, axis)
    loss = -logp_y
    if gamma != 0.0:
        one_minus_p = -xp.expm1(logp_y)
        loss = loss * _modulating_factor(backend, one_minus_p, gamma)
    if a is not None:
        loss = loss * take_per_class(backend, a, safe)
    elif alpha is not None:
        loss = loss * alpha
    if valid is None:
        return finish(backend, reduce(backend, loss, reduction), input)
    loss = xp.where(valid, loss, 0.0)
    if reduction == "mean":
        count = xp.sum(xp.astype(valid, loss.dtype))
        return finish(backend, weighted_mean(backend, xp.sum(loss), count), input)
    return finish(backend, reduce(backend, loss, reduction), input)


# -- closed-form gradients ----------------------------------------------------------------------


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


@gradient(sigmoid_focal_loss)
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


@gradient(softmax_focal_loss)
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
