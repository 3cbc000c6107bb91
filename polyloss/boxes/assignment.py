r"""Task-aligned assignment (TAL) of anchor points to ground truth (Feng et al., *TOOD*, ICCV 2021).

The assigner of YOLOv8/YOLO11, PP-YOLOE and TOOD, batched, with static
shapes: every array is ``(N, G, A)`` or smaller whatever the data, nothing is
indexed by a boolean mask, nothing is read back to Python, so it runs on
array-api-strict's strictest flags, under ``torch.compile(fullgraph=True)``
and under ``jax.jit``. The numbers are those of ultralytics'
``TaskAlignedAssigner`` (``ultralytics/utils/tal.py``, 8.4.x), see
:func:`task_aligned_assign`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from polyloss import _checks as v
from polyloss._namespace import check_same
from polyloss._namespace import resolve
from polyloss._switches import fast_paths_enabled
from polyloss.backend._base import Backend
from polyloss.boxes.conversions import corners
from polyloss.boxes.iou import iou_terms
from polyloss.boxes.iou import pairwise_map
from polyloss.boxes.sampling import top_k_mask

__all__ = ["TaskAlignedAssigner", "TaskAlignedAssignment", "second_level_stride", "task_aligned_assign"]

#: CIoU's epsilon in the alignment metric (ultralytics' ``bbox_iou``).
CIOU_EPS = 1e-7


@dataclass(frozen=True)
class TaskAlignedAssignment:
    """The result of :func:`task_aligned_assign` for ``N`` images, ``A`` anchors, ``C`` classes.

    Attributes:
        positive: ``(N, A)`` bool, the foreground anchors.
        gt_index: ``(N, A)`` int64, the ground truth each anchor is assigned to
            (0 for background anchors, as ultralytics' ``target_gt_idx``).
        labels: ``(N, A)`` int64 class of that ground truth (its label clipped
            at 0, so a background anchor of an image without ground truth holds 0).
        boxes: ``(N, A, 4)`` that ground truth's box (for a background anchor:
            ground truth 0's, whatever it is; the box terms mask it out).
        scores: ``(N, A, C)`` soft classification targets: the one-hot class
            of the assigned ground truth times :attr:`alignment` (0 for background).
        alignment: ``(N, A)`` the normalised alignment of each foreground
            anchor, 0 for background (``scores`` summed over the classes).
        metric: ``(N, G, A)`` the alignment metric ``s^alpha * IoU^beta`` of
            every candidate pair (0 for the others).
        overlaps: ``(N, G, A)`` the CIoU (clipped at 0) of every candidate pair (0 for the others).
        assigned: ``(N, G, A)`` bool, the final positive pairs (one ground truth per anchor at most).
    """

    positive: Any
    gt_index: Any
    labels: Any
    boxes: Any
    scores: Any
    alignment: Any
    metric: Any
    overlaps: Any
    assigned: Any


def second_level_stride(strides: Any) -> Any:
    """The stride of the second feature level of anchors ordered level by level, a 0-d array.

    ``strides (A,)`` per anchor: the stride of the first anchor whose stride
    differs from the first anchor's (the first anchor's stride when all are
    equal, a single level). Static shapes: no value is read.
    """
    backend = resolve(strides, input_name="strides")
    xp = backend.xp
    flat = xp.reshape(strides, (-1,))
    other = flat != flat[0]
    first_other = xp.argmax(xp.astype(other, xp.int8))
    second = xp.take(flat, xp.reshape(first_other, (1,)))[0]
    return xp.where(xp.any(other), second, flat[0])


def _candidates(backend: Backend, points: Any, gt_boxes: Any, valid: Any, min_side: Any, eps: float) -> Any:
    """``(N, G, A)`` bool: anchor points strictly inside (by more than ``eps``) each real ground-truth box,
    sides below ``min_side`` raised to it about the box's centre (the arithmetic of ultralytics'
    ``select_candidates_in_gts``: centre and size, then corners again).

    On eager host arrays each side is tested once per distinct coordinate (anchor points on grids share a
    few) and the result spread to the anchors: the same comparisons, fewer of them.
    """
    xp = backend.xp
    x1, y1, x2, y2 = corners(gt_boxes)
    cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
    w, h = x2 - x1, y2 - y1
    if min_side is not None:
        w = xp.where(valid & (w < min_side), min_side, w)
        h = xp.where(valid & (h < min_side), min_side, h)
    half_w, half_h = w / 2, h / 2
    left, top, right, bottom = (xp.expand_dims(c, axis=-1) for c in (cx - half_w, cy - half_h, cx + half_w,
                                                                      cy + half_h))
    px, py = points[..., 0], points[..., 1]
    if _data_dependent_shapes(backend, points):
        return _between(backend, px, left, right, eps, valid) & _between(backend, py, top, bottom, eps)
    inside = ((px - left) > eps) & ((py - top) > eps)
    inside = inside & ((right - px) > eps) & ((bottom - py) > eps)
    return inside & xp.expand_dims(valid, axis=-1)


def _data_dependent_shapes(backend: Backend, like: Any) -> bool:
    """Whether data-dependent shapes are cheap for ``like``'s arrays: where :meth:`Backend.nonzero_positions`
    gives positions (eager host arrays of NumPy or PyTorch, fast paths on), not where it declines."""
    xp = backend.xp
    return backend.nonzero_positions(xp.ones((1,), dtype=xp.bool, device=backend.device(like))) is not None


def _between(backend: Backend, coords: Any, low: Any, high: Any, eps: float, valid: Any = None) -> Any:
    """``(coords - low > eps) & (high - coords > eps)`` for ``coords (A,)`` and ``low, high (N, G, 1)``
    (``& valid (N, G)`` where given), computed on the distinct coordinates and gathered back to
    ``(N, G, A)`` (host arrays: a data-dependent number of distinct values)."""
    xp = backend.xp
    values, inverse = xp.unique_inverse(coords)
    ok = ((values - low) > eps) & ((high - values) > eps)  # (N, G, U)
    if valid is not None:
        ok = ok & xp.expand_dims(valid, axis=-1)
    index = xp.broadcast_to(xp.reshape(inverse, (1, 1, -1)), (*ok.shape[:2], int(coords.shape[0])))
    return backend.take_along_axis(ok, index, axis=-1)


def _ciou(xp: Any, gt_boxes: Any, pred_boxes: Any) -> Any:
    """``(N, G, A)`` CIoU of every ground truth (first box) with every prediction, the loss convention
    (``eps`` = 1e-7 in the denominators) of :func:`polyloss.boxes.iou.iou_terms` (the one IoU core)."""

    def pair(a: Any, b: Any, area_b: Any = None) -> Any:  # area_b: the rows' cached areas, unused here
        return iou_terms(xp, "ciou", a, b, eps=CIOU_EPS, paired=True).score

    return pairwise_map(xp, gt_boxes, pred_boxes, pair)


def _metric(xp: Any, scores: Any, overlaps: Any, alpha: float, beta: float) -> Any:
    """The alignment metric ``scores^alpha * overlaps^beta``, +inf where it is NaN (it then ranks highest)."""
    metric = xp.pow(scores, alpha) * xp.pow(overlaps, beta)
    return xp.where(xp.isnan(metric), xp.inf, metric)


def _select_top_k(backend: Backend, metric: Any, k: int) -> Any:
    """``(N, G, A)`` bool: per row the ``k`` largest metrics (``metric >= 0``, no NaN), ties to the lower index.

    :func:`polyloss.boxes.top_k_mask`'s choice, cheaper for this metric: a
    tie at a threshold of 0 (a row with fewer than ``k`` positive metrics)
    takes the first zeros, which all lie in the first ``k`` columns; a tie at
    a positive threshold needs a rank only where it holds more entries than
    there is room for (on eager host arrays looked up first, else always ranked).
    """
    xp = backend.xp
    n, g, a = (int(s) for s in metric.shape)
    device = backend.device(metric)
    if n * g == 0:
        return top_k_mask(backend, metric, k, descending=True)
    position = xp.full((n, g, 1), k, dtype=xp.int64, device=device)
    threshold = backend.kth_value(metric, position, descending=True)
    before = metric > threshold
    tie = (metric == threshold) & (threshold > 0)
    room = k - xp.sum(xp.astype(before, metric.dtype), axis=-1, keepdims=True)  # exact: counts <= A
    crowded = True
    if fast_paths_enabled() and backend.is_host_array(metric):
        crowded = bool(xp.any(xp.sum(xp.astype(tie, metric.dtype), axis=-1, keepdims=True) > room))
    if crowded:
        tie = tie & (xp.astype(xp.cumulative_sum(xp.astype(tie, xp.int32), axis=-1), metric.dtype) <= room)
    head = (metric[..., :k] == 0.0) & (threshold == 0.0)
    head = head & (xp.astype(xp.cumulative_sum(xp.astype(head, xp.int32), axis=-1), metric.dtype) <= room)
    if a > k:
        head = xp.concat([head, xp.zeros((n, g, a - k), dtype=xp.bool, device=device)], axis=-1)
    return before | tie | head


def _best_overlap(backend: Backend, overlaps: Any, where: Any) -> Any:
    """``(N, A)`` int64: per anchor the ground truth of highest overlap (the first of equals), needed ``where``.

    On eager host arrays only the anchors ``where`` holds are looked at
    (others get 0); elsewhere an argmax over every ground truth.
    """
    xp = backend.xp
    n, g, a = (int(s) for s in overlaps.shape)
    positions = backend.nonzero_positions(where)
    if positions is None:
        return xp.argmax(overlaps, axis=1)
    device = backend.device(overlaps)
    offsets = xp.reshape(xp.arange(g, dtype=positions.dtype, device=device) * a, (1, g))
    flat = xp.expand_dims((positions // a) * (g * a) + positions % a, axis=1) + offsets  # (K, G) into N * G * A
    candidates = xp.reshape(xp.take(xp.reshape(overlaps, (-1,)), xp.reshape(flat, (-1,))), (-1, g))
    best = xp.argmax(candidates, axis=1)
    return xp.reshape(backend.scatter_rows(best, positions, n * a), (n, a))


def _candidate_metric(backend: Backend, positions: Any, scores: Any, pred_boxes: Any, gt_boxes: Any, label: Any,
                      alpha: float, beta: float, from_logits: bool) -> tuple[Any, Any]:
    """``(overlaps, metric)`` of the candidate pairs at the flat ``positions`` into ``(N, G, A)``, one value per
    position (the same element-wise operations as the dense path, so the same numbers)."""
    xp = backend.xp
    n, g, a, c = int(gt_boxes.shape[0]), int(gt_boxes.shape[1]), int(pred_boxes.shape[1]), int(scores.shape[2])
    gt_row = positions // a  # into (N * G)
    anchor_row = (positions // (g * a)) * a + positions % a  # into (N * A)
    gt = xp.take(xp.reshape(gt_boxes, (n * g, 4)), gt_row, axis=0)
    pred = xp.take(xp.reshape(pred_boxes, (n * a, 4)), anchor_row, axis=0)
    class_scores = xp.take(xp.reshape(scores, (n * a * c,)), anchor_row * c + xp.take(xp.reshape(label, (-1,)), gt_row))
    if from_logits:
        class_scores = backend.sigmoid(class_scores)
    overlaps = xp.clip(iou_terms(xp, "ciou", corners(gt), corners(pred), eps=CIOU_EPS, paired=True).score, min=0.0)
    return overlaps, _metric(xp, class_scores, overlaps, alpha, beta)


def _order_in_rows(backend: Backend, rows: Any, keys: Any) -> tuple[Any, Any]:
    """``(order, start)``: the permutation that sorts entries by ``rows`` (ascending), then ``keys``
    (descending, no NaN), then their own order; ``start[i]`` the sorted position of the first entry of
    sorted entry ``i``'s row."""
    xp = backend.xp
    order = xp.argsort(-keys, stable=True)
    order = xp.take(order, xp.argsort(xp.take(rows, order), stable=True))
    sorted_rows = xp.take(rows, order)
    return order, xp.searchsorted(sorted_rows, sorted_rows, side="left")


def _row_max(backend: Backend, rows: Any, values: Any) -> Any:
    """Each entry's row maximum of ``values`` (no NaN), in the entries' order."""
    xp = backend.xp
    order, start = _order_in_rows(backend, rows, values)
    return xp.take(xp.take(xp.take(values, order), start), xp.argsort(order))


def _segment_starts(backend: Backend, rows: Any) -> tuple[Any, Any]:
    """For non-decreasing ``rows``: ``(starts, segment)``, the index of each run's first entry and each
    entry's run number."""
    xp = backend.xp
    device = backend.device(rows)
    new_run = xp.concat([xp.ones((1,), dtype=xp.bool, device=device), rows[1:] != rows[:-1]])
    starts = backend.nonzero_positions(new_run)
    return starts, xp.cumulative_sum(xp.astype(new_run, xp.int64)) - 1


def _run_counts(backend: Backend, flags: Any, starts: Any) -> tuple[Any, Any]:
    """``(totals, prefix)``: per run (``starts`` of :func:`_segment_starts`) the number of True ``flags``,
    and ``prefix[i]`` the number of True flags before entry ``i`` (``K + 1`` entries)."""
    xp = backend.xp
    zero = xp.zeros((1,), dtype=xp.int64, device=backend.device(flags))
    before = xp.concat([zero, xp.cumulative_sum(xp.astype(flags, xp.int64))])
    ends = xp.concat([starts[1:], xp.reshape(xp.asarray(int(flags.shape[0]), dtype=starts.dtype,
                                                         device=backend.device(flags)), (1,))])
    return xp.take(before, ends) - xp.take(before, starts), before


def _sparse_top_k(backend: Backend, positions: Any, metric_c: Any, metric: Any, inside: Any, k: int) -> Any:
    """:func:`_select_top_k` ``& inside`` from the candidate pairs at ``positions`` (increasing; metrics
    ``metric_c``, no NaN): the flat positions (increasing) of the chosen pairs.

    The rows' ``k``-th largest metric comes from the dense metric (a selection); the rest runs on the
    candidates: those above it, those equal to a positive one in index order while the row has room, and a
    row's zeros of its first ``k`` columns where fewer than ``k`` metrics are positive.
    """
    xp = backend.xp
    n, g, a = (int(s) for s in metric.shape)
    device = backend.device(metric)
    position = xp.full((n * g, 1), k, dtype=xp.int64, device=device)
    threshold = xp.reshape(backend.kth_value(xp.reshape(metric, (n * g, a)), position, descending=True), (-1,))
    rows = positions // a
    starts, segment = _segment_starts(backend, rows)
    level = xp.take(threshold, rows)
    above = metric_c > level
    above_total, _ = _run_counts(backend, above, starts)
    tie = (metric_c == level) & (level > 0.0)
    if bool(xp.any(tie)):
        _, tie_before = _run_counts(backend, tie, starts)
        tie_rank = tie_before[1:] - xp.take(xp.take(tie_before, starts), segment)
        above = above | (tie & (tie_rank <= k - xp.take(above_total, segment)))
    chosen = xp.take(positions, backend.nonzero_positions(above))
    if not bool(xp.any((metric_c == 0.0) & (positions % a < k))):
        return chosen
    # the zeros of the first k columns, in index order, fill what the positive metrics leave of k
    row_room = k - backend.scatter_rows(above_total, xp.take(rows, starts), n * g)  # rows without candidates: k
    first = (xp.reshape(metric, (n * g, a))[:, :k] == 0.0) & xp.expand_dims(threshold == 0.0, axis=-1)
    fill = xp.cumulative_sum(xp.astype(first, xp.int64), axis=-1) <= xp.expand_dims(row_room, axis=-1)
    head = backend.nonzero_positions(first & fill & xp.reshape(inside, (n * g, a))[:, :k])
    return xp.sort(xp.concat([chosen, (head // k) * a + head % k]))


def _sparse_assign(backend: Backend, positions: Any, overlaps_c: Any, metric_c: Any, overlaps: Any, metric: Any,
                   inside: Any, gt_boxes: Any, gt_labels: Any, c: int, k: int, eps: float
                   ) -> TaskAlignedAssignment | None:
    """Steps 3 to 5 of :func:`task_aligned_assign` on the candidate pairs alone (eager host arrays): the
    same choices and numbers as the dense steps, with sorts of the candidates in place of passes over
    ``(N, G, A)``. None where a CIoU is NaN (the dense steps' NaN rules decide)."""
    xp = backend.xp
    n, g, a = (int(s) for s in metric.shape)
    device = backend.device(metric)
    if bool(xp.any(xp.isnan(overlaps_c))):
        return None
    chosen = _sparse_top_k(backend, positions, metric_c, metric, inside, k)
    # 4. per chosen anchor (of N * A): the ground truths that chose it, the first (lowest) one, how many
    ids = (chosen // (g * a)) * a + chosen % a
    by_anchor = xp.argsort(ids, stable=True)
    ids, gts = xp.take(ids, by_anchor), xp.take((chosen // a) % g, by_anchor)
    first = xp.searchsorted(ids, ids, side="left")
    head = backend.nonzero_positions(first == xp.arange(int(ids.shape[0]), dtype=first.dtype, device=device))
    anchor_ids = xp.take(ids, head)  # increasing: the foreground anchors
    taken = xp.take(xp.searchsorted(ids, ids, side="right") - first, head)
    gt_index = xp.take(gts, head)
    shared = backend.nonzero_positions(taken > 1)
    if int(shared.shape[0]):  # to the ground truth of highest CIoU among all of the image's (the first of equals)
        at = xp.take(anchor_ids, shared)
        flat = xp.expand_dims((at // a) * (g * a) + at % a, axis=1) + xp.reshape(
            xp.arange(g, dtype=at.dtype, device=device) * a, (1, g))
        best = xp.argmax(xp.reshape(xp.take(xp.reshape(overlaps, (-1,)), xp.reshape(flat, (-1,))), (-1, g)), axis=1)
        gt_index = xp.where(taken > 1, backend.scatter_rows(best, shared, int(anchor_ids.shape[0])), gt_index)
    # 5. soft scores: each ground truth's metrics scaled so that its best reaches its best CIoU
    pair = (anchor_ids // a) * (g * a) + gt_index * a + anchor_ids % a
    own_metric = xp.take(xp.reshape(metric, (-1,)), pair)
    own_overlap = xp.take(xp.reshape(overlaps, (-1,)), pair)
    group = (anchor_ids // a) * g + gt_index
    norm = _row_max(backend, group, own_metric) + eps
    alignment_p = own_metric * _row_max(backend, group, own_overlap) / norm

    def dense(values: Any, at: Any, shape: tuple[int, ...]) -> Any:
        return xp.reshape(backend.scatter_rows(values, at, math.prod(shape)), shape)

    yes = xp.ones(tuple(anchor_ids.shape), dtype=xp.bool, device=device)
    gt_index_dense = dense(gt_index, anchor_ids, (n, a))
    labels = xp.clip(backend.take_along_axis(gt_labels, gt_index_dense, axis=1), min=0)
    labels_p = xp.take(xp.reshape(labels, (-1,)), anchor_ids)
    return TaskAlignedAssignment(
        positive=dense(yes, anchor_ids, (n, a)), gt_index=gt_index_dense, labels=labels,
        boxes=_take_gt(backend, gt_boxes, gt_index_dense),
        scores=dense(alignment_p, anchor_ids * c + labels_p, (n, a, c)),
        alignment=dense(alignment_p, anchor_ids, (n, a)), metric=metric, overlaps=overlaps,
        assigned=dense(yes, xp.sort(pair), (n, g, a)))


def _take_gt(backend: Backend, x: Any, index: Any) -> Any:
    """``x (N, G, ...)`` at ``index (N, A)`` along the ground-truth axis: ``(N, A, ...)``."""
    xp = backend.xp
    tail = tuple(int(s) for s in x.shape[2:])
    ix = xp.reshape(index, (*index.shape, *(1,) * len(tail)))
    if tail:
        ix = xp.broadcast_to(ix, (*index.shape, *tail))
    return backend.take_along_axis(x, ix, axis=1)


def task_aligned_assign(
    scores: Any,
    pred_boxes: Any,
    anchor_points: Any,
    gt_boxes: Any,
    gt_labels: Any,
    gt_valid: Any = None,
    *,
    top_k: int = 13,
    alpha: float = 1.0,
    beta: float = 6.0,
    min_side: Any = None,
    eps: float = 1e-9,
    from_logits: bool = False,
) -> TaskAlignedAssignment:
    r"""Task-aligned assignment of ``A`` anchor points to ``G`` ground-truth boxes per image.

    Per image, for ground truth ``g`` of class ``c_g`` and anchor ``a``:

    1. *candidates*: ``a`` is a candidate of ``g`` when its point lies inside
       ``g``'s box by more than ``eps`` on every side, after box sides below
       ``min_side`` are raised to ``min_side`` about the box's centre (YOLOv8
       passes its second level's stride, :func:`second_level_stride`);
    2. *alignment*: :math:`t_{ga} = s_{a c_g}^{\alpha}\, u_{ga}^{\beta}` with
       :math:`s` the predicted class probabilities and :math:`u_{ga}` the
       CIoU of ``g``'s box with ``a``'s predicted box, clipped at 0; both 0
       for non-candidates;
    3. *top-k*: ``g`` takes the ``top_k`` anchors of highest :math:`t_{g\cdot}`
       (ties: the lower anchor index; a NaN metric ranks highest) that are
       also its candidates;
    4. *one ground truth per anchor*: an anchor taken by more than one ground
       truth goes to the ground truth of highest CIoU :math:`u_{\cdot a}` among
       all of the image's (ties: the first), even one that did not take it;
    5. *targets*: a foreground anchor gets its ground truth's box and class and
       the soft score :math:`t_{ga} \max_{a'} u_{ga'} / (\max_{a'} t_{ga'} + \epsilon)`
       (maxima over ``g``'s final positives), 0 elsewhere.

    The numbers are ultralytics' ``TaskAlignedAssigner`` (8.4.x, ``topk2``
    unset). Where ``torch.topk`` leaves the order of equal metrics
    unspecified, ties here go to the lower index; they only arise among
    metrics of exactly 0 (a CIoU clipped at 0), whose anchors get a zero
    score either way. CIoU is :func:`polyloss.boxes.iou.iou_terms` (the loss
    convention, ``eps = 1e-7`` added to the union as torchvision; ultralytics
    also adds it to the heights: relative differences below ``1e-7 / size``).

    Args:
        scores: ``(N, A, C)`` class probabilities (or logits, ``from_logits``); no gradient flows through them.
        pred_boxes: ``(N, A, 4)`` predicted xyxy boxes, in the units of the ground truth.
        anchor_points: ``(A, 2)`` anchor points ``(x, y)``, same units.
        gt_boxes: ``(N, G, 4)`` xyxy ground truth (padding may hold anything finite).
        gt_labels: ``(N, G)`` integer classes in ``[0, C)``, -1 for padding.
        gt_valid: ``(N, G)`` bool, the real boxes (default ``gt_labels >= 0``).
        top_k: candidates per ground truth (13, TOOD's default; YOLOv8 uses 10).
        alpha, beta: exponents of the score and the IoU in the metric (1.0 and 6.0; YOLOv8: 0.5 and 6.0).
        min_side: a number or 0-d array: box sides below it are raised to it
            when candidates are selected (None: no floor).
        eps: the margin of the candidate test and the normaliser's epsilon (1e-9).
        from_logits: ``scores`` are logits: the sigmoid is applied to the
            entries the metric reads only (the same numbers, less work).

    On eager host arrays (NumPy, PyTorch on the CPU outside tracing, fast
    paths on) the CIoU and the metric are computed for the candidate pairs
    alone; elsewhere for every pair, masked. Both give the same numbers.

    Returns:
        A :class:`TaskAlignedAssignment`.
    """
    backend = resolve(scores, input_name="scores")
    for name, x in (("pred_boxes", pred_boxes), ("anchor_points", anchor_points), ("gt_boxes", gt_boxes),
                    ("gt_labels", gt_labels)):
        check_same(backend, x, name, "scores")
    v.check_floating(backend, scores, "scores")
    v.check_floating(backend, pred_boxes, "pred_boxes")
    if scores.ndim != 3:
        raise ValueError(f"scores must have shape (N, A, C), got {tuple(scores.shape)}")
    n, a, c = (int(s) for s in scores.shape)
    if tuple(pred_boxes.shape) != (n, a, 4):
        raise ValueError(f"pred_boxes shape {tuple(pred_boxes.shape)} must be (N, A, 4) = {(n, a, 4)}")
    if tuple(anchor_points.shape) != (a, 2):
        raise ValueError(f"anchor_points shape {tuple(anchor_points.shape)} must be (A, 2) = {(a, 2)}")
    if gt_boxes.ndim != 3 or int(gt_boxes.shape[0]) != n or int(gt_boxes.shape[2]) != 4:
        raise ValueError(f"gt_boxes shape {tuple(gt_boxes.shape)} must be (N, G, 4) with N = {n}")
    g = int(gt_boxes.shape[1])
    if tuple(gt_labels.shape) != (n, g):
        raise ValueError(f"gt_labels shape {tuple(gt_labels.shape)} must be (N, G) = {(n, g)}")
    if isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1:
        raise ValueError(f"top_k must be an int >= 1, got {top_k!r}")
    alpha = v.check_number(alpha, "alpha")
    beta = v.check_number(beta, "beta")
    eps = v.check_number(eps, "eps")
    xp = backend.xp
    device = backend.device(scores)
    dtype = pred_boxes.dtype
    if g == 0:  # one padding row: the same shapes and an empty foreground
        gt_boxes = xp.zeros((n, 1, 4), dtype=dtype, device=device)
        gt_labels = xp.full((n, 1), -1, dtype=xp.int64, device=device)
        gt_valid = None
        g = 1
    gt_boxes = v.as_dtype_of(backend, gt_boxes, pred_boxes)
    points = v.as_dtype_of(backend, anchor_points, pred_boxes)
    gt_labels = gt_labels if gt_labels.dtype == xp.int64 else xp.astype(gt_labels, xp.int64)
    valid = gt_labels >= 0 if gt_valid is None else gt_valid
    scores = backend.stop_gradient(scores)
    pred_boxes = backend.stop_gradient(pred_boxes)

    inside = _candidates(backend, points, gt_boxes, valid, min_side, eps)  # (N, G, A)
    label = xp.clip(gt_labels, 0, max(c - 1, 0))
    positions = backend.nonzero_positions(inside)
    if positions is not None:  # eager host arrays: the candidate pairs alone
        overlaps_c, metric_c = _candidate_metric(backend, positions, scores, pred_boxes, gt_boxes, label, alpha,
                                                 beta, from_logits)
        overlaps = xp.reshape(backend.scatter_rows(overlaps_c, positions, n * g * a), (n, g, a))
        metric = xp.reshape(backend.scatter_rows(metric_c, positions, n * g * a), (n, g, a))
        sparse = _sparse_assign(backend, positions, overlaps_c, metric_c, overlaps, metric, inside, gt_boxes,
                                gt_labels, c, min(top_k, a), eps)
        if sparse is not None:
            return sparse
    else:
        # the score of each ground truth's class at every anchor: gathered along C, then (N, G, A)
        class_index = xp.broadcast_to(xp.expand_dims(label, axis=1), (n, a, g))
        class_scores = xp.permute_dims(backend.take_along_axis(scores, class_index, axis=2), (0, 2, 1))
        if from_logits:
            class_scores = backend.sigmoid(class_scores)
        overlaps = xp.where(inside, xp.clip(_ciou(xp, gt_boxes, pred_boxes), min=0.0), 0.0)
        metric = xp.where(inside, _metric(xp, class_scores, overlaps, alpha, beta), 0.0)

    chosen = _select_top_k(backend, metric, min(top_k, a)) & inside
    # per anchor: how many ground truths chose it and, when one did, which (one matrix product over G)
    counts = xp.matmul(xp.stack([xp.ones((g,), dtype=dtype, device=device),
                                 xp.astype(xp.arange(g, device=device), dtype)]), xp.astype(chosen, dtype))
    taken, chooser = counts[:, 0, :], xp.astype(counts[:, 1, :], xp.int64)  # (N, A)
    # an anchor chosen by several goes to the ground truth of highest CIoU (of all, not only those)
    gt_index = xp.where(taken > 1, _best_overlap(backend, overlaps, taken > 1), chooser)
    positive = taken > 0
    gt_ids = xp.reshape(xp.arange(g, dtype=xp.int64, device=device), (1, g, 1))
    assigned = (xp.expand_dims(gt_index, axis=1) == gt_ids) & xp.expand_dims(positive, axis=1)
    # normalise: each ground truth's metrics scaled so that its best reaches its best CIoU
    best_metric = xp.max(xp.where(assigned, metric, 0.0), axis=-1)  # (N, G)
    best_overlap = xp.max(xp.where(assigned, overlaps, 0.0), axis=-1)
    at = xp.expand_dims(gt_index, axis=1)
    own_metric = xp.squeeze(backend.take_along_axis(metric, at, axis=1), axis=1)  # (N, A)
    scale = backend.take_along_axis(best_overlap, gt_index, axis=1)
    norm = backend.take_along_axis(best_metric, gt_index, axis=1) + eps
    alignment = xp.where(positive, own_metric * scale / norm, 0.0)

    labels = xp.clip(backend.take_along_axis(gt_labels, gt_index, axis=1), min=0)
    boxes = _take_gt(backend, gt_boxes, gt_index)
    classes = xp.reshape(xp.arange(c, dtype=xp.int64, device=device), (1, 1, c))
    one_hot = xp.expand_dims(labels, axis=-1) == classes
    target_scores = xp.where(one_hot, xp.expand_dims(alignment, axis=-1), 0.0)
    return TaskAlignedAssignment(positive=positive, gt_index=gt_index, labels=labels, boxes=boxes,
                                 scores=target_scores, alignment=alignment, metric=metric, overlaps=overlaps,
                                 assigned=assigned)


@dataclass(frozen=True)
class TaskAlignedAssigner:
    """:func:`task_aligned_assign` with fixed options, a recipe part: ``assigner(scores, pred_boxes, ...)``.

    Attributes: ``top_k`` (13), ``alpha`` (1.0), ``beta`` (6.0), ``eps`` (1e-9), as the function's options.
    """

    top_k: int = 13
    alpha: float = 1.0
    beta: float = 6.0
    eps: float = 1e-9

    def __call__(self, scores: Any, pred_boxes: Any, anchor_points: Any, gt_boxes: Any, gt_labels: Any,
                 gt_valid: Any = None, *, min_side: Any = None, from_logits: bool = False) -> TaskAlignedAssignment:
        return task_aligned_assign(scores, pred_boxes, anchor_points, gt_boxes, gt_labels, gt_valid,
                                   top_k=self.top_k, alpha=self.alpha, beta=self.beta, min_side=min_side,
                                   eps=self.eps, from_logits=from_logits)
