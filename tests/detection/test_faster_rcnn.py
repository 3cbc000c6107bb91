"""The "faster_rcnn" recipe against float64 NumPy transcriptions of torchvision.

These run on every backend; test_torchvision_recipes.py compares with
torchvision itself. The references below transcribe, one image at a time with
Python loops, ``RegionProposalNetwork.assign_targets_to_anchors`` and
``compute_loss`` and ``RoIHeads.select_training_samples`` and ``fastrcnn_loss``.
Sampling is made deterministic by batch sizes large enough that every
candidate is taken; the sampler itself is tested on its counts and seeds.
One deliberate difference is built into the reference: a low-quality match
needs an IoU above 0 (see the Matcher).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from _detection import anchor_grid
from _detection import encode
from _detection import finite_differences
from _detection import iou
from _detection import pad
from _detection import random_gt
from _detection import smooth_l1

import polyloss as pl
from polyloss.detection.faster_rcnn import AnchorTargets
from polyloss.detection.faster_rcnn import FasterRCNNLoss

C = 4
BIG = {"rpn_batch_size": 100_000, "roi_batch_size": 100_000}


# -- reference ------------------------------------------------------------------------
def bce_logits(x: float, y: float) -> float:
    return max(x, 0.0) - x * y + math.log1p(math.exp(-abs(x)))


def cross_entropy(z: np.ndarray, t: int) -> float:
    m = max(z)
    return m + math.log(sum(math.exp(v - m) for v in z)) - z[t]


def match(gt, preds, high, low, allow_low):
    q = np.array([[iou(g, p) for p in preds] for g in gt])
    matches = []
    for j in range(len(preds)):
        best = int(np.argmax(q[:, j]))
        v = q[best, j]
        matches.append(best if v >= high else (-1 if v < low else -2))
    if allow_low:
        all_matches = [int(np.argmax(q[:, j])) for j in range(len(preds))]
        for i in range(len(gt)):
            highest = q[i].max()
            if highest <= 0:
                continue  # polyloss's rule: no low-quality match at IoU 0
            for j in range(len(preds)):
                if q[i, j] == highest:
                    matches[j] = all_matches[j]
    return matches


def ref_rpn(anchors, objectness, deltas, gt_list, *, fg=0.7, bg=0.3, beta=1 / 9, weights=(1, 1, 1, 1)):
    """RPN assign_targets_to_anchors + compute_loss with every candidate sampled."""
    obj_terms, box_sum, n_sampled = [], 0.0, 0
    for i, gt in enumerate(gt_list):
        if len(gt) == 0:
            labels, matches = [0.0] * len(anchors), [-1] * len(anchors)
        else:
            matches = match(gt, anchors, fg, bg, True)
            labels = [1.0 if m >= 0 else (0.0 if m == -1 else -1.0) for m in matches]
        for a in range(len(anchors)):
            if labels[a] < 0:
                continue
            n_sampled += 1
            obj_terms.append(bce_logits(objectness[i, a], labels[a]))
            if labels[a] == 1.0:
                t = encode(gt[matches[a]], anchors[a], weights)
                box_sum += sum(smooth_l1(deltas[i, a, k] - t[k], beta) for k in range(4))
    if n_sampled == 0:
        return 0.0, 0.0
    return sum(obj_terms) / n_sampled, box_sum / n_sampled


def ref_select(proposals, gt, labels, *, fg=0.5, bg=0.5, weights=(10, 10, 5, 5)):
    """select_training_samples for one image, every candidate sampled: [(box, label, target)]."""
    props = np.concatenate([proposals, gt.reshape(-1, 4)], axis=0)
    if len(gt) == 0:
        clamped, labs = [0] * len(props), [0] * len(props)
    else:
        m = match(gt, props, fg, bg, False)
        clamped = [max(v, 0) for v in m]
        labs = [int(labels[c]) if v >= 0 else (0 if v == -1 else -1) for c, v in zip(clamped, m, strict=True)]
    out = []
    for k in range(len(props)):
        if labs[k] < 0:
            continue
        target = encode(gt[clamped[k]], props[k], weights) if labs[k] > 0 else None
        out.append((props[k], labs[k], target))
    return out


def ref_fastrcnn(selected, class_logits, box_deltas, *, beta=1 / 9):
    """fastrcnn_loss over the concatenated samples; logits row k of image i belongs to selected[i][k]."""
    ce, box_sum, n = 0.0, 0.0, 0
    for i, rows in enumerate(selected):
        for k, (_, label, target) in enumerate(rows):
            n += 1
            ce += cross_entropy(class_logits[i, k], label)
            if label > 0:
                box_sum += sum(smooth_l1(box_deltas[i, k, label, j] - target[j], beta) for j in range(4))
    return (ce / n, box_sum / n) if n else (0.0, 0.0)


# -- data -------------------------------------------------------------------------------------
def make_anchors(size: int = 5) -> np.ndarray:
    return anchor_grid(size)


def make_gt(rng, counts):
    return random_gt(rng, counts, C, 3.0, (1.0, 2.5))


def rtol_of(xp):
    return 1e-5 if xp.dtype_name == "float64" else 1e-4


def comps(xp, result):
    return {k: float(xp.to_numpy(v)) for k, v in result.components.items()}


# -- RPN -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("config", [{}, {"rpn_fg_iou": 0.5, "rpn_bg_iou": 0.2, "beta": 0.5}])
def test_rpn_matches_torchvision_reference(xp, config):
    rng = np.random.default_rng(0)
    anchors = make_anchors()
    gt_list, label_list = make_gt(rng, [2, 0, 3])
    n, a = 3, len(anchors)
    objectness = rng.normal(size=(n, a)) * 2
    deltas = rng.normal(size=(n, a, 4)) * 0.5
    ref = ref_rpn(anchors, objectness, deltas, gt_list,
                  fg=config.get("rpn_fg_iou", 0.7), bg=config.get("rpn_bg_iou", 0.3), beta=config.get("beta", 1 / 9))
    boxes, labels = pad(gt_list, label_list, g=4)
    recipe = pl.get_recipe("faster_rcnn", num_classes=C, seed=0, **BIG, **config)
    got = comps(xp, recipe.rpn_loss(xp.asarray(anchors), xp.asarray(objectness), xp.asarray(deltas),
                                    xp.asarray(boxes), xp.asarray(labels)))
    assert set(got) == {"rpn_objectness", "rpn_box"}
    np.testing.assert_allclose([got["rpn_objectness"], got["rpn_box"]], ref, rtol=rtol_of(xp))
    assert ref[1] > 0  # some anchors are positive
    # per-image anchors (N, A, 4) give the same numbers
    tiled = comps(xp, recipe.rpn_loss(xp.asarray(np.tile(anchors[None], (n, 1, 1))), xp.asarray(objectness),
                                      xp.asarray(deltas), xp.asarray(boxes), xp.asarray(labels)))
    np.testing.assert_allclose([tiled["rpn_objectness"], tiled["rpn_box"]], ref, rtol=rtol_of(xp))
    # labels are optional for the RPN (every box real): the padded-with-None form needs no padding rows
    seq = comps(xp, recipe.rpn_loss(xp.asarray(anchors), xp.asarray(objectness), xp.asarray(deltas),
                                    [xp.asarray(g.reshape(-1, 4)) for g in gt_list]))
    np.testing.assert_allclose([seq["rpn_objectness"], seq["rpn_box"]], ref, rtol=rtol_of(xp))


def test_rpn_ground_truth_overlapping_nothing_makes_no_positive(xp):
    anchors = make_anchors(3)
    far = np.array([[[50.0, 50.0, 52.0, 52.0]]])
    recipe = pl.get_recipe("faster_rcnn", num_classes=C, **BIG)
    targets = recipe.assign_anchors(xp.asarray(anchors), recipe._gt(
        recipe.backend_of(xp.asarray(anchors), "anchors"), xp.asarray(far), None, xp.asarray(anchors), 1, True,
        labels_required=False))
    np.testing.assert_array_equal(xp.to_numpy(targets.labels), np.zeros((1, len(anchors))))
    rng = np.random.default_rng(1)
    obj = rng.normal(size=(1, len(anchors)))
    got = comps(xp, recipe.rpn_loss(xp.asarray(anchors), xp.asarray(obj), xp.asarray(np.zeros((1, len(anchors), 4))),
                                    xp.asarray(far)))
    assert got["rpn_box"] == 0.0
    np.testing.assert_allclose(got["rpn_objectness"], np.mean([bce_logits(x, 0.0) for x in obj[0]]),
                               rtol=rtol_of(xp))


def test_rpn_sampling_counts_and_seed(xp):
    rng = np.random.default_rng(2)
    anchors = make_anchors()
    gt_list, _ = make_gt(rng, [3, 3])
    boxes = np.stack(gt_list)
    recipe = pl.get_recipe("faster_rcnn", num_classes=C, rpn_batch_size=8, rpn_positive_fraction=0.25, seed=7)
    gt = recipe._gt(recipe.backend_of(xp.asarray(anchors), "anchors"), xp.asarray(boxes), None, xp.asarray(anchors),
                    2, True, labels_required=False)
    labels = xp.to_numpy(recipe.assign_anchors(xp.asarray(anchors), gt).labels)
    pos, neg = recipe.rpn_sampler(xp.asarray(labels), seed=recipe._seed(7, 0))
    pos, neg = xp.to_numpy(pos), xp.to_numpy(neg)
    for i in range(2):
        assert pos[i].sum() == min(2, (labels[i] == 1).sum())
        assert pos[i].sum() + neg[i].sum() == 8
    obj = rng.normal(size=(2, len(anchors)))
    deltas = rng.normal(size=(2, len(anchors), 4))
    args = (xp.asarray(anchors), xp.asarray(obj), xp.asarray(deltas), xp.asarray(boxes))
    first, again = comps(xp, recipe.rpn_loss(*args)), comps(xp, recipe.rpn_loss(*args))
    assert first == again  # an int seed: the same sample on every call
    other = comps(xp, recipe.rpn_loss(*args, seed=8))
    assert other != first
    fresh = [comps(xp, recipe.rpn_loss(*args, seed=None)) for _ in range(4)]
    assert any(f != fresh[0] for f in fresh[1:])


def test_rpn_loss_runs_on_an_overridden_assign_anchors(xp):
    rng = np.random.default_rng(12)
    anchors = make_anchors()
    gt_list, _ = make_gt(rng, [2, 3])
    boxes = np.stack([g[:2] for g in gt_list])
    deltas = rng.normal(size=(2, len(anchors), 4))
    obj = rng.normal(size=(2, len(anchors)))

    class TargetsAreTheDeltas(FasterRCNNLoss):
        def assign_anchors(self, anchors, gt):
            return AnchorTargets(labels=super().assign_anchors(anchors, gt).labels, box_targets=xp.asarray(deltas))

    args = (xp.asarray(anchors), xp.asarray(obj), xp.asarray(deltas), xp.asarray(boxes))
    base = comps(xp, FasterRCNNLoss(num_classes=C, seed=0).rpn_loss(*args))
    got = comps(xp, TargetsAreTheDeltas(num_classes=C, seed=0).rpn_loss(*args))
    assert base["rpn_box"] > 0 and got["rpn_box"] == 0.0
    assert got["rpn_objectness"] == pytest.approx(base["rpn_objectness"], rel=1e-12)


# -- box head --------------------------------------------------------------------------------------
def run_head(xp, recipe, proposals, gt_list, label_list, rng, *, sequence=False, g=4):
    boxes, labels = pad(gt_list, label_list, g=g)
    if sequence:
        sampled = recipe.sample_proposals([xp.asarray(p) for p in proposals],
                                          [xp.asarray(g.reshape(-1, 4)) for g in gt_list],
                                          [xp.asarray(lab) for lab in label_list])
    else:
        sampled = recipe.sample_proposals(xp.asarray(np.stack(proposals)), xp.asarray(boxes), xp.asarray(labels))
    n, r = sampled.labels.shape
    class_logits = rng.normal(size=(n, r, C))
    box_deltas = rng.normal(size=(n, r, C, 4)) * 0.3
    result = recipe.roi_loss(xp.asarray(class_logits), xp.asarray(box_deltas), sampled)
    return sampled, class_logits, box_deltas, result


@pytest.mark.parametrize("config", [{}, {"roi_bg_iou": 0.3, "roi_fg_iou": 0.6}])
def test_head_matches_torchvision_reference(xp, config):
    rng = np.random.default_rng(3)
    gt_list, label_list = make_gt(rng, [2, 0, 3])
    proposals = [make_anchors(4)[rng.permutation(48)[:20]] + rng.normal(scale=0.2, size=(20, 4)) for _ in range(3)]
    recipe = pl.get_recipe("faster_rcnn", num_classes=C, **BIG, **config)
    sampled, class_logits, box_deltas, result = run_head(xp, recipe, proposals, gt_list, label_list, rng)
    assert tuple(sampled.boxes.shape) == (3, 24, 4)  # R = min(roi_batch_size, R0 + G)
    fg, bg = config.get("roi_fg_iou", 0.5), config.get("roi_bg_iou", 0.5)
    selected = [ref_select(proposals[i], gt_list[i], label_list[i], fg=fg, bg=bg) for i in range(3)]
    s_boxes, s_labels, s_targets = (xp.to_numpy(t) for t in (sampled.boxes, sampled.labels, sampled.targets))
    for i in range(3):
        k = len(selected[i])
        np.testing.assert_array_equal(s_labels[i, :k], [lab for _, lab, _ in selected[i]])
        assert np.all(s_labels[i, k:] == -1)
        np.testing.assert_allclose(s_boxes[i, :k], np.array([b for b, _, _ in selected[i]]), rtol=1e-6)
        for j, (_, lab, target) in enumerate(selected[i]):
            if lab > 0:
                np.testing.assert_allclose(s_targets[i, j], target, rtol=rtol_of(xp), atol=1e-6)
            else:
                assert np.all(s_targets[i, j] == 0)
    assert any(lab == 0 for _, lab, _ in selected[1])  # the empty image supplies background samples
    ref = ref_fastrcnn(selected, class_logits, box_deltas)
    got = comps(xp, result)
    assert set(got) == {"roi_classifier", "roi_box"}
    np.testing.assert_allclose([got["roi_classifier"], got["roi_box"]], ref, rtol=rtol_of(xp))
    assert ref[1] > 0


def test_head_sequences_equal_padded(xp):
    rng = np.random.default_rng(4)
    gt_list, label_list = make_gt(rng, [1, 3])
    proposals = [make_anchors(4)[:20], make_anchors(4)[20:40]]
    recipe = pl.get_recipe("faster_rcnn", num_classes=C, **BIG)
    padded = run_head(xp, recipe, proposals, gt_list, label_list, np.random.default_rng(0), g=None)
    seq = run_head(xp, recipe, proposals, gt_list, label_list, np.random.default_rng(0), sequence=True)
    for a, b in zip(padded[0].__dict__.values(), seq[0].__dict__.values(), strict=True):
        if a is None or b is None:  # validated ground truth carries no non-finite flag (None means False)
            assert a is None and b is None
            continue
        np.testing.assert_array_equal(xp.to_numpy(a), xp.to_numpy(b))
    assert comps(xp, padded[3]) == comps(xp, seq[3])


def test_head_sequences_of_different_lengths(xp):
    rng = np.random.default_rng(5)
    gt_list, label_list = make_gt(rng, [2, 1])
    proposals = [make_anchors(4)[:25], make_anchors(4)[25:32]]
    recipe = pl.get_recipe("faster_rcnn", num_classes=C, **BIG)
    sampled = recipe.sample_proposals([xp.asarray(p) for p in proposals], [xp.asarray(g) for g in gt_list],
                                      [xp.asarray(lab) for lab in label_list])
    labels = xp.to_numpy(sampled.labels)
    for i in range(2):
        selected = ref_select(proposals[i], gt_list[i], label_list[i])
        np.testing.assert_array_equal(labels[i, : len(selected)], [lab for _, lab, _ in selected])
        assert np.all(labels[i, len(selected):] == -1)  # padding proposals are never sampled


def test_head_sampling_counts(xp):
    rng = np.random.default_rng(6)
    gt_list, label_list = make_gt(rng, [3, 3])
    proposals = [make_anchors(4) + rng.normal(scale=0.1, size=(48, 4)) for _ in range(2)]
    recipe = pl.get_recipe("faster_rcnn", num_classes=C, roi_batch_size=16, roi_positive_fraction=0.25, seed=1)
    boxes, labels = pad(gt_list, label_list)
    sampled = recipe.sample_proposals(xp.asarray(np.stack(proposals)), xp.asarray(boxes), xp.asarray(labels))
    got = xp.to_numpy(sampled.labels)
    assert got.shape == (2, 16)
    for i in range(2):
        assert (got[i] > 0).sum() == 4  # positives are plentiful (ground truth appended): capped at 16 x 0.25
        assert (got[i] == 0).sum() == 12
    again = recipe.sample_proposals(xp.asarray(np.stack(proposals)), xp.asarray(boxes), xp.asarray(labels))
    np.testing.assert_array_equal(xp.to_numpy(again.boxes), xp.to_numpy(sampled.boxes))


def test_combine_and_call(xp):
    rng = np.random.default_rng(7)
    anchors = make_anchors(3)
    gt_list, label_list = make_gt(rng, [2, 1])
    boxes, labels = pad(gt_list, label_list)
    recipe = pl.get_recipe("faster_rcnn", num_classes=C, seed=3, weights={"roi_box": 2.0})
    obj = xp.asarray(rng.normal(size=(2, len(anchors))))
    deltas = xp.asarray(rng.normal(size=(2, len(anchors), 4)))
    rpn = recipe.rpn_loss(xp.asarray(anchors), obj, deltas, xp.asarray(boxes), xp.asarray(labels))
    sampled, class_logits, box_deltas, roi = run_head(xp, recipe, [anchors, anchors], gt_list, label_list, rng)
    both = recipe.combine(rpn, roi)
    assert list(both.components) == ["rpn_objectness", "rpn_box", "roi_classifier", "roi_box"]
    np.testing.assert_allclose(float(xp.to_numpy(both.total)), sum(comps(xp, both).values()), rtol=1e-6)
    unweighted = pl.get_recipe("faster_rcnn", num_classes=C).roi_loss(
        xp.asarray(class_logits), xp.asarray(box_deltas), sampled)
    np.testing.assert_allclose(comps(xp, roi)["roi_box"], 2 * comps(xp, unweighted)["roi_box"], rtol=1e-6)
    called = recipe(xp.asarray(anchors), obj, deltas, xp.asarray(boxes), xp.asarray(labels),
                    xp.asarray(class_logits), xp.asarray(box_deltas), sampled)
    assert comps(xp, called) == comps(xp, both)


def test_empty_ground_truth_is_finite(xp):
    anchors = make_anchors(3)
    rng = np.random.default_rng(8)
    recipe = pl.get_recipe("faster_rcnn", num_classes=C, **BIG)
    gb, gl = np.zeros((2, 0, 4)), np.zeros((2, 0), dtype=np.int64)
    obj = rng.normal(size=(2, len(anchors)))
    rpn = comps(xp, recipe.rpn_loss(xp.asarray(anchors), xp.asarray(obj), xp.asarray(np.zeros((2, len(anchors), 4))),
                                    xp.asarray(gb), xp.asarray(gl)))
    # torchvision: an image without ground truth supplies negatives only
    assert rpn["rpn_box"] == 0.0
    np.testing.assert_allclose(rpn["rpn_objectness"], np.mean([bce_logits(x, 0.0) for x in obj.ravel()]),
                               rtol=rtol_of(xp))
    _, _, _, roi = run_head(xp, recipe, [anchors[:5], anchors[5:10]], [np.zeros((0, 4))] * 2,
                            [np.zeros(0, dtype=np.int64)] * 2, rng)
    got = comps(xp, roi)
    assert got["roi_box"] == 0.0 and np.isfinite(got["roi_classifier"])
    # nothing sampled at all: 0, not NaN
    empty = pl.get_recipe("faster_rcnn", num_classes=C, rpn_batch_size=0)
    assert comps(xp, empty.rpn_loss(xp.asarray(anchors), xp.asarray(obj), xp.asarray(np.zeros((2, len(anchors), 4))),
                                    xp.asarray(gb))) == {"rpn_objectness": 0.0, "rpn_box": 0.0}


def test_degenerate_ground_truth_raises(xp):
    recipe = pl.get_recipe("faster_rcnn", num_classes=C)
    boxes = np.array([[[0.0, 0.0, 1.0, 1.0]], [[1.0, 2.0, 3.0, 2.0]]])
    labels = np.array([[1], [2]])
    props = np.tile(make_anchors(2)[None], (2, 1, 1))
    with pytest.raises(ValueError, match="box 0 of image 1"):
        recipe.sample_proposals(xp.asarray(props), xp.asarray(boxes), xp.asarray(labels))
    with pytest.raises(ValueError, match="box 0 of image 1"):
        recipe.rpn_loss(xp.asarray(props[0]), xp.asarray(np.zeros((2, 12))), xp.asarray(np.zeros((2, 12, 4))),
                        xp.asarray(boxes))
    recipe.sample_proposals(xp.asarray(props), xp.asarray(boxes), xp.asarray(labels), validate=False)
    with pytest.raises(ValueError, match="num_classes"):
        recipe.sample_proposals(xp.asarray(props[:1]), xp.asarray(boxes[:1]), xp.asarray(np.array([[C]])))


def test_bad_shapes():
    recipe = pl.get_recipe("faster_rcnn", num_classes=C)
    anchors = make_anchors(2)
    gt = np.array([[[0.0, 0.0, 1.0, 1.0]]])
    with pytest.raises(ValueError, match="rpn_deltas"):
        recipe.rpn_loss(anchors, np.zeros((1, 12)), np.zeros((1, 11, 4)), gt)
    with pytest.raises(ValueError, match="anchors"):
        recipe.rpn_loss(anchors[:5], np.zeros((1, 12)), np.zeros((1, 12, 4)), gt)
    sampled = recipe.sample_proposals(anchors[None], gt, np.array([[1]]))
    with pytest.raises(ValueError, match="class_logits"):
        recipe.roi_loss(np.zeros((1, 13, C + 1)), np.zeros((1, 13, C, 4)), sampled)
    with pytest.raises(ValueError, match="box_deltas"):
        recipe.roi_loss(np.zeros((1, 13, C)), np.zeros((1, 13, C, 3)), sampled)
    flat = recipe.roi_loss(np.zeros((1, 13, C)), np.zeros((1, 13, 4 * C)), sampled)  # (N, R, 4 C) accepted
    assert np.isfinite(float(flat.total))
    with pytest.raises(ValueError, match="seed"):
        pl.get_recipe("faster_rcnn", num_classes=C, seed=-1).rpn_loss(anchors, np.zeros((1, 12)),
                                                                        np.zeros((1, 12, 4)), gt)


def test_torch_gradients_match_finite_differences():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(9)
    anchors = make_anchors(3)
    gt_list, label_list = make_gt(rng, [2, 1])
    boxes, labels = pad(gt_list, label_list)
    a = len(anchors)
    obj = rng.normal(size=(2, a))
    deltas = rng.normal(size=(2, a, 4)) * 0.5
    recipe = FasterRCNNLoss(num_classes=C, **BIG)
    o_t = torch.tensor(obj, requires_grad=True)
    d_t = torch.tensor(deltas, requires_grad=True)
    recipe.rpn_loss(torch.tensor(anchors), o_t, d_t, torch.tensor(boxes), torch.tensor(labels)).total.backward()
    finite_differences(lambda obj, deltas: sum(ref_rpn(anchors, obj, deltas, gt_list)),
                       {"obj": obj, "deltas": deltas}, {"obj": o_t.grad.numpy(), "deltas": d_t.grad.numpy()}, rng,
                       per_array=10, rtol=1e-5, atol=1e-8)
    # the head
    proposals = [anchors + rng.normal(scale=0.1, size=anchors.shape) for _ in range(2)]
    sampled = recipe.sample_proposals(torch.tensor(np.stack(proposals)), torch.tensor(boxes), torch.tensor(labels))
    n, r = sampled.labels.shape
    logits = rng.normal(size=(n, r, C))
    bd = rng.normal(size=(n, r, C, 4)) * 0.3
    l_t = torch.tensor(logits, requires_grad=True)
    b_t = torch.tensor(bd, requires_grad=True)
    recipe.roi_loss(l_t, b_t, sampled).total.backward()
    selected = [ref_select(proposals[i], gt_list[i], label_list[i]) for i in range(2)]
    # rows past an image's samples are padding: the reference never reads them, the gradient is 0
    finite_differences(lambda logits, bd: sum(ref_fastrcnn(selected, logits, bd)),
                       {"logits": logits, "bd": bd}, {"logits": l_t.grad.numpy(), "bd": b_t.grad.numpy()}, rng,
                       rtol=1e-5, atol=1e-8)


def test_no_anchors_gives_zero(xp):
    recipe = pl.get_recipe("faster_rcnn", num_classes=C, seed=0)
    res = recipe.rpn_loss(xp.asarray(np.zeros((0, 4))), xp.asarray(np.zeros((2, 0))), xp.asarray(np.zeros((2, 0, 4))),
                          xp.asarray(np.array([[[0.0, 0.0, 2.0, 2.0]]] * 2)))
    assert comps(xp, res) == {"rpn_objectness": 0.0, "rpn_box": 0.0}
