"""Draw FCOS's assignment (center sampling with per-level size ranges) as ``docs/images/fcos_assignment.png``.

Run from the repository root: ``python docs/scripts/fcos_assignment.py``. Three
ground-truth boxes on a 320 x 320 image, five levels (strides 8 to 128, the
default size ranges (0, 64), (64, 128), ...): every anchor point assigned to a
box is drawn in that box's colour, its marker size growing with the level;
the dashed squares are the center-sampling regions (radius 1.5 strides) of the
level each box is assigned on. The nested boxes fall in different size ranges:
the same locations serve the small box on the finest level and the large one
on the next (where two boxes qualify on one level, the smaller one wins).
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from polyloss.boxes import center_sampling
from polyloss.detection.fcos import fcos_anchors

IMAGE = 320
STRIDES = (8, 16, 32, 64, 128)
BOXES = np.array([[20.0, 30.0, 110.0, 150.0], [40.0, 60.0, 90.0, 110.0], [150.0, 120.0, 310.0, 300.0]])
COLOURS = ("tab:blue", "tab:orange", "tab:green")
OUT = Path(__file__).resolve().parents[1] / "images" / "fcos_assignment.png"


def main() -> None:
    anchors, counts = fcos_anchors(IMAGE, STRIDES)
    matches = center_sampling(anchors, BOXES, counts)
    level = np.repeat(np.arange(len(STRIDES)), counts)
    centres = (anchors[:, :2] + anchors[:, 2:]) / 2
    fig, ax = plt.subplots(figsize=(6.4, 6.4), dpi=110)
    inside = (centres < IMAGE).all(axis=1)
    ax.scatter(*centres[inside & (matches < 0)].T, s=2, c="0.8", label="background")
    for g, (box, colour) in enumerate(zip(BOXES, COLOURS, strict=True)):
        ax.add_patch(plt.Rectangle(box[:2], *(box[2:] - box[:2]), fill=False, lw=2, ec=colour))
        mine = matches == g
        for lev in sorted(set(level[mine])):
            stride = STRIDES[lev]
            centre = (box[:2] + box[2:]) / 2
            r = 1.5 * stride
            ax.add_patch(plt.Rectangle(centre - r, 2 * r, 2 * r, fill=False, ls="--", lw=1, ec=colour))
            sel = mine & (level == lev)
            ax.scatter(*centres[sel].T, s=6 + 14 * lev, c=colour,
                       label=f"box {g}: {int(sel.sum())} anchor(s) at stride {stride}")
    ax.set_xlim(0, IMAGE)
    ax.set_ylim(IMAGE, 0)
    ax.set_aspect("equal")
    ax.set_title("FCOS assignment: center sampling (radius 1.5), size ranges, smallest box wins")
    ax.title.set_fontsize(9)
    ax.legend(loc="lower left", fontsize=7, framealpha=0.9)
    fig.tight_layout()
    OUT.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(OUT)
    print(OUT)


if __name__ == "__main__":
    main()
