"""Box regression losses of the IoU family: IoU, GIoU, DIoU and CIoU.

Element-wise on paired ``(..., 4)`` xyxy boxes, with ``torchvision.ops``
semantics (``generalized_box_iou_loss``, ``distance_box_iou_loss``,
``complete_box_iou_loss``); the intersection is counted only where the boxes
overlap with positive width and height, ``eps`` keeps every division finite,
and the mean of an empty input is 0, with their closed-form gradients.

Each loss is declared with ``@loss`` and its gradient, next to it, with ``@gradient(...)``.
"""

from __future__ import annotations

import math
from typing import Any

from polyloss import _checks as v
from polyloss._namespace import resolve
from polyloss.backend._base import Backend
from polyloss.functional._common import apply_sample_seed
from polyloss.functional._common import compute_dtype
from polyloss.functional._common import finish
from polyloss.functional._common import try_fast_path
from polyloss.functional._define import gradient
from polyloss.functional._define import loss
from polyloss.functional._reductions import pointwise_scale
from polyloss.functional._reductions import reduce

__all__ = [
    "ciou_loss",
    "ciou_loss_grad",
    "diou_loss",
    "diou_loss_grad",
    "giou_loss",
    "giou_loss_grad",
    "iou_loss",
    "iou_loss_grad",
]


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


@loss
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
    return finish(backend, reduce(backend, 1.0 - iou, reduction), boxes1)


@loss
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
    return finish(backend, reduce(backend, loss, reduction), boxes1)


@loss
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
    return finish(backend, reduce(backend, loss, reduction), boxes1)


@loss
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
    return finish(backend, reduce(backend, loss + alpha * aspect, reduction), boxes1)


# -- closed-form gradients ----------------------------------------------------------------------

_KINDS = ("iou", "giou", "diou", "ciou")


def _box_loss_grad(kind: str, boxes1: Any, boxes2: Any, eps: float, reduction: str, cotangent: Any) -> Any:
    """d <cotangent, loss(boxes1, boxes2)> / d boxes1 for ``kind`` in :data:`_KINDS`."""
    backend, eps, b1, b2 = _prepare(boxes1, boxes2, eps, reduction)
    xp = backend.xp
    dt = b1.dtype

    def mask(cond: Any) -> Any:
        return xp.astype(cond, dt)

    def d_min(a: Any, b: Any) -> Any:  # d minimum(a, b) / d a, 1/2 at a tie (PyTorch)
        return mask(a < b) + 0.5 * mask(a == b)

    def d_max(a: Any, b: Any) -> Any:  # d maximum(a, b) / d a
        return mask(a > b) + 0.5 * mask(a == b)

    x1, y1, x2, y2 = b1[..., 0], b1[..., 1], b1[..., 2], b1[..., 3]
    x1g, y1g, x2g, y2g = b2[..., 0], b2[..., 1], b2[..., 2], b2[..., 3]
    w1, h1 = x2 - x1, y2 - y1
    # intersection: only where both overlaps are positive
    iw = xp.minimum(x2, x2g) - xp.maximum(x1, x1g)
    ih = xp.minimum(y2, y2g) - xp.maximum(y1, y1g)
    overlap = (iw > 0) & (ih > 0)
    ov = mask(overlap)
    inter = xp.where(overlap, iw * ih, 0.0)
    d_inter = (
        -ov * ih * d_max(x1, x1g),
        -ov * iw * d_max(y1, y1g),
        ov * ih * d_min(x2, x2g),
        ov * iw * d_min(y2, y2g),
    )
    # union = area1 + area2 - inter
    union = w1 * h1 + (x2g - x1g) * (y2g - y1g) - inter
    d_area1 = (-h1, -w1, h1, w1)
    d_union = tuple(a - i for a, i in zip(d_area1, d_inter, strict=True))
    denominator = union + eps
    iou = inter / denominator
    # loss = 1 - iou + ...
    grad = [-(di - iou * du) / denominator for di, du in zip(d_inter, d_union, strict=True)]
    if kind != "iou":
        ew = xp.maximum(x2, x2g) - xp.minimum(x1, x1g)
        eh = xp.maximum(y2, y2g) - xp.minimum(y1, y1g)
        d_ew = (-d_min(x1, x1g), d_max(x2, x2g))  # d ew / d (x1, x2)
        d_eh = (-d_min(y1, y1g), d_max(y2, y2g))  # d eh / d (y1, y2)
        d_ew4 = (d_ew[0], 0.0, d_ew[1], 0.0)
        d_eh4 = (0.0, d_eh[0], 0.0, d_eh[1])
    if kind == "giou":
        area_c = ew * eh
        c = area_c + eps
        term = (area_c - union) / c
        for k in range(4):
            d_area_c = eh * d_ew4[k] + ew * d_eh4[k]
            grad[k] = grad[k] + (d_area_c - d_union[k] - term * d_area_c) / c
    elif kind in ("diou", "ciou"):
        dx = (x1 + x2) / 2 - (x1g + x2g) / 2
        dy = (y1 + y2) / 2 - (y1g + y2g) / 2
        diag = ew * ew + eh * eh + eps
        ratio = (dx * dx + dy * dy) / diag
        d_rho = (dx, dy, dx, dy)
        for k in range(4):
            d_diag = 2.0 * (ew * d_ew4[k] + eh * d_eh4[k])
            grad[k] = grad[k] + (d_rho[k] - ratio * d_diag) / diag
        if kind == "ciou":
            point = (w1 == 0) & (h1 == 0)
            h_safe = xp.where(point, 1.0, h1)
            norm = w1 * w1 + h_safe * h_safe
            da_dw = h_safe / norm  # atan2(w, h) by w
            da_dh = xp.where(point, 0.0, -w1 / norm)  # by h (no gradient through the point-box substitute)
            w2, h2 = x2g - x1g, y2g - y1g
            angle2 = xp.atan2(w2, xp.where((w2 == 0) & (h2 == 0), 1.0, h2))
            diff = angle2 - xp.atan2(w1, h_safe)
            k4 = 4.0 / math.pi**2
            aspect = k4 * diff * diff
            alpha = aspect / (1.0 - iou + aspect + eps)  # a constant for the gradient
            dv_dangle1 = -2.0 * k4 * diff * alpha
            grad[0] = grad[0] - dv_dangle1 * da_dw
            grad[1] = grad[1] - dv_dangle1 * da_dh
            grad[2] = grad[2] + dv_dangle1 * da_dw
            grad[3] = grad[3] + dv_dangle1 * da_dh
    up = pointwise_scale(backend, x1, None, reduction, cotangent, normalize_by_weight=False)
    g = apply_sample_seed(backend, xp.stack(grad, axis=-1), up, -1)
    return finish(backend, g, boxes1)


@gradient(iou_loss)
def iou_loss_grad(
    boxes1: Any, boxes2: Any, *, eps: float = 1e-7, reduction: str = "mean", cotangent: Any = None
) -> Any:
    r"""Gradient of :func:`polyloss.iou_loss` with respect to ``boxes1``.

    With :math:`I` the intersection, :math:`U` the union and
    :math:`\mathrm{IoU} = I / (U + \epsilon)`:
    :math:`-\big(\partial I - \mathrm{IoU}\,\partial U\big) / (U + \epsilon)`,
    where :math:`\partial I` is 0 unless the boxes overlap with positive width
    and height.
    """
    return _box_loss_grad("iou", boxes1, boxes2, eps, reduction, cotangent)


@gradient(giou_loss)
def giou_loss_grad(
    boxes1: Any, boxes2: Any, *, eps: float = 1e-7, reduction: str = "mean", cotangent: Any = None
) -> Any:
    r"""Gradient of :func:`polyloss.giou_loss` with respect to ``boxes1``.

    The IoU loss's gradient plus that of :math:`(|C| - U) / (|C| + \epsilon)`,
    ``C`` the enclosing box (PyTorch's half gradient where two edges coincide).
    """
    return _box_loss_grad("giou", boxes1, boxes2, eps, reduction, cotangent)


@gradient(diou_loss)
def diou_loss_grad(
    boxes1: Any, boxes2: Any, *, eps: float = 1e-7, reduction: str = "mean", cotangent: Any = None
) -> Any:
    r"""Gradient of :func:`polyloss.diou_loss` with respect to ``boxes1``.

    The IoU loss's gradient plus that of :math:`\rho^2 / (c^2 + \epsilon)`.
    """
    return _box_loss_grad("diou", boxes1, boxes2, eps, reduction, cotangent)


@gradient(ciou_loss)
def ciou_loss_grad(
    boxes1: Any, boxes2: Any, *, eps: float = 1e-7, reduction: str = "mean", cotangent: Any = None
) -> Any:
    r"""Gradient of :func:`polyloss.ciou_loss` with respect to ``boxes1``.

    The DIoU loss's gradient plus :math:`\alpha\,\partial v`, with
    :math:`\alpha` held constant as the forward does (no gradient flows
    through it) and :math:`\arctan(w/h)` differentiated as ``atan2(w, h)``
    (a point box gets :math:`\partial/\partial w = 1`, :math:`\partial/\partial h = 0`).
    """
    return _box_loss_grad("ciou", boxes1, boxes2, eps, reduction, cotangent)
