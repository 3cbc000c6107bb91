"""The "ssd" and "faster_rcnn" recipes against the real torchvision detection code.

torchvision (through :func:`polyloss._torchvision.import_torchvision`) is
called, never transcribed: SSD's matching (``SSDMatcher`` on ``box_iou``, as
``SSD.forward``) and ``SSD.compute_loss`` with a namespace as ``self``; a real
``RegionProposalNetwork``'s ``assign_targets_to_anchors`` + ``box_coder.encode``
+ ``compute_loss``; a real ``RoIHeads``' ``select_training_samples`` and
``fastrcnn_loss``. Values and autograd gradients are compared (and polyloss's
closed-form ``value_and_grad`` too), in float64 at rtol 1e-9 and float32 at
rtol 1e-5.

Sampling is made comparable either by batch sizes that take every candidate,
or by handing polyloss's own sample to torchvision's ``compute_loss`` (its
``fg_bg_sampler`` replaced); torchvision's sampler is then compared by its
counts. torchvision's RPN makes its labels float32 whatever the anchors'
dtype (and ``binary_cross_entropy_with_logits`` then returns float32), so in
float64 the labels are cast to float64 before ``compute_loss`` (they are 0 / 1,
exact in both).

Inputs avoid the documented differences (SSD: positives at most a quarter of
the priors; RPN: every ground truth overlaps an anchor); one test per
difference shows it is real and as documented.
"""

from __future__ import annotations

import math
import types

import numpy as np
import pytest
from _detection import ANCHOR_SHAPES
from _detection import anchor_grid
from _detection import pad
from _detection import random_gt

import polyloss as pl
from polyloss._torchvision import import_torchvision
from polyloss.detection._base import normalize_ground_truth

torch = pytest.importorskip("torch")
torchvision = import_torchvision()

pytestmark = pytest.mark.skipif(torchvision is None, reason="torchvision is not installed (or cannot be imported)")

C = 4
BIG = {"rpn_batch_size": 100_000, "roi_batch_size": 100_000}
TORCH_DTYPES = {"float64": torch.float64, "float32": torch.float32}
TOL = {"float64": (1e-9, 1e-12), "float32": (1e-5, 1e-6)}


# -- helpers -------------------------------------------------------------------------------
def assert_close(actual, expected, dtype_name, what="value"):
    rtol, atol = TOL[dtype_name]
    np.testing.assert_allclose(np.asarray(actual, dtype=float), np.asarray(expected, dtype=float),
                               rtol=rtol, atol=atol, err_msg=what)


def tensor(a, dtype_name="float64", requires_grad=False):
    a = np.asarray(a)
    if a.dtype.kind in "iub":
        return torch.tensor(a, dtype=torch.int64)
    return torch.tensor(a, dtype=TORCH_DTYPES[dtype_name]).requires_grad_(requires_grad)


def check_two_terms(result, closed, tv_terms, inputs, dtype_name):
    """polyloss's components, autograd gradients and closed-form value and gradients against torchvision's.

    ``tv_terms``: component name -> torchvision's term (the last one must be positive);
    ``inputs``: argument name -> (polyloss leaf, torchvision leaf).
    """
    for name, term in tv_terms.items():
        assert_close(result.components[name].detach(), term.detach(), dtype_name, name)
    total_tv = sum(tv_terms.values())
    assert float(term.detach()) > 0
    result.total.backward()
    total_tv.backward()
    value, grads = closed
    assert_close(value.total, total_tv.detach(), dtype_name, "closed-form total")
    for name, (ours, theirs) in inputs.items():
        assert_close(ours.grad, theirs.grad, dtype_name, f"d/d {name}")
        assert_close(grads[name], theirs.grad, dtype_name, f"closed-form d/d {name}")


def leaves(arrays, dtype_name):
    """Two independent sets of leaf tensors holding the same data: one for polyloss, one for torchvision."""
    return ([tensor(a, dtype_name, requires_grad=True) for a in arrays],
            [tensor(a, dtype_name, requires_grad=True) for a in arrays])


def targets_of(gt_list, label_list, dtype_name):
    return [{"boxes": tensor(np.reshape(g, (-1, 4)), dtype_name), "labels": tensor(np.asarray(lab, dtype=np.int64))}
            for g, lab in zip(gt_list, label_list, strict=True)]


def tv_modules():
    from torchvision.models.detection import _utils as det_utils
    from torchvision.models.detection import roi_heads
    from torchvision.models.detection.rpn import RegionProposalNetwork
    from torchvision.models.detection.ssd import SSD
    from torchvision.ops import boxes as box_ops

    return types.SimpleNamespace(det_utils=det_utils, roi_heads=roi_heads, RPN=RegionProposalNetwork, SSD=SSD,
                                 box_ops=box_ops)


# -- SSD: torchvision driver ----------------------------------------------------------------
def tv_ssd_matches(priors, targets, threshold=0.5):
    """``SSD.forward``'s matching: ``SSDMatcher`` on ``box_iou``, all -1 for an image without ground truth."""
    tv = tv_modules()
    matcher = tv.det_utils.SSDMatcher(threshold)
    return [torch.full((priors.shape[0],), -1, dtype=torch.int64) if t["boxes"].numel() == 0
            else matcher(tv.box_ops.box_iou(t["boxes"], priors)) for t in targets]


def tv_ssd_loss(priors, targets, deltas, logits, *, threshold=0.5, ratio=3, box_weights=(10.0, 10.0, 5.0, 5.0)):
    """``SSD.compute_loss`` on torchvision's own matching; ``{"bbox_regression": ..., "classification": ...}``."""
    tv = tv_modules()
    model = types.SimpleNamespace(box_coder=tv.det_utils.BoxCoder(weights=box_weights), neg_to_pos_ratio=ratio)
    matched = tv_ssd_matches(priors, targets, threshold)
    return tv.SSD.compute_loss(model, targets, {"bbox_regression": deltas, "cls_logits": logits},
                               [priors] * len(targets), matched)


def ssd_scene(rng, counts, size=6, classes=C):
    priors = anchor_grid(size, ANCHOR_SHAPES[:2])
    gt_list, label_list = random_gt(rng, counts, classes, size - 1.5, (1.0, 3.0))
    n, p = len(counts), len(priors)
    return priors, gt_list, label_list, rng.normal(size=(n, p, 4)), rng.normal(size=(n, p, classes)) * 2


def ssd300_priors():
    """SSD300's 8732 default boxes (feature maps 38..1, torchvision's scales and aspect ratios), xyxy pixels."""
    maps = (38, 19, 10, 5, 3, 1)
    ratios = ((2,), (2, 3), (2, 3), (2, 3), (2,), (2,))
    scales = (0.07, 0.15, 0.33, 0.51, 0.69, 0.87, 1.05)
    out = []
    for k, f in enumerate(maps):
        s, extra = scales[k], math.sqrt(scales[k] * scales[k + 1])
        shapes = [(s, s), (extra, extra)]
        for a in ratios[k]:
            shapes += [(s * math.sqrt(a), s / math.sqrt(a)), (s / math.sqrt(a), s * math.sqrt(a))]
        centre = (np.arange(f) + 0.5) / f
        cy, cx = np.meshgrid(centre, centre, indexing="ij")
        wh = np.array(shapes)
        cxcy = np.stack([cx, cy], axis=-1)[:, :, None, :]  # (f, f, 1, 2)
        boxes = np.concatenate([cxcy - wh / 2, cxcy + wh / 2], axis=-1)  # (f, f, S, 4)
        out.append(boxes.reshape(-1, 4))
    return np.clip(np.concatenate(out), 0.0, 1.0) * 300.0


def check_ssd_precondition(priors, targets):
    """torchvision mines no positive again: at most a quarter of each image's priors are positive."""
    for m in tv_ssd_matches(tensor(priors), targets):
        assert 4 * int((m >= 0).sum()) <= len(priors)


# -- SSD -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype_name", ["float64", "float32"])
def test_ssd_matches_torchvision_values_and_gradients(dtype_name):
    rng = np.random.default_rng(0)
    priors, gt_list, label_list, deltas, logits = ssd_scene(rng, [2, 3, 0, 1])
    targets = targets_of(gt_list, label_list, dtype_name)
    check_ssd_precondition(priors, targets)
    boxes, labels = pad(gt_list, label_list, g=4)
    recipe = pl.get_recipe("ssd", num_classes=C)
    (d, lg), (d_tv, lg_tv) = leaves([deltas, logits], dtype_name)
    result = recipe(d, lg, tensor(priors, dtype_name), tensor(boxes, dtype_name), tensor(labels))
    theirs = tv_ssd_loss(tensor(priors, dtype_name), targets, d_tv, lg_tv)
    assert set(result.components) == {"loc", "conf"}
    assert_close(result.components["loc"].detach(), theirs["bbox_regression"].detach(), dtype_name, "loc")
    assert_close(result.components["conf"].detach(), theirs["classification"].detach(), dtype_name, "conf")
    assert float(theirs["bbox_regression"].detach()) > 0
    result.total.backward()
    (theirs["bbox_regression"] + theirs["classification"]).backward()
    assert_close(d.grad, d_tv.grad, dtype_name, "d/d box_deltas")
    assert_close(lg.grad, lg_tv.grad, dtype_name, "d/d class_logits")
    # the closed-form gradient (no autograd) too
    closed, grads = recipe.value_and_grad(tensor(deltas, dtype_name), tensor(logits, dtype_name),
                                          tensor(priors, dtype_name), tensor(boxes, dtype_name), tensor(labels))
    assert_close(closed.total, (theirs["bbox_regression"] + theirs["classification"]).detach(), dtype_name, "total")
    assert_close(grads["box_deltas"], d_tv.grad, dtype_name, "closed-form d/d box_deltas")
    assert_close(grads["class_logits"], lg_tv.grad, dtype_name, "closed-form d/d class_logits")


def test_ssd_assign_matches_torchvision_matching_and_encoding():
    rng = np.random.default_rng(1)
    priors, gt_list, label_list, _, _ = ssd_scene(rng, [3, 0, 2])
    targets = targets_of(gt_list, label_list, "float64")
    boxes, labels = pad(gt_list, label_list, g=5)
    assigned = pl.get_recipe("ssd", num_classes=C).assign(tensor(priors), tensor(boxes), tensor(labels))
    coder = tv_modules().det_utils.BoxCoder(weights=(10.0, 10.0, 5.0, 5.0))
    for i, m in enumerate(tv_ssd_matches(tensor(priors), targets)):
        np.testing.assert_array_equal(assigned.matches[i].numpy(), m.numpy(), err_msg=f"image {i}")
        fg = m >= 0
        np.testing.assert_array_equal(assigned.positive[i].numpy(), fg.numpy())
        expected_labels = torch.zeros_like(m)
        expected_labels[fg] = targets[i]["labels"][m[fg]]
        np.testing.assert_array_equal(assigned.labels[i].numpy(), expected_labels.numpy())
        expected = coder.encode_single(targets[i]["boxes"][m[fg]], tensor(priors)[fg])
        assert_close(assigned.box_targets[i][fg], expected, "float64", f"targets of image {i}")
        assert torch.all(assigned.box_targets[i][~fg] == 0)


@pytest.mark.parametrize("config", [{"iou_threshold": 0.4, "neg_pos_ratio": 2},
                                    {"iou_threshold": 0.6, "neg_pos_ratio": 1, "box_weights": (5.0, 5.0, 2.0, 2.0)}])
def test_ssd_config_matches_torchvision(config):
    rng = np.random.default_rng(2)
    priors, gt_list, label_list, deltas, logits = ssd_scene(rng, [2, 2, 3])
    targets = targets_of(gt_list, label_list, "float64")
    boxes, labels = pad(gt_list, label_list)
    result = pl.get_recipe("ssd", num_classes=C, **config)(
        tensor(deltas), tensor(logits), tensor(priors), tensor(boxes), tensor(labels))
    theirs = tv_ssd_loss(tensor(priors), targets, tensor(deltas), tensor(logits), threshold=config["iou_threshold"],
                         ratio=config["neg_pos_ratio"], box_weights=config.get("box_weights", (10.0, 10.0, 5.0, 5.0)))
    assert_close(result.components["loc"], theirs["bbox_regression"], "float64", "loc")
    assert_close(result.components["conf"], theirs["classification"], "float64", "conf")


def test_ssd_values_on_every_backend_match_torchvision(xp):
    rng = np.random.default_rng(3)
    priors, gt_list, label_list, deltas, logits = ssd_scene(rng, [1, 3])
    ref_dtype = "float32" if xp.dtype_name == "float32" else "float64"
    theirs = tv_ssd_loss(tensor(priors, ref_dtype), targets_of(gt_list, label_list, ref_dtype),
                         tensor(deltas, ref_dtype), tensor(logits, ref_dtype))
    boxes, labels = pad(gt_list, label_list)
    result = pl.get_recipe("ssd", num_classes=C)(xp.asarray(deltas), xp.asarray(logits), xp.asarray(priors),
                                                  xp.asarray(boxes), xp.asarray(labels))
    assert_close(xp.to_numpy(result.components["loc"]), theirs["bbox_regression"], ref_dtype, "loc")
    assert_close(xp.to_numpy(result.components["conf"]), theirs["classification"], ref_dtype, "conf")


def test_ssd300_sized_batch_matches_torchvision():
    dtype_name = "float64"
    priors = ssd300_priors()
    assert priors.shape == (8732, 4)
    rng = np.random.default_rng(4)
    classes = 21
    counts = [3, 7, 1, 12]
    gt_list, label_list = random_gt(rng, counts, classes, 240.0, (20.0, 120.0))
    gt_list = [np.clip(g, 0.0, 300.0) for g in gt_list]
    deltas = rng.normal(size=(4, 8732, 4)) * 0.5
    logits = rng.normal(size=(4, 8732, classes)) * 2
    targets = targets_of(gt_list, label_list, dtype_name)
    check_ssd_precondition(priors, targets)
    boxes, labels = pad(gt_list, label_list)
    (d, lg), (d_tv, lg_tv) = leaves([deltas, logits], dtype_name)
    result = pl.get_recipe("ssd", num_classes=classes)(d, lg, tensor(priors, dtype_name), tensor(boxes, dtype_name),
                                                        tensor(labels))
    theirs = tv_ssd_loss(tensor(priors, dtype_name), targets, d_tv, lg_tv)
    assert_close(result.components["loc"].detach(), theirs["bbox_regression"].detach(), dtype_name, "loc")
    assert_close(result.components["conf"].detach(), theirs["classification"].detach(), dtype_name, "conf")
    result.total.backward()
    (theirs["bbox_regression"] + theirs["classification"]).backward()
    assert_close(d.grad, d_tv.grad, dtype_name, "d/d box_deltas")
    assert_close(lg.grad, lg_tv.grad, dtype_name, "d/d class_logits")


def test_ssd_positives_are_not_mined_again_unlike_torchvision():
    """Documented difference: hard-negative mining never selects a positive prior.

    With at least a third of an image's priors positive, torchvision's
    ``3 x positives`` mined priors run past the negatives into the positives
    (ranked last at -inf) and count every positive twice; polyloss counts
    every prior once.
    """
    priors = anchor_grid(3, ANCHOR_SHAPES[:2])  # 18 priors
    rng = np.random.default_rng(5)
    gt = priors[::2] + rng.uniform(-0.1, 0.1, size=(9, 4))  # half of the priors get a ground truth
    labels = rng.integers(1, C, size=9)
    deltas, logits = rng.normal(size=(1, 18, 4)), rng.normal(size=(1, 18, C))
    targets = targets_of([gt], [labels], "float64")
    (matched,) = tv_ssd_matches(tensor(priors), targets)
    positive = matched >= 0
    assert 3 * int(positive.sum()) >= len(priors)  # every prior is mined by torchvision, positives included
    theirs = tv_ssd_loss(tensor(priors), targets, tensor(deltas), tensor(logits))
    ours = pl.get_recipe("ssd", num_classes=C)(tensor(deltas), tensor(logits), tensor(priors), tensor(gt[None]),
                                               tensor(labels[None]))
    cls_target = torch.where(positive, targets[0]["labels"][matched.clamp(min=0)], 0)
    ce = torch.nn.functional.cross_entropy(tensor(logits[0]), cls_target, reduction="none")
    n = int(positive.sum())
    assert_close(theirs["classification"], (ce.sum() + ce[positive].sum()) / n, "float64", "torchvision: twice")
    assert_close(ours.components["conf"], ce.sum() / n, "float64", "polyloss: once")
    assert float(theirs["classification"]) > float(ours.components["conf"]) + 1e-3  # the difference is real
    assert_close(ours.components["loc"], theirs["bbox_regression"], "float64", "loc is unaffected")


# -- Faster R-CNN: torchvision drivers --------------------------------------------------------
def tv_rpn_module(fg=0.7, bg=0.3, batch=100_000, fraction=0.5):
    top_n = {"training": 1, "testing": 1}
    return tv_modules().RPN(None, None, fg_iou_thresh=fg, bg_iou_thresh=bg, batch_size_per_image=batch,
                            positive_fraction=fraction, pre_nms_top_n=top_n, post_nms_top_n=top_n, nms_thresh=0.7)


def tv_rpn_assign(rpn, anchors, targets, dtype_name):
    """``assign_targets_to_anchors`` + ``box_coder.encode`` (labels cast to the anchors' dtype)."""
    per_image = [anchors] * len(targets)
    labels, matched_gt = rpn.assign_targets_to_anchors(per_image, targets)
    labels = [lab.to(TORCH_DTYPES[dtype_name]) for lab in labels]
    return labels, list(rpn.box_coder.encode(matched_gt, per_image))


def tv_rpn_loss(rpn, anchors, targets, objectness, deltas, dtype_name):
    labels, regression_targets = tv_rpn_assign(rpn, anchors, targets, dtype_name)
    return rpn.compute_loss(objectness.reshape(-1, 1), deltas.reshape(-1, 4), labels, regression_targets)


def rpn_scene(rng, counts, size=5, dtype_name="float64"):
    anchors = anchor_grid(size)
    gt_list, label_list = random_gt(rng, counts, C, size - 2.0, (1.0, 2.5))
    targets = targets_of(gt_list, label_list, dtype_name)
    for t in targets:  # no ground truth overlapping nothing (the documented difference)
        if t["boxes"].numel():
            assert torch.all(tv_modules().box_ops.box_iou(t["boxes"], tensor(anchors, dtype_name)).amax(dim=1) > 0)
    n, a = len(counts), len(anchors)
    return anchors, gt_list, label_list, targets, rng.normal(size=(n, a)) * 2, rng.normal(size=(n, a, 4)) * 0.5


# -- RPN ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype_name", ["float64", "float32"])
@pytest.mark.parametrize("config", [{}, {"rpn_fg_iou": 0.5, "rpn_bg_iou": 0.2}])
@pytest.mark.parametrize("fast", [True, False])  # box term on the sampled positives alone / on every anchor
def test_rpn_matches_torchvision_with_every_candidate_sampled(dtype_name, config, fast):
    rng = np.random.default_rng(6)
    anchors, gt_list, label_list, targets, objectness, deltas = rpn_scene(rng, [2, 0, 3], dtype_name=dtype_name)
    boxes, labels = pad(gt_list, label_list, g=4)
    recipe = pl.get_recipe("faster_rcnn", num_classes=C, seed=0, **BIG, **config)
    rpn = tv_rpn_module(config.get("rpn_fg_iou", 0.7), config.get("rpn_bg_iou", 0.3))
    (o, d), (o_tv, d_tv) = leaves([objectness, deltas], dtype_name)
    with pl.fast_paths(fast):
        result = recipe.rpn_loss(tensor(anchors, dtype_name), o, d, tensor(boxes, dtype_name), tensor(labels))
        closed = recipe.rpn_value_and_grad(tensor(anchors, dtype_name), tensor(objectness, dtype_name),
                                           tensor(deltas, dtype_name), tensor(boxes, dtype_name), tensor(labels))
    obj, box = tv_rpn_loss(rpn, tensor(anchors, dtype_name), targets, o_tv, d_tv, dtype_name)
    assert obj.dtype == TORCH_DTYPES[dtype_name]
    check_two_terms(result, closed, {"rpn_objectness": obj, "rpn_box": box},
                    {"objectness": (o, o_tv), "rpn_deltas": (d, d_tv)}, dtype_name)


def test_rpn_assign_matches_torchvision_per_anchor():
    rng = np.random.default_rng(7)
    anchors, gt_list, label_list, targets, _, _ = rpn_scene(rng, [3, 0, 1, 4], size=6)
    boxes, labels = pad(gt_list, label_list)
    recipe = pl.get_recipe("faster_rcnn", num_classes=C)
    # the public path to the per-anchor targets: the stage on the padded ground truth
    gt = normalize_ground_truth(recipe.backend_of(tensor(anchors), "anchors"), tensor(boxes),
                                                   tensor(labels), like=tensor(anchors), batch_size=4)
    assigned = recipe.assign_anchors(tensor(anchors), gt)
    tv_labels, tv_targets = tv_rpn_assign(tv_rpn_module(), tensor(anchors), targets, "float64")
    for i in range(4):
        np.testing.assert_array_equal(assigned.labels[i].numpy(), tv_labels[i].numpy(), err_msg=f"image {i}")
        fg = tv_labels[i] == 1
        assert_close(assigned.box_targets[i][fg], tv_targets[i][fg], "float64", f"targets of image {i}")
    labels_all = torch.stack(tv_labels)
    assert {-1.0, 0.0, 1.0} <= set(labels_all.unique().tolist())  # every kind of anchor occurs


def test_rpn_matches_torchvision_on_the_same_sample():
    """A real sample (256 of about 430 candidates per image): polyloss's sample, handed to torchvision."""
    rng = np.random.default_rng(8)
    anchors, gt_list, label_list, targets, objectness, deltas = rpn_scene(rng, [3, 2], size=12)
    boxes, labels = pad(gt_list, label_list)
    recipe = pl.get_recipe("faster_rcnn", num_classes=C)  # rpn_batch_size=256, rpn_positive_fraction=0.5
    rpn = tv_rpn_module(batch=256, fraction=0.5)
    tv_labels, _ = tv_rpn_assign(rpn, tensor(anchors), targets, "float64")
    int_labels = torch.stack(tv_labels).to(torch.int64)
    # polyloss draws its sample from a numpy Generator: the same fresh generator gives the same sample
    pos, neg = recipe.rpn_sampler(int_labels, seed=np.random.default_rng(9))
    candidates = (int_labels >= 0).sum(dim=1)
    assert torch.all((pos | neg).sum(dim=1) == 256) and torch.all(candidates > 256)
    # torchvision's own sampler takes as many positives and negatives per image
    tv_pos, tv_neg = rpn.fg_bg_sampler(tv_labels)
    assert torch.equal(torch.stack(tv_pos).sum(dim=1), pos.sum(dim=1))
    assert torch.equal(torch.stack(tv_neg).sum(dim=1), neg.sum(dim=1))
    rpn.fg_bg_sampler = lambda _labels: (list(pos), list(neg))
    (o, d), (o_tv, d_tv) = leaves([objectness, deltas], "float64")
    result = recipe.rpn_loss(tensor(anchors), o, d, tensor(boxes), tensor(labels), seed=np.random.default_rng(9))
    obj, box = tv_rpn_loss(rpn, tensor(anchors), targets, o_tv, d_tv, "float64")
    assert_close(result.components["rpn_objectness"].detach(), obj.detach(), "float64", "rpn_objectness")
    assert_close(result.components["rpn_box"].detach(), box.detach(), "float64", "rpn_box")
    result.total.backward()
    (obj + box).backward()
    assert_close(o.grad, o_tv.grad, "float64", "d/d objectness")
    assert_close(d.grad, d_tv.grad, "float64", "d/d rpn_deltas")
    assert int((o.grad != 0).sum()) == 512  # only the sampled anchors carry a gradient


def test_rpn_ground_truth_overlapping_nothing_makes_no_positive_unlike_torchvision():
    """Documented difference: a low-quality match needs an IoU above 0.

    torchvision matches every anchor at IoU 0 with a ground truth that
    overlaps nothing; polyloss gives the numbers torchvision gives without
    that ground truth.
    """
    rng = np.random.default_rng(10)
    anchors, gt_list, label_list, _, objectness, deltas = rpn_scene(rng, [2])
    far = np.concatenate([gt_list[0], [[50.0, 50.0, 52.0, 52.0]]])
    far_labels = np.concatenate([label_list[0], [1]])
    rpn = tv_rpn_module()
    with_far, _ = tv_rpn_assign(rpn, tensor(anchors), targets_of([far], [far_labels], "float64"), "float64")
    without, _ = tv_rpn_assign(rpn, tensor(anchors), targets_of(gt_list, label_list, "float64"), "float64")
    assert int((with_far[0] == 1).sum()) > int((without[0] == 1).sum()) + 10  # the difference is real
    recipe = pl.get_recipe("faster_rcnn", num_classes=C, seed=0, **BIG)
    ours = recipe.rpn_loss(tensor(anchors), tensor(objectness), tensor(deltas), tensor(far[None]),
                           tensor(far_labels[None]))
    obj, box = tv_rpn_loss(rpn, tensor(anchors), targets_of(gt_list, label_list, "float64"), tensor(objectness),
                           tensor(deltas), "float64")
    assert_close(ours.components["rpn_objectness"], obj, "float64", "as torchvision without the far box")
    assert_close(ours.components["rpn_box"], box, "float64", "as torchvision without the far box")


# -- box head -------------------------------------------------------------------------------------
def tv_roi_heads(fg=0.5, bg=0.5, batch=100_000, fraction=0.25):
    return tv_modules().roi_heads.RoIHeads(None, None, None, fg_iou_thresh=fg, bg_iou_thresh=bg,
                                           batch_size_per_image=batch, positive_fraction=fraction,
                                           bbox_reg_weights=None, score_thresh=0.05, nms_thresh=0.5,
                                           detections_per_img=100)


def head_scene(rng, counts, r0=20, dtype_name="float64"):
    gt_list, label_list = random_gt(rng, counts, C, 3.0, (1.0, 2.5))
    grid = anchor_grid(4)
    proposals = [grid[rng.permutation(len(grid))[:r0]] + rng.normal(scale=0.2, size=(r0, 4)) for _ in counts]
    return gt_list, label_list, proposals, targets_of(gt_list, label_list, dtype_name)


@pytest.mark.parametrize("dtype_name", ["float64", "float32"])
@pytest.mark.parametrize("config", [{}, {"roi_fg_iou": 0.6, "roi_bg_iou": 0.3}])
def test_head_matches_torchvision_select_training_samples_and_fastrcnn_loss(dtype_name, config):
    rng = np.random.default_rng(11)
    gt_list, label_list, proposals, targets = head_scene(rng, [2, 0, 3], dtype_name=dtype_name)
    boxes, labels = pad(gt_list, label_list, g=4)
    recipe = pl.get_recipe("faster_rcnn", num_classes=C, **BIG, **config)
    sampled = recipe.sample_proposals(tensor(np.stack(proposals), dtype_name), tensor(boxes, dtype_name),
                                      tensor(labels))
    heads = tv_roi_heads(config.get("roi_fg_iou", 0.5), config.get("roi_bg_iou", 0.5))
    tv_props, _, tv_labels, tv_targets = heads.select_training_samples(
        [tensor(p, dtype_name) for p in proposals], targets)
    sizes = [len(lab) for lab in tv_labels]
    for i, k in enumerate(sizes):
        np.testing.assert_array_equal(sampled.labels[i, :k].numpy(), tv_labels[i].numpy(), err_msg=f"image {i}")
        assert torch.all(sampled.labels[i, k:] == -1)
        assert_close(sampled.boxes[i, :k], tv_props[i], dtype_name, f"boxes of image {i}")
        fg = tv_labels[i] > 0
        assert_close(sampled.targets[i, :k][fg], tv_targets[i][fg], dtype_name, f"targets of image {i}")
    assert any(bool((lab == 0).any()) for lab in tv_labels) and sum(int((lab > 0).sum()) for lab in tv_labels) > 0
    n, r = (int(s) for s in sampled.labels.shape)
    class_logits = rng.normal(size=(n, r, C))
    box_deltas = rng.normal(size=(n, r, C, 4)) * 0.3
    (cl, bd), (cl_tv, bd_tv) = leaves([class_logits, box_deltas], dtype_name)
    result = recipe.roi_loss(cl, bd, sampled)
    cls, box = tv_modules().roi_heads.fastrcnn_loss(
        torch.cat([cl_tv[i, :k] for i, k in enumerate(sizes)]),
        torch.cat([bd_tv[i, :k].reshape(k, 4 * C) for i, k in enumerate(sizes)]), tv_labels, tv_targets)
    closed = recipe.roi_value_and_grad(tensor(class_logits, dtype_name), tensor(box_deltas, dtype_name), sampled)
    check_two_terms(result, closed, {"roi_classifier": cls, "roi_box": box},
                    {"class_logits": (cl, cl_tv), "box_deltas": (bd, bd_tv)}, dtype_name)


def test_head_sampling_counts_match_torchvision():
    rng = np.random.default_rng(12)
    gt_list, label_list, proposals, targets = head_scene(rng, [3, 3, 1], r0=40)
    boxes, labels = pad(gt_list, label_list)
    recipe = pl.get_recipe("faster_rcnn", num_classes=C, roi_batch_size=16, roi_positive_fraction=0.25, seed=1)
    sampled = recipe.sample_proposals(tensor(np.stack(proposals)), tensor(boxes), tensor(labels))
    _, _, tv_labels, _ = tv_roi_heads(batch=16, fraction=0.25).select_training_samples(
        [tensor(p) for p in proposals], targets)
    assert tuple(sampled.labels.shape) == (3, 16)
    for i, lab in enumerate(tv_labels):
        assert int((sampled.labels[i] > 0).sum()) == int((lab > 0).sum())
        assert int((sampled.labels[i] == 0).sum()) == int((lab == 0).sum())
    # each sampled row is one of torchvision's candidates, with its label and target
    _, _, all_labels, all_targets = tv_roi_heads().select_training_samples([tensor(p) for p in proposals], targets)
    all_props = [torch.cat([tensor(p), t["boxes"]]) for p, t in zip(proposals, targets, strict=True)]
    for i in range(3):
        for j in torch.where(sampled.labels[i] >= 0)[0].tolist():
            hit = torch.where(torch.all(all_props[i] == sampled.boxes[i, j], dim=1))[0]
            assert len(hit) >= 1
            k = int(hit[0])
            assert int(sampled.labels[i, j]) == int(all_labels[i][k])
            if int(all_labels[i][k]) > 0:
                assert_close(sampled.targets[i, j], all_targets[i][k], "float64", f"target {i}, {j}")


def test_faster_rcnn_call_total_matches_torchvision():
    rng = np.random.default_rng(13)
    anchors, gt_list, label_list, targets, objectness, deltas = rpn_scene(rng, [2, 1])
    _, _, proposals, _ = head_scene(rng, [2, 1])
    boxes, labels = pad(gt_list, label_list)
    recipe = pl.get_recipe("faster_rcnn", num_classes=C, seed=0, **BIG, weights={"roi_box": 2.0})
    sampled = recipe.sample_proposals(tensor(np.stack(proposals)), tensor(boxes), tensor(labels))
    n, r = (int(s) for s in sampled.labels.shape)
    class_logits, box_deltas = rng.normal(size=(n, r, C)), rng.normal(size=(n, r, C, 4)) * 0.3
    result = recipe(tensor(anchors), tensor(objectness), tensor(deltas), tensor(boxes), tensor(labels),
                    tensor(class_logits), tensor(box_deltas), sampled)
    obj, rpn_box = tv_rpn_loss(tv_rpn_module(), tensor(anchors), targets, tensor(objectness), tensor(deltas),
                               "float64")
    _, _, tv_labels, tv_targets = tv_roi_heads().select_training_samples([tensor(p) for p in proposals], targets)
    sizes = [len(lab) for lab in tv_labels]
    cls, roi_box = tv_modules().roi_heads.fastrcnn_loss(
        torch.cat([tensor(class_logits)[i, :k] for i, k in enumerate(sizes)]),
        torch.cat([tensor(box_deltas)[i, :k].reshape(k, 4 * C) for i, k in enumerate(sizes)]), tv_labels, tv_targets)
    expected = {"rpn_objectness": obj, "rpn_box": rpn_box, "roi_classifier": cls, "roi_box": 2.0 * roi_box}
    for name, value in expected.items():
        assert_close(result.components[name], value, "float64", name)
    assert_close(result.total, sum(expected.values()), "float64", "total")
