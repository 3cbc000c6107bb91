"""Extra padding columns of the ground truth change nothing (on host arrays they are dropped before matching)."""

import numpy as np
import pytest

import polyloss as pl


def _pad(boxes: np.ndarray, labels: np.ndarray, extra: int) -> tuple[np.ndarray, np.ndarray]:
    n = boxes.shape[0]
    return (np.concatenate([boxes, np.full((n, extra, 4), 7.0)], axis=1),
            np.concatenate([labels, np.full((n, extra), -1)], axis=1))


@pytest.mark.parametrize("extra", [1, 40])  # 43 columns: whole-matrix matching where padding is kept
def test_ssd_and_rpn_ignore_unused_padding_columns(xp, extra):
    rng = np.random.default_rng(5)
    priors = rng.uniform(0, 80, (30, 2))
    priors = np.concatenate([priors, priors + rng.uniform(5, 30, (30, 2))], axis=1)
    boxes = np.concatenate([priors[:6:2] + 1.0, priors[1:7:2] - 1.0]).reshape(2, 3, 4)
    labels = np.array([[1, 2, 3], [2, -1, -1]])
    deltas, logits = rng.normal(size=(2, 30, 4)), rng.normal(size=(2, 30, 4))
    ssd = pl.get_recipe("ssd", num_classes=4)
    rpn = pl.get_recipe("faster_rcnn", num_classes=4, rpn_batch_size=10_000, seed=0)
    padded = _pad(boxes, labels, extra)
    results = []
    for b, lab in ((boxes, labels), padded):
        a = [xp.asarray(v) for v in (deltas, logits, priors, b)] + [xp.asarray(lab, dtype=xp.ns.int64)]
        results.append((ssd(*a).components, rpn.rpn_loss(a[2], a[1][..., 0], a[0], a[3], a[4]).components))
    for plain, more in zip(results[0], results[1], strict=True):
        for key in plain:
            np.testing.assert_allclose(xp.to_numpy(more[key]), xp.to_numpy(plain[key]), rtol=1e-12, atol=0)
    assert float(xp.to_numpy(results[0][0]["loc"])) > 0
