"""Built-in sample data: small deterministic inputs for every built-in loss.

Used by ``python -m polyloss check``, the docs and the benchmarks. Each entry
is ``(input, target, options)`` as float64/int64 NumPy arrays.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

__all__ = ["SAMPLES", "sample"]


def _regression(rng: np.random.Generator) -> tuple[Any, Any, dict[str, Any]]:
    return rng.normal(size=(8, 5)), rng.normal(size=(8, 5)), {}


def _probabilities(rng: np.random.Generator) -> tuple[Any, Any, dict[str, Any]]:
    return rng.uniform(0.02, 0.98, size=(8, 5)), rng.integers(0, 2, size=(8, 5)).astype(float), {}


def _binary_logits(rng: np.random.Generator) -> tuple[Any, Any, dict[str, Any]]:
    return 3 * rng.normal(size=(8, 5)), rng.integers(0, 2, size=(8, 5)).astype(float), {}


def _class_logits(rng: np.random.Generator) -> tuple[Any, Any, dict[str, Any]]:
    return 2 * rng.normal(size=(8, 5)), rng.integers(0, 5, size=8), {}


def _log_probabilities(rng: np.random.Generator) -> tuple[Any, Any, dict[str, Any]]:
    x = rng.normal(size=(8, 5))
    logp = x - np.log(np.exp(x).sum(-1, keepdims=True))
    return logp, rng.integers(0, 5, size=8), {}


def _kl(rng: np.random.Generator) -> tuple[Any, Any, dict[str, Any]]:
    logp, _, _ = _log_probabilities(rng)
    q = rng.dirichlet(np.ones(5), size=8)
    return logp, q, {"reduction": "batchmean"}


def _hinge(rng: np.random.Generator) -> tuple[Any, Any, dict[str, Any]]:
    return rng.normal(size=(8, 5)), rng.choice([-1.0, 1.0], size=(8, 5)), {}


def _box_pairs(rng: np.random.Generator) -> tuple[Any, Any, dict[str, Any]]:
    def boxes() -> Any:
        corner = rng.uniform(0.0, 10.0, size=(8, 2))
        return np.concatenate([corner, corner + rng.uniform(0.5, 5.0, size=(8, 2))], axis=1)

    return boxes(), boxes(), {}


def _iou_targets(rng: np.random.Generator) -> tuple[Any, Any, dict[str, Any]]:
    target = np.zeros((8, 5))
    target[np.arange(0, 8, 2), rng.integers(0, 5, size=4)] = rng.uniform(0.1, 1.0, size=4)
    return 2 * rng.normal(size=(8, 5)), target, {}


def _quality(rng: np.random.Generator) -> tuple[Any, Any, dict[str, Any]]:
    return 2 * rng.normal(size=(8, 5)), rng.integers(0, 6, size=8), {"score": rng.uniform(0.0, 1.0, size=8)}


def _distribution(rng: np.random.Generator) -> tuple[Any, Any, dict[str, Any]]:
    return 2 * rng.normal(size=(8, 5)), rng.uniform(0.0, 4.0, size=8), {}


def _segmentation(rng: np.random.Generator) -> tuple[Any, Any, dict[str, Any]]:
    return 2 * rng.normal(size=(2, 4, 3, 3)), rng.integers(0, 4, size=(2, 3, 3)), {}


def _two_views(rng: np.random.Generator) -> tuple[Any, Any, dict[str, Any]]:
    return rng.normal(size=(8, 5)), rng.normal(size=(8, 5)), {}


def _ctc(rng: np.random.Generator) -> tuple[Any, Any, dict[str, Any]]:
    x = rng.normal(size=(12, 4, 5))
    log_probs = x - np.log(np.exp(x).sum(-1, keepdims=True))
    lengths = {"input_lengths": np.array([12, 10, 7, 12]), "target_lengths": np.array([4, 3, 2, 0])}
    return log_probs, rng.integers(1, 4, size=(4, 4)), lengths


SAMPLES = {
    "mse_loss": _regression,
    "l1_loss": _regression,
    "smooth_l1_loss": _regression,
    "huber_loss": _regression,
    "binary_cross_entropy": _probabilities,
    "binary_cross_entropy_with_logits": _binary_logits,
    "sigmoid_focal_loss": _binary_logits,
    "cross_entropy": _class_logits,
    "softmax_focal_loss": _class_logits,
    "multi_margin_loss": _class_logits,
    "nll_loss": _log_probabilities,
    "kl_div": _kl,
    "hinge_loss": _hinge,
    "squared_hinge_loss": _hinge,
    "iou_loss": _box_pairs,
    "giou_loss": _box_pairs,
    "diou_loss": _box_pairs,
    "ciou_loss": _box_pairs,
    "varifocal_loss": _iou_targets,
    "quality_focal_loss": _quality,
    "distribution_focal_loss": _distribution,
    "dice_loss": _segmentation,
    "jaccard_loss": _segmentation,
    "tversky_loss": _segmentation,
    "lovasz_loss": _segmentation,
    "nt_xent_loss": _two_views,
    "ctc_loss": _ctc,
}


def sample(name: str, seed: int = 0) -> tuple[Any, Any, dict[str, Any]] | None:
    """``(input, target, options)`` for loss ``name``, or None if it has no sample."""
    make = SAMPLES.get(name)
    return None if make is None else make(np.random.default_rng(seed))


# -- detector recipes -----------------------------------------------------------

RecipeRun = Callable[[Any, Callable[[np.ndarray], Any]], Any]


def _gt(rng: np.random.Generator, n: int, g: int, scale: float, num_classes: int) -> tuple[Any, Any]:
    corner = rng.uniform(0.0, 0.6 * scale, size=(n, g, 2))
    boxes = np.concatenate([corner, corner + rng.uniform(0.15 * scale, 0.4 * scale, size=(n, g, 2))], axis=-1)
    labels = rng.integers(1, num_classes, size=(n, g))
    labels[-1, -1] = -1  # one padding entry
    return boxes, labels


def _grid_boxes(size: int, scale: float) -> Any:
    step = scale / size
    ys, xs = np.meshgrid(np.arange(size) * step, np.arange(size) * step, indexing="ij")
    small = np.stack([xs, ys, xs + step, ys + step], -1).reshape(-1, 4)
    large = np.stack([xs, ys, np.minimum(xs + 2 * step, scale), np.minimum(ys + 2 * step, scale)], -1).reshape(-1, 4)
    return np.concatenate([small, large])


def _ssd(rng: np.random.Generator) -> tuple[dict[str, Any], RecipeRun]:
    config = {"num_classes": 4}
    priors = _grid_boxes(6, 100.0)
    gt_boxes, gt_labels = _gt(rng, 2, 3, 100.0, 4)
    deltas = rng.normal(size=(2, priors.shape[0], 4))
    logits = rng.normal(size=(2, priors.shape[0], 4))

    def run(recipe: Any, asarray: Callable[[np.ndarray], Any]) -> Any:
        return recipe(asarray(deltas), asarray(logits), asarray(priors), asarray(gt_boxes), asarray(gt_labels))

    return config, run


def _faster_rcnn(rng: np.random.Generator) -> tuple[dict[str, Any], RecipeRun]:
    # batch sizes above the candidate counts: sampling takes every candidate, so backends agree exactly
    config = {"num_classes": 4, "rpn_batch_size": 10_000, "roi_batch_size": 10_000, "seed": 0}
    anchors = _grid_boxes(6, 100.0)
    gt_boxes, gt_labels = _gt(rng, 2, 3, 100.0, 4)
    objectness = rng.normal(size=(2, anchors.shape[0]))
    rpn_deltas = 0.1 * rng.normal(size=(2, anchors.shape[0], 4))
    proposals = np.broadcast_to(anchors[:20], (2, 20, 4)) + rng.uniform(-2, 2, size=(2, 20, 4))
    proposals[..., 2:] = np.maximum(proposals[..., 2:], proposals[..., :2] + 1.0)
    head_rng = np.random.default_rng(1)

    def run(recipe: Any, asarray: Callable[[np.ndarray], Any]) -> Any:
        sampled = recipe.sample_proposals(asarray(proposals), asarray(gt_boxes), asarray(gt_labels))
        n, r = sampled.labels.shape
        local = np.random.default_rng(head_rng.bit_generator.seed_seq)  # type: ignore[arg-type]  # same numbers on every backend
        class_logits = asarray(local.normal(size=(n, r, 4)))
        box_deltas = asarray(0.1 * local.normal(size=(n, r, 4, 4)))
        return recipe(asarray(anchors), asarray(objectness), asarray(rpn_deltas), asarray(gt_boxes),
                      asarray(gt_labels), class_logits, box_deltas, sampled)

    return config, run


def _yolov1(rng: np.random.Generator) -> tuple[dict[str, Any], RecipeRun]:
    config = {"grid": 4, "boxes_per_cell": 2, "num_classes": 3}
    gt_boxes, gt_labels = _gt(rng, 2, 3, 1.0, 3)
    pred = rng.uniform(0.0, 1.0, size=(2, 4, 4, 2 * 5 + 3))

    def run(recipe: Any, asarray: Callable[[np.ndarray], Any]) -> Any:
        return recipe(asarray(pred), asarray(gt_boxes), asarray(gt_labels))

    return config, run


RECIPE_SAMPLES = {"ssd": _ssd, "faster_rcnn": _faster_rcnn, "yolov1": _yolov1}


def recipe_sample(name: str, seed: int = 0) -> tuple[dict[str, Any], RecipeRun] | None:
    """``(config, run)`` for recipe ``name``: ``run(recipe, asarray)`` calls it on sample data."""
    make = RECIPE_SAMPLES.get(name)
    return None if make is None else make(np.random.default_rng(seed))
