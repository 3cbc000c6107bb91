"""Float64 NumPy references for polyloss.boxes, written with Python loops.

They transcribe torchvision's definitions (ops/boxes.py, the detection
``BoxCoder``, ``Matcher``, ``SSDMatcher``, ``BalancedPositiveNegativeSampler``)
one box at a time; polyloss computes them batched and vectorised.
"""

from __future__ import annotations

import math

import numpy as np


def random_boxes(rng: np.random.Generator, *shape: int, lo: float = 0.0, hi: float = 10.0) -> np.ndarray:
    corner = rng.uniform(lo, hi, size=(*shape, 2))
    size = rng.uniform(0.5, 5.0, size=(*shape, 2))
    return np.concatenate([corner, corner + size], axis=-1)



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



def padded_gt(rng: np.random.Generator, counts: list[int], g: int) -> tuple[np.ndarray, np.ndarray]:
    boxes = np.zeros((len(counts), g, 4))
    valid = np.zeros((len(counts), g), dtype=bool)
    for i, c in enumerate(counts):
        boxes[i, :c] = random_boxes(rng, c, hi=6.0)
        valid[i, :c] = True
    return boxes, valid

