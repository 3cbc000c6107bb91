"""Margin losses: binary hinge, squared hinge and multi-class margin."""

from __future__ import annotations

from typing import Any

from polyloss import _validation as v
from polyloss._namespace import resolve
from polyloss.backend._base import Backend
from polyloss.functional._common import compute_dtype
from polyloss.functional._common import finish
from polyloss.functional._common import try_fast_path
from polyloss.functional.classification import class_axis_inputs
from polyloss.functional.classification import class_weight
from polyloss.functional.classification import pick
from polyloss.functional.classification import take_per_class

__all__ = ["hinge_loss", "multi_margin_loss", "squared_hinge_loss"]


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
    return finish(backend, v.reduce(backend, loss, reduction), input)


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
    return finish(backend, v.reduce(backend, loss, reduction), input)


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
    return finish(backend, v.reduce(backend, loss, reduction), input)
