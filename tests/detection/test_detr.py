"""The "detr" recipe against the real transformers loss (ForObjectDetectionLoss): total, components, matching and
autograd gradients, with and without auxiliary outputs, on every backend; the closed-form value_and_grad against
autograd and finite differences; world normalisation; compile around the host-side solver.

Edge rows (padding, bad boxes, NaN, empty images) are in ``test_edge_rules.py``.
"""

from __future__ import annotations

import importlib

import numpy as np
import pytest
from _detr import Scene
from _detr import scene
from _detr import transformers_loss
from _detr import transformers_matching

import polyloss as pl
from polyloss.boxes import hungarian

pytest.importorskip("scipy")

COUNTS = {"no-boxes": (0, 0), "one-box": (1, 0), "0-1-many": (0, 1, 9), "many": (7, 12, 3)}


def _call(xp, recipe, s: Scene, method: str = "__call__", lists: bool = False):
    if lists:
        boxes, labels = s.per_image()
        gt_boxes, gt_labels = [xp.asarray(b) for b in boxes], [xp.asarray(lab) for lab in labels]
    else:
        gt_boxes, gt_labels = xp.asarray(s.gt_boxes), xp.asarray(s.gt_labels)
    aux = [(xp.asarray(a), xp.asarray(b)) for a, b in s.aux]
    return getattr(recipe, method)(xp.asarray(s.logits[-1]), xp.asarray(s.boxes[-1]), gt_boxes, gt_labels, aux=aux)


def _tolerances(xp) -> dict[str, float]:
    return {"rtol": max(xp.rtol, 1e-11), "atol": max(xp.atol, 1e-13)}


@pytest.mark.parametrize("layers", [1, 3], ids=["final-only", "aux"])
@pytest.mark.parametrize("counts", list(COUNTS.values()), ids=list(COUNTS))
def test_equals_transformers_on_every_backend(xp, counts, layers):
    s = scene(counts, queries=12, classes=6, layers=layers, seed=len(counts) + layers, interleave=True)
    ref = transformers_loss(s)
    recipe = pl.get_recipe("detr")
    result = _call(xp, recipe, s)
    tol = _tolerances(xp)
    assert set(result.components) == set(ref.components)
    for name, value in ref.components.items():
        np.testing.assert_allclose(float(xp.to_numpy(result.components[name])), value, **tol, err_msg=name)
    np.testing.assert_allclose(float(xp.to_numpy(result.total)), ref.total, **tol)
    # the closed form: every layer's gradient equals transformers' autograd
    result, grads = _call(xp, recipe, s, "value_and_grad")
    np.testing.assert_allclose(float(xp.to_numpy(result.total)), ref.total, **tol)
    expected = {"class_logits": ref.grad_logits[-1], "pred_boxes": ref.grad_boxes[-1]}
    for i in range(layers - 1):
        expected |= {f"aux_class_logits_{i}": ref.grad_logits[i], f"aux_pred_boxes_{i}": ref.grad_boxes[i]}
    assert set(grads) == set(expected)
    for name, g in expected.items():
        np.testing.assert_allclose(xp.to_numpy(grads[name]), g, **tol, err_msg=name)


@pytest.mark.parametrize("counts", [(0, 1, 9), (7, 12, 3)], ids=["0-1-many", "many"])
def test_autograd_equals_transformers(counts):
    torch = pytest.importorskip("torch")
    s = scene(counts, queries=10, classes=5, layers=2, seed=7)
    ref = transformers_loss(s)
    logits = torch.tensor(s.logits, requires_grad=True)
    boxes = torch.tensor(s.boxes, requires_grad=True)
    result = pl.get_recipe("detr")(logits[-1], boxes[-1], torch.tensor(s.gt_boxes), torch.tensor(s.gt_labels),
                                   aux=[(logits[0], boxes[0])])
    result.total.backward()
    assert float(result.total) == pytest.approx(ref.total, rel=1e-12)
    np.testing.assert_allclose(logits.grad.numpy(), ref.grad_logits, rtol=1e-10, atol=1e-14)
    np.testing.assert_allclose(boxes.grad.numpy(), ref.grad_boxes, rtol=1e-10, atol=1e-14)


def test_float32_equals_transformers_in_float32():
    torch = pytest.importorskip("torch")
    s = scene((5, 2, 8), queries=20, classes=9, layers=2, seed=3)
    ref = transformers_loss(s, dtype_name="float32")
    t = {k: torch.tensor(getattr(s, k), dtype=torch.float32) for k in ("logits", "boxes", "gt_boxes")}
    result = pl.get_recipe("detr")(t["logits"][-1], t["boxes"][-1], t["gt_boxes"], torch.tensor(s.gt_labels),
                                   aux=[(t["logits"][0], t["boxes"][0])])
    assert result.total.dtype == torch.float32
    for name, value in ref.components.items():
        assert float(result.components[name]) == pytest.approx(value, rel=2e-6), name


@pytest.mark.parametrize("counts", [(0, 1, 9), (12, 3)], ids=["0-1-many", "many"])
def test_match_equals_transformers_matcher(xp, counts):
    s = scene(counts, queries=12, classes=6, layers=2, seed=11, interleave=True)
    recipe = pl.get_recipe("detr")
    for layer in range(2):
        targets = recipe.match(xp.asarray(s.logits[layer]), xp.asarray(s.boxes[layer]), xp.asarray(s.gt_boxes),
                               xp.asarray(s.gt_labels))
        matches = xp.to_numpy(targets.matches)
        np.testing.assert_array_equal(matches, transformers_matching(s, layer))
        # the static-shape targets: matched label, or "no object" (the last logit)
        labels = np.where(matches >= 0, np.take_along_axis(s.gt_labels, np.maximum(matches, 0), axis=1), 6)
        np.testing.assert_array_equal(xp.to_numpy(targets.labels), labels)
        boxes = xp.to_numpy(targets.boxes)
        matched = matches >= 0
        np.testing.assert_allclose(boxes[matched], s.gt_boxes[np.nonzero(matched)[0], matches[matched]])


def test_per_image_lists_equal_padded(xp):
    s = scene((3, 0, 5), queries=8, classes=4, layers=2, seed=2, interleave=True)
    recipe = pl.get_recipe("detr")
    padded, lists = _call(xp, recipe, s), _call(xp, recipe, s, lists=True)
    for name, value in padded.components.items():
        np.testing.assert_allclose(xp.to_numpy(lists.components[name]), xp.to_numpy(value), rtol=xp.rtol)


def _fd_total(s: Scene, which: str, layer: int, recipe) -> np.ndarray:
    """Central differences of the total w.r.t. ``which`` of ``layer`` (float64 NumPy)."""
    base = getattr(s, which)
    grad = np.zeros(base[layer].shape)
    h = 1e-6
    for index in np.ndindex(*grad.shape):
        values = []
        for step in (h, -h):
            changed = base.copy()
            changed[(layer, *index)] += step
            t = Scene(**{**s.__dict__, which: changed})
            values.append(float(recipe(t.logits[-1], t.boxes[-1], t.gt_boxes, t.gt_labels, aux=t.aux).total))
        grad[index] = (values[0] - values[1]) / (2 * h)
    return grad


def test_value_and_grad_equals_finite_differences():
    s = scene((2, 0, 3), queries=4, classes=3, layers=2, seed=9)
    recipe = pl.get_recipe("detr", eos_coef=0.3)
    _, grads = recipe.value_and_grad(s.logits[-1], s.boxes[-1], s.gt_boxes, s.gt_labels, aux=s.aux)
    for name, which, layer in (("class_logits", "logits", 1), ("pred_boxes", "boxes", 1),
                               ("aux_class_logits_0", "logits", 0), ("aux_pred_boxes_0", "boxes", 0)):
        np.testing.assert_allclose(grads[name], _fd_total(s, which, layer, recipe), rtol=1e-6, atol=1e-8,
                                   err_msg=name)
    assert np.abs(grads["pred_boxes"][1]).sum() == 0  # no ground truth in image 1: no box gradient


def test_weights_and_costs_are_the_config():
    s = scene((3, 4), queries=8, classes=4, layers=2, seed=1)
    base = pl.get_recipe("detr")(s.logits[-1], s.boxes[-1], s.gt_boxes, s.gt_labels, aux=s.aux)
    scaled = pl.get_recipe("detr", loss_ce=2.0, loss_bbox=1.0, loss_giou=3.0)(
        s.logits[-1], s.boxes[-1], s.gt_boxes, s.gt_labels, aux=s.aux)
    for suffix in ("", "_0"):
        assert scaled.components["loss_ce" + suffix] == pytest.approx(2.0 * base.components["loss_ce" + suffix])
        assert scaled.components["loss_bbox" + suffix] == pytest.approx(base.components["loss_bbox" + suffix] / 5)
        assert scaled.components["loss_giou" + suffix] == pytest.approx(1.5 * base.components["loss_giou" + suffix])
    costly = pl.get_recipe("detr", cost_class=0.0, cost_bbox=1.0, cost_giou=0.0)
    matches = costly.match(s.logits[-1], s.boxes[-1], s.gt_boxes, s.gt_labels).matches
    np.testing.assert_array_equal(matches, transformers_matching(s, -1, costs=(0.0, 1.0, 0.0)))
    with pytest.raises(ValueError, match="eos_coef"):
        pl.get_recipe("detr", eos_coef=-0.1)
    with pytest.raises(ValueError, match="unknown weight"):
        pl.get_recipe("detr", weights={"loss_mask": 1.0})


def test_world_normalisation_counts_every_process(monkeypatch):
    """Two processes that see the same batch: B doubles, each process's box terms are 2 * local_sum / (2 B)."""
    torch = pytest.importorskip("torch")
    from polyloss.backend.torch import TorchBackend

    s = scene((0, 1, 2), queries=6, classes=3, layers=2, seed=4)
    args = (torch.tensor(s.logits[-1]), torch.tensor(s.boxes[-1]), torch.tensor(s.gt_boxes),
            torch.tensor(s.gt_labels))
    aux = [(torch.tensor(a), torch.tensor(b)) for a, b in s.aux]
    local = pl.get_recipe("detr")(*args, aux=aux)
    monkeypatch.setattr(TorchBackend, "world_size", lambda self: 2)
    monkeypatch.setattr(TorchBackend, "all_reduce_sum", lambda self, x: 2 * x)
    world = pl.get_recipe("detr", normalize_over="world")(*args, aux=aux)
    for name, value in local.components.items():
        assert float(world.components[name]) == pytest.approx(float(value), rel=1e-12), name
    # one box in the world of 2 processes: transformers divides by max(1, 1 / 2) = 1, polyloss by 1 / 2 (W / 1)
    one = scene((1, 0), queries=6, classes=3, seed=4)
    monkeypatch.setattr(TorchBackend, "all_reduce_sum", lambda self, x: x)
    r = pl.get_recipe("detr", normalize_over="world")(*(torch.tensor(a) for a in (
        one.logits[-1], one.boxes[-1], one.gt_boxes, one.gt_labels)))
    monkeypatch.setattr(TorchBackend, "world_size", lambda self: 1)
    r1 = pl.get_recipe("detr")(*(torch.tensor(a) for a in (one.logits[-1], one.boxes[-1], one.gt_boxes,
                                                           one.gt_labels)))
    assert float(r.components["loss_bbox"]) == pytest.approx(2 * float(r1.components["loss_bbox"]))


def test_without_scipy_the_recipe_says_how_to_install_it(monkeypatch):
    real = importlib.import_module
    monkeypatch.setattr(hungarian.importlib, "import_module",
                        lambda name, *a, **k: (_ for _ in ()).throw(ImportError(name)) if name.startswith("scipy")
                        else real(name, *a, **k))
    s = scene((1,), queries=3, classes=2)
    recipe = pl.get_recipe("detr")  # building the recipe needs no SciPy
    with pytest.raises(ImportError, match="pip install scipy"):
        recipe(s.logits[-1], s.boxes[-1], s.gt_boxes, s.gt_labels)


def test_compile_around_the_host_solver():
    torch = pytest.importorskip("torch")
    s = scene((2, 5), queries=8, classes=4, layers=2, seed=6)
    recipe = pl.get_recipe("detr", validate=False)
    gt = (torch.tensor(s.gt_boxes), torch.tensor(s.gt_labels))

    def run(logits, boxes, aux_logits, aux_boxes):
        return recipe(logits, boxes, *gt, aux=[(aux_logits, aux_boxes)])

    leaves = [torch.tensor(a, requires_grad=True) for a in (s.logits[1], s.boxes[1], s.logits[0], s.boxes[0])]
    eager = run(*leaves)
    expected = torch.autograd.grad(eager.total, leaves)
    torch._dynamo.reset()
    out = torch.compile(run, backend="eager")(*leaves)  # graph breaks at the solver, the rest compiled
    torch.testing.assert_close(out.total, eager.total, rtol=1e-12, atol=0)
    for g, e in zip(torch.autograd.grad(out.total, leaves), expected, strict=True):
        torch.testing.assert_close(g, e, rtol=1e-12, atol=1e-15)
    # one full graph: match eagerly, compile the loss on the matching
    targets = recipe.match(leaves[0], leaves[1], *gt)
    torch._dynamo.reset()
    loss = torch.compile(recipe.loss, fullgraph=True, backend="eager")(leaves[0], leaves[1], targets)
    final = recipe.loss(leaves[0], leaves[1], targets)
    torch.testing.assert_close(loss.total, final.total, rtol=1e-12, atol=0)
    assert float(final.total) == pytest.approx(sum(float(eager.components[k]) for k in final.components))


def test_sample_data_runs_and_has_aux_components():
    config, run = pl.get_recipe("detr").sample_data(0)
    result = run(pl.get_recipe("detr", **config), np.asarray)
    assert set(result.components) == {"loss_ce", "loss_bbox", "loss_giou", "loss_ce_0", "loss_bbox_0", "loss_giou_0"}
    assert np.isfinite(float(result.total))


def test_bad_calls():
    s = scene((2,), queries=5, classes=3, layers=2)
    recipe = pl.get_recipe("detr")
    with pytest.raises(ValueError, match="pred_boxes"):
        recipe(s.logits[-1], s.boxes[-1][:, :4], s.gt_boxes, s.gt_labels)
    with pytest.raises(ValueError, match=r"aux\[0\] class_logits shape"):
        recipe(s.logits[-1], s.boxes[-1], s.gt_boxes, s.gt_labels, aux=[(s.logits[0][:, :3], s.boxes[0][:, :3])])
    with pytest.raises(TypeError, match=r"aux\[0\]"):
        recipe(s.logits[-1], s.boxes[-1], s.gt_boxes, s.gt_labels, aux=[s.logits[0]])
    with pytest.raises(ValueError, match="K >= 2"):
        recipe(s.logits[-1][..., :1], s.boxes[-1], s.gt_boxes, s.gt_labels)
    with pytest.raises(TypeError, match="floating"):
        recipe(s.logits[-1].astype(np.int64), s.boxes[-1], s.gt_boxes, s.gt_labels)


def test_bench_row_runs_both_losses(monkeypatch):
    pytest.importorskip("torch")
    from _detr import transformers_module

    from polyloss._tools import bench

    transformers_module()
    calls = []

    def once(fn, repeat, min_time=0.05):
        fn()
        calls.append(fn)
        return 1.0

    def once_with_spread(fn, repeat, min_time=0.05):
        return once(fn, repeat, min_time), 0.0

    monkeypatch.setattr(bench, "_median_time", once)
    monkeypatch.setattr(bench, "_median_and_spread", once_with_spread)
    monkeypatch.setattr(bench, "_interleaved", lambda fns, repeat, min_time=0.05: [once_with_spread(f, repeat)
                                                                                   for f in fns])
    monkeypatch.setattr(bench, "DETR_SHAPE", {"batch": 2, "queries": 10, "classes": 5, "boxes": 6})
    rows = bench.bench_detr(repeat=1, threads=[1], progress=lambda m: None)
    assert [(r.recipe, r.mode, r.reference) for r in rows] == [("detr", "forward", "transformers"),
                                                               ("detr", "forward+backward", "transformers")]
    assert len(calls) == 6 and all(r.vs_torchvision == 1.0 for r in rows)
    assert "against transformers" in bench.format_recipe_table(rows)
