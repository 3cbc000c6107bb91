"""Classification losses: binary and categorical cross-entropy, NLL, KL divergence, with their closed-form gradients.

Each loss is declared with ``@loss`` and its gradient, next to it, with ``@gradient(...)``.
"""

from __future__ import annotations

import math
from typing import Any

from polyloss import _checks as v
from polyloss._namespace import check_same
from polyloss._namespace import resolve
from polyloss.backend._base import Backend
from polyloss.functional._common import apply_sample_seed
from polyloss.functional._common import compute_dtype
from polyloss.functional._common import finish
from polyloss.functional._common import one_hot
from polyloss.functional._common import optional_array
from polyloss.functional._common import pointwise_inputs
from polyloss.functional._common import try_fast_path
from polyloss.functional._define import gradient
from polyloss.functional._define import loss
from polyloss.functional._reductions import pointwise_scale
from polyloss.functional._reductions import reduce
from polyloss.functional._reductions import reduce_weighted
from polyloss.functional._reductions import sample_upstream
from polyloss.functional._reductions import upstream
from polyloss.functional._reductions import weighted_mean

__all__ = [
    "binary_cross_entropy",
    "binary_cross_entropy_grad",
    "binary_cross_entropy_with_logits",
    "binary_cross_entropy_with_logits_grad",
    "cross_entropy",
    "cross_entropy_grad",
    "kl_div",
    "kl_div_grad",
    "nll_loss",
    "nll_loss_grad",
]

_LOG_CLAMP = -100.0


@loss
def binary_cross_entropy(input: Any, target: Any, *, weight: Any = None, reduction: str = "mean") -> Any:
    r"""Binary cross-entropy on probabilities.

    .. math::
        \ell_i = -w_i\,[\,y_i \max(\log x_i, -100) + (1 - y_i)\max(\log(1 - x_i), -100)\,]

    Each log is clamped at -100 as in PyTorch, so probabilities of exactly 0
    and 1 give a finite loss.

    Args:
        input: probabilities in [0, 1].
        target: same shape, values in [0, 1] (soft labels allowed).
        weight: optional element weights broadcastable to ``input``;
            ``"mean"`` is ``mean(w * l)``.
        reduction: ``"none"``, ``"mean"`` (default) or ``"sum"``.

    Matches ``torch.nn.functional.binary_cross_entropy``.
    """
    backend = resolve(input, target)
    pointwise_inputs(backend, input, target, reduction)
    optional_array(backend, weight, "weight", tuple(input.shape))
    out = try_fast_path(backend, "binary_cross_entropy", input, target, weight=weight, reduction=reduction)
    if out is not NotImplemented:
        return out
    x, y, w = compute_dtype(backend, input, target, weight)
    log_x = _clamped_log(backend, x)
    log_1mx = _clamped_log(backend, 1.0 - x)
    loss = -(y * log_x + (1.0 - y) * log_1mx)
    return finish(backend, reduce_weighted(backend, loss, w, reduction, normalize_by_weight=False), input)


def _clamped_log(backend: Backend, p: Any) -> Any:
    # log(0) = -inf would make the clamp's gradient 0 * inf = nan; evaluate log at 1 there
    xp = backend.xp
    positive = p > 0
    return xp.where(positive, xp.clip(xp.log(xp.where(positive, p, 1.0)), min=_LOG_CLAMP), _LOG_CLAMP)


@loss
def binary_cross_entropy_with_logits(
    input: Any, target: Any, *, weight: Any = None, pos_weight: Any = None, reduction: str = "mean"
) -> Any:
    r"""Binary cross-entropy on logits, through the log-sigmoid.

    .. math::
        \ell_i = -w_i\,[\,p\,y_i \log\sigma(x_i) + (1 - y_i)\log\sigma(-x_i)\,]

    with :math:`\log\sigma(x) = \min(x, 0) - \log(1 + e^{-|x|})`, finite for
    logits of any size.

    Args:
        weight: optional element weights broadcastable to ``input``.
        pos_weight: optional weight :math:`p` of positive examples,
            broadcastable to ``input`` (typically shape ``(C,)`` on the last axis).
        reduction: ``"none"``, ``"mean"`` (default, ``mean(w * l)``) or ``"sum"``.

    Matches ``torch.nn.functional.binary_cross_entropy_with_logits``.
    """
    backend = resolve(input, target)
    pointwise_inputs(backend, input, target, reduction)
    optional_array(backend, weight, "weight", tuple(input.shape))
    optional_array(backend, pos_weight, "pos_weight", tuple(input.shape))
    out = try_fast_path(
        backend, "binary_cross_entropy_with_logits", input, target,
        weight=weight, pos_weight=pos_weight, reduction=reduction,
    )
    if out is not NotImplemented:
        return out
    x, y, w, pw = compute_dtype(backend, input, target, weight, pos_weight)
    log_sig_pos = backend.log_sigmoid(x)
    log_sig_neg = log_sig_pos - x  # log(sigmoid(-x)) = log(sigmoid(x)) - x
    positive = y * log_sig_pos if pw is None else pw * y * log_sig_pos
    loss = -(positive + (1.0 - y) * log_sig_neg)
    return finish(backend, reduce_weighted(backend, loss, w, reduction, normalize_by_weight=False), input)


# -- categorical ---------------------------------------------------------------


def class_axis_inputs(
    backend: Backend, input: Any, target: Any, axis: int, *, allow_probabilities: bool
) -> tuple[int, bool]:
    """Validate ``(input, target)`` of a class-axis loss; returns (axis, target is probabilities)."""
    kind = backend.dtype_kind
    if kind(input.dtype) != "f":
        raise TypeError(f"input must have a real floating dtype, got {input.dtype}")
    in_shape = input.shape
    ndim = len(in_shape)
    if ndim == 0:
        raise ValueError("input must have a class axis, got a 0-d array")
    if type(axis) is int and -ndim <= axis < ndim:  # the common case without a call (per-call overhead)
        axis = axis % ndim
    else:
        axis = v.normalize_axis(axis, ndim)
    shape = target.shape
    expected = in_shape[:-1] if axis == ndim - 1 else in_shape[:axis] + in_shape[axis + 1 :]
    target_kind = kind(target.dtype)
    if target_kind == "i":
        if shape != expected and tuple(shape) != tuple(expected):
            raise ValueError(
                f"target shape {tuple(shape)} must equal input shape {tuple(in_shape)} without the "
                f"class axis {axis}, i.e. {tuple(expected)}"
            )
        return axis, False
    if target_kind != "f":
        raise TypeError(f"target must hold integer class indices, got dtype {target.dtype}")
    if not allow_probabilities:
        raise TypeError(f"target must hold integer class indices, got floating dtype {target.dtype}")
    in_shape, shape, expected = tuple(in_shape), tuple(shape), tuple(expected)
    if shape != in_shape:
        if shape == expected:
            raise TypeError(
                f"target has floating dtype {target.dtype} and shape {shape}: class indices "
                f"must be integers (or pass class probabilities of the input's shape {in_shape})"
            )
        raise ValueError(
            f"target shape {shape} must equal input shape {in_shape} for class "
            f"probabilities, or {expected} for class indices"
        )
    return axis, True


def class_weight(backend: Backend, weight: Any, num_classes: int, name: str = "weight") -> None:
    if weight is None:
        return
    if isinstance(weight, (int, float)):
        raise TypeError(f"{name} must be an array of shape ({num_classes},) or None, got a Python number")
    check_same(backend, weight, name)
    if tuple(weight.shape) != (num_classes,):
        raise ValueError(f"{name} must have shape ({num_classes},) (one per class), got {tuple(weight.shape)}")


def expand_to_axis(backend: Backend, vector: Any, ndim: int, axis: int) -> Any:
    """A length-C vector reshaped to broadcast along ``axis`` of an ``ndim`` array."""
    shape = [1] * ndim
    shape[axis] = vector.shape[0]
    return backend.xp.reshape(vector, tuple(shape))


def pick(backend: Backend, values: Any, index: Any, axis: int) -> Any:
    """``values`` taken at ``index`` along ``axis`` (index has values' shape without axis)."""
    xp = backend.xp
    if not backend.host:
        # torch's take_along_dim returns a wrong value for an index >= C instead of raising:
        # check where the values are readable without a sync (torch on CPU, not while compiling)
        v.check_class_indices(backend, index, values.shape[axis], ignore_index=None, always=True)
    if index.dtype != xp.int64:  # torch's take_along_dim takes int64 indices only
        index = xp.astype(index, xp.int64)
    taken = xp.take_along_axis(values, xp.expand_dims(index, axis=axis), axis=axis)
    return xp.squeeze(taken, axis=axis)


def take_per_class(backend: Backend, vector: Any, index: Any) -> Any:
    """``vector[index]`` for a class-index array of any shape (a per-class weight per sample)."""
    xp = backend.xp
    try:
        taken = xp.take(vector, xp.reshape(index, (-1,)), axis=0)
    except (IndexError, RuntimeError):  # torch's index_select on an index out of range: say which
        v.check_class_indices(backend, index, vector.shape[0], ignore_index=None, always=True)
        raise
    return xp.reshape(taken, tuple(index.shape))


def checked_ignore_index(backend: Backend, target: Any, num_classes: int, ignore_index: int | None) -> int | None:
    """Host backends: check the class indices, and return ``ignore_index``, or None where no target
    equals it (every index lies in [0, C) and it does not): then there is nothing to mask."""
    in_range = v.check_class_indices(backend, target, num_classes, ignore_index=ignore_index)
    if in_range and ignore_index is not None and not 0 <= ignore_index < num_classes:
        return None
    return ignore_index


def index_targets(backend: Backend, target: Any, ignore_index: int | None) -> tuple[Any, Any]:
    """(valid mask, indices with ignored entries replaced by 0)."""
    xp = backend.xp
    ignore_index = v.usable_ignore_index(backend, target, ignore_index)
    if ignore_index is None:
        return None, target
    valid = target != ignore_index
    return valid, xp.where(valid, target, xp.zeros_like(target))


@loss
def cross_entropy(
    input: Any,
    target: Any,
    *,
    axis: int = -1,
    weight: Any = None,
    ignore_index: int = -100,
    label_smoothing: float = 0.0,
    reduction: str = "mean",
) -> Any:
    r"""Softmax cross-entropy over the class axis.

    With class indices :math:`y_i` and :math:`\log p = \operatorname{log\_softmax}(x)`,

    .. math::
        \ell_i = (1 - \varepsilon)\,(-w_{y_i} \log p_{i,y_i})
                 + \frac{\varepsilon}{C}\,\Big(-\sum_c w_c \log p_{i,c}\Big)

    and with class probabilities :math:`q` (same shape as the input),
    :math:`\ell_i = -\sum_c w_c\,((1-\varepsilon) q_{i,c} + \varepsilon / C)\log p_{i,c}`.

    Args:
        input: logits; the class axis is ``axis`` (default -1; PyTorch uses 1).
        target: integer class indices of ``input``'s shape without the class
            axis, or floating class probabilities of ``input``'s shape.
        weight: optional class weights of shape ``(C,)``.
        ignore_index: index targets equal to it contribute nothing (default -100).
        label_smoothing: :math:`\varepsilon \in [0, 1]` (Szegedy et al., 2016).
        reduction: ``"none"`` (per sample), ``"mean"`` (default) or ``"sum"``.
            For index targets ``"mean"`` divides by :math:`\sum w_{y_i}` over
            the non-ignored samples (the count without weights); for
            probabilities by the number of samples. All targets ignored gives
            0 with zero gradient (PyTorch gives NaN: a documented deviation).

    Matches ``torch.nn.functional.cross_entropy``. The logits are never
    expanded into a one-hot array.
    """
    backend = resolve(input, target)
    v.check_reduction(reduction)
    v.check_ignore_index(ignore_index)
    axis, probabilities = class_axis_inputs(backend, input, target, axis, allow_probabilities=True)
    num_classes = input.shape[axis]
    if weight is not None:
        class_weight(backend, weight, num_classes)
    eps = label_smoothing
    if eps != 0.0 or type(eps) is not float:  # the default skips a call (per-call overhead)
        eps = v.check_number(label_smoothing, "label_smoothing", maximum=1.0)
    if not probabilities and backend.host:
        ignore_index = checked_ignore_index(backend, target, num_classes, ignore_index)
    out = try_fast_path(
        backend, "cross_entropy", input, target, axis=axis, weight=weight,
        ignore_index=ignore_index, label_smoothing=eps, reduction=reduction,
    )
    if out is not NotImplemented:
        return out
    x, w = compute_dtype(backend, input, weight)
    logp = backend.log_softmax(x, axis)
    if probabilities:
        q = v.as_dtype_of(backend, target, x)
        loss = _cross_entropy_probabilities(backend, logp, q, w, axis, eps)
        return finish(backend, reduce(backend, loss, reduction) if reduction != "mean"
                      else _mean_over_samples(backend, loss), input)
    loss, denominator = _nll_terms(backend, logp, target, w, axis, ignore_index, eps)
    return finish(backend, _index_reduce(backend, loss, denominator, reduction), input)


def _cross_entropy_probabilities(backend: Backend, logp: Any, q: Any, w: Any, axis: int, eps: float) -> Any:
    xp = backend.xp
    num_classes = logp.shape[axis]
    if eps > 0.0:
        q = q * (1.0 - eps) + eps / num_classes
    terms = q * logp
    if w is not None:
        terms = terms * expand_to_axis(backend, w, logp.ndim, axis)
    return -xp.sum(terms, axis=axis)


def _mean_over_samples(backend: Backend, loss: Any) -> Any:
    return reduce(backend, loss, "mean")


def _nll_terms(
    backend: Backend, logp: Any, target: Any, w: Any, axis: int, ignore_index: int | None, eps: float
) -> tuple[Any, Any]:
    """Per-sample loss and the "mean" denominator (sum of target weights / count)."""
    xp = backend.xp
    valid, safe = index_targets(backend, target, ignore_index)
    picked = pick(backend, logp, safe, axis)
    if w is not None:
        sample_w = take_per_class(backend, w, safe)
        if valid is not None:
            sample_w = xp.where(valid, sample_w, 0.0)
        nll = -sample_w * picked
        denominator = xp.sum(sample_w)
    else:
        nll = -picked
        if valid is not None:
            nll = xp.where(valid, nll, 0.0)
            denominator = xp.sum(xp.astype(valid, logp.dtype))
        else:
            denominator = math.prod(safe.shape)
    if eps > 0.0:
        num_classes = logp.shape[axis]
        terms = logp if w is None else logp * expand_to_axis(backend, w, logp.ndim, axis)
        smooth = -xp.sum(terms, axis=axis)
        if valid is not None:
            smooth = xp.where(valid, smooth, 0.0)
        nll = (1.0 - eps) * nll + (eps / num_classes) * smooth
    return nll, denominator


def _index_reduce(backend: Backend, loss: Any, denominator: Any, reduction: str) -> Any:
    if reduction != "mean":
        return reduce(backend, loss, reduction)
    total = backend.xp.sum(loss)
    if isinstance(denominator, int):
        return reduce(backend, loss, "mean") if denominator else v._as_array(backend, total)
    return weighted_mean(backend, total, denominator)


@loss
def nll_loss(
    input: Any,
    target: Any,
    *,
    axis: int = -1,
    weight: Any = None,
    ignore_index: int = -100,
    reduction: str = "mean",
) -> Any:
    r"""Negative log-likelihood of log-probabilities, :math:`\ell_i = -w_{y_i}\,x_{i, y_i}`.

    Args:
        input: log-probabilities; class axis ``axis`` (default -1).
        target: integer class indices, ``input``'s shape without the class axis.
        weight: optional class weights ``(C,)``.
        ignore_index: targets equal to it contribute nothing (default -100).
        reduction: ``"none"``, ``"mean"`` (default; divides by the sum of the
            target weights, 0 if every target is ignored) or ``"sum"``.

    Matches ``torch.nn.functional.nll_loss``.
    """
    backend = resolve(input, target)
    v.check_reduction(reduction)
    v.check_ignore_index(ignore_index)
    axis, _ = class_axis_inputs(backend, input, target, axis, allow_probabilities=False)
    num_classes = input.shape[axis]
    if weight is not None:
        class_weight(backend, weight, num_classes)
    if backend.host:
        ignore_index = checked_ignore_index(backend, target, num_classes, ignore_index)
    out = try_fast_path(
        backend, "nll_loss", input, target, axis=axis, weight=weight,
        ignore_index=ignore_index, reduction=reduction,
    )
    if out is not NotImplemented:
        return out
    x, w = compute_dtype(backend, input, weight)
    loss, denominator = _nll_terms(backend, x, target, w, axis, ignore_index, 0.0)
    return finish(backend, _index_reduce(backend, loss, denominator, reduction), input)


@loss
def kl_div(input: Any, target: Any, *, log_target: bool = False, reduction: str = "mean") -> Any:
    r"""Kullback-Leibler divergence with ``input`` given as log-probabilities.

    .. math::
        \ell_i = y_i (\log y_i - x_i) \quad\text{or, with log\_target,}\quad
        \ell_i = e^{y_i} (y_i - x_i)

    with :math:`0 \log 0 = 0`.

    Args:
        input: log-probabilities.
        target: probabilities (or log-probabilities with ``log_target=True``),
            same shape.
        reduction: ``"none"``, ``"mean"`` (default; over every element, as
            PyTorch), ``"sum"`` or ``"batchmean"`` (sum / ``input.shape[0]``,
            the mathematical KL divergence per sample).

    Matches ``torch.nn.functional.kl_div``.
    """
    backend = resolve(input, target)
    v.check_reduction(reduction, v.KL_REDUCTIONS)
    v.check_floating(backend, input)
    v.check_same_shape(input, target)
    if not isinstance(log_target, bool):
        raise TypeError(f"log_target must be a bool, got {type(log_target).__name__}")
    out = try_fast_path(backend, "kl_div", input, target, log_target=log_target, reduction=reduction)
    if out is not NotImplemented:
        return out
    xp = backend.xp
    x, y = compute_dtype(backend, input, target)
    if log_target:
        loss = xp.exp(y) * (y - x)
    else:
        loss = backend.xlogy(y, y) - y * x
    if reduction == "batchmean":
        total = reduce(backend, loss, "sum")
        if input.ndim > 0 and input.shape[0] > 0:
            total = total / input.shape[0]
        return finish(backend, total, input)
    return finish(backend, reduce(backend, loss, reduction), input)


# -- closed-form gradients ----------------------------------------------------------------------

# PyTorch's clamp of x (1 - x) in binary_cross_entropy's backward: 1e-12 rounded to float32
_BCE_EPSILON = 9.999999960041972e-13


@gradient(binary_cross_entropy)
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


@gradient(binary_cross_entropy_with_logits)
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


@gradient(cross_entropy)
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


@gradient(nll_loss)
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


@gradient(kl_div)
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
