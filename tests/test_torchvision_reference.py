"""polyloss against the real torchvision code: box ops, IoU-family losses, focal loss, box coder, matchers.

torchvision is the independent reference here: every expected number comes
from calling ``torchvision.ops`` or ``torchvision.models.detection._utils``
(imported through :func:`polyloss._torchvision.import_torchvision`, which
works around the CPU wheel's missing compiled operators). Values and autograd
gradients of both are compared in float64 (rtol 1e-9) and float32 (rtol 1e-5).

Inputs avoid the places where polyloss deliberately differs; each documented
difference has its own test showing that it is real and as documented:
zero-area boxes give an IoU of 0 where torchvision gives NaN, CIoU's
``atan(w / h)`` is ``atan2(w, h)`` (finite for a point box), and a
low-quality match needs an IoU above 0.
"""

from __future__ import annotations

import numpy as np
import pytest

import polyloss as pl
from polyloss import boxes as B
from polyloss._torchvision import import_torchvision

torch = pytest.importorskip("torch")
torchvision = import_torchvision()

pytestmark = pytest.mark.skipif(torchvision is None, reason="torchvision is not installed (or cannot be imported)")

TORCH_DTYPES = {"float64": torch.float64, "float32": torch.float32}
TOL = {"float64": (1e-9, 1e-12), "float32": (1e-5, 1e-6)}
GRAD_TOL = {"float64": (1e-9, 1e-12), "float32": (1e-5, 1e-5)}
FORMATS = ("xyxy", "xywh", "cxcywh")


# -- helpers -------------------------------------------------------------------------
def tv_ops():
    return torchvision.ops


def det_utils():
    from torchvision.models.detection import _utils

    return _utils


def assert_close(actual, expected, dtype_name, what="value", tol=TOL):
    rtol, atol = tol[dtype_name]
    np.testing.assert_allclose(np.asarray(actual, dtype=float), np.asarray(expected, dtype=float),
                               rtol=rtol, atol=atol, err_msg=what)


def tensor(a, dtype_name="float64", requires_grad=False):
    return torch.tensor(np.asarray(a), dtype=TORCH_DTYPES[dtype_name]).requires_grad_(requires_grad)


def value_and_grads(fn, arrays, dtype_name, cotangent=None):
    """``fn(*tensors)`` and the gradient of ``sum(cotangent * out)`` for every input, as NumPy."""
    leaves = [tensor(a, dtype_name, requires_grad=True) for a in arrays]
    out = fn(*leaves)
    weights = torch.ones_like(out) if cotangent is None else tensor(cotangent, dtype_name)
    grads = torch.autograd.grad((out * weights).sum(), leaves)
    return out.detach().numpy(), [g.numpy() for g in grads]


def random_boxes(rng, *shape, span=6.0, sizes=(0.5, 4.0)):
    corner = rng.uniform(0.0, span, size=(*shape, 2))
    return np.concatenate([corner, corner + rng.uniform(*sizes, size=(*shape, 2))], axis=-1)


def paired_boxes(rng, n=24):
    """Paired boxes with every kind of overlap polyloss and torchvision agree on."""
    a = random_boxes(rng, n)
    b = random_boxes(rng, n)
    b[0] = a[0]  # identical
    b[1] = a[1] + 20.0  # disjoint
    b[2] = [a[2, 2], a[2, 1], a[2, 2] + 1.0, a[2, 3]]  # touching edge
    b[3] = [a[3, 0] + 0.1, a[3, 1] + 0.1, a[3, 2] - 0.1, a[3, 3] - 0.1]  # contained
    b[4] = [a[4, 0] + 0.2, a[4, 1] - 0.3, a[4, 0] + 0.2, a[4, 3] + 0.5]  # zero width, positive height
    return a, b


def smooth_paired_boxes(rng, n=24):
    """Paired random boxes without ties between coordinates (every loss is differentiable there)."""
    a = random_boxes(rng, n)
    b = a + rng.uniform(-1.5, 1.5, size=a.shape)
    b[..., 2:] = np.maximum(b[..., 2:], b[..., :2] + 0.3)
    return a, b


# -- conversions, areas ---------------------------------------------------------------------
@pytest.mark.parametrize("in_fmt", FORMATS)
def test_box_convert_and_area_match_torchvision(xp, in_fmt):
    rng = np.random.default_rng(0)
    boxes = random_boxes(rng, 2, 7)  # any leading axes
    ref_dtype = "float32" if xp.dtype_name == "float32" else "float64"
    ops = tv_ops()
    for out_fmt in FORMATS:
        got = xp.to_numpy(B.box_convert(xp.asarray(boxes), in_fmt, out_fmt))
        expected = ops.box_convert(tensor(boxes, ref_dtype), in_fmt, out_fmt).numpy()
        assert got.shape == expected.shape
        assert_close(got, expected, ref_dtype, f"{in_fmt} -> {out_fmt}")
    if in_fmt == "xyxy":
        assert_close(xp.to_numpy(B.box_area(xp.asarray(boxes))), ops.box_area(tensor(boxes, ref_dtype)).numpy(),
                     ref_dtype, "area")


# -- pairwise IoU family ------------------------------------------------------------------
PAIRWISE = {
    "iou": (B.box_iou, lambda a, b: tv_ops().box_iou(a, b)),
    "giou": (B.generalized_box_iou, lambda a, b: tv_ops().generalized_box_iou(a, b)),
    "diou": (B.distance_box_iou, lambda a, b: tv_ops().distance_box_iou(a, b)),
    "ciou": (B.complete_box_iou, lambda a, b: tv_ops().complete_box_iou(a, b)),
}


def pairwise_inputs(rng, n, m, batch=()):
    a = random_boxes(rng, *batch, n)
    b = random_boxes(rng, *batch, m)
    b[..., 0, :] = a[..., 0, :]  # identical pair
    b[..., 1, :] = a[..., 1, :] + 20.0  # disjoint pair
    a[..., 2, :] = [1.0, 1.0, 1.0, 3.0]  # zero width, positive height (area 0, union > 0)
    return a, b


@pytest.mark.parametrize("kind", list(PAIRWISE))
@pytest.mark.parametrize("n", [5, 40])  # both sides of polyloss's row-loop limit
def test_pairwise_values_match_torchvision(xp, kind, n):
    ours, theirs = PAIRWISE[kind]
    a, b = pairwise_inputs(np.random.default_rng(1), n, 9, batch=(2,))
    ref_dtype = "float32" if xp.dtype_name == "float32" else "float64"
    expected = theirs(tensor(a, ref_dtype), tensor(b, ref_dtype)).numpy()
    got = xp.to_numpy(ours(xp.asarray(a), xp.asarray(b)))
    assert got.shape == expected.shape == (2, n, 9)
    assert np.all(np.isfinite(expected))  # no degenerate pair: torchvision's numbers are the reference
    assert_close(got, expected, ref_dtype, kind)


@pytest.mark.parametrize("kind", list(PAIRWISE))
@pytest.mark.parametrize("dtype_name", ["float64", "float32"])
@pytest.mark.parametrize("n", [6, 36])
def test_pairwise_gradients_match_torchvision(kind, dtype_name, n):
    ours, theirs = PAIRWISE[kind]
    rng = np.random.default_rng(2)
    a = random_boxes(rng, n)
    b = random_boxes(rng, 11)
    w = rng.uniform(0.5, 1.5, size=(n, 11))
    value, grads = value_and_grads(ours, [a, b], dtype_name, w)
    ref_value, ref_grads = value_and_grads(theirs, [a, b], dtype_name, w)
    assert_close(value, ref_value, dtype_name, kind)
    for name, g, ref in zip(("boxes1", "boxes2"), grads, ref_grads, strict=True):
        assert np.any(ref != 0)
        assert_close(g, ref, dtype_name, f"{kind} d/d{name}", tol=GRAD_TOL)


def test_zero_area_boxes_give_zero_iou_where_torchvision_gives_nan():
    """Documented difference: where the union is 0 (two zero-area boxes) the IoU is 0, not NaN."""
    point = np.array([[1.0, 1.0, 1.0, 1.0], [2.0, 2.0, 2.0, 5.0]])  # a point and a vertical segment
    others = np.array([[1.0, 1.0, 1.0, 1.0], [3.0, 3.0, 3.0, 3.0], [0.0, 0.0, 4.0, 4.0]])
    ops = tv_ops()
    theirs = ops.box_iou(tensor(point), tensor(others)).numpy()
    ours = B.box_iou(torch.tensor(point), torch.tensor(others)).numpy()
    degenerate = np.array([[True, True, False], [True, True, False]])  # pairs with union 0
    assert np.all(np.isnan(theirs[degenerate]))  # the difference is real
    assert np.all(ours[degenerate] == 0.0)  # and is as documented
    np.testing.assert_array_equal(ours[~degenerate], theirs[~degenerate])  # elsewhere the same (0 here)
    assert np.all(ours[~degenerate] == 0.0)  # a zero-area box inside a real one has no intersection area
    giou_theirs = ops.generalized_box_iou(tensor(point), tensor(others)).numpy()
    giou_ours = B.generalized_box_iou(torch.tensor(point), torch.tensor(others)).numpy()
    assert np.isnan(giou_theirs[0, 0]) and giou_ours[0, 0] == 0.0  # same point twice: 0 / 0 in torchvision
    assert_close(giou_ours[:, 2], giou_theirs[:, 2], "float64", "giou with a real box")
    # gradients through the degenerate pairs are finite (and 0) in polyloss
    p = torch.tensor(point, requires_grad=True)
    B.box_iou(p, torch.tensor(others)).sum().backward()
    assert torch.all(torch.isfinite(p.grad))


def test_ciou_uses_atan2_finite_for_a_point_box_where_torchvision_gives_nan():
    """Documented difference: CIoU's ``atan(w / h)`` is ``atan2(w, h)``: a point box gives 0, not NaN.

    The value polyloss gives is the limit of torchvision's along a zero-width
    box whose height shrinks to 0 (``atan(0 / h) = 0`` for every ``h > 0``).
    """
    point = np.array([[2.0, 2.0, 2.0, 2.0]])
    others = random_boxes(np.random.default_rng(3), 4)
    ops = tv_ops()
    theirs = ops.complete_box_iou(tensor(point), tensor(others)).numpy()
    assert np.all(np.isnan(theirs))  # the difference is real
    p = torch.tensor(point, requires_grad=True)
    ours = B.complete_box_iou(p, torch.tensor(others))
    ours.sum().backward()
    assert torch.all(torch.isfinite(ours)) and torch.all(torch.isfinite(p.grad))
    almost = point + np.array([[0.0, 0.0, 0.0, 1e-9]])  # zero width, height 1e-9: torchvision is finite
    limit = ops.complete_box_iou(tensor(almost), tensor(others)).numpy()
    np.testing.assert_allclose(ours.detach().numpy(), limit, rtol=0, atol=1e-8)
    # the same for the paired loss
    loss_theirs = ops.complete_box_iou_loss(tensor(np.repeat(point, 4, 0)), tensor(others), reduction="none")
    assert torch.all(torch.isnan(loss_theirs))
    loss_ours = pl.ciou_loss(torch.tensor(np.repeat(point, 4, 0)), torch.tensor(others), reduction="none")
    loss_limit = ops.complete_box_iou_loss(tensor(np.repeat(almost, 4, 0)), tensor(others), reduction="none")
    np.testing.assert_allclose(loss_ours.numpy(), loss_limit.numpy(), rtol=0, atol=1e-8)


# -- IoU-family losses ----------------------------------------------------------------------
def _tv_iou_loss(a, b, reduction="none", eps=1e-7):
    """Plain ``1 - IoU`` from torchvision's own loss intersection / union (torchvision has no IoU loss)."""
    from torchvision.ops._utils import _loss_inter_union

    inter, union = _loss_inter_union(a, b)
    loss = 1 - inter / (union + eps)
    return {"none": loss, "mean": loss.mean(), "sum": loss.sum()}[reduction]


LOSSES = {
    "iou": (pl.iou_loss, _tv_iou_loss),
    "giou": (pl.giou_loss, lambda a, b, **kw: tv_ops().generalized_box_iou_loss(a, b, **kw)),
    "diou": (pl.diou_loss, lambda a, b, **kw: tv_ops().distance_box_iou_loss(a, b, **kw)),
    "ciou": (pl.ciou_loss, lambda a, b, **kw: tv_ops().complete_box_iou_loss(a, b, **kw)),
}


@pytest.mark.parametrize("kind", list(LOSSES))
@pytest.mark.parametrize("reduction", ["none", "mean", "sum"])
def test_box_loss_values_match_torchvision(xp, kind, reduction):
    ours, theirs = LOSSES[kind]
    a, b = paired_boxes(np.random.default_rng(4))
    a, b = a.reshape(4, 6, 4), b.reshape(4, 6, 4)  # any leading axes
    ref_dtype = "float32" if xp.dtype_name == "float32" else "float64"
    expected = theirs(tensor(a, ref_dtype), tensor(b, ref_dtype), reduction=reduction).numpy()
    got = xp.to_numpy(ours(xp.asarray(a), xp.asarray(b), reduction=reduction))
    assert got.shape == expected.shape
    assert_close(got, expected, ref_dtype, f"{kind} {reduction}")


@pytest.mark.parametrize("kind", list(LOSSES))
@pytest.mark.parametrize("dtype_name", ["float64", "float32"])
@pytest.mark.parametrize("fast", [True, False])
def test_box_loss_gradients_match_torchvision(kind, dtype_name, fast):
    ours, theirs = LOSSES[kind]
    rng = np.random.default_rng(5)
    a, b = smooth_paired_boxes(rng)
    w = rng.uniform(0.5, 1.5, size=len(a))
    with pl.fast_paths(fast):
        value, grads = value_and_grads(lambda x, y: ours(x, y, reduction="none"), [a, b], dtype_name, w)
        mean, mean_grads = value_and_grads(lambda x, y: ours(x, y, reduction="mean"), [a, b], dtype_name)
    ref_value, ref_grads = value_and_grads(lambda x, y: theirs(x, y, reduction="none"), [a, b], dtype_name, w)
    ref_mean, ref_mean_grads = value_and_grads(lambda x, y: theirs(x, y, reduction="mean"), [a, b], dtype_name)
    assert_close(value, ref_value, dtype_name, kind)
    assert_close(mean, ref_mean, dtype_name, f"{kind} mean")
    for g, ref in zip(grads + mean_grads, ref_grads + ref_mean_grads, strict=True):
        assert np.any(ref != 0)
        assert_close(g, ref, dtype_name, f"{kind} gradient", tol=GRAD_TOL)


@pytest.mark.parametrize("kind", ["iou", "giou", "diou"])
def test_box_loss_eps_matches_torchvision(kind):
    ours, theirs = LOSSES[kind]
    a, b = paired_boxes(np.random.default_rng(6))
    for eps in (1e-7, 1e-2, 0.5):
        got = ours(torch.tensor(a), torch.tensor(b), eps=eps, reduction="none").numpy()
        assert_close(got, theirs(tensor(a), tensor(b), eps=eps, reduction="none").numpy(), "float64", f"eps={eps}")


def test_box_loss_empty_mean_matches_torchvision():
    empty = torch.zeros((0, 4), dtype=torch.float64)
    for kind, (ours, theirs) in LOSSES.items():
        if kind == "iou":
            continue
        assert float(ours(empty, empty)) == float(theirs(empty, empty, reduction="mean")) == 0.0


# -- focal loss ------------------------------------------------------------------------------
@pytest.mark.parametrize("alpha", [0.25, 0.75, -1.0])
@pytest.mark.parametrize("gamma", [0.0, 1.5, 2.0])
@pytest.mark.parametrize("dtype_name", ["float64", "float32"])
@pytest.mark.parametrize("fast", [True, False])
def test_sigmoid_focal_matches_torchvision(alpha, gamma, dtype_name, fast):
    rng = np.random.default_rng(7)
    x = 3 * rng.normal(size=(5, 7))
    t = rng.integers(0, 2, size=(5, 7)).astype(float)
    t[0] = rng.uniform(0, 1, size=7)  # soft targets: the same formula in both
    w = rng.uniform(0.5, 1.5, size=(5, 7))
    ops = tv_ops()
    for reduction in ("none", "mean", "sum"):
        cot = w if reduction == "none" else None
        with pl.fast_paths(fast):
            value, (g,) = value_and_grads(
                lambda z, r=reduction: pl.sigmoid_focal_loss(z, tensor(t, dtype_name), alpha=alpha, gamma=gamma,
                                                             reduction=r), [x], dtype_name, cot)
        ref, (ref_g,) = value_and_grads(
            lambda z, r=reduction: ops.sigmoid_focal_loss(z, tensor(t, dtype_name), alpha=alpha, gamma=gamma,
                                                          reduction=r), [x], dtype_name, cot)
        assert_close(value, ref, dtype_name, f"value {reduction}")
        assert_close(g, ref_g, dtype_name, f"gradient {reduction}", tol=GRAD_TOL)


def test_sigmoid_focal_values_on_every_backend(xp):
    rng = np.random.default_rng(8)
    x = 4 * rng.normal(size=(3, 4, 5))
    t = rng.integers(0, 2, size=(3, 4, 5)).astype(float)
    ref_dtype = "float32" if xp.dtype_name == "float32" else "float64"
    expected = tv_ops().sigmoid_focal_loss(tensor(x, ref_dtype), tensor(t, ref_dtype), reduction="none").numpy()
    got = xp.to_numpy(pl.sigmoid_focal_loss(xp.asarray(x), xp.asarray(t), reduction="none"))
    assert_close(got, expected, ref_dtype)


# -- box coder ------------------------------------------------------------------------------------
@pytest.mark.parametrize("weights", [(1.0, 1.0, 1.0, 1.0), (10.0, 10.0, 5.0, 5.0), (2.0, 3.0, 0.5, 7.0)])
@pytest.mark.parametrize("dtype_name", ["float64", "float32"])
def test_box_coder_matches_torchvision(weights, dtype_name):
    rng = np.random.default_rng(9)
    anchors = random_boxes(rng, 30)
    gt = random_boxes(rng, 30)
    coder = B.BoxCoder(weights)
    theirs = det_utils().BoxCoder(weights)
    # encode: regression targets of gt against anchors
    got = coder.encode(tensor(gt, dtype_name), tensor(anchors, dtype_name)).numpy()
    expected = theirs.encode_single(tensor(gt, dtype_name), tensor(anchors, dtype_name)).numpy()
    assert_close(got, expected, dtype_name, "encode")
    # decode, including deltas past the size clip, with gradients
    deltas = rng.normal(size=(30, 4)) * np.array([0.5, 0.5, 2.0, 2.0]) * np.array(weights)
    deltas[:3, 2:] = 50.0 * np.array(weights[2:])  # clamped at log(1000 / 16)
    cot = rng.uniform(0.5, 1.5, size=(30, 4))
    value, (g,) = value_and_grads(lambda d: coder.decode(d, tensor(anchors, dtype_name)), [deltas], dtype_name, cot)
    ref, (ref_g,) = value_and_grads(lambda d: theirs.decode_single(d, tensor(anchors, dtype_name)), [deltas],
                                    dtype_name, cot)
    assert np.all(np.isfinite(ref))
    assert_close(value, ref, dtype_name, "decode")
    assert_close(g, ref_g, dtype_name, "decode gradient", tol=GRAD_TOL)
    # batched (N, P, 4) encoding equals torchvision's per-image encode_single
    gt2, anchors2 = random_boxes(rng, 3, 10), random_boxes(rng, 10)
    got2 = coder.encode(tensor(gt2, dtype_name), tensor(anchors2, dtype_name)).numpy()
    for i in range(3):
        assert_close(got2[i], theirs.encode_single(tensor(gt2[i], dtype_name), tensor(anchors2, dtype_name)).numpy(),
                     dtype_name, f"image {i}")


# -- matchers ----------------------------------------------------------------------------------
def _overlapping_scene(rng, g, p):
    """``g`` ground truths and ``p`` anchors with every ground truth overlapping some anchor (IoU > 0)."""
    anchors = random_boxes(rng, p, span=8.0, sizes=(1.0, 3.0))
    gt = random_boxes(rng, g, span=8.0, sizes=(0.5, 3.0))
    k = (g + 1) // 2  # half of them close to an anchor: some IoU above every threshold
    gt[:k] = anchors[-k:] + rng.uniform(-0.05, 0.05, size=(k, 4))
    quality = tv_ops().box_iou(tensor(gt), tensor(anchors))
    assert torch.all(quality.max(dim=1).values > 0)
    return gt, anchors


MATCHER_CONFIGS = [(0.7, 0.3, True), (0.7, 0.3, False), (0.5, 0.5, False), (0.5, 0.4, True)]


@pytest.mark.parametrize("high,low,allow_low", MATCHER_CONFIGS)
@pytest.mark.parametrize("g", [1, 4, 40])  # polyloss works row by row up to 32 ground truths, whole above
def test_matcher_matches_torchvision(xp, high, low, allow_low, g):
    if xp.dtype_name == "float32":
        pytest.skip("matching compares IoU with thresholds: float32 may flip a comparison at the threshold")
    gt, anchors = _overlapping_scene(np.random.default_rng(10 + g), g, 120)
    quality = tv_ops().box_iou(tensor(gt), tensor(anchors))
    expected = det_utils().Matcher(high, low, allow_low_quality_matches=allow_low)(quality.clone()).numpy()
    got = xp.to_numpy(B.Matcher(high, low, allow_low_quality_matches=allow_low)(xp.asarray(quality.numpy())))
    np.testing.assert_array_equal(got, expected)
    assert {-1, 0} <= set(expected.tolist())


def test_matcher_low_quality_ties_match_torchvision():
    anchors = np.array([[0.0, 0.0, 2.0, 2.0], [2.0, 0.0, 4.0, 2.0], [5.0, 5.0, 6.0, 6.0], [0.0, 3.0, 1.0, 4.0]])
    gt = np.array([[1.0, 0.0, 3.0, 2.0], [5.0, 5.0, 9.0, 9.0]])
    quality = tv_ops().box_iou(tensor(gt), tensor(anchors))
    assert quality[0, 0] == quality[0, 1]  # gt 0 ties between anchors 0 and 1
    expected = det_utils().Matcher(0.7, 0.3, allow_low_quality_matches=True)(quality.clone()).numpy()
    got = B.Matcher(0.7, 0.3, allow_low_quality_matches=True)(quality).numpy()
    np.testing.assert_array_equal(got, expected)
    assert expected[0] == expected[1] == 0  # both tied anchors keep their low-quality match


@pytest.mark.parametrize("high,low,allow_low", MATCHER_CONFIGS)
def test_batched_matcher_with_padding_matches_torchvision_per_image(high, low, allow_low):
    rng = np.random.default_rng(11)
    counts = [3, 1, 5]
    anchors = random_boxes(rng, 80, span=8.0, sizes=(1.0, 3.0))
    boxes = np.zeros((3, 5, 4))
    valid = np.zeros((3, 5), dtype=bool)
    scenes = []
    for i, c in enumerate(counts):
        scenes.append(_overlapping_scene(rng, c, 80)[0])
        boxes[i, :c] = scenes[-1]
        valid[i, :c] = True
    quality = B.box_iou(torch.tensor(boxes), torch.tensor(anchors))
    got = B.Matcher(high, low, allow_low_quality_matches=allow_low)(quality, torch.tensor(valid)).numpy()
    for i, gt in enumerate(scenes):
        q = tv_ops().box_iou(tensor(gt), tensor(anchors))
        expected = det_utils().Matcher(high, low, allow_low_quality_matches=allow_low)(q).numpy()
        np.testing.assert_array_equal(got[i], expected, err_msg=f"image {i}")


def test_low_quality_match_needs_positive_iou_unlike_torchvision():
    """Documented difference: a ground truth that overlaps no anchor makes no anchor positive.

    torchvision's ``set_low_quality_matches_`` treats IoU 0 as that ground
    truth's best quality and matches every anchor at IoU 0 to its own best
    ground truth; polyloss gives the result torchvision gives without that
    ground truth.
    """
    rng = np.random.default_rng(12)
    gt, anchors = _overlapping_scene(rng, 3, 60)
    far = np.concatenate([gt, [[50.0, 50.0, 52.0, 52.0]]])  # overlaps nothing
    q_far = tv_ops().box_iou(tensor(far), tensor(anchors))
    assert float(q_far[3].max()) == 0.0
    matcher = det_utils().Matcher(0.7, 0.3, allow_low_quality_matches=True)
    theirs = matcher(q_far.clone()).numpy()
    without = matcher(tv_ops().box_iou(tensor(gt), tensor(anchors))).numpy()
    ours = B.Matcher(0.7, 0.3, allow_low_quality_matches=True)(q_far).numpy()
    assert (theirs >= 0).sum() > (without >= 0).sum() + 10  # the difference is real: many more positives
    np.testing.assert_array_equal(ours, without)  # and as documented


@pytest.mark.parametrize("g", [1, 5, 40])
@pytest.mark.parametrize("threshold", [0.5, 0.35])
def test_ssd_matcher_matches_torchvision(g, threshold):
    gt, anchors = _overlapping_scene(np.random.default_rng(13 + g), g, 150)
    quality = tv_ops().box_iou(tensor(gt), tensor(anchors))
    expected = det_utils().SSDMatcher(threshold)(quality.clone()).numpy()
    got = B.SSDMatcher.with_threshold(threshold)(quality).numpy()
    np.testing.assert_array_equal(got, expected)
    assert np.all(expected[quality.argmax(dim=1).numpy()] >= 0)  # every ground truth's best prior is matched
    assert np.any(expected == -1)


def test_ssd_matcher_two_ground_truths_on_one_prior_match_torchvision():
    # both ground truths' best prior is prior 0 (IoU 1/16 and 1/4): the later one keeps it in both libraries
    priors = np.array([[0.0, 0.0, 4.0, 4.0], [10.0, 10.0, 11.0, 11.0], [20.0, 20.0, 30.0, 30.0]])
    gt = np.array([[0.0, 0.0, 1.0, 1.0], [0.0, 0.0, 2.0, 2.0]])
    quality = tv_ops().box_iou(tensor(gt), tensor(priors))
    expected = det_utils().SSDMatcher(0.5)(quality.clone()).numpy()
    np.testing.assert_array_equal(B.SSDMatcher.with_threshold(0.5)(quality).numpy(), expected)
    assert expected[0] == 1


# -- balanced sampling -------------------------------------------------------------------------
def test_balanced_sampler_matches_torchvision():
    rng = np.random.default_rng(14)
    labels = rng.choice([-1, 0, 0, 0, 1, 2], size=(4, 60))
    labels[3] = np.where(labels[3] > 0, 0, labels[3])  # an image without positives
    rows = [torch.tensor(row) for row in labels]
    # room for every candidate: both take exactly the candidates
    pos, neg = B.BalancedSampler(1000, 0.5)(torch.tensor(labels), seed=0)
    tv_pos, tv_neg = det_utils().BalancedPositiveNegativeSampler(1000, 0.5)(rows)
    np.testing.assert_array_equal(pos.numpy(), torch.stack(tv_pos).bool().numpy())
    np.testing.assert_array_equal(neg.numpy(), torch.stack(tv_neg).bool().numpy())
    # a real sample: the same counts per image, drawn from the same candidates
    for size, fraction in ((16, 0.25), (20, 0.5), (7, 1.0)):
        pos, neg = B.BalancedSampler(size, fraction)(torch.tensor(labels), seed=1)
        tv_pos, tv_neg = det_utils().BalancedPositiveNegativeSampler(size, fraction)(rows)
        tv_pos, tv_neg = torch.stack(tv_pos).bool().numpy(), torch.stack(tv_neg).bool().numpy()
        np.testing.assert_array_equal(pos.numpy().sum(axis=1), tv_pos.sum(axis=1))
        np.testing.assert_array_equal(neg.numpy().sum(axis=1), tv_neg.sum(axis=1))
        assert np.all(labels[pos.numpy()] >= 1) and np.all(labels[neg.numpy()] == 0)

