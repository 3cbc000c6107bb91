"""ultralytics as the reference of the "yolov8" recipe and the task-aligned assigner: scenes and a stand-in model.

``v8DetectionLoss(model)`` reads ``model.parameters()`` (the device),
``model.args`` (the gains ``box``, ``cls``, ``dfl``) and ``model.model[-1]``
(the head: ``stride``, ``nc``, ``reg_max``); :func:`criterion` builds the
smallest object that has them.
"""

from __future__ import annotations

import types
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest

from polyloss._torchvision import import_torchvision

torch = pytest.importorskip("torch")
import_torchvision()  # before ultralytics: it imports torchvision
ultralytics_loss = pytest.importorskip("ultralytics.utils.loss")
ultralytics_tal = pytest.importorskip("ultralytics.utils.tal")

STRIDES = (8, 16, 32)


def criterion(num_classes: int, reg_max: int = 16, strides: tuple[int, ...] = STRIDES,
              gains: tuple[float, float, float] = (7.5, 0.5, 1.5)) -> Any:
    """ultralytics' ``v8DetectionLoss`` on a stand-in model."""
    head = types.SimpleNamespace(stride=torch.tensor(strides, dtype=torch.float32), nc=num_classes, reg_max=reg_max)

    class Model(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.weight = torch.nn.Parameter(torch.zeros(1))
            self.args = types.SimpleNamespace(box=gains[0], cls=gains[1], dfl=gains[2])
            self.model = [head]

    return ultralytics_loss.v8DetectionLoss(Model())


@dataclass
class Scene:
    """One batch: ultralytics' inputs and the same ground truth as polyloss takes it (float64 NumPy)."""

    feats: list[Any]  # per level (N, 1, h, w): only their shapes are read
    batch: dict[str, Any]  # ultralytics' targets: batch_idx, cls, normalised cxcywh bboxes
    anchor_points: np.ndarray  # (A, 2) grid units
    strides: np.ndarray  # (A,)
    gt_boxes: np.ndarray  # (N, G, 4) pixel xyxy as ultralytics computes them, padding label -1
    gt_labels: np.ndarray  # (N, G)
    pred_distri: np.ndarray  # (N, A, 4 * reg_max)
    pred_scores: np.ndarray  # (N, A, C)


def scene(counts: tuple[int, ...], *, num_classes: int = 5, reg_max: int = 16, size: int = 128, seed: int = 0,
          strides: tuple[int, ...] = STRIDES, small: bool = True, score_shift: float = -2.0) -> Scene:
    """``len(counts)`` images of ``size x size`` pixels with ``counts[i]`` boxes each.

    Boxes have sides from 2% (below the second stride: the candidate floor applies) to 50% of the
    image; centres keep away from the top-left corner, where ``torch.topk``'s order of equal
    (zero) metrics would decide which zero-metric candidates it takes.
    """
    rng = np.random.default_rng(seed)
    n = len(counts)
    crit = criterion(num_classes, reg_max, strides)
    feats = [torch.zeros(n, 1, size // s, size // s) for s in strides]
    points, per_anchor = ultralytics_tal.make_anchors(feats, crit.stride, 0.5)
    idx, cls, boxes = [], [], []
    for i, k in enumerate(counts):
        for _ in range(k):
            wh = rng.uniform(0.02 if small else 0.15, 0.5, 2)
            centre = rng.uniform(0.3, 0.75, 2)
            idx.append(i)
            cls.append(int(rng.integers(0, num_classes)))
            boxes.append([*centre, *wh])
    batch = {"batch_idx": torch.tensor(idx, dtype=torch.float32),
             "cls": torch.tensor(cls, dtype=torch.float32).reshape(-1, 1),
             "bboxes": torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4)}
    targets = torch.cat((batch["batch_idx"].view(-1, 1), batch["cls"].view(-1, 1), batch["bboxes"]), 1)
    padded = crit.preprocess(targets, n, scale_tensor=torch.tensor([size] * 4, dtype=torch.float32))
    g = max(1, padded.shape[1])
    gt_boxes = np.zeros((n, g, 4))
    gt_labels = np.full((n, g), -1, dtype=np.int64)
    if padded.shape[1]:
        real = padded[..., 1:].sum(-1) > 0
        gt_boxes[:, : padded.shape[1]] = padded[..., 1:].double().numpy()
        gt_labels[:, : padded.shape[1]] = np.where(real.numpy(), padded[..., 0].long().numpy(), -1)
    a = points.shape[0]
    return Scene(feats=feats, batch=batch, anchor_points=points.double().numpy(),
                 strides=per_anchor[:, 0].double().numpy(), gt_boxes=gt_boxes, gt_labels=gt_labels,
                 pred_distri=rng.normal(size=(n, a, 4 * reg_max)),
                 pred_scores=rng.normal(size=(n, a, num_classes)) + score_shift)


def reference_loss(s: Scene, num_classes: int, reg_max: int = 16, strides: tuple[int, ...] = STRIDES
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """ultralytics' ``(box, cls, dfl)`` (times the batch size, as it returns them) and the autograd gradients
    of their sum w.r.t. the distribution and score predictions, float32."""
    crit = criterion(num_classes, reg_max, strides)
    distri = torch.tensor(s.pred_distri, dtype=torch.float32, requires_grad=True)
    scores = torch.tensor(s.pred_scores, dtype=torch.float32, requires_grad=True)
    preds = {"boxes": distri.permute(0, 2, 1), "scores": scores.permute(0, 2, 1), "feats": s.feats}
    loss, _ = crit(preds, s.batch)
    g_distri, g_scores = torch.autograd.grad(loss.sum(), [distri, scores])
    return loss.detach().double().numpy(), g_distri.double().numpy(), g_scores.double().numpy()
