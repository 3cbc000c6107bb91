"""Matching: assign each prediction (anchor, prior, proposal) to at most one ground truth.

:class:`Matcher` (Faster R-CNN, RetinaNet; torchvision's ``Matcher``) and
:class:`SSDMatcher` work on a ``(..., G, P)`` quality matrix with an optional
``(..., G)`` mask of real ground truth (padding is ``False``), or straight from
the boxes (:meth:`Matcher.match_boxes`), without a data-dependent shape.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from typing import ClassVar

from polyloss import _checks as v
from polyloss._namespace import check_same
from polyloss._namespace import resolve
from polyloss.backend._base import Backend
from polyloss.boxes.iou import box_iou
from polyloss.boxes.iou import pair_backend
from polyloss.boxes.iou import pairwise_rows
from polyloss.boxes.iou import pairwise_score

__all__ = ["Matcher", "SSDMatcher", "max_argmax_rows"]


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

        Up to 32 ground truths on host arrays the ``(..., G, P)`` IoU matrix
        is never stacked; the result is the same. A subclass that overrides
        ``__call__`` is called on the matrix.
        """
        g = gt_boxes.shape[-2] if gt_boxes.ndim >= 2 else 0
        p = predictions.shape[-2] if predictions.ndim >= 2 else 0
        if type(self).__call__ is not Matcher.__call__ or not 0 < g <= _SMALL_AXIS or p == 0:
            return self(box_iou(gt_boxes, predictions), valid)
        backend = pair_backend(gt_boxes, predictions)
        xp = backend.xp
        batch = math.prod(gt_boxes.shape[:-2]) if predictions.ndim == 2 else math.prod(predictions.shape[:-1])
        # a few ops on the whole (..., G, P) matrix where per-op overhead dominates, and where values cannot be
        # read (a GPU, tracing: the compiler fuses whole-matrix reductions better than a chain of rows)
        if batch * p <= _WHOLE_MAX or not backend.is_host_array(predictions):
            quality = box_iou(gt_boxes, predictions)
            return self._match(backend, _Quality.of(xp, quality, _valid_mask(backend, tuple(quality.shape),
                                                                             valid), whole=True))
        if (valid is not None and gt_boxes.ndim == 3 and backend.is_host_array(valid)
                and (predictions.ndim == 2 or tuple(predictions.shape[:1]) == tuple(gt_boxes.shape[:1]))):
            counts = _prefix_counts(backend, _valid_mask(backend, (*gt_boxes.shape[:-1], p), valid))
            if counts is not None:
                return self._match_by_count(backend, gt_boxes, predictions, counts)
        rows = pairwise_rows(xp, gt_boxes, predictions, pairwise_score(xp, "iou"))
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
        rows = pairwise_rows(xp, gt_boxes, predictions, pairwise_score(xp, "iou"), sizes)
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

#: Up to this many predictions in the batch (``N * P``) the matchers work on the whole ``(..., G, P)``
#: matrix even for few ground truths: about 20 array operations in all instead of about 20 per row.
_WHOLE_MAX = 1 << 15


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
    def of(cls, xp: Any, quality: Any, valid: Any, *, whole: bool = False) -> _Quality:
        g = quality.shape[-2]
        if whole or g > _SMALL_AXIS:
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
        best = index = hit = None
        claims: list[Any] = []  # per row, (..., 1): the row's best prediction (first on ties), -1 for padding
        finished: list[tuple[Any, ...]] = []  # accumulators of the images the rows no longer cover
        for i, row in enumerate(self.rows):
            if best is not None and row.shape[0] != best.shape[0]:  # rows of a batch prefix (pairwise_rows sizes)
                size = row.shape[0]
                finished.append(tuple(None if a is None else a[size:, ...] for a in (best, index, hit)))
                best, index, hit = (None if a is None else a[:size, ...] for a in (best, index, hit))
            if best is None:
                best = row
                index = xp.zeros(row.shape, dtype=xp.int8, device=_device_of(row))
            else:
                # i grows, so the latest strictly better row is the largest index
                index = xp.maximum(index, xp.astype(row > best, xp.int8) * i)
                best = xp.maximum(best, row)
            highest = xp.max(row, axis=-1, keepdims=True) if some_best or owner else None
            if some_best:
                assert highest is not None
                row_hit = row == xp.where(highest > 0, highest, math.nan)  # NaN equals nothing
                hit = row_hit if hit is None else hit | row_hit
            if owner:
                assert highest is not None
                best_prediction = xp.astype(xp.argmax(row, axis=-1, keepdims=True), xp.int64)
                claims.append(xp.where(highest > -math.inf, best_prediction, -1))  # padding claims nothing
        leading = None if best is None else (best.shape[0] + sum(int(f[0].shape[0]) for f in finished))
        if finished:
            parts = [(best, index, hit), *reversed(finished)]
            best, index, hit = (None if group[0] is None else xp.concat(list(group), axis=0)
                                for group in zip(*parts, strict=True))
        forced = None
        if owner and best is not None:  # (no rows: no ground truth, matched before any summary)
            device = _device_of(best)
            columns = []
            for claim in claims:
                if leading is not None and claim.ndim >= 2 and claim.shape[0] != leading:
                    missing = xp.full((leading - claim.shape[0], *claim.shape[1:]), -1, dtype=claim.dtype,
                                      device=device)
                    claim = xp.concat([claim, missing], axis=0)
                columns.append(claim)
            forced = _owners(xp, xp.concat(columns, axis=-1), best.shape[-1])
        return _Summary(best, xp.astype(index, xp.int64), hit, forced)

    def _summarize_whole(self, *, some_best: bool, owner: bool) -> _Summary:
        xp, whole = self.xp, self.whole
        g = whole.shape[-2]
        device = _device_of(whole)
        best = xp.max(whole, axis=-2)
        # the first row reaching the maximum: the largest countdown G - i among them, in int32 (PyTorch's
        # argmax and int64 reductions over a middle axis are 10-40x slower); G where none does (NaN), clipped
        countdown = xp.reshape(xp.arange(g, 0, -1, dtype=xp.int32, device=device), (g, 1))
        reached = xp.astype(whole == xp.expand_dims(best, axis=-2), xp.int32) * countdown
        index = xp.clip(g - xp.astype(xp.max(reached, axis=-2), xp.int64), max=g - 1)
        hit = forced = None
        highest: Any = xp.max(whole, axis=-1, keepdims=True) if some_best or owner else None
        if some_best:
            hit = xp.any((whole == highest) & (highest > 0), axis=-2)
        if owner:
            best_prediction = xp.astype(xp.argmax(whole, axis=-1, keepdims=True), xp.int64)  # (..., G, 1)
            claims = xp.where(highest > -math.inf, best_prediction, -1)[..., 0]  # padding claims nothing
            forced = _owners(xp, claims, whole.shape[-1])
        return _Summary(best, index, hit, forced)


def _owners(xp: Any, claims: Any, p: int) -> Any:
    """``(..., P)`` int64: the last ground truth (row) whose claim is each prediction, else -1.

    ``claims (..., G)``: each row's best prediction, -1 for none. The first
    position of each prediction among the reversed claims (:meth:`Backend.first_index`:
    one scatter-min on PyTorch, where the ``(..., G, P)`` comparison it replaces
    compiles to a loop some ten times slower than the eager ops), counted back from G.
    """
    backend = resolve(claims, input_name="claims")
    g = claims.shape[-1]
    reversed_rows = xp.reshape(xp.flip(claims, axis=-1), (-1, g))
    first = backend.first_index(xp.where(reversed_rows >= 0, reversed_rows, p), p)  # G where no row claims it
    return xp.reshape((g - 1) - first, (*claims.shape[:-1], p))


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


def max_argmax_rows(xp: Any, q: Any) -> tuple[Any, Any]:
    """``(max, argmax)`` of ``q (..., G, P)`` over axis -2, first index on ties (row by row up to 32 rows)."""
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
