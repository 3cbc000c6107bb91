"""The task-aligned assigner (TAL) against ultralytics' TaskAlignedAssigner, on every backend, and its rules."""

from __future__ import annotations

import numpy as np
import pytest

import polyloss as pl
from polyloss.boxes import TaskAlignedAssigner
from polyloss.boxes import second_level_stride
from polyloss.boxes import task_aligned_assign

torch = pytest.importorskip("torch")
from _ultralytics import STRIDES  # noqa: E402
from _ultralytics import ultralytics_tal  # noqa: E402

C = 4


def _inputs(counts, *, seed=0, size=128, spread=3.0):
    """Scores (N, A, C), predicted boxes (N, A, 4) and anchor points (A, 2) in pixels, padded ground truth."""
    rng = np.random.default_rng(seed)
    feats = [torch.zeros(1, 1, size // s, size // s) for s in STRIDES]
    points, strides = ultralytics_tal.make_anchors(feats, torch.tensor(STRIDES, dtype=torch.float32), 0.5)
    points, strides = points.double().numpy(), strides.double().numpy()
    n, a, g = len(counts), len(points), max(1, *counts)
    gt = np.zeros((n, g, 4))
    labels = np.full((n, g), -1, dtype=np.int64)
    for i, k in enumerate(counts):
        centre = rng.uniform(0.3 * size, 0.75 * size, (k, 2))
        wh = rng.uniform(0.02 * size, 0.5 * size, (k, 2))
        gt[i, :k] = np.concatenate([centre - wh / 2, centre + wh / 2], axis=1)
        labels[i, :k] = rng.integers(0, C, k)
    d = rng.uniform(0.2, spread, (n, a, 4))
    boxes = np.concatenate([points - d[..., :2], points + d[..., 2:]], axis=-1) * strides
    return rng.uniform(0.0, 1.0, (n, a, C)), boxes, points * strides, gt, labels


def _ultralytics(scores, boxes, points, gt, labels, *, topk=10, alpha=0.5, beta=6.0):
    f = torch.float32
    assigner = ultralytics_tal.TaskAlignedAssigner(topk=topk, num_classes=C, alpha=alpha, beta=beta,
                                                   stride=list(STRIDES))
    gt_t = torch.tensor(np.where(labels[..., None] >= 0, gt, 0.0), dtype=f)
    mask = (labels >= 0)[..., None].astype(np.float32)
    _, t_boxes, t_scores, fg, t_idx = assigner(torch.tensor(scores, dtype=f), torch.tensor(boxes, dtype=f),
                                               torch.tensor(points, dtype=f),
                                               torch.tensor(np.clip(labels, 0, None)[..., None], dtype=f), gt_t,
                                               torch.tensor(mask))
    return fg.numpy(), t_idx.numpy(), t_boxes.double().numpy(), t_scores.double().numpy()


@pytest.mark.parametrize("counts", [(0,), (1,), (5, 1, 0), (20, 11)], ids=str)
@pytest.mark.parametrize("options", [{}, {"topk": 4, "alpha": 1.0, "beta": 2.0}], ids=["yolov8", "other"])
def test_equals_ultralytics_task_aligned_assigner(counts, options):
    scores, boxes, points, gt, labels = _inputs(counts, seed=len(counts) + sum(counts))
    fg, idx, t_boxes, t_scores = _ultralytics(scores, boxes, points, gt, labels, **options)
    f = torch.float32
    r = task_aligned_assign(torch.tensor(scores, dtype=f), torch.tensor(boxes, dtype=f),
                            torch.tensor(points, dtype=f), torch.tensor(gt, dtype=f), torch.tensor(labels),
                            top_k=options.get("topk", 10), alpha=options.get("alpha", 0.5),
                            beta=options.get("beta", 6.0), min_side=16.0)
    positive = r.positive.numpy()
    np.testing.assert_array_equal(positive, fg)
    assert positive.sum() == 0 if sum(counts) == 0 else positive.sum() > 0
    np.testing.assert_array_equal(r.gt_index.numpy()[fg], idx[fg])
    np.testing.assert_allclose(r.boxes.numpy()[fg], t_boxes[fg], rtol=0, atol=0)
    np.testing.assert_allclose(r.scores.numpy(), t_scores, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(r.alignment.numpy(), t_scores.sum(-1), rtol=1e-5, atol=1e-7)
    assert np.array_equal(r.assigned.numpy().sum(1), positive.astype(int))  # one ground truth per anchor


def test_same_assignment_on_every_backend_and_path(xp):
    scores, boxes, points, gt, labels = _inputs((9, 0, 3), seed=4)
    labels[0, 2] = -1  # padding between real boxes
    gt[0, 2] = [1e9, -1e9, 0.0, 0.0]
    ref = task_aligned_assign(scores, boxes, points, gt, labels, top_k=10, alpha=0.5, beta=6.0, min_side=16.0)
    for fast in (True, False):
        with pl.fast_paths(fast):
            r = TaskAlignedAssigner(top_k=10, alpha=0.5, beta=6.0)(
                xp.asarray(scores), xp.asarray(boxes), xp.asarray(points), xp.asarray(gt), xp.asarray(labels),
                min_side=16.0)
        np.testing.assert_array_equal(xp.to_numpy(r.positive), ref.positive)
        np.testing.assert_array_equal(xp.to_numpy(r.gt_index), ref.gt_index)
        np.testing.assert_array_equal(xp.to_numpy(r.labels), ref.labels)
        np.testing.assert_allclose(xp.to_numpy(r.scores), ref.scores, rtol=max(xp.rtol, 1e-12), atol=xp.atol)
        np.testing.assert_allclose(xp.to_numpy(r.metric), ref.metric, rtol=max(xp.rtol, 1e-12), atol=xp.atol)
        np.testing.assert_array_equal(xp.to_numpy(r.assigned), ref.assigned)


def test_from_logits_is_the_sigmoid_of_the_scores():
    scores, boxes, points, gt, labels = _inputs((6, 2), seed=2)
    logits = np.log(scores) - np.log1p(-scores)
    a = task_aligned_assign(scores, boxes, points, gt, labels, top_k=10, alpha=0.5, min_side=16.0)
    b = task_aligned_assign(logits, boxes, points, gt, labels, top_k=10, alpha=0.5, min_side=16.0,
                            from_logits=True)
    np.testing.assert_array_equal(a.positive, b.positive)
    np.testing.assert_allclose(a.scores, b.scores, rtol=1e-12, atol=1e-15)


def _one_box_scene():
    """Five anchors in a row inside one ground truth, predictions equal to the box: CIoU 1 for all."""
    points = np.array([[10.0, 10.0], [12.0, 10.0], [14.0, 10.0], [16.0, 10.0], [18.0, 10.0], [50.0, 50.0]])
    gt = np.array([[[5.0, 5.0, 25.0, 15.0], [11.0, 6.0, 17.0, 14.0]]])
    boxes = np.broadcast_to(gt[:, :1], (1, 6, 4)).copy()
    return points, gt, boxes


def test_top_k_ties_go_to_the_lower_index_and_metric_is_score_power_alpha_times_iou_power_beta():
    points, gt, boxes = _one_box_scene()
    scores = np.full((1, 6, 2), 0.25)
    labels = np.array([[1, -1]])
    r = task_aligned_assign(scores, boxes, points, gt, labels, top_k=3, alpha=0.5, beta=6.0)
    np.testing.assert_array_equal(r.positive[0], [True, True, True, False, False, False])  # five tie at 0.5
    np.testing.assert_allclose(r.metric[0, 0, :5], 0.5)
    np.testing.assert_allclose(r.scores[0, :3, 1], 1.0 * 0.5 / (0.5 + 1e-9))  # best CIoU 1 over the best metric
    assert np.all(r.scores[0, :, 0] == 0) and np.all(r.labels[0, :3] == 1)


def test_an_anchor_chosen_twice_goes_to_the_highest_ciou():
    points, gt, boxes = _one_box_scene()
    boxes[0, 1:4] = gt[0, 1]  # anchors 1..3 predict the second box exactly
    scores = np.full((1, 6, 2), 0.5)
    labels = np.array([[0, 1]])
    r = task_aligned_assign(scores, boxes, points, gt, labels, top_k=5, alpha=1.0, beta=1.0)
    np.testing.assert_array_equal(r.gt_index[0, :5], [0, 1, 1, 1, 0])
    assert r.assigned[0].sum(0).tolist() == [1, 1, 1, 1, 1, 0]


def test_side_floor_and_second_level_stride():
    assert float(second_level_stride(np.array([8.0] * 4 + [16.0] * 2 + [32.0]))) == 16.0
    assert float(second_level_stride(np.array([32.0, 32.0]))) == 32.0
    points = np.array([[20.0, 20.0], [28.0, 28.0]])
    gt = np.array([[[22.0, 22.0, 26.0, 26.0]]])  # 4 x 4 between the anchors
    boxes = np.array([[[18.0, 18.0, 30.0, 30.0]] * 2])
    scores = np.ones((1, 2, 1))
    none = task_aligned_assign(scores, boxes, points, gt, np.array([[0]]))
    floor = task_aligned_assign(scores, boxes, points, gt, np.array([[0]]), min_side=16.0)
    assert not none.positive.any() and floor.positive.all()


def test_bad_arguments_name_themselves():
    scores, boxes, points, gt, labels = _inputs((2,))
    with pytest.raises(ValueError, match="pred_boxes"):
        task_aligned_assign(scores, boxes[:, :-1], points, gt, labels)
    with pytest.raises(ValueError, match="anchor_points"):
        task_aligned_assign(scores, boxes, points[:-1], gt, labels)
    with pytest.raises(ValueError, match="gt_labels"):
        task_aligned_assign(scores, boxes, points, gt, labels[:, :-1])
    with pytest.raises(ValueError, match="top_k"):
        task_aligned_assign(scores, boxes, points, gt, labels, top_k=0)
    with pytest.raises(TypeError, match="scores"):
        task_aligned_assign(scores.astype(np.int64), boxes, points, gt, labels)


def test_zero_metric_candidates_fill_a_short_top_k_in_index_order(xp):
    """A row with fewer than top_k positive metrics takes zeros by index (torch.topk leaves their order open);
    a zero-metric candidate among them is foreground with a zero score."""
    points = np.array([[10.0, 10.0], [12.0, 10.0], [30.0, 30.0], [40.0, 40.0]])
    gt = np.array([[[5.0, 5.0, 20.0, 15.0]]])
    boxes = np.array([[[100.0, 100.0, 110.0, 110.0], [5.0, 5.0, 20.0, 15.0], [0, 0, 1, 1], [0, 0, 1, 1]]])
    scores = np.full((1, 4, 1), 0.5)
    for k, positive in ((2, [True, True, False, False]), (1, [False, True, False, False])):
        r = task_aligned_assign(xp.asarray(scores), xp.asarray(boxes), xp.asarray(points), xp.asarray(gt),
                                xp.asarray(np.array([[0]])), top_k=k)
        np.testing.assert_array_equal(xp.to_numpy(r.positive)[0], positive)
        assert float(xp.to_numpy(r.scores)[0, 0, 0]) == 0.0


@pytest.mark.parametrize("seed", range(4))
def test_candidate_pairs_path_equals_the_dense_path_on_crowded_scenes(xp, seed):
    """Eager host arrays assign from the candidate pairs alone (sorted), every other path from dense
    (N, G, A) passes (the CIoU of all pairs too): on scenes with anchors chosen by several boxes, tied
    metrics (scores and boxes quantised) and zero-metric candidates, every field is the same."""
    scores, boxes, points, gt, labels = _inputs((25, 14, 1, 0), seed=seed, spread=6.0)
    scores = np.round(scores * 4) / 4  # ties, and zero scores: zero metrics
    boxes = np.round(boxes / 8) * 8
    gt[0, 0], scores[0, :6] = [0.0, 0.0, 30.0, 20.0], 0.0  # zero metrics in the first top_k columns
    outs = []
    for fast in (True, False):
        with pl.fast_paths(fast):
            outs.append(task_aligned_assign(xp.asarray(scores), xp.asarray(boxes), xp.asarray(points),
                                            xp.asarray(gt), xp.asarray(labels), top_k=10, alpha=0.5, beta=6.0,
                                            min_side=16.0))
    sparse, dense = outs
    assert int(xp.to_numpy(dense.assigned).sum(1).max()) == 1
    assert (xp.to_numpy(dense.metric) > 0).sum(1).max() > 1  # anchors that several boxes rank
    for field in ("positive", "gt_index", "labels", "boxes", "assigned"):
        np.testing.assert_array_equal(xp.to_numpy(getattr(sparse, field)), xp.to_numpy(getattr(dense, field)),
                                      err_msg=field)
    for field in ("scores", "alignment", "metric", "overlaps"):  # CIoU's vector and scalar atan: last bits
        np.testing.assert_allclose(xp.to_numpy(getattr(sparse, field)), xp.to_numpy(getattr(dense, field)),
                                   rtol=max(xp.rtol, 1e-12), atol=xp.atol, err_msg=field)
