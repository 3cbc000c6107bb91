r"""FCOS's center sampling with per-level size ranges (Tian et al., *FCOS: Fully Convolutional One-Stage
Object Detection*, ICCV 2019), batched and with static shapes.

An anchor (a location of a feature level, given as a box whose centre is the
location and whose width is the level's scale) is a *candidate* of a
ground-truth box ``g`` when all three hold:

- **center sampling**: its centre ``(x, y)`` is within ``radius`` anchor
  widths of the box centre, :math:`\max(|x - g_{cx}|, |y - g_{cy}|) < r\,s`
  (``s`` the anchor's width ``x2 - x1``, ``r`` the radius, 1.5 by default);
- **inside**: :math:`\min(l, t, r, b) > 0` with :math:`l = x - g_{x1}`,
  :math:`t = y - g_{y1}`, :math:`r = g_{x2} - x`, :math:`b = g_{y2} - y`;
- **size range**: :math:`lo < \max(l, t, r, b) < hi`, the range of the
  anchor's level.

Each anchor is assigned the candidate of the **smallest area**; on equal areas
the first ground truth (the lowest index). Anchors without a candidate get -1.

Size ranges: by default torchvision's rule (``FCOS.compute_loss``), per anchor
:math:`(4 s, 8 s)`, except that the first level starts at 0 and the last one
ends at infinity; with square anchors of side equal to the stride (8, 16, 32,
64, 128) these are the paper's ranges (0, 64), (64, 128), (128, 256),
(256, 512), (512, inf). ``size_ranges`` gives explicit ``(lo, hi)`` bounds per
level instead.

The numbers equal torchvision's ``FCOS.compute_loss`` matching, with one
difference: torchvision scores a candidate with ``1e8 - area`` (in the boxes'
dtype, ``float32`` usually) and takes the maximum, so two areas that round to
the same score there (in float32, areas within about 8 square pixels of each
other) tie and go to the first box, and a box of area ``>= 1e8`` never matches;
here areas are compared exactly and every area can match.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from polyloss import _checks as v
from polyloss._namespace import check_same
from polyloss._namespace import resolve
from polyloss.boxes.conversions import boxes_backend
from polyloss.boxes.conversions import corners

__all__ = ["CenterSampler", "center_sampling", "level_size_bounds"]

#: ``(lo, hi)`` per feature level
SizeRanges = Sequence[tuple[float, float]]


def _level_counts(num_anchors_per_level: Sequence[int], total: int) -> tuple[int, ...]:
    """``num_anchors_per_level`` as a tuple of ints >= 0 adding up to ``total``, else ``ValueError`` naming it."""
    try:
        counts = tuple(operator.index(c) for c in num_anchors_per_level)
    except TypeError:
        raise TypeError(f"num_anchors_per_level must be a sequence of ints, got {num_anchors_per_level!r}") from None
    if not counts or any(c < 0 for c in counts) or sum(counts) != total:
        raise ValueError(f"num_anchors_per_level must be ints >= 0 adding up to the number of anchors {total}, "
                         f"got {list(counts)}")
    return counts


def _size_ranges(size_ranges: SizeRanges, levels: int) -> tuple[tuple[float, float], ...]:
    if isinstance(size_ranges, (str, bytes)) or len(size_ranges) != levels:
        raise ValueError(f"size_ranges must hold one (lo, hi) pair per level ({levels}), got {size_ranges!r}")
    out = []
    for i, pair in enumerate(size_ranges):
        if isinstance(pair, (str, bytes)) or len(pair) != 2:
            raise ValueError(f"size_ranges[{i}] must be a pair (lo, hi), got {pair!r}")
        lo = v.check_number(pair[0], f"size_ranges[{i}][0]")
        hi = v.check_number(pair[1], f"size_ranges[{i}][1]")
        if hi <= lo:
            raise ValueError(f"size_ranges[{i}] = {pair!r} must have lo < hi")
        out.append((lo, hi))
    return tuple(out)


def level_size_bounds(sizes: Any, num_anchors_per_level: Sequence[int],
                      size_ranges: SizeRanges | None = None) -> tuple[Any, Any]:
    """Per-anchor ``(lower, upper)`` bounds of ``max(l, t, r, b)``, each of ``sizes``' shape ``(..., A)``.

    ``size_ranges=None``: torchvision's rule, ``(4 s, 8 s)`` with ``s`` the
    anchor width ``sizes``, the first level's anchors from 0 and the last
    level's to infinity. Otherwise one ``(lo, hi)`` per level.
    """
    backend = resolve(sizes, input_name="sizes")
    xp = backend.xp
    counts = _level_counts(num_anchors_per_level, int(sizes.shape[-1]))
    device = backend.device(sizes)
    level = xp.concat([xp.full((c,), i, dtype=xp.int64, device=device) for i, c in enumerate(counts)])
    if size_ranges is None:
        lower = xp.where(level == 0, 0.0, 4.0 * sizes)
        upper = xp.where(level == len(counts) - 1, math.inf, 8.0 * sizes)
        return lower, upper
    ranges = _size_ranges(size_ranges, len(counts))
    lo = xp.asarray([r[0] for r in ranges], dtype=sizes.dtype, device=device)
    hi = xp.asarray([r[1] for r in ranges], dtype=sizes.dtype, device=device)
    shape = tuple(sizes.shape)
    return xp.broadcast_to(xp.take(lo, level), shape), xp.broadcast_to(xp.take(hi, level), shape)


def center_sampling(anchors: Any, gt_boxes: Any, num_anchors_per_level: Sequence[int], *, valid: Any = None,
                    radius: float = 1.5, size_ranges: SizeRanges | None = None) -> Any:
    r"""FCOS's assignment of anchors to ground truth: center sampling, per-level size ranges, smallest area.

    See the module docstring (:mod:`polyloss.boxes.center_sampling`) for the
    three conditions and the tie rule.

    Args:
        anchors: xyxy ``(A, 4)`` (or ``(..., A, 4)`` per image); the centre is
            the location, the width ``x2 - x1`` its scale ``s``.
        gt_boxes: xyxy ``(..., G, 4)``.
        num_anchors_per_level: ints adding up to ``A``, the anchors of each
            feature level in order (finest first).
        valid: optional ``(..., G)`` bool, False for padding (never assigned).
        radius: the center-sampling radius ``r`` in anchor widths (1.5, torchvision's
            ``center_sampling_radius``); ``inf`` disables center sampling.
        size_ranges: ``None`` (torchvision's rule, see :func:`level_size_bounds`)
            or one ``(lo, hi)`` per level.

    Returns:
        int64 ``(..., A)``: the index of the assigned ground truth, or -1.

    Static shapes, no boolean-mask indexing: runs on array-api-strict with its
    strictest flags and inside ``torch.compile(fullgraph=True)``. The work is
    ``O(N G A)`` element-wise; the ground truth is reduced row by row.
    """
    backend = boxes_backend(gt_boxes, "gt_boxes")
    boxes_backend(anchors, "anchors")
    check_same(backend, anchors, "anchors", "gt_boxes")
    v.check_floating(backend, gt_boxes, "gt_boxes")
    radius = v.check_number(radius, "radius")
    xp = backend.xp
    if gt_boxes.ndim < 2:
        raise ValueError(f"gt_boxes must have shape (..., G, 4), got {tuple(gt_boxes.shape)}")
    if anchors.dtype != gt_boxes.dtype:
        anchors = xp.astype(anchors, gt_boxes.dtype)
    ax1, ay1, ax2, ay2 = corners(anchors)  # (..., A)
    cx, cy, size = (ax1 + ax2) / 2, (ay1 + ay2) / 2, ax2 - ax1
    lower, upper = level_size_bounds(size, num_anchors_per_level, size_ranges)
    cx, cy, size, lower, upper = (xp.expand_dims(a, axis=-2) for a in (cx, cy, size, lower, upper))  # (..., 1, A)
    gx1, gy1, gx2, gy2 = (xp.expand_dims(c, axis=-1) for c in corners(gt_boxes))  # (..., G, 1)
    near = xp.maximum(xp.abs(cx - (gx1 + gx2) / 2), xp.abs(cy - (gy1 + gy2) / 2)) < radius * size
    left, top, right, bottom = cx - gx1, cy - gy1, gx2 - cx, gy2 - cy  # (..., G, A)
    inside = xp.minimum(xp.minimum(left, top), xp.minimum(right, bottom)) > 0
    reach = xp.maximum(xp.maximum(left, top), xp.maximum(right, bottom))
    candidate = near & inside & (reach > lower) & (reach < upper)
    if valid is not None:
        check_same(backend, valid, "valid", "gt_boxes")
        if tuple(valid.shape) != tuple(gt_boxes.shape[:-1]):
            raise ValueError(f"valid shape {tuple(valid.shape)} must be gt_boxes' shape without its last axis "
                             f"{tuple(gt_boxes.shape[:-1])}")
        candidate = candidate & xp.expand_dims(valid, axis=-1)
    area = (gx2 - gx1) * (gy2 - gy1)
    from polyloss.boxes.matching import max_argmax_rows  # here: import polyloss does not load the matchers

    best, index = max_argmax_rows(xp, xp.where(candidate, -area, -math.inf))  # smallest area, first on ties
    return xp.where(best > -math.inf, xp.astype(index, xp.int64), -1)


@dataclass(frozen=True)
class CenterSampler:
    """:func:`center_sampling` with fixed options: the ``assigner`` part of the ``"fcos"`` recipe.

    Called as ``sampler(anchors, gt_boxes, num_anchors_per_level, valid=None)``.
    """

    radius: float = 1.5
    size_ranges: SizeRanges | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "radius", v.check_number(self.radius, "center_sampling_radius"))
        if self.size_ranges is not None:
            object.__setattr__(self, "size_ranges", _size_ranges(self.size_ranges, len(self.size_ranges)))

    def __call__(self, anchors: Any, gt_boxes: Any, num_anchors_per_level: Sequence[int], valid: Any = None) -> Any:
        return center_sampling(anchors, gt_boxes, num_anchors_per_level, valid=valid, radius=self.radius,
                               size_ranges=self.size_ranges)
