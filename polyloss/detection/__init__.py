"""Detector loss recipes (built-in plugins): SSD, Faster R-CNN and YOLOv1.

The building blocks the built-in recipes share are public here, for recipes
written in other distributions: :class:`DetectionRecipe` (named weights,
backend look-up, the :class:`polyloss.RecipeResult`), :class:`GroundTruth` and
:func:`normalize_ground_truth` (padded or per-image ground truth, checked on
host backends).
"""

from polyloss.detection._base import DetectionRecipe
from polyloss.detection._base import GroundTruth
from polyloss.detection._base import normalize_ground_truth

__all__ = ["DetectionRecipe", "GroundTruth", "normalize_ground_truth"]
