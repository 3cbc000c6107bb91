"""polyloss.boxes against float64 NumPy references written here with Python loops.

The references transcribe torchvision's definitions (ops/boxes.py, the
detection ``BoxCoder``, ``Matcher``, ``SSDMatcher``, ``BalancedPositiveNegativeSampler``)
one box at a time; polyloss computes them batched and vectorised.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from polyloss import boxes as B
from polyloss._namespace import resolve


def random_boxes(rng: np.random.Generator, *shape: int, lo: float = 0.0, hi: float = 10.0) -> np.ndarray:
    corner = rng.uniform(lo, hi, size=(*shape, 2))
    size = rng.uniform(0.5, 5.0, size=(*shape, 2))
    return np.concatenate([corner, corner + size], axis=-1)


# -- references ----------------------------------------------------------------------
def ref_pair(a: np.ndarray, b: np.ndarray, eps: float = 1e-7) -> dict[str, float]:
    ax1, ay1, ax2, ay2 = (float(t) for t in a)
    bx1, by1, bx2, by2 = (float(t) for t in b)
    iw = max(0.0, min(ax2, bx2) - max(ax1, bx1))
    ih = max(0.0, min(ay2, by2) - max(ay1, by1))
    inter = iw * ih
    union = (ax2 - ax1) * (ay2 - ay1) + (bx2 - bx1) * (by2 - by1) - inter
    iou = inter / union if union > 0 else 0.0
    cw = max(ax2, bx2) - min(ax1, bx1)
    ch = max(ay2, by2) - min(ay1, by1)
    area_c = cw * ch
    giou = iou - ((area_c - union) / area_c if area_c > 0 else 0.0)
    rho2 = ((ax1 + ax2) / 2 - (bx1 + bx2) / 2) ** 2 + ((ay1 + ay2) / 2 - (by1 + by2) / 2) ** 2
    diou = iou - rho2 / (cw**2 + ch**2 + eps)
    v = 4 / math.pi**2 * (math.atan((ax2 - ax1) / (ay2 - ay1)) - math.atan((bx2 - bx1) / (by2 - by1))) ** 2
    alpha = v / (1 - iou + v + eps)
    return {"iou": iou, "giou": giou, "diou": diou, "ciou": diou - alpha * v}


def ref_pairwise(a: np.ndarray, b: np.ndarray, key: str) -> np.ndarray:
    out = np.zeros((len(a), len(b)))
    for i in range(len(a)):
        for j in range(len(b)):
            out[i, j] = ref_pair(a[i], b[j])[key]
    return out


def ref_encode(box: np.ndarray, anchor: np.ndarray, w: tuple[float, ...]) -> np.ndarray:
    aw, ah = anchor[2] - anchor[0], anchor[3] - anchor[1]
    ax, ay = anchor[0] + 0.5 * aw, anchor[1] + 0.5 * ah
    bw, bh = box[2] - box[0], box[3] - box[1]
    bx, by = box[0] + 0.5 * bw, box[1] + 0.5 * bh
    return np.array([w[0] * (bx - ax) / aw, w[1] * (by - ay) / ah, w[2] * math.log(bw / aw), w[3] * math.log(bh / ah)])


def ref_match(q: np.ndarray, high: float, low: float, allow_low: bool) -> np.ndarray:
    """torchvision's Matcher on one image (real ground truth rows only), plus the IoU > 0 rule."""
    g, p = q.shape
    if g == 0:
        return np.full(p, -1)
    vals = q.max(axis=0)
    matches = q.argmax(axis=0)
    all_matches = matches.copy()
    for j in range(p):
        if vals[j] < low:
            matches[j] = -1
        elif vals[j] < high:
            matches[j] = -2
    if allow_low:
        highest = q.max(axis=1)
        for i in range(g):
            if highest[i] <= 0:
                continue  # polyloss: a ground truth overlapping nothing makes nothing positive
            for j in range(p):
                if q[i, j] == highest[i]:
                    matches[j] = all_matches[j]
    return matches


def ref_ssd_match(q: np.ndarray, threshold: float) -> np.ndarray:
    matches = ref_match(q, threshold, threshold, False)
    if q.shape[0]:
        best = q.argmax(axis=1)
        for i in range(q.shape[0]):
            matches[best[i]] = i
    return matches


# -- conversions -------------------------------------------------------------------
def test_box_convert_round_trips_and_formulas(xp):
    rng = np.random.default_rng(0)
    xyxy = random_boxes(rng, 3, 5)
    x = xp.asarray(xyxy)
    xywh = np.concatenate([xyxy[..., :2], xyxy[..., 2:] - xyxy[..., :2]], axis=-1)
    cxcywh = np.concatenate([(xyxy[..., :2] + xyxy[..., 2:]) / 2, xyxy[..., 2:] - xyxy[..., :2]], axis=-1)
    np.testing.assert_allclose(xp.to_numpy(B.box_convert(x, "xyxy", "xywh")), xywh, rtol=xp.rtol, atol=1e-5)
    np.testing.assert_allclose(xp.to_numpy(B.box_convert(x, "xyxy", "cxcywh")), cxcywh, rtol=xp.rtol, atol=1e-5)
    for fmt, data in (("xywh", xywh), ("cxcywh", cxcywh)):
        back = B.box_convert(xp.asarray(data), fmt, "xyxy")
        np.testing.assert_allclose(xp.to_numpy(back), xyxy, rtol=xp.rtol, atol=1e-5)
    np.testing.assert_allclose(xp.to_numpy(B.box_convert(xp.asarray(xywh), "xywh", "cxcywh")), cxcywh,
                               rtol=xp.rtol, atol=1e-5)
    area = (xyxy[..., 2] - xyxy[..., 0]) * (xyxy[..., 3] - xyxy[..., 1])
    np.testing.assert_allclose(xp.to_numpy(B.box_area(x)), area, rtol=max(xp.rtol, 1e-12))


def test_box_convert_bad_format_and_shape():
    with pytest.raises(ValueError, match="in_fmt"):
        B.box_convert(np.zeros((2, 4)), "xxyy", "xyxy")
    with pytest.raises(ValueError, match=r"\(\.\.\., 4\)"):
        B.box_area(np.zeros((2, 3)))


# -- IoU family ----------------------------------------------------------------------
PAIRWISE = {
    "iou": B.box_iou,
    "giou": B.generalized_box_iou,
    "diou": B.distance_box_iou,
    "ciou": B.complete_box_iou,
}


@pytest.mark.parametrize("key", list(PAIRWISE))
def test_pairwise_iou_family_matches_reference(xp, key):
    rng = np.random.default_rng(1)
    a = random_boxes(rng, 6)
    b = random_boxes(rng, 4)
    b[0] = a[0]  # identical pair
    b[1] = a[1] + np.array([20, 20, 20, 20])  # disjoint pair
    got = xp.to_numpy(PAIRWISE[key](xp.asarray(a), xp.asarray(b)))
    assert got.shape == (6, 4)
    np.testing.assert_allclose(got, ref_pairwise(a, b, key), rtol=max(xp.rtol, 1e-12), atol=1e-6)


@pytest.mark.parametrize("key", list(PAIRWISE))
def test_pairwise_is_batched_over_leading_axes(xp, key):
    rng = np.random.default_rng(2)
    a = random_boxes(rng, 2, 3, 5)
    b = random_boxes(rng, 2, 3, 4)
    got = xp.to_numpy(PAIRWISE[key](xp.asarray(a), xp.asarray(b)))
    assert got.shape == (2, 3, 5, 4)
    for i in range(2):
        for j in range(3):
            np.testing.assert_allclose(got[i, j], ref_pairwise(a[i, j], b[i, j], key), rtol=max(xp.rtol, 1e-12),
                                       atol=1e-6)
    # a shared second set broadcasts against batched first sets
    got = xp.to_numpy(PAIRWISE[key](xp.asarray(a[:, 0]), xp.asarray(b[0, 0])))
    np.testing.assert_allclose(got[1], ref_pairwise(a[1, 0], b[0, 0], key), rtol=max(xp.rtol, 1e-12), atol=1e-6)


def test_zero_area_boxes_give_zero_iou_not_nan(xp):
    a = np.array([[1.0, 1.0, 1.0, 1.0], [0.0, 0.0, 2.0, 2.0]])
    b = np.array([[1.0, 1.0, 1.0, 1.0], [0.0, 0.0, 0.0, 3.0]])
    for fn in PAIRWISE.values():
        got = xp.to_numpy(fn(xp.asarray(a), xp.asarray(b)))
        assert np.all(np.isfinite(got)), (fn.__name__, got)
    np.testing.assert_array_equal(xp.to_numpy(B.box_iou(xp.asarray(a), xp.asarray(b))), np.zeros((2, 2)))


def test_pairwise_gradients_are_finite_in_torch():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(3)
    a = torch.tensor(random_boxes(rng, 4), requires_grad=True)
    b = torch.tensor(np.concatenate([random_boxes(rng, 3), [[1.0, 1.0, 1.0, 1.0]]]))
    for fn in PAIRWISE.values():
        a.grad = None
        fn(a, b).sum().backward()
        assert torch.isfinite(a.grad).all(), fn.__name__


def test_pairwise_rejects_mixed_namespaces():
    torch = pytest.importorskip("torch")
    with pytest.raises(TypeError, match="boxes2"):
        B.box_iou(torch.zeros(2, 4, dtype=torch.float64), np.zeros((2, 4)))


# -- box coding --------------------------------------------------------------------
@pytest.mark.parametrize("weights", [(1.0, 1.0, 1.0, 1.0), (10.0, 10.0, 5.0, 5.0)])
def test_encode_matches_reference_and_decode_inverts_it(xp, weights):
    rng = np.random.default_rng(4)
    boxes = random_boxes(rng, 2, 7)
    anchors = random_boxes(rng, 2, 7)
    got = xp.to_numpy(B.encode_boxes(xp.asarray(boxes), xp.asarray(anchors), weights=weights))
    ref = np.array([[ref_encode(boxes[i, j], anchors[i, j], weights) for j in range(7)] for i in range(2)])
    np.testing.assert_allclose(got, ref, rtol=max(xp.rtol, 1e-12), atol=1e-6)
    back = B.decode_boxes(xp.asarray(ref), xp.asarray(anchors), weights=weights)
    np.testing.assert_allclose(xp.to_numpy(back), boxes, rtol=max(xp.rtol, 1e-12), atol=1e-4)
    coder = B.BoxCoder(weights)
    np.testing.assert_allclose(xp.to_numpy(coder.decode(coder.encode(xp.asarray(boxes), xp.asarray(anchors)),
                                                        xp.asarray(anchors))), boxes, atol=1e-4)


def test_decode_clamps_huge_size_deltas(xp):
    anchors = np.array([[0.0, 0.0, 2.0, 4.0]])
    deltas = np.array([[0.0, 0.0, 1e4, 50.0]])
    got = xp.to_numpy(B.decode_boxes(xp.asarray(deltas), xp.asarray(anchors), weights=(1.0, 1.0, 5.0, 1.0)))
    w = 2.0 * 1000.0 / 16  # exp(log(1000/16)) x the anchor width
    h = 4.0 * 1000.0 / 16
    np.testing.assert_allclose(got, [[1 - w / 2, 2 - h / 2, 1 + w / 2, 2 + h / 2]], rtol=1e-5)
    assert np.all(np.isfinite(got))


def test_decode_broadcasts_class_specific_deltas(xp):
    rng = np.random.default_rng(5)
    anchors = random_boxes(rng, 3)
    deltas = rng.normal(size=(3, 4, 4)) * 0.2
    got = xp.to_numpy(B.decode_boxes(xp.asarray(deltas), xp.asarray(anchors[:, None, :])))
    for c in range(4):
        single = xp.to_numpy(B.decode_boxes(xp.asarray(deltas[:, c]), xp.asarray(anchors)))
        np.testing.assert_allclose(got[:, c], single, rtol=1e-5)


def test_box_coder_weights_are_validated():
    with pytest.raises(ValueError, match="four numbers"):
        B.BoxCoder((1.0, 1.0, 1.0))
    with pytest.raises(ValueError, match=r"weights\[2\]"):
        B.encode_boxes(np.ones((1, 4)), np.ones((1, 4)), weights=(1.0, 1.0, 0.0, 1.0))


# -- matching ----------------------------------------------------------------------------
def _padded_gt(rng: np.random.Generator, counts: list[int], g: int) -> tuple[np.ndarray, np.ndarray]:
    boxes = np.zeros((len(counts), g, 4))
    valid = np.zeros((len(counts), g), dtype=bool)
    for i, c in enumerate(counts):
        boxes[i, :c] = random_boxes(rng, c, hi=6.0)
        valid[i, :c] = True
    return boxes, valid


@pytest.mark.parametrize("allow_low", [False, True])
def test_matcher_matches_reference_per_image(xp, allow_low):
    rng = np.random.default_rng(6)
    anchors = random_boxes(rng, 2, 40, hi=6.0)
    gt, valid = _padded_gt(rng, [3, 0, 5], 5)
    anchors = np.concatenate([anchors, anchors[:1]])  # 3 images
    matcher = B.Matcher(0.5, 0.3, allow_low_quality_matches=allow_low)
    q = B.box_iou(xp.asarray(gt), xp.asarray(anchors))
    got = xp.to_numpy(matcher(q, xp.asarray(valid)))
    assert got.shape == (3, 40)
    q_np = xp.to_numpy(q)
    for i in range(3):
        c = int(valid[i].sum())
        np.testing.assert_array_equal(got[i], ref_match(q_np[i, :c], 0.5, 0.3, allow_low), err_msg=f"image {i}")
    assert np.all(got[1] == -1)  # no ground truth: everything below the low threshold
    if allow_low:
        # the reference must have produced some low-quality matches for this test to bite
        assert np.any(got != xp.to_numpy(B.Matcher(0.5, 0.3)(q, xp.asarray(valid))))


def test_matcher_low_quality_needs_positive_iou(xp):
    anchors = np.array([[0.0, 0.0, 1.0, 1.0], [2.0, 2.0, 3.0, 3.0]])
    gt = np.array([[10.0, 10.0, 11.0, 11.0], [0.0, 0.0, 1.0, 2.0]])
    q = B.box_iou(xp.asarray(gt), xp.asarray(anchors))
    got = xp.to_numpy(B.Matcher(0.7, 0.3, allow_low_quality_matches=True)(q))
    # gt 1 (IoU 0.5 with anchor 0) forces anchor 0; gt 0 overlaps nothing and forces nothing
    np.testing.assert_array_equal(got, [1, -1])


def test_matcher_low_quality_includes_ties(xp):
    anchors = np.array([[0.0, 0.0, 2.0, 2.0], [1.0, 0.0, 3.0, 2.0], [5.0, 5.0, 6.0, 6.0]])
    gt = np.array([[0.0, 0.0, 3.0, 2.0]])  # IoU 2/3 with both anchors 0 and 1: a tie
    got = xp.to_numpy(B.Matcher(0.7, 0.3, allow_low_quality_matches=True)(B.box_iou(xp.asarray(gt),
                                                                                    xp.asarray(anchors))))
    np.testing.assert_array_equal(got, [0, 0, -1])


def test_ssd_matcher_forces_best_prior_and_later_gt_wins(xp):
    priors = np.array([[0.0, 0.0, 4.0, 4.0], [10.0, 10.0, 11.0, 11.0], [20.0, 20.0, 30.0, 30.0]])
    gt = np.array([[0.0, 0.0, 1.0, 1.0], [0.0, 0.0, 2.0, 2.0], [0.0, 0.0, 0.0, 0.0]])
    valid = np.array([True, True, False])
    q = B.box_iou(xp.asarray(gt), xp.asarray(priors))
    got = xp.to_numpy(B.SSDMatcher.with_threshold(0.5)(q, xp.asarray(valid)))
    # both real gts pick prior 0 (IoU 1/16 and 1/4, below 0.5): gt 1 (the later) wins; padding never matches
    np.testing.assert_array_equal(got, [1, -1, -1])
    rng = np.random.default_rng(7)
    priors = random_boxes(rng, 30, hi=6.0)
    gt = random_boxes(rng, 4, hi=6.0)
    q = B.box_iou(xp.asarray(gt), xp.asarray(priors))
    got = xp.to_numpy(B.SSDMatcher.with_threshold(0.5)(q))
    np.testing.assert_array_equal(got, ref_ssd_match(xp.to_numpy(q), 0.5))


def test_matcher_rejects_bad_thresholds_and_masks():
    with pytest.raises(ValueError, match="low_threshold"):
        B.Matcher(0.3, 0.5)
    with pytest.raises(ValueError, match="valid shape"):
        B.Matcher(0.5, 0.5)(np.zeros((2, 3)), np.ones(3, dtype=bool))


# -- sampling --------------------------------------------------------------------------
def test_sample_balanced_counts_and_subsets(xp):
    rng = np.random.default_rng(8)
    labels = rng.choice([-1, 0, 0, 0, 1, 2], size=(4, 50))
    labels[3] = np.where(labels[3] > 0, 0, labels[3])  # an image without positives
    pos, neg = B.sample_balanced(xp.asarray(labels), batch_size_per_image=16, positive_fraction=0.25, seed=0)
    pos, neg = xp.to_numpy(pos), xp.to_numpy(neg)
    for i in range(4):
        n_pos, n_neg = int((labels[i] >= 1).sum()), int((labels[i] == 0).sum())
        want_pos = min(n_pos, 4)
        assert pos[i].sum() == want_pos
        assert neg[i].sum() == min(n_neg, 16 - want_pos)
        assert np.all(labels[i][pos[i]] >= 1) and np.all(labels[i][neg[i]] == 0)


def test_sample_balanced_takes_every_candidate_when_room(xp):
    labels = np.array([[1, 0, -1, 2, 0], [0, 0, 0, -1, -1]])
    pos, neg = B.sample_balanced(xp.asarray(labels), batch_size_per_image=100, positive_fraction=0.5, seed=None)
    np.testing.assert_array_equal(xp.to_numpy(pos), labels >= 1)
    np.testing.assert_array_equal(xp.to_numpy(neg), labels == 0)


def test_sample_balanced_seed(xp):
    labels = np.zeros((2, 200), dtype=np.int64)
    labels[:, ::3] = 1

    def draw(seed):
        pos, neg = B.sample_balanced(xp.asarray(labels), batch_size_per_image=20, positive_fraction=0.5, seed=seed)
        return xp.to_numpy(pos), xp.to_numpy(neg)

    a, b = draw(123), draw(123)
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    c = draw(124)
    assert not np.array_equal(a[1], c[1])
    fresh = [draw(None)[1] for _ in range(3)]
    assert not all(np.array_equal(fresh[0], f) for f in fresh[1:])
    # the two images get independent samples
    assert not np.array_equal(a[1][0], a[1][1])


def test_sample_balanced_is_uniform():
    labels = np.zeros((1, 10), dtype=np.int64)
    gen = np.random.default_rng(0)
    hits = np.zeros(10)
    for _ in range(2000):
        _, neg = B.sample_balanced(labels, batch_size_per_image=3, positive_fraction=0.5, seed=gen)
        hits += neg[0]
    np.testing.assert_allclose(hits / 2000, 0.3, atol=0.05)


# -- hard negative mining ----------------------------------------------------------------
def ref_mining(loss: np.ndarray, positive: np.ndarray, ratio: float) -> np.ndarray:
    out = np.zeros_like(positive)
    for i in range(loss.shape[0]):
        k = math.floor(ratio * positive[i].sum())
        candidates = [j for j in np.argsort(-loss[i], kind="stable") if not positive[i, j]]
        out[i, candidates[:k]] = True
    return out


@pytest.mark.parametrize("ratio", [3, 2.5, 100])
def test_hard_negative_mining_matches_reference(xp, ratio):
    rng = np.random.default_rng(9)
    loss = rng.uniform(size=(3, 25))
    positive = rng.uniform(size=(3, 25)) < 0.2
    positive[2] = False
    got = xp.to_numpy(B.hard_negative_mining(xp.asarray(loss), xp.asarray(positive), neg_pos_ratio=ratio))
    np.testing.assert_array_equal(got, ref_mining(loss, positive, ratio))
    assert not np.any(got & positive)
    assert not got[2].any()


@pytest.mark.parametrize("ground_truth", [3, 40])  # row by row up to 32 ground truths, whole matrix above
def test_matchers_match_reference_on_both_sides_of_the_row_loop_limit(xp, ground_truth):
    rng = np.random.default_rng(11)
    anchors = random_boxes(rng, 60, hi=6.0)
    counts = [ground_truth, 0, ground_truth - 2]
    gt, valid = _padded_gt(rng, counts, ground_truth)
    q = B.box_iou(xp.asarray(gt), xp.asarray(anchors))
    q_np = xp.to_numpy(q)
    for i, c in enumerate(counts):
        np.testing.assert_allclose(q_np[i, :c], ref_pairwise(gt[i, :c], anchors, "iou"), rtol=max(xp.rtol, 1e-12),
                                   atol=1e-6)
    matchers = {
        "low": (B.Matcher(0.5, 0.3, allow_low_quality_matches=True), lambda m: ref_match(m, 0.5, 0.3, True)),
        "plain": (B.Matcher(0.5, 0.3), lambda m: ref_match(m, 0.5, 0.3, False)),
        "ssd": (B.SSDMatcher.with_threshold(0.5), lambda m: ref_ssd_match(m, 0.5)),
    }
    for name, (matcher, reference) in matchers.items():
        got = xp.to_numpy(matcher(q, xp.asarray(valid)))
        for i, c in enumerate(counts):
            np.testing.assert_array_equal(got[i], reference(q_np[i, :c]), err_msg=f"{name} image {i}")


def test_encode_matched_equals_gathering_then_encoding(xp):
    rng = np.random.default_rng(12)
    gt, valid = _padded_gt(rng, [3, 0, 2], 3)
    gt[~valid] = np.nan  # padding may hold anything
    gt[2, 1, 2] = gt[2, 1, 0]  # a zero-width real box, matched by no positive anchor below
    anchors = random_boxes(rng, 20, hi=6.0)
    positive = rng.random((3, 20)) < 0.5
    positive[1] = False
    index = rng.integers(0, 3, (3, 20))
    index[1] = 0
    index[2] = np.where(positive[2], 0, 1)  # image 2's zero-width box 1 only behind background anchors
    coder = B.BoxCoder((10.0, 10.0, 5.0, 5.0))
    backend = resolve(xp.asarray(anchors), input_name="anchors")
    got = xp.to_numpy(B.encode_matched(coder, backend, xp.asarray(gt), xp.asarray(valid), xp.asarray(index),
                                       xp.asarray(anchors), xp.asarray(positive)))
    expected = np.zeros((3, 20, 4))
    for i in range(3):
        for j in range(20):
            if positive[i, j]:
                expected[i, j] = ref_encode(gt[i, index[i, j]], anchors[j], coder.weights)
    np.testing.assert_allclose(got, expected, rtol=max(xp.rtol, 1e-12), atol=1e-9)

    class Halved(B.BoxCoder):  # a replaced coder is called on the gathered boxes
        def encode(self, boxes, anchors):
            return super().encode(boxes, anchors) / 2

    halved = xp.to_numpy(B.encode_matched(Halved(coder.weights), backend, xp.asarray(gt), xp.asarray(valid),
                                          xp.asarray(index), xp.asarray(anchors), xp.asarray(positive)))
    np.testing.assert_allclose(halved, expected / 2, rtol=max(xp.rtol, 1e-12), atol=1e-9)


def test_match_boxes_equals_matching_the_iou_matrix(xp):
    rng = np.random.default_rng(13)
    anchors = random_boxes(rng, 50, hi=6.0)
    gt, valid = _padded_gt(rng, [4, 1, 0], 4)
    g, a, m = xp.asarray(gt), xp.asarray(anchors), xp.asarray(valid)
    for matcher in (B.Matcher(0.5, 0.3, allow_low_quality_matches=True), B.SSDMatcher.with_threshold(0.4)):
        np.testing.assert_array_equal(xp.to_numpy(matcher.match_boxes(g, a, m)),
                                      xp.to_numpy(matcher(B.box_iou(g, a), m)))

    class Strict(B.Matcher):  # overriding __call__ keeps it in charge
        def __call__(self, quality, valid=None):
            return super().__call__(quality, valid) * 0 - 1

    assert np.all(xp.to_numpy(Strict(0.5, 0.3).match_boxes(g, a, m)) == -1)
    with pytest.raises(ValueError, match="valid shape"):
        B.Matcher(0.5, 0.3).match_boxes(g, a, xp.asarray(valid[:, :2]))


@pytest.mark.parametrize("per_image_anchors", [False, True])
def test_match_boxes_of_a_padded_batch_match_the_per_image_reference(xp, per_image_anchors):
    # counts out of order, an image without ground truth, and one whose padding is not at the end:
    # on host arrays the images are grouped by count and no padding row is computed
    rng = np.random.default_rng(14)
    counts = [2, 5, 0, 3, 5, 1]
    gt, valid = _padded_gt(rng, counts, 6)
    gt[~valid] = 1e6  # padding may hold anything
    anchors = random_boxes(rng, len(counts), 70, hi=6.0) if per_image_anchors else random_boxes(rng, 70, hi=6.0)
    gt[3, :4] = np.concatenate([gt[3, :1], rng.uniform(size=(1, 4)), gt[3, 1:3]])  # real, padding, real, real
    valid[3, :4] = [True, False, True, True]
    gt[3, 1] = -5.0
    matchers = {
        "low": (B.Matcher(0.5, 0.3, allow_low_quality_matches=True), lambda m: ref_match(m, 0.5, 0.3, True)),
        "plain": (B.Matcher(0.5, 0.3), lambda m: ref_match(m, 0.5, 0.3, False)),
        "ssd": (B.SSDMatcher.with_threshold(0.4), lambda m: ref_ssd_match(m, 0.4)),
    }
    for layout in ("gap", "prefix"):
        v = valid.copy()
        if layout == "prefix":
            v[3] = np.arange(6) < 3
            gt[3, :3] = gt[3, [0, 2, 3]]
        for name, (matcher, reference) in matchers.items():
            got = xp.to_numpy(matcher.match_boxes(xp.asarray(gt), xp.asarray(anchors), xp.asarray(v)))
            assert got.shape == (len(counts), 70)
            for i in range(len(counts)):
                real = np.flatnonzero(v[i])
                if real.size == 0:
                    np.testing.assert_array_equal(got[i], -1, err_msg=f"{layout} {name} image {i}")
                    continue
                q = ref_pairwise(gt[i, real], anchors[i] if per_image_anchors else anchors, "iou")
                expected = reference(q)
                expected = np.where(expected >= 0, real[np.maximum(expected, 0)], expected)
                np.testing.assert_array_equal(got[i], expected, err_msg=f"{layout} {name} image {i}")
            if not per_image_anchors:  # predictions (1, P, 4) broadcast over the images
                shared = matcher.match_boxes(xp.asarray(gt), xp.asarray(anchors[None]), xp.asarray(v))
                np.testing.assert_array_equal(xp.to_numpy(shared), got, err_msg=f"{layout} {name} broadcast")


def test_random_keys_of_an_int_seed_are_the_same_on_every_backend(xp):
    backend = resolve(xp.asarray(np.zeros(1)), input_name="x")
    numpy_backend = resolve(np.zeros(1), input_name="x")
    for seed in (0, 7, [7, 1], (2**62, 3)):
        expected = B.random_keys(numpy_backend, (3, 50), seed=seed, device=None)
        got = B.random_keys(backend, (3, 50), seed=seed, device=backend.device(xp.asarray(np.zeros(1))))
        np.testing.assert_array_equal(xp.to_numpy(got), expected, err_msg=f"seed {seed}")
    with pytest.raises(ValueError, match="seed"):
        B.random_keys(backend, (2, 3), seed=-1, device=None)
    with pytest.raises(ValueError, match="seed"):
        B.random_keys(backend, (2, 3), seed=[1, "a"], device=None)


def test_random_keys_of_an_array_seed_equal_those_of_the_int(xp):
    backend = resolve(xp.asarray(np.zeros(1)), input_name="x")
    device = backend.device(xp.asarray(np.zeros(1)))
    numpy_backend = resolve(np.zeros(1), input_name="x")
    for seed in (0, 12345, 2**40 + 3, 2**63 - 1):
        array_seed = xp.asarray(np.asarray(seed, dtype=np.int64), dtype=xp.ns.int64)
        expected = B.random_keys(numpy_backend, (2, 40), seed=[seed, 1], device=None)
        got = B.random_keys(backend, (2, 40), seed=[array_seed, 1], device=device)
        np.testing.assert_array_equal(xp.to_numpy(got), expected, err_msg=f"seed {seed}")
    assert not np.array_equal(B.random_keys(numpy_backend, (2, 40), seed=np.int64(4), device=None),
                              B.random_keys(numpy_backend, (2, 40), seed=5, device=None))
    with pytest.raises(ValueError, match="seed"):
        B.random_keys(backend, (2, 3), seed=xp.asarray(np.array([1, 2]), dtype=xp.ns.int64), device=device)
    negative = xp.asarray(np.asarray(-3, dtype=np.int64), dtype=xp.ns.int64)
    if backend.is_host_array(negative):  # values on a device are not read back
        with pytest.raises(ValueError, match="seed"):
            B.random_keys(backend, (2, 3), seed=negative, device=device)


def test_seed_words_of_int64_arrays_equal_those_of_python_ints():
    # the words of a traced (device, compiled) seed and of a host int are the same numbers
    for seed in (0, 1, 2**31 - 1, 2**31, 2**62 + 5, 2**63 - 1):
        words = B._seed_words([seed, 3])
        from_arrays = B._seed_words([np.asarray(seed, dtype=np.int64), np.asarray(3, dtype=np.int64)])
        assert [int(w) for w in from_arrays] == list(words), seed
        assert all(0 <= w < 2**31 for w in words)


def test_random_keys_of_neighbouring_seeds_are_independent():
    # the first place of a row of 6 for seeds s and s + 1: uniform over the 36 pairs
    backend = resolve(np.zeros(1), input_name="x")
    first = np.array([int(np.argmin(B.random_keys(backend, (1, 6), seed=s, device=None))) for s in range(3601)])
    counts = np.bincount(first[:-1] * 6 + first[1:], minlength=36)
    chi2 = float(((counts - 100.0) ** 2 / 100.0).sum())
    assert chi2 < 70.0, counts  # 35 degrees of freedom: P(chi2 > 70) < 1e-3


def test_random_keys_are_distinct_seeded_and_uniformly_ordered(xp):
    backend = resolve(xp.asarray(np.zeros(1)), input_name="x")
    keys = xp.to_numpy(B.random_keys(backend, (4000, 6), seed=3, device=None))
    assert keys.dtype == np.int64 and keys.min() >= 0 and keys.max() < 2**B.KEY_BITS
    assert all(len(set(row)) == 6 for row in keys)
    np.testing.assert_array_equal(keys, xp.to_numpy(B.random_keys(backend, (4000, 6), seed=3, device=None)))
    assert not np.array_equal(keys, xp.to_numpy(B.random_keys(backend, (4000, 6), seed=[3, 1], device=None)))
    # the smallest key's position is uniform over the row: 4000 rows, 6 places, about 667 each
    counts = np.bincount(keys.argmin(axis=1), minlength=6)
    assert counts.min() > 560 and counts.max() < 780, counts
