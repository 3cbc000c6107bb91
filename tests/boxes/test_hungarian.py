"""polyloss.boxes.hungarian: DETR's cost against float64 NumPy, the matching against transformers' HungarianMatcher
and against brute force, SciPy's absence, torch.compile and torch.func around the host solver."""

from __future__ import annotations

import importlib
import itertools
import math
import subprocess
import sys

import numpy as np
import pytest
from _detr import scene
from _detr import transformers_matching

from polyloss import boxes as B
from polyloss.boxes import hungarian

pytest.importorskip("scipy")


def _giou(a: np.ndarray, b: np.ndarray) -> float:
    """GIoU of two cxcywh boxes, from the definition."""
    ax1, ay1, ax2, ay2 = a[0] - a[2] / 2, a[1] - a[3] / 2, a[0] + a[2] / 2, a[1] + a[3] / 2
    bx1, by1, bx2, by2 = b[0] - b[2] / 2, b[1] - b[3] / 2, b[0] + b[2] / 2, b[1] + b[3] / 2
    inter = max(0.0, min(ax2, bx2) - max(ax1, bx1)) * max(0.0, min(ay2, by2) - max(ay1, by1))
    union = a[2] * a[3] + b[2] * b[3] - inter
    enclosing = (max(ax2, bx2) - min(ax1, bx1)) * (max(ay2, by2) - min(ay1, by1))
    return inter / union - (enclosing - union) / enclosing


def _cost_reference(logits: np.ndarray, boxes: np.ndarray, gt: np.ndarray, labels: np.ndarray,
                    weights: tuple[float, float, float]) -> np.ndarray:
    n, q, _ = logits.shape
    out = np.zeros((n, q, gt.shape[1]))
    for i in range(n):
        p = np.exp(logits[i] - logits[i].max(-1, keepdims=True))
        p /= p.sum(-1, keepdims=True)
        for j in range(q):
            for k in range(gt.shape[1]):
                if labels[i, k] >= 0:
                    out[i, j, k] = (-weights[0] * p[j, labels[i, k]] + weights[1] * np.abs(boxes[i, j] - gt[i, k]).sum()
                                    - weights[2] * _giou(boxes[i, j], gt[i, k]))
    return out


@pytest.mark.parametrize("counts", [(0, 0), (1, 0, 3), (5, 2)], ids=["no-boxes", "0-1-many", "many"])
def test_cost_matches_the_definition(xp, counts):
    s = scene(counts, queries=7, classes=4, interleave=True)
    weights = (1.0, 5.0, 2.0)
    got = B.hungarian_cost(xp.asarray(s.logits[0]), xp.asarray(s.boxes[0]), xp.asarray(s.gt_boxes),
                           xp.asarray(s.gt_labels), cost_class=1.0, cost_bbox=5.0, cost_giou=2.0)
    expected = _cost_reference(s.logits[0], s.boxes[0], s.gt_boxes, s.gt_labels, weights)
    np.testing.assert_allclose(xp.to_numpy(got), expected, rtol=max(xp.rtol, 1e-12), atol=max(xp.atol, 1e-12) * 10)


@pytest.mark.parametrize("counts", [(0, 0, 0), (1, 1), (0, 1, 9), (12, 3)], ids=["0", "1", "0-1-many", "many"])
def test_matching_equals_transformers(xp, counts):
    s = scene(counts, queries=12, classes=6, seed=sum(counts))
    matcher = B.HungarianMatcher(1.0, 5.0, 2.0)
    got = matcher(xp.asarray(s.logits[0]), xp.asarray(s.boxes[0]), xp.asarray(s.gt_boxes), xp.asarray(s.gt_labels))
    got = xp.to_numpy(got)
    assert got.shape == (len(counts), 12)
    np.testing.assert_array_equal(got, transformers_matching(s, 0))
    assert [int((row >= 0).sum()) for row in got] == [min(c, 12) for c in counts]


def test_matching_with_interleaved_padding_and_more_boxes_than_queries():
    s = scene((9, 2, 0), queries=6, classes=3, seed=4, interleave=True)
    got = B.HungarianMatcher(1.0, 5.0, 2.0)(s.logits[0], s.boxes[0], s.gt_boxes, s.gt_labels)
    np.testing.assert_array_equal(got, transformers_matching(s, 0))
    assert int((got[0] >= 0).sum()) == 6  # Q of the 9 boxes
    for i in range(3):  # padding (interleaved) is never matched
        assert np.all(s.gt_labels[i, got[i][got[i] >= 0]] >= 0)


def test_nan_prediction_is_matched_last_as_transformers():
    s = scene((3,), queries=5, classes=3, seed=2)
    s.logits[0, 0, 3, 2] = math.nan
    matcher = B.HungarianMatcher(1.0, 5.0, 2.0)
    got = matcher(s.logits[0], s.boxes[0], s.gt_boxes, s.gt_labels)
    np.testing.assert_array_equal(got, transformers_matching(s, 0))
    assert got[0, 3] == -1
    # a NaN box too (transformers' GIoU raises ValueError on it): its cost is the largest, so it is not matched
    s.boxes[0, 0, 1, :] = math.nan
    got = matcher(s.logits[0], s.boxes[0], s.gt_boxes, s.gt_labels)
    assert got[0, 1] == -1 and got[0, 3] == -1 and int((got >= 0).sum()) == 3


def _brute_force(cost: np.ndarray) -> float:
    q, g = cost.shape
    if q >= g:
        return min(sum(cost[p[k], k] for k in range(g)) for p in itertools.permutations(range(q), g))
    return min(sum(cost[k, p[k]] for k in range(q)) for p in itertools.permutations(range(g), q))


@pytest.mark.parametrize("shape", [(5, 3), (3, 5), (4, 4), (4, 0)])
def test_assignment_is_optimal_and_one_to_one(xp, shape):
    rng = np.random.default_rng(shape[0] * 7 + shape[1])
    cost = rng.uniform(-1, 3, size=(2, *shape))
    valid = np.ones((2, shape[1]), dtype=bool)
    if shape[1]:
        valid[1, 0] = False
    got = xp.to_numpy(B.assign_min_cost(xp.asarray(cost), xp.asarray(valid)))
    for i in range(2):
        rows = np.flatnonzero(got[i] >= 0)
        cols = got[i, rows]
        assert len(set(cols.tolist())) == len(cols) == min(shape[0], int(valid[i].sum()))
        assert np.all(valid[i, cols])
        if cols.size:
            columns = np.flatnonzero(valid[i])
            best = _brute_force(cost[i][:, columns])
            assert cost[i, rows, cols].sum() == pytest.approx(best, rel=1e-12)


def test_default_valid_is_every_column():
    cost = np.array([[[1.0, 0.0], [0.0, 1.0], [5.0, 5.0]]])
    np.testing.assert_array_equal(B.assign_min_cost(cost), [[1, 0, -1]])


@pytest.mark.parametrize(("call", "error", "words"), [
    (lambda: B.assign_min_cost(np.zeros((2, 3))), ValueError, "(N, Q, G)"),
    (lambda: B.assign_min_cost(np.zeros((1, 2, 3)), np.ones((1, 3), dtype=np.int64)), TypeError, "boolean"),
    (lambda: B.assign_min_cost(np.zeros((1, 2, 3)), np.ones((1, 2), dtype=bool)), ValueError, "valid shape"),
    (lambda: B.HungarianMatcher(0.0, 0.0, 0.0), ValueError, "all 0"),
    (lambda: B.HungarianMatcher(-1.0, 1.0, 1.0), ValueError, "cost_class"),
    (lambda: B.hungarian_cost(np.zeros((1, 2, 3)), np.zeros((1, 3, 4)), np.zeros((1, 1, 4)),
                              np.zeros((1, 1), dtype=np.int64)), ValueError, "pred_boxes"),
    (lambda: B.hungarian_cost(np.zeros((1, 2, 3)), np.zeros((1, 2, 4)), np.zeros((2, 1, 4)),
                              np.zeros((1, 1), dtype=np.int64)), ValueError, "gt_boxes"),
    (lambda: B.hungarian_cost(np.zeros((1, 2, 3)), np.zeros((1, 2, 4)), np.zeros((1, 1, 4)),
                              np.zeros((1, 1))), ValueError, "gt_labels"),
])
def test_bad_arguments(call, error, words):
    with pytest.raises(error, match=None) as info:
        call()
    assert words in str(info.value)


def test_without_scipy_the_error_says_how_to_install_it(monkeypatch):
    real = importlib.import_module

    def no_scipy(name, *args, **kwargs):
        if name.startswith("scipy"):
            raise ImportError(f"No module named {name!r}")
        return real(name, *args, **kwargs)

    monkeypatch.setattr(hungarian.importlib, "import_module", no_scipy)
    with pytest.raises(ImportError, match=r"pip install scipy") as info:
        B.assign_min_cost(np.zeros((1, 2, 2)))
    assert "detr" in str(info.value)
    cost = B.hungarian_cost(np.zeros((1, 2, 3)), np.full((1, 2, 4), 0.5), np.full((1, 1, 4), 0.5),
                            np.zeros((1, 1), dtype=np.int64))
    assert cost.shape == (1, 2, 1)  # the cost needs no SciPy


def test_import_polyloss_does_not_import_scipy():
    code = ("import sys, polyloss as pl, polyloss.boxes; pl.recipes(); pl.get_recipe('detr'); "
            "assert 'scipy' not in sys.modules, 'scipy imported'")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_host_solver_inside_torch_compile_and_torch_func():
    torch = pytest.importorskip("torch")
    s = scene((4, 0, 2), queries=6, classes=3, seed=5)
    logits, boxes = torch.tensor(s.logits[0]), torch.tensor(s.boxes[0])
    gt, labels = torch.tensor(s.gt_boxes), torch.tensor(s.gt_labels)
    matcher = B.HungarianMatcher(1.0, 5.0, 2.0)
    eager = matcher(logits, boxes, gt, labels)

    def f(x):
        return (x * 2.0).sum() + matcher(x, boxes, gt, labels).sum()

    torch._dynamo.reset()
    compiled = torch.compile(f, backend="eager")  # a graph break at the solver
    assert float(compiled(logits)) == pytest.approx(float(f(logits)))
    torch._dynamo.reset()

    def g(x):
        return (x * matcher(x, boxes, gt, labels)[..., None]).sum()

    grad = torch.func.grad(g)(logits)  # the solver reads the cost's value under the transform
    np.testing.assert_array_equal(grad.numpy(), np.broadcast_to(eager.numpy()[..., None], logits.shape))
    with pytest.raises(ValueError, match="vmap"):
        torch.func.vmap(lambda x: matcher(x[None], boxes[:1], gt[:1], labels[:1]))(logits)
