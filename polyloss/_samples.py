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

#: ``run(recipe, asarray)``: calls a recipe on sample data converted by ``asarray``
RecipeRun = Callable[[Any, Callable[[np.ndarray], Any]], Any]


def recipe_sample(name: str, seed: int = 0) -> tuple[dict[str, Any], RecipeRun] | None:
    """``(config, run)`` for recipe ``name`` from its factory's ``sample_data(seed)``, or None without one.

    Any registered recipe factory (built-in or plugin) may provide sample data
    as an attribute ``sample_data(seed) -> (config, run)``: ``check`` and the
    conformance kit build ``get_recipe(name, **config)`` and call
    ``run(recipe, asarray)`` with each backend's ``asarray``.
    """
    from polyloss._registry import registry

    factory = registry.tables.recipes.get(name)
    make = getattr(factory, "sample_data", None)
    if make is None:
        return None
    made = make(seed)
    if made is None:
        return None
    config, run = made
    return dict(config), run
