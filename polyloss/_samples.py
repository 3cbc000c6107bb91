"""Built-in sample data: small deterministic inputs for every built-in loss.

Used by ``python -m polyloss check``, the docs and the benchmarks. Each entry
is ``(input, target, options)`` as float64/int64 NumPy arrays.
"""

from __future__ import annotations

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
}


def sample(name: str, seed: int = 0) -> tuple[Any, Any, dict[str, Any]] | None:
    """``(input, target, options)`` for loss ``name``, or None if it has no sample."""
    make = SAMPLES.get(name)
    return None if make is None else make(np.random.default_rng(seed))
