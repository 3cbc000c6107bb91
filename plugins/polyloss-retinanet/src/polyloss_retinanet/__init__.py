"""polyloss-retinanet: the ``"retinanet"`` and ``"ssd_focal"`` detector recipes for polyloss.

Registered through the ``polyloss`` entry point group
(``retinanet = "polyloss_retinanet"``): once the distribution is installed,
``pl.get_recipe("retinanet", num_classes=...)`` and
``pl.get_recipe("ssd_focal", num_classes=...)`` work on every array backend
polyloss knows. Written only against polyloss's public API.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import polyloss as pl
from polyloss_retinanet._retinanet import BOX_LOSSES
from polyloss_retinanet._retinanet import DecodedBoxLoss
from polyloss_retinanet._retinanet import EncodedBoxLoss
from polyloss_retinanet._retinanet import RetinaNetLoss
from polyloss_retinanet._retinanet import RetinaNetTargets
from polyloss_retinanet._retinanet import box_loss_part
from polyloss_retinanet._retinanet import decode_vjp
from polyloss_retinanet._ssd_focal import SSDFocalLoss
from polyloss_retinanet._ssd_focal import all_negatives

__version__ = "0.1.0"

__all__ = [
    "BOX_LOSSES",
    "DecodedBoxLoss",
    "EncodedBoxLoss",
    "RetinaNetLoss",
    "RetinaNetTargets",
    "SSDFocalLoss",
    "all_negatives",
    "box_loss_part",
    "decode_vjp",
    "polyloss_register_recipes",
]


@pl.hookimpl
def polyloss_register_recipes() -> dict[str, Callable[..., Any]]:
    """The recipes of this distribution: ``"retinanet"`` and ``"ssd_focal"``."""
    return {"retinanet": RetinaNetLoss, "ssd_focal": SSDFocalLoss}
