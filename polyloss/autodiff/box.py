r"""Closed-form gradients of the IoU-family box losses (see :mod:`polyloss.functional.box`).

Every gradient is with respect to ``boxes1`` (the predicted boxes), written
out coordinate by coordinate from the loss's own formula, including its
``eps`` terms. Subgradients are PyTorch's: ``minimum``/``maximum`` give half
the gradient to each side at a tie, the intersection has gradient only where
both overlaps are positive, and CIoU's :math:`\alpha` is a constant (the
forward stops its gradient, as torchvision does).
"""

from __future__ import annotations

import math
from typing import Any

from polyloss.autodiff._common import apply_sample_seed
from polyloss.autodiff._common import pointwise_scale
from polyloss.functional._common import finish
from polyloss.functional.box import _prepare

__all__ = ["ciou_loss_grad", "diou_loss_grad", "giou_loss_grad", "iou_loss_grad"]

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


def giou_loss_grad(
    boxes1: Any, boxes2: Any, *, eps: float = 1e-7, reduction: str = "mean", cotangent: Any = None
) -> Any:
    r"""Gradient of :func:`polyloss.giou_loss` with respect to ``boxes1``.

    The IoU loss's gradient plus that of :math:`(|C| - U) / (|C| + \epsilon)`,
    ``C`` the enclosing box (PyTorch's half gradient where two edges coincide).
    """
    return _box_loss_grad("giou", boxes1, boxes2, eps, reduction, cotangent)


def diou_loss_grad(
    boxes1: Any, boxes2: Any, *, eps: float = 1e-7, reduction: str = "mean", cotangent: Any = None
) -> Any:
    r"""Gradient of :func:`polyloss.diou_loss` with respect to ``boxes1``.

    The IoU loss's gradient plus that of :math:`\rho^2 / (c^2 + \epsilon)`.
    """
    return _box_loss_grad("diou", boxes1, boxes2, eps, reduction, cotangent)


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
