"""The "ssd_focal" recipe: derived from the built-in "ssd" by replacing its mined cross-entropy with focal loss."""

from __future__ import annotations

import math

import numpy as np
import pytest
from polyloss_retinanet import SSDFocalLoss
from polyloss_retinanet import all_negatives
from test_retinanet import make_anchors
from test_retinanet import make_ground_truth
from test_retinanet import pad
from test_retinanet import ref_box_iou
from test_retinanet import ref_encode
from test_retinanet import ref_smooth_l1

import polyloss as pl
from polyloss.detection.ssd import SSDLoss
from polyloss.testing.conformance import check_recipe

NUM_CLASSES = 5  # background 0 and classes 1..4


# -- float64 NumPy reference, one image and one prior at a time ---------------------------------------
def ref_ssd_matches(quality: np.ndarray, threshold: float = 0.5) -> np.ndarray:
    """torchvision SSDMatcher: best ground truth at IoU >= threshold, then each ground truth takes its best prior."""
    matches = np.where(quality.max(axis=0) >= threshold, quality.argmax(axis=0), -1)
    for g in range(quality.shape[0]):
        matches[quality[g].argmax()] = g
    return matches


def ref_softmax_focal(row: np.ndarray, y: int, gamma: float) -> float:
    m = row.max()
    log_p = row[y] - (m + math.log(np.exp(row - m).sum()))
    return -((1.0 - math.exp(log_p)) ** gamma) * log_p


def ref_ssd_focal(deltas, logits, priors, gt_boxes, gt_labels, *, gamma):
    conf, loc, num_pos = 0.0, 0.0, 0
    for i in range(logits.shape[0]):
        gt, lab = gt_boxes[i], gt_labels[i]
        matches = ref_ssd_matches(ref_box_iou(gt, priors)) if len(gt) else np.full(len(priors), -1)
        for p in range(len(priors)):
            y = int(lab[matches[p]]) if matches[p] >= 0 else 0
            conf += ref_softmax_focal(logits[i, p], y, gamma)  # every prior: no mining
            if matches[p] >= 0:
                num_pos += 1
                t = ref_encode(gt[matches[p]], priors[p], (10.0, 10.0, 5.0, 5.0))
                loc += sum(ref_smooth_l1(deltas[i, p, k] - t[k], 1.0) for k in range(4))
    return {"conf": conf / max(1, num_pos), "loc": loc / max(1, num_pos)}


def make_batch(seed: int = 0):
    rng = np.random.default_rng(seed)
    priors = make_anchors(rng)
    gt_boxes, gt_labels = make_ground_truth(rng)
    deltas = rng.normal(0.0, 0.5, size=(3, len(priors), 4))
    logits = rng.normal(0.0, 1.5, size=(3, len(priors), NUM_CLASSES))
    return deltas, logits, priors, gt_boxes, gt_labels


# -- numbers --------------------------------------------------------------------------------------
@pytest.mark.parametrize("gamma", [0.0, 2.0])
def test_matches_reference(xp, gamma):
    deltas, logits, priors, gt_boxes, gt_labels = make_batch()
    expected = ref_ssd_focal(deltas, logits, priors, gt_boxes, gt_labels, gamma=gamma)
    recipe = pl.get_recipe("ssd_focal", num_classes=NUM_CLASSES, gamma=gamma)
    boxes, labels = pad(gt_boxes, gt_labels)
    result = recipe(xp.asarray(deltas), xp.asarray(logits), xp.asarray(priors), xp.asarray(boxes), xp.asarray(labels))
    assert set(result.components) == {"loc", "conf"}
    for key, value in expected.items():
        np.testing.assert_allclose(xp.to_numpy(result.components[key]), value, rtol=xp.rtol * 10, atol=xp.atol,
                                   err_msg=key)


def test_gamma_zero_is_cross_entropy_over_all_priors_and_ssd_without_a_ratio_cap(xp):
    deltas, logits, priors, gt_boxes, gt_labels = make_batch(seed=1)
    # only the images with ground truth: "ssd" lets an image without any contribute nothing
    deltas, logits, gt_boxes, gt_labels = deltas[:2], logits[:2], gt_boxes[:2], gt_labels[:2]
    boxes, labels = pad(gt_boxes, gt_labels)
    args = [xp.asarray(a) for a in (deltas, logits, priors, boxes, labels)]
    focal = pl.get_recipe("ssd_focal", num_classes=NUM_CLASSES, gamma=0.0)(*args)
    # float64 NumPy: softmax cross-entropy of every prior, over the positives of the batch
    targets = SSDLoss(NUM_CLASSES).assign(priors, boxes, labels)
    log_p = logits - logits.max(-1, keepdims=True)
    log_p = log_p - np.log(np.exp(log_p).sum(-1, keepdims=True))
    ce = -np.take_along_axis(log_p, np.asarray(targets.labels)[..., None], axis=-1).sum()
    np.testing.assert_allclose(xp.to_numpy(focal.components["conf"]), ce / np.asarray(targets.positive).sum(),
                               rtol=xp.rtol * 10, atol=xp.atol)
    # the built-in "ssd" when its mining keeps every negative (ratio above priors / positives)
    ssd = pl.get_recipe("ssd", num_classes=NUM_CLASSES, neg_pos_ratio=len(priors))(*args)
    for key in ("conf", "loc"):
        np.testing.assert_allclose(xp.to_numpy(focal.components[key]), xp.to_numpy(ssd.components[key]),
                                   rtol=xp.rtol * 10, atol=xp.atol, err_msg=key)
    # and with the default ratio of 3 SSD sees fewer negatives, so its conf is smaller
    mined = pl.get_recipe("ssd", num_classes=NUM_CLASSES)(*args)
    assert float(xp.to_numpy(mined.components["conf"])) < float(xp.to_numpy(focal.components["conf"]))


def test_focusing_lowers_the_loss_and_alpha_scales_it():
    deltas, logits, priors, gt_boxes, gt_labels = make_batch()
    boxes, labels = pad(gt_boxes, gt_labels)
    conf = {g: float(SSDFocalLoss(NUM_CLASSES, gamma=g)(deltas, logits, priors, boxes, labels).components["conf"])
            for g in (0.0, 1.0, 2.0)}
    assert conf[0.0] > conf[1.0] > conf[2.0] > 0
    scaled = SSDFocalLoss(NUM_CLASSES, focal_alpha=0.25)(deltas, logits, priors, boxes, labels)
    assert float(scaled.components["conf"]) == pytest.approx(0.25 * conf[2.0], rel=1e-12)


def test_empty_ground_truth_gives_zero_loc_and_a_finite_conf(xp):
    deltas, logits, priors, _, _ = make_batch()
    recipe = pl.get_recipe("ssd_focal", num_classes=NUM_CLASSES)
    empty = [np.zeros((0, 4))] * 3
    expected = ref_ssd_focal(deltas, logits, priors, empty, [np.zeros(0, dtype=np.int64)] * 3, gamma=2.0)
    result = recipe(xp.asarray(deltas), xp.asarray(logits), xp.asarray(priors), xp.asarray(np.zeros((3, 1, 4))),
                    xp.asarray(np.full((3, 1), -1)))
    assert float(xp.to_numpy(result.components["loc"])) == 0.0
    np.testing.assert_allclose(xp.to_numpy(result.components["conf"]), expected["conf"], rtol=xp.rtol * 10)


def test_derivation_keeps_ssd_parts_and_replaces_only_the_mining():
    recipe = pl.get_recipe("ssd_focal", num_classes=NUM_CLASSES, iou_threshold=0.4, alpha=2.0)
    assert isinstance(recipe, SSDLoss) and recipe.negative_miner is all_negatives
    assert recipe.iou_threshold == 0.4 and recipe.weights["loc"] == 2.0
    positive = np.array([[True, False, False]])
    assert recipe.mine(np.zeros((1, 3)), positive).tolist() == [[False, True, True]]
    with pytest.raises(TypeError, match="neg_pos_ratio"):
        pl.get_recipe("ssd_focal", num_classes=NUM_CLASSES, neg_pos_ratio=3)
    with pytest.raises(ValueError, match="gamma"):
        SSDFocalLoss(NUM_CLASSES, gamma=-1.0)
    # the same recipe from the constructor parts of "ssd" alone
    deltas, logits, priors, gt_boxes, gt_labels = make_batch()
    boxes, labels = pad(gt_boxes, gt_labels)
    import functools

    parts = pl.get_recipe("ssd", num_classes=NUM_CLASSES, negative_miner=all_negatives,
                          classification_loss=functools.partial(pl.softmax_focal_loss, reduction="none"))
    ours = pl.get_recipe("ssd_focal", num_classes=NUM_CLASSES)(deltas, logits, priors, boxes, labels)
    theirs = parts(deltas, logits, priors, boxes, labels)
    assert float(ours.total) == pytest.approx(float(theirs.total), rel=1e-12)


# -- the conformance kit ---------------------------------------------------------------------------
def _inputs(rng):
    deltas, logits, priors, gt_boxes, gt_labels = make_batch(seed=int(rng.integers(0, 100)))
    return (deltas, logits, priors, *pad(gt_boxes, gt_labels))


def _empty_inputs(rng):
    deltas, logits, priors, _, _ = make_batch(seed=int(rng.integers(0, 100)))
    return deltas, logits, priors, [np.zeros((0, 4))] * 3, [np.zeros((0,), dtype=np.int64)] * 3


def test_conformance():
    report = check_recipe("ssd_focal", _inputs, config={"num_classes": NUM_CLASSES}, make_empty_inputs=_empty_inputs)
    assert set(report.components) == {"loc", "conf"}
