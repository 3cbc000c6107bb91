"""FCOS's center sampling (``polyloss.boxes.center_sampling``) against torchvision's ``FCOS.compute_loss`` matching.

torchvision is called, never transcribed: ``FCOS.compute_loss`` runs with a
namespace as ``self`` whose head records the ``matched_idxs`` it is handed.
Five levels (strides 8 to 128, torchvision's anchor layout), images with 0, 1
and many boxes, float64 and float32, every backend case; then the tie rule,
explicit size ranges, padding, the bad-input errors and ``torch.compile``.
"""

from __future__ import annotations

import math
import types

import numpy as np
import pytest

from polyloss._torchvision import import_torchvision
from polyloss.boxes import CenterSampler
from polyloss.boxes import center_sampling
from polyloss.boxes import level_size_bounds
from polyloss.detection.fcos import fcos_anchors

IMAGE = 320
ANCHORS, COUNTS = fcos_anchors(IMAGE)  # 40^2 + 20^2 + 10^2 + 5^2 + 3^2 anchors


def scene(counts: tuple[int, ...], seed: int = 0) -> list[np.ndarray]:
    """Per-image xyxy boxes: sides from 6 to 300 pixels (every level gets some), corners inside the image."""
    rng = np.random.default_rng(seed)
    out = []
    for k in counts:
        size = np.exp(rng.uniform(math.log(6.0), math.log(300.0), size=(k, 2)))
        corner = rng.uniform(0, IMAGE - size)
        out.append(np.concatenate([corner, corner + size], axis=1))
    return out


def padded(boxes: list[np.ndarray], g: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    g = max([1, *(len(b) for b in boxes)]) if g is None else g
    out = np.zeros((len(boxes), g, 4))
    valid = np.zeros((len(boxes), g), dtype=bool)
    for i, b in enumerate(boxes):
        out[i, : len(b)] = b
        valid[i, : len(b)] = True
    return out, valid


def torchvision_matches(anchors: np.ndarray, counts: list[int], boxes: list[np.ndarray],
                        dtype: str = "float64", radius: float = 1.5) -> np.ndarray:
    """``matched_idxs`` of torchvision's ``FCOS.compute_loss``, stacked ``(N, A)``."""
    torchvision = import_torchvision()
    if torchvision is None:
        pytest.skip("torchvision is not installed (or cannot be imported)")
    import torch
    from torchvision.models.detection.fcos import FCOS

    seen: list[list[torch.Tensor]] = []
    head = types.SimpleNamespace(compute_loss=lambda targets, outputs, anchors, matched: seen.append(matched) or {})
    model = types.SimpleNamespace(center_sampling_radius=radius, head=head)
    t = getattr(torch, dtype)
    a = torch.tensor(anchors, dtype=t)
    targets = [{"boxes": torch.tensor(b.reshape(-1, 4), dtype=t), "labels": torch.zeros(len(b), dtype=torch.int64)}
               for b in boxes]
    FCOS.compute_loss(model, targets, {}, [a] * len(boxes), counts)
    return np.stack([m.numpy() for m in seen[0]])


@pytest.mark.parametrize("counts", [(0,), (1,), (12,), (0, 1, 12, 3)])
def test_matches_torchvision_on_every_backend(xp, counts):
    boxes = scene(counts, seed=len(counts))
    expected = torchvision_matches(ANCHORS, COUNTS, boxes, dtype=xp.dtype_name)
    gt, valid = padded(boxes)
    got = center_sampling(xp.asarray(ANCHORS), xp.asarray(gt), COUNTS, valid=xp.asarray(valid))
    got = xp.to_numpy(got)
    assert got.dtype == np.int64 and got.shape == expected.shape
    np.testing.assert_array_equal(got, expected)
    if sum(counts) >= 12:  # a real test: several levels, many anchors assigned, some contested
        levels = np.repeat(np.arange(5), COUNTS)
        assigned = got >= 0
        assert assigned.sum() > 50 and len(set(levels[assigned.any(axis=0)])) >= 3


@pytest.mark.parametrize("radius", [0.75, 2.5, math.inf])
def test_other_radii_match_torchvision(radius):
    boxes = scene((8, 8), seed=11)
    gt, valid = padded(boxes)
    np.testing.assert_array_equal(center_sampling(ANCHORS, gt, COUNTS, valid=valid, radius=radius),
                                  torchvision_matches(ANCHORS, COUNTS, boxes, radius=radius))


def test_smallest_area_wins_and_equal_areas_go_to_the_first_box():
    anchors = np.array([[0.0, 0.0, 8.0, 8.0]])  # one location at (4, 4), one level: range (0, inf)
    big, small = [0.0, 0.0, 10.0, 10.0], [1.0, 1.0, 7.0, 7.0]
    assert center_sampling(anchors, np.array([big, small]), [1]).tolist() == [1]
    assert center_sampling(anchors, np.array([small, big]), [1]).tolist() == [0]
    same_area = [[1.0, 1.0, 7.0, 7.0], [2.0, 0.0, 6.0, 9.0], [1.0, 1.0, 7.0, 7.0]]  # areas 36, 36, 36
    assert center_sampling(anchors, np.array(same_area), [1]).tolist() == [0]
    assert center_sampling(anchors, np.array(same_area[1:]), [1]).tolist() == [0]


def test_each_condition_excludes():
    anchors = np.array([[0.0, 0.0, 8.0, 8.0], [92.0, 92.0, 108.0, 108.0]])  # (4, 4) size 8; (100, 100) size 16
    # level 0: (0, 64); level 1 (last): (64, inf)
    inside_near = np.array([[[0.0, 0.0, 20.0, 20.0]]])  # centre (10, 10): 6 < 1.5 * 8 from (4, 4)
    assert center_sampling(anchors, inside_near, [1, 1]).tolist() == [[0, -1]]
    far = np.array([[[0.0, 0.0, 30.0, 30.0]]])  # centre (15, 15): 11 < 12, still near; 30 x 30 box
    assert center_sampling(anchors, far, [1, 1]).tolist() == [[0, -1]]
    too_far = np.array([[[0.0, 0.0, 34.0, 34.0]]])  # centre (17, 17): 13 >= 12
    assert center_sampling(anchors, too_far, [1, 1]).tolist() == [[-1, -1]]
    outside = np.array([[[5.0, 5.0, 12.0, 12.0]]])  # (4, 4) is left of the box
    assert center_sampling(anchors, outside, [1, 1]).tolist() == [[-1, -1]]
    on_edge = np.array([[[4.0, 0.0, 12.0, 8.0]]])  # l = 0: not strictly inside
    assert center_sampling(anchors, on_edge, [1, 1]).tolist() == [[-1, -1]]
    large = np.array([[[30.0, 30.0, 170.0, 170.0]]])  # at (100, 100): max distance 70 in (64, inf)
    assert center_sampling(anchors, large, [1, 1]).tolist() == [[-1, 0]]
    assert center_sampling(anchors, large, [1, 1], size_ranges=[(0, 64), (64, 65)]).tolist() == [[-1, -1]]


def test_padding_never_matches_whatever_it_holds():
    boxes = scene((3, 2), seed=5)
    gt, valid = padded(boxes, g=5)
    clean = center_sampling(ANCHORS, gt, COUNTS, valid=valid)
    gt[1, 2:] = [[1.0, 1.0, 319.0, 319.0], [np.nan, 0, np.inf, 4], [2.0, 2.0, 30.0, 30.0]]  # real ones would match
    np.testing.assert_array_equal(center_sampling(ANCHORS, gt, COUNTS, valid=valid), clean)
    assert clean.max() < 3


def test_paper_size_ranges_equal_the_default_rule_for_stride_sized_anchors():
    boxes = scene((15,), seed=2)
    gt, _ = padded(boxes)
    paper = [(0, 64), (64, 128), (128, 256), (256, 512), (512, math.inf)]
    np.testing.assert_array_equal(center_sampling(ANCHORS, gt, COUNTS, size_ranges=paper),
                                  center_sampling(ANCHORS, gt, COUNTS))
    lower, upper = level_size_bounds(ANCHORS[:, 2] - ANCHORS[:, 0], COUNTS)
    np.testing.assert_array_equal(lower[[0, -1]], [0.0, 512.0])
    np.testing.assert_array_equal(upper[[0, -1]], [64.0, math.inf])


def test_per_image_anchors_and_a_sampler_part(xp):
    boxes = scene((4, 6), seed=3)
    gt, valid = padded(boxes)
    sampler = CenterSampler(1.5)
    shared = xp.to_numpy(sampler(xp.asarray(ANCHORS), xp.asarray(gt), COUNTS, xp.asarray(valid)))
    per_image = np.broadcast_to(ANCHORS, (2, *ANCHORS.shape)).copy()
    got = xp.to_numpy(sampler(xp.asarray(per_image), xp.asarray(gt), COUNTS, xp.asarray(valid)))
    np.testing.assert_array_equal(got, shared)


@pytest.mark.parametrize(("kwargs", "error", "words"), [
    ({"num_anchors_per_level": [10, 10]}, ValueError, ["num_anchors_per_level", "2134"]),
    ({"num_anchors_per_level": [2134.0]}, TypeError, ["num_anchors_per_level"]),
    ({"radius": -1.0}, ValueError, ["radius"]),
    ({"size_ranges": [(0, 64)]}, ValueError, ["size_ranges", "5"]),
    ({"size_ranges": [(0, 64), (64, 64), (1, 2), (2, 3), (3, 4)]}, ValueError, ["size_ranges[1]"]),
    ({"valid": np.ones((1, 3), dtype=bool)}, ValueError, ["valid", "(1, 2)"]),
])
def test_bad_arguments_raise_naming_them(kwargs, error, words):
    args = {"num_anchors_per_level": COUNTS, **kwargs}
    counts = args.pop("num_anchors_per_level")
    with pytest.raises(error) as info:
        center_sampling(ANCHORS, padded(scene((2,)))[0], counts, **args)
    for word in words:
        assert word in str(info.value)


@pytest.mark.filterwarnings("ignore:Dynamo detected a call to a `functools.lru_cache`:UserWarning")
def test_runs_under_torch_compile_fullgraph():
    torch = pytest.importorskip("torch")
    boxes = scene((0, 5, 12), seed=7)
    gt, valid = padded(boxes)
    args = (torch.tensor(ANCHORS), torch.tensor(gt), torch.tensor(valid))
    torch._dynamo.reset()
    compiled = torch.compile(lambda a, g, v: center_sampling(a, g, COUNTS, valid=v), fullgraph=True, backend="eager")
    np.testing.assert_array_equal(compiled(*args).numpy(), torchvision_matches(ANCHORS, COUNTS, boxes))
