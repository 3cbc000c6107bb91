"""Draw docs/images/detr_matching.png: the Hungarian matching of the "detr" recipe on one image.

Run from the repository root: ``python docs/scripts/detr_matching.py`` (needs matplotlib and SciPy).
Ground-truth boxes are solid, the queries dashed; each matched query is joined to its box and
coloured as it, the unmatched queries ("no object") are grey.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
from matplotlib.patches import Rectangle

import polyloss as pl

OUT = Path(__file__).resolve().parent.parent / "images" / "detr_matching.png"


def main() -> None:
    rng = np.random.default_rng(3)
    gt = np.array([[[0.25, 0.3, 0.3, 0.35], [0.7, 0.35, 0.35, 0.25], [0.55, 0.75, 0.5, 0.3]]])
    labels = np.array([[0, 1, 2]])
    q = 10
    boxes = np.concatenate([rng.uniform(0.15, 0.85, (1, q, 2)), rng.uniform(0.1, 0.4, (1, q, 2))], axis=-1)
    logits = rng.normal(size=(1, q, 4))
    recipe = pl.get_recipe("detr")
    matches = np.asarray(recipe.match(logits, boxes, gt, labels).matches)[0]
    result = recipe(logits, boxes, gt, labels)
    colours = ["tab:blue", "tab:orange", "tab:green"]
    fig, ax = plt.subplots(figsize=(5.2, 5.2))
    for j, (cx, cy, w, h) in enumerate(gt[0]):
        ax.add_patch(Rectangle((cx - w / 2, cy - h / 2), w, h, fill=False, lw=2.5, color=colours[j]))
        ax.text(cx - w / 2, cy - h / 2 - 0.025, f"box {j} (class {labels[0, j]})", color=colours[j], fontsize=8)
    for i, (cx, cy, w, h) in enumerate(boxes[0]):
        matched = matches[i] >= 0
        colour = colours[matches[i]] if matched else "0.6"
        ax.add_patch(Rectangle((cx - w / 2, cy - h / 2), w, h, fill=False, lw=1.4 if matched else 0.8, ls="--",
                               color=colour))
        ax.plot([cx], [cy], "o", ms=3, color=colour)
        ax.text(cx + 0.01, cy + 0.01, f"q{i}", color=colour, fontsize=7)
        if matched:
            gx, gy = gt[0, matches[i], :2]
            ax.annotate("", xy=(gx, gy), xytext=(cx, cy), arrowprops={"arrowstyle": "->", "color": colour, "lw": 1.2})
    ax.set_xlim(0, 1)
    ax.set_ylim(1, 0)
    ax.set_aspect("equal")
    parts = ", ".join(f"{k} {float(v):.2f}" for k, v in result.components.items())
    ax.set_title(f"DETR matching: 3 boxes, {q} queries, 7 'no object'\n{parts}", fontsize=9)
    fig.tight_layout()
    OUT.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(OUT, dpi=110)
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
