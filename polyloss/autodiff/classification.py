"""Closed-form gradients of the classification losses (see :mod:`polyloss.functional.classification`)."""

from __future__ import annotations

from typing import Any

from polyloss import _validation as v
from polyloss._namespace import resolve
from polyloss.autodiff._common import apply_sample_seed
from polyloss.autodiff._common import one_hot
from polyloss.autodiff._common import pointwise_scale
from polyloss.autodiff._common import sample_upstream
from polyloss.autodiff._common import upstream
from polyloss.backend._base import Backend
from polyloss.functional._common import compute_dtype
from polyloss.functional._common import finish
from polyloss.functional.classification import class_axis_inputs
from polyloss.functional.classification import expand_to_axis
from polyloss.functional.classification import index_targets
from polyloss.functional.classification import take_per_class

__all__ = [
    "binary_cross_entropy_grad",
    "binary_cross_entropy_with_logits_grad",
    "cross_entropy_grad",
    "kl_div_grad",
    "nll_loss_grad",
]

# PyTorch's clamp of x (1 - x) in binary_cross_entropy's backward: 1e-12 rounded to float32
_BCE_EPSILON = 9.999999960041972e-13


def binary_cross_entropy_grad(
    input: Any, target: Any, *, weight: Any = None, reduction: str = "mean", cotangent: Any = None
) -> Any:
    r"""Gradient of :func:`polyloss.binary_cross_entropy`, PyTorch's backward formula.

    :math:`w\,(x - y) / \max(x (1 - x), \epsilon)` with PyTorch's :math:`\epsilon = 10^{-12}`
    (rounded to float32): finite at probabilities 0
    and 1 and equal to PyTorch's there (it ignores the clamp of the logs at -100).
    """
    backend = resolve(input, target)
    xp = backend.xp
    x, y, w = compute_dtype(backend, input, target, weight)
    g = (x - y) / xp.maximum(x * (1.0 - x), _BCE_EPSILON)
    up = pointwise_scale(backend, x, w, reduction, cotangent, normalize_by_weight=False)
    return finish(backend, g * up, input)


def binary_cross_entropy_with_logits_grad(
    input: Any, target: Any, *, weight: Any = None, pos_weight: Any = None, reduction: str = "mean",
    cotangent: Any = None,
) -> Any:
    r"""Gradient of :func:`polyloss.binary_cross_entropy_with_logits`.

    :math:`w\,[(1 - y)\,\sigma(x) - p\,y\,\sigma(-x)]` (:math:`\sigma(x) - y`
    without ``pos_weight``), each sigmoid evaluated without cancellation.
    """
    backend = resolve(input, target)
    x, y, w, pw = compute_dtype(backend, input, target, weight, pos_weight)
    positive = y * backend.sigmoid(-x)
    if pw is not None:
        positive = pw * positive
    g = (1.0 - y) * backend.sigmoid(x) - positive
    up = pointwise_scale(backend, x, w, reduction, cotangent, normalize_by_weight=False)
    return finish(backend, g * up, input)


def index_seed(
    backend: Backend, x: Any, target: Any, valid: Any, sample_weight: Any, reduction: str, cotangent: Any
) -> Any:
    """Per-sample upstream factor of an index-target loss: cotangent, mask, "mean" denominator.

    ``sample_weight`` is :math:`w_{y_i}` (or None); "mean" divides by the sum of
    the non-ignored target weights (or their count), 0 -> 1 as the forward does.
    """
    xp = backend.xp
    mask = None if valid is None else xp.astype(valid, x.dtype)
    if reduction != "mean" or (sample_weight is None and mask is None):
        up = sample_upstream(backend, cotangent, tuple(target.shape), reduction, x)
    else:
        if sample_weight is None:
            denominator = xp.sum(mask)
        else:
            denominator = xp.sum(sample_weight if mask is None else sample_weight * mask)
        up = upstream(backend, cotangent, (), x) / xp.where(denominator == 0, 1.0, denominator)
    return up if mask is None else mask * up


def cross_entropy_grad(
    input: Any,
    target: Any,
    *,
    axis: int = -1,
    weight: Any = None,
    ignore_index: int = -100,
    label_smoothing: float = 0.0,
    reduction: str = "mean",
    cotangent: Any = None,
) -> Any:
    r"""Gradient of :func:`polyloss.cross_entropy` with respect to the logits.

    With :math:`p = \operatorname{softmax}(x)`, smoothing :math:`\varepsilon`
    and class weights :math:`w` (all ones without ``weight``), for index targets

    .. math::
        \partial \ell_i / \partial x_{i,k} = (1-\varepsilon)\,w_{y_i}(p_{i,k} - [k = y_i])
            + \tfrac{\varepsilon}{C}\,(p_{i,k} \textstyle\sum_c w_c - w_k),

    0 for ignored samples; for probability targets with
    :math:`q' = (1-\varepsilon) q + \varepsilon / C`,
    :math:`p_{i,k} \sum_c w_c q'_{i,c} - w_k q'_{i,k}`.
    """
    backend = resolve(input, target)
    xp = backend.xp
    axis, probabilities = class_axis_inputs(backend, input, target, axis, allow_probabilities=True)
    x, w = compute_dtype(backend, input, weight)
    num_classes = x.shape[axis]
    eps = float(label_smoothing)
    p = xp.exp(backend.log_softmax(x, axis))
    wk = None if w is None else expand_to_axis(backend, w, x.ndim, axis)
    if probabilities:
        q = v.as_dtype_of(backend, target, x)
        if eps > 0.0:
            q = q * (1.0 - eps) + eps / num_classes
        wq = q if wk is None else q * wk
        g = p * xp.sum(wq, axis=axis, keepdims=True) - wq
        up = sample_upstream(backend, cotangent, tuple(g.shape[:axis] + g.shape[axis + 1 :]), reduction, x)
        return finish(backend, apply_sample_seed(backend, g, up, axis), input)
    valid, safe = index_targets(backend, target, ignore_index)
    hot = xp.astype(one_hot(backend, safe, num_classes, axis, x.ndim), x.dtype)
    if w is None:
        sw = None
        g = p - hot if eps == 0.0 else p - (1.0 - eps) * hot - eps / num_classes
    else:
        sw = take_per_class(backend, w, safe)
        wy = xp.expand_dims(sw, axis=axis)
        g = (1.0 - eps) * wy * (p - hot)
        if eps > 0.0:
            g = g + (eps / num_classes) * (p * xp.sum(w) - wk)
    seed = index_seed(backend, x, target, valid, sw, reduction, cotangent)
    return finish(backend, apply_sample_seed(backend, g, seed, axis), input)


def nll_loss_grad(
    input: Any,
    target: Any,
    *,
    axis: int = -1,
    weight: Any = None,
    ignore_index: int = -100,
    reduction: str = "mean",
    cotangent: Any = None,
) -> Any:
    r"""Gradient of :func:`polyloss.nll_loss`: :math:`-w_{y_i}` at the target class, 0 elsewhere and when ignored."""
    backend = resolve(input, target)
    xp = backend.xp
    axis, _ = class_axis_inputs(backend, input, target, axis, allow_probabilities=False)
    x, w = compute_dtype(backend, input, weight)
    valid, safe = index_targets(backend, target, ignore_index)
    g = -xp.astype(one_hot(backend, safe, x.shape[axis], axis, x.ndim), x.dtype)
    sw = None
    if w is not None:
        sw = take_per_class(backend, w, safe)
        g = g * xp.expand_dims(sw, axis=axis)
    seed = index_seed(backend, x, target, valid, sw, reduction, cotangent)
    return finish(backend, apply_sample_seed(backend, g, seed, axis), input)


def kl_div_grad(
    input: Any, target: Any, *, log_target: bool = False, reduction: str = "mean", cotangent: Any = None
) -> Any:
    r"""Gradient of :func:`polyloss.kl_div`: :math:`-y` (or :math:`-e^{y}` with ``log_target``).

    ``"batchmean"`` divides by ``input.shape[0]``, ``"mean"`` by the element count.
    """
    backend = resolve(input, target)
    xp = backend.xp
    x, y = compute_dtype(backend, input, target)
    g = -xp.exp(y) if log_target else -y
    if reduction == "batchmean":
        up = upstream(backend, cotangent, (), x)
        if x.ndim > 0 and x.shape[0] > 0:
            up = up / x.shape[0]
    else:
        up = pointwise_scale(backend, x, None, reduction, cotangent, normalize_by_weight=False)
    return finish(backend, g * up, input)
