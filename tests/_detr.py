"""Shared helpers of the DETR tests: scenes in NumPy and the real transformers matcher and loss as references.

transformers' ``loss_for_object_detection`` imports torchvision, which is
imported first through :func:`polyloss._torchvision.import_torchvision`.
"""

from __future__ import annotations

import types
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest

WEIGHTS = {"loss_ce": 1.0, "loss_bbox": 5.0, "loss_giou": 2.0}


def transformers_module() -> Any:
    """``transformers.loss.loss_for_object_detection``, or a skip where it cannot be imported."""
    pytest.importorskip("torch")
    pytest.importorskip("scipy")
    from polyloss._torchvision import import_torchvision

    if import_torchvision() is None:
        pytest.skip("torchvision is not importable here (transformers' detection loss imports it)")
    return pytest.importorskip("transformers.loss.loss_for_object_detection")


def cxcywh_boxes(rng: np.random.Generator, shape: tuple[int, ...], lo: float = 0.05, hi: float = 0.45) -> np.ndarray:
    """Normalised cxcywh boxes ``(*shape, 4)``: centres in ``[0.2, 0.8]``, sides in ``[lo, hi]``."""
    return np.concatenate([rng.uniform(0.2, 0.8, size=(*shape, 2)), rng.uniform(lo, hi, size=(*shape, 2))], axis=-1)


@dataclass
class Scene:
    """``L`` decoder layers of predictions (the last is the final output) and padded cxcywh ground truth."""

    logits: np.ndarray  # (L, N, Q, K)
    boxes: np.ndarray  # (L, N, Q, 4)
    gt_boxes: np.ndarray  # (N, G, 4)
    gt_labels: np.ndarray  # (N, G), -1 padding

    @property
    def aux(self) -> list[tuple[np.ndarray, np.ndarray]]:
        return [(self.logits[i], self.boxes[i]) for i in range(self.logits.shape[0] - 1)]

    def per_image(self) -> tuple[list[np.ndarray], list[np.ndarray]]:
        keep = [lab >= 0 for lab in self.gt_labels]
        return ([b[k] for b, k in zip(self.gt_boxes, keep, strict=True)],
                [lab[k] for lab, k in zip(self.gt_labels, keep, strict=True)])


def scene(counts: Sequence[int], *, queries: int = 12, classes: int = 6, layers: int = 1, seed: int = 0,
          interleave: bool = False) -> Scene:
    """Random predictions (sigmoid-range boxes) and ``counts[i]`` real boxes in image ``i`` (``classes``
    classes, logits ``classes + 1``). ``interleave``: padding entries between the real ones."""
    rng = np.random.default_rng(seed)
    n, g = len(counts), max([1, *counts])
    if interleave:
        g += 2
    gt_boxes = cxcywh_boxes(rng, (n, g))
    gt_labels = np.full((n, g), -1, dtype=np.int64)
    for i, c in enumerate(counts):
        slots = rng.permutation(g)[:c] if interleave else np.arange(c)
        gt_labels[i, np.sort(slots)] = rng.integers(0, classes, size=c)
    gt_boxes[gt_labels < 0] = rng.uniform(-5, 5, size=(int((gt_labels < 0).sum()), 4))  # padding holds anything
    logits = 2.0 * rng.normal(size=(layers, n, queries, classes + 1))
    boxes = cxcywh_boxes(rng, (layers, n, queries), 0.05, 0.5)
    return Scene(logits, boxes, gt_boxes, gt_labels)


def _targets(torch: Any, s: Scene, dtype: Any) -> list[dict[str, Any]]:
    return [{"class_labels": torch.tensor(lab[lab >= 0]), "boxes": torch.tensor(b[lab >= 0], dtype=dtype)}
            for b, lab in zip(s.gt_boxes, s.gt_labels, strict=True)]


def transformers_matching(s: Scene, layer: int = -1, *, costs: tuple[float, float, float] = (1.0, 5.0, 2.0),
                          dtype_name: str = "float64") -> np.ndarray:
    """transformers' ``HungarianMatcher`` on one layer, as ``(N, Q)`` padded ground-truth indices (-1: none)."""
    module = transformers_module()
    import torch

    dtype = getattr(torch, dtype_name)
    matcher = module.HungarianMatcher(class_cost=costs[0], bbox_cost=costs[1], giou_cost=costs[2])
    outputs = {"logits": torch.tensor(s.logits[layer], dtype=dtype),
               "pred_boxes": torch.tensor(s.boxes[layer], dtype=dtype)}
    indices = matcher(outputs, _targets(torch, s, dtype))
    n, q = s.logits.shape[1:3]
    out = np.full((n, q), -1, dtype=np.int64)
    for i, (rows, cols) in enumerate(indices):
        real = np.flatnonzero(s.gt_labels[i] >= 0)  # transformers indexes the real boxes only
        out[i, rows.numpy()] = real[cols.numpy()]
    return out


@dataclass
class Reference:
    total: float
    components: dict[str, float]  # weighted, as polyloss's
    grad_logits: np.ndarray  # (L, N, Q, K)
    grad_boxes: np.ndarray  # (L, N, Q, 4)


def transformers_loss(s: Scene, *, dtype_name: str = "float64", eos_coef: float = 0.1) -> Reference:
    """transformers' ``ForObjectDetectionLoss`` (auxiliary loss on when ``L > 1``) and its autograd gradients.

    The criterion builds its class weights in torch's default dtype, so the
    default dtype is the computation's while it runs.
    """
    module = transformers_module()
    import torch

    dtype = getattr(torch, dtype_name)
    layers = s.logits.shape[0]
    logits = torch.tensor(s.logits, dtype=dtype, requires_grad=True)
    boxes = torch.tensor(s.boxes, dtype=dtype, requires_grad=True)
    config = types.SimpleNamespace(class_cost=1, bbox_cost=5, giou_cost=2, num_labels=s.logits.shape[-1] - 1,
                                   eos_coefficient=eos_coef, auxiliary_loss=layers > 1, bbox_loss_coefficient=5,
                                   giou_loss_coefficient=2, decoder_layers=layers)
    default = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        loss, loss_dict, _ = module.ForObjectDetectionLoss(logits[-1], _targets(torch, s, dtype), "cpu", boxes[-1],
                                                           config, outputs_class=logits, outputs_coord=boxes)
    finally:
        torch.set_default_dtype(default)
    loss.backward()
    components = {}
    for name, value in loss_dict.items():
        if not name.startswith("cardinality"):
            base = name if name in WEIGHTS else name.rpartition("_")[0]
            components[name] = float(value.detach()) * WEIGHTS[base]
    assert logits.grad is not None and boxes.grad is not None
    return Reference(float(loss), components, logits.grad.double().numpy(), boxes.grad.double().numpy())
