"""Margin losses: binary hinge, squared hinge and multi-class margin, with their closed-form gradients.

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
from polyloss.functional._common import try_fast_path
from polyloss.functional._define import gradient
from polyloss.functional._define import loss
from polyloss.functional._reductions import pointwise_scale
from polyloss.functional._reductions import reduce
from polyloss.functional._reductions import sample_upstream
from polyloss.functional.classification import class_axis_inputs
from polyloss.functional.classification import class_weight
from polyloss.functional.classification import pick
from polyloss.functional.classification import take_per_class

__all__ = [
    "hinge_loss",
    "hinge_loss_grad",
    "multi_margin_loss",
    "multi_margin_loss_grad",
    "squared_hinge_loss",
    "squared_hinge_loss_grad",
]


def _signed_target(backend: Backend, input: Any, target: Any) -> Any:
    """Targets in {-1, 1} or {0, 1} as -1/+1 in the input's dtype."""
    xp = backend.xp
    y = target if target.dtype == input.dtype else xp.astype(target, input.dtype)
    if backend.host:
        ok = (y == 1.0) | (y == -1.0) | (y == 0.0)
        if not bool(xp.all(ok)):
            raise ValueError("target of a hinge loss must hold labels in {-1, 1} or {0, 1}")
    # y^2 + y - 1 maps 1 -> 1, -1 -> -1 and 0 -> -1 exactly, in element-wise arithmetic: a comparison
    # and a bool -> float cast cost 10x more on torch CPU
    return y * (y + 1.0) - 1.0


def _hinge_inputs(backend: Backend, input: Any, target: Any, margin: float, reduction: str) -> float:
    v.check_reduction(reduction)
    v.check_floating(backend, input)
    v.check_same_shape(input, target)
    if not (v.is_floating(backend, target.dtype) or v.is_integer(backend, target.dtype)
            or target.dtype == backend.xp.bool):
        raise TypeError(f"target must hold numeric or boolean labels, got dtype {target.dtype}")
    return v.check_number(margin, "margin")


def _hinge(backend: Backend, input: Any, target: Any, margin: float, squared: bool) -> Any:
    (x,) = compute_dtype(backend, input)
    z = margin - _signed_target(backend, x, target) * x
    h = backend.relu(z)  # subgradient 0 at the kink, as torch.relu
    return h * h if squared else h


@loss
def hinge_loss(input: Any, target: Any, *, margin: float = 1.0, reduction: str = "mean") -> Any:
    r"""Binary SVM hinge loss, :math:`\ell_i = \max(0, m - y_i f_i)`.

    Args:
        input: scores :math:`f`, real floating.
        target: labels of the same shape in {-1, 1}, or {0, 1} (0 is read as -1).
        margin: :math:`m >= 0`, default 1.0.
        reduction: ``"none"``, ``"mean"`` (default) or ``"sum"``.

    The subgradient at the kink :math:`y f = m` is 0 (PyTorch's ``relu`` rule).
    Cortes & Vapnik, *Support-Vector Networks*, 1995.
    """
    backend = resolve(input, target)
    margin = _hinge_inputs(backend, input, target, margin, reduction)
    out = try_fast_path(backend, "hinge_loss", input, target, margin=margin, reduction=reduction)
    if out is not NotImplemented:
        return out
    loss = _hinge(backend, input, target, margin, squared=False)
    return finish(backend, reduce(backend, loss, reduction), input)


@loss
def squared_hinge_loss(input: Any, target: Any, *, margin: float = 1.0, reduction: str = "mean") -> Any:
    r"""Squared hinge loss, :math:`\ell_i = \max(0, m - y_i f_i)^2` (L2-SVM).

    Arguments as :func:`hinge_loss`; differentiable everywhere.
    """
    backend = resolve(input, target)
    margin = _hinge_inputs(backend, input, target, margin, reduction)
    out = try_fast_path(backend, "squared_hinge_loss", input, target, margin=margin, reduction=reduction)
    if out is not NotImplemented:
        return out
    loss = _hinge(backend, input, target, margin, squared=True)
    return finish(backend, reduce(backend, loss, reduction), input)


@loss
def multi_margin_loss(
    input: Any,
    target: Any,
    *,
    p: int = 1,
    margin: float = 1.0,
    weight: Any = None,
    axis: int = -1,
    reduction: str = "mean",
) -> Any:
    r"""Multi-class margin loss (Weston & Watkins / Crammer-Singer style, PyTorch's form).

    .. math::
        \ell_i = \frac{1}{C} \sum_{j \ne y_i} w_{y_i}\,\max(0, m - x_{i,y_i} + x_{i,j})^p

    Args:
        input: scores, class axis ``axis`` (default -1).
        target: integer class indices, ``input``'s shape without the class axis.
        p: 1 (default) or 2.
        margin: :math:`m >= 0`, default 1.0.
        weight: optional class weights ``(C,)``, applied after the power.
        reduction: ``"none"`` (per sample), ``"mean"`` (default) or ``"sum"``.

    Matches ``torch.nn.functional.multi_margin_loss``.
    """
    backend = resolve(input, target)
    v.check_reduction(reduction)
    if isinstance(p, bool) or not isinstance(p, int):
        raise TypeError(f"p must be the int 1 or 2, got {type(p).__name__}")
    if p not in (1, 2):
        raise ValueError(f"p must be 1 or 2, got {p!r}")
    margin = v.check_number(margin, "margin")
    axis, _ = class_axis_inputs(backend, input, target, axis, allow_probabilities=False)
    num_classes = input.shape[axis]
    class_weight(backend, weight, num_classes)
    v.check_class_indices(backend, target, num_classes, ignore_index=None)
    out = try_fast_path(
        backend, "multi_margin_loss", input, target, p=p, margin=margin, weight=weight,
        axis=axis, reduction=reduction,
    )
    if out is not NotImplemented:
        return out
    xp = backend.xp
    x, w = compute_dtype(backend, input, weight)
    x_true = xp.expand_dims(pick(backend, x, target, axis), axis=axis)
    h = backend.relu(margin - x_true + x)
    if p == 2:
        h = h * h
    shape = [1] * x.ndim
    shape[axis] = num_classes
    classes = xp.reshape(xp.arange(num_classes, dtype=target.dtype, device=backend.device(target)), tuple(shape))
    h = h * xp.astype(classes != xp.expand_dims(target, axis=axis), h.dtype)
    loss = xp.sum(h, axis=axis) / num_classes
    if w is not None:
        loss = loss * take_per_class(backend, w, target)
    return finish(backend, reduce(backend, loss, reduction), input)


# -- closed-form gradients ----------------------------------------------------------------------


def _hinge_grad(backend: Backend, input: Any, target: Any, margin: float, reduction: str, cotangent: Any,
                squared: bool) -> Any:
    xp = backend.xp
    (x,) = compute_dtype(backend, input)
    s = _signed_target(backend, x, target)  # {0, 1} labels read as {-1, 1}, as the loss does
    z = float(margin) - s * x
    # strict inequality, as the loss's forward: the subgradient at the kink z = 0 is 0
    g = xp.where(z > 0, -2.0 * z * s if squared else -s, 0.0)
    up = pointwise_scale(backend, x, None, reduction, cotangent, normalize_by_weight=False)
    return finish(backend, g * up, input)


@gradient(hinge_loss)
def hinge_loss_grad(
    input: Any, target: Any, *, margin: float = 1.0, reduction: str = "mean", cotangent: Any = None
) -> Any:
    r"""Subgradient of :func:`polyloss.hinge_loss`: :math:`-y` where :math:`m - y f > 0`, else 0 (0 at the kink)."""
    backend = resolve(input, target)
    return _hinge_grad(backend, input, target, margin, reduction, cotangent, squared=False)


@gradient(squared_hinge_loss)
def squared_hinge_loss_grad(
    input: Any, target: Any, *, margin: float = 1.0, reduction: str = "mean", cotangent: Any = None
) -> Any:
    r"""Gradient of :func:`polyloss.squared_hinge_loss`: :math:`-2 y \max(0, m - y f)`."""
    backend = resolve(input, target)
    return _hinge_grad(backend, input, target, margin, reduction, cotangent, squared=True)


@gradient(multi_margin_loss)
def multi_margin_loss_grad(
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
    r"""Subgradient of :func:`polyloss.multi_margin_loss`.

    With :math:`z_j = m - x_y + x_j` and :math:`h'_j = [z_j > 0]` (``p=1``) or
    :math:`2 z_j [z_j > 0]` (``p=2``) for :math:`j \ne y`:
    :math:`\partial\ell/\partial x_j = w_y h'_j / C` and
    :math:`\partial\ell/\partial x_y = -\sum_{j \ne y} w_y h'_j / C`
    (0 at the kink :math:`z_j = 0`, as PyTorch's backward).
    """
    backend = resolve(input, target)
    xp = backend.xp
    axis, _ = class_axis_inputs(backend, input, target, axis, allow_probabilities=False)
    x, w = compute_dtype(backend, input, weight)
    num_classes = x.shape[axis]
    z = float(margin) - xp.expand_dims(pick(backend, x, target, axis), axis=axis) + x
    hot = one_hot(backend, target, num_classes, axis, x.ndim)
    active = (z > 0) & ~hot
    dh = xp.where(active, 2.0 * z, 0.0) if p == 2 else xp.astype(active, x.dtype)
    g = dh - xp.astype(hot, x.dtype) * xp.sum(dh, axis=axis, keepdims=True)
    up = sample_upstream(backend, cotangent, tuple(target.shape), reduction, x) / num_classes
    if w is not None:
        up = up * take_per_class(backend, w, target)
    return finish(backend, apply_sample_seed(backend, g, up, axis), input)
