"""polyloss.boxes.coding: encode/decode, BoxCoder, encode_matched."""

from __future__ import annotations

import numpy as np
import pytest
from boxes._refs import padded_gt
from boxes._refs import random_boxes
from boxes._refs import ref_encode

from polyloss import boxes as B
from polyloss._namespace import resolve


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



def test_encode_matched_equals_gathering_then_encoding(xp):
    rng = np.random.default_rng(12)
    gt, valid = padded_gt(rng, [3, 0, 2], 3)
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


def test_ltrb_coding_matches_closed_form_and_inverts(xp):
    rng = np.random.default_rng(7)
    boxes = random_boxes(rng, 2, 6)
    points = rng.uniform(0.0, 20.0, size=(2, 6, 2))
    scale = rng.uniform(0.5, 4.0, size=(2, 6, 2))
    got = xp.to_numpy(B.encode_ltrb(xp.asarray(boxes), xp.asarray(points), scale=xp.asarray(scale)))
    px, py, sx, sy = points[..., 0], points[..., 1], scale[..., 0], scale[..., 1]
    ref = np.stack([(px - boxes[..., 0]) / sx, (py - boxes[..., 1]) / sy,
                    (boxes[..., 2] - px) / sx, (boxes[..., 3] - py) / sy], -1)
    np.testing.assert_allclose(got, ref, rtol=max(xp.rtol, 1e-12), atol=1e-5)
    back = B.decode_ltrb(xp.asarray(ref), xp.asarray(points), scale=xp.asarray(scale))
    np.testing.assert_allclose(xp.to_numpy(back), boxes, rtol=max(xp.rtol, 1e-12), atol=1e-4)
    unscaled = B.decode_ltrb(xp.asarray(ref), xp.asarray(points))
    np.testing.assert_allclose(xp.to_numpy(unscaled)[..., :2], points - ref[..., :2], atol=1e-4)


def test_ltrb_coding_equals_torchvision_linear_coder():
    torch = pytest.importorskip("torch")
    from polyloss._torchvision import import_torchvision

    if import_torchvision() is None:
        pytest.skip("torchvision is not installed")
    from torchvision.models.detection._utils import BoxLinearCoder

    rng = np.random.default_rng(8)
    anchors, boxes = random_boxes(rng, 1, 9)[0], random_boxes(rng, 1, 9)[0]
    centres = (anchors[:, :2] + anchors[:, 2:]) / 2
    sizes = anchors[:, 2:] - anchors[:, :2]
    coder = BoxLinearCoder(normalize_by_size=True)
    expected = coder.encode(torch.tensor(anchors), torch.tensor(boxes)).numpy()
    np.testing.assert_allclose(B.encode_ltrb(boxes, centres, scale=sizes), expected, rtol=1e-12)
    decoded = coder.decode(torch.tensor(expected), torch.tensor(anchors)).numpy()
    np.testing.assert_allclose(B.decode_ltrb(expected, centres, scale=sizes), decoded, rtol=1e-12)
