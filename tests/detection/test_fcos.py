"""The "fcos" recipe against torchvision's real FCOS loss, on every backend, in closed form and compiled.

torchvision (through :func:`polyloss._torchvision.import_torchvision`) is
called, never transcribed: ``FCOS.compute_loss`` (center sampling, its
matching) with a namespace as ``self`` whose head is ``FCOSHead.compute_loss``
on a real ``BoxLinearCoder``. Five levels (strides 8 to 128), images with 0, 1
and many boxes; components and autograd gradients in float64 (rtol 1e-10) and
float32 (rtol 1e-5); the closed-form ``value_and_grad`` against torchvision's
autograd and finite differences; the same numbers on every backend case;
``torch.compile(fullgraph=True)``; "world" normalisation; the edge rows.
"""

from __future__ import annotations

import math
import types

import numpy as np
import pytest
from _detection import finite_differences
from _detection import pad

import polyloss as pl
from polyloss._namespace import resolve
from polyloss._torchvision import import_torchvision
from polyloss.detection.fcos import fcos_anchors
from polyloss.detection.fcos import indexed_sigmoid_focal_loss
from polyloss.detection.fcos import indexed_sigmoid_focal_loss_grad
from polyloss.functional.focal import sigmoid_focal_loss_grad

IMAGE = 256
ANCHORS, COUNTS = fcos_anchors(IMAGE)  # 32^2 + 16^2 + 8^2 + 4^2 + 2^2 = 1364 anchors
C = 5
PREDICTIONS = ("class_logits", "box_regression", "centerness")
TOL = {"float64": (1e-10, 1e-12), "float32": (1e-5, 1e-6)}


# -- data ---------------------------------------------------------------------------------------
def scene(counts: tuple[int, ...], seed: int = 0, anchors: np.ndarray = ANCHORS) -> dict[str, object]:
    """Per-image boxes (sides 6 to 240 pixels, every level gets some) with labels in [0, C), and predictions."""
    rng = np.random.default_rng(seed)
    gt, labels = [], []
    for k in counts:
        size = np.exp(rng.uniform(math.log(6.0), math.log(240.0), size=(k, 2)))
        corner = rng.uniform(0, IMAGE - size)
        gt.append(np.concatenate([corner, corner + size], axis=1))
        labels.append(rng.integers(0, C, size=k))
    n, a = len(counts), len(anchors)
    return {"class_logits": 2 * rng.normal(size=(n, a, C)), "box_regression": rng.uniform(0.1, 3.0, size=(n, a, 4)),
            "centerness": rng.normal(size=(n, a)), "gt": gt, "labels": labels}


def torchvision_fcos(data: dict[str, object], dtype: str = "float64", anchors: np.ndarray = ANCHORS,
                     counts: list[int] = COUNTS) -> tuple[dict[str, object], list[object]]:
    """torchvision's three losses on ``data`` and the prediction leaves (``requires_grad``)."""
    if import_torchvision() is None:
        pytest.skip("torchvision is not installed (or cannot be imported)")
    import torch
    from torchvision.models.detection import _utils as det_utils
    from torchvision.models.detection.fcos import FCOS
    from torchvision.models.detection.fcos import FCOSHead

    t = getattr(torch, dtype)
    head = types.SimpleNamespace(box_coder=det_utils.BoxLinearCoder(normalize_by_size=True))
    model = types.SimpleNamespace(center_sampling_radius=1.5, head=types.SimpleNamespace(
        compute_loss=lambda *args: FCOSHead.compute_loss(head, *args)))
    leaves = [torch.tensor(data[k], dtype=t, requires_grad=True) for k in PREDICTIONS]
    targets = [{"boxes": torch.tensor(b.reshape(-1, 4), dtype=t), "labels": torch.tensor(lab, dtype=torch.int64)}
               for b, lab in zip(data["gt"], data["labels"], strict=True)]
    outputs = {"cls_logits": leaves[0], "bbox_regression": leaves[1], "bbox_ctrness": leaves[2][..., None]}
    a = torch.tensor(anchors, dtype=t)
    return FCOS.compute_loss(model, targets, outputs, [a] * len(targets), counts), leaves


def call(recipe, a, data, method="__call__", anchors=ANCHORS, counts=COUNTS, lists=True):
    """The recipe (or one of its methods) on ``data`` converted by ``a``; ground truth per image or padded."""
    if lists:
        gt = [a(b.reshape(-1, 4)) for b in data["gt"]]
        labels = [a(np.asarray(lab, dtype=np.int64)) for lab in data["labels"]]
    else:
        boxes, labs = pad(data["gt"], data["labels"])
        gt, labels = a(boxes), a(labs)
    return getattr(recipe, method)(*(a(data[k]) for k in PREDICTIONS), a(anchors), counts, gt, labels)


def close(actual, expected, rtol, atol, what):
    np.testing.assert_allclose(np.asarray(actual, dtype=float), np.asarray(expected, dtype=float), rtol=rtol,
                               atol=atol, err_msg=what)


# -- against torchvision -------------------------------------------------------------------------
COUNT_CASES = [(0,), (1,), (12,), (0, 1, 12, 4)]


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("counts", COUNT_CASES)
def test_components_and_gradients_match_torchvision(counts, dtype):
    import torch

    data = scene(counts, seed=sum(counts))
    expected, tv_leaves = torchvision_fcos(data, dtype)
    sum(expected.values()).backward()
    rtol, atol = TOL[dtype]
    t = getattr(torch, dtype)
    leaves = {}

    def leaf(a):
        if isinstance(a, np.ndarray) and a.dtype.kind == "f":
            out = torch.tensor(a, dtype=t, requires_grad=a.ndim >= 2 and a.shape[0] == len(counts))
            leaves[id(a)] = out
            return out
        return torch.tensor(np.asarray(a))

    recipe = pl.get_recipe("fcos", num_classes=C)
    result = call(recipe, leaf, data)
    assert set(result.components) == {"classification", "bbox_regression", "bbox_ctrness"}
    for name, value in expected.items():
        close(result.components[name].detach(), value.detach(), rtol, atol, name)
    result.total.backward()
    closed, grads = call(recipe, lambda a: a.astype(dtype) if a.dtype.kind == "f" else a, data, "value_and_grad")
    close(closed.total, sum(expected.values()).detach(), rtol, atol, "closed-form total")
    for name, theirs in zip(PREDICTIONS, tv_leaves, strict=True):
        ours = leaves[id(data[name])]
        close(ours.grad, theirs.grad, rtol, atol, f"d/d {name}")
        close(grads[name], theirs.grad, rtol, atol, f"closed-form d/d {name}")
        assert grads[name].shape == data[name].shape and grads[name].dtype == getattr(np, dtype)
    foreground = sum(counts) > 0
    assert (float(expected["bbox_regression"].detach()) > 0) == foreground
    if not foreground:  # no ground truth: zero box terms, the focal term over max(1, 0) = 1
        boxes = [float(result.components[k].detach()) for k in ("bbox_regression", "bbox_ctrness")]
        assert boxes == [0.0, 0.0]


def test_same_numbers_on_every_backend(xp):
    data = scene((0, 1, 12), seed=4)
    expected, leaves = torchvision_fcos(data)
    sum(expected.values()).backward()
    recipe = pl.get_recipe("fcos", num_classes=C)
    result = call(recipe, xp.asarray, data, lists=False)
    closed, grads = call(recipe, xp.asarray, data, "value_and_grad")
    for name, value in expected.items():
        close(xp.to_numpy(result.components[name]), value.detach(), 10 * xp.rtol, xp.atol, name)
        close(xp.to_numpy(closed.components[name]), value.detach(), 10 * xp.rtol, xp.atol, name)
    for name, theirs in zip(PREDICTIONS, leaves, strict=True):
        close(xp.to_numpy(grads[name]), theirs.grad, 10 * xp.rtol, 10 * xp.atol, f"d/d {name}")


def test_value_and_grad_matches_finite_differences():
    anchors, counts = fcos_anchors(64, (8, 16, 32))
    data = scene((2, 0, 3), seed=6, anchors=anchors)
    data["gt"] = [b * 0.25 for b in data["gt"]]  # boxes of a 64 x 64 image
    recipe = pl.get_recipe("fcos", num_classes=C, alpha=0.4, gamma=1.5)
    _, grads = call(recipe, np.asarray, data, "value_and_grad", anchors=anchors, counts=counts)
    assert all(float(np.abs(grads[k]).max()) > 0 for k in PREDICTIONS)

    def total(**arrays):
        return float(call(recipe, np.asarray, {**data, **arrays}, anchors=anchors, counts=counts).total)

    finite_differences(total, {k: data[k] for k in PREDICTIONS}, grads, np.random.default_rng(0), per_array=20)


# -- the classification part ---------------------------------------------------------------------
@pytest.mark.parametrize(("alpha", "gamma"), [(0.25, 2.0), (-1.0, 2.0), (0.6, 0.0), (0.25, 0.5), (0.25, 3.0)])
def test_indexed_focal_equals_the_dense_focal_loss(xp, alpha, gamma):
    rng = np.random.default_rng(1)
    x = 3 * rng.normal(size=(4, 7, 6))
    labels = rng.integers(-1, 6, size=(4, 7))
    one_hot = (labels[..., None] == np.arange(6)).astype(float)
    expected = pl.sigmoid_focal_loss(x, one_hot, alpha=alpha, gamma=gamma, reduction="none").sum(-1)
    cot = rng.uniform(0.5, 2.0, size=(4, 7))
    dense_grad = sigmoid_focal_loss_grad(x, one_hot, alpha=alpha, gamma=gamma, reduction="none",
                                         cotangent=np.broadcast_to(cot[..., None], x.shape))
    got = indexed_sigmoid_focal_loss(xp.asarray(x), xp.asarray(labels), alpha=alpha, gamma=gamma)
    close(xp.to_numpy(got), expected, 10 * xp.rtol, xp.atol, "value")
    grad = indexed_sigmoid_focal_loss_grad(xp.asarray(x), xp.asarray(labels), alpha=alpha, gamma=gamma,
                                           cotangent=xp.asarray(cot))
    close(xp.to_numpy(grad), dense_grad, 10 * xp.rtol, 10 * xp.atol, "closed-form gradient")
    if xp.is_torch:
        import torch

        leaf = xp.asarray(x, requires_grad=True)
        (auto,) = torch.autograd.grad((indexed_sigmoid_focal_loss(leaf, xp.asarray(labels), alpha=alpha,
                                                                  gamma=gamma) * xp.asarray(cot)).sum(), [leaf])
        close(xp.to_numpy(auto), dense_grad, 10 * xp.rtol, 10 * xp.atol, "autograd gradient")


def test_indexed_focal_rejects_bad_labels():
    x = np.zeros((3, 4))
    with pytest.raises(TypeError, match="labels"):
        indexed_sigmoid_focal_loss(x, np.zeros(3))
    with pytest.raises(ValueError, match="labels shape"):
        indexed_sigmoid_focal_loss(x, np.zeros(4, dtype=np.int64))


# -- compiled, world normalisation ---------------------------------------------------------------
@pytest.mark.filterwarnings("ignore:Dynamo detected a call to a `functools.lru_cache`:UserWarning")
def test_compiles_fullgraph_and_matches_eager():
    torch = pytest.importorskip("torch")
    data = scene((0, 3, 9), seed=8)
    recipe = pl.get_recipe("fcos", num_classes=C, validate=False)
    boxes, labels = pad(data["gt"], data["labels"])
    fixed = (torch.tensor(ANCHORS), torch.tensor(boxes), torch.tensor(labels))
    leaves = [torch.tensor(data[k], requires_grad=True) for k in PREDICTIONS]

    def full(*preds):
        return recipe(*preds, fixed[0], COUNTS, fixed[1], fixed[2])

    torch._dynamo.reset()
    out = torch.compile(full, fullgraph=True, backend="eager")(*leaves)
    eager = full(*leaves)
    for name in eager.components:
        torch.testing.assert_close(out.components[name], eager.components[name], rtol=1e-12, atol=0)
    assert float(eager.components["bbox_regression"].detach()) > 0
    for g, e in zip(torch.autograd.grad(out.total, leaves), torch.autograd.grad(eager.total, leaves), strict=True):
        torch.testing.assert_close(g, e, rtol=1e-12, atol=1e-15)


def test_world_normalisation_reproduces_one_process_on_the_whole_batch(monkeypatch):
    """Two simulated workers (3 and 2 images): the all-reduced foreground count, each worker's loss times
    ``W / global count``; their mean loss and gradient equal one process on the five images."""
    data = scene((2, 0, 5, 1, 3), seed=9)
    single, single_grads = call(pl.get_recipe("fcos", num_classes=C), np.asarray, data, "value_and_grad")
    recipe = pl.get_recipe("fcos", num_classes=C, normalize_over="world")
    parts = [{k: (data[k][rows] if isinstance(data[k], np.ndarray) else data[k][rows.start:rows.stop])
              for k in data} for rows in (slice(0, 3), slice(3, 5))]
    counts = [float(np.sum(recipe.assign(ANCHORS, COUNTS, p["gt"], p["labels"]).foreground)) for p in parts]
    assert all(counts) and counts[0] != counts[1]
    numpy_backend = type(resolve(np.zeros(1)))
    monkeypatch.setattr(numpy_backend, "all_reduce_sum", lambda self, x: x * 0 + sum(counts))
    monkeypatch.setattr(numpy_backend, "world_size", lambda self: 2)
    results = [call(recipe, np.asarray, p, "value_and_grad") for p in parts]
    for name in single.components:
        mean = sum(float(r.components[name]) for r, _ in results) / 2
        close(mean, single.components[name], 1e-12, 1e-14, name)
    for name in PREDICTIONS:
        joined = np.concatenate([g[name] for _, g in results]) / 2
        close(joined, single_grads[name], 1e-12, 1e-14, f"d/d {name}")


# -- edge rows -----------------------------------------------------------------------------------
def test_padding_is_ignored_whatever_it_holds(xp):
    data = scene((2, 3), seed=10)
    boxes, labels = pad(data["gt"], data["labels"], g=5)
    recipe = pl.get_recipe("fcos", num_classes=C)
    a = xp.asarray
    preds = [a(data[k]) for k in PREDICTIONS]
    clean = recipe(*preds, a(ANCHORS), COUNTS, a(boxes), a(labels))
    boxes[0, 2:] = [[np.nan, 0, 1, 1], [np.inf, -np.inf, 0, 0], [5.0, 5.0, 200.0, 200.0]]
    boxes[1, 3:] = [[30.0, 30.0, 10.0, 10.0], [1.0, 1.0, 250.0, 250.0]]
    dirty = recipe(*preds, a(ANCHORS), COUNTS, a(boxes), a(labels))
    for name in clean.components:
        assert xp.to_numpy(dirty.components[name]) == xp.to_numpy(clean.components[name])


@pytest.mark.parametrize("name", PREDICTIONS)
def test_nan_in_a_prediction_is_never_hidden(xp, name):
    data = scene((1, 0), seed=11)
    data[name] = data[name].copy()
    data[name][1, 3] = np.nan  # an image without ground truth: a background anchor
    recipe = pl.get_recipe("fcos", num_classes=C)
    component = {"class_logits": "classification", "box_regression": "bbox_regression",
                 "centerness": "bbox_ctrness"}[name]
    for result in (call(recipe, xp.asarray, data), call(recipe, xp.asarray, data, "value_and_grad")[0]):
        values = {k: float(xp.to_numpy(v)) for k, v in result.components.items()}
        assert math.isnan(values[component])
        assert all(math.isfinite(v) for k, v in values.items() if k != component)


def test_images_without_ground_truth_and_empty_batches_give_zero_box_terms(xp):
    recipe = pl.get_recipe("fcos", num_classes=C)
    data = scene((0, 0), seed=12)
    for result in (call(recipe, xp.asarray, data), call(recipe, xp.asarray, data, lists=False),
                   call(recipe, xp.asarray, data, "value_and_grad")[0]):
        values = {k: float(xp.to_numpy(v)) for k, v in result.components.items()}
        assert values["bbox_regression"] == 0.0 == values["bbox_ctrness"] and values["classification"] > 0
    empty = {"class_logits": np.zeros((0, len(ANCHORS), C)), "box_regression": np.zeros((0, len(ANCHORS), 4)),
             "centerness": np.zeros((0, len(ANCHORS))), "gt": [], "labels": []}
    result, grads = call(recipe, xp.asarray, empty, "value_and_grad")
    assert all(float(xp.to_numpy(v)) == 0.0 for v in result.components.values())
    assert tuple(grads["class_logits"].shape) == (0, len(ANCHORS), C)


def test_label_zero_is_a_real_class_and_bad_ground_truth_raises_naming_it():
    data = scene((2, 1), seed=13)
    data["labels"] = [np.array([0, 0]), np.array([0])]
    recipe = pl.get_recipe("fcos", num_classes=C)
    assert float(call(recipe, np.asarray, data).components["bbox_regression"]) > 0
    bad = {**data, "labels": [np.array([0, C]), np.array([0])]}
    with pytest.raises(ValueError, match=r"gt_labels\[0\]\[1\] = 5 is outside \[0, num_classes=5\)"):
        call(recipe, np.asarray, bad)
    flat = {**data, "gt": [data["gt"][0], np.array([[10.0, 10.0, 10.0, 40.0]])]}
    with pytest.raises(ValueError, match="degenerate ground-truth box 0 of image 1"):
        call(recipe, np.asarray, flat)
    with pytest.raises(ValueError, match="degenerate ground-truth box 0 of image 1"):
        call(recipe, np.asarray, flat, "value_and_grad")


def test_unvalidated_non_finite_real_box_makes_every_component_nan():
    data = scene((2, 1), seed=14)
    data["gt"] = [data["gt"][0], np.array([[np.nan, 1.0, 30.0, 30.0]])]
    recipe = pl.get_recipe("fcos", num_classes=C, validate=False)
    for result in (call(recipe, np.asarray, data), call(recipe, np.asarray, data, "value_and_grad")[0]):
        assert all(math.isnan(float(v)) for v in result.components.values())


def test_centerness_with_a_trailing_axis_and_shape_errors():
    data = scene((3,), seed=15)
    recipe = pl.get_recipe("fcos", num_classes=C)
    flat, flat_grads = call(recipe, np.asarray, data, "value_and_grad")
    trailing = {**data, "centerness": data["centerness"][..., None]}
    result, grads = call(recipe, np.asarray, trailing, "value_and_grad")
    assert float(result.total) == float(flat.total)
    assert grads["centerness"].shape == trailing["centerness"].shape
    np.testing.assert_array_equal(grads["centerness"][..., 0], flat_grads["centerness"])
    with pytest.raises(ValueError, match="box_regression"):
        call(recipe, np.asarray, {**data, "box_regression": data["box_regression"][..., :3]})
    with pytest.raises(ValueError, match="class_logits"):
        call(recipe, np.asarray, {**data, "class_logits": data["class_logits"][..., :3]})
    with pytest.raises(ValueError, match="num_anchors_per_level"):
        call(recipe, np.asarray, data, counts=[len(ANCHORS) - 1, 2])
    with pytest.raises(ValueError, match="num_classes"):
        pl.get_recipe("fcos", num_classes=0)
