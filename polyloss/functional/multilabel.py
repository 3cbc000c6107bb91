"""Two-class and multi-label margin losses: soft margin, multi-label soft margin and multi-label margin,
with their closed-form gradients.

Each loss is declared with ``@loss`` and its gradient, next to it, with ``@gradient(...)``; both run the
same check function and the same element-wise (or per-sample) terms.
"""

from __future__ import annotations

import math
from functools import partial
from typing import Any

from polyloss import _checks as v
from polyloss._namespace import resolve
from polyloss.backend._base import Backend
from polyloss.functional._common import optional_array
from polyloss.functional._common import planned
from polyloss.functional._define import gradient
from polyloss.functional._define import loss
from polyloss.functional._second_set import backward
from polyloss.functional._second_set import check_signs
from polyloss.functional._second_set import check_unit_interval
from polyloss.functional._second_set import clamp_min0
from polyloss.functional._second_set import clamp_min0_grad
from polyloss.functional._second_set import forward
from polyloss.functional._second_set import label_dtype
from polyloss.typing import Array
from polyloss.typing import ArrayT
from polyloss.typing import Reduction

__all__ = [
    "multilabel_margin_loss",
    "multilabel_margin_loss_grad",
    "multilabel_soft_margin_loss",
    "multilabel_soft_margin_loss_grad",
    "soft_margin_loss",
    "soft_margin_loss_grad",
]


# -- soft margin ------------------------------------------------------------------------------


def _check_soft_margin(input: Any, target: Any, reduction: str) -> Backend:
    backend = resolve(input, target)
    v.check_reduction(reduction)
    v.check_floating(backend, input)
    label_dtype(backend, target)
    v.check_same_shape(input, target)
    check_signs(backend, target, "soft_margin_loss")
    return backend


def soft_margin_elementwise(backend: Backend, x: Any, y: Any, *, need_grad: bool) -> tuple[Any, Any]:
    """``log(1 + exp(-y x)) = softplus(-y x)``, finite for any margin, and, if asked, its derivative
    ``-y sigmoid(-y x)``. Also the torch fast path's fused forward and backward."""
    neg_y = -y
    neg_margin = neg_y * x
    value = backend.softplus(neg_margin)
    return value, (neg_y * backend.sigmoid(neg_margin) if need_grad else None)


@loss
def soft_margin_loss(input: ArrayT, target: Array, *, reduction: Reduction = "mean") -> ArrayT:
    r"""Two-class soft margin (logistic) loss, :math:`\ell_i = \log(1 + e^{-y_i x_i})`.

    Args:
        input: scores, real floating.
        target: labels 1 or -1 of the same shape (floating or integer; never broadcast).
        reduction: ``"none"``, ``"mean"`` (default) or ``"sum"``.

    Computed as :math:`-\log\sigma(y x)`: finite for scores of any size, where PyTorch's
    ``log1p(exp(-y x))`` overflows to inf (and its gradient to NaN) once :math:`-y x` passes
    ~88 in float32 or ~709 in float64; polyloss gives the finite limit there, and PyTorch's
    numbers everywhere else.

    Edge rules: a label other than 1 or -1 is a ``ValueError`` where values can be read
    without a device sync (elsewhere the formula applies to it); NaN gives NaN; the mean of
    an empty input is 0 (PyTorch: NaN).

    Matches ``torch.nn.functional.soft_margin_loss``.
    """
    _, plan, out = planned("soft_margin_loss", (input, target), reduction)
    if out is not NotImplemented:
        return out
    backend = _check_soft_margin(input, target, reduction)
    elementwise = partial(soft_margin_elementwise, backend)
    return forward(backend, "soft_margin_loss", (input, target), {"reduction": reduction, "elementwise": elementwise},
                   elementwise, plan=plan)


@gradient(soft_margin_loss)
def soft_margin_loss_grad(input: Any, target: Any, *, reduction: Reduction = "mean", cotangent: Any = None) -> Any:
    r"""Gradient of :func:`polyloss.soft_margin_loss`: :math:`-y\,\sigma(-y x)`."""
    backend = _check_soft_margin(input, target, reduction)
    return backward(backend, (input, target), reduction, cotangent, partial(soft_margin_elementwise, backend))


# -- multi-label soft margin ------------------------------------------------------------------


def _classes(input: Any, loss: str) -> int:
    if input.ndim == 0:
        raise ValueError(f"input of {loss} must have a class axis (the last), got a 0-d array")
    if input.shape[-1] == 0:
        raise ValueError(f"input of {loss} must have at least one class, got shape {tuple(input.shape)}")
    return int(input.shape[-1])


def _check_multilabel_soft_margin(input: Any, target: Any, weight: Any, reduction: str) -> Backend:
    backend = resolve(input, target)
    v.check_reduction(reduction)
    v.check_floating(backend, input)
    if backend.dtype_kind(target.dtype) not in "fib":
        raise TypeError(f"target must have a real or bool dtype, got {target.dtype}")
    v.check_same_shape(input, target)
    _classes(input, "multilabel_soft_margin_loss")
    optional_array(backend, weight, "weight", tuple(input.shape))
    check_unit_interval(backend, target, "multilabel_soft_margin_loss")
    return backend


def multilabel_soft_margin_parts(backend: Backend, x: Any, y: Any, *, weight: Any,
                                 need_grad: bool) -> tuple[Any, Any]:
    """Per-sample loss (over the last axis) and, if asked, the derivative of each by its logits."""
    w = None if weight is None else v.as_dtype_of(backend, weight, x)
    # -(y log s(x) + (1 - y) log s(-x)) with log s(-x) = log s(x) - x
    value = (1.0 - y) * x - backend.log_sigmoid(x)
    if w is not None:
        value = value * w
    num_classes = x.shape[-1]
    per_sample = backend.xp.sum(value, axis=-1) / num_classes
    if not need_grad:
        return per_sample, None
    g = backend.sigmoid(x) - y
    return per_sample, (g if w is None else g * w) / num_classes


@loss
def multilabel_soft_margin_loss(
    input: ArrayT, target: Array, *, weight: Array | None = None, reduction: Reduction = "mean"
) -> ArrayT:
    r"""Multi-label one-versus-all logistic loss.

    .. math::
        \ell_i = -\frac{1}{C} \sum_c w_c \big(y_{i,c} \log\sigma(x_{i,c})
                 + (1 - y_{i,c}) \log\sigma(-x_{i,c})\big)

    Args:
        input: logits ``(..., C)``, the classes on the last axis (C >= 1).
        target: labels in [0, 1] of the same shape (1 for the classes present; floating,
            integer or bool).
        weight: optional weights broadcastable to ``input`` (typically ``(C,)``).
        reduction: ``"none"`` (per sample, shape ``input.shape[:-1]``), ``"mean"``
            (default, over the samples) or ``"sum"``.

    Edge rules: a label outside [0, 1] (NaN included) is a ``ValueError`` where values can
    be read without a device sync; NaN in ``input`` or ``weight`` gives NaN; an infinite logit
    gives inf against its label and NaN (:math:`0 \cdot \infty`) on the label's side, PyTorch's
    numbers (finite logits of any size are exact); the mean of no
    samples is 0 (PyTorch: NaN); no class (C = 0) is a ``ValueError``.

    Matches ``torch.nn.functional.multilabel_soft_margin_loss``.
    """
    _, plan, out = planned("multilabel_soft_margin_loss", (input, target), reduction, cacheable=weight is None)
    if out is not NotImplemented:
        return out
    backend = _check_multilabel_soft_margin(input, target, weight, reduction)
    return forward(backend, "multilabel_soft_margin_loss", (input, target), {"weight": weight, "reduction": reduction},
                   partial(multilabel_soft_margin_parts, backend, weight=weight), plan=plan)


@gradient(multilabel_soft_margin_loss)
def multilabel_soft_margin_loss_grad(input: Any, target: Any, *, weight: Any = None, reduction: Reduction = "mean",
                                     cotangent: Any = None) -> Any:
    r"""Gradient of :func:`polyloss.multilabel_soft_margin_loss`: :math:`w_c (\sigma(x_c) - y_c) / C`."""
    backend = _check_multilabel_soft_margin(input, target, weight, reduction)
    parts = partial(multilabel_soft_margin_parts, backend, weight=weight)
    return backward(backend, (input, target), reduction, cotangent, parts, per_sample=True)


# -- multi-label margin -----------------------------------------------------------------------


def _check_multilabel_margin(input: Any, target: Any, reduction: str) -> Backend:
    backend = resolve(input, target)
    v.check_reduction(reduction)
    v.check_floating(backend, input)
    if backend.dtype_kind(target.dtype) != "i":
        raise TypeError(f"target must hold integer class indices padded with -1, got dtype {target.dtype}")
    v.check_same_shape(input, target)
    num_classes = _classes(input, "multilabel_margin_loss")
    if backend.is_host_array(target) and math.prod(target.shape):
        low, high = backend.min_max(target)
        if low < -1 or high >= num_classes:
            raise ValueError(
                f"target of multilabel_margin_loss holds {low if low < -1 else high}: class indices must lie "
                f"in [0, {num_classes}), padded with -1"
            )
    return backend


def multilabel_margin_parts(backend: Backend, x: Any, target: Any, *, need_grad: bool) -> tuple[Any, Any]:
    """Per-sample multi-label margin loss and, if asked, its derivative by ``x``.

    The targets of a sample are the entries of ``target`` before its first negative one; with
    :math:`z_{jk} = 1 - x_{t_j} + x_k` for each listed target :math:`t_j` (repeats counted, as PyTorch)
    and each class :math:`k` not listed, the loss is :math:`\\sum_{jk} \\max(0, z_{jk}) / C`, the
    subgradient :math:`[z_{jk} > 0]` (PyTorch's kernel). A NaN score of the sample makes its loss NaN.
    """
    xp = backend.xp
    num_classes = x.shape[-1]
    ended = xp.cumulative_sum(xp.astype(target < 0, xp.int32), axis=-1) > 0
    listed = ~ended  # (..., J): slot j holds a target
    safe = xp.astype(xp.where(listed, target, xp.zeros_like(target)), xp.int64)
    classes = xp.arange(num_classes, dtype=xp.int64, device=backend.device(x))
    hot = (xp.expand_dims(safe, axis=-1) == classes) & xp.expand_dims(listed, axis=-1)  # (..., J, C)
    is_target = xp.any(hot, axis=-2)  # (..., C)
    x_t = backend.take_along_axis(x, safe, axis=-1)  # (..., J)
    z = 1.0 - xp.expand_dims(x_t, axis=-1) + xp.expand_dims(x, axis=-2)  # (..., J, C)
    pairs = xp.expand_dims(listed, axis=-1) & ~xp.expand_dims(is_target, axis=-2)
    # a NaN among the sample's scores gives NaN (PyTorch's kernel skips it), without gradient
    nan = backend.stop_gradient(xp.sum(xp.where(xp.isnan(x), x, 0.0), axis=-1))
    value = xp.sum(xp.where(pairs, clamp_min0(backend, z, strict=True), 0.0), axis=(-2, -1)) / num_classes + nan
    if not need_grad:
        return value, None
    active = xp.where(pairs, clamp_min0_grad(backend, z, strict=True), 0.0)  # (..., J, C)
    per_target = xp.sum(active, axis=-1, keepdims=True)  # (..., J, 1)
    grad = xp.sum(active, axis=-2) - xp.sum(xp.where(hot, per_target, 0.0), axis=-2)
    return value, grad / num_classes


@loss
def multilabel_margin_loss(input: ArrayT, target: Array, *, reduction: Reduction = "mean") -> ArrayT:
    r"""Multi-label margin loss (hinge between every listed class and every other class).

    .. math::
        \ell_i = \frac{1}{C} \sum_{j} \sum_{k \notin T_i} \max(0, 1 - x_{i, t_{ij}} + x_{i,k})

    with :math:`t_{i0}, t_{i1}, \dots` the entries of ``target[i]`` before its first -1 and
    :math:`T_i` their set.

    Args:
        input: scores ``(..., C)``, the classes on the last axis (PyTorch: ``(C,)`` or ``(N, C)``).
        target: integer class indices of ``input``'s shape, each sample's list padded with -1
            (entries after the first -1 are ignored).
        reduction: ``"none"`` (per sample, shape ``input.shape[:-1]``), ``"mean"`` (default)
            or ``"sum"``.

    Edge rules: a target value outside [-1, C) -- even after the first -1, as PyTorch -- is a
    ``ValueError`` naming it where values can be read without a device sync (elsewhere it is
    not checked: PyTorch's kernel fails and the generic code's gather is the backend's); a
    floating target is a ``TypeError``. A NaN score gives its
    sample NaN (PyTorch's kernel skips NaN: a documented deviation); the mean of no samples
    is 0 (PyTorch: uninitialised memory); C = 0 is a ``ValueError``. The subgradient at a
    kink is PyTorch's (0).

    Matches ``torch.nn.functional.multilabel_margin_loss``.
    """
    backend = _check_multilabel_margin(input, target, reduction)
    return forward(backend, "multilabel_margin_loss", (input,), {"reduction": reduction},
                   partial(multilabel_margin_parts, backend), raw=(target,))


@gradient(multilabel_margin_loss)
def multilabel_margin_loss_grad(
    input: Any, target: Any, *, reduction: Reduction = "mean", cotangent: Any = None
) -> Any:
    r"""Subgradient of :func:`polyloss.multilabel_margin_loss`: each active pair :math:`(j, k)` adds
    :math:`1/C` at class :math:`k` and :math:`-1/C` at class :math:`t_j` (0 at the kink)."""
    backend = _check_multilabel_margin(input, target, reduction)
    return backward(backend, (input,), reduction, cotangent, partial(multilabel_margin_parts, backend),
                    raw=(target,), per_sample=True)
