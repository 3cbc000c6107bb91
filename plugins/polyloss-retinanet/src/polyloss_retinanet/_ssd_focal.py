"""The ``"ssd_focal"`` recipe: the built-in ``"ssd"`` recipe with focal loss instead of hard negative mining.

How a third party derives from a built-in recipe: subclass the public
:class:`polyloss.detection.ssd.SSDLoss` and hand its constructor two replacement
parts, everything else (matching, box coding, smooth L1, normalisation) is
inherited::

    class SSDFocalLoss(SSDLoss):
        def __init__(self, num_classes, *, gamma=2.0, focal_alpha=None, **ssd_config):
            focal = functools.partial(pl.softmax_focal_loss, gamma=gamma, alpha=focal_alpha, reduction="none")
            super().__init__(num_classes, classification_loss=focal, negative_miner=all_negatives, **ssd_config)

The same without a class: ``pl.get_recipe("ssd", num_classes=C,
classification_loss=focal, negative_miner=all_negatives)``.
"""

from __future__ import annotations

import functools
import math
from typing import Any

import polyloss as pl
from polyloss.detection.ssd import SSDLoss

__all__ = ["SSDFocalLoss", "all_negatives"]


def all_negatives(class_loss: Any, positive: Any) -> Any:
    """The negative "miner" of focal loss: every prior that is not positive (nothing is mined).

    Args:
        class_loss: ``(N, P)`` per-prior classification loss (unused).
        positive: ``(N, P)`` boolean mask of the matched priors.

    Returns:
        ``~positive``.
    """
    return ~positive


class SSDFocalLoss(SSDLoss):
    r"""SSD's MultiBox loss with softmax focal loss over all priors, registered as recipe ``"ssd_focal"``.

    .. math::
        L = \frac{1}{\max(1, N_{pos})}\Big(\sum_{i} \mathrm{FL}_\gamma(c_i, y_i)
            + \alpha \sum_{i \in pos} \mathrm{smoothL1}_\beta(\ell_i - g_i)\Big)

    The sum of the classification term runs over every prior of every image
    (background class 0 for unmatched priors), instead of the positives and
    the ``neg_pos_ratio`` hardest negatives; :math:`N_{pos}` are the matched
    priors of the whole batch, as for ``"ssd"``. With ``gamma=0`` and
    ``focal_alpha=None`` the classification term is the cross-entropy summed
    over all priors. Unlike ``"ssd"``, an image without ground truth
    contributes its (all-background) classification term.

    Args:
        num_classes: C, including the background class 0.
        gamma: focal loss gamma (2.0).
        focal_alpha: None (default, no class factor), a Python number, or a
            ``(C,)`` array of per-class factors in the logits' namespace (see
            :func:`polyloss.softmax_focal_loss`).
        ssd_config: every other option of :class:`polyloss.detection.ssd.SSDLoss`
            (``iou_threshold``, ``alpha`` (the localisation weight),
            ``box_weights``, ``beta``, parts, ``weights``, ``validate``, ...),
            except ``neg_pos_ratio``, ``classification_loss`` and
            ``negative_miner``, which this recipe replaces.

    Components ``"loc"`` and ``"conf"``; stages as ``"ssd"`` (:meth:`assign`,
    :meth:`mine` (all non-positives), :meth:`loss`).
    """

    def __init__(self, num_classes: int, *, gamma: float = 2.0, focal_alpha: Any = None, **ssd_config: Any) -> None:
        replaced = sorted({"neg_pos_ratio", "classification_loss", "negative_miner"} & set(ssd_config))
        if replaced:
            raise TypeError(f"ssd_focal replaces {', '.join(replaced)}; use the 'ssd' recipe to set it")
        if isinstance(gamma, bool) or not isinstance(gamma, (int, float)) or math.isnan(gamma) or gamma < 0:
            raise ValueError(f"gamma must be a Python number >= 0, got {gamma!r}")
        self.gamma = float(gamma)
        self.focal_alpha = focal_alpha
        focal = functools.partial(pl.softmax_focal_loss, gamma=self.gamma, alpha=focal_alpha, reduction="none")
        super().__init__(num_classes, classification_loss=focal, negative_miner=all_negatives, **ssd_config)

    def __repr__(self) -> str:
        return (f"SSDFocalLoss(num_classes={self.num_classes}, gamma={self.gamma}, focal_alpha={self.focal_alpha!r}, "
                f"iou_threshold={self.iou_threshold}, alpha={self.alpha}, box_weights={self.box_coder.weights}, "
                f"beta={self.beta})")
