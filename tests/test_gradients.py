"""Closed-form gradients (``pl.value_and_grad``) against PyTorch float64 autograd and finite differences.

References are torch.nn.functional where it has the loss (and the option),
otherwise the formula written out in torch (torchvision's sigmoid focal loss,
the paper's softmax focal loss, hinge through relu); gradients come from
autograd on float64 tensors. Generated floats are float32-representable so
the torch-f32 case sees the same inputs as the reference.
"""

from __future__ import annotations

import functools
import inspect
import types
import warnings
from typing import Any

import numpy as np
import pytest
from _support import F
from _support import t64
from _support import torch
from _support import torchvision_sigmoid_focal

import polyloss as pl
from polyloss import functional
from polyloss import gradients
from polyloss.functional import BUILTIN_LOSSES

REDUCTIONS = ("none", "mean", "sum")


def f32(a: np.ndarray) -> np.ndarray:
    return np.asarray(a, dtype=np.float32).astype(np.float64)


# -- torch references ------------------------------------------------------------


def _reduce(loss: Any, reduction: str) -> Any:
    return {"none": loss, "mean": loss.mean() if loss.numel() else loss.sum(), "sum": loss.sum()}[reduction]


def _weighted(loss: Any, weight: Any, reduction: str, *, by_weight: bool) -> Any:
    if weight is None:
        return _reduce(loss, reduction)
    wl = weight * loss
    if reduction == "mean" and by_weight:
        total = weight.expand_as(loss).sum()
        return wl.sum() / torch.where(total == 0, 1.0, total)
    return _reduce(wl, reduction)


def ref_mse(x, y, weight=None, reduction="mean"):
    if weight is None:
        return F.mse_loss(x, y, reduction=reduction)
    return _weighted((x - y) ** 2, weight, reduction, by_weight=True)


def ref_l1(x, y, weight=None, reduction="mean"):
    if weight is None:
        return F.l1_loss(x, y, reduction=reduction)
    return _weighted((x - y).abs(), weight, reduction, by_weight=True)


def ref_smooth_l1(x, y, beta=1.0, weight=None, reduction="mean"):
    return _weighted(F.smooth_l1_loss(x, y, beta=beta, reduction="none"), weight, reduction, by_weight=False)


def ref_huber(x, y, delta=1.0, weight=None, reduction="mean"):
    return _weighted(F.huber_loss(x, y, delta=delta, reduction="none"), weight, reduction, by_weight=False)


def ref_bce(x, y, weight=None, reduction="mean"):
    w = None if weight is None else weight.expand_as(x)
    return F.binary_cross_entropy(x, y, weight=w, reduction=reduction)


def ref_bce_logits(x, y, weight=None, pos_weight=None, reduction="mean"):
    return F.binary_cross_entropy_with_logits(x, y, weight=weight, pos_weight=pos_weight, reduction=reduction)


def _class_dim_1(x: Any, axis: int) -> Any:
    return x if x.ndim == 1 else x.movedim(axis, 1)


def ref_cross_entropy(x, y, axis=-1, weight=None, ignore_index=-100, label_smoothing=0.0, reduction="mean"):
    yt = _class_dim_1(y, axis) if y.dtype.is_floating_point else y
    return F.cross_entropy(_class_dim_1(x, axis), yt, weight=weight, ignore_index=ignore_index,
                           label_smoothing=label_smoothing, reduction=reduction)


def ref_nll(x, y, axis=-1, weight=None, ignore_index=-100, reduction="mean"):
    # nll_loss's backward wants a contiguous gradient buffer for K-dim inputs
    return F.nll_loss(_class_dim_1(x, axis).contiguous(), y, weight=weight, ignore_index=ignore_index,
                      reduction=reduction)


def ref_kl(x, y, log_target=False, reduction="mean"):
    with warnings.catch_warnings():  # torch's notice that "mean" is not "batchmean"
        warnings.simplefilter("ignore", UserWarning)
        return F.kl_div(x, y, log_target=log_target, reduction=reduction)


def _signs(y: Any) -> Any:
    y = y.double()
    return torch.where(y == 0, -1.0, y)


def ref_hinge(x, y, margin=1.0, reduction="mean"):
    return _reduce(torch.relu(margin - _signs(y) * x), reduction)


def ref_squared_hinge(x, y, margin=1.0, reduction="mean"):
    return _reduce(torch.relu(margin - _signs(y) * x) ** 2, reduction)


def ref_multi_margin(x, y, p=1, margin=1.0, weight=None, axis=-1, reduction="mean"):
    xs = x.movedim(axis, -1)
    flat = F.multi_margin_loss(xs.reshape(-1, xs.shape[-1]), y.reshape(-1), p=p, margin=margin, weight=weight,
                               reduction="none")
    return _reduce(flat.reshape(y.shape), reduction)


def ref_sigmoid_focal(x, t, alpha=0.25, gamma=2.0, reduction="mean"):
    return _reduce(torchvision_sigmoid_focal(x, t, alpha, gamma), reduction)


def ref_softmax_focal(x, t, axis=-1, alpha=None, gamma=2.0, ignore_index=-100, reduction="mean"):
    """Lin et al.'s focal loss on softmax probabilities, written out."""
    logp = torch.log_softmax(x.movedim(axis, -1), dim=-1)
    valid = t != ignore_index
    safe = torch.where(valid, t, 0)
    logp_t = logp.gather(-1, safe.unsqueeze(-1)).squeeze(-1)
    loss = -((1 - logp_t.exp()) ** gamma) * logp_t
    if alpha is not None:
        loss = loss * (alpha[safe] if isinstance(alpha, torch.Tensor) else alpha)
    loss = torch.where(valid, loss, 0.0)
    if reduction == "mean":
        return loss.sum() / valid.sum().clamp_min(1)
    return _reduce(loss, reduction)


def _ref_box(kind: str, b1: Any, b2: Any, eps: float = 1e-7, reduction: str = "mean") -> Any:
    """torchvision's IoU-family losses written out, with polyloss's documented ``atan2(w, h)`` for CIoU."""
    x1, y1, x2, y2 = b1.unbind(-1)
    x1g, y1g, x2g, y2g = b2.unbind(-1)
    xkis1, ykis1 = torch.max(x1, x1g), torch.max(y1, y1g)
    xkis2, ykis2 = torch.min(x2, x2g), torch.min(y2, y2g)
    intsct = torch.zeros_like(x1)
    mask = (ykis2 > ykis1) & (xkis2 > xkis1)
    intsct[mask] = (xkis2[mask] - xkis1[mask]) * (ykis2[mask] - ykis1[mask])
    union = (x2 - x1) * (y2 - y1) + (x2g - x1g) * (y2g - y1g) - intsct
    iou = intsct / (union + eps)
    xc1, yc1 = torch.min(x1, x1g), torch.min(y1, y1g)
    xc2, yc2 = torch.max(x2, x2g), torch.max(y2, y2g)
    if kind == "iou":
        loss = 1 - iou
    elif kind == "giou":
        area_c = (xc2 - xc1) * (yc2 - yc1)
        loss = 1 - (iou - (area_c - union) / (area_c + eps))
    else:
        diag = (xc2 - xc1) ** 2 + (yc2 - yc1) ** 2 + eps
        dist = ((x1 + x2) / 2 - (x1g + x2g) / 2) ** 2 + ((y1 + y2) / 2 - (y1g + y2g) / 2) ** 2
        loss = 1 - iou + dist / diag
        if kind == "ciou":
            def angle(w, h):
                return torch.atan2(w, torch.where((w == 0) & (h == 0), 1.0, h))

            v = (4 / torch.pi**2) * (angle(x2g - x1g, y2g - y1g) - angle(x2 - x1, y2 - y1)) ** 2
            with torch.no_grad():
                alpha = v / (1 - iou + v + eps)
            loss = loss + alpha * v
    return _reduce(loss, reduction)


REFERENCES = {
    "iou_loss": functools.partial(_ref_box, "iou"),
    "giou_loss": functools.partial(_ref_box, "giou"),
    "diou_loss": functools.partial(_ref_box, "diou"),
    "ciou_loss": functools.partial(_ref_box, "ciou"),
    "mse_loss": ref_mse,
    "l1_loss": ref_l1,
    "smooth_l1_loss": ref_smooth_l1,
    "huber_loss": ref_huber,
    "binary_cross_entropy": ref_bce,
    "binary_cross_entropy_with_logits": ref_bce_logits,
    "cross_entropy": ref_cross_entropy,
    "nll_loss": ref_nll,
    "kl_div": ref_kl,
    "hinge_loss": ref_hinge,
    "squared_hinge_loss": ref_squared_hinge,
    "multi_margin_loss": ref_multi_margin,
    "sigmoid_focal_loss": ref_sigmoid_focal,
    "softmax_focal_loss": ref_softmax_focal,
}


# -- the grid --------------------------------------------------------------------

Case = tuple[str, np.ndarray, np.ndarray, dict[str, Any]]
GRID: dict[str, Case] = {}
#: keys whose data sit on kinks (ties, touching or zero-area boxes): no finite differences there
KINKED: set[str] = set()


def _add(loss: str, x: np.ndarray, y: np.ndarray, *, _data: str = "", _kinked: bool = False, **options: Any) -> None:
    key = (loss + "[" + (f"{_data}," if _data else "") + ",".join(f"{k}={_show(v)}" for k, v in options.items())
           + f",shape={x.shape}]")
    n = 2
    while key in GRID:  # same options, other data (e.g. full vs last-axis weights)
        key, n = f"{key}#{n}", n + 1
    GRID[key] = (loss, x, y, options)
    if _kinked:
        KINKED.add(key)


BOX_LOSSES = ("iou_loss", "giou_loss", "diou_loss", "ciou_loss")


def _box_pairs(rng: np.random.Generator) -> dict[str, tuple[np.ndarray, np.ndarray, bool]]:
    """Named (boxes1, boxes2, kinked) sets: float32-representable xyxy boxes."""
    def boxes(shape: tuple[int, ...], low: float = 0.5, high: float = 2.5) -> np.ndarray:
        corner = rng.uniform(0, 3, (*shape, 2))
        return f32(np.concatenate([corner, corner + rng.uniform(low, high, (*shape, 2))], axis=-1))

    a = boxes((6,))
    b = f32(a + rng.uniform(-0.6, 0.6, a.shape))  # overlapping, generic
    r1, r2 = boxes((2, 3)), boxes((2, 3))
    far = f32(boxes((4,)) + np.array([5.0, 4.0, 5.0, 4.0]))  # disjoint from a[:4]
    inner = boxes((4,))
    outer = f32(inner + np.concatenate([-rng.uniform(0.1, 1, (4, 2)), rng.uniform(0.1, 1, (4, 2))], axis=1))
    nested1 = np.concatenate([inner[:2], outer[2:]])  # boxes1 inside boxes2, then boxes2 inside boxes1
    nested2 = np.concatenate([outer[:2], inner[2:]])
    g = boxes((7,))
    degenerate = g.copy()
    degenerate[0, 2] = degenerate[0, 0]  # zero width, inside-ish
    degenerate[1, 3] = degenerate[1, 1]  # zero height
    degenerate[2, 2:] = degenerate[2, :2]  # a point box
    degenerate[3] = f32(g[3] + 0.1)
    degenerate[3, 2] = degenerate[3, 0]  # zero width overlapping the target
    degenerate[4] = [1.0, 1.0, 1.0, 1.0]  # a point box against the same point box
    targets = g.copy()
    targets[4] = [1.0, 1.0, 1.0, 1.0]
    degenerate[5:] = f32(g[5:] + 0.3)
    ties = boxes((5,))
    tie_targets = ties.copy()  # identical boxes
    tie_targets[1, 0] = ties[1, 2]  # touching: boxes2 starts where boxes1 ends
    tie_targets[1, 2] = ties[1, 2] + 1.0
    tie_targets[2, [0, 1]] = f32(ties[2, [0, 1]] - 0.5)  # shared right and bottom edges
    tie_targets[3, [2, 3]] = f32(ties[3, [2, 3]] + 0.25)  # shared left and top edges
    tie_targets[4, 0] = f32(ties[4, 0] - 0.5)  # shared x2 only
    return {
        "random": (a, b, False),
        "random3d": (r1, r2, False),
        "disjoint": (a[:4], far, False),
        "nested": (nested1, nested2, False),
        "degenerate": (degenerate, targets, True),
        "ties": (ties, tie_targets, True),
    }


def _show(value: Any) -> str:
    return f"array{value.shape}" if isinstance(value, np.ndarray) else str(value)


def _build_grid() -> None:
    rng = np.random.default_rng(1234)
    for loss in ("mse_loss", "l1_loss"):
        for shape in ((7,), (3, 4, 2)):
            for weight in (None, "full", "last", "zeros"):
                for reduction in REDUCTIONS:
                    x, y = f32(rng.normal(size=shape)), f32(rng.normal(size=shape))
                    w = {None: None, "full": f32(rng.uniform(0.1, 2, shape)),
                         "last": f32(rng.uniform(0.1, 2, shape[-1:])), "zeros": np.zeros(shape[-1:])}[weight]
                    _add(loss, x, y, weight=w, reduction=reduction)
    for beta in (0.0, 0.5, 1.0):
        for weight in (False, True):
            for reduction in REDUCTIONS:
                x, y = f32(rng.normal(size=(4, 5))), f32(rng.normal(size=(4, 5)))
                w = f32(rng.uniform(0.1, 2, (5,))) if weight else None
                _add("smooth_l1_loss", x, y, beta=beta, weight=w, reduction=reduction)
    for delta in (0.5, 2.0):
        for weight in (False, True):
            for reduction in REDUCTIONS:
                x, y = f32(2 * rng.normal(size=(4, 5))), f32(rng.normal(size=(4, 5)))
                w = f32(rng.uniform(0.1, 2, (4, 5))) if weight else None
                _add("huber_loss", x, y, delta=delta, weight=w, reduction=reduction)
    for weight in (False, True):
        for reduction in REDUCTIONS:
            x, y = f32(rng.uniform(0.05, 0.95, (3, 4))), f32(rng.uniform(0, 1, (3, 4)))
            _add("binary_cross_entropy", x, y, weight=f32(rng.uniform(0.1, 2, (4,))) if weight else None,
                 reduction=reduction)
            for pos_weight in (False, True):
                x, y = f32(3 * rng.normal(size=(3, 4))), f32(rng.uniform(0, 1, (3, 4)))
                _add("binary_cross_entropy_with_logits", x, y,
                     weight=f32(rng.uniform(0.1, 2, (3, 4))) if weight else None,
                     pos_weight=f32(rng.uniform(0.5, 3, (4,))) if pos_weight else None, reduction=reduction)
    layouts = (((6, 5), -1), ((2, 5, 3), 1), ((5,), -1), ((2, 3, 2, 4), -1), ((3, 4, 2), 0))
    for shape, axis in layouts:
        c = shape[axis]
        sample = tuple(s for i, s in enumerate(shape) if i != axis % len(shape))
        for reduction in REDUCTIONS:
            for weight in (False, True):
                w = f32(rng.uniform(0.2, 2, (c,))) if weight else None
                for smoothing in (0.0, 0.2):
                    x = f32(2 * rng.normal(size=shape))
                    q = rng.uniform(0.01, 1, shape)
                    q = f32(q / q.sum(axis=axis, keepdims=True))
                    _add("cross_entropy", x, q, axis=axis, weight=w, label_smoothing=smoothing, reduction=reduction)
                    for ignore in (False, True):
                        t = rng.integers(0, c, size=sample)
                        if ignore and t.size > 1:
                            t.flat[::3] = -1
                        opts = {"axis": axis, "weight": w, "reduction": reduction}
                        if ignore:
                            opts["ignore_index"] = -1
                        _add("cross_entropy", x, t, label_smoothing=smoothing, **opts)
                        if smoothing == 0.0:
                            _add("nll_loss", f32(np.log(q)), t, **opts)
    for log_target in (False, True):
        for reduction in (*REDUCTIONS, "batchmean"):
            x = f32(np.log(rng.dirichlet(np.ones(4), size=3)))
            y = rng.dirichlet(np.ones(4), size=3)
            y[0, 1] = 0.0  # 0 log 0
            y = f32(np.log(y + 0.01) if log_target else y)
            _add("kl_div", x, y, log_target=log_target, reduction=reduction)
    for loss in ("hinge_loss", "squared_hinge_loss"):
        for margin in (0.5, 1.0, 2.0):
            for labels in ("pm1", "01", "bool"):
                for reduction in REDUCTIONS:
                    x = f32(2 * rng.normal(size=(4, 3)))
                    b = rng.integers(0, 2, size=(4, 3))
                    y = {"pm1": 2.0 * b - 1.0, "01": b.astype(float), "bool": b.astype(bool)}[labels]
                    _add(loss, x, y, margin=margin, reduction=reduction)
    for shape, axis in (((6, 4), -1), ((2, 4, 3), 1), ((4,), 0)):
        c = shape[axis]
        sample = tuple(s for i, s in enumerate(shape) if i != axis % len(shape))
        for p in (1, 2):
            for margin in (0.5, 1.0):
                for weight in (False, True):
                    for reduction in REDUCTIONS:
                        x, t = f32(rng.normal(size=shape)), rng.integers(0, c, size=sample)
                        _add("multi_margin_loss", x, t, p=p, margin=margin,
                             weight=f32(rng.uniform(0.2, 2, (c,))) if weight else None, axis=axis, reduction=reduction)
    for alpha in (0.25, 0.8, -1.0):
        for gamma in (0.0, 1.5, 2.0):
            for reduction in REDUCTIONS:
                for soft in (False, True):
                    x = f32(3 * rng.normal(size=(3, 5)))
                    y = f32(rng.uniform(0, 1, (3, 5))) if soft else rng.integers(0, 2, (3, 5)).astype(float)
                    _add("sigmoid_focal_loss", x, y, alpha=alpha, gamma=gamma, reduction=reduction)
    for shape, axis in (((6, 5), -1), ((2, 5, 3), 1)):
        c = shape[axis]
        sample = tuple(s for i, s in enumerate(shape) if i != axis % len(shape))
        for alpha in (None, 0.5, "array"):
            for gamma in (0.0, 1.5, 2.0):
                for ignore in (False, True):
                    for reduction in REDUCTIONS:
                        x, t = f32(2 * rng.normal(size=shape)), rng.integers(0, c, size=sample)
                        if ignore:
                            t.flat[::3] = -100
                        a = f32(rng.uniform(0.2, 1, (c,))) if alpha == "array" else alpha
                        _add("softmax_focal_loss", x, t, axis=axis, alpha=a, gamma=gamma, reduction=reduction)
    pairs = _box_pairs(rng)
    for loss in BOX_LOSSES:
        for data, (b1, b2, kinked) in pairs.items():
            # eps near 0 (0 itself is a ValueError) needs a positive union everywhere (no zero-area boxes)
            # and, for CIoU, 1 - IoU + v > 0 (no identical boxes)
            for eps in (1e-7, 0.5) if kinked else (1e-30, 1e-7, 0.5):
                for reduction in REDUCTIONS:
                    _add(loss, b1, b2, _data=data, _kinked=kinked, eps=eps, reduction=reduction)


_build_grid()


# -- the second set: detection quality, segmentation, contrastive (torch float64 transcriptions) --------
# mmdetection's varifocal / gfocal losses, segmentation_models_pytorch 0.6's soft Tversky score
# (Dice: alpha = beta = 1/2, Jaccard: 1, 1) and SimCLR's NT-Xent as cross-entropy over the similarities


def ref_varifocal(x, t, alpha=0.75, gamma=2.0, iou_weighted=True, reduction="mean"):
    p = torch.sigmoid(x)
    negative = alpha * (p - t).abs().pow(gamma) * (t <= 0).double()
    weight = (t * (t > 0).double() if iou_weighted else (t > 0).double()) + negative
    return _reduce(F.binary_cross_entropy_with_logits(x, t, reduction="none") * weight, reduction)


def ref_quality_focal(x, label, score=None, beta=2.0, reduction="mean"):
    hot = F.one_hot(label, x.shape[-1] + 1)[..., :-1].bool()
    t = torch.where(hot, score[..., None], 0.0)
    loss = F.binary_cross_entropy_with_logits(x, t, reduction="none") * (torch.sigmoid(x) - t).abs().pow(beta)
    return _reduce(loss.sum(-1), reduction)


def ref_distribution_focal(x, label, reduction="mean"):
    rows, y = x.reshape(-1, x.shape[-1]), label.reshape(-1)
    left = y.long().clamp(max=x.shape[-1] - 2)
    ce = functools.partial(F.cross_entropy, reduction="none")
    loss = ce(rows, left) * (left + 1 - y) + ce(rows, left + 1) * (y - left)
    return _reduce(loss.reshape(label.shape), reduction)


def _ref_overlap(alpha, beta, x, t, *, mode="multiclass", axis=1, from_logits=True, smooth=0.0, eps=1e-7,
                 ignore_index=None, gamma=1.0, reduction="mean"):
    x = x.movedim(axis, 1)
    n, c = x.shape[:2]
    if from_logits:
        x = x.log_softmax(1).exp() if mode == "multiclass" else F.logsigmoid(x).exp()
    p = x.reshape(n, c, -1)
    if mode == "multiclass":
        t = t.reshape(n, 1, -1)
        mask = (t != ignore_index) if ignore_index is not None else torch.ones_like(t, dtype=torch.bool)
        t = F.one_hot(torch.where(mask, t, 0)[:, 0], c).permute(0, 2, 1) * mask
    else:
        t = (t.movedim(axis, 1) if t.ndim == x.ndim else t).reshape(n, c, -1).double()
        mask = (t != ignore_index) if ignore_index is not None else torch.ones_like(t, dtype=torch.bool)
    p, t = p * mask, t * mask
    total_p, total_t = p.sum((0, 2)), t.sum((0, 2))
    inter = (total_p + total_t - (p - t).abs().sum((0, 2))) / 2
    score = (inter + smooth) / (inter + alpha * (total_p - inter) + beta * (total_t - inter) + smooth).clamp_min(eps)
    loss = (1 - score) * (total_t > 0)
    return {"none": loss, "sum": loss.sum(), "mean": loss.mean()}[reduction] ** gamma


def ref_tversky(x, t, alpha=0.5, beta=0.5, **options):
    return _ref_overlap(alpha, beta, x, t, **options)


def ref_nt_xent(z1, z2, temperature=0.5, reduction="mean"):
    z = F.normalize(torch.cat([z1, z2]), dim=1)
    n2 = z.shape[0]
    logits = (z @ z.T / temperature).masked_fill(torch.eye(n2, dtype=torch.bool), float("-inf"))
    return F.cross_entropy(logits, (torch.arange(n2) + n2 // 2) % n2, reduction=reduction)


def _ref_lovasz_extension(errors, fg):
    """Berman et al.'s Lovasz extension of the Jaccard loss along the last axis (smp's _lovasz_grad)."""
    errors, perm = torch.sort(errors, dim=-1, descending=True, stable=True)
    fg = fg.gather(-1, perm)
    total = fg.sum(-1, keepdim=True)
    jaccard = 1.0 - (total - fg.cumsum(-1)) / (total + (1 - fg).cumsum(-1))
    weights = torch.cat([jaccard[..., :1], jaccard[..., 1:] - jaccard[..., :-1]], dim=-1)
    return (errors * weights).sum(-1), total[..., 0]


def ref_lovasz(x, t, mode="multiclass", per_image=False, reduction="mean"):
    n, c = x.shape[:2]
    if mode != "multiclass":
        sign = 2.0 * t.reshape(n, -1) - 1.0
        errors = F.relu(1.0 - x.reshape(n, -1) * sign)
        rows, _ = _ref_lovasz_extension(errors if per_image else errors.reshape(1, -1),
                                        t.reshape(n, -1) if per_image else t.reshape(1, -1))
        return _reduce(rows, reduction)
    fg = F.one_hot(t.reshape(n, -1), c).permute(0, 2, 1).double()
    errors = (fg - x.softmax(1).reshape(n, c, -1)).abs()
    if not per_image:
        fg, errors = fg.permute(1, 0, 2).reshape(1, c, -1), errors.permute(1, 0, 2).reshape(1, c, -1)
    losses, total = _ref_lovasz_extension(errors, fg)
    present = (total > 0).double()
    if per_image:
        return _reduce((losses * present).sum(1) / present.sum(1).clamp_min(1), reduction)
    rows = (losses * present)[0]
    return {"none": rows, "sum": rows.sum(), "mean": rows.sum() / present.sum().clamp_min(1)}[reduction]


def ref_ctc(log_probs, targets, input_lengths=None, target_lengths=None, **options):
    return F.ctc_loss(log_probs, targets, input_lengths, target_lengths, **options)


REFERENCES.update({
    "ctc_loss": ref_ctc,
    "lovasz_loss": ref_lovasz,
    "varifocal_loss": ref_varifocal,
    "quality_focal_loss": ref_quality_focal,
    "distribution_focal_loss": ref_distribution_focal,
    "dice_loss": functools.partial(_ref_overlap, 0.5, 0.5),
    "jaccard_loss": functools.partial(_ref_overlap, 1.0, 1.0),
    "tversky_loss": ref_tversky,
    "nt_xent_loss": ref_nt_xent,
})


def _build_second_set_grid() -> None:
    rng = np.random.default_rng(14)
    for reduction in REDUCTIONS:
        for gamma, alpha, weighted in ((2.0, 0.75, True), (1.5, 0.25, False), (0.5, 1.0, True)):
            x = f32(2 * rng.normal(size=(6, 4)))
            t = np.zeros((6, 4))
            t[np.arange(0, 6, 2), rng.integers(0, 4, 3)] = f32(rng.uniform(0.1, 1.0, 3))
            _add("varifocal_loss", x, t, alpha=alpha, gamma=gamma, iou_weighted=weighted, reduction=reduction)
        for beta in (2.0, 0.5):
            x, label = f32(2 * rng.normal(size=(7, 4))), rng.integers(0, 5, 7)
            _add("quality_focal_loss", x, label, score=f32(rng.uniform(0, 1, 7)), beta=beta, reduction=reduction)
        x, label = f32(2 * rng.normal(size=(2, 4, 6))), f32(rng.uniform(0, 5, (2, 4)))
        label[0, 0] = 5.0
        _add("distribution_focal_loss", x, label, reduction=reduction)
        for z in ((5, 3), (2, 4)):
            _add("nt_xent_loss", f32(rng.normal(size=z)), f32(rng.normal(size=z)), temperature=0.3,
                 reduction=reduction)
        for loss in ("dice_loss", "jaccard_loss", "tversky_loss"):
            extra = {"alpha": 0.3, "beta": 0.7, "gamma": 0.75} if loss == "tversky_loss" else {}
            x, t = f32(2 * rng.normal(size=(2, 3, 4))), rng.integers(0, 3, (2, 4))
            t[0, 0] = -1
            _add(loss, x, t, ignore_index=-1, reduction=reduction, **extra)
            masks = (rng.uniform(size=(2, 3, 4)) < 0.5).astype(float)
            _add(loss, x, masks, mode="multilabel", smooth=0.5, reduction=reduction, **extra)
            _add(loss, x[:, :1], masks[:, 0], mode="binary", reduction=reduction, **extra)
        for blank, zero_infinity in ((0, False), (2, True)):
            raw = rng.normal(size=(9, 3, 4))
            log_probs = f32(raw - np.log(np.exp(raw).sum(-1, keepdims=True)))
            targets = np.array([[1, 3, 3], [3, 1, 1], [1, 1, 3]])
            _add("ctc_loss", log_probs, targets, input_lengths=np.array([9, 7, 4 if zero_infinity else 9]),
                 target_lengths=np.array([3, 2, 3]), blank=blank, zero_infinity=zero_infinity, reduction=reduction)
        for per_image in (False, True):
            x, t = f32(2 * rng.normal(size=(2, 3, 5))), rng.integers(0, 2, (2, 5))  # class 2 absent
            _add("lovasz_loss", x, t, per_image=per_image, reduction=reduction)
            masks = (rng.uniform(size=(2, 3, 5)) < 0.5).astype(float)
            _add("lovasz_loss", x, masks, mode="multilabel", per_image=per_image, reduction=reduction)


_build_second_set_grid()


def _to_torch(value: Any) -> Any:
    return t64(value) if isinstance(value, np.ndarray) else value


@functools.cache
def reference(key: str) -> tuple[np.ndarray, np.ndarray]:
    """Value and gradient of sum(value) by torch float64 autograd."""
    loss, x, y, options = GRID[key]
    xt = t64(x, requires_grad=True)
    out = REFERENCES[loss](xt, t64(y), **{k: _to_torch(v) for k, v in options.items()})
    out.sum().backward()
    return out.detach().numpy(), xt.grad.numpy()


def _tolerances(xp: Any) -> tuple[float, float]:
    return (1e-6, 1e-12) if xp.dtype_name == "float64" else (2e-4, 1e-6)


def _as_xp(xp: Any, value: Any) -> Any:
    return xp.asarray(value) if isinstance(value, np.ndarray) else value


def assert_grad_close(xp: Any, actual: Any, expected: np.ndarray, what: str = "gradient") -> None:
    rtol, atol = _tolerances(xp)
    scale = float(np.max(np.abs(expected))) if expected.size else 0.0
    np.testing.assert_allclose(actual, expected, rtol=rtol, atol=atol + rtol * 1e-2 * scale, err_msg=what)


def check_array(xp: Any, result: Any, like: Any) -> None:
    """Namespace, device, dtype and shape of ``like``."""
    assert type(result) is type(like), (type(result), type(like))
    assert result.dtype == like.dtype
    assert tuple(result.shape) == tuple(like.shape)
    if xp.library == "array_api_strict":
        assert result.device == like.device


@pytest.mark.parametrize("key", list(GRID))
def test_matches_torch_autograd(xp, key):
    loss, x, y, options = GRID[key]
    xin = xp.asarray(x)
    value, grad = pl.value_and_grad(loss, xin, xp.asarray(y), **{k: _as_xp(xp, v) for k, v in options.items()})
    check_array(xp, grad, xin)
    ref_value, ref_grad = reference(key)
    assert_grad_close(xp, xp.to_numpy(value), ref_value, "value")
    assert_grad_close(xp, xp.to_numpy(grad), ref_grad)


def test_grid_covers_every_builtin_loss():
    from functional._second_set_rows import SECOND_SET_LOSSES  # checked against their references there

    assert {case[0] for case in GRID.values()} == set(BUILTIN_LOSSES) - set(SECOND_SET_LOSSES)
    assert len(GRID) > 300
    assert sum(case[0] in BOX_LOSSES for case in GRID.values()) == 4 * (4 * 3 + 2 * 2) * 3


# -- cotangents --------------------------------------------------------------------

COTANGENT_KEYS = list(GRID)[::17]


@pytest.mark.parametrize("key", COTANGENT_KEYS)
def test_cotangent_is_a_vjp(xp, key):
    loss, x, y, options = GRID[key]
    xt = t64(x, requires_grad=True)
    out = REFERENCES[loss](xt, t64(y), **{k: _to_torch(v) for k, v in options.items()})
    c = f32(np.random.default_rng(5).normal(size=tuple(out.shape)))
    out.backward(t64(c))
    xin = xp.asarray(x)
    _, grad = pl.value_and_grad(loss, xin, xp.asarray(y), cotangent=xp.asarray(c),
                                **{k: _as_xp(xp, v) for k, v in options.items()})
    check_array(xp, grad, xin)
    assert_grad_close(xp, xp.to_numpy(grad), xt.grad.numpy())
    if out.ndim == 0:  # a Python number is accepted too
        _, grad2 = pl.value_and_grad(loss, xin, xp.asarray(y), cotangent=float(c),
                                     **{k: _as_xp(xp, v) for k, v in options.items()})
        assert_grad_close(xp, xp.to_numpy(grad2), xt.grad.numpy())


def test_cotangent_errors():
    x, y = np.ones((3, 4)), np.zeros((3, 4))
    with pytest.raises(ValueError, match="cotangent shape"):
        pl.value_and_grad("mse_loss", x, y, reduction="none", cotangent=np.ones(5))
    with pytest.raises(ValueError, match="cotangent shape"):
        pl.value_and_grad("mse_loss", x, y, cotangent=np.ones(3))
    with pytest.raises(TypeError, match="cotangent"):
        pl.value_and_grad("mse_loss", x, y, reduction="none", cotangent=torch.ones(3, 4))
    with pytest.raises(TypeError, match="cotangent"):
        pl.value_and_grad("mse_loss", x, y, cotangent=True)


# -- finite differences (NumPy float64, independent of torch) ------------------------

# ctc_loss's gradient is PyTorch's (e^lp - occupancy), the derivative after a log_softmax: its finite
# differences are taken through the log_softmax in tests/functional/test_ctc.py
_NOT_SMOOTH = ("l1_loss", "hinge_loss", "multi_margin_loss[p=1", "ctc_loss", *BOX_LOSSES)
FD_KEYS = [k for k in GRID if not k.startswith(_NOT_SMOOTH) and k not in KINKED][::7]
#: every smooth IoU-family case (they are small)
FD_KEYS += [k for k in GRID if k.startswith(BOX_LOSSES) and k not in KINKED]


def _aspect_term(b1: np.ndarray, b2: np.ndarray) -> np.ndarray:
    """CIoU's v = 4/pi^2 (atan(w2/h2) - atan(w1/h1))^2 (boxes of positive size)."""
    def angle(b):
        return np.arctan((b[..., 2] - b[..., 0]) / (b[..., 3] - b[..., 1]))

    return 4 / np.pi**2 * (angle(b2) - angle(b1)) ** 2


def _ciou_alpha_frozen(x0: np.ndarray, y: np.ndarray, eps: float = 1e-7, reduction: str = "mean") -> Any:
    """CIoU as a function of the boxes with alpha held at its value at ``x0`` (the gradient's convention)."""
    iou0 = 1 - pl.iou_loss(x0, y, eps=eps, reduction="none")
    v0 = _aspect_term(x0, y)
    alpha = v0 / (1 - iou0 + v0 + eps)

    def fn(x, y, **_):
        loss = pl.diou_loss(x, y, eps=eps, reduction="none") + alpha * _aspect_term(x, y)
        return {"none": loss, "sum": np.sum(loss), "mean": np.mean(loss)}[reduction]

    return fn


@pytest.mark.parametrize("key", FD_KEYS)
def test_central_finite_differences(key):
    loss, x, y, options = GRID[key]
    fn = _ciou_alpha_frozen(x, y, **options) if loss == "ciou_loss" else pl.get_loss(loss)
    _, grad = pl.value_and_grad(loss, x, y, **options)
    h = 1e-6
    numeric = np.zeros_like(x)
    for i in range(x.size):
        e = np.zeros_like(x)
        e.flat[i] = h
        numeric.flat[i] = (np.sum(fn(x + e, y, **options)) - np.sum(fn(x - e, y, **options))) / (2 * h)
    np.testing.assert_allclose(grad, numeric, rtol=1e-6, atol=1e-7)


# -- kinks: PyTorch's subgradients ------------------------------------------------------


def _torch_grad(fn: Any, x: np.ndarray, *args: Any, **kwargs: Any) -> np.ndarray:
    xt = t64(x, requires_grad=True)
    fn(xt, *args, **kwargs).sum().backward()
    return xt.grad.numpy()


def test_kinks_of_regression_losses(xp):
    y = np.zeros(7)
    x = np.array([0.0, 1.0, -1.0, 0.5, -0.5, 2.0, -3.0])
    cases = [
        ("l1_loss", {}, lambda a, b: F.l1_loss(a, b, reduction="sum")),
        ("smooth_l1_loss", {"beta": 0.0}, lambda a, b: F.smooth_l1_loss(a, b, beta=0.0, reduction="sum")),
        ("smooth_l1_loss", {"beta": 1.0}, lambda a, b: F.smooth_l1_loss(a, b, beta=1.0, reduction="sum")),
        ("smooth_l1_loss", {"beta": 0.5}, lambda a, b: F.smooth_l1_loss(a, b, beta=0.5, reduction="sum")),
        ("huber_loss", {"delta": 1.0}, lambda a, b: F.huber_loss(a, b, delta=1.0, reduction="sum")),
        ("huber_loss", {"delta": 0.5}, lambda a, b: F.huber_loss(a, b, delta=0.5, reduction="sum")),
        ("huber_loss", {"delta": 2.0}, lambda a, b: F.huber_loss(a, b, delta=2.0, reduction="sum")),
    ]
    for loss, options, ref in cases:
        _, grad = pl.value_and_grad(loss, xp.asarray(x), xp.asarray(y), reduction="sum", **options)
        expected = _torch_grad(ref, x, t64(y))
        np.testing.assert_allclose(xp.to_numpy(grad), expected, rtol=1e-12, err_msg=f"{loss} {options}")
    _, grad = pl.value_and_grad("l1_loss", xp.asarray(x), xp.asarray(y), reduction="sum")
    assert xp.to_numpy(grad)[0] == 0.0


def test_kinks_of_margin_losses(xp):
    x = np.array([1.0, -1.0, 0.5, 2.0, -2.0, 0.0])
    y = np.array([1.0, -1.0, 1.0, -1.0, 1.0, 1.0])  # y * x == margin on the first two
    for loss, squared in (("hinge_loss", False), ("squared_hinge_loss", True)):
        _, grad = pl.value_and_grad(loss, xp.asarray(x), xp.asarray(y), reduction="sum")
        g = xp.to_numpy(grad)
        assert g[0] == 0.0 and g[1] == 0.0
        np.testing.assert_allclose(g[2:], [-1.0, 1.0, -1.0, -1.0] if not squared else [-1.0, 6.0, -6.0, -2.0])
    # multi-margin with z = 0 exactly: x_j = x_y - margin
    s = np.array([[2.0, 1.0, 0.5, 3.5], [0.0, 1.0, 0.0, -1.0]])
    t = np.array([0, 1])
    for p in (1, 2):
        _, grad = pl.value_and_grad("multi_margin_loss", xp.asarray(s), xp.asarray(t), p=p, reduction="sum")
        expected = _torch_grad(lambda a, b, p=p: F.multi_margin_loss(a, b, p=p, reduction="sum"), s, t64(t))
        np.testing.assert_allclose(xp.to_numpy(grad), expected, rtol=1e-12, atol=0)


def test_binary_cross_entropy_at_zero_and_one_matches_torch(xp):
    x = np.array([0.0, 0.0, 0.0, 1.0, 1.0, 1.0, 0.5])
    y = np.array([0.0, 0.3, 1.0, 0.0, 0.7, 1.0, 1.0])
    w = np.linspace(0.5, 2.0, 7)
    for reduction in REDUCTIONS:
        value, grad = pl.value_and_grad("binary_cross_entropy", xp.asarray(x), xp.asarray(y),
                                        weight=xp.asarray(w), reduction=reduction)
        xt = t64(x, requires_grad=True)
        out = F.binary_cross_entropy(xt, t64(y), weight=t64(w), reduction=reduction)
        out.sum().backward()
        rtol = 1e-12 if xp.dtype_name == "float64" else 1e-6
        np.testing.assert_allclose(xp.to_numpy(value), out.detach().numpy(), rtol=rtol)
        np.testing.assert_allclose(xp.to_numpy(grad), xt.grad.numpy(), rtol=rtol)
        assert np.all(np.isfinite(xp.to_numpy(grad)))


# -- special cases -------------------------------------------------------------------------


@pytest.mark.parametrize("loss", ["cross_entropy", "nll_loss", "softmax_focal_loss"])
@pytest.mark.parametrize("weighted", [False, True])
def test_all_targets_ignored_gives_zero(xp, loss, weighted):
    x = f32(np.random.default_rng(3).normal(size=(4, 3)))
    t = np.full(4, -100)
    options: dict[str, Any] = {"weight": xp.asarray(np.ones(3))} if weighted and loss != "softmax_focal_loss" else {}
    if loss == "cross_entropy":
        options["label_smoothing"] = 0.1
    for reduction in REDUCTIONS:
        value, grad = pl.value_and_grad(loss, xp.asarray(x), xp.asarray(t), reduction=reduction, **options)
        assert np.all(xp.to_numpy(value) == 0.0)
        assert np.all(xp.to_numpy(grad) == 0.0)


def test_sigmoid_focal_saturated_logits_are_finite(xp):
    # 1 - p_t underflows to 0: gamma < 1 would give 0 * inf = NaN through naive autograd
    x = np.array([800.0, -800.0, 40.0, -40.0])
    y = np.array([1.0, 0.0, 1.0, 0.0])
    for gamma in (0.5, 1.0, 1.5, 2.0):
        _, grad = pl.value_and_grad("sigmoid_focal_loss", xp.asarray(x), xp.asarray(y), gamma=gamma)
        g = xp.to_numpy(grad)
        assert np.all(np.isfinite(g)) and np.all(np.abs(g) < 1e-10)


def test_softmax_focal_confident_predictions_are_finite(xp):
    x = np.array([[60.0, 0.0, 0.0], [0.0, 800.0, 0.0]])
    t = np.array([0, 1])
    for gamma in (0.5, 1.5):
        _, grad = pl.value_and_grad("softmax_focal_loss", xp.asarray(x), xp.asarray(t), gamma=gamma)
        assert np.all(np.isfinite(xp.to_numpy(grad)))


@pytest.mark.parametrize("loss,x,y,options", [
    ("mse_loss", np.linspace(-1, 1, 6), np.linspace(1, 0, 6), {}),
    ("cross_entropy", np.linspace(-2, 2, 12).reshape(3, 4), np.array([0, 3, 1]), {"label_smoothing": 0.1}),
    ("binary_cross_entropy_with_logits", np.linspace(-3, 3, 6), np.linspace(0, 1, 6), {}),
    ("sigmoid_focal_loss", np.linspace(-3, 3, 6), np.array([0, 1, 0, 1, 1, 0.0]), {"gamma": 1.5}),
    ("multi_margin_loss", np.linspace(-2, 2, 12).reshape(3, 4), np.array([0, 3, 1]), {"p": 2}),
])
@pytest.mark.parametrize("half", ["float16", "bfloat16"])
def test_half_precision_is_computed_in_float32(loss, x, y, options, half):
    if half == "float16":
        xin, yin = x.astype(np.float16), (y.astype(np.float16) if y.dtype.kind == "f" else y)
        to64 = np.asarray
    else:
        xin = torch.tensor(x, dtype=torch.bfloat16)
        yin = torch.tensor(y, dtype=torch.bfloat16) if y.dtype.kind == "f" else torch.tensor(y)
        def to64(a):
            return a.double().numpy()
    value, grad = pl.value_and_grad(loss, xin, yin, **options)
    assert grad.dtype == xin.dtype and value.dtype == xin.dtype and grad.shape == xin.shape
    # the reference on the same (rounded) inputs in float64
    x64 = np.asarray(to64(xin), dtype=np.float64)
    y64 = np.asarray(to64(yin), dtype=np.float64) if y.dtype.kind == "f" else y
    _, expected = pl.value_and_grad(loss, x64, y64, **options)
    np.testing.assert_allclose(np.asarray(to64(grad), dtype=float), expected, rtol=2e-2, atol=2e-3)


# -- dispatch and registration ----------------------------------------------------------


def test_name_and_function_agree():
    x, y = np.linspace(-1, 1, 6).reshape(2, 3), np.array([0, 2])
    v1, g1 = pl.value_and_grad("cross_entropy", x, y)
    v2, g2 = pl.value_and_grad(pl.cross_entropy, x, y)
    assert v1 == v2 and np.array_equal(g1, g2)
    assert float(v1) == float(pl.cross_entropy(x, y))


def test_every_builtin_loss_has_a_gradient_with_the_same_options():
    for name, fn in BUILTIN_LOSSES.items():
        grad = gradients.gradient_of(name)
        assert grad is gradients.gradient_of(fn)
        loss_params = inspect.signature(fn).parameters
        grad_params = dict(inspect.signature(grad).parameters)
        assert grad_params.pop("cotangent").default is None
        assert [(p.name, p.kind, p.default) for p in loss_params.values()] == [
            (p.name, p.kind, p.default) for p in grad_params.values()
        ], name


def test_validation_is_the_loss_own():
    with pytest.raises(ValueError, match="reduction"):
        pl.value_and_grad("mse_loss", np.ones(3), np.ones(3), reduction="avg")
    with pytest.raises(ValueError, match="target shape"):
        pl.value_and_grad(pl.cross_entropy, np.ones((2, 3)), np.ones(3, dtype=int))
    with pytest.raises(TypeError, match=r"mixed|namespace"):
        pl.value_and_grad(pl.mse_loss, np.ones(3), torch.ones(3))
    with pytest.raises(ValueError, match="unknown loss"):
        pl.value_and_grad("no_such_loss", np.ones(3), np.ones(3))


def _double_mse(input: Any, target: Any, *, reduction: str = "mean") -> Any:
    return 2 * pl.mse_loss(input, target, reduction=reduction)


def test_unregistered_third_party_loss_is_a_type_error():
    with pytest.raises(TypeError, match="_double_mse"):
        pl.value_and_grad(_double_mse, np.ones(3), np.zeros(3))


def test_register_gradient_by_function_and_by_name():
    def grad_fn(input, target, *, reduction="mean", cotangent=None):
        return 2 * functional.mse_loss_grad(input, target, reduction=reduction, cotangent=cotangent)

    module = types.ModuleType("polyloss_autodiff_test_plugin")

    @pl.hookimpl
    def polyloss_register_losses() -> dict[str, Any]:
        return {"autodiff_test_double_mse": _double_mse}

    module.polyloss_register_losses = polyloss_register_losses
    x, y = np.array([1.0, -2.0, 3.0]), np.zeros(3)
    plugin = pl.register_plugin(module, name="autodiff-test-plugin")
    try:
        with pytest.raises(TypeError, match="autodiff_test_double_mse"):
            pl.value_and_grad("autodiff_test_double_mse", x, y)
        assert gradients.register_gradient("autodiff_test_double_mse", grad_fn) is grad_fn
        value, grad = pl.value_and_grad("autodiff_test_double_mse", x, y)
        assert float(value) == pytest.approx(2 * 14 / 3)
        np.testing.assert_allclose(grad, 4 * x / 3)
        value, grad = pl.value_and_grad(_double_mse, x, y, reduction="sum")
        np.testing.assert_allclose(grad, 4 * x)
        with pytest.raises(ValueError, match="already registered"):
            gradients.register_gradient(_double_mse, lambda *a, **k: None)
        gradients.register_gradient(_double_mse, grad_fn, replace=True)
    finally:
        gradients.unregister_gradient(_double_mse)
        pl.unregister_plugin(plugin)
    with pytest.raises(TypeError):
        pl.value_and_grad(_double_mse, x, y)


def test_torch_input_requiring_grad_keeps_working():
    x = torch.linspace(-1, 1, 12, dtype=torch.float64).reshape(3, 4).requires_grad_(True)
    t = torch.tensor([0, 3, 1])
    value, grad = pl.value_and_grad(pl.cross_entropy, x, t)
    value.backward()
    torch.testing.assert_close(grad.detach(), x.grad)


def test_ciou_alpha_is_a_constant_as_in_the_forward():
    # differentiating through alpha would give another gradient: the grid's reference must not
    loss, x, y, options = GRID["ciou_loss[random,eps=1e-07,reduction=sum,shape=(6, 4)]"]
    _, grad = pl.value_and_grad(loss, x, y, **options)
    xt = t64(x, requires_grad=True)
    pl.ciou_loss(xt, t64(y), **options).backward()
    np.testing.assert_allclose(grad, xt.grad.numpy(), rtol=1e-10)
    xt2 = t64(x, requires_grad=True)
    _ref_box_with_alpha_gradient(xt2, t64(y)).backward()
    assert not np.allclose(grad, xt2.grad.numpy(), rtol=1e-3)


def _ref_box_with_alpha_gradient(b1: Any, b2: Any) -> Any:
    diou = _ref_box("diou", b1, b2, reduction="none")
    iou = 1 - _ref_box("iou", b1, b2, reduction="none")

    def angle(b):
        return torch.atan((b[..., 2] - b[..., 0]) / (b[..., 3] - b[..., 1]))

    v = 4 / torch.pi**2 * (angle(b2) - angle(b1)) ** 2
    return (diou + v / (1 - iou + v + 1e-7) * v).sum()
