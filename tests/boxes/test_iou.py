"""polyloss.boxes.iou: the pairwise IoU family against the references of ``_refs``."""

from __future__ import annotations

import numpy as np
import pytest
from boxes._refs import random_boxes
from boxes._refs import ref_pairwise

from polyloss import boxes as B

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


def test_paired_box_iou_is_box_iou_on_broadcast_pairs(xp):
    rng = np.random.default_rng(4)
    a = random_boxes(rng, 2, 5)
    b = random_boxes(rng, 2, 7)
    a[0, 1] = [1.0, 1.0, 1.0, 1.0]  # a point box: IoU 0, not NaN
    expected = xp.to_numpy(B.box_iou(xp.asarray(a), xp.asarray(b)))
    got = xp.to_numpy(B.paired_box_iou(xp.asarray(a[:, :, None, :]), xp.asarray(b[:, None, :, :])))
    np.testing.assert_allclose(got, expected, rtol=max(xp.rtol, 1e-12), atol=1e-12)
    with pytest.raises(ValueError, match="boxes2"):
        B.paired_box_iou(xp.asarray(a), xp.asarray(b[..., :3]))


@pytest.mark.parametrize("key", list(PAIRWISE))
def test_nan_in_a_box_gives_nan_in_its_row_and_column_only(xp, key):
    rng = np.random.default_rng(5)
    a = random_boxes(rng, 4)
    b = random_boxes(rng, 3)
    a[1, 2] = np.nan
    b[2, 0] = np.nan
    got = xp.to_numpy(PAIRWISE[key](xp.asarray(a), xp.asarray(b)))
    nan = np.zeros((4, 3), dtype=bool)
    nan[1, :] = True
    nan[:, 2] = True
    np.testing.assert_array_equal(np.isnan(got), nan)
