"""The IoU family (IoU, generalized, distance and complete IoU) on one core.

:func:`iou_terms` computes, on broadcast coordinate arrays (:data:`Coords`),
every term of the family: the intersection and union, the enclosing box, the
centre distance and CIoU's aspect term. It serves

- the pairwise functions here (:func:`box_iou` and siblings), boxes
  ``(..., N, 4)`` against ``(..., M, 4)``: ``boxes1[..., :, None, :]``
  against ``boxes2[..., None, :, :]``, or one row of ``boxes1`` at a time;
- the paired box losses of :mod:`polyloss.functional.box` (element-wise),
  their closed-form gradients (:func:`iou_terms_grad`, the core's derivative)
  and PyTorch's fused value-and-gradient path, which calls them.

The two uses follow torchvision's two conventions, chosen by ``paired``:

- pairwise (``torchvision.ops.box_iou`` and siblings): intersection
  ``clip(iw, 0) * clip(ih, 0)``; IoU ``I / U``, 0 where ``U <= 0`` (torchvision:
  NaN); enclosing box ``C`` with sides clipped at 0; GIoU's term
  ``(C - U) / C``, 0 where ``C <= 0``;
- paired (``torchvision.ops.*_box_iou_loss``): intersection ``iw * ih`` where
  both are positive, else 0 (no gradient through a zero extent); IoU
  ``I / (U + eps)``; enclosing box with signed sides; GIoU's term
  ``(C - U) / (C + eps)``.

DIoU subtracts ``rho^2 / (c^2 + eps)`` (``rho`` the distance between the
centres, ``c`` the enclosing box's diagonal) and CIoU also ``alpha v`` with
``v = 4 / pi^2 (atan(w1 / h1) - atan(w2 / h2))^2`` and
``alpha = v / (1 - IoU + v + eps)`` held constant (no gradient), in both.
``atan(w / h)`` is ``atan2(s w, s h)`` with ``s`` the sign of ``h`` (equal to
it for every ``h != 0``, ``+-pi/2`` for ``h = 0``) and 0 for a point box
(``w = h = 0``, where torchvision gives NaN), with finite derivatives.
Widths and heights are signed: an inverted box (``x2 < x1``) enters the
formulas as torchvision's would take it.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from collections.abc import Iterator
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from polyloss import _checks as v
from polyloss._namespace import check_same
from polyloss.backend._base import Backend
from polyloss.boxes.conversions import Coords
from polyloss.boxes.conversions import area
from polyloss.boxes.conversions import boxes_backend
from polyloss.boxes.conversions import corners

__all__ = [
    "box_iou",
    "complete_box_iou",
    "distance_box_iou",
    "generalized_box_iou",
    "paired_box_iou",
]

KINDS = ("iou", "giou", "diou", "ciou")

#: CIoU's ``4 / pi^2``.
FOUR_OVER_PI2 = 4.0 / math.pi**2

#: The pairwise IoU divides by the union clipped below at this (exactly 0 where the union is 0).
_TINY = 1e-30


# -- the core ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class IoUTerms:
    """The terms of an IoU-family score of broadcast box pairs ``a``, ``b`` (see :func:`iou_terms`).

    Terms a kind does not need are None.
    """

    iw: Any  #: signed overlap width ``min(x2) - max(x1)``
    ih: Any  #: signed overlap height
    inter: Any  #: intersection area
    union: Any  #: ``area(a) + area(b) - inter``
    iou: Any  #: the IoU of the convention
    score: Any  #: the IoU, GIoU, DIoU or CIoU
    ew: Any = None  #: enclosing box width (GIoU, DIoU, CIoU)
    eh: Any = None  #: enclosing box height
    area_c: Any = None  #: GIoU: enclosing area ``ew * eh``
    term: Any = None  #: GIoU: ``(C - U) / (C + eps)`` (paired)
    dx: Any = None  #: DIoU, CIoU: centre of ``a`` minus centre of ``b``, x
    dy: Any = None  #: and y
    diag: Any = None  #: DIoU, CIoU: ``ew^2 + eh^2 + eps``
    ratio: Any = None  #: DIoU, CIoU: ``rho^2 / diag``
    diff: Any = None  #: CIoU: ``angle(a) - angle(b)``
    aspect: Any = None  #: CIoU: ``v``
    alpha: Any = None  #: CIoU: ``v / (1 - iou + v + eps)``


def angle(xp: Any, c: Coords) -> Any:
    """``atan(w / h)`` of boxes, as ``atan2(s w, s h)`` with ``s = -1`` where ``h < 0`` (else 1), 0 for a point box."""
    w = c[2] - c[0]
    h = c[3] - c[1]
    flip = h < 0
    return xp.atan2(xp.where(flip, -w, w), xp.where(flip, -h, xp.where((w == 0) & (h == 0), 1.0, h)))


def iou_terms(xp: Any, kind: str, a: Coords, b: Coords, *, eps: float, paired: bool,
              stop_gradient: Callable[[Any], Any] | None = None, area_b: Any = None) -> IoUTerms:
    """The terms of ``kind`` (one of :data:`KINDS`) of broadcast boxes ``a`` and ``b`` (coordinate arrays).

    ``paired``: the loss convention (``eps`` in every denominator, no gradient
    through a zero overlap extent), else the pairwise one (see the module's
    table). ``stop_gradient`` detaches CIoU's ``alpha`` (needed where an
    autograd framework differentiates the result). ``area_b``: ``area(b)``
    when already known (the pairwise rows compute it once for every row).
    """
    iw = xp.minimum(a[2], b[2]) - xp.maximum(a[0], b[0])
    ih = xp.minimum(a[3], b[3]) - xp.maximum(a[1], b[1])
    if paired:
        inter = xp.where((iw > 0) & (ih > 0), iw * ih, 0.0)
    else:
        inter = xp.clip(iw, min=0.0) * xp.clip(ih, min=0.0)
    union = (area(a) + (area(b) if area_b is None else area_b)) - inter
    # pairwise: where inter > 0 both boxes have positive area, so union >= inter > 0; elsewhere inter == 0
    # and dividing by the clipped union gives exactly 0
    iou = inter / (union + eps) if paired else inter / xp.clip(union, min=_TINY)
    if kind == "iou":
        return IoUTerms(iw, ih, inter, union, iou, iou)
    ew = xp.maximum(a[2], b[2]) - xp.minimum(a[0], b[0])
    eh = xp.maximum(a[3], b[3]) - xp.minimum(a[1], b[1])
    if not paired:
        ew, eh = xp.clip(ew, min=0.0), xp.clip(eh, min=0.0)
    if kind == "giou":
        area_c = ew * eh
        if paired:
            term = (area_c - union) / (area_c + eps)
        else:
            ok = area_c > 0
            term = xp.where(ok, (area_c - union) / xp.where(ok, area_c, 1.0), 0.0)
        return IoUTerms(iw, ih, inter, union, iou, iou - term, ew, eh, area_c=area_c, term=term)
    dx = (a[0] + a[2]) / 2 - (b[0] + b[2]) / 2
    dy = (a[1] + a[3]) / 2 - (b[1] + b[3]) / 2
    diag = ew * ew + eh * eh + eps
    ratio = (dx * dx + dy * dy) / diag
    if kind == "diou":
        return IoUTerms(iw, ih, inter, union, iou, iou - ratio, ew, eh, dx=dx, dy=dy, diag=diag, ratio=ratio)
    diff = angle(xp, a) - angle(xp, b)
    aspect = FOUR_OVER_PI2 * diff * diff
    alpha = aspect / (1.0 - iou + aspect + eps)
    if stop_gradient is not None:
        alpha = stop_gradient(alpha)
    return IoUTerms(iw, ih, inter, union, iou, (iou - ratio) - alpha * aspect, ew, eh, dx=dx, dy=dy, diag=diag,
                    ratio=ratio, diff=diff, aspect=aspect, alpha=alpha)


# -- the core's derivative (paired convention) ------------------------------------------------------------
def iou_terms_grad(xp: Any, kind: str, a: Coords, b: Coords, t: IoUTerms, *, eps: float) -> list[Any]:
    """``d t.score / d a``, one array per coordinate of ``a``, of the paired-convention ``t = iou_terms(...)``.

    ``alpha`` is a constant (as the forward's ``stop_gradient``); at ties of
    ``min``/``max`` each side takes half (PyTorch's subgradient); the
    intersection has no gradient unless both overlap extents are positive.
    With ``s = sign(a - b)`` per coordinate, ``d max(a, b) / d a = (1 + s) / 2``
    and ``d min(a, b) / d a = (1 - s) / 2``.
    """
    w1, h1 = a[2] - a[0], a[3] - a[1]
    s = [xp.sign(p - q) for p, q in zip(a, b, strict=True)]
    # d inter = (-ih (1 + s0), -iw (1 + s1), ih (1 - s2), iw (1 - s3)) / 2 where both extents are positive
    half_ov = 0.5 * xp.astype((t.iw > 0) & (t.ih > 0), t.iw.dtype)
    ph, pw = half_ov * t.ih, half_ov * t.iw
    d_inter = (-ph * (1.0 + s[0]), -pw * (1.0 + s[1]), ph * (1.0 - s[2]), pw * (1.0 - s[3]))
    # d iou = (d inter - iou d union) / den with d union = d area - d inter, d area = (-h1, -w1, h1, w1)
    den = t.union + eps
    k_inter = (1.0 + t.iou) / den
    k_area = t.iou / den
    qh, qw = k_area * h1, k_area * w1
    grad = [k_inter * d_inter[0] + qh, k_inter * d_inter[1] + qw, k_inter * d_inter[2] - qh, k_inter * d_inter[3] - qw]
    if kind == "iou":
        return grad
    # d ew by (x1, x2) = (-(1 - s0), 1 + s2) / 2, d eh by (y1, y2) = (-(1 - s1), 1 + s3) / 2
    if kind == "giou":
        # score = iou - term, term = (C - U) / c, c = C + eps: -d term = (d U - (1 - term) d C) / c with
        # d U = d area - d inter and d C = eh d ew + ew d eh
        inv_c = 1.0 / (t.area_c + eps)
        f = (0.5 * inv_c) * (1.0 - t.term)
        fh, fw = f * t.eh, f * t.ew
        uh, uw = inv_c * h1, inv_c * w1
        return [grad[0] - uh - inv_c * d_inter[0] + fh * (1.0 - s[0]),
                grad[1] - uw - inv_c * d_inter[1] + fw * (1.0 - s[1]),
                grad[2] + uh - inv_c * d_inter[2] - fh * (1.0 + s[2]),
                grad[3] + uw - inv_c * d_inter[3] - fw * (1.0 + s[3])]
    # score -= ratio, ratio = rho^2 / diag: -d ratio = -(d rho^2 - ratio d diag) / diag with
    # d rho^2 = (dx, dy, dx, dy) and d diag = 2 (ew d ew + eh d eh)
    inv_diag = 1.0 / t.diag
    rx, ry = (t.ratio * inv_diag) * t.ew, (t.ratio * inv_diag) * t.eh
    gx, gy = t.dx * inv_diag, t.dy * inv_diag
    grad = [grad[0] - gx - rx * (1.0 - s[0]), grad[1] - gy - ry * (1.0 - s[1]),
            grad[2] - gx + rx * (1.0 + s[2]), grad[3] - gy + ry * (1.0 + s[3])]
    if kind == "diou":
        return grad
    # score -= alpha v with alpha constant: d v = 2 (4 / pi^2) diff d angle(a), d atan(w / h) = (h, -w) / (w^2 + h^2)
    # (d/dw = 1, d/dh = 0 for a point box, where h is replaced by 1)
    h_safe = xp.where((w1 == 0) & (h1 == 0), 1.0, h1)
    k = (2.0 * FOUR_OVER_PI2) * t.alpha * t.diff / (w1 * w1 + h_safe * h_safe)
    d_w, d_h = k * h_safe, k * w1
    return [grad[0] + d_w, grad[1] - d_h, grad[2] - d_w, grad[3] + d_h]


# -- pairwise -------------------------------------------------------------------------------------
def pair_backend(boxes1: Any, boxes2: Any) -> Backend:
    """The backend of two box arrays ``(..., N, 4)``, ``(..., M, 4)`` of one namespace; ``boxes1`` floating."""
    backend = boxes_backend(boxes1, "boxes1")
    check_same(backend, boxes2, "boxes2", "boxes1")
    boxes_backend(boxes2, "boxes2")
    if boxes1.ndim < 2 or boxes2.ndim < 2:
        raise ValueError(
            f"pairwise box functions need (..., N, 4) and (..., M, 4), got {tuple(boxes1.shape)} "
            f"and {tuple(boxes2.shape)}"
        )
    v.check_floating(backend, boxes1, "boxes1")
    return backend


#: Pairwise functions loop over the rows of ``boxes1`` up to this many: each
#: step works on ``(..., M)`` arrays that stay in cache, about 3x faster on
#: CPUs than broadcasting ``(..., N, M)`` temporaries, and as fast on GPUs.
ROW_LOOP_MAX = 32

Pair = Callable[..., Any]


def pairwise_score(xp: Any, kind: str, *, eps: float = 0.0, stop_gradient: Callable[[Any], Any] | None = None) -> Pair:
    """``pair(a, b, area_b=None)``: the pairwise-convention score ``kind`` of broadcast coordinate arrays
    (``area_b``: ``area(b)`` if known)."""

    def pair(a: Coords, b: Coords, area_b: Any = None) -> Any:
        return iou_terms(xp, kind, a, b, eps=eps, paired=False, stop_gradient=stop_gradient, area_b=area_b).score

    return pair


def pairwise_map(xp: Any, boxes1: Any, boxes2: Any, pair: Pair) -> Any:
    """``(..., N, M)`` of ``pair(a, b)`` over the rows of ``boxes1 (..., N, 4)`` and ``boxes2 (..., M, 4)``."""
    if boxes2.dtype != boxes1.dtype:
        boxes2 = xp.astype(boxes2, boxes1.dtype)
    n = boxes1.shape[-2]
    if n == 0 or n > ROW_LOOP_MAX:
        a = tuple(xp.expand_dims(c, axis=-1) for c in corners(boxes1))
        b = tuple(xp.expand_dims(c, axis=-2) for c in corners(boxes2))
        return pair(a, b)
    return xp.stack(list(pairwise_rows(xp, boxes1, boxes2, pair)), axis=-2)


def pairwise_rows(xp: Any, boxes1: Any, boxes2: Any, pair: Pair, sizes: Sequence[int] | None = None) -> Iterator[Any]:
    """``pair`` of each row of ``boxes1 (..., N, 4)`` against ``boxes2 (..., M, 4)``: N arrays ``(..., M)``,
    computed one at a time.

    With ``sizes`` (non-increasing; ``boxes1 (B, G, 4)``, ``boxes2 (M, 4)`` or
    ``(B, M, 4)``), row ``g`` only for the first ``sizes[g]`` images: ``(sizes[g], M)``.
    """
    if boxes2.dtype != boxes1.dtype:
        boxes2 = xp.astype(boxes2, boxes1.dtype)
    b = tuple(c * 1.0 for c in corners(boxes2))  # contiguous copies, read N times
    b_area = area(b)  # once, not once per row
    for row in range(boxes1.shape[-2] if sizes is None else len(sizes)):
        if sizes is None:
            a, b_row, area_row = boxes1[..., row, :], b, b_area
        else:
            a = boxes1[:sizes[row], row, :]
            b_row = b if boxes2.ndim == 2 else tuple(c[:sizes[row], ...] for c in b)
            area_row = b_area if boxes2.ndim == 2 else b_area[:sizes[row], ...]
        yield pair(tuple(xp.expand_dims(c, axis=-1) for c in corners(a)), b_row, area_row)


def box_iou(boxes1: Any, boxes2: Any) -> Any:
    r"""Pairwise intersection over union of xyxy boxes, ``(..., N, M)``.

    :math:`\mathrm{IoU} = |A \cap B| / |A \cup B|`; leading axes broadcast. Where
    the union is 0 (two zero-area boxes) the IoU is 0, not NaN as in
    ``torchvision.ops.box_iou``. NaN in a coordinate gives NaN in its row or
    column.
    """
    xp = pair_backend(boxes1, boxes2).xp
    return pairwise_map(xp, boxes1, boxes2, pairwise_score(xp, "iou"))


def generalized_box_iou(boxes1: Any, boxes2: Any) -> Any:
    r"""Pairwise generalized IoU (Rezatofighi et al. 2019), ``(..., N, M)``.

    :math:`\mathrm{GIoU} = \mathrm{IoU} - (|C| - |A \cup B|) / |C|` with ``C``
    the smallest enclosing box. Degenerate pairs (zero union or enclosing
    area) give 0 terms instead of NaN.
    """
    xp = pair_backend(boxes1, boxes2).xp
    return pairwise_map(xp, boxes1, boxes2, pairwise_score(xp, "giou"))


def distance_box_iou(boxes1: Any, boxes2: Any, *, eps: float = 1e-7) -> Any:
    r"""Pairwise distance IoU (Zheng et al. 2020), ``(..., N, M)``.

    :math:`\mathrm{DIoU} = \mathrm{IoU} - \rho^2 / (c^2 + \epsilon)` with
    :math:`\rho` the distance between the centres and ``c`` the diagonal of
    the enclosing box. ``eps`` defaults to 1e-7 as torchvision.
    """
    eps = v.check_number(eps, "eps")
    xp = pair_backend(boxes1, boxes2).xp
    return pairwise_map(xp, boxes1, boxes2, pairwise_score(xp, "diou", eps=eps))


def complete_box_iou(boxes1: Any, boxes2: Any, *, eps: float = 1e-7) -> Any:
    r"""Pairwise complete IoU (Zheng et al. 2020), ``(..., N, M)``.

    :math:`\mathrm{CIoU} = \mathrm{DIoU} - \alpha v`,
    :math:`v = \tfrac{4}{\pi^2}(\arctan\tfrac{w_1}{h_1} - \arctan\tfrac{w_2}{h_2})^2`,
    :math:`\alpha = v / (1 - \mathrm{IoU} + v + \epsilon)` taken as a constant
    (no gradient flows through it), as ``torchvision.ops.complete_box_iou``.
    :math:`\arctan(w/h)` is 0 for a point box (torchvision: NaN).
    """
    eps = v.check_number(eps, "eps")
    backend = pair_backend(boxes1, boxes2)
    xp = backend.xp
    return pairwise_map(xp, boxes1, boxes2, pairwise_score(xp, "ciou", eps=eps, stop_gradient=backend.stop_gradient))


def paired_box_iou(boxes1: Any, boxes2: Any) -> Any:
    """Element-wise IoU of xyxy boxes ``(..., 4)`` broadcast against each other, shape ``(...)``.

    The pairwise convention of :func:`box_iou` (0 where the union is 0) on
    pairs instead of all combinations: ``paired_box_iou(a[..., :, None, :],
    b[..., None, :, :])`` equals ``box_iou(a, b)``.
    """
    backend = boxes_backend(boxes1, "boxes1")
    check_same(backend, boxes2, "boxes2", "boxes1")
    boxes_backend(boxes2, "boxes2")
    v.check_floating(backend, boxes1, "boxes1")
    xp = backend.xp
    if boxes2.dtype != boxes1.dtype:
        boxes2 = xp.astype(boxes2, boxes1.dtype)
    return pairwise_score(xp, "iou")(corners(boxes1), corners(boxes2))
