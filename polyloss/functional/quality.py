"""Detection quality losses: varifocal, quality focal and distribution focal, with their closed-form gradients.

The numbers are mmdetection's (``mmdet/models/losses/varifocal_loss.py`` and
``mmdet/models/losses/gfocal_loss.py``); no native kernel exists, so every backend
runs the array-API code below and torch differentiates it with autograd.
Each loss is declared with ``@loss`` and its gradient, next to it, with ``@gradient(...)``.
"""

from __future__ import annotations

import math
from typing import Any

from polyloss import _checks as v
from polyloss._namespace import check_same
from polyloss._namespace import resolve
from polyloss.backend._base import Backend
from polyloss.functional._common import compute_dtype
from polyloss.functional._common import finish
from polyloss.functional._common import one_hot
from polyloss.functional._common import pointwise_inputs
from polyloss.functional._define import gradient
from polyloss.functional._define import loss
from polyloss.functional._reductions import pointwise_scale
from polyloss.functional._reductions import reduce
from polyloss.functional._reductions import sample_upstream
from polyloss.functional.focal import modulating_factor
from polyloss.typing import Array
from polyloss.typing import ArrayT
from polyloss.typing import Reduction

__all__ = [
    "distribution_focal_loss",
    "distribution_focal_loss_grad",
    "quality_focal_loss",
    "quality_focal_loss_grad",
    "varifocal_loss",
    "varifocal_loss_grad",
]


def check_unit_interval(backend: Backend, a: Any, name: str, loss_name: str) -> None:
    """Where values can be read without a sync: every value of the floating ``a`` in [0, 1] (NaN is not)."""
    if not backend.is_host_array(a) or math.prod(a.shape) == 0:
        return
    xp = backend.xp
    lo, hi = backend.min_max(a)  # one pass on PyTorch, whose bool all() is slow; NaN fails
    if lo >= 0.0 and hi <= 1.0:
        return
    if math.isnan(lo) or math.isnan(hi) or not bool(xp.all(a == a)):
        bad: Any = "nan"
    else:
        bad = lo if lo < 0.0 else hi
    raise ValueError(f"{name} of {loss_name} must hold values in [0, 1], got {bad}")


def finite_number(value: Any, name: str) -> float:
    """A Python number >= 0 and finite (NaN, negative and infinite values are a ``ValueError`` naming it)."""
    number = v.check_number(value, name)
    if not math.isfinite(number):
        raise ValueError(f"{name} must be finite, got {value!r}")
    return number


def fits_dtype(backend: Backend, x: Any, **numbers: float) -> None:
    """Each option (a Python float) must be representable in ``x``'s dtype: beyond its largest value it would
    turn to inf inside the computation (``gamma=1e300`` on float32), so it is a ``ValueError`` naming it."""
    largest = float(backend.xp.finfo(x.dtype).max)
    for name, value in numbers.items():
        if value > largest:
            raise ValueError(f"{name}={value!r} overflows the input's dtype {x.dtype} (largest {largest:g})")


def _binary_ce(backend: Backend, x: Any, t: Any) -> Any:
    """``-(t log p + (1 - t) log(1 - p))`` on logits, each term 0 where its factor is 0
    (so a logit of +-inf agreeing with a 0/1 target gives 0, not ``0 * inf = NaN``)."""
    xp = backend.xp
    pos = xp.where(t == 0.0, 0.0, t * backend.log_sigmoid(x))
    neg = xp.where(t == 1.0, 0.0, (1.0 - t) * backend.log_sigmoid(-x))
    return -(pos + neg)


def soft_focal_elementwise(
    backend: Backend, x: Any, t: Any, gamma: float, *, need_grad: bool
) -> tuple[Any, Any]:
    r"""``(l, dl/dx or None)`` of :math:`l = \mathrm{BCE}(x, t)\,|\sigma(x) - t|^\gamma` on logits ``x``.

    The term shared by the quality focal loss (every element) and the varifocal
    loss (its negatives). With :math:`p = \sigma(x)`, :math:`q = \sigma(-x)`,
    :math:`u = |p - t|`:

    .. math::
        \partial l/\partial x = u^\gamma (p - t)
            + \gamma u^{\gamma - 1} \operatorname{sign}(p - t)\,p q\,\mathrm{BCE}(x, t)

    (:math:`p - t` written :math:`(1 - t) p - t q`, without cancellation; the
    power's derivative taken as 0 at :math:`u = 0`).
    """
    ce = _binary_ce(backend, x, t)
    p = backend.sigmoid(x)
    d = p - t
    u = backend.xp.abs(d)
    if not need_grad:
        return (ce if gamma == 0.0 else ce * modulating_factor(backend, u, gamma)), None
    q = backend.sigmoid(-x)
    g = (1.0 - t) * p - t * q
    if gamma == 0.0:
        return ce, g
    mod = modulating_factor(backend, u, gamma)
    dmod = modulating_factor(backend, u, gamma, derivative=True)
    return ce * mod, mod * g + dmod * backend.xp.sign(d) * (p * q) * ce


# -- varifocal ----------------------------------------------------------------------------------


def _varifocal_parts(
    input: Any, target: Any, alpha: Any, gamma: Any, iou_weighted: Any, reduction: str, need_grad: bool
) -> tuple[Backend, Any, Any, Any]:
    """Checks, then ``(backend, x, element-wise loss, its derivative or None)``."""
    backend = resolve(input, target)
    pointwise_inputs(backend, input, target, reduction)
    gamma = finite_number(gamma, "gamma")
    alpha = finite_number(alpha, "alpha")
    if not isinstance(iou_weighted, bool):
        raise TypeError(f"iou_weighted must be a bool, got {type(iou_weighted).__name__}")
    x, t = compute_dtype(backend, input, target)
    fits_dtype(backend, x, alpha=alpha, gamma=gamma)
    check_unit_interval(backend, t, "target", "varifocal_loss")
    xp = backend.xp
    negative, dnegative = soft_focal_elementwise(backend, x, t, gamma, need_grad=need_grad)
    positive = t > 0.0
    weight = t if iou_weighted else 1.0
    loss = xp.where(positive, weight * _binary_ce(backend, x, t), alpha * negative)
    if not need_grad:
        return backend, x, loss, None
    dpositive = weight * ((1.0 - t) * backend.sigmoid(x) - t * backend.sigmoid(-x))
    return backend, x, loss, xp.where(positive, dpositive, alpha * dnegative)


@loss
def varifocal_loss(
    input: ArrayT,
    target: Array,
    *,
    alpha: float = 0.75,
    gamma: float = 2.0,
    iou_weighted: bool = True,
    reduction: Reduction = "mean",
) -> ArrayT:
    r"""Varifocal loss (Zhang et al., *VarifocalNet: An IoU-aware Dense Object Detector*, CVPR 2021).

    .. math::
        \ell_i = \begin{cases} t_i\,\mathrm{BCE}(x_i, t_i) & t_i > 0 \\
                 \alpha\,\sigma(x_i)^\gamma\,\mathrm{BCE}(x_i, t_i) & t_i = 0 \end{cases}

    (the negative factor is :math:`\alpha |\sigma(x) - t|^\gamma`, as mmdetection
    writes it; with ``iou_weighted=False`` the positive factor is 1), where
    :math:`\mathrm{BCE}` is the binary cross-entropy on logits. The factors
    are not detached: the gradient differentiates them too, as mmdetection's autograd.

    Args:
        input: logits, any shape (``(N, C)`` in a detector).
        target: IoU-aware soft targets of the same shape, in [0, 1] (the IoU at
            the assigned class of a positive, 0 elsewhere).
        alpha: weight of the negatives, >= 0, default 0.75.
        gamma: focusing exponent of the negatives, >= 0, default 2.0.
        iou_weighted: weight each positive by its target (default True).
        reduction: ``"none"``, ``"mean"`` (default: over all elements) or ``"sum"``.

    Edge rules: NaN in ``input`` gives NaN; a logit of +-inf agreeing with a 0/1
    target gives 0 (the limit); a target outside [0, 1] or NaN is a ``ValueError``
    naming ``target`` where values can be read without a sync (NumPy,
    array-api-strict, torch on the CPU outside tracing), elsewhere it is not
    checked (a NaN target then gives NaN); the mean of an empty input is 0; NaN
    ``alpha``/``gamma``, negative or infinite ones, or ones beyond the input
    dtype's largest value, are a ``ValueError``.

    Matches mmdetection's ``varifocal_loss`` (``mmdet/models/losses/varifocal_loss.py``).
    """
    backend, _, loss, _ = _varifocal_parts(input, target, alpha, gamma, iou_weighted, reduction, False)
    return finish(backend, reduce(backend, loss, reduction), input)


@gradient(varifocal_loss)
def varifocal_loss_grad(
    input: Any,
    target: Any,
    *,
    alpha: float = 0.75,
    gamma: float = 2.0,
    iou_weighted: bool = True,
    reduction: Reduction = "mean",
    cotangent: Any = None,
) -> Any:
    r"""Gradient of :func:`polyloss.varifocal_loss` w.r.t. the logits.

    :math:`w (p - t)` at a positive (:math:`w = t` or 1), :math:`\alpha` times the
    derivative of :func:`soft_focal_elementwise` at a negative.
    """
    backend, x, _, g = _varifocal_parts(input, target, alpha, gamma, iou_weighted, reduction, True)
    up = pointwise_scale(backend, x, None, reduction, cotangent, normalize_by_weight=False)
    return finish(backend, g * up, input)


# -- quality focal ------------------------------------------------------------------------------


def _class_last_inputs(backend: Backend, input: Any, label: Any, loss_name: str, label_name: str) -> None:
    """``input (..., K)`` floating with a last axis, ``label`` of ``input``'s shape without it."""
    v.check_floating(backend, input)
    if input.ndim == 0:
        raise ValueError(f"input of {loss_name} must have a last (class or bin) axis, got a 0-d array")
    expected = tuple(input.shape[:-1])
    if tuple(label.shape) != expected:
        raise ValueError(
            f"{label_name} shape {tuple(label.shape)} must equal input shape {tuple(input.shape)} "
            f"without its last axis, i.e. {expected}"
        )


def _quality_focal_parts(
    input: Any, label: Any, score: Any, beta: Any, reduction: str, need_grad: bool
) -> tuple[Backend, Any, Any, Any]:
    """Checks, then ``(backend, x, element-wise loss, its derivative or None)``."""
    backend = resolve(input, label)
    v.check_reduction(reduction)
    beta = finite_number(beta, "beta")
    _class_last_inputs(backend, input, label, "quality_focal_loss", "label")
    if backend.dtype_kind(label.dtype) != "i":
        raise TypeError(f"label must hold integer class indices (background = C), got dtype {label.dtype}")
    check_same(backend, score, "score")
    if tuple(score.shape) != tuple(label.shape):
        raise ValueError(f"score shape {tuple(score.shape)} must equal label shape {tuple(label.shape)}")
    if backend.dtype_kind(score.dtype) != "f":
        raise TypeError(f"score must have a real floating dtype, got {score.dtype}")
    num_classes = input.shape[-1]
    # background is the index C: indices in [0, C] are valid
    v.check_class_indices(backend, label, num_classes + 1, ignore_index=None, name="label", always=True)
    x, s = compute_dtype(backend, input, score)
    fits_dtype(backend, x, beta=beta)
    check_unit_interval(backend, s, "score", "quality_focal_loss")
    xp = backend.xp
    hot = one_hot(backend, label, num_classes, x.ndim - 1, x.ndim)
    t = xp.where(hot, xp.expand_dims(s, axis=-1), 0.0)
    loss, g = soft_focal_elementwise(backend, x, t, beta, need_grad=need_grad)
    return backend, x, loss, g


@loss
def quality_focal_loss(
    input: ArrayT, label: Array, score: Array, *, beta: float = 2.0, reduction: Reduction = "mean"
) -> ArrayT:
    r"""Quality focal loss (Li et al., *Generalized Focal Loss*, NeurIPS 2020).

    .. math::
        \ell_i = \sum_c \mathrm{BCE}(x_{ic}, t_{ic})\,|\sigma(x_{ic}) - t_{ic}|^\beta,\quad
        t_{ic} = s_i\,[c = y_i]

    the soft target being the quality (IoU) score ``score`` at the label's class and
    0 at every other class (all classes of a background sample, label ``C``).

    Args:
        input: logits ``(N, C)`` (or ``(..., C)``: the class axis last).
        label: integer class indices of ``input``'s shape without the class axis, in
            [0, C], ``C`` meaning background.
        score: the quality target of each sample, same shape as ``label``, in [0, 1].
        beta: focusing exponent >= 0, default 2.0.
        reduction: ``"none"`` (the per-sample loss, summed over classes),
            ``"mean"`` (default: over the samples) or ``"sum"``.

    Edge rules: NaN in ``input`` gives NaN; a label outside [0, C], or a score
    outside [0, 1] or NaN, is a ``ValueError`` naming ``label``/``score`` where
    values can be read without a sync, elsewhere not checked (a label outside
    [0, C] then counts as background); any integer dtype of ``label`` works;
    the mean over no samples is 0; a NaN, negative or infinite ``beta``,
    or one beyond the input dtype's largest value, is a ``ValueError``.

    Matches mmdetection's ``quality_focal_loss`` (``mmdet/models/losses/gfocal_loss.py``).
    """
    backend, _, loss, _ = _quality_focal_parts(input, label, score, beta, reduction, False)
    return finish(backend, reduce(backend, backend.xp.sum(loss, axis=-1), reduction), input)


@gradient(quality_focal_loss)
def quality_focal_loss_grad(
    input: Any, label: Any, score: Any, *, beta: float = 2.0, reduction: Reduction = "mean", cotangent: Any = None
) -> Any:
    r"""Gradient of :func:`polyloss.quality_focal_loss` w.r.t. the logits: the derivative of
    :func:`soft_focal_elementwise` at every class, times the per-sample upstream factor."""
    backend, x, _, g = _quality_focal_parts(input, label, score, beta, reduction, True)
    up = sample_upstream(backend, cotangent, tuple(label.shape), reduction, x)
    if not isinstance(up, float):
        up = backend.xp.expand_dims(up, axis=-1)
    return finish(backend, g * up, input)


# -- distribution focal -------------------------------------------------------------------------


def _distribution_focal_parts(
    input: Any, label: Any, reduction: str
) -> tuple[Backend, Any, Any, Any, Any, Any, Any]:
    """Checks, then ``(backend, x, log_softmax(x), left bin, right bin, left weight, right weight)``."""
    backend = resolve(input, label)
    v.check_reduction(reduction)
    _class_last_inputs(backend, input, label, "distribution_focal_loss", "label")
    if backend.dtype_kind(label.dtype) not in "fi":
        raise TypeError(f"label must have a real floating (or integer) dtype, got {label.dtype}")
    bins = input.shape[-1]
    if bins < 2:
        raise ValueError(f"input of distribution_focal_loss needs at least 2 bins on its last axis, got {bins}")
    n = bins - 1
    x, y = compute_dtype(backend, input, label)
    if backend.is_host_array(y) and math.prod(y.shape) and not bool(backend.xp.all((y >= 0.0) & (y <= n))):
        lo, hi = float(backend.xp.min(y)), float(backend.xp.max(y))
        bad = "nan" if not bool(backend.xp.all(y == y)) else (lo if lo < 0 else hi)
        raise ValueError(f"label of distribution_focal_loss must lie in [0, {n}] (the bins), got {bad}")
    xp = backend.xp
    # the left bin is clipped to n - 1, so that a label of n exactly is the cross-entropy at bin n
    left = xp.floor(xp.clip(xp.where(y == y, y, 0.0), 0.0, float(n - 1)))
    w_left = (left + 1.0) - y
    w_right = y - left
    index = xp.astype(left, xp.int64)
    return backend, x, backend.log_softmax(x, x.ndim - 1), index, index + 1, w_left, w_right


@loss
def distribution_focal_loss(input: ArrayT, label: Array, *, reduction: Reduction = "mean") -> ArrayT:
    r"""Distribution focal loss (Li et al., *Generalized Focal Loss*, NeurIPS 2020).

    .. math::
        \ell_i = -(y_{l} - y_i)\log p_{i, l} - (y_i - y_{l - 1})\log p_{i, l + 1}
        \quad\text{with}\ l = \min(\lfloor y_i \rfloor, n - 1),\ p = \operatorname{softmax}(x)

    i.e. the cross-entropy against the two bins around the continuous label,
    weighted by the linear interpolation weights :math:`(l + 1 - y, y - l)`.

    Args:
        input: logits ``(..., n + 1)`` over the integral bins ``0..n`` (``n >= 1``).
        label: the continuous target in [0, n], ``input``'s shape without the bin
            axis (floating; integers accepted).
        reduction: ``"none"`` (per sample), ``"mean"`` (default) or ``"sum"``.

    Edge rules: at ``label = n`` exactly the loss is the cross-entropy at bin ``n``
    (mmdetection would index bin ``n + 1``); NaN in ``input`` gives NaN; a label
    outside [0, n] or NaN is a ``ValueError`` naming ``label`` where values can be
    read without a sync, elsewhere not checked (the weights then extrapolate
    linearly between the end bins, a NaN label gives NaN); fewer than 2 bins is a
    ``ValueError``; the mean over no samples is 0. ultralytics' DFL is this loss's
    mean over the four box sides.

    Matches mmdetection's ``distribution_focal_loss`` (``mmdet/models/losses/gfocal_loss.py``).
    """
    backend, _, logp, left, right, w_left, w_right = _distribution_focal_parts(input, label, reduction)
    take = backend.take_along_axis
    xp = backend.xp
    logp_left = xp.squeeze(take(logp, xp.expand_dims(left, axis=-1), -1), axis=-1)
    logp_right = xp.squeeze(take(logp, xp.expand_dims(right, axis=-1), -1), axis=-1)
    loss = -(w_left * logp_left + w_right * logp_right)
    return finish(backend, reduce(backend, loss, reduction), input)


@gradient(distribution_focal_loss)
def distribution_focal_loss_grad(
    input: Any, label: Any, *, reduction: Reduction = "mean", cotangent: Any = None
) -> Any:
    r"""Gradient of :func:`polyloss.distribution_focal_loss` w.r.t. the logits:
    :math:`(w_l + w_r)\,p - w_l [k = l] - w_r [k = l + 1]` (:math:`w_l + w_r = 1`)."""
    backend, x, logp, left, right, w_left, w_right = _distribution_focal_parts(input, label, reduction)
    xp = backend.xp
    axis, bins = x.ndim - 1, x.shape[-1]
    hot_left = xp.astype(one_hot(backend, left, bins, axis, x.ndim), x.dtype)
    hot_right = xp.astype(one_hot(backend, right, bins, axis, x.ndim), x.dtype)
    wl, wr = xp.expand_dims(w_left, axis=-1), xp.expand_dims(w_right, axis=-1)
    g = (wl + wr) * xp.exp(logp) - wl * hot_left - wr * hot_right
    up = sample_upstream(backend, cotangent, tuple(label.shape), reduction, x)
    if not isinstance(up, float):
        up = xp.expand_dims(up, axis=-1)
    return finish(backend, g * up, input)
