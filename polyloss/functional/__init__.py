"""Built-in losses, one module per family, registered through the plugin hook."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from polyloss._hooks import hookimpl
from polyloss.functional.box import ciou_loss
from polyloss.functional.box import diou_loss
from polyloss.functional.box import giou_loss
from polyloss.functional.box import iou_loss
from polyloss.functional.classification import binary_cross_entropy
from polyloss.functional.classification import binary_cross_entropy_with_logits
from polyloss.functional.classification import cross_entropy
from polyloss.functional.classification import kl_div
from polyloss.functional.classification import nll_loss
from polyloss.functional.focal import sigmoid_focal_loss
from polyloss.functional.focal import softmax_focal_loss
from polyloss.functional.margin import hinge_loss
from polyloss.functional.margin import multi_margin_loss
from polyloss.functional.margin import squared_hinge_loss
from polyloss.functional.regression import huber_loss
from polyloss.functional.regression import l1_loss
from polyloss.functional.regression import mse_loss
from polyloss.functional.regression import smooth_l1_loss

BUILTIN_LOSSES: dict[str, Callable[..., Any]] = {
    fn.__name__: fn
    for fn in (
        mse_loss,
        l1_loss,
        smooth_l1_loss,
        huber_loss,
        binary_cross_entropy,
        binary_cross_entropy_with_logits,
        cross_entropy,
        nll_loss,
        kl_div,
        hinge_loss,
        squared_hinge_loss,
        multi_margin_loss,
        sigmoid_focal_loss,
        softmax_focal_loss,
        iou_loss,
        giou_loss,
        diou_loss,
        ciou_loss,
    )
}

__all__ = ["BUILTIN_LOSSES", *BUILTIN_LOSSES]


@hookimpl
def polyloss_register_losses() -> dict[str, Callable[..., Any]]:
    return dict(BUILTIN_LOSSES)
