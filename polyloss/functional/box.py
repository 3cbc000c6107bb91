"""Box regression losses of the IoU family: IoU, GIoU, DIoU and CIoU.

Element-wise on paired ``(..., 4)`` xyxy boxes, with ``torchvision.ops``
semantics (``generalized_box_iou_loss``, ``distance_box_iou_loss``,
``complete_box_iou_loss``); the intersection is counted only where the boxes
overlap with positive width and height, ``eps`` keeps every division finite,
and the mean of an empty input is 0.
"""

from __future__ import annotations

import math
from typing import Any

from polyloss import _validation as v
from polyloss._namespace import resolve
from polyloss.backend._base import Backend
from polyloss.functional._common import compute_dtype
from polyloss.functional._common import finish
from polyloss.functional._common import try_fast_path

__all__ = ["ciou_loss", "diou_loss", "giou_loss", "iou_loss"]


def _prepare(boxes1: Any, boxes2: Any, eps: float, reduction: str) -> tuple[Backend, float, Any, Any]:
    backend, eps = _check(boxes1, boxes2, eps, reduction)
    b1, b2 = compute_dtype(backend, boxes1, boxes2)
    return backend, eps, b1, b2


def _check(boxes1: Any, boxes2: Any, eps: float, reduction: str) -> tuple[Backend, float]:
    backend = resolve(boxes1, boxes2, input_name="boxes1", target_name="boxes2")
    v.check_reduction(reduction)
    v.check_floating(backend, boxes1, "boxes1")
    v.check_same_shape(boxes1, boxes2, input_name="boxes1", target_name="boxes2")
    if boxes1.ndim < 1 or boxes1.shape[-1] != 4:
        raise ValueError(f"boxes1 and boxes2 must have shape (..., 4), got {tuple(boxes1.shape)}")
    if backend.dtype_kind(boxes2.dtype) not in "fi":
        raise TypeError(f"boxes2 must have a real numeric dtype, got {boxes2.dtype}")
    return backend, v.check_number(eps, "eps")


def _iou_parts(xp: Any, b1: Any, b2: Any, eps: float) -> tuple[Any, Any, Any, Any]:
    """IoU with ``eps`` in the denominator, union, enclosing width and height."""
    x1, y1, x2, y2 = b1[..., 0], b1[..., 1], b1[..., 2], b1[..., 3]
    x1g, y1g, x2g, y2g = b2[..., 0], b2[..., 1], b2[..., 2], b2[..., 3]
    iw = xp.minimum(x2, x2g) - xp.maximum(x1, x1g)
    ih = xp.minimum(y2, y2g) - xp.maximum(y1, y1g)
    overlap = (iw > 0) & (ih > 0)
    # the product only where both sides are positive: zero value and zero gradient elsewhere
    inter = xp.where(overlap, iw * ih, 0.0)
    union = (x2 - x1) * (y2 - y1) + (x2g - x1g) * (y2g - y1g) - inter
    iou = inter / (union + eps)
    ew = xp.maximum(x2, x2g) - xp.minimum(x1, x1g)
    eh = xp.maximum(y2, y2g) - xp.minimum(y1, y1g)
    return iou, union, ew, eh


def _diou(xp: Any, b1: Any, b2: Any, eps: float) -> tuple[Any, Any]:
    """``1 - IoU + rho^2 / (c^2 + eps)`` and the IoU."""
    iou, _, ew, eh = _iou_parts(xp, b1, b2, eps)
    dx = (b1[..., 0] + b1[..., 2]) / 2 - (b2[..., 0] + b2[..., 2]) / 2
    dy = (b1[..., 1] + b1[..., 3]) / 2 - (b2[..., 1] + b2[..., 3]) / 2
    return 1.0 - iou + (dx * dx + dy * dy) / (ew * ew + eh * eh + eps), iou


def _angle(xp: Any, b: Any) -> Any:
    """``atan(w / h)`` as ``atan2(w, h)``; a point box (w = h = 0) gives 0 with a finite gradient."""
    w = b[..., 2] - b[..., 0]
    h = b[..., 3] - b[..., 1]
    return xp.atan2(w, xp.where((w == 0) & (h == 0), 1.0, h))


def iou_loss(boxes1: Any, boxes2: Any, *, eps: float = 1e-7, reduction: str = "mean") -> Any:
    r"""IoU loss :math:`1 - |A \cap B| / (|A \cup B| + \epsilon)` of paired xyxy boxes.

    Args:
        boxes1: predicted boxes ``(..., 4)`` as (x1, y1, x2, y2), real floating.
        boxes2: target boxes, same shape (never broadcast).
        eps: added to the union, default 1e-7 (as torchvision's IoU losses).
        reduction: ``"none"`` (shape ``(...)``), ``"mean"`` (default; 0 for an
            empty input) or ``"sum"``.

    The intersection counts only where the boxes overlap with positive width
    and height. Differentiable with respect to ``boxes1`` (and ``boxes2``).
    Symmetric in its two arguments.
    """
    backend, eps = _check(boxes1, boxes2, eps, reduction)
    out = try_fast_path(backend, "iou_loss", boxes1, boxes2, eps=eps, reduction=reduction)
    if out is not NotImplemented:
        return out
    b1, b2 = compute_dtype(backend, boxes1, boxes2)
    iou, _, _, _ = _iou_parts(backend.xp, b1, b2, eps)
    return finish(backend, v.reduce(backend, 1.0 - iou, reduction), boxes1)


def giou_loss(boxes1: Any, boxes2: Any, *, eps: float = 1e-7, reduction: str = "mean") -> Any:
    r"""Generalized IoU loss (Rezatofighi et al., CVPR 2019) of paired xyxy boxes.

    .. math::
        \ell = 1 - \Big(\mathrm{IoU} - \frac{|C| - |A \cup B|}{|C| + \epsilon}\Big),\quad
        \mathrm{IoU} = \frac{|A \cap B|}{|A \cup B| + \epsilon}

    with ``C`` the smallest box enclosing both. Args as :func:`iou_loss`.
    Matches ``torchvision.ops.generalized_box_iou_loss`` (whose default
    reduction is ``"none"``; polyloss's is ``"mean"``).
    """
    backend, eps = _check(boxes1, boxes2, eps, reduction)
    out = try_fast_path(backend, "giou_loss", boxes1, boxes2, eps=eps, reduction=reduction)
    if out is not NotImplemented:
        return out
    b1, b2 = compute_dtype(backend, boxes1, boxes2)
    iou, union, ew, eh = _iou_parts(backend.xp, b1, b2, eps)
    area_c = ew * eh
    loss = 1.0 - (iou - (area_c - union) / (area_c + eps))
    return finish(backend, v.reduce(backend, loss, reduction), boxes1)


def diou_loss(boxes1: Any, boxes2: Any, *, eps: float = 1e-7, reduction: str = "mean") -> Any:
    r"""Distance IoU loss (Zheng et al., AAAI 2020) of paired xyxy boxes.

    .. math::
        \ell = 1 - \mathrm{IoU} + \frac{\rho^2}{c^2 + \epsilon}

    with :math:`\rho` the distance between the box centres and ``c`` the
    diagonal of the smallest enclosing box. Args as :func:`iou_loss`.
    Matches ``torchvision.ops.distance_box_iou_loss``.
    """
    backend, eps = _check(boxes1, boxes2, eps, reduction)
    out = try_fast_path(backend, "diou_loss", boxes1, boxes2, eps=eps, reduction=reduction)
    if out is not NotImplemented:
        return out
    b1, b2 = compute_dtype(backend, boxes1, boxes2)
    loss, _ = _diou(backend.xp, b1, b2, eps)
    return finish(backend, v.reduce(backend, loss, reduction), boxes1)


def ciou_loss(boxes1: Any, boxes2: Any, *, eps: float = 1e-7, reduction: str = "mean") -> Any:
    r"""Complete IoU loss (Zheng et al., AAAI 2020) of paired xyxy boxes.

    .. math::
        \ell = \ell_{\mathrm{DIoU}} + \alpha v,\quad
        v = \frac{4}{\pi^2}\Big(\arctan\frac{w_2}{h_2} - \arctan\frac{w_1}{h_1}\Big)^2,\quad
        \alpha = \frac{v}{1 - \mathrm{IoU} + v + \epsilon}

    :math:`\alpha` is a constant for the gradient (no gradient flows through
    it), as in the paper and ``torchvision.ops.complete_box_iou_loss``.
    :math:`\arctan(w/h)` is evaluated as ``atan2(w, h)``: identical for boxes
    with ``h >= 0, w > 0`` and finite (0, with a finite gradient) for a
    point box, where torchvision gives NaN. Args as :func:`iou_loss`.
    """
    backend, eps = _check(boxes1, boxes2, eps, reduction)
    out = try_fast_path(backend, "ciou_loss", boxes1, boxes2, eps=eps, reduction=reduction)
    if out is not NotImplemented:
        return out
    b1, b2 = compute_dtype(backend, boxes1, boxes2)
    xp = backend.xp
    loss, iou = _diou(xp, b1, b2, eps)
    d = _angle(xp, b2) - _angle(xp, b1)
    aspect = (4.0 / math.pi**2) * d * d
    alpha = backend.stop_gradient(aspect / (1.0 - iou + aspect + eps))
    return finish(backend, v.reduce(backend, loss + alpha * aspect, reduction), boxes1)
