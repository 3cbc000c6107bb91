"""Shared helpers of the detection tests: scalar float64 references, test data and finite differences.

The references are written one box at a time from the papers' / torchvision's
definitions, independently of :mod:`polyloss.boxes`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from collections.abc import Sequence
from typing import Any

import numpy as np

ANCHOR_SHAPES = ((2.0, 2.0), (3.0, 1.5), (1.5, 3.0))


def iou(a: np.ndarray, b: np.ndarray) -> float:
    """IoU of two xyxy boxes of positive area."""
    iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = iw * ih
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


def encode(box: np.ndarray, anchor: np.ndarray, w: Sequence[float] = (10.0, 10.0, 5.0, 5.0)) -> np.ndarray:
    """Faster R-CNN box encoding of ``box`` against ``anchor`` with coder weights ``w``."""
    aw, ah = anchor[2] - anchor[0], anchor[3] - anchor[1]
    bw, bh = box[2] - box[0], box[3] - box[1]
    return np.array([
        w[0] * ((box[0] + 0.5 * bw) - (anchor[0] + 0.5 * aw)) / aw,
        w[1] * ((box[1] + 0.5 * bh) - (anchor[1] + 0.5 * ah)) / ah,
        w[2] * math.log(bw / aw),
        w[3] * math.log(bh / ah),
    ])


def smooth_l1(d: float, beta: float) -> float:
    return 0.5 * d * d / beta if abs(d) < beta else abs(d) - 0.5 * beta


def anchor_grid(size: int, shapes: Sequence[tuple[float, float]] = ANCHOR_SHAPES) -> np.ndarray:
    """xyxy anchors ``(size * size * len(shapes), 4)``: each ``(w, h)`` of ``shapes`` centred in every unit cell."""
    out = []
    for y in range(size):
        for x in range(size):
            for w, h in shapes:
                out.append([x + 0.5 - w / 2, y + 0.5 - h / 2, x + 0.5 + w / 2, y + 0.5 + h / 2])
    return np.array(out)


def random_gt(rng: np.random.Generator, counts: Sequence[int], num_classes: int, span: float,
              sizes: tuple[float, float]) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Per-image boxes (corner in ``[0, span)``, sides in ``sizes``) and labels in ``[1, num_classes)``."""
    gt_list, label_list = [], []
    for c in counts:
        corner = rng.uniform(0, span, size=(c, 2))
        gt_list.append(np.concatenate([corner, corner + rng.uniform(*sizes, size=(c, 2))], axis=1))
        label_list.append(rng.integers(1, num_classes, size=c))
    return gt_list, label_list


def pad(gt_list: Sequence[np.ndarray], label_list: Sequence[np.ndarray],
        g: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Per-image ground truth padded to ``(N, G, 4)`` boxes (0) and ``(N, G)`` labels (-1)."""
    g = max(max(len(x) for x in gt_list), 1) if g is None else g
    boxes = np.zeros((len(gt_list), g, 4))
    labels = np.full((len(gt_list), g), -1, dtype=np.int64)
    for i, (b, lab) in enumerate(zip(gt_list, label_list, strict=True)):
        boxes[i, : len(b)] = b
        labels[i, : len(b)] = lab
    return boxes, labels


def finite_differences(total: Callable[..., float], arrays: dict[str, np.ndarray], grads: dict[str, Any],
                       rng: np.random.Generator, per_array: int = 12, h: float = 1e-6, *,
                       rtol: float = 1e-6, atol: float = 1e-7) -> None:
    """Central differences of ``total(**arrays)`` at ``per_array`` random entries of each array == ``grads``."""
    for name, arr in arrays.items():
        if arr.size == 0:
            continue
        grad = np.asarray(grads[name])
        for flat in rng.choice(arr.size, size=min(per_array, arr.size), replace=False):
            idx = np.unravel_index(flat, arr.shape)
            up, down = arr.copy(), arr.copy()
            up[idx] += h
            down[idx] -= h
            numeric = (total(**{**arrays, name: up}) - total(**{**arrays, name: down})) / (2 * h)
            np.testing.assert_allclose(grad[idx], numeric, rtol=rtol, atol=atol, err_msg=f"{name}{idx}")


def yolo_pred(rng: np.random.Generator, n: int, s: int, b: int, c: int, *, min_size: float = 0.05) -> np.ndarray:
    """Random YOLOv1 predictions ``(n, s, s, 5 b + c)``: centres in [0, 1), sizes in [min_size, 0.7),
    confidences in [-0.5, 1.2) and normal class scores."""
    pred = np.empty((n, s, s, 5 * b + c))
    for k in range(b):
        pred[..., 5 * k : 5 * k + 2] = rng.uniform(0.0, 1.0, size=(n, s, s, 2))
        pred[..., 5 * k + 2 : 5 * k + 4] = rng.uniform(min_size, 0.7, size=(n, s, s, 2))
        pred[..., 5 * k + 4] = rng.uniform(-0.5, 1.2, size=(n, s, s))
    pred[..., 5 * b :] = rng.normal(size=(n, s, s, c))
    return pred


def one_object_scenes(rng: np.random.Generator, n: int, span: float,
                      num_classes: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``n`` images of one object each for the tiny training runs: ``(n, 1, 4)`` boxes (corner in
    ``[0, span)``, sides in [1, 2)), ``(n, 1)`` labels and ``(n, 4 + num_classes)`` features (box / 4, one-hot)."""
    corner = rng.uniform(0, span, size=(n, 1, 2))
    gt = np.concatenate([corner, corner + rng.uniform(1.0, 2.0, size=(n, 1, 2))], axis=-1)
    labels = rng.integers(1, num_classes, size=(n, 1))
    features = np.concatenate([gt[:, 0] / 4, np.eye(num_classes)[labels[:, 0]]], axis=1)
    return gt, labels, features
