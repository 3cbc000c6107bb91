"""The "retinanet" recipe against a loop-by-loop float64 NumPy transcription of torchvision's RetinaNet
head losses (written here; torchvision is not needed), the conformance kit, and the entry point."""

from __future__ import annotations

import importlib.metadata
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from polyloss_retinanet import RetinaNetLoss

import polyloss as pl
from polyloss.boxes import Matcher
from polyloss.testing.conformance import check_recipe

NUM_CLASSES = 5
BOX_LOSSES = ("l1", "smooth_l1", "giou", "diou", "ciou")


# -- an independent transcription of torchvision (float64, one image and one anchor at a time) ---------
def ref_box_iou(boxes1: np.ndarray, boxes2: np.ndarray) -> np.ndarray:
    out = np.zeros((len(boxes1), len(boxes2)))
    for i, (ax1, ay1, ax2, ay2) in enumerate(boxes1):
        for j, (bx1, by1, bx2, by2) in enumerate(boxes2):
            w = max(0.0, min(ax2, bx2) - max(ax1, bx1))
            h = max(0.0, min(ay2, by2) - max(ay1, by1))
            inter = w * h
            out[i, j] = inter / ((ax2 - ax1) * (ay2 - ay1) + (bx2 - bx1) * (by2 - by1) - inter)
    return out


def ref_matcher(quality: np.ndarray, high: float = 0.5, low: float = 0.4, allow_low_quality: bool = True) -> np.ndarray:
    """torchvision.models.detection._utils.Matcher.__call__ (quality (G, A))."""
    matched_vals = quality.max(axis=0)
    matches = quality.argmax(axis=0)
    all_matches = matches.copy()
    matches[matched_vals < low] = -1
    matches[(matched_vals >= low) & (matched_vals < high)] = -2
    if allow_low_quality:
        highest = quality.max(axis=1)
        for g in range(quality.shape[0]):
            for a in range(quality.shape[1]):
                if quality[g, a] == highest[g]:
                    matches[a] = all_matches[a]
    return matches


def ref_encode(gt: np.ndarray, anchor: np.ndarray, weights: tuple[float, ...] = (1.0, 1.0, 1.0, 1.0)) -> np.ndarray:
    """torchvision BoxCoder.encode_single with ``weights`` (RetinaNet's (1, 1, 1, 1) by default), one box."""
    wx, wy, ww, wh = weights
    aw, ah = anchor[2] - anchor[0], anchor[3] - anchor[1]
    ax, ay = anchor[0] + 0.5 * aw, anchor[1] + 0.5 * ah
    gw, gh = gt[2] - gt[0], gt[3] - gt[1]
    gx, gy = gt[0] + 0.5 * gw, gt[1] + 0.5 * gh
    return np.array([wx * (gx - ax) / aw, wy * (gy - ay) / ah, ww * math.log(gw / aw), wh * math.log(gh / ah)])


def ref_decode(delta: np.ndarray, anchor: np.ndarray) -> np.ndarray:
    """torchvision BoxCoder.decode_single with weights (1, 1, 1, 1), one box."""
    aw, ah = anchor[2] - anchor[0], anchor[3] - anchor[1]
    ax, ay = anchor[0] + 0.5 * aw, anchor[1] + 0.5 * ah
    clip = math.log(1000.0 / 16)
    cx, cy = delta[0] * aw + ax, delta[1] * ah + ay
    w, h = math.exp(min(delta[2], clip)) * aw, math.exp(min(delta[3], clip)) * ah
    return np.array([cx - 0.5 * w, cy - 0.5 * h, cx + 0.5 * w, cy + 0.5 * h])


def ref_iou_family(kind: str, pred: np.ndarray, gt: np.ndarray, eps: float = 1e-7) -> float:
    """torchvision.ops generalized/distance/complete_box_iou_loss of one pair."""
    x1, y1, x2, y2 = pred
    x1g, y1g, x2g, y2g = gt
    xk1, yk1, xk2, yk2 = max(x1, x1g), max(y1, y1g), min(x2, x2g), min(y2, y2g)
    inter = (xk2 - xk1) * (yk2 - yk1) if (yk2 > yk1 and xk2 > xk1) else 0.0
    union = (x2 - x1) * (y2 - y1) + (x2g - x1g) * (y2g - y1g) - inter
    iou = inter / (union + eps)
    xc1, yc1, xc2, yc2 = min(x1, x1g), min(y1, y1g), max(x2, x2g), max(y2, y2g)
    if kind == "giou":
        area_c = (xc2 - xc1) * (yc2 - yc1)
        return 1.0 - (iou - (area_c - union) / (area_c + eps))
    diag = (xc2 - xc1) ** 2 + (yc2 - yc1) ** 2 + eps
    centres = ((x1 + x2) / 2 - (x1g + x2g) / 2) ** 2 + ((y1 + y2) / 2 - (y1g + y2g) / 2) ** 2
    diou = 1.0 - iou + centres / diag
    if kind == "diou":
        return diou
    v = (4 / math.pi**2) * (math.atan((x2g - x1g) / (y2g - y1g)) - math.atan((x2 - x1) / (y2 - y1))) ** 2
    return diou + v / (1 - iou + v + eps) * v


def ref_sigmoid_focal(x: float, t: float, alpha: float = 0.25, gamma: float = 2.0) -> float:
    """torchvision.ops.sigmoid_focal_loss of one element."""
    p = 1.0 / (1.0 + math.exp(-x))
    ce = max(x, 0.0) - x * t + math.log1p(math.exp(-abs(x)))
    p_t = p * t + (1 - p) * (1 - t)
    loss = ce * (1 - p_t) ** gamma
    if alpha >= 0:
        loss = (alpha * t + (1 - alpha) * (1 - t)) * loss
    return loss


def ref_smooth_l1(d: float, beta: float) -> float:
    return 0.5 * d * d / beta if abs(d) < beta else abs(d) - 0.5 * beta


def ref_retinanet(deltas, logits, anchors, gt_boxes, gt_labels, *, box_loss="l1", beta=1.0, alpha=0.25, gamma=2.0,
                  normalize="image", high=0.5, low=0.4, allow_low_quality=True):
    """RetinaNet.compute_loss + the two heads' compute_loss, per image, in float64."""
    n, num_anchors, num_classes = logits.shape
    cls_terms, box_terms, num_pos = [], [], []
    for i in range(n):
        gt, lab = gt_boxes[i], gt_labels[i]
        if len(gt) == 0:
            matched = np.full(num_anchors, -1)
        else:
            matched = ref_matcher(ref_box_iou(gt, anchors), high, low, allow_low_quality)
        cls = 0.0
        for a in range(num_anchors):
            if matched[a] == -2:  # BETWEEN_THRESHOLDS: ignored
                continue
            for c in range(num_classes):
                target = 1.0 if matched[a] >= 0 and lab[matched[a]] == c else 0.0
                cls += ref_sigmoid_focal(logits[i, a, c], target, alpha, gamma)
        box = 0.0
        for a in range(num_anchors):
            if matched[a] < 0:
                continue
            g = gt[matched[a]]
            if box_loss in ("l1", "smooth_l1"):
                t = ref_encode(g, anchors[a])
                for k in range(4):
                    d = deltas[i, a, k] - t[k]
                    box += abs(d) if box_loss == "l1" else ref_smooth_l1(d, beta)
            else:
                box += ref_iou_family(box_loss, ref_decode(deltas[i, a], anchors[a]), g)
        cls_terms.append(cls)
        box_terms.append(box)
        num_pos.append(int((matched >= 0).sum()))
    if normalize == "image":
        classification = sum(c / max(1, p) for c, p in zip(cls_terms, num_pos, strict=True)) / n
        box_regression = sum(b / max(1, p) for b, p in zip(box_terms, num_pos, strict=True)) / max(1, n)
    else:
        classification = sum(cls_terms) / max(1, sum(num_pos))
        box_regression = sum(box_terms) / max(1, sum(num_pos))
    return {"classification": classification, "box_regression": box_regression}


# -- data ------------------------------------------------------------------------------------------
def make_anchors(rng: np.random.Generator) -> np.ndarray:
    """64 anchors: a 4 x 4 grid, sizes 16 and 32, aspect ratios 1 and 2, jittered (no IoU ties)."""
    out = []
    for cy in (8.0, 24.0, 40.0, 56.0):
        for cx in (8.0, 24.0, 40.0, 56.0):
            for size in (16.0, 32.0):
                for ratio in (1.0, 2.0):
                    w, h = size * math.sqrt(ratio), size / math.sqrt(ratio)
                    out.append([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2])
    return np.array(out) + rng.uniform(-0.4, 0.4, size=(len(out), 4))


def make_ground_truth(rng: np.random.Generator) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Three images: 3 boxes (one small: a low-quality match), 1 box, none."""
    boxes = [
        np.array([[4.0, 6.0, 30.0, 22.0], [33.0, 30.0, 62.0, 61.0], [20.5, 43.0, 27.5, 50.0]]),
        np.array([[10.0, 12.0, 50.0, 40.0]]),
        np.zeros((0, 4)),
    ]
    boxes = [b + rng.uniform(-0.5, 0.5, size=b.shape) for b in boxes]
    labels = [np.array([1, 4, 2]), np.array([3]), np.zeros((0,), dtype=np.int64)]
    return boxes, labels


def pad(boxes: list[np.ndarray], labels: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    g = max(1, max(len(b) for b in boxes))
    out_b, out_l = np.zeros((len(boxes), g, 4)), np.full((len(boxes), g), -1, dtype=np.int64)
    for i, (b, lab) in enumerate(zip(boxes, labels, strict=True)):
        out_b[i, : len(b)], out_l[i, : len(b)] = b, lab
    return out_b, out_l


def make_batch(seed: int = 0):
    rng = np.random.default_rng(seed)
    anchors = make_anchors(rng)
    gt_boxes, gt_labels = make_ground_truth(rng)
    n, a = len(gt_boxes), len(anchors)
    deltas = rng.normal(0.0, 0.3, size=(n, a, 4))
    logits = rng.normal(-1.0, 1.5, size=(n, a, NUM_CLASSES))
    return deltas, logits, anchors, gt_boxes, gt_labels


def test_the_data_exercises_every_matching_case():
    _, _, anchors, gt_boxes, _ = make_batch()
    iou = ref_box_iou(gt_boxes[0], anchors)
    matched = ref_matcher(iou)
    assert (matched >= 0).sum() >= 3 and (matched == -1).sum() > 0 and (matched == -2).sum() > 0
    # the small box overlaps no anchor at 0.5: it is positive only through the low-quality rule
    assert iou[2].max() < 0.4 and matched[iou[2].argmax()] == 2
    # and the IoUs stay clear of the thresholds, so float32 takes the same decisions
    assert np.min(np.abs(iou - 0.5)) > 1e-3 and np.min(np.abs(iou - 0.4)) > 1e-3


# -- numbers --------------------------------------------------------------------------------------
@pytest.mark.parametrize("box_loss", BOX_LOSSES)
@pytest.mark.parametrize("normalize", ["image", "batch"])
def test_matches_torchvision_transcription(xp, box_loss, normalize):
    deltas, logits, anchors, gt_boxes, gt_labels = make_batch()
    expected = ref_retinanet(deltas, logits, anchors, gt_boxes, gt_labels, box_loss=box_loss, normalize=normalize)
    boxes, labels = pad(gt_boxes, gt_labels)
    recipe = pl.get_recipe("retinanet", num_classes=NUM_CLASSES, box_loss=box_loss, normalize=normalize)
    result = recipe(xp.asarray(deltas), xp.asarray(logits), xp.asarray(anchors), xp.asarray(boxes), xp.asarray(labels))
    assert set(result.components) == {"classification", "box_regression"}
    for key, value in expected.items():
        np.testing.assert_allclose(xp.to_numpy(result.components[key]), value, rtol=xp.rtol * 10, atol=xp.atol,
                                   err_msg=key)
    np.testing.assert_allclose(xp.to_numpy(result.total), sum(expected.values()), rtol=xp.rtol * 10, atol=xp.atol)


def test_smooth_l1_beta_focal_options_and_other_thresholds(xp):
    deltas, logits, anchors, gt_boxes, gt_labels = make_batch(seed=3)
    options = {"alpha": 0.6, "gamma": 1.5}
    expected = ref_retinanet(deltas, logits, anchors, gt_boxes, gt_labels, box_loss="smooth_l1", beta=1 / 9,
                             high=0.6, low=0.3, allow_low_quality=False, **options)
    recipe = RetinaNetLoss(NUM_CLASSES, box_loss="smooth_l1", beta=1 / 9, fg_iou_threshold=0.6,
                           bg_iou_threshold=0.3, allow_low_quality_matches=False, **options)
    # per-image ground truth, as torchvision takes it
    result = recipe(xp.asarray(deltas), xp.asarray(logits), xp.asarray(anchors),
                    [xp.asarray(b) for b in gt_boxes], [xp.asarray(lab) for lab in gt_labels])
    for key, value in expected.items():
        np.testing.assert_allclose(xp.to_numpy(result.components[key]), value, rtol=xp.rtol * 10, atol=xp.atol)


def test_per_image_and_padded_ground_truth_agree(xp):
    deltas, logits, anchors, gt_boxes, gt_labels = make_batch(seed=1)
    recipe = pl.get_recipe("retinanet", num_classes=NUM_CLASSES, box_loss="giou")
    d, lg, an = xp.asarray(deltas), xp.asarray(logits), xp.asarray(anchors)
    listed = recipe(d, lg, an, [xp.asarray(b) for b in gt_boxes], [xp.asarray(lab) for lab in gt_labels])
    boxes, labels = pad(gt_boxes, gt_labels)
    boxes = np.concatenate([boxes, np.zeros((3, 2, 4))], axis=1)  # extra padding changes nothing
    labels = np.concatenate([labels, np.full((3, 2), -1)], axis=1)
    padded = recipe(d, lg, an, xp.asarray(boxes), xp.asarray(labels))
    for key in ("classification", "box_regression"):
        np.testing.assert_allclose(xp.to_numpy(padded.components[key]), xp.to_numpy(listed.components[key]),
                                   rtol=xp.rtol, atol=xp.atol)


def test_per_image_anchors(xp):
    deltas, logits, anchors, gt_boxes, gt_labels = make_batch(seed=2)
    per_image = np.stack([anchors, anchors + 0.25, anchors - 0.25])
    expected = [ref_retinanet(deltas[i : i + 1], logits[i : i + 1], per_image[i], gt_boxes[i : i + 1],
                              gt_labels[i : i + 1]) for i in range(3)]
    boxes, labels = pad(gt_boxes, gt_labels)
    result = pl.get_recipe("retinanet", num_classes=NUM_CLASSES)(
        xp.asarray(deltas), xp.asarray(logits), xp.asarray(per_image), xp.asarray(boxes), xp.asarray(labels))
    for key in ("classification", "box_regression"):  # per-image normalisation: the mean of the single images
        np.testing.assert_allclose(xp.to_numpy(result.components[key]), np.mean([e[key] for e in expected]),
                                   rtol=xp.rtol * 10, atol=xp.atol)


@pytest.mark.parametrize("box_loss", ["l1", "giou"])
def test_empty_ground_truth(xp, box_loss):
    deltas, logits, anchors, _, _ = make_batch()
    empty = [np.zeros((0, 4))] * 3
    empty_labels = [np.zeros((0,), dtype=np.int64)] * 3
    expected = ref_retinanet(deltas, logits, anchors, empty, empty_labels)
    recipe = pl.get_recipe("retinanet", num_classes=NUM_CLASSES, box_loss=box_loss)
    d, lg, an = xp.asarray(deltas), xp.asarray(logits), xp.asarray(anchors)
    for boxes, labels in [(np.zeros((3, 0, 4)), np.zeros((3, 0), dtype=np.int64)),
                          (np.ones((3, 2, 4)), np.full((3, 2), -1))]:
        result = recipe(d, lg, an, xp.asarray(boxes), xp.asarray(labels))
        assert float(xp.to_numpy(result.components["box_regression"])) == 0.0
        cls = float(xp.to_numpy(result.components["classification"]))
        assert math.isfinite(cls) and cls > 0
        np.testing.assert_allclose(cls, expected["classification"], rtol=xp.rtol * 10, atol=xp.atol)


def test_ignored_and_background_anchors_take_no_part():
    deltas, logits, anchors, gt_boxes, gt_labels = make_batch()
    recipe = RetinaNetLoss(NUM_CLASSES)
    targets = recipe.assign(anchors, *pad(gt_boxes, gt_labels))
    base = recipe.loss(deltas, logits, targets)
    ignored = targets.matches == Matcher.BETWEEN_THRESHOLDS
    assert ignored.any()
    changed_logits = np.where(ignored[..., None], 50.0, logits)
    changed_deltas = np.where(targets.positive[..., None], deltas, 1e3)
    other = recipe.loss(changed_deltas, changed_logits, targets)
    for key in base.components:
        assert float(other.components[key]) == pytest.approx(float(base.components[key]), rel=1e-12)
    # and a positive's logit does count
    moved = recipe.loss(deltas, np.where(targets.positive[..., None], logits + 1.0, logits), targets)
    assert float(moved.components["classification"]) != pytest.approx(float(base.components["classification"]))


def test_stages_give_the_call_and_weights_scale_components():
    deltas, logits, anchors, gt_boxes, gt_labels = make_batch()
    boxes, labels = pad(gt_boxes, gt_labels)
    recipe = RetinaNetLoss(NUM_CLASSES, weights={"box_regression": 2.5})
    targets = recipe.assign(anchors, boxes, labels)
    assert targets.labels.shape == (3, 64) and targets.matched_boxes.shape == (3, 64, 4)
    assert set(np.unique(targets.labels[targets.positive])) <= {1, 2, 3, 4}
    assert (targets.labels[~targets.positive] == -1).all()
    staged = recipe.loss(deltas, logits, targets)
    called = recipe(deltas, logits, anchors, boxes, labels)
    expected = ref_retinanet(deltas, logits, anchors, gt_boxes, gt_labels)
    assert float(staged.total) == float(called.total)
    assert float(called.components["box_regression"]) == pytest.approx(2.5 * expected["box_regression"], rel=1e-10)
    assert float(called.total) == pytest.approx(expected["classification"] + 2.5 * expected["box_regression"])


def test_gradients_match_finite_differences():
    torch = pytest.importorskip("torch")
    deltas, logits, anchors, gt_boxes, gt_labels = make_batch()
    boxes, labels = pad(gt_boxes, gt_labels)
    positive = np.flatnonzero(ref_matcher(ref_box_iou(gt_boxes[0], anchors)) >= 0)
    rng = np.random.default_rng(5)
    h = 1e-6
    for box_loss in ("smooth_l1", "giou"):
        recipe = pl.get_recipe("retinanet", num_classes=NUM_CLASSES, box_loss=box_loss, beta=0.5)
        d = torch.tensor(deltas, requires_grad=True)
        lg = torch.tensor(logits, requires_grad=True)
        recipe(d, lg, torch.tensor(anchors), torch.tensor(boxes), torch.tensor(labels)).total.backward()

        def f(dd, ll, box_loss=box_loss):
            out = ref_retinanet(dd, ll, anchors, gt_boxes, gt_labels, box_loss=box_loss, beta=0.5)
            return out["classification"] + out["box_regression"]

        for index in [(0, int(positive[0]), k) for k in range(4)] + [(1, int(rng.integers(64)), 2)]:
            up, down = deltas.copy(), deltas.copy()
            up[index] += h
            down[index] -= h
            numeric = (f(up, logits) - f(down, logits)) / (2 * h)
            assert float(d.grad[index]) == pytest.approx(numeric, abs=1e-6), (box_loss, index)
        for index in [(0, int(positive[0]), int(labels[0, 0])), *((int(rng.integers(3)), int(rng.integers(64)),
                                                                   int(rng.integers(NUM_CLASSES))) for _ in range(4))]:
            up, down = logits.copy(), logits.copy()
            up[index] += h
            down[index] -= h
            numeric = (f(deltas, up) - f(deltas, down)) / (2 * h)
            assert float(lg.grad[index]) == pytest.approx(numeric, abs=1e-6), (box_loss, index)
        assert float(d.grad[0, int(positive[0])].abs().sum()) > 0


@pytest.mark.parametrize("normalize", ["image", "batch"])
def test_normalize_over_world_without_a_process_group_is_local(normalize):
    deltas, logits, anchors, gt_boxes, gt_labels = make_batch()
    boxes, labels = pad(gt_boxes, gt_labels)
    expected = ref_retinanet(deltas, logits, anchors, gt_boxes, gt_labels, normalize=normalize)
    recipe = pl.get_recipe("retinanet", num_classes=NUM_CLASSES, normalize=normalize, normalize_over="world")
    result = recipe(deltas, logits, anchors, boxes, labels)
    for key, value in expected.items():
        assert float(result.components[key]) == pytest.approx(value, rel=1e-12)


# -- the conformance kit ---------------------------------------------------------------------------
def _inputs(rng):
    deltas, logits, anchors, gt_boxes, gt_labels = make_batch(seed=int(rng.integers(0, 100)))
    return (deltas, logits, anchors, *pad(gt_boxes, gt_labels))


def _per_image_inputs(rng):
    deltas, logits, anchors, gt_boxes, gt_labels = make_batch(seed=int(rng.integers(0, 100)))
    return deltas, logits, anchors, gt_boxes, gt_labels


def _empty_inputs(rng):
    deltas, logits, anchors, _, _ = make_batch(seed=int(rng.integers(0, 100)))
    return deltas, logits, anchors, np.zeros((3, 2, 4)), np.full((3, 2), -1)


@pytest.mark.parametrize(
    ("config", "make_inputs"),
    [
        ({}, _inputs),
        ({"box_loss": "giou", "normalize": "batch"}, _inputs),
        ({"box_loss": "smooth_l1", "beta": 1 / 9}, _per_image_inputs),
    ],
    ids=["l1-image", "giou-batch", "smooth_l1-per-image-gt"],
)
def test_conformance(config, make_inputs):
    report = check_recipe("retinanet", make_inputs, config={"num_classes": NUM_CLASSES, **config},
                          make_empty_inputs=_empty_inputs)
    assert set(report.components) == {"classification", "box_regression"}
    assert "numpy" in report.cases and len(report.cases) >= 2


# -- configuration and bad input -------------------------------------------------------------------
def test_bad_configuration_and_input_are_named():
    with pytest.raises(ValueError, match="box_loss"):
        RetinaNetLoss(3, box_loss="l2")
    with pytest.raises(ValueError, match="normalize"):
        RetinaNetLoss(3, normalize="anchors")
    with pytest.raises(ValueError, match="num_classes"):
        RetinaNetLoss(0)
    with pytest.raises(ValueError, match="weight"):
        RetinaNetLoss(3, weights={"loc": 1.0})
    with pytest.raises(ValueError, match="normalize_over"):
        RetinaNetLoss(3, normalize_over="global")
    deltas, logits, anchors, gt_boxes, gt_labels = make_batch()
    boxes, labels = pad(gt_boxes, gt_labels)
    recipe = RetinaNetLoss(NUM_CLASSES)
    bad = labels.copy()
    bad[1, 0] = NUM_CLASSES
    with pytest.raises(ValueError, match=r"gt_labels\[1\]\[0\]"):
        recipe(deltas, logits, anchors, boxes, bad)
    flipped = boxes.copy()
    flipped[0, 1, [0, 2]] = flipped[0, 1, [2, 0]]
    with pytest.raises(ValueError, match="box 1 of image 0"):
        recipe(deltas, logits, anchors, flipped, labels)
    with pytest.raises(ValueError, match="class_logits"):
        recipe(deltas, logits[..., :3], anchors, boxes, labels)
    with pytest.raises(ValueError, match="box_deltas"):
        recipe(deltas[:, :10], logits, anchors, boxes, labels)
    with pytest.raises(ValueError, match="anchors"):
        recipe(deltas, logits, anchors[:10], boxes, labels)
    torch = pytest.importorskip("torch")
    with pytest.raises(TypeError):
        recipe(deltas, torch.tensor(logits), anchors, boxes, labels)


# -- packaging -------------------------------------------------------------------------------------
def _installed() -> bool:
    try:
        importlib.metadata.distribution("polyloss-retinanet")
    except importlib.metadata.PackageNotFoundError:
        return False
    return True


@pytest.mark.skipif(not _installed(), reason="polyloss-retinanet is not pip-installed (entry point absent)")
def test_entry_point_registers_both_recipes_from_this_distribution(tmp_path):
    eps = importlib.metadata.entry_points(group="polyloss")
    assert [ep.value for ep in eps if ep.name == "retinanet"] == ["polyloss_retinanet"]
    # a fresh interpreter, away from the test's sys.path tweaks: only the entry point can register them
    env = {k: v for k, v in os.environ.items() if not k.startswith("POLYLOSS_")}
    env["PYTHONPATH"] = str(Path(pl.__file__).resolve().parent.parent)
    code = (
        "import sys, polyloss as pl\n"
        "from polyloss._registry import registry\n"
        "print(pl.recipes())\n"
        "print(registry.provider('recipe', 'retinanet'), registry.provider('recipe', 'ssd_focal'))\n"
        "print('torch' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, env=env,
                         check=True)
    recipes, providers, torch_loaded = out.stdout.strip().splitlines()
    assert "'retinanet'" in recipes and "'ssd_focal'" in recipes, out.stderr
    assert providers == "('retinanet', 'polyloss-retinanet') ('retinanet', 'polyloss-retinanet')"
    assert torch_loaded == "False"  # loading the plugin imports no array library


@pytest.mark.filterwarnings("ignore:Explicitly requested dtype int64:UserWarning")  # JAX without x64: int32
def test_under_jax_jit_when_the_jax_plugin_is_installed():
    jax = pytest.importorskip("jax")
    if "jax" not in pl.backends():
        pytest.skip("polyloss-jax is not installed")
    jnp = jax.numpy
    deltas, logits, anchors, gt_boxes, gt_labels = make_batch()
    boxes, labels = pad(gt_boxes, gt_labels)
    expected = ref_retinanet(deltas, logits, anchors, gt_boxes, gt_labels, box_loss="giou")
    recipe = pl.get_recipe("retinanet", num_classes=NUM_CLASSES, box_loss="giou", validate=False)
    dtype = jnp.float64 if jax.config.read("jax_enable_x64") else jnp.float32
    a, b, lab = jnp.asarray(anchors, dtype=dtype), jnp.asarray(boxes, dtype=dtype), jnp.asarray(labels)

    def total(d, lg):
        return recipe(d, lg, a, b, lab).total

    d, lg = jnp.asarray(deltas, dtype=dtype), jnp.asarray(logits, dtype=dtype)
    value = float(jax.jit(total)(d, lg))
    assert value == pytest.approx(expected["classification"] + expected["box_regression"], rel=1e-5)
    grads = jax.jit(jax.grad(total, argnums=(0, 1)))(d, lg)
    assert all(bool(jnp.all(jnp.isfinite(g))) for g in grads)
