"""polyloss.boxes.matching: Matcher, SSDMatcher and match_boxes against the references of ``_refs``."""

from __future__ import annotations

import numpy as np
import pytest
from boxes._refs import padded_gt
from boxes._refs import random_boxes
from boxes._refs import ref_match
from boxes._refs import ref_pairwise
from boxes._refs import ref_ssd_match

from polyloss import boxes as B


@pytest.mark.parametrize("allow_low", [False, True])
def test_matcher_matches_reference_per_image(xp, allow_low):
    rng = np.random.default_rng(6)
    anchors = random_boxes(rng, 2, 40, hi=6.0)
    gt, valid = padded_gt(rng, [3, 0, 5], 5)
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



@pytest.mark.parametrize("ground_truth", [3, 40])  # row by row up to 32 ground truths, whole matrix above
def test_matchers_match_reference_on_both_sides_of_the_row_loop_limit(xp, ground_truth):
    rng = np.random.default_rng(11)
    anchors = random_boxes(rng, 60, hi=6.0)
    counts = [ground_truth, 0, ground_truth - 2]
    gt, valid = padded_gt(rng, counts, ground_truth)
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



def test_match_boxes_equals_matching_the_iou_matrix(xp):
    rng = np.random.default_rng(13)
    anchors = random_boxes(rng, 50, hi=6.0)
    gt, valid = padded_gt(rng, [4, 1, 0], 4)
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
    gt, valid = padded_gt(rng, counts, 6)
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
