"""IoU-family box losses against a float64 NumPy transcription of torchvision's formulas.

These run without torchvision (tests/test_torchvision_reference.py compares with
it); the reference below is written from the
definitions of ``torchvision.ops.generalized_box_iou_loss``,
``distance_box_iou_loss`` and ``complete_box_iou_loss`` (and the plain IoU
loss 1 - IoU with the same ``eps``), one box pair at a time.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

import polyloss as pl

LOSSES = {"iou": pl.iou_loss, "giou": pl.giou_loss, "diou": pl.diou_loss, "ciou": pl.ciou_loss}


def ref_loss(a: np.ndarray, b: np.ndarray, kind: str, eps: float = 1e-7, alpha: float | None = None) -> float:
    """One pair. ``alpha`` fixes CIoU's trade-off weight (for finite differences)."""
    x1, y1, x2, y2 = (float(t) for t in a)
    x1g, y1g, x2g, y2g = (float(t) for t in b)
    xk1, yk1, xk2, yk2 = max(x1, x1g), max(y1, y1g), min(x2, x2g), min(y2, y2g)
    inter = (xk2 - xk1) * (yk2 - yk1) if (yk2 > yk1 and xk2 > xk1) else 0.0
    union = (x2 - x1) * (y2 - y1) + (x2g - x1g) * (y2g - y1g) - inter
    iou = inter / (union + eps)
    if kind == "iou":
        return 1 - iou
    xc1, yc1, xc2, yc2 = min(x1, x1g), min(y1, y1g), max(x2, x2g), max(y2, y2g)
    if kind == "giou":
        area_c = (xc2 - xc1) * (yc2 - yc1)
        return 1 - (iou - (area_c - union) / (area_c + eps))
    diag = (xc2 - xc1) ** 2 + (yc2 - yc1) ** 2 + eps
    dist = ((x1 + x2) / 2 - (x1g + x2g) / 2) ** 2 + ((y1 + y2) / 2 - (y1g + y2g) / 2) ** 2
    diou = 1 - iou + dist / diag
    if kind == "diou":
        return diou
    v = 4 / math.pi**2 * (math.atan((x2g - x1g) / (y2g - y1g)) - math.atan((x2 - x1) / (y2 - y1))) ** 2
    if alpha is None:
        alpha = v / (1 - iou + v + eps)
    return diou + alpha * v


def ref_alpha(a: np.ndarray, b: np.ndarray, eps: float = 1e-7) -> float:
    iou = 1 - ref_loss(a, b, "iou", eps)
    wa, ha, wb, hb = a[2] - a[0], a[3] - a[1], b[2] - b[0], b[3] - b[1]
    v = 4 / math.pi**2 * (math.atan(wb / hb) - math.atan(wa / ha)) ** 2
    return v / (1 - iou + v + eps)


def random_boxes(rng: np.random.Generator, *shape: int) -> np.ndarray:
    corner = rng.uniform(0.0, 6.0, size=(*shape, 2))
    return np.concatenate([corner, corner + rng.uniform(0.5, 4.0, size=(*shape, 2))], axis=-1)


def pairs(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    a = random_boxes(rng, 3, 5)
    b = random_boxes(rng, 3, 5)
    b[0, 0] = a[0, 0]  # identical
    b[0, 1] = a[0, 1] + 20.0  # disjoint
    b[0, 2] = [a[0, 2, 2], a[0, 2, 1], a[0, 2, 2] + 1.0, a[0, 2, 3]]  # touching edge
    return a, b


@pytest.mark.parametrize("kind", list(LOSSES))
@pytest.mark.parametrize("reduction", ["none", "mean", "sum"])
def test_value_matches_reference(xp, kind, reduction):
    a, b = pairs(np.random.default_rng(0))
    ref = np.array([[ref_loss(a[i, j], b[i, j], kind) for j in range(5)] for i in range(3)])
    ref = {"none": ref, "mean": ref.mean(), "sum": ref.sum()}[reduction]
    ba = xp.asarray(a)
    out = LOSSES[kind](ba, xp.asarray(b), reduction=reduction)
    assert out.dtype == ba.dtype
    np.testing.assert_allclose(xp.to_numpy(out), ref, rtol=max(xp.rtol, 1e-12), atol=xp.atol)


@pytest.mark.parametrize("kind", list(LOSSES))
def test_eps_is_used(xp, kind):
    a, b = pairs(np.random.default_rng(1))
    ref = np.mean([[ref_loss(a[i, j], b[i, j], kind, eps=0.5) for j in range(5)] for i in range(3)])
    np.testing.assert_allclose(xp.to_numpy(LOSSES[kind](xp.asarray(a), xp.asarray(b), eps=0.5)), ref,
                               rtol=max(xp.rtol, 1e-12))


@pytest.mark.parametrize("kind", list(LOSSES))
def test_empty_mean_is_zero(xp, kind):
    e = xp.asarray(np.zeros((0, 4)))
    assert float(xp.to_numpy(LOSSES[kind](e, e))) == 0.0
    assert xp.to_numpy(LOSSES[kind](e, e, reduction="none")).shape == (0,)


@pytest.mark.parametrize("kind", list(LOSSES))
def test_point_boxes_are_finite(xp, kind):
    a = np.array([[1.0, 1.0, 1.0, 1.0], [0.0, 0.0, 2.0, 2.0]])
    b = np.array([[1.0, 1.0, 1.0, 1.0], [3.0, 3.0, 3.0, 3.0]])
    out = xp.to_numpy(LOSSES[kind](xp.asarray(a), xp.asarray(b), reduction="none"))
    assert np.all(np.isfinite(out)), out


@pytest.mark.parametrize("kind", list(LOSSES))
def test_torch_gradient_matches_finite_differences(kind):
    torch = pytest.importorskip("torch")
    a, b = pairs(np.random.default_rng(2))
    a, b = a[1], b[1]  # generic overlapping and non-overlapping pairs, away from kinks
    x = torch.tensor(a, dtype=torch.float64, requires_grad=True)
    LOSSES[kind](x, torch.tensor(b), reduction="sum").backward()
    # CIoU's alpha is a constant for the gradient: differentiate with alpha frozen at the point
    alphas = [ref_alpha(a[i], b[i]) if kind == "ciou" else None for i in range(len(a))]

    def f(z: np.ndarray) -> float:
        return sum(ref_loss(z[i], b[i], kind, alpha=alphas[i]) for i in range(len(z)))

    h = 1e-6
    fd = np.zeros_like(a)
    for idx in np.ndindex(a.shape):
        up, down = a.copy(), a.copy()
        up[idx] += h
        down[idx] -= h
        fd[idx] = (f(up) - f(down)) / (2 * h)
    np.testing.assert_allclose(x.grad.numpy(), fd, rtol=1e-5, atol=1e-7)


def test_point_box_gradient_is_finite():
    torch = pytest.importorskip("torch")
    x = torch.tensor([[1.0, 1.0, 1.0, 1.0]], dtype=torch.float64, requires_grad=True)
    pl.ciou_loss(x, torch.tensor([[0.0, 0.0, 2.0, 3.0]], dtype=torch.float64)).backward()
    assert torch.isfinite(x.grad).all()


def test_bad_input():
    a = np.zeros((3, 4))
    with pytest.raises(ValueError, match="shape"):
        pl.giou_loss(a, np.zeros((2, 4)))
    with pytest.raises(ValueError, match=r"\(\.\.\., 4\)"):
        pl.giou_loss(np.zeros((3, 5)), np.zeros((3, 5)))
    with pytest.raises(TypeError, match="boxes1"):
        pl.iou_loss(np.zeros((3, 4), dtype=np.int64), a)
    with pytest.raises(ValueError, match="reduction"):
        pl.diou_loss(a, a, reduction="avg")
    with pytest.raises(ValueError, match="eps"):
        pl.ciou_loss(a, a, eps=-1.0)
    with pytest.raises(ValueError, match="eps"):
        pl.iou_loss(a, a, eps=0.0)
    with pytest.raises(ValueError, match="boxes2"):
        pl.giou_loss(a, np.zeros((3, 5)))
    with pytest.raises(TypeError, match="boxes2"):
        pl.giou_loss(a, a > 0)


def test_integer_targets_work_like_floats(xp):
    a, b = pairs(np.random.default_rng(3))
    b = np.round(b)
    for kind, fn in LOSSES.items():
        expected = xp.to_numpy(fn(xp.asarray(a), xp.asarray(b), reduction="none"))
        got = xp.to_numpy(fn(xp.asarray(a), xp.asarray(b.astype(np.int32), dtype=xp.ns.int32), reduction="none"))
        np.testing.assert_allclose(got, expected, rtol=max(xp.rtol, 1e-12), err_msg=kind)


# -- torchvision where its numbers are finite: degenerate and inverted boxes --------------------------------
# zero width, zero height, a point inside a box, the same point twice, a point missing a box, the same zero-width
# box twice; then inverted boxes (x2 < x1, y2 < y1, both), as torchvision computes them
DEGENERATE = (
    np.array([[1.0, 0.0, 1.0, 2.0], [0.0, 1.0, 2.0, 1.0], [2.0, 2.0, 2.0, 2.0], [1.0, 1.0, 1.0, 1.0],
              [0.0, 0.0, 0.0, 0.0], [0.5, 0.5, 0.5, 3.0]]),
    np.array([[0.0, 0.0, 2.0, 2.0], [1.0, 0.0, 3.0, 3.0], [0.0, 0.0, 4.0, 4.0], [1.0, 1.0, 1.0, 1.0],
              [1.0, 1.0, 2.0, 3.0], [0.5, 0.5, 0.5, 3.0]]),
)
INVERTED = (
    np.array([[2.0, 0.0, 0.0, 2.0], [0.0, 3.0, 2.0, 1.0], [3.0, 3.0, 1.0, 1.0], [0.0, 0.0, 1.0, 1.0],
              [2.0, 0.5, 0.0, 2.5]]),
    np.array([[0.0, 0.0, 1.0, 1.0], [0.5, 0.5, 1.5, 2.5], [0.0, 0.0, 2.0, 2.0], [1.0, 1.0, 0.0, 0.0],
              [0.5, 0.0, 1.5, 3.0]]),
)


def _torchvision_loss(kind):
    from polyloss._torchvision import import_torchvision

    torchvision = import_torchvision()
    if torchvision is None:
        pytest.skip("torchvision is not installed (or cannot be imported)")
    ops = torchvision.ops
    if kind == "iou":
        from torchvision.ops._utils import _loss_inter_union

        def iou(a, b, reduction="none", eps=1e-7):
            inter, union = _loss_inter_union(a, b)
            return 1 - inter / (union + eps)

        return iou
    return {"giou": ops.generalized_box_iou_loss, "diou": ops.distance_box_iou_loss,
            "ciou": ops.complete_box_iou_loss}[kind]


@pytest.mark.parametrize("kind", list(LOSSES))
@pytest.mark.parametrize("boxes", ["degenerate", "degenerate-swapped", "inverted", "inverted-swapped"])
@pytest.mark.parametrize("fast", [True, False])
def test_degenerate_and_inverted_boxes_match_torchvision_where_finite(kind, boxes, fast):
    torch = pytest.importorskip("torch")
    theirs = _torchvision_loss(kind)
    a, b = DEGENERATE if boxes.startswith("degenerate") else INVERTED
    if boxes.endswith("swapped"):
        a, b = b, a
    x, y = torch.tensor(a, requires_grad=True), torch.tensor(b, requires_grad=not fast)  # fast: the fused path
    with pl.fast_paths(fast):
        ours = LOSSES[kind](x, y, reduction="none")
    ours.sum().backward()
    tx, ty = torch.tensor(a, requires_grad=True), torch.tensor(b, requires_grad=True)
    ref = theirs(tx, ty, reduction="none")
    ref.sum().backward()
    assert torch.isfinite(ours).all() and torch.isfinite(x.grad).all()
    finite = torch.isfinite(ref)
    if kind == "ciou" and boxes.startswith("degenerate"):
        assert not finite.all()  # point boxes: torchvision's atan(0 / 0) is NaN, polyloss's 0
    torch.testing.assert_close(ours[finite], ref[finite], rtol=1e-12, atol=1e-12)
    for got, expected in ((x.grad, tx.grad), (y.grad, ty.grad)):
        if got is not None:
            assert torch.isfinite(got).all()
            rows = torch.isfinite(expected).all(-1)
            torch.testing.assert_close(got[rows], expected[rows], rtol=1e-12, atol=1e-12)
    with pl.fast_paths(fast):  # the closed-form gradient is the same
        _, grad = pl.value_and_grad(LOSSES[kind], torch.tensor(a), torch.tensor(b), reduction="sum")
    torch.testing.assert_close(grad, x.grad, rtol=1e-12, atol=1e-12)


def test_a_tiny_eps_never_rounds_to_zero(xp):
    a, b = DEGENERATE
    for kind, fn in LOSSES.items():
        out = xp.to_numpy(fn(xp.asarray(a), xp.asarray(b), eps=1e-46, reduction="none"))
        assert np.isfinite(out).all(), (kind, out)
        np.testing.assert_allclose(out, xp.to_numpy(fn(xp.asarray(a), xp.asarray(b), eps=1e-30, reduction="none")),
                                   rtol=max(xp.rtol, 1e-12), err_msg=kind)


def test_registered():
    for name in ("iou_loss", "giou_loss", "diou_loss", "ciou_loss"):
        assert name in pl.losses()
        assert pl.get_loss(name) is getattr(pl, name)
