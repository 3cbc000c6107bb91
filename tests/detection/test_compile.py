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


def test_faster_rcnn_stages_after_sampling_compile_fullgraph():
    """Matching, encoding and both losses compile; the samplers draw their keys with NumPy on the host."""
    config, _ = recipe_sample("faster_rcnn")
    recipe = pl.get_recipe("faster_rcnn", **config, validate=False)
    rng = np.random.default_rng(0)
    anchors = torch.tensor(np.array([[0, 0, 10, 10], [5, 5, 20, 20], [30, 30, 60, 50], [0, 40, 15, 60.0]]))
    gt = recipe._gt(pl.get_backend("torch"), torch.tensor([[[1, 1, 11, 12], [28, 30, 58, 52.0]]]),
                    torch.tensor([[1, 2]]), anchors, 1, False, labels_required=True)
    proposals = anchors[None] + torch.tensor(rng.uniform(-1, 1, (1, 4, 4)))
    sampled = recipe.sample_proposals(proposals, gt.boxes, gt.labels)
    class_logits = torch.tensor(rng.normal(size=(1, sampled.labels.shape[1], 4)), requires_grad=True)
    box_deltas = torch.tensor(0.1 * rng.normal(size=(1, sampled.labels.shape[1], 4, 4)), requires_grad=True)

    def stages():
        targets = recipe.assign_anchors(anchors, gt)
        return targets.labels, targets.box_targets, recipe.roi_loss(class_logits, box_deltas, sampled).total

    torch._dynamo.reset()
    got = torch.compile(stages, fullgraph=True, backend="eager")()
    expected = stages()
    for g, e in zip(got, expected, strict=True):
        torch.testing.assert_close(g, e, rtol=1e-12, atol=0)
    assert int((expected[0] == 1).sum()) >= 2  # both ground truths matched
