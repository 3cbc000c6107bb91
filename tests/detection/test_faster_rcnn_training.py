"""A tiny synthetic Faster R-CNN training run with torch: both stages' losses fall."""

from __future__ import annotations

import numpy as np
import pytest
from _detection import one_object_scenes

import polyloss as pl

torch = pytest.importorskip("torch")
C = 4  # background + 3 classes


def _anchors(size: int = 4, scale: float = 4.0) -> np.ndarray:
    step = scale / size
    ys, xs = np.meshgrid(np.arange(size) * step, np.arange(size) * step, indexing="ij")
    out = []
    for extent in (1.0, 2.0):
        out.append(np.stack([xs, ys, xs + extent * step, ys + extent * step], -1).reshape(-1, 4))
    return np.concatenate(out)


@pytest.mark.slow
def test_tiny_training_run_lowers_rpn_and_head_losses():
    torch.manual_seed(0)
    rng = np.random.default_rng(3)
    anchors_np = _anchors()
    a = len(anchors_np)
    n = 16
    gt, labels, features = one_object_scenes(rng, n, 2.0, C)
    features = torch.tensor(features, dtype=torch.float32)
    anchors = torch.tensor(anchors_np, dtype=torch.float32)
    gt_t, lab_t = torch.tensor(gt, dtype=torch.float32), torch.tensor(labels)
    # proposals: the anchors, jittered (fixed across steps, as a stand-in for the RPN's output)
    proposals = torch.tensor(np.broadcast_to(anchors_np, (n, a, 4)) + rng.uniform(-0.1, 0.1, (n, a, 4)),
                             dtype=torch.float32)
    proposals[..., 2:] = torch.maximum(proposals[..., 2:], proposals[..., :2] + 0.2)
    recipe = pl.get_recipe("faster_rcnn", num_classes=C, rpn_batch_size=64, roi_batch_size=64, seed=0)
    sampled = recipe.sample_proposals(proposals, gt_t, lab_t)
    r = sampled.boxes.shape[1]
    rpn_head = torch.nn.Sequential(torch.nn.Linear(4 + C, 64), torch.nn.ReLU(), torch.nn.Linear(64, a * 5))
    roi_head = torch.nn.Sequential(torch.nn.Linear(4 + 4 + C, 64), torch.nn.ReLU(), torch.nn.Linear(64, C * 5))
    opt = torch.optim.Adam([*rpn_head.parameters(), *roi_head.parameters()], lr=1e-2)
    roi_inputs = torch.cat([sampled.boxes / 4, features[:, None, :].expand(n, r, 4 + C)], dim=-1)
    history = []
    for _ in range(250):
        out = rpn_head(features).reshape(n, a, 5)
        head = roi_head(roi_inputs)
        result = recipe(anchors, out[..., 0], out[..., 1:], gt_t, lab_t,
                        head[..., :C], head[..., C:].reshape(n, r, C, 4), sampled, validate=False)
        opt.zero_grad()
        result.total.backward()
        opt.step()
        history.append({k: float(v.detach()) for k, v in result.components.items()})
    assert set(history[0]) == {"rpn_objectness", "rpn_box", "roi_classifier", "roi_box"}
    for name in history[0]:
        start = np.mean([h[name] for h in history[:5]])
        end = np.mean([h[name] for h in history[-10:]])
        assert np.isfinite(end) and end < 0.5 * start, (name, start, end)
