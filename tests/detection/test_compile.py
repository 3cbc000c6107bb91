"""Recipes inside torch.compile(fullgraph=True): one graph, the eager numbers and gradients."""

from __future__ import annotations

import numpy as np
import pytest

import polyloss as pl
from polyloss._samples import recipe_sample

torch = pytest.importorskip("torch")
# array_api_compat's helpers are lru_cache-wrapped; dynamo traces through them and says so
pytestmark = pytest.mark.filterwarnings("ignore:Dynamo detected a call to a `functools.lru_cache`:UserWarning")


def _tensors(name: str):
    """The recipe on its sample data, with a lookup from each NumPy input to its (float64) tensor."""
    config, run = recipe_sample(name)
    recipe = pl.get_recipe(name, **config, validate=False)  # host-side checks would break the graph
    made: dict[int, object] = {}

    def record(a: np.ndarray):
        made[id(a)] = torch.tensor(a, requires_grad=a.dtype.kind == "f")
        return made[id(a)]

    eager = run(recipe, record)
    return recipe, run, made, eager


@pytest.mark.parametrize("name", ["ssd", "yolov1"])
def test_recipe_compiles_fullgraph_and_matches_eager(name):
    recipe, run, made, eager = _tensors(name)
    torch._dynamo.reset()
    compiled = torch.compile(lambda: run(recipe, lambda a: made[id(a)]), fullgraph=True, backend="eager")
    out = compiled()
    for component in eager.components:
        torch.testing.assert_close(out.components[component], eager.components[component], rtol=1e-12, atol=0)
    leaves = [t for t in made.values() if t.requires_grad]
    got = torch.autograd.grad(out.total, leaves, allow_unused=True)
    expected = torch.autograd.grad(eager.total, leaves, allow_unused=True)
    for g, e in zip(got, expected, strict=True):
        if e is not None:
            torch.testing.assert_close(g, e, rtol=1e-12, atol=1e-15)


def _faster_rcnn_inputs(rng: np.random.Generator, recipe) -> tuple:
    """Two images on a 6x6 anchor grid, each with two or three boxes, and head inputs of the static R."""
    grid = np.arange(6) * 10.0
    x, y = np.meshgrid(grid, grid)
    anchors = np.stack([x.ravel(), y.ravel(), x.ravel() + 18.0, y.ravel() + 18.0], axis=1)
    gt_boxes = np.array([[[2, 3, 21, 19], [30, 28, 52, 50], [0, 0, 0, 0]],
                         [[10, 12, 31, 30], [40, 5, 58, 22], [4, 38, 25, 57]]], dtype=float)
    gt_labels = np.array([[1, 3, -1], [2, 2, 1]])
    proposals = np.broadcast_to(anchors[:24], (2, 24, 4)) + rng.uniform(-3, 3, (2, 24, 4))
    proposals[..., 2:] = np.maximum(proposals[..., 2:], proposals[..., :2] + 2.0)
    r = min(recipe.roi_batch_size, 24 + 3)
    leaves = (rng.normal(size=(2, 36)), 0.1 * rng.normal(size=(2, 36, 4)),
              rng.normal(size=(2, r, 4)), 0.1 * rng.normal(size=(2, r, 4, 4)))
    fixed = tuple(torch.tensor(a) for a in (anchors, gt_boxes, gt_labels, proposals))
    return fixed, tuple(torch.tensor(a, requires_grad=True) for a in leaves)


@pytest.mark.parametrize("seed", [5, None])
def test_faster_rcnn_compiles_fullgraph_with_its_sampling_and_matches_eager(seed):
    """Sampling included: an int seed's keys are a hash computed in the graph (the eager sample); ``None``
    draws with torch's generator inside the graph."""
    recipe = pl.get_recipe("faster_rcnn", num_classes=4, rpn_batch_size=8, roi_batch_size=6, seed=seed,
                           validate=False)
    (anchors, gt_boxes, gt_labels, proposals), leaves = _faster_rcnn_inputs(np.random.default_rng(0), recipe)

    def full(objectness, rpn_deltas, class_logits, box_deltas):
        sampled = recipe.sample_proposals(proposals, gt_boxes, gt_labels)
        result = recipe(anchors, objectness, rpn_deltas, gt_boxes, gt_labels, class_logits, box_deltas, sampled)
        return result, sampled

    torch._dynamo.reset()
    compiled = torch.compile(full, fullgraph=True, backend="eager")
    out, sampled = compiled(*leaves)
    assert int((sampled.labels >= 0).sum()) == 12 < 2 * 27  # a real sample: 6 of 27 candidates per image
    if seed is None:
        assert all(bool(torch.isfinite(v)) for v in out.components.values())
        again, _ = compiled(*leaves)
        assert any(bool(again.components[k] != v) for k, v in out.components.items())  # fresh samples
        return
    eager, eager_sampled = full(*leaves)
    torch.testing.assert_close(sampled.labels, eager_sampled.labels, rtol=0, atol=0)
    for component in eager.components:
        torch.testing.assert_close(out.components[component], eager.components[component], rtol=1e-12, atol=0)
    assert float(eager.components["rpn_box"].detach()) > 0 and float(eager.components["roi_box"].detach()) > 0
    got = torch.autograd.grad(out.total, leaves)
    expected = torch.autograd.grad(eager.total, leaves)
    for g, e in zip(got, expected, strict=True):
        torch.testing.assert_close(g, e, rtol=1e-12, atol=1e-15)


def test_faster_rcnn_under_compile_takes_a_tensor_seed_without_recompiling():
    """A step counter as a 0-d tensor seed: each value the int's sample, one compiled graph for all."""
    recipe = pl.get_recipe("faster_rcnn", num_classes=4, rpn_batch_size=8, roi_batch_size=6, validate=False)
    (anchors, gt_boxes, gt_labels, proposals), leaves = _faster_rcnn_inputs(np.random.default_rng(1), recipe)

    def full(step, objectness, rpn_deltas, class_logits, box_deltas):
        sampled = recipe.sample_proposals(proposals, gt_boxes, gt_labels, seed=step)
        return recipe(anchors, objectness, rpn_deltas, gt_boxes, gt_labels, class_logits, box_deltas, sampled,
                      seed=step).components

    torch._dynamo.reset()
    counter = torch._dynamo.testing.CompileCounter()
    compiled = torch.compile(full, fullgraph=True, backend=counter)
    totals = []
    for step in (3, 4, 11):
        got = compiled(torch.tensor(step), *leaves)
        expected = full(step, *leaves)
        for name, value in expected.items():
            torch.testing.assert_close(got[name], value, rtol=1e-12, atol=0, msg=f"step {step} {name}")
        totals.append(sum(float(v.detach()) for v in got.values()))
    assert counter.frame_count == 1
    assert len(set(totals)) == 3  # a new sample per step


def test_faster_rcnn_rpn_under_torch_func_grad_and_vmap_equals_eager():
    """Under torch.func transforms the recipe keeps its static-shape path (no value is read)."""
    recipe = pl.get_recipe("faster_rcnn", num_classes=4, rpn_batch_size=8, seed=2)
    (anchors, gt_boxes, gt_labels, _), (objectness, rpn_deltas, _, _) = _faster_rcnn_inputs(
        np.random.default_rng(2), recipe)

    def total(o, d):
        return recipe.rpn_loss(anchors, o, d, gt_boxes, gt_labels).total

    got = torch.func.grad(total, argnums=(0, 1))(objectness.detach(), rpn_deltas.detach())
    expected = torch.autograd.grad(total(objectness, rpn_deltas), (objectness, rpn_deltas))
    for g, e in zip(got, expected, strict=True):
        torch.testing.assert_close(g, e, rtol=1e-12, atol=1e-15)
    assert float(expected[1].abs().sum()) > 0
    stacked = torch.stack([objectness.detach(), 2 * objectness.detach()])
    per_batch = torch.func.vmap(lambda o: total(o, rpn_deltas.detach()))(stacked)
    for value, o in zip(per_batch, stacked, strict=True):
        torch.testing.assert_close(value, total(o, rpn_deltas.detach()), rtol=1e-12, atol=0)
