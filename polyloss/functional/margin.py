"""Margin losses: binary hinge, squared hinge and multi-class margin, with their closed-form gradients.

Each loss is declared with ``@loss`` and its gradient, next to it, with ``@gradient(...)``. Each has
one check function (run by the loss and by its gradient) and one element-wise value-and-derivative:
:func:`hinge_elementwise` (which PyTorch's fused backward calls too, handed over by the loss) and
``_multi_margin_terms``.
"""

from __future__ import annotations

import math
from functools import partial
from typing import Any

from polyloss import _checks as v
from polyloss._namespace import fast_paths_enabled
from polyloss._namespace import resolve
from polyloss.backend._base import Backend
from polyloss.functional._common import apply_sample_seed
from polyloss.functional._common import compute_dtype
from polyloss.functional._common import finish
from polyloss.functional._common import one_hot
from polyloss.functional._common import planned
from polyloss.functional._common import runs_fused
from polyloss.functional._common import try_fast_path
from polyloss.functional._define import gradient
from polyloss.functional._define import loss
from polyloss.functional._define import value_and_gradient
from polyloss.functional._reductions import pointwise_scale
from polyloss.functional._reductions import reduce
from polyloss.functional._reductions import sample_upstream
from polyloss.functional.classification import class_axis_inputs
from polyloss.functional.classification import class_weight
from polyloss.functional.classification import pick
from polyloss.functional.classification import take_per_class
from polyloss.typing import Array
from polyloss.typing import ArrayT
from polyloss.typing import Reduction

__all__ = [
    "hinge_elementwise",
    "hinge_loss",
    "hinge_loss_grad",
    "multi_margin_loss",
    "multi_margin_loss_grad",
    "squared_hinge_loss",
    "squared_hinge_loss_grad",
]


def _check_margin(margin: Any) -> float:
    """``margin`` as a float: finite and >= 0 (``ValueError`` naming it otherwise: an infinite margin
    makes every loss infinite)."""
    checked = v.check_number(margin, "margin")
    if not math.isfinite(checked):
        raise ValueError(f"margin must be finite, got {margin!r}")
    return checked


# -- binary hinge ------------------------------------------------------------------------------


def _check_hinge_labels(backend: Backend, target: Any) -> bool:
    """Where values can be read without a device sync: every label in {-1, 0, 1} (NaN is not). Returns whether
    every label was read and found to be 1 or -1 (the sign map of :func:`hinge_elementwise` is then ``y``)."""
    kind = backend.dtype_kind(target.dtype)
    if kind == "b" or math.prod(target.shape) == 0 or not backend.is_host_array(target):
        return False
    xp = backend.xp
    target = backend.stop_gradient(target)
    if kind == "i":
        t = target if target.dtype == xp.int64 else xp.astype(target, xp.int64)  # (torch: no min of uint64)
        lo, hi = backend.min_max(t)
        if lo >= -1 and hi <= 1:
            return False
        bad: float = lo if lo < -1 else hi
    else:
        # |y| is 1 throughout for sign labels (the usual case: two passes); else |y| - y^2 is 0 exactly for -1,
        # 0 and 1, NaN for NaN, nonzero otherwise (float arithmetic only: on CPU comparisons and bool casts
        # cost several element-wise passes)
        signs, gap = v.unit_magnitudes(backend, target)
        if signs:
            return True
        gap -= target * target
        lo, hi = backend.min_max(gap)
        if lo == 0.0 and hi == 0.0:
            return False
        ok = gap == 0.0
        bad = float(xp.max(xp.where(ok, -math.inf, target)))  # NaN where one is NaN
    raise ValueError(f"target of a hinge loss must hold labels in {{-1, 1}} or {{0, 1}}, got {bad!r}")


def _check_hinge(backend: Backend, input: Any, target: Any, margin: Any, reduction: str) -> tuple[float, bool]:
    """The checks of the hinge losses and their gradients, labels included (where readable); returns the margin
    and whether every label is known to be 1 or -1."""
    v.check_reduction(reduction)
    v.check_floating(backend, input)
    v.check_same_shape(input, target)
    if backend.dtype_kind(target.dtype) not in "fib":
        raise TypeError(f"target must hold numeric or boolean labels, got dtype {target.dtype}")
    checked = _check_margin(margin)
    return checked, _check_hinge_labels(backend, target)


def hinge_elementwise(
    backend: Backend, x: Any, y: Any, *, margin: float, squared: bool, need_grad: bool, signs: bool = False
) -> tuple[Any, Any]:
    r"""Element-wise (squared) hinge loss of scores ``x`` and labels ``y`` (same dtype), and if
    ``need_grad`` its derivative by ``x`` (else None).

    With :math:`s = y^2 + y - 1` (1 -> 1; 0 and -1 -> -1, in exact arithmetic; NaN stays NaN)
    and :math:`z = m - s x`: :math:`\ell = \max(0, z)` with derivative :math:`-s` where
    :math:`z > 0` and 0 at and below the kink, or :math:`\ell = \max(0, z)^2` with derivative
    :math:`-2 s \max(0, z)`; a NaN ``z`` gives NaN in both. ``signs``: the caller read every
    label and found 1 or -1, where :math:`s = y` (the same numbers, three passes fewer). The
    loss, its closed-form gradient and PyTorch's fused backward all call this.
    """
    # in-place updates only of arrays made here and not yet saved by an autograd op (see focal.py)
    if signs:
        s = y
    else:
        s = y + 1.0
        s *= y
        s -= 1.0  # y^2 + y - 1
    z = margin - s * x  # rounded as s x - m negated: the same number
    h = backend.relu(z)  # NaN kept
    if not (squared or need_grad or getattr(h, "requires_grad", False)):
        return h, None  # the value alone, where no autograd graph needs the step below (h * step is h)
    if squared:
        value = h * h
        if not need_grad:
            return value, None
        grad = s * h
        grad *= -2.0
        return value, grad
    # d relu / dz: 1 above the kink, 0 at and below it (PyTorch's subgradient), NaN at NaN
    step = backend.xp.ceil(backend.clip(h, max=1.0))
    if not need_grad:
        # h * step is h, and makes autograd's derivative step too (relu's own backward lets a NaN through as 1)
        return h * backend.stop_gradient(step), None
    step *= s
    step *= -1.0
    return h, step


def _hinge_loss(input: Any, target: Any, margin: Any, reduction: str, *, squared: bool) -> Any:
    backend = resolve(input, target)
    margin, signs = _check_hinge(backend, input, target, margin, reduction)
    elementwise = partial(hinge_elementwise, backend, margin=margin, squared=squared, signs=signs)
    name = "squared_hinge_loss" if squared else "hinge_loss"
    out = try_fast_path(backend, name, input, target, margin=margin, reduction=reduction, elementwise=elementwise)
    if out is not NotImplemented:
        return out
    x, y = compute_dtype(backend, input, target)
    value, _ = elementwise(x, y, need_grad=False)
    return finish(backend, reduce(backend, value, reduction), input)


def _hinge_grad(input: Any, target: Any, margin: Any, reduction: str, cotangent: Any, *, squared: bool) -> Any:
    backend = resolve(input, target)
    margin, signs = _check_hinge(backend, input, target, margin, reduction)
    x, y = compute_dtype(backend, input, target)
    _, g = hinge_elementwise(backend, x, y, margin=margin, squared=squared, need_grad=True, signs=signs)
    up = pointwise_scale(backend, x, None, reduction, cotangent, normalize_by_weight=False)
    return finish(backend, g * up, input)


@loss
def hinge_loss(input: ArrayT, target: Array, *, margin: float = 1.0, reduction: Reduction = "mean") -> ArrayT:
    r"""Binary SVM hinge loss, :math:`\ell_i = \max(0, m - y_i f_i)` (Cortes & Vapnik,
    *Support-Vector Networks*, 1995).

    Args:
        input: scores :math:`f`, real floating.
        target: labels of the same shape in {-1, 1}, or {0, 1} (0 is read as -1);
            floating, integer or bool.
        margin: :math:`m >= 0`, default 1.0.
        reduction: ``"none"``, ``"mean"`` (default) or ``"sum"``.

    The subgradient at the kink :math:`y f = m` is 0 (PyTorch's ``relu`` rule).

    Edge rules (every path and backend; :func:`squared_hinge_loss` too):

    - NaN in ``input`` gives NaN (in its element, and in ``"mean"``/``"sum"``), and a NaN
      gradient in its element on every path (autograd included: plain ``relu``'s backward
      would pass a NaN off as a score above the kink). Infinite scores give 0 or
      :math:`\infty`, as the formula.
    - A label outside {-1, 0, 1} (2, 0.5, NaN, ...) raises ``ValueError`` naming ``target``
      where values can be read without a device sync: NumPy, array-api-strict and
      PyTorch on the CPU outside ``torch.compile``/``torch.func``, checked once before any
      kernel. On a GPU or while tracing labels are not checked: a label :math:`y` enters
      as :math:`s = y^2 + y - 1` on every path there (NaN gives NaN; other values give
      meaningless numbers).
    - ``margin``: negative, NaN or infinite raises ``ValueError`` naming it; 0 is allowed.
    - Empty input: ``"mean"`` and ``"sum"`` are 0, ``"none"`` is empty.
    """
    return _hinge_loss(input, target, margin, reduction, squared=False)


@loss
def squared_hinge_loss(input: ArrayT, target: Array, *, margin: float = 1.0, reduction: Reduction = "mean") -> ArrayT:
    r"""Squared hinge loss, :math:`\ell_i = \max(0, m - y_i f_i)^2` (L2-SVM).

    Arguments and edge rules as :func:`hinge_loss`; differentiable everywhere.
    """
    return _hinge_loss(input, target, margin, reduction, squared=True)


@gradient(hinge_loss)
def hinge_loss_grad(
    input: Any, target: Any, *, margin: float = 1.0, reduction: Reduction = "mean", cotangent: Any = None
) -> Any:
    r"""Subgradient of :func:`polyloss.hinge_loss`: :math:`-y` where :math:`m - y f > 0`, else 0 (0 at the kink,
    NaN at a NaN score)."""
    return _hinge_grad(input, target, margin, reduction, cotangent, squared=False)


@gradient(squared_hinge_loss)
def squared_hinge_loss_grad(
    input: Any, target: Any, *, margin: float = 1.0, reduction: Reduction = "mean", cotangent: Any = None
) -> Any:
    r"""Gradient of :func:`polyloss.squared_hinge_loss`: :math:`-2 y \max(0, m - y f)`."""
    return _hinge_grad(input, target, margin, reduction, cotangent, squared=True)


# -- multi-class margin ------------------------------------------------------------------------


def _check_p(p: Any) -> int:
    """``p``: the int 1 or 2 (``TypeError`` for another type, floats included; ``ValueError`` for another int)."""
    if isinstance(p, bool) or not isinstance(p, int):
        raise TypeError(f"p must be the int 1 or 2, got {type(p).__name__}")
    if p not in (1, 2):
        raise ValueError(f"p must be 1 or 2, got {p!r}")
    return p


def _check_multi_margin(
    backend: Backend, input: Any, target: Any, p: Any, margin: Any, weight: Any, axis: Any, reduction: str
) -> tuple[int, float, int, Any]:
    """The checks of :func:`multi_margin_loss` and its gradient, class indices included (where
    readable); returns ``(p, margin, axis, int64 target)``."""
    v.check_reduction(reduction)
    p = _check_p(p)
    margin = _check_margin(margin)
    axis, _ = class_axis_inputs(backend, input, target, axis, allow_probabilities=False)
    num_classes = input.shape[axis]
    class_weight(backend, weight, num_classes)
    if weight is not None and backend.dtype_kind(weight.dtype) not in "fi":
        raise TypeError(f"weight must have a real numeric dtype, got {weight.dtype}")
    xp = backend.xp
    # int64 indices: every integer dtype works alike (uint8 ... uint64; torch has few uint64 kernels)
    index = target if target.dtype == xp.int64 else xp.astype(target, xp.int64)
    v.check_class_indices(backend, index, num_classes, ignore_index=None, always=True)
    return p, margin, axis, index


def _multi_margin_terms(
    backend: Backend, x: Any, target: Any, p: int, margin: float, axis: int, need_grad: bool
) -> tuple[Any, Any, Any]:
    r"""Per-class terms :math:`h_j = \max(0, z_j)^p`, :math:`z_j = m - x_y + x_j`, for :math:`j \ne y`
    (0 at :math:`j = y`) and, if ``need_grad`` (else None, None): their derivatives :math:`dh_j/dz_j`,
    :math:`[z_j > 0]` (``p=1``; 0 at the kink) or :math:`2\max(0, z_j)`, NaN at a NaN :math:`z_j`, and
    where any gradient flows: the target's class and the terms with :math:`z_j > 0` or NaN.

    The own class is dropped with a select before anything else, not a product: with
    :math:`x_y = +\infty` its :math:`z_y = \infty - \infty` is NaN, and the loss is 0 (every other term is 0).
    """
    xp = backend.xp
    z = margin - xp.expand_dims(pick(backend, x, target, axis), axis=axis) + x
    hot = one_hot(backend, target, x.shape[axis], axis, x.ndim)
    r = xp.where(hot, 0.0, backend.relu(z))
    if p == 2:
        h, dh = r * r, (2.0 * r if need_grad else None)
    else:
        dh = xp.ceil(backend.clip(r, max=1.0))  # 1 above the kink, 0 at and below it, NaN at NaN
        h = r * backend.stop_gradient(dh)  # = r; autograd's derivative is dh too (see hinge_elementwise)
    if not need_grad:
        return h, None, None
    return h, dh, ~(z <= 0.0) | hot


@loss
def multi_margin_loss(
    input: ArrayT,
    target: Array,
    *,
    p: int = 1,
    margin: float = 1.0,
    weight: Array | None = None,
    axis: int = -1,
    reduction: Reduction = "mean",
) -> ArrayT:
    r"""Multi-class margin loss (Weston & Watkins / Crammer-Singer style, PyTorch's form).

    .. math::
        \ell_i = \frac{1}{C} \sum_{j \ne y_i} w_{y_i}\,\max(0, m - x_{i,y_i} + x_{i,j})^p

    Args:
        input: scores, class axis ``axis`` (default -1).
        target: integer class indices (any integer dtype), ``input``'s shape without the class axis.
        p: 1 (default) or 2.
        margin: :math:`m >= 0`, default 1.0.
        weight: optional class weights ``(C,)``, applied after the power.
        reduction: ``"none"`` (per sample), ``"mean"`` (default, over the samples; the
            weights do not enter the denominator) or ``"sum"``.

    Edge rules (every path and backend):

    - NaN in ``input`` gives NaN in its sample (never hidden: PyTorch's kernel skips NaN
      terms, so the PyTorch fast path runs only on finite inputs and weights it has read),
      and a NaN gradient in that sample's active terms and target class.
      A score of :math:`+\infty` on another class gives :math:`\infty`; on the target's
      class, 0 (NaN if another class is :math:`+\infty` too).
    - A class index outside [0, C) raises ``ValueError`` naming ``target`` where values can be
      read without a device sync (NumPy, array-api-strict, PyTorch on the CPU outside
      ``torch.compile``/``torch.func``); elsewhere it is not checked.
    - ``p``: another int raises ``ValueError`` naming ``p``, another type (a float too) ``TypeError``;
      ``margin`` negative, NaN or infinite raises ``ValueError`` naming it; 0 is allowed.
    - ``weight``: zeros zero their samples (the "mean" still counts them); NaN in a used
      weight gives NaN.
    - Empty batch: ``"mean"`` and ``"sum"`` are 0, ``"none"`` is empty.

    Matches ``torch.nn.functional.multi_margin_loss``.
    """
    backend, plan, out = planned("multi_margin_loss", (input, target), p, margin, axis, reduction,
                                 cacheable=weight is None)
    if out is not NotImplemented:
        return out
    p, margin, axis, index = _check_multi_margin(backend, input, target, p, margin, weight, axis, reduction)
    out = try_fast_path(
        backend, "multi_margin_loss", input, index, p=p, margin=margin, weight=weight,
        axis=axis, reduction=reduction, plan=plan if index is target else None,
    )
    if out is not NotImplemented:
        return out
    xp = backend.xp
    x, w = compute_dtype(backend, input, weight)
    h, _, _ = _multi_margin_terms(backend, x, index, p, margin, axis, need_grad=False)
    value = xp.sum(h, axis=axis) / x.shape[axis]
    if w is not None:
        value = value * take_per_class(backend, w, index)
    return finish(backend, reduce(backend, value, reduction), input)


@gradient(multi_margin_loss)
def multi_margin_loss_grad(
    input: Any,
    target: Any,
    *,
    p: int = 1,
    margin: float = 1.0,
    weight: Any = None,
    axis: int = -1,
    reduction: Reduction = "mean",
    cotangent: Any = None,
) -> Any:
    r"""Subgradient of :func:`polyloss.multi_margin_loss`.

    With :math:`z_j = m - x_y + x_j` and :math:`h'_j = [z_j > 0]` (``p=1``) or
    :math:`2 z_j [z_j > 0]` (``p=2``) for :math:`j \ne y`:
    :math:`\partial\ell/\partial x_j = w_y h'_j / C` and
    :math:`\partial\ell/\partial x_y = -\sum_{j \ne y} w_y h'_j / C`
    (0 at the kink :math:`z_j = 0`, as PyTorch's backward; NaN at a NaN :math:`z_j`; nothing where
    :math:`z_j < 0`, whatever the weight or cotangent).
    """
    backend = resolve(input, target)
    p, margin, axis, index = _check_multi_margin(backend, input, target, p, margin, weight, axis, reduction)
    x, w = compute_dtype(backend, input, weight)
    _, dh, flows = _multi_margin_terms(backend, x, index, p, margin, axis, need_grad=True)
    return finish(backend, _multi_margin_grad(backend, x, index, w, axis, dh, flows, reduction, cotangent), input)


def _multi_margin_grad(backend: Backend, x: Any, index: Any, w: Any, axis: int, dh: Any, flows: Any,
                       reduction: str, cotangent: Any) -> Any:
    xp = backend.xp
    num_classes = x.shape[axis]
    # the own class takes minus the others' sum (a select: an infinite sum times 0 would be NaN)
    g = xp.where(one_hot(backend, index, num_classes, axis, x.ndim), -xp.sum(dh, axis=axis, keepdims=True), dh)
    up = sample_upstream(backend, cotangent, tuple(index.shape), reduction, x) / num_classes
    if w is not None:
        up = up * take_per_class(backend, w, index)
    # no gradient at all where none flows (relu's backward is a select: a NaN weight or cotangent stays out)
    return xp.where(flows, apply_sample_seed(backend, g, up, axis), 0.0)


@value_and_gradient(multi_margin_loss)
def _multi_margin_loss_value_and_grad(
    input: Any,
    target: Any,
    *,
    p: int = 1,
    margin: float = 1.0,
    weight: Any = None,
    axis: int = -1,
    reduction: str = "mean",
    cotangent: Any = None,
) -> Any:
    """Value and subgradient of :func:`multi_margin_loss` from one set of terms (NumPy: one array, in place)."""
    backend = resolve(input, target)
    p, margin, axis, index = _check_multi_margin(backend, input, target, p, margin, weight, axis, reduction)
    if not runs_fused(backend, "multi_margin_loss", input):
        return NotImplemented
    xp = backend.xp
    x, w = compute_dtype(backend, input, weight)
    num_classes = x.shape[axis]
    sample_w = None if w is None else take_per_class(backend, w, index)
    kernel = backend.fast_paths.get("multi_margin_loss.value_and_grad") if fast_paths_enabled() else None
    if kernel is not None:
        scale = sample_upstream(backend, cotangent, tuple(index.shape), reduction, x) / num_classes
        if sample_w is not None:
            scale = scale * sample_w
        out = kernel(x, index, p=p, margin=margin, axis=axis, scale=scale)
        if out is not NotImplemented:
            total, g = out
            value = total / num_classes
            if sample_w is not None:
                value = value * sample_w
            return finish(backend, reduce(backend, value, reduction), input), finish(backend, g, input)
    h, dh, flows = _multi_margin_terms(backend, x, index, p, margin, axis, need_grad=True)
    value = xp.sum(h, axis=axis) / num_classes
    if sample_w is not None:
        value = value * sample_w
    g = _multi_margin_grad(backend, x, index, w, axis, dh, flows, reduction, cotangent)
    return finish(backend, reduce(backend, value, reduction), input), finish(backend, g, input)
