"""Boxes: conversions, the IoU family, box coding, matching, sampling and mining.

Every function is written against the array API standard and accepts leading
batch axes: pairwise functions take ``(..., N, 4)`` and ``(..., M, 4)`` and
return ``(..., N, M)``; the matcher takes a ``(..., G, P)`` quality matrix
with an optional ``(..., G)`` mask of real ground truth (padding is ``False``,
in recipes label ``-1``). Nothing here has a data-dependent shape, uses
boolean-mask indexing or reads array values in Python, so it runs unchanged on
lazy and jit backends and on array-api-strict with its strictest flags. (One
shortcut reads values where that is free: on eager host arrays
:meth:`Matcher.match_boxes` reads the ground-truth counts to skip padding.)

Semantics follow ``torchvision.ops`` and ``torchvision.models.detection._utils``
except where noted (zero-area boxes give an IoU of 0 instead of NaN; low-quality
matches need an IoU above 0).

The modules: :mod:`~polyloss.boxes.conversions` (formats, areas),
:mod:`~polyloss.boxes.iou` (the IoU family on one core, shared with the box
losses of :mod:`polyloss.functional.box`), :mod:`~polyloss.boxes.coding`
(encode/decode), :mod:`~polyloss.boxes.matching` (matchers), :mod:`~polyloss.boxes.hungarian`
(DETR's Hungarian matching, SciPy's solver on the host), :mod:`~polyloss.boxes.center_sampling`
(FCOS's assignment), :mod:`~polyloss.boxes.assignment` (task-aligned assignment, TAL) and
:mod:`~polyloss.boxes.sampling` (balanced sampling, hard negative mining,
random keys). Every public name is re-exported here; the modules the losses
do not use (all but conversions, the IoU family and center sampling, whose
function shares its module's name) are imported on first use, so that
``import polyloss`` stays quick.
"""

import importlib
from typing import TYPE_CHECKING
from typing import Any

from polyloss.boxes.center_sampling import CenterSampler
from polyloss.boxes.center_sampling import center_sampling  # after its module: the name is the function
from polyloss.boxes.center_sampling import level_size_bounds
from polyloss.boxes.conversions import box_area
from polyloss.boxes.conversions import box_convert
from polyloss.boxes.iou import box_iou
from polyloss.boxes.iou import complete_box_iou
from polyloss.boxes.iou import distance_box_iou
from polyloss.boxes.iou import generalized_box_iou
from polyloss.boxes.iou import paired_box_iou

if TYPE_CHECKING:
    from polyloss.boxes.assignment import TaskAlignedAssigner
    from polyloss.boxes.assignment import TaskAlignedAssignment
    from polyloss.boxes.assignment import second_level_stride
    from polyloss.boxes.assignment import task_aligned_assign
    from polyloss.boxes.coding import DEFAULT_DECODE_CLIP
    from polyloss.boxes.coding import BoxCoder
    from polyloss.boxes.coding import BoxWeights
    from polyloss.boxes.coding import decode_boxes
    from polyloss.boxes.coding import decode_ltrb
    from polyloss.boxes.coding import encode_boxes
    from polyloss.boxes.coding import encode_ltrb
    from polyloss.boxes.coding import encode_matched
    from polyloss.boxes.hungarian import HungarianMatcher
    from polyloss.boxes.hungarian import assign_min_cost
    from polyloss.boxes.hungarian import hungarian_cost
    from polyloss.boxes.matching import Matcher
    from polyloss.boxes.matching import SSDMatcher
    from polyloss.boxes.matching import max_argmax_rows as max_argmax_rows
    from polyloss.boxes.sampling import KEY_BITS as KEY_BITS
    from polyloss.boxes.sampling import BalancedSampler
    from polyloss.boxes.sampling import hard_negative_mining
    from polyloss.boxes.sampling import is_generator as is_generator
    from polyloss.boxes.sampling import random_keys
    from polyloss.boxes.sampling import rank
    from polyloss.boxes.sampling import sample_balanced
    from polyloss.boxes.sampling import top_k_mask as top_k_mask

#: the names of the modules imported on first use, and their module
_LAZY = {
    "BalancedSampler": "sampling",
    "BoxCoder": "coding",
    "BoxWeights": "coding",
    "DEFAULT_DECODE_CLIP": "coding",
    "HungarianMatcher": "hungarian",
    "KEY_BITS": "sampling",
    "Matcher": "matching",
    "SSDMatcher": "matching",
    "TaskAlignedAssigner": "assignment",
    "TaskAlignedAssignment": "assignment",
    "assign_min_cost": "hungarian",
    "decode_boxes": "coding",
    "decode_ltrb": "coding",
    "encode_boxes": "coding",
    "encode_ltrb": "coding",
    "encode_matched": "coding",
    "hard_negative_mining": "sampling",
    "hungarian_cost": "hungarian",
    "is_generator": "sampling",
    "max_argmax_rows": "matching",
    "random_keys": "sampling",
    "rank": "sampling",
    "sample_balanced": "sampling",
    "second_level_stride": "assignment",
    "task_aligned_assign": "assignment",
    "top_k_mask": "sampling",
}
_MODULES = ("assignment", "center_sampling", "coding", "conversions", "hungarian", "iou", "matching", "sampling")


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(f"polyloss.boxes.{_LAZY[name]}"), name)
    elif name in _MODULES:
        value = importlib.import_module(f"polyloss.boxes.{name}")
    else:
        raise AttributeError(f"module 'polyloss.boxes' has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY) | set(_MODULES))


# is_generator, max_argmax_rows and top_k_mask are importable helpers of the recipes, not in __all__

__all__ = [
    "BalancedSampler",
    "BoxCoder",
    "BoxWeights",
    "CenterSampler",
    "DEFAULT_DECODE_CLIP",
    "HungarianMatcher",
    "Matcher",
    "SSDMatcher",
    "assign_min_cost",
    "TaskAlignedAssigner",
    "TaskAlignedAssignment",
    "box_area",
    "box_convert",
    "box_iou",
    "center_sampling",
    "complete_box_iou",
    "decode_boxes",
    "decode_ltrb",
    "distance_box_iou",
    "encode_boxes",
    "encode_ltrb",
    "encode_matched",
    "generalized_box_iou",
    "hard_negative_mining",
    "hungarian_cost",
    "level_size_bounds",
    "paired_box_iou",
    "random_keys",
    "rank",
    "sample_balanced",
    "second_level_stride",
    "task_aligned_assign",
]
