"""Throw-away installed distributions for the plugin tests.

``make_dist`` writes importable modules and a real ``NAME-VERSION.dist-info``
(``METADATA`` and ``entry_points.txt`` in the ``polyloss`` group) into a
folder; once that folder is on ``sys.path``, ``importlib.metadata`` -- and so
polyloss's registry -- sees an installed distribution, exactly as after
``pip install``.
"""

from __future__ import annotations

import textwrap
from pathlib import Path


def make_dist(root: Path, dist: str, entry_points: dict[str, str], modules: dict[str, str],
              version: str = "1.0") -> Path:
    """Write ``modules`` (name -> source) and a dist-info declaring ``entry_points`` (name -> module)."""
    root.mkdir(parents=True, exist_ok=True)
    for name, source in modules.items():
        (root / f"{name}.py").write_text(textwrap.dedent(source))
    info = root / f"{dist.replace('-', '_')}-{version}.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: {version}\n")
    lines = "".join(f"{name} = {module}\n" for name, module in entry_points.items())
    (info / "entry_points.txt").write_text(f"[polyloss]\n{lines}")
    return root


LOSS_PLUGIN = '''
import array_api_compat

import polyloss as pl

CALLS = []


def cubic_loss(input, target, *, reduction="mean"):
    """|x - y|^3, portable: the namespace comes from the input."""
    xp = array_api_compat.array_namespace(input, target)
    d = xp.abs(input - target)
    out = d * d * d
    if reduction == "none":
        return out
    return xp.sum(out) if reduction == "sum" else xp.mean(out)


@pl.hookimpl
def polyloss_register_losses():
    CALLS.append("losses")
    return {"cubic_loss": cubic_loss}
'''

RECIPE_PLUGIN = '''
import array_api_compat

import polyloss as pl


class PairedBoxLoss:
    """Toy recipe: smooth L1 and GIoU between paired predicted and ground-truth boxes, padding ignored."""

    def __init__(self, *, box_weight=1.0, giou_weight=2.0):
        self.box_weight = box_weight
        self.giou_weight = giou_weight

    def __call__(self, pred_boxes, gt_boxes, gt_labels):
        xp = array_api_compat.array_namespace(pred_boxes)
        valid = xp.astype(gt_labels >= 0, pred_boxes.dtype)
        count = xp.clip(xp.sum(valid), min=1.0)
        l1 = xp.sum(pl.smooth_l1_loss(pred_boxes, gt_boxes, reduction="none"), axis=-1)
        giou = pl.giou_loss(pred_boxes, xp.where(valid[..., None] > 0, gt_boxes, pred_boxes), reduction="none")
        return pl.RecipeResult.from_components({
            "box": self.box_weight * xp.sum(valid * l1) / count,
            "giou": self.giou_weight * xp.sum(valid * giou) / count,
        })


@pl.hookimpl
def polyloss_register_recipes():
    return {"paired_boxes": PairedBoxLoss}
'''
