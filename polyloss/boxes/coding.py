"""Box coding: regression targets of boxes relative to anchors, and back (Girshick et al. 2014)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from polyloss import _checks as v
from polyloss._namespace import check_same
from polyloss.backend._base import Backend
from polyloss.boxes.conversions import Coords
from polyloss.boxes.conversions import boxes_backend
from polyloss.boxes.conversions import corners

__all__ = [
    "DEFAULT_DECODE_CLIP",
    "BoxCoder",
    "BoxWeights",
    "decode_boxes",
    "decode_ltrb",
    "encode_boxes",
    "encode_ltrb",
    "encode_matched",
]

#: ``(wx, wy, ww, wh)``: the weights of the box coding
BoxWeights = tuple[float, float, float, float]

#: Largest ``dw``/``dh`` :func:`decode_boxes` exponentiates (Faster R-CNN's ``log(1000 / 16)``).
DEFAULT_DECODE_CLIP = math.log(1000.0 / 16)


def _weights(weights: Sequence[float]) -> tuple[float, float, float, float]:
    if isinstance(weights, (str, bytes)) or len(weights) != 4:
        raise ValueError(f"weights must be four numbers (wx, wy, ww, wh), got {weights!r}")
    wx, wy, ww, wh = (v.check_number(w, f"weights[{i}]", strict=True) for i, w in enumerate(weights))
    return wx, wy, ww, wh


def _with_anchors(boxes: Any, name: str, anchors: Any) -> tuple[Any, Any]:
    """The namespace of ``boxes`` and ``anchors`` (both ``(..., 4)``, one namespace), anchors in boxes' dtype."""
    backend = boxes_backend(boxes, name)
    check_same(backend, anchors, "anchors", name)
    boxes_backend(anchors, "anchors")
    xp = backend.xp
    return xp, anchors if anchors.dtype == boxes.dtype else xp.astype(anchors, boxes.dtype)


def _centre_size(c: Coords) -> tuple[Any, Any, Any, Any]:
    """Centre ``(x, y)`` and size ``(w, h)`` of xyxy coordinate arrays."""
    w = c[2] - c[0]
    h = c[3] - c[1]
    return c[0] + 0.5 * w, c[1] + 0.5 * h, w, h


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
    xp, anchors = _with_anchors(boxes, "boxes", anchors)
    ax, ay, aw, ah = _centre_size(corners(anchors))
    bx, by, bw, bh = _centre_size(corners(boxes))
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
    xp, anchors = _with_anchors(deltas, "deltas", anchors)
    ax, ay, aw, ah = _centre_size(corners(anchors))
    cx = deltas[..., 0] / wx * aw + ax
    cy = deltas[..., 1] / wy * ah + ay
    w = xp.exp(xp.clip(deltas[..., 2] / ww, max=clip)) * aw
    h = xp.exp(xp.clip(deltas[..., 3] / wh, max=clip)) * ah
    return xp.stack((cx - 0.5 * w, cy - 0.5 * h, cx + 0.5 * w, cy + 0.5 * h), axis=-1)


def _points_scale(xp: Any, points: Any, like: Any, scale: Any) -> tuple[Any, Any, Any, Any]:
    """``(px, py, sx, sy)``: the points' coordinates and the per-side scale (1 without ``scale``)."""
    if points.dtype != like.dtype:
        points = xp.astype(points, like.dtype)
    if scale is None:
        return points[..., 0], points[..., 1], 1.0, 1.0
    if scale.dtype != like.dtype:
        scale = xp.astype(scale, like.dtype)
    return points[..., 0], points[..., 1], scale[..., 0], scale[..., 1]


def encode_ltrb(boxes: Any, points: Any, *, scale: Any = None) -> Any:
    r"""Distances ``(l, t, r, b)`` from ``points`` to the sides of xyxy ``boxes`` (anchor-free heads: FCOS, YOLOv8).

    .. math::
        l = \frac{p_x - x_1}{s_x},\ t = \frac{p_y - y_1}{s_y},\
        r = \frac{x_2 - p_x}{s_x},\ b = \frac{y_2 - p_y}{s_y}

    ``points`` are ``(..., 2)`` ``(x, y)`` locations; ``scale`` an optional
    ``(..., 2)`` ``(s_x, s_y)`` divisor (FCOS in torchvision divides by the
    anchor's width and height, YOLOv8 by the stride, which is done by passing
    points and boxes in grid units instead). Negative distances mean the point
    lies outside the box. All broadcast; the result has the broadcast shape
    with a last axis of 4.
    """
    backend = boxes_backend(boxes, "boxes")
    check_same(backend, points, "points", "boxes")
    xp = backend.xp
    x1, y1, x2, y2 = corners(boxes)
    px, py, sx, sy = _points_scale(xp, points, boxes, scale)
    return xp.stack(((px - x1) / sx, (py - y1) / sy, (x2 - px) / sx, (y2 - py) / sy), axis=-1)


def decode_ltrb(distances: Any, points: Any, *, scale: Any = None) -> Any:
    r"""Inverse of :func:`encode_ltrb`: xyxy boxes ``(p_x - l s_x, p_y - t s_y, p_x + r s_x, p_y + b s_y)``.

    Linear in ``distances``: its vector-Jacobian product maps a cotangent
    ``g`` of the boxes to ``(-g_1 s_x, -g_2 s_y, g_3 s_x, g_4 s_y)``.
    """
    backend = boxes_backend(distances, "distances")
    check_same(backend, points, "points", "distances")
    xp = backend.xp
    left, top, right, bottom = corners(distances)
    px, py, sx, sy = _points_scale(xp, points, distances, scale)
    return xp.stack((px - left * sx, py - top * sy, px + right * sx, py + bottom * sy), axis=-1)


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
    x1, y1, x2, y2 = corners(gt_boxes)
    width = xp.where(valid, x2 - x1, 1.0)  # padding may hold anything
    height = xp.where(valid, y2 - y1, 1.0)
    gt_fields = xp.stack((x1 + 0.5 * width, y1 + 0.5 * height, _log_size(xp, width), _log_size(xp, height)), axis=-1)
    ax, ay, aw, ah = _centre_size(corners(anchors))
    offset = xp.stack((ax, ay, xp.log(aw), xp.log(ah)), axis=-1)
    scale = xp.stack((wx / aw, wy / ah, ww + 0.0 * aw, wh + 0.0 * ah), axis=-1)
    targets = (backend.take_along_axis(gt_fields, index4, axis=1) - offset) * scale
    return xp.where(positive4, targets, 0.0)

