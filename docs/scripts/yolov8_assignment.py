"""Draw docs/images/yolov8_assignment.png: the "yolov8" recipe's task-aligned assignment on one image.

Run from the repository root: ``python docs/scripts/yolov8_assignment.py`` (needs matplotlib).
A 128 x 128 image, anchor points at strides 8, 16 and 32, two ground-truth boxes (the
small one raised to the second level's stride, 16 pixels, when candidates are selected) and
predictions of a half-trained head (boxes near each ground truth, noisy scores): every
candidate anchor is ringed, the foreground anchors filled, their size the soft target score.
"""

from __future__ import annotations

import os

import numpy as np

import polyloss as pl
from polyloss.detection.yolov8 import make_anchor_points

SIZE, REG_MAX, CLASSES = 128, 8, 2
OUT = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "images", "yolov8_assignment.png")


def scene() -> tuple[np.ndarray, ...]:
    rng = np.random.default_rng(3)
    points, strides = make_anchor_points(SIZE, SIZE)
    gt = np.array([[[18.0, 30.0, 86.0, 104.0], [98.0, 20.0, 108.0, 29.0]]])
    labels = np.array([[0, 1]])
    # distance logits peaked near each anchor's distances to the nearest ground truth (grid units), plus noise
    pixels = points * strides[:, None]
    centres = (gt[0, :, :2] + gt[0, :, 2:]) / 2
    nearest = np.argmin(((pixels[:, None] - centres[None]) ** 2).sum(-1), axis=1)
    box = gt[0, nearest]
    dist = np.concatenate([pixels - box[:, :2], box[:, 2:] - pixels], axis=1) / strides[:, None]
    dist = np.clip(dist + rng.normal(scale=0.8, size=dist.shape), 0, REG_MAX - 1.01)
    bins = np.arange(REG_MAX)
    logits = -2.0 * (bins[None, None, :] - dist[:, :, None]) ** 2
    distri = logits.reshape(1, len(points), 4 * REG_MAX)
    scores = rng.normal(loc=-1.0, size=(1, len(points), CLASSES))
    return points, strides, gt, labels, distri, scores


def main() -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Rectangle

    points, strides, gt, labels, distri, scores = scene()
    recipe = pl.get_recipe("yolov8", num_classes=CLASSES, reg_max=REG_MAX)
    targets = recipe.assign(distri, scores, points, strides, gt, labels)
    assignment = targets.assignment
    pixels = points * strides[:, None]
    candidates = np.any(assignment.metric[0] > 0, axis=0)
    fig, ax = plt.subplots(figsize=(5.6, 5.6))
    colours = {8: "#9ecae1", 16: "#4292c6", 32: "#08306b"}
    for s, colour in colours.items():
        at = strides == s
        ax.scatter(pixels[at, 0], pixels[at, 1], s=4 + s / 4, color=colour, alpha=0.5, label=f"anchors, stride {s}")
    ax.scatter(pixels[candidates, 0], pixels[candidates, 1], s=60, facecolors="none", edgecolors="0.4",
               linewidths=0.8, label="candidates (inside the box)")
    gt_colours = ("#d62728", "#2ca02c")
    for g, (x1, y1, x2, y2) in enumerate(gt[0]):
        ax.add_patch(Rectangle((x1, y1), x2 - x1, y2 - y1, fill=False, color=gt_colours[g], lw=2))
        cx, cy, w, h = (x1 + x2) / 2, (y1 + y2) / 2, max(x2 - x1, 16), max(y2 - y1, 16)
        if (w, h) != (x2 - x1, y2 - y1):
            ax.add_patch(Rectangle((cx - w / 2, cy - h / 2), w, h, fill=False, color=gt_colours[g], lw=1, ls="--"))
    fg = np.flatnonzero(assignment.positive[0])
    for a in fg:
        g = int(assignment.gt_index[0, a])
        score = float(assignment.alignment[0, a])
        ax.scatter(pixels[a, 0], pixels[a, 1], s=40 + 260 * score, color=gt_colours[g], alpha=0.85,
                   edgecolors="k", linewidths=0.5)
    ax.scatter([], [], s=120, color="0.5", edgecolors="k", label="foreground (size: soft target score)")
    ax.set_xlim(0, SIZE)
    ax.set_ylim(SIZE, 0)
    ax.set_aspect("equal")
    ax.set_title("yolov8: task-aligned assignment (top-10 per box)\n"
                 "dashed: a small box raised to the second stride (16 px) for candidates", fontsize=9)
    ax.legend(loc="lower right", fontsize=7, framealpha=0.9)
    fig.tight_layout()
    os.makedirs(os.path.dirname(OUT), exist_ok=True)
    fig.savefig(OUT, dpi=110)
    plt.close(fig)
    return OUT


if __name__ == "__main__":
    print(main())
