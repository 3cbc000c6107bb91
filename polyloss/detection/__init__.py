"""Detector loss recipes (built-in plugins): SSD, Faster R-CNN and YOLOv1.

The building blocks the built-in recipes share are public here, for recipes
written in other distributions: :class:`DetectionRecipe` (the base class:
named weights, backend look-up, loss stages, and from them the
:class:`polyloss.RecipeResult` and the closed-form ``value_and_grad``),
:class:`LossStage` / :class:`LossTerm` (what a loss stage declares),
:class:`GroundTruth` and :func:`normalize_ground_truth` (padded or per-image
ground truth, checked on host backends, padding made harmless), and
:func:`sample_ground_truth` / :func:`sample_grid_boxes` for a recipe's
``sample_data`` (what ``python -m polyloss check`` runs).
"""

from polyloss.detection._base import PADDING_BOX
from polyloss.detection._base import DetectionRecipe
from polyloss.detection._base import GroundTruth
from polyloss.detection._base import LossStage
from polyloss.detection._base import LossTerm
from polyloss.detection._base import SampleRun
from polyloss.detection._base import normalize_ground_truth
from polyloss.detection._base import sample_grid_boxes
from polyloss.detection._base import sample_ground_truth

__all__ = [
    "PADDING_BOX",
    "DetectionRecipe",
    "GroundTruth",
    "LossStage",
    "LossTerm",
    "SampleRun",
    "normalize_ground_truth",
    "sample_grid_boxes",
    "sample_ground_truth",
]
