"""Built-in sample data: small deterministic inputs for every built-in loss.

Used by ``python -m polyloss check``, the conformance kit, the docs and the
benchmarks. Each entry is ``(arrays, options)``: the loss's positional arrays
(float64/int64 NumPy) in its argument order and its keyword options (array
options as NumPy arrays).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

__all__ = ["SAMPLES", "Sample", "sample"]

#: ``(arrays, options)``: positional arrays of a loss call and its keyword options
Sample = tuple[tuple[Any, ...], dict[str, Any]]


def _regression(rng: np.random.Generator) -> Sample:
    return (rng.normal(size=(8, 5)), rng.normal(size=(8, 5))), {}


def _probabilities(rng: np.random.Generator) -> Sample:
    return (rng.uniform(0.02, 0.98, size=(8, 5)), rng.integers(0, 2, size=(8, 5)).astype(float)), {}


def _binary_logits(rng: np.random.Generator) -> Sample:
    return (3 * rng.normal(size=(8, 5)), rng.integers(0, 2, size=(8, 5)).astype(float)), {}


def _class_logits(rng: np.random.Generator) -> Sample:
    return (2 * rng.normal(size=(8, 5)), rng.integers(0, 5, size=8)), {}


def _log_probabilities(rng: np.random.Generator) -> Sample:
    x = rng.normal(size=(8, 5))
    logp = x - np.log(np.exp(x).sum(-1, keepdims=True))
    return (logp, rng.integers(0, 5, size=8)), {}


def _kl(rng: np.random.Generator) -> Sample:
    (logp, _), _ = _log_probabilities(rng)
    q = rng.dirichlet(np.ones(5), size=8)
    return (logp, q), {"reduction": "batchmean"}


def _signs(rng: np.random.Generator, *shape: int) -> Any:
    return rng.choice([-1.0, 1.0], size=shape)


def _hinge(rng: np.random.Generator) -> Sample:
    return (rng.normal(size=(8, 5)), _signs(rng, 8, 5)), {}


def _box_pairs(rng: np.random.Generator) -> Sample:
    def boxes() -> Any:
        corner = rng.uniform(0.0, 10.0, size=(8, 2))
        return np.concatenate([corner, corner + rng.uniform(0.5, 5.0, size=(8, 2))], axis=1)

    return (boxes(), boxes()), {}


def _iou_targets(rng: np.random.Generator) -> Sample:
    target = np.zeros((8, 5))
    target[np.arange(0, 8, 2), rng.integers(0, 5, size=4)] = rng.uniform(0.1, 1.0, size=4)
    return (2 * rng.normal(size=(8, 5)), target), {}


def _quality(rng: np.random.Generator) -> Sample:
    return (2 * rng.normal(size=(8, 5)), rng.integers(0, 6, size=8), rng.uniform(0.0, 1.0, size=8)), {}


def _distribution(rng: np.random.Generator) -> Sample:
    return (2 * rng.normal(size=(8, 5)), rng.uniform(0.0, 4.0, size=8)), {}


def _segmentation(rng: np.random.Generator) -> Sample:
    return (2 * rng.normal(size=(2, 4, 3, 3)), rng.integers(0, 4, size=(2, 3, 3))), {}


def _two_views(rng: np.random.Generator) -> Sample:
    return (rng.normal(size=(8, 5)), rng.normal(size=(8, 5))), {}


def _ctc(rng: np.random.Generator) -> Sample:
    x = rng.normal(size=(12, 4, 5))
    log_probs = x - np.log(np.exp(x).sum(-1, keepdims=True))
    targets = rng.integers(1, 4, size=(4, 4))
    return (log_probs, targets, np.array([12, 10, 7, 12]), np.array([4, 3, 2, 0])), {}


def _poisson(rng: np.random.Generator) -> Sample:
    return (rng.normal(size=(8, 5)), rng.poisson(2.0, size=(8, 5)).astype(float)), {"full": True}


def _gaussian(rng: np.random.Generator) -> Sample:
    return (rng.normal(size=(8, 5)), rng.normal(size=(8, 5)), rng.uniform(0.2, 2.0, size=(8, 5))), {}


def _embedding_pairs(rng: np.random.Generator) -> Sample:
    return (rng.normal(size=(8, 5)), rng.normal(size=(8, 5)), _signs(rng, 8)), {"margin": 0.1}


def _ranking(rng: np.random.Generator) -> Sample:
    return (rng.normal(size=8), rng.normal(size=8), _signs(rng, 8)), {"margin": 0.2}


def _triplets(rng: np.random.Generator) -> Sample:
    return (rng.normal(size=(8, 5)), rng.normal(size=(8, 5)), rng.normal(size=(8, 5))), {}


def _distances(rng: np.random.Generator) -> Sample:
    return (rng.uniform(0.0, 2.0, size=(8, 5)), _signs(rng, 8, 5)), {}


def _multilabel_masks(rng: np.random.Generator) -> Sample:
    return (rng.normal(size=(8, 5)), rng.integers(0, 2, size=(8, 5)).astype(float)), {}


def _label_lists(rng: np.random.Generator) -> Sample:
    lists = np.full((8, 5), -1)
    for i in range(8):
        k = int(rng.integers(0, 4))
        lists[i, :k] = rng.permutation(5)[:k]
    return (rng.normal(size=(8, 5)), lists), {}


SAMPLES: dict[str, Callable[[np.random.Generator], Sample]] = {
    "mse_loss": _regression,
    "l1_loss": _regression,
    "smooth_l1_loss": _regression,
    "huber_loss": _regression,
    "log_cosh_loss": _regression,
    "binary_cross_entropy": _probabilities,
    "binary_cross_entropy_with_logits": _binary_logits,
    "sigmoid_focal_loss": _binary_logits,
    "cross_entropy": _class_logits,
    "poly1_cross_entropy": _class_logits,
    "softmax_focal_loss": _class_logits,
    "multi_margin_loss": _class_logits,
    "nll_loss": _log_probabilities,
    "kl_div": _kl,
    "hinge_loss": _hinge,
    "squared_hinge_loss": _hinge,
    "soft_margin_loss": _hinge,
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
    "poisson_nll_loss": _poisson,
    "gaussian_nll_loss": _gaussian,
    "cosine_embedding_loss": _embedding_pairs,
    "margin_ranking_loss": _ranking,
    "triplet_margin_loss": _triplets,
    "hinge_embedding_loss": _distances,
    "multilabel_soft_margin_loss": _multilabel_masks,
    "multilabel_margin_loss": _label_lists,
}


def sample(name: str, seed: int = 0) -> Sample | None:
    """``(arrays, options)`` for loss ``name``: call it as ``loss(*arrays, **options)``; None without a sample."""
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
