"""The "ssd" recipe against a float64 NumPy transcription of torchvision's SSD loss.

These run on every backend, without torchvision (test_torchvision_recipes.py
compares with torchvision itself); ``ref_ssd`` below transcribes, one image and one
prior at a time, torchvision's ``SSD.forward`` matching (``SSDMatcher`` on
``box_iou``) and ``SSD.compute_loss`` (per-image encoding with
``BoxCoder(10, 10, 5, 5)``, summed smooth L1, cross-entropy, hard-negative
mining by sorting, normalisation by max(1, foreground priors)).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from _detection import ANCHOR_SHAPES
from _detection import anchor_grid
from _detection import encode
from _detection import finite_differences
from _detection import iou
from _detection import one_object_scenes
from _detection import pad
from _detection import random_gt
from _detection import smooth_l1

import polyloss as pl
from polyloss.detection.ssd import SSDLoss

C = 4


# -- reference ----------------------------------------------------------------------
def ssd_match(gt: np.ndarray, priors: np.ndarray, threshold: float) -> list[int]:
    p = len(priors)
    if len(gt) == 0:
        return [-1] * p
    q = np.array([[iou(g, pr) for pr in priors] for g in gt])
    matches = []
    for j in range(p):
        best = int(np.argmax(q[:, j]))
        matches.append(best if q[best, j] >= threshold else -1)
    for i in range(len(gt)):  # each gt takes its best prior; a later gt overwrites
        matches[int(np.argmax(q[i]))] = i
    return matches


def ref_ssd(deltas, logits, priors, gt_list, label_list, *, threshold=0.5, ratio=3, alpha=1.0, beta=1.0,
            count_positives_once=True):
    """torchvision's SSD loss; ``count_positives_once=False`` keeps torchvision's double counting."""
    n, p, _ = logits.shape
    num_foreground = 0
    box_loss = 0.0
    targets = np.zeros((n, p), dtype=np.int64)
    for i in range(n):
        matches = ssd_match(gt_list[i], priors, threshold)
        for j in range(p):
            if matches[j] < 0:
                continue
            num_foreground += 1
            t = encode(gt_list[i][matches[j]], priors[j])
            box_loss += sum(smooth_l1(deltas[i, j, k] - t[k], beta) for k in range(4))
            targets[i, j] = label_list[i][matches[j]]
    cls_loss = np.zeros((n, p))
    for i in range(n):
        for j in range(p):
            m = max(logits[i, j])
            cls_loss[i, j] = m + math.log(sum(math.exp(z - m) for z in logits[i, j])) - logits[i, j, targets[i, j]]
    total_cls = 0.0
    for i in range(n):
        foreground = targets[i] > 0
        num_negative = ratio * int(foreground.sum())
        negative_loss = np.where(foreground, -np.inf, cls_loss[i])
        order = sorted(range(p), key=lambda j: -negative_loss[j])
        rank = {j: r for r, j in enumerate(order)}
        for j in range(p):
            if foreground[j]:
                total_cls += cls_loss[i, j]
            background = rank[j] < num_negative
            if background and (not foreground[j] or not count_positives_once):
                total_cls += cls_loss[i, j]
    norm = max(1, num_foreground)
    return alpha * box_loss / norm, total_cls / norm


# -- data ----------------------------------------------------------------------------
def make_priors(size: int = 6) -> np.ndarray:
    return anchor_grid(size, ANCHOR_SHAPES[:2])


def make_batch(rng: np.random.Generator, priors: np.ndarray, counts: list[int]):
    n, p = len(counts), len(priors)
    gt_list, label_list = random_gt(rng, counts, C, 4.5, (1.0, 3.0))
    deltas = rng.normal(size=(n, p, 4))
    logits = rng.normal(size=(n, p, C)) * 2
    return deltas, logits, gt_list, label_list


def to_np(xp, result):
    return {k: float(xp.to_numpy(v)) for k, v in result.components.items()}, float(xp.to_numpy(result.total))


# -- tests -----------------------------------------------------------------------------------
def test_matches_torchvision_reference(xp):
    rng = np.random.default_rng(0)
    priors = make_priors()
    deltas, logits, gt_list, label_list = make_batch(rng, priors, [2, 3, 1])
    ref_loc, ref_conf = ref_ssd(deltas, logits, priors, gt_list, label_list)
    # torchvision's own numbers coincide here: positives are well under a quarter of the priors
    assert (ref_loc, ref_conf) == ref_ssd(deltas, logits, priors, gt_list, label_list, count_positives_once=False)
    boxes, labels = pad(gt_list, label_list, g=4)
    recipe = pl.get_recipe("ssd", num_classes=C)
    comps, total = to_np(xp, recipe(xp.asarray(deltas), xp.asarray(logits), xp.asarray(priors), xp.asarray(boxes),
                                     xp.asarray(labels)))
    rtol = max(xp.rtol, 1e-5) if xp.dtype_name == "float64" else 1e-4
    np.testing.assert_allclose(comps["loc"], ref_loc, rtol=rtol)
    np.testing.assert_allclose(comps["conf"], ref_conf, rtol=rtol)
    np.testing.assert_allclose(total, ref_loc + ref_conf, rtol=rtol)
    assert set(comps) == {"loc", "conf"}


def test_config_alpha_beta_ratio_threshold(xp):
    rng = np.random.default_rng(1)
    priors = make_priors()
    deltas, logits, gt_list, label_list = make_batch(rng, priors, [2, 2])
    cfg = {"threshold": 0.4, "ratio": 2, "alpha": 0.5, "beta": 0.3}
    ref_loc, ref_conf = ref_ssd(deltas, logits, priors, gt_list, label_list, **cfg)
    recipe = pl.get_recipe("ssd", num_classes=C, iou_threshold=0.4, neg_pos_ratio=2, alpha=0.5, beta=0.3)
    boxes, labels = pad(gt_list, label_list)
    comps, _ = to_np(xp, recipe(xp.asarray(deltas), xp.asarray(logits), xp.asarray(priors), xp.asarray(boxes),
                                xp.asarray(labels)))
    np.testing.assert_allclose([comps["loc"], comps["conf"]], [ref_loc, ref_conf], rtol=max(xp.rtol, 1e-4))


def test_positives_are_never_counted_twice(xp):
    """More than a quarter of the priors positive: torchvision counts positives again, polyloss does not."""
    priors = make_priors(3)  # 18 priors
    rng = np.random.default_rng(2)
    gt = priors[::2] + rng.uniform(-0.1, 0.1, size=(9, 4))  # half of the priors get a ground truth
    labels = rng.integers(1, C, size=9)
    deltas = rng.normal(size=(1, 18, 4))
    logits = rng.normal(size=(1, 18, C))
    ours = ref_ssd(deltas, logits, priors, [gt], [labels])
    torchvision = ref_ssd(deltas, logits, priors, [gt], [labels], count_positives_once=False)
    assert torchvision[1] > ours[1] + 1e-3  # the double counting is real on this input
    recipe = pl.get_recipe("ssd", num_classes=C)
    comps, _ = to_np(xp, recipe(xp.asarray(deltas), xp.asarray(logits), xp.asarray(priors), xp.asarray(gt[None]),
                                xp.asarray(labels[None])))
    np.testing.assert_allclose(comps["conf"], ours[1], rtol=max(xp.rtol, 1e-4))
    # and the mined set is disjoint from the positives, every prior is counted at most once
    targets = recipe.assign(xp.asarray(priors), xp.asarray(gt[None]), xp.asarray(labels[None]))
    cls = pl.cross_entropy(xp.asarray(logits), targets.labels, reduction="none")
    negative = xp.to_numpy(recipe.mine(cls, targets.positive))
    positive = xp.to_numpy(targets.positive)
    assert positive.sum() > 18 / 4
    assert not np.any(negative & positive)
    assert negative.sum() == 18 - positive.sum()


def test_empty_ground_truth_contributes_nothing(xp):
    rng = np.random.default_rng(3)
    priors = make_priors()
    deltas, logits, gt_list, label_list = make_batch(rng, priors, [2, 0])
    recipe = pl.get_recipe("ssd", num_classes=C)
    boxes, labels = pad(gt_list, label_list)
    both = to_np(xp, recipe(xp.asarray(deltas), xp.asarray(logits), xp.asarray(priors), xp.asarray(boxes),
                            xp.asarray(labels)))
    first = to_np(xp, recipe(xp.asarray(deltas[:1]), xp.asarray(logits[:1]), xp.asarray(priors),
                             xp.asarray(boxes[:1]), xp.asarray(labels[:1])))
    np.testing.assert_allclose(both[1], first[1], rtol=max(xp.rtol, 1e-5))
    # a batch without any ground truth: 0, not NaN, both padded (G = 0 and all -1) and per image
    for gb, gl in ((np.zeros((2, 0, 4)), np.zeros((2, 0), dtype=np.int64)),
                   (np.zeros((2, 3, 4)), np.full((2, 3), -1))):
        comps, total = to_np(xp, recipe(xp.asarray(deltas), xp.asarray(logits), xp.asarray(priors),
                                        xp.asarray(gb), xp.asarray(gl)))
        assert total == 0.0 and comps == {"loc": 0.0, "conf": 0.0}
    empty = [xp.asarray(np.zeros((0, 4))), xp.asarray(np.zeros((0, 4)))]
    labels_empty = [xp.asarray(np.zeros(0, dtype=np.int64))] * 2
    assert to_np(xp, recipe(xp.asarray(deltas), xp.asarray(logits), xp.asarray(priors), empty, labels_empty))[1] == 0


def test_empty_batch_gradient_is_zero():
    torch = pytest.importorskip("torch")
    priors = torch.tensor(make_priors(2))
    deltas = torch.zeros(1, 8, 4, dtype=torch.float64, requires_grad=True)
    logits = torch.zeros(1, 8, C, dtype=torch.float64, requires_grad=True)
    res = pl.get_recipe("ssd", num_classes=C)(deltas, logits, priors, torch.zeros(1, 0, 4, dtype=torch.float64),
                                               torch.zeros(1, 0, dtype=torch.int64))
    res.total.backward()
    assert float(res.total.detach()) == 0.0
    assert torch.count_nonzero(deltas.grad) == 0 and torch.count_nonzero(logits.grad) == 0


def test_sequences_equal_padded(xp):
    rng = np.random.default_rng(4)
    priors = make_priors()
    deltas, logits, gt_list, label_list = make_batch(rng, priors, [3, 0, 1])
    recipe = pl.get_recipe("ssd", num_classes=C)
    boxes, labels = pad(gt_list, label_list, g=5)
    padded = to_np(xp, recipe(xp.asarray(deltas), xp.asarray(logits), xp.asarray(priors), xp.asarray(boxes),
                              xp.asarray(labels)))
    seq = to_np(xp, recipe(xp.asarray(deltas), xp.asarray(logits), xp.asarray(priors),
                           [xp.asarray(b.reshape(-1, 4)) for b in gt_list], [xp.asarray(lab) for lab in label_list]))
    assert padded[0] == pytest.approx(seq[0], rel=1e-12)


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # log(0) once validation is off
def test_degenerate_ground_truth_raises(xp):
    priors = make_priors(2)
    deltas, logits = np.zeros((2, 8, 4)), np.zeros((2, 8, C))
    boxes = np.array([[[0.0, 0.0, 1.0, 1.0], [0, 0, 0, 0]], [[0.0, 0.0, 1.0, 1.0], [2.0, 1.0, 2.0, 3.0]]])
    labels = np.array([[1, -1], [1, 2]])  # image 0's zero box is padding: fine; image 1 box 1 has x2 == x1
    recipe = pl.get_recipe("ssd", num_classes=C)
    args = (xp.asarray(deltas), xp.asarray(logits), xp.asarray(priors), xp.asarray(boxes), xp.asarray(labels))
    with pytest.raises(ValueError, match=r"box 1 of image 1"):
        recipe(*args)
    # validate=False skips the check (the zero-width box then gives log(0) in its targets: not finite)
    assert isinstance(to_np(xp, recipe(*args, validate=False))[1], float)
    assert isinstance(to_np(xp, pl.get_recipe("ssd", num_classes=C, validate=False)(*args))[1], float)
    bad_labels = np.array([[1, -1], [1, C]])
    boxes[1, 1] = [2.0, 1.0, 3.0, 3.0]
    with pytest.raises(ValueError, match=r"gt_labels\[1\]\[1\]"):
        recipe(xp.asarray(deltas), xp.asarray(logits), xp.asarray(priors), xp.asarray(boxes), xp.asarray(bad_labels))


def test_bad_shapes_and_config():
    priors = make_priors(2)
    recipe = pl.get_recipe("ssd", num_classes=C)
    gt, lab = np.array([[[0.0, 0.0, 1.0, 1.0]]]), np.array([[1]])
    with pytest.raises(ValueError, match="class_logits"):
        recipe(np.zeros((1, 8, 4)), np.zeros((1, 8, C + 1)), priors, gt, lab)
    with pytest.raises(ValueError, match="box_deltas"):
        recipe(np.zeros((1, 7, 4)), np.zeros((1, 8, C)), priors, gt, lab)
    with pytest.raises(ValueError, match="priors"):
        recipe(np.zeros((1, 8, 4)), np.zeros((1, 8, C)), priors[:5], gt, lab)
    with pytest.raises(ValueError, match="gt_labels"):
        recipe(np.zeros((1, 8, 4)), np.zeros((1, 8, C)), priors, gt, np.array([[1, 1]]))
    with pytest.raises(ValueError, match="num_classes"):
        pl.get_recipe("ssd", num_classes=1)
    with pytest.raises(ValueError, match="unknown weight"):
        pl.get_recipe("ssd", num_classes=C, weights={"box": 2.0})


def test_torch_gradients_match_finite_differences():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(5)
    priors = make_priors(3)
    deltas, logits, gt_list, label_list = make_batch(rng, priors, [2, 1])
    boxes, labels = pad(gt_list, label_list)
    d = torch.tensor(deltas, requires_grad=True)
    z = torch.tensor(logits, requires_grad=True)
    res = pl.get_recipe("ssd", num_classes=C)(d, z, torch.tensor(priors), torch.tensor(boxes), torch.tensor(labels))
    res.total.backward()
    assert torch.isfinite(d.grad).all() and torch.isfinite(z.grad).all()

    def total(dd, zz):
        loc, conf = ref_ssd(dd, zz, priors, gt_list, label_list)
        return loc + conf

    finite_differences(total, {"dd": deltas, "zz": logits}, {"dd": d.grad.numpy(), "zz": z.grad.numpy()}, rng,
                       rtol=1e-5, atol=1e-8)


def test_parts_can_be_replaced():
    rng = np.random.default_rng(6)
    priors = make_priors()
    deltas, logits, gt_list, label_list = make_batch(rng, priors, [2, 1])
    boxes, labels = pad(gt_list, label_list)
    base = pl.get_recipe("ssd", num_classes=C)
    ref_loc, ref_conf = ref_ssd(deltas, logits, priors, gt_list, label_list)

    class DoubleLoc(SSDLoss):
        def __init__(self, **config):
            super().__init__(**config, weights={"loc": 2.0})

    res = DoubleLoc(num_classes=C)(deltas, logits, priors, boxes, labels)
    np.testing.assert_allclose(float(res.components["loc"]), 2 * ref_loc, rtol=1e-10)
    np.testing.assert_allclose(float(res.components["conf"]), ref_conf, rtol=1e-10)
    l1 = pl.get_recipe("ssd", num_classes=C, regression_loss=lambda a, b: pl.l1_loss(a, b, reduction="none"))
    assert float(l1(deltas, logits, priors, boxes, labels).components["loc"]) != pytest.approx(ref_loc)
    stages = base.loss(deltas, logits, base.assign(priors, boxes, labels))
    np.testing.assert_allclose(float(stages.total), ref_loc + ref_conf, rtol=1e-10)


@pytest.mark.slow
def test_tiny_training_run_lowers_the_loss():
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    rng = np.random.default_rng(7)
    priors_np = make_priors(4)
    p = len(priors_np)
    n = 32
    gt, labels, features = one_object_scenes(rng, n, 2.5, C)
    features = torch.tensor(features, dtype=torch.float32)
    model = torch.nn.Sequential(torch.nn.Linear(4 + C, 64), torch.nn.ReLU(), torch.nn.Linear(64, p * (4 + C)))
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    recipe = pl.get_recipe("ssd", num_classes=C)
    priors, gt_t, lab_t = torch.tensor(priors_np, dtype=torch.float32), torch.tensor(gt, dtype=torch.float32), \
        torch.tensor(labels)
    history = []
    for _ in range(200):
        out = model(features).reshape(n, p, 4 + C)
        res = recipe(out[..., :4], out[..., 4:], priors, gt_t, lab_t, validate=False)
        opt.zero_grad()
        res.total.backward()
        opt.step()
        history.append(float(res.total.detach()))
    assert all(np.isfinite(history))
    assert np.mean(history[-10:]) < 0.3 * np.mean(history[:5]), (history[:5], history[-10:])


def test_no_priors_gives_zero(xp):
    recipe = pl.get_recipe("ssd", num_classes=C)
    res = recipe(xp.asarray(np.zeros((2, 0, 4))), xp.asarray(np.zeros((2, 0, C))), xp.asarray(np.zeros((0, 4))),
                 xp.asarray(np.array([[[0.0, 0.0, 2.0, 2.0]]] * 2)), xp.asarray(np.array([[1], [2]])))
    assert to_np(xp, res) == ({"loc": 0.0, "conf": 0.0}, 0.0)
