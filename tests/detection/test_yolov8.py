"""The "yolov8" recipe against ultralytics' v8DetectionLoss, across backends, and its closed-form gradients."""

from __future__ import annotations

import numpy as np
import pytest
from _ultralytics import reference_loss
from _ultralytics import scene

import polyloss as pl
from polyloss.detection.yolov8 import YOLOv8Loss
from polyloss.detection.yolov8 import make_anchor_points

torch = pytest.importorskip("torch")
pytestmark = pytest.mark.filterwarnings("ignore:Dynamo detected a call to a `functools.lru_cache`:UserWarning")

C = 5
COMPONENTS = ("box", "cls", "dfl")


def _call(recipe, s, convert, method="__call__"):
    return getattr(recipe, method)(convert(s.pred_distri), convert(s.pred_scores), convert(s.anchor_points),
                                   convert(s.strides), convert(s.gt_boxes), convert(s.gt_labels))


def _f32(a):
    return torch.tensor(a, dtype=torch.float32 if a.dtype.kind == "f" else torch.int64)


@pytest.mark.parametrize("counts", [(0, 0), (1, 0), (1,), (6, 1, 0), (12, 9, 3, 7)], ids=str)
@pytest.mark.parametrize("reg_max", [16, 8])
def test_equals_ultralytics_components_and_gradients(counts, reg_max):
    s = scene(counts, num_classes=C, reg_max=reg_max, seed=sum(counts) + reg_max)
    expected, g_distri, g_scores = reference_loss(s, C, reg_max)
    recipe = pl.get_recipe("yolov8", num_classes=C, reg_max=reg_max)
    distri = _f32(s.pred_distri).requires_grad_(True)
    scores = _f32(s.pred_scores).requires_grad_(True)
    out = recipe(distri, scores, _f32(s.anchor_points), _f32(s.strides), _f32(s.gt_boxes), _f32(s.gt_labels))
    got = np.array([float(out.components[k].detach()) for k in COMPONENTS])
    np.testing.assert_allclose(got, expected, rtol=2e-5, atol=1e-6)
    assert float(out.total.detach()) == pytest.approx(expected.sum(), rel=2e-5, abs=1e-6)
    if sum(counts) == 0:
        assert got[0] == 0.0 and got[2] == 0.0
    else:
        assert got[0] > 0 and got[2] > 0
    gd, gs = torch.autograd.grad(out.total, [distri, scores])
    np.testing.assert_allclose(gd.numpy(), g_distri, rtol=1e-4, atol=2e-6 * max(1.0, np.abs(g_distri).max()))
    np.testing.assert_allclose(gs.numpy(), g_scores, rtol=1e-4, atol=2e-6 * max(1.0, np.abs(g_scores).max()))
    for fast in (True, False):
        with pl.fast_paths(fast):
            result, grads = _call(recipe, s, _f32, "value_and_grad")
        np.testing.assert_allclose([float(result.components[k]) for k in COMPONENTS], expected, rtol=2e-5, atol=1e-6)
        np.testing.assert_allclose(grads["pred_distri"].numpy(), g_distri, rtol=1e-4,
                                   atol=2e-6 * max(1.0, np.abs(g_distri).max()))
        np.testing.assert_allclose(grads["pred_scores"].numpy(), g_scores, rtol=1e-4,
                                   atol=2e-6 * max(1.0, np.abs(g_scores).max()))


def test_equals_ultralytics_with_other_gains_and_topk():
    s = scene((8, 2), num_classes=C, seed=11, small=False)
    crit_gains = (2.0, 1.0, 0.25)
    from _ultralytics import criterion

    crit = criterion(C, 16, gains=crit_gains)
    crit.assigner.topk = crit.assigner.topk2 = 4
    distri = torch.tensor(s.pred_distri, dtype=torch.float32)
    scores = torch.tensor(s.pred_scores, dtype=torch.float32)
    loss, _ = crit({"boxes": distri.permute(0, 2, 1), "scores": scores.permute(0, 2, 1), "feats": s.feats}, s.batch)
    recipe = pl.get_recipe("yolov8", num_classes=C, box=2.0, cls=1.0, dfl=0.25, tal_topk=4)
    out = recipe(distri, scores, _f32(s.anchor_points), _f32(s.strides), _f32(s.gt_boxes), _f32(s.gt_labels))
    np.testing.assert_allclose([float(out.components[k]) for k in COMPONENTS], loss.numpy(), rtol=2e-5)


def test_small_boxes_get_candidates_through_the_second_stride_floor():
    """A box of 6 x 6 pixels centred at (33, 33) holds no anchor point of any level; raised to 16 x 16 about
    its centre it holds four at stride 8 and one at stride 16: it is assigned, as in ultralytics >= 8.4.131."""
    points, strides = make_anchor_points(64, 64)
    gt = np.array([[[30.0, 30.0, 36.0, 36.0]]])
    distri = np.zeros((1, len(points), 4, 8))
    distri[..., 1] = 5.0  # every side about one grid unit: boxes overlapping the ground truth
    scores = np.zeros((1, len(points), 2))
    recipe = YOLOv8Loss(num_classes=2, reg_max=8)
    targets = recipe.assign(distri.reshape(1, -1, 32), scores, points, strides, gt, np.array([[1]]))
    fg = np.flatnonzero(targets.assignment.positive[0])
    pixels = points * strides[:, None]
    candidates = np.flatnonzero(np.all(np.abs(pixels - 33.0) < 8.0, axis=1))
    assert len(candidates) == 5 and 1 <= len(fg) and set(fg) <= set(candidates)
    assert not np.any(np.all((pixels > 30.0) & (pixels < 36.0), axis=1))  # none inside the box itself


# -- backends ---------------------------------------------------------------------------------


@pytest.mark.parametrize("counts", [(5, 0, 2), (0,)], ids=str)
def test_same_numbers_on_every_backend(counts, xp):
    s = scene(counts, num_classes=C, reg_max=8, size=96, seed=3)
    recipe = pl.get_recipe("yolov8", num_classes=C, reg_max=8)
    ref, ref_grads = _call(recipe, s, np.asarray, "value_and_grad")
    out = _call(recipe, s, xp.asarray)
    result, grads = _call(recipe, s, xp.asarray, "value_and_grad")
    for k in COMPONENTS:
        want = float(ref.components[k])
        assert float(xp.to_numpy(out.components[k])) == pytest.approx(want, rel=max(xp.rtol, 1e-12), abs=xp.atol)
        assert float(xp.to_numpy(result.components[k])) == pytest.approx(want, rel=max(xp.rtol, 1e-12), abs=xp.atol)
    for name in ("pred_distri", "pred_scores"):
        np.testing.assert_allclose(xp.to_numpy(grads[name]), ref_grads[name], rtol=xp.rtol, atol=xp.atol)


def test_closed_form_gradient_equals_torch_autograd_float64():
    s = scene((7, 3), num_classes=C, seed=5)
    recipe = pl.get_recipe("yolov8", num_classes=C)
    leaves = [torch.tensor(s.pred_distri, requires_grad=True), torch.tensor(s.pred_scores, requires_grad=True)]
    rest = [torch.tensor(a) for a in (s.anchor_points, s.strides, s.gt_boxes, s.gt_labels)]
    for fast in (True, False):
        with pl.fast_paths(fast):
            out = recipe(*leaves, *rest)
            auto = torch.autograd.grad(out.total, leaves)
            result, grads = recipe.value_and_grad(*(t.detach() for t in leaves), *rest)
        assert float(result.total) == pytest.approx(float(out.total.detach()), rel=1e-13)
        for g, name in zip(auto, ("pred_distri", "pred_scores"), strict=True):
            torch.testing.assert_close(grads[name], g, rtol=1e-10, atol=1e-13)


def test_closed_form_gradient_equals_finite_differences_on_fixed_targets():
    """The loss stage is smooth once the assignment is fixed: central differences in float64 NumPy. The box
    term is left out (gain 0): CIoU's alpha is a constant of its gradient (torchvision, ultralytics), not of
    its value; that term is checked against autograd and ultralytics above."""
    s = scene((4, 2), num_classes=3, reg_max=8, size=64, seed=8)
    recipe = pl.get_recipe("yolov8", num_classes=3, reg_max=8, box=0.0)
    args = (s.anchor_points, s.strides)
    targets = recipe.assign(s.pred_distri, s.pred_scores, *args, s.gt_boxes, s.gt_labels)
    stage = recipe.loss_stage(s.pred_distri, s.pred_scores, *args, targets)
    _, grads = recipe.differentiate(stage)

    def total(distri, scores):
        return float(recipe.loss(distri, scores, *args, targets).total)

    rng = np.random.default_rng(0)
    fg = np.argwhere(np.asarray(targets.assignment.positive))
    h = 1e-6
    for name, x in (("pred_distri", s.pred_distri), ("pred_scores", s.pred_scores)):
        picks = [(*fg[rng.integers(len(fg))], rng.integers(x.shape[2])) for _ in range(12)]
        picks += [tuple(rng.integers(d) for d in x.shape) for _ in range(4)]
        for index in picks:
            plus, minus = x.copy(), x.copy()
            plus[index] += h
            minus[index] -= h
            a = (plus, s.pred_scores) if name == "pred_distri" else (s.pred_distri, plus)
            b = (minus, s.pred_scores) if name == "pred_distri" else (s.pred_distri, minus)
            numeric = (total(*a) - total(*b)) / (2 * h)
            assert grads[name][index] == pytest.approx(numeric, rel=1e-5, abs=1e-7), (name, index)


def test_compiles_fullgraph_and_matches_eager():
    s = scene((4, 0, 2), num_classes=C, reg_max=8, size=64, seed=2)
    recipe = pl.get_recipe("yolov8", num_classes=C, reg_max=8, validate=False)
    leaves = [torch.tensor(s.pred_distri, requires_grad=True), torch.tensor(s.pred_scores, requires_grad=True)]
    rest = [torch.tensor(a) for a in (s.anchor_points, s.strides, s.gt_boxes, s.gt_labels)]
    eager = recipe(*leaves, *rest)
    torch._dynamo.reset()
    compiled = torch.compile(lambda d, c: recipe(d, c, *rest), fullgraph=True, backend="eager")
    out = compiled(*leaves)
    for k in COMPONENTS:
        torch.testing.assert_close(out.components[k], eager.components[k], rtol=1e-12, atol=0)
    got = torch.autograd.grad(out.total, leaves)
    expected = torch.autograd.grad(eager.total, leaves)
    for g, e in zip(got, expected, strict=True):
        torch.testing.assert_close(g, e, rtol=1e-12, atol=1e-15)


# -- arguments and edge rules ---------------------------------------------------------------------


def test_result_is_ultralytics_layout_and_stages_are_public():
    s = scene((3, 1), num_classes=C, reg_max=8, size=64, seed=1)
    recipe = pl.get_recipe("yolov8", num_classes=C, reg_max=8)
    out = _call(recipe, s, np.asarray)
    assert tuple(out.components) == COMPONENTS
    assert float(out.total) == pytest.approx(sum(float(v) for v in out.components.values()))
    targets = recipe.assign(s.pred_distri, s.pred_scores, s.anchor_points, s.strides, s.gt_boxes, s.gt_labels)
    again = recipe.loss(s.pred_distri, s.pred_scores, s.anchor_points, s.strides, targets)
    assert float(again.total) == float(out.total)
    n, a = s.pred_scores.shape[:2]
    assert targets.boxes.shape == (n, a, 4) and targets.weight.shape == (n, a)
    assert np.all(targets.distances >= 0) and np.all(targets.distances <= 8 - 1.01 + 1e-12)
    boxes = recipe.decode_boxes(s.pred_distri, s.anchor_points)
    assert boxes.shape == (n, a, 4) and np.all(boxes[..., 2:] >= boxes[..., :2])
    assert "yolov8" in pl.recipes()


def test_normalize_over_world_equals_local_in_one_process():
    s = scene((3, 1), num_classes=C, reg_max=8, size=64, seed=4)
    a = _call(pl.get_recipe("yolov8", num_classes=C, reg_max=8), s, np.asarray)
    b = _call(pl.get_recipe("yolov8", num_classes=C, reg_max=8, normalize_over="world"), s, np.asarray)
    assert float(a.total) == float(b.total)


def test_bad_arguments_name_themselves():
    s = scene((2,), num_classes=C, reg_max=8, size=64)
    recipe = pl.get_recipe("yolov8", num_classes=C, reg_max=8)
    args = [s.pred_distri, s.pred_scores, s.anchor_points, s.strides, s.gt_boxes, s.gt_labels]
    with pytest.raises(ValueError, match="pred_distri"):
        recipe(s.pred_distri[..., :-1], *args[1:])
    with pytest.raises(ValueError, match="pred_scores"):
        recipe(args[0], s.pred_scores[..., :-1], *args[2:])
    with pytest.raises(ValueError, match="strides"):
        recipe(*args[:3], s.strides[:-1], *args[4:])
    with pytest.raises(TypeError, match="pred_scores"):
        recipe(args[0], s.pred_scores.astype(np.int64), *args[2:])
    bad = s.gt_labels.copy()
    bad[0, 0] = C
    with pytest.raises(ValueError, match=r"gt_labels\[0\]\[0\]"):
        recipe(*args[:5], bad)
    for config, name in (({"num_classes": 0}, "num_classes"), ({"num_classes": 2, "reg_max": 1}, "reg_max"),
                         ({"num_classes": 2, "tal_topk": 0}, "tal_topk"), ({"num_classes": 2, "box": -1.0}, "box")):
        with pytest.raises(ValueError, match=name):
            pl.get_recipe("yolov8", **config)


def test_make_anchor_points_is_ultralytics_make_anchors():
    from _ultralytics import ultralytics_tal

    feats = [torch.zeros(1, 1, 96 // s, 64 // s) for s in (8, 16, 32)]
    points, strides = ultralytics_tal.make_anchors(feats, torch.tensor([8.0, 16.0, 32.0]), 0.5)
    mine, mine_strides = make_anchor_points(96, 64)
    np.testing.assert_array_equal(mine, points.numpy())
    np.testing.assert_array_equal(mine_strides, strides[:, 0].numpy())
