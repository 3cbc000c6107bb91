"""Boxes: conversions, the IoU family, box coding, matching, sampling and mining.

Every function is written against the array API standard and accepts leading
batch axes: pairwise functions take ``(..., N, 4)`` and ``(..., M, 4)`` and
return ``(..., N, M)``; the matcher takes a ``(..., G, P)`` quality matrix
with an optional ``(..., G)`` mask of real ground truth (padding is ``False``,
in recipes label ``-1``). Nothing here has a data-dependent shape, uses
boolean-mask indexing or reads array values in Python, so it runs unchanged on
lazy and jit backends and on array-api-strict with its strictest flags. (One
shortcut reads values where that is free: on eager host arrays
:meth:`Matcher.match_boxes` reads the ground-truth counts to skip padding.)

Semantics follow ``torchvision.ops`` and ``torchvision.models.detection._utils``
except where noted (zero-area boxes give an IoU of 0 instead of NaN; low-quality
matches need an IoU above 0).
"""

from __future__ import annotations

import itertools
import math
import numbers
import sys
from collections.abc import Iterable
from collections.abc import Iterator
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from typing import ClassVar

from polyloss import _checks as v
from polyloss._namespace import check_same
from polyloss._namespace import resolve
from polyloss.backend._base import Backend

__all__ = [
    "BalancedSampler",
    "BoxCoder",
    "DEFAULT_DECODE_CLIP",
    "Matcher",
    "SSDMatcher",
    "box_area",
    "box_convert",
    "box_iou",
    "complete_box_iou",
    "decode_boxes",
    "distance_box_iou",
    "encode_boxes",
    "encode_matched",
    "generalized_box_iou",
    "hard_negative_mining",
    "random_keys",
    "rank",
    "sample_balanced",
]

#: Largest ``dw``/``dh`` :func:`decode_boxes` exponentiates (Faster R-CNN's ``log(1000 / 16)``).
DEFAULT_DECODE_CLIP = math.log(1000.0 / 16)

_FORMATS = ("xyxy", "xywh", "cxcywh")


# -- helpers -----------------------------------------------------------------
def _boxes_backend(boxes: Any, name: str = "boxes") -> Backend:
    backend = resolve(boxes, input_name=name)
    if boxes.ndim < 1 or boxes.shape[-1] != 4:
        raise ValueError(f"{name} must have shape (..., 4), got {tuple(boxes.shape)}")
    return backend


def _pair_backend(boxes1: Any, boxes2: Any) -> Backend:
    backend = _boxes_backend(boxes1, "boxes1")
    check_same(backend, boxes2, "boxes2", "boxes1")
    _boxes_backend(boxes2, "boxes2")
    if boxes1.ndim < 2 or boxes2.ndim < 2:
        raise ValueError(
            f"pairwise box functions need (..., N, 4) and (..., M, 4), got {tuple(boxes1.shape)} "
            f"and {tuple(boxes2.shape)}"
        )
    v.check_floating(backend, boxes1, "boxes1")
    return backend


def _unstack(xp: Any, boxes: Any) -> tuple[Any, Any, Any, Any]:
    return boxes[..., 0], boxes[..., 1], boxes[..., 2], boxes[..., 3]


Coords = tuple[Any, Any, Any, Any]


def _safe_divide(xp: Any, num: Any, den: Any) -> Any:
    """``num / den`` where ``den > 0``, else 0 (the gradient is 0 there too)."""
    ok = den > 0
    return xp.where(ok, num / xp.where(ok, den, 1.0), 0.0)


def _inter_over_union(xp: Any, inter: Any, union: Any) -> Any:
    """``inter / union``, 0 where ``union <= 0``, in two passes.

    Where ``inter > 0`` both boxes have positive area, so ``union >= inter > 0``;
    elsewhere ``inter == 0`` and dividing by the clipped union gives exactly 0.
    """
    return inter / xp.clip(union, min=_TINY)


_TINY = 1e-30

#: Pairwise functions loop over the rows of ``boxes1`` up to this many: each
#: step works on ``(..., M)`` arrays that stay in cache, about 3x faster on
#: CPUs than broadcasting ``(..., N, M)`` temporaries, and as fast on GPUs.
_ROW_LOOP_MAX = 32


def _pairwise_map(xp: Any, boxes1: Any, boxes2: Any, pair: Any) -> Any:
    """``(..., N, M)`` of ``pair(a, b)``, a function of broadcastable xyxy coordinate tuples."""
    if boxes2.dtype != boxes1.dtype:
        boxes2 = xp.astype(boxes2, boxes1.dtype)
    n = boxes1.shape[-2]
    if n == 0 or n > _ROW_LOOP_MAX:
        a = tuple(xp.expand_dims(c, axis=-1) for c in _unstack(xp, boxes1))
        b = tuple(xp.expand_dims(c, axis=-2) for c in _unstack(xp, boxes2))
        return pair(a, b)
    return xp.stack(list(_pairwise_rows(xp, boxes1, boxes2, pair)), axis=-2)


def _prefix_counts(backend: Backend, valid: Any) -> list[int] | None:
    """The number of real boxes of each image of ``valid (N, G)`` (host), when they come first in every
    image and some image has padding; else None."""
    xp = backend.xp
    g = int(valid.shape[-1])
    if g > _SMALL_AXIS:
        return None
    counts = xp.sum(xp.astype(valid, xp.int64), axis=-1)
    columns = xp.arange(g, dtype=xp.int64, device=backend.device(valid))
    if bool(xp.all(counts == g)) or not bool(xp.all(valid == (columns < xp.expand_dims(counts, axis=-1)))):
        return None
    return [int(c) for c in counts]


def _pairwise_rows(xp: Any, boxes1: Any, boxes2: Any, pair: Any, sizes: Sequence[int] | None = None) -> Iterator[Any]:
    """``pair`` of each row of ``boxes1 (..., N, 4)`` against ``boxes2 (..., M, 4)``: N arrays ``(..., M)``,
    computed one at a time.

    With ``sizes`` (non-increasing; ``boxes1 (B, G, 4)``, ``boxes2 (M, 4)`` or
    ``(B, M, 4)``), row ``g`` only for the first ``sizes[g]`` images: ``(sizes[g], M)``.
    """
    if boxes2.dtype != boxes1.dtype:
        boxes2 = xp.astype(boxes2, boxes1.dtype)
    b = tuple(c * 1.0 for c in _unstack(xp, boxes2))  # contiguous copies, read N times
    for row in range(boxes1.shape[-2] if sizes is None else len(sizes)):
        if sizes is None:
            a, b_row = boxes1[..., row, :], b
        else:
            a = boxes1[:sizes[row], row, :]
            b_row = b if boxes2.ndim == 2 else tuple(c[:sizes[row], ...] for c in b)
        yield pair(tuple(xp.expand_dims(c, axis=-1) for c in _unstack(xp, a)), b_row)


def _iou_of(xp: Any) -> Any:
    def iou(a: Coords, b: Coords) -> Any:
        return _inter_over_union(xp, *_inter_union(xp, a, b))

    return iou


def _area(c: Coords) -> Any:
    return (c[2] - c[0]) * (c[3] - c[1])


def _inter_union(xp: Any, a: Coords, b: Coords) -> tuple[Any, Any]:
    """Intersection and union of broadcast boxes given as coordinate tuples."""
    iw = xp.clip(xp.minimum(a[2], b[2]) - xp.maximum(a[0], b[0]), min=0.0)
    ih = xp.clip(xp.minimum(a[3], b[3]) - xp.maximum(a[1], b[1]), min=0.0)
    inter = iw * ih
    return inter, (_area(a) + _area(b)) - inter


def _enclosing(xp: Any, a: Coords, b: Coords) -> tuple[Any, Any]:
    """Width and height of the smallest box enclosing both."""
    ew = xp.clip(xp.maximum(a[2], b[2]) - xp.minimum(a[0], b[0]), min=0.0)
    eh = xp.clip(xp.maximum(a[3], b[3]) - xp.minimum(a[1], b[1]), min=0.0)
    return ew, eh


def _center_distance2(a: Coords, b: Coords) -> Any:
    dx = (a[0] + a[2]) / 2 - (b[0] + b[2]) / 2
    dy = (a[1] + a[3]) / 2 - (b[1] + b[3]) / 2
    return dx * dx + dy * dy


def _angle(xp: Any, c: Coords) -> Any:
    w = c[2] - c[0]
    h = c[3] - c[1]
    return xp.atan2(w, xp.where((w == 0) & (h == 0), 1.0, h))


def _aspect_term(xp: Any, a: Coords, b: Coords) -> Any:
    """CIoU's ``v = 4/pi^2 (atan(w1/h1) - atan(w2/h2))^2``.

    ``atan(w/h)`` is computed as ``atan2(w, h)``: equal for ``h > 0`` and for
    ``h = 0 < w`` (``pi/2``), and finite (0, finite gradient) for a point box
    where torchvision gives NaN.
    """
    d = _angle(xp, a) - _angle(xp, b)
    return (4.0 / math.pi**2) * d * d


# -- conversions and areas -----------------------------------------------------
def box_convert(boxes: Any, in_fmt: str, out_fmt: str) -> Any:
    """Convert ``(..., 4)`` boxes between ``"xyxy"``, ``"xywh"`` and ``"cxcywh"``.

    ``xyxy`` is (x1, y1, x2, y2); ``xywh`` is (x1, y1, width, height);
    ``cxcywh`` is (centre x, centre y, width, height). As
    ``torchvision.ops.box_convert``, any leading axes.
    """
    for fmt, name in ((in_fmt, "in_fmt"), (out_fmt, "out_fmt")):
        if fmt not in _FORMATS:
            raise ValueError(f"{name} must be one of {', '.join(map(repr, _FORMATS))}, got {fmt!r}")
    backend = _boxes_backend(boxes)
    if in_fmt == out_fmt:
        return boxes
    xp = backend.xp
    a, b, c, d = _unstack(xp, boxes)
    if in_fmt == "xywh":
        x1, y1, x2, y2 = a, b, a + c, b + d
    elif in_fmt == "cxcywh":
        x1, y1, x2, y2 = a - c / 2, b - d / 2, a + c / 2, b + d / 2
    else:
        x1, y1, x2, y2 = a, b, c, d
    if out_fmt == "xyxy":
        out = (x1, y1, x2, y2)
    elif out_fmt == "xywh":
        out = (x1, y1, x2 - x1, y2 - y1)
    else:
        out = ((x1 + x2) / 2, (y1 + y2) / 2, x2 - x1, y2 - y1)
    return xp.stack(out, axis=-1)


def box_area(boxes: Any) -> Any:
    """Area ``(x2 - x1) (y2 - y1)`` of ``(..., 4)`` xyxy boxes, shape ``(...)``."""
    backend = _boxes_backend(boxes)
    x1, y1, x2, y2 = _unstack(backend.xp, boxes)
    return (x2 - x1) * (y2 - y1)


# -- the IoU family (pairwise) --------------------------------------------------
def box_iou(boxes1: Any, boxes2: Any) -> Any:
    r"""Pairwise intersection over union of xyxy boxes, ``(..., N, M)``.

    :math:`\mathrm{IoU} = |A \cap B| / |A \cup B|`; leading axes broadcast. Where
    the union is 0 (two zero-area boxes) the IoU is 0, not NaN as in
    ``torchvision.ops.box_iou``.
    """
    xp = _pair_backend(boxes1, boxes2).xp
    return _pairwise_map(xp, boxes1, boxes2, _iou_of(xp))


def generalized_box_iou(boxes1: Any, boxes2: Any) -> Any:
    r"""Pairwise generalized IoU (Rezatofighi et al. 2019), ``(..., N, M)``.

    :math:`\mathrm{GIoU} = \mathrm{IoU} - (|C| - |A \cup B|) / |C|` with ``C``
    the smallest enclosing box. Degenerate pairs (zero union or enclosing
    area) give 0 terms instead of NaN.
    """
    xp = _pair_backend(boxes1, boxes2).xp

    def giou(a: Coords, b: Coords) -> Any:
        inter, union = _inter_union(xp, a, b)
        ew, eh = _enclosing(xp, a, b)
        enclosing = ew * eh
        return _inter_over_union(xp, inter, union) - _safe_divide(xp, enclosing - union, enclosing)

    return _pairwise_map(xp, boxes1, boxes2, giou)


def distance_box_iou(boxes1: Any, boxes2: Any, *, eps: float = 1e-7) -> Any:
    r"""Pairwise distance IoU (Zheng et al. 2020), ``(..., N, M)``.

    :math:`\mathrm{DIoU} = \mathrm{IoU} - \rho^2 / (c^2 + \epsilon)` with
    :math:`\rho` the distance between the centres and ``c`` the diagonal of
    the enclosing box. ``eps`` defaults to 1e-7 as torchvision.
    """
    eps = v.check_number(eps, "eps")
    xp = _pair_backend(boxes1, boxes2).xp

    def diou(a: Coords, b: Coords) -> Any:
        ew, eh = _enclosing(xp, a, b)
        return _inter_over_union(xp, *_inter_union(xp, a, b)) - _center_distance2(a, b) / (ew * ew + eh * eh + eps)

    return _pairwise_map(xp, boxes1, boxes2, diou)


def complete_box_iou(boxes1: Any, boxes2: Any, *, eps: float = 1e-7) -> Any:
    r"""Pairwise complete IoU (Zheng et al. 2020), ``(..., N, M)``.

    :math:`\mathrm{CIoU} = \mathrm{DIoU} - \alpha v`,
    :math:`v = \tfrac{4}{\pi^2}(\arctan\tfrac{w_1}{h_1} - \arctan\tfrac{w_2}{h_2})^2`,
    :math:`\alpha = v / (1 - \mathrm{IoU} + v + \epsilon)` taken as a constant
    (no gradient flows through it), as ``torchvision.ops.complete_box_iou``.
    """
    eps = v.check_number(eps, "eps")
    backend = _pair_backend(boxes1, boxes2)
    xp = backend.xp

    def ciou(a: Coords, b: Coords) -> Any:
        iou = _inter_over_union(xp, *_inter_union(xp, a, b))
        ew, eh = _enclosing(xp, a, b)
        diou = iou - _center_distance2(a, b) / (ew * ew + eh * eh + eps)
        va = _aspect_term(xp, a, b)
        alpha = backend.stop_gradient(va / (1.0 - iou + va + eps))
        return diou - alpha * va

    return _pairwise_map(xp, boxes1, boxes2, ciou)


# -- box coding --------------------------------------------------------------------
def _weights(weights: Sequence[float]) -> tuple[float, float, float, float]:
    if isinstance(weights, (str, bytes)) or len(weights) != 4:
        raise ValueError(f"weights must be four numbers (wx, wy, ww, wh), got {weights!r}")
    wx, wy, ww, wh = (v.check_number(w, f"weights[{i}]", strict=True) for i, w in enumerate(weights))
    return wx, wy, ww, wh


def encode_boxes(boxes: Any, anchors: Any, *, weights: Sequence[float] = (1.0, 1.0, 1.0, 1.0)) -> Any:
    r"""Regression targets of xyxy ``boxes`` relative to xyxy ``anchors`` (Girshick et al. 2014).

    .. math::
        t_x = w_x \frac{x - x_a}{w_a},\ t_y = w_y \frac{y - y_a}{h_a},\
        t_w = w_w \log\frac{w}{w_a},\ t_h = w_h \log\frac{h}{h_a}

    with centres ``(x, y)`` and sizes ``(w, h)``. ``weights`` are Faster
    R-CNN's ``BoxCoder`` weights: (1, 1, 1, 1) for the RPN, (10, 10, 5, 5) for
    the box head; SSD's variances (0.1, 0.2) are weights (10, 10, 5, 5).
    ``boxes`` and ``anchors`` broadcast; the result has their broadcast shape.
    """
    wx, wy, ww, wh = _weights(weights)
    backend = _boxes_backend(boxes)
    check_same(backend, anchors, "anchors", "boxes")
    _boxes_backend(anchors, "anchors")
    xp = backend.xp
    if anchors.dtype != boxes.dtype:
        anchors = xp.astype(anchors, boxes.dtype)
    aw = anchors[..., 2] - anchors[..., 0]
    ah = anchors[..., 3] - anchors[..., 1]
    ax = anchors[..., 0] + 0.5 * aw
    ay = anchors[..., 1] + 0.5 * ah
    bw = boxes[..., 2] - boxes[..., 0]
    bh = boxes[..., 3] - boxes[..., 1]
    bx = boxes[..., 0] + 0.5 * bw
    by = boxes[..., 1] + 0.5 * bh
    return xp.stack(
        (wx * (bx - ax) / aw, wy * (by - ay) / ah, ww * xp.log(bw / aw), wh * xp.log(bh / ah)), axis=-1
    )


def decode_boxes(
    deltas: Any,
    anchors: Any,
    *,
    weights: Sequence[float] = (1.0, 1.0, 1.0, 1.0),
    clip: float = DEFAULT_DECODE_CLIP,
) -> Any:
    r"""Inverse of :func:`encode_boxes`: xyxy boxes from ``deltas`` relative to ``anchors``.

    ``dw / ww`` and ``dh / wh`` are clamped above at ``clip`` (default
    ``log(1000 / 16)``, as torchvision's ``BoxCoder``) before ``exp``, so huge
    deltas cannot overflow. ``deltas`` and ``anchors`` broadcast (e.g.
    ``(N, C, 4)`` deltas of C classes against ``(N, 1, 4)`` anchors).
    """
    wx, wy, ww, wh = _weights(weights)
    clip = v.check_number(clip, "clip", minimum=None)
    backend = _boxes_backend(deltas, "deltas")
    check_same(backend, anchors, "anchors", "deltas")
    _boxes_backend(anchors, "anchors")
    xp = backend.xp
    if anchors.dtype != deltas.dtype:
        anchors = xp.astype(anchors, deltas.dtype)
    aw = anchors[..., 2] - anchors[..., 0]
    ah = anchors[..., 3] - anchors[..., 1]
    ax = anchors[..., 0] + 0.5 * aw
    ay = anchors[..., 1] + 0.5 * ah
    cx = deltas[..., 0] / wx * aw + ax
    cy = deltas[..., 1] / wy * ah + ay
    w = xp.exp(xp.clip(deltas[..., 2] / ww, max=clip)) * aw
    h = xp.exp(xp.clip(deltas[..., 3] / wh, max=clip)) * ah
    return xp.stack((cx - 0.5 * w, cy - 0.5 * h, cx + 0.5 * w, cy + 0.5 * h), axis=-1)


@dataclass(frozen=True)
class BoxCoder:
    """A named pair :func:`encode_boxes` / :func:`decode_boxes` with fixed weights (a recipe part)."""

    weights: tuple[float, float, float, float] = (1.0, 1.0, 1.0, 1.0)
    clip: float = DEFAULT_DECODE_CLIP

    def __post_init__(self) -> None:
        object.__setattr__(self, "weights", _weights(self.weights))

    def encode(self, boxes: Any, anchors: Any) -> Any:
        """Regression targets of ``boxes`` relative to ``anchors``."""
        return encode_boxes(boxes, anchors, weights=self.weights)

    def decode(self, deltas: Any, anchors: Any) -> Any:
        """Boxes from ``deltas`` relative to ``anchors``."""
        return decode_boxes(deltas, anchors, weights=self.weights, clip=self.clip)


def _log_size(xp: Any, size: Any) -> Any:
    """``log(size)``, -inf for a size of 0 (a degenerate box) without a division warning."""
    return xp.where(size > 0, xp.log(xp.where(size > 0, size, 1.0)), -math.inf)


def encode_matched(coder: Any, backend: Backend, gt_boxes: Any, valid: Any, index: Any, anchors: Any,
                   positive: Any) -> Any:
    """Regression targets ``(N, P, 4)`` of the ground truth matched to each anchor, 0 where not ``positive``.

    ``where(positive, coder.encode(gt_boxes[index], anchors), 0)`` for
    ``gt_boxes (N, G, 4)`` with ``valid (N, G)``, ``index (N, P)`` in
    ``[0, G)`` and ``anchors (P, 4)`` or ``(N, P, 4)``. With a
    :class:`BoxCoder` the ground truth's centres and log sizes are computed on
    the G boxes and the anchors' offsets and scales on the P anchors, leaving
    a gather and three passes over ``(N, P, 4)``.
    """
    xp = backend.xp
    n, p = (int(s) for s in index.shape)
    index4 = xp.broadcast_to(xp.expand_dims(index, axis=-1), (n, p, 4))
    positive4 = xp.expand_dims(positive, axis=-1)
    if anchors.dtype != gt_boxes.dtype:
        anchors = xp.astype(anchors, gt_boxes.dtype)
    if type(coder) is not BoxCoder:
        matched = xp.where(positive4, backend.take_along_axis(gt_boxes, index4, axis=1), anchors)
        return xp.where(positive4, coder.encode(matched, anchors), 0.0)
    wx, wy, ww, wh = coder.weights
    x1, y1, x2, y2 = _unstack(xp, gt_boxes)
    width = xp.where(valid, x2 - x1, 1.0)  # padding may hold anything
    height = xp.where(valid, y2 - y1, 1.0)
    gt_fields = xp.stack((x1 + 0.5 * width, y1 + 0.5 * height, _log_size(xp, width), _log_size(xp, height)), axis=-1)
    ax1, ay1, ax2, ay2 = _unstack(xp, anchors)
    aw = ax2 - ax1
    ah = ay2 - ay1
    offset = xp.stack((ax1 + 0.5 * aw, ay1 + 0.5 * ah, xp.log(aw), xp.log(ah)), axis=-1)
    scale = xp.stack((wx / aw, wy / ah, ww + 0.0 * aw, wh + 0.0 * ah), axis=-1)
    targets = (backend.take_along_axis(gt_fields, index4, axis=1) - offset) * scale
    return xp.where(positive4, targets, 0.0)


# -- matching ---------------------------------------------------------------------
def _valid_mask(backend: Backend, quality_shape: tuple[int, ...], valid: Any) -> Any:
    if valid is None:
        return None
    check_same(backend, valid, "valid", "quality")
    if tuple(valid.shape) != tuple(quality_shape[:-1]):
        raise ValueError(f"valid shape {tuple(valid.shape)} must be quality's shape without its last axis "
                         f"{tuple(quality_shape[:-1])}")
    if backend.dtype_kind(valid.dtype) != "b":
        raise TypeError(f"valid must be a boolean array, got {valid.dtype}")
    return valid


@dataclass(frozen=True)
class Matcher:
    """Assign each prediction (anchor, prior, proposal) to at most one ground truth.

    Called on a quality matrix ``(..., G, P)`` (usually :func:`box_iou` of the
    ground truth against the predictions) and an optional ``valid`` mask
    ``(..., G)`` (False for padding, which never matches), it returns an int64
    array ``(..., P)``: the index of the matched ground truth, or
    :attr:`BELOW_LOW_THRESHOLD` (-1) when the best quality is below
    ``low_threshold``, or :attr:`BETWEEN_THRESHOLDS` (-2) when it is in
    ``[low_threshold, high_threshold)``. Ties go to the first ground truth.

    With ``allow_low_quality_matches`` every prediction whose quality equals a
    ground truth's best quality (ties included) keeps its best match even
    below the thresholds, as torchvision's ``Matcher``, but only where that
    best quality is above 0: a ground truth that overlaps nothing makes no
    prediction positive (torchvision would match it to every prediction).
    """

    high_threshold: float
    low_threshold: float
    allow_low_quality_matches: bool = False

    BELOW_LOW_THRESHOLD: ClassVar[int] = -1
    BETWEEN_THRESHOLDS: ClassVar[int] = -2

    def __post_init__(self) -> None:
        hi = v.check_number(self.high_threshold, "high_threshold", minimum=None)
        lo = v.check_number(self.low_threshold, "low_threshold", minimum=None)
        if lo > hi:
            raise ValueError(f"low_threshold={lo} must be <= high_threshold={hi}")

    def __call__(self, quality: Any, valid: Any = None) -> Any:
        backend = resolve(quality, input_name="quality")
        if quality.ndim < 2:
            raise ValueError(f"quality must have shape (..., G, P), got {tuple(quality.shape)}")
        valid = _valid_mask(backend, tuple(quality.shape), valid)
        xp = backend.xp
        if quality.shape[-2] == 0 or quality.shape[-1] == 0:
            # no ground truth (everything background) or no predictions; static shapes, and no
            # reduction over an empty axis (which torch refuses)
            return xp.full((*quality.shape[:-2], quality.shape[-1]), -1, dtype=xp.int64,
                           device=backend.device(quality))
        return self._match(backend, _Quality.of(xp, quality, valid))

    def match_boxes(self, gt_boxes: Any, predictions: Any, valid: Any = None) -> Any:
        """``self(box_iou(gt_boxes, predictions), valid)``, the IoU rows going straight into the matching.

        Up to 32 ground truths the ``(..., G, P)`` IoU matrix is never
        stacked; the result is the same. A subclass that overrides
        ``__call__`` is called on the matrix.
        """
        g = gt_boxes.shape[-2] if gt_boxes.ndim >= 2 else 0
        p = predictions.shape[-2] if predictions.ndim >= 2 else 0
        if type(self).__call__ is not Matcher.__call__ or not 0 < g <= _SMALL_AXIS or p == 0:
            return self(box_iou(gt_boxes, predictions), valid)
        backend = _pair_backend(gt_boxes, predictions)
        xp = backend.xp
        if (valid is not None and gt_boxes.ndim == 3 and backend.is_host_array(valid)
                and (predictions.ndim == 2 or tuple(predictions.shape[:1]) == tuple(gt_boxes.shape[:1]))):
            counts = _prefix_counts(backend, _valid_mask(backend, (*gt_boxes.shape[:-1], p), valid))
            if counts is not None:
                return self._match_by_count(backend, gt_boxes, predictions, counts)
        rows = _pairwise_rows(xp, gt_boxes, predictions, _iou_of(xp))
        first = next(rows)  # each row is used as soon as it is computed, while it is in cache
        valid = _valid_mask(backend, (*first.shape[:-1], g, p), valid)
        return self._match(backend, _Quality.from_rows(xp, itertools.chain([first], rows), valid))

    def _match_by_count(self, backend: Backend, gt_boxes: Any, predictions: Any, counts: list[int]) -> Any:
        """The matches of ``gt_boxes (N, G, 4)`` whose image ``i`` has ``counts[i]`` real boxes, first.

        The images are ordered by decreasing count, so that the images with a
        ``g``-th box are a prefix of the batch: the IoU row of box ``g`` is
        computed for them only, and no padding row is computed at all.
        """
        xp = backend.xp
        n, p = len(counts), int(predictions.shape[-2])
        device = backend.device(gt_boxes)
        order = sorted(range(n), key=lambda i: -counts[i])
        permuted = order != list(range(n))
        sizes = [sum(1 for c in counts if c > g) for g in range(max(counts))]
        if permuted:
            index = xp.asarray(order, dtype=xp.int64, device=device)
            gt_boxes = xp.take(gt_boxes, index, axis=0)
            if predictions.ndim == 3:
                predictions = xp.take(predictions, index, axis=0)
        rows = _pairwise_rows(xp, gt_boxes, predictions, _iou_of(xp), sizes)
        matches = self._match(backend, _Quality(xp, rows, None)) if sizes else None
        if not sizes or sizes[0] < n:  # images without ground truth: every prediction is background
            background = xp.full((n - (sizes[0] if sizes else 0), p), self.BELOW_LOW_THRESHOLD, dtype=xp.int64,
                                 device=device)
            matches = background if matches is None else xp.concat([matches, background], axis=0)
        if permuted:
            inverse = [0] * n
            for position, image in enumerate(order):
                inverse[image] = position
            matches = xp.take(matches, xp.asarray(inverse, dtype=xp.int64, device=device), axis=0)
        return matches

    def _match(self, backend: Backend, q: _Quality) -> Any:
        summary = q.summarize(some_best=self.allow_low_quality_matches, owner=False)
        return self._thresholded(backend.xp, summary)

    def _thresholded(self, xp: Any, summary: _Summary) -> Any:
        best, best_gt = summary.best, summary.index
        # -1 below low_threshold, -2 between the thresholds, else best_gt
        matches = _select(xp, best >= self.high_threshold, best_gt, xp.astype(best < self.low_threshold, xp.int64) - 2)
        if self.allow_low_quality_matches:
            matches = _select(xp, summary.some_best, best_gt, matches)
        return matches


#: Up to this many ground truths the matchers work row by row on ``(..., P)``
#: arrays (in cache, and without torch's slow CPU argmax over a strided axis);
#: above it on the whole ``(..., G, P)`` matrix.
_SMALL_AXIS = 32  # row indices (at most 33) are kept in int8 row by row: 8x less memory traffic than int64


@dataclass(frozen=True)
class _Summary:
    """What the matchers need of a quality matrix, each ``(..., P)`` (None where not asked for)."""

    best: Any
    index: Any
    some_best: Any = None
    owner: Any = None


@dataclass(frozen=True)
class _Quality:
    """A ``(..., G, P)`` quality matrix with padding rows set to -inf: its G rows (possibly
    computed lazily, read once) or the whole matrix.

    Every reduction over the ground-truth axis takes the first maximum on
    ties, as torchvision's matchers.
    """

    xp: Any
    rows: Iterable[Any] | None
    whole: Any

    @classmethod
    def of(cls, xp: Any, quality: Any, valid: Any) -> _Quality:
        g = quality.shape[-2]
        if g > _SMALL_AXIS:
            whole = quality if valid is None else xp.where(xp.expand_dims(valid, axis=-1), quality, -math.inf)
            return cls(xp, None, whole)
        return cls.from_rows(xp, (quality[..., row, :] for row in range(g)), valid)

    @classmethod
    def from_rows(cls, xp: Any, rows: Iterable[Any], valid: Any) -> _Quality:
        return cls(xp, rows if valid is None else _padding_to_minus_inf(xp, rows, valid), None)

    def summarize(self, *, some_best: bool, owner: bool) -> _Summary:
        """One pass over the rows: ``(max, argmax)`` over the ground truth, and where asked whether each
        prediction is a best one (ties included) of a ground truth whose best is > 0, and the last
        ground truth whose best prediction (first on ties) it is (else -1)."""
        if self.rows is None:
            return self._summarize_whole(some_best=some_best, owner=owner)
        xp = self.xp
        best = index = hit = owner_plus_one = positions = None
        finished: list[tuple[Any, ...]] = []  # accumulators of the images the rows no longer cover
        for i, row in enumerate(self.rows):
            if best is not None and row.shape[0] != best.shape[0]:  # rows of a batch prefix (_pairwise_rows sizes)
                size = row.shape[0]
                finished.append(tuple(None if a is None else a[size:, ...] for a in (best, index, hit, owner_plus_one)))
                best, index, hit, owner_plus_one = (None if a is None else a[:size, ...]
                                                    for a in (best, index, hit, owner_plus_one))
            if best is None:
                best = row
                index = xp.zeros(row.shape, dtype=xp.int8, device=_device_of(row))
            else:
                # i grows, so the latest strictly better row is the largest index
                index = xp.maximum(index, xp.astype(row > best, xp.int8) * i)
                best = xp.maximum(best, row)
            if not (some_best or owner):
                continue
            highest = xp.max(row, axis=-1, keepdims=True)
            if some_best:
                row_hit = row == xp.where(highest > 0, highest, math.nan)  # NaN equals nothing
                hit = row_hit if hit is None else hit | row_hit
            if owner:
                if positions is None:
                    positions = xp.arange(row.shape[-1], dtype=xp.int64, device=_device_of(row))
                    owner_plus_one = xp.zeros(row.shape, dtype=xp.int8, device=_device_of(row))
                best_prediction = xp.astype(xp.argmax(row, axis=-1, keepdims=True), xp.int64)
                claimed = positions == xp.where(highest > -math.inf, best_prediction, -1)
                owner_plus_one = xp.maximum(owner_plus_one, xp.astype(claimed, xp.int8) * (i + 1))  # later rows win
        if finished:
            parts = [(best, index, hit, owner_plus_one), *reversed(finished)]
            best, index, hit, owner_plus_one = (None if group[0] is None else xp.concat(list(group), axis=0)
                                                for group in zip(*parts, strict=True))
        return _Summary(best, xp.astype(index, xp.int64), hit,
                        None if owner_plus_one is None else xp.astype(owner_plus_one, xp.int64) - 1)

    def _summarize_whole(self, *, some_best: bool, owner: bool) -> _Summary:
        xp, whole = self.xp, self.whole
        hit = forced = None
        if some_best:
            highest = xp.max(whole, axis=-1, keepdims=True)
            hit = xp.any((whole == highest) & (highest > 0), axis=-2)
        if owner:
            g, p = whole.shape[-2], whole.shape[-1]
            device = _device_of(whole)
            best_prediction = xp.astype(xp.argmax(whole, axis=-1), xp.int64)  # (..., G)
            claimed = xp.expand_dims(best_prediction, axis=-1) == xp.arange(p, dtype=xp.int64, device=device)
            claimed = claimed & xp.expand_dims(xp.max(whole, axis=-1) > -math.inf, axis=-1)
            ground_truth = xp.reshape(xp.arange(g, dtype=xp.int64, device=device), (g, 1))
            forced = xp.max(xp.where(claimed, ground_truth, -1), axis=-2)
        return _Summary(xp.max(whole, axis=-2), xp.astype(xp.argmax(whole, axis=-2), xp.int64), hit, forced)


def _padding_to_minus_inf(xp: Any, rows: Iterable[Any], valid: Any) -> Iterator[Any]:
    """The rows with -inf in each image's padding row (``valid (..., G)`` False)."""
    padding = None
    for i, row in enumerate(rows):
        if padding is None:
            padding = xp.where(valid, xp.zeros(valid.shape, dtype=row.dtype, device=_device_of(row)), -math.inf)
        yield row + xp.expand_dims(padding[..., i], axis=-1)


def _select(xp: Any, mask: Any, a: Any, b: Any) -> Any:
    """``xp.where(mask, a, b)`` for integer arrays, branch-free: ``b + mask * (a - b)``.

    On CPUs a select on an irregular mask mispredicts a branch per element
    (about 5x slower than this blend, in NumPy and torch alike).
    """
    return b + xp.astype(mask, b.dtype) * (a - b)


def _max_argmax_rows(xp: Any, q: Any) -> tuple[Any, Any]:
    """``(max, argmax)`` of ``q (..., G, P)`` over axis -2, first index on ties."""
    summary = _Quality.of(xp, q, None).summarize(some_best=False, owner=False)
    return summary.best, summary.index


def _device_of(x: Any) -> Any:
    import array_api_compat

    return array_api_compat.device(x)


@dataclass(frozen=True)
class SSDMatcher(Matcher):
    """SSD's matcher (Liu et al. 2016; torchvision's ``SSDMatcher``).

    A prediction matches its best ground truth when the quality is at least
    ``threshold`` (``high_threshold == low_threshold``, no low-quality rule);
    then every real ground truth takes its own best prediction (first on ties)
    whatever the quality, and when two ground truths pick the same prediction
    the later one wins.
    """

    high_threshold: float = 0.5
    low_threshold: float = 0.5
    allow_low_quality_matches: bool = False

    @classmethod
    def with_threshold(cls, threshold: float) -> SSDMatcher:
        """The matcher for one IoU ``threshold``."""
        return cls(threshold, threshold)

    def _match(self, backend: Backend, q: _Quality) -> Any:
        summary = q.summarize(some_best=self.allow_low_quality_matches, owner=True)
        forced = summary.owner
        return _select(backend.xp, forced >= 0, forced, self._thresholded(backend.xp, summary))


# -- sampling and mining ---------------------------------------------------------------
def rank(backend: Backend, keys: Any, *, descending: bool = False) -> Any:
    """Position of each element of ``keys`` in its row's stable sort (last axis), int64.

    Two stable ``argsort`` calls (the standard has no top-k); ties are ranked
    by index.
    """
    xp = backend.xp
    order = xp.argsort(keys, axis=-1, descending=descending, stable=True)
    return xp.astype(xp.argsort(order, axis=-1, stable=True), xp.int64)


def top_k_mask(backend: Backend, keys: Any, k: Any, *, descending: bool = False, distinct: bool = False) -> Any:
    """``rank(backend, keys, descending=descending) < k`` with one selection instead of two argsorts.

    Per row, the ``k``-th key is the threshold: keys strictly before it are
    taken, and of the keys equal to it the first ones in index order (a
    cumulative count), so ties are broken exactly as :func:`rank` does.

    Args:
        keys: ``(..., P)`` real or integer keys (no NaN).
        k: int array ``(..., 1)`` (or a Python int): how many per row; 0 takes none.
        distinct: the keys of a row are known to be distinct (no tie to break).
    """
    xp = backend.xp
    n = keys.shape[-1]
    device = backend.device(keys)
    if n == 0:
        return xp.zeros(keys.shape, dtype=xp.bool, device=device)
    if isinstance(k, int):
        k = xp.full((*keys.shape[:-1], 1), k, dtype=xp.int64, device=device)
    threshold = backend.kth_value(keys, xp.clip(k, 1, n), descending=descending)
    if distinct:
        return (keys >= threshold if descending else keys <= threshold) & (k > 0)
    before = keys > threshold if descending else keys < threshold
    tie = keys == threshold
    room = k - xp.sum(xp.astype(before, xp.int64), axis=-1, keepdims=True)
    tie_rank = xp.cumulative_sum(xp.astype(tie, xp.int64), axis=-1)
    return (before | (tie & (tie_rank <= room))) & (k > 0)


#: :func:`random_keys` are below ``2**KEY_BITS``, so that three groups of them fit in an int64.
KEY_BITS = 60


def random_keys(backend: Backend, shape: tuple[int, ...], *, seed: Any, device: Any) -> Any:
    """Distinct random int64 keys in ``[0, 2**KEY_BITS)``, in uniformly random order along the last axis.

    Each key is random high bits above the element's index (so the keys of
    a row are distinct by construction), one draw per element: sorting a row
    by its keys is an independent random permutation (up to ties of the
    random bits, which have probability about ``n**2 / 2**(60 - log2 n)``).

    ``seed``:

    - an int, a 0-d integer array of the backend, or a sequence of them
      (each in ``[0, 2**63)``): the same keys on every call, and on every
      backend and device. The keys are a counter-based hash of the seed and
      each element's position, computed with array operations, so they also
      run inside ``torch.compile`` and ``jax.jit``; an array seed (a step
      counter, say) is traced, so that a compiled function draws a new sample
      for each value without being compiled again;
    - ``None``: fresh keys (:meth:`Backend.random_bits`: NumPy's generator
      for host arrays, the framework's own generator on a GPU or while
      compiling; under ``jax.jit`` a host draw is a constant of the compiled
      function, so pass an array seed there);
    - a ``numpy.random.Generator``: drawn from it on the host, advancing it.

    (Where the namespace's int64 is narrower, as JAX's without x64, a random
    permutation of ``0..n-1`` per row, drawn on the host.) A backend may
    provide ``random_keys(shape, seed=, device=)`` natively.
    """
    native = getattr(backend, "random_keys", None)
    if native is not None:
        return native(shape, seed=seed, device=device)
    parts = _seed_parts(backend, seed)
    n = shape[-1] if shape else 1
    xp = backend.xp
    if xp.iinfo(xp.asarray(0, dtype=xp.int64, device=device).dtype).bits < 64:  # JAX without x64: a permutation
        import numpy as np

        rng = seed if parts is None else np.random.default_rng([int(p) for p in parts])
        return xp.asarray(rng.permuted(np.broadcast_to(np.arange(n, dtype=np.int64), shape), axis=-1),
                          dtype=xp.int64, device=device)
    index_bits = max(1, (n - 1).bit_length())
    if index_bits > KEY_BITS - 20:
        raise ValueError(f"random_keys supports rows of at most 2**{KEY_BITS - 20} elements, got {n}")
    bits = KEY_BITS - index_bits
    if parts is None:
        high = backend.random_bits(shape, bits, rng=seed, device=device)
    elif all(isinstance(p, int) for p in parts) and backend.is_host_array(
            xp.empty((0,), dtype=xp.int64, device=device)):
        import numpy as np

        high = xp.asarray(_hashed_bits(np, shape, _seed_words(parts), bits, None), dtype=xp.int64, device=device)
    else:
        high = _hashed_bits(xp, shape, _seed_words(parts), bits, device)
    return (high << index_bits) | xp.arange(n, dtype=xp.int64, device=device)


_MASK31 = (1 << 31) - 1
_SEED_ERROR = ("seed must be a non-negative int, a 0-d integer array, a sequence of them, None or a "
               "numpy.random.Generator")


def _seed_parts(backend: Backend, seed: Any) -> list[Any] | None:
    """The ints and 0-d int64 arrays of a seed (host arrays read as ints); None for None or a Generator."""
    if seed is None or _is_generator(seed):
        return None
    items = list(seed) if isinstance(seed, (list, tuple)) else [seed]
    if not items:
        raise ValueError(f"{_SEED_ERROR}, got {seed!r}")
    parts: list[Any] = []
    for item in items:
        if isinstance(item, numbers.Integral) and not isinstance(item, bool):
            item = int(item)
        elif not _is_int_scalar_array(backend, item):
            raise ValueError(f"{_SEED_ERROR}, got {item!r}")
        if not isinstance(item, int):
            if not backend.is_host_array(item):
                parts.append(backend.xp.astype(item, backend.xp.int64))
                continue
            item = int(item)
        if not 0 <= item < 2**63:
            raise ValueError(f"{_SEED_ERROR} (each in [0, 2**63)), got {item!r}")
        parts.append(item)
    return parts


def _is_generator(seed: Any) -> bool:
    numpy = sys.modules.get("numpy")
    return numpy is not None and isinstance(seed, numpy.random.Generator)


def _is_int_scalar_array(backend: Backend, x: Any) -> bool:
    """Whether ``x`` is a 0-d integer array of ``backend``."""
    try:
        own = resolve(x, input_name="seed") is backend
    except TypeError:
        return False
    return own and x.ndim == 0 and backend.dtype_kind(x.dtype) == "i"


def _seed_words(parts: Sequence[Any]) -> tuple[Any, Any, Any]:
    """Three 31-bit hash words of the seed parts: the same numbers from Python ints and from int64 arrays."""
    state = 0x2545F491
    for part in parts:
        for limb in (part & _MASK31, (part >> 31) & _MASK31, part >> 62):
            state = _hash31(state ^ limb)
    first = _hash31(state ^ 0x68E31DA4)
    second = _hash31(first ^ 0x1B56C4E9)
    return first, second, _hash31(second ^ 0x3C6EF372)


def _hash31(h: Any) -> Any:
    """A 31-bit integer mixing function of ints (Python or int64 arrays) in ``[0, 2**31)``; every product stays
    below ``2**63``."""
    h = h ^ (h >> 16)
    h = (h * 0x7FEB352D) & _MASK31
    h = h ^ (h >> 15)
    h = (h * 0x846CA68B) & _MASK31
    return h ^ (h >> 16)


def _hashed_bits(xp: Any, shape: tuple[int, ...], words: tuple[int, int, int], bits: int, device: Any) -> Any:
    """``bits`` (at most 59) pseudo-random bits per element of ``shape``, a function of the seed words and the
    element's flat position."""
    size = math.prod(shape)
    position = xp.arange(size, dtype=xp.int64) if device is None else xp.arange(size, dtype=xp.int64, device=device)
    position = xp.reshape(position, shape)
    first = _hash31(_hash31((position & _MASK31) ^ words[0]) ^ (position >> 31) ^ words[1])
    second = _hash31(first ^ words[2])
    return ((first << 28) | (second >> 3)) >> (59 - bits)


def sample_balanced(
    labels: Any,
    *,
    batch_size_per_image: int,
    positive_fraction: float,
    seed: Any = None,
) -> tuple[Any, Any]:
    """Balanced random sampling of positives and negatives, per row (torchvision's sampler).

    Args:
        labels: int array ``(..., A)``: ``>= 1`` positive, ``0`` negative,
            negative values ignored (never sampled).
        batch_size_per_image: at most this many samples per row.
        positive_fraction: at most ``int(batch_size_per_image * positive_fraction)``
            positives per row; negatives fill the rest of the batch.
        seed: int (same sample every call), None (fresh) or a
            ``numpy.random.Generator``.

    Returns:
        Boolean masks ``(positive, negative)`` of ``labels``' shape. Each
        sample is uniformly random among the candidates of its row; when there
        are fewer candidates than places, every candidate is taken.
    """
    backend = resolve(labels, input_name="labels")
    if backend.dtype_kind(labels.dtype) != "i":
        raise TypeError(f"labels must have an integer dtype, got {labels.dtype}")
    if isinstance(batch_size_per_image, bool) or not isinstance(batch_size_per_image, int) or batch_size_per_image < 0:
        raise ValueError(f"batch_size_per_image must be a non-negative int, got {batch_size_per_image!r}")
    fraction = v.check_number(positive_fraction, "positive_fraction", maximum=1.0)
    xp = backend.xp
    if labels.ndim == 0:
        raise ValueError("labels must have at least one axis")
    keys = random_keys(backend, tuple(labels.shape), seed=seed, device=backend.device(labels))
    positive = labels >= 1
    negative = labels == 0
    cap = int(batch_size_per_image * fraction)
    n_pos = xp.sum(xp.astype(positive, xp.int64), axis=-1, keepdims=True)
    n_neg = xp.sum(xp.astype(negative, xp.int64), axis=-1, keepdims=True)
    num_pos = xp.where(n_pos < cap, n_pos, cap)
    room = batch_size_per_image - num_pos
    num_neg = xp.where(n_neg < room, n_neg, room)
    # one ranking: positives first, then negatives, then the ignored (keys below 2**KEY_BITS, offset by
    # that per group); a negative's rank minus the row's positive count is its rank among the negatives
    group = 2 - 2 * xp.astype(positive, xp.int64) - xp.astype(negative, xp.int64)
    ordered = keys + group * ((1 << KEY_BITS) if xp.iinfo(keys.dtype).bits == 64 else labels.shape[-1])
    return (positive & top_k_mask(backend, ordered, num_pos, distinct=True),
            negative & top_k_mask(backend, ordered, n_pos + num_neg, distinct=True))


@dataclass(frozen=True)
class BalancedSampler:
    """:func:`sample_balanced` with fixed sizes (a recipe part)."""

    batch_size_per_image: int
    positive_fraction: float

    def __call__(self, labels: Any, *, seed: Any = None) -> tuple[Any, Any]:
        return sample_balanced(
            labels,
            batch_size_per_image=self.batch_size_per_image,
            positive_fraction=self.positive_fraction,
            seed=seed,
        )


def hard_negative_mining(loss: Any, positive: Any, *, neg_pos_ratio: float = 3.0) -> Any:
    """Hard negatives per row: the highest-loss non-positives (Liu et al. 2016).

    Args:
        loss: ``(..., P)`` per-prediction loss used to rank (no gradient).
        positive: boolean ``(..., P)``; positives are never selected.
        neg_pos_ratio: per row, at most ``floor(neg_pos_ratio * positives)``
            negatives (fewer when the row has fewer non-positives; a row with
            no positive selects none). Ties are taken in index order.

    Returns:
        Boolean mask ``(..., P)`` of the selected negatives, disjoint from
        ``positive`` (torchvision's SSD can select positives again when they
        exceed a quarter of the priors; this never does).
    """
    backend = resolve(loss, positive, input_name="loss", target_name="positive")
    ratio = v.check_number(neg_pos_ratio, "neg_pos_ratio")
    v.check_floating(backend, loss, "loss")
    v.check_same_shape(loss, positive, input_name="loss", target_name="positive")
    if backend.dtype_kind(positive.dtype) != "b":
        raise TypeError(f"positive must be a boolean array, got {positive.dtype}")
    xp = backend.xp
    n_pos = xp.sum(xp.astype(positive, xp.int64), axis=-1, keepdims=True)
    if ratio.is_integer():
        k = n_pos * int(ratio)
    else:
        k = xp.astype(xp.floor(ratio * xp.astype(n_pos, loss.dtype)), xp.int64)
    key = xp.where(positive, -math.inf, backend.stop_gradient(loss))
    return top_k_mask(backend, key, k, descending=True) & ~positive
