"""Closed-form recipe gradients (``recipe.value_and_grad``) against PyTorch autograd and finite differences.

The reference gradient is torch float64 autograd of the same recipe call on
the same inputs (matching, sampling and mining are constants there too);
finite differences perturb one NumPy float64 entry at a time and rerun the
whole recipe (an int seed gives the same sample on every call). Generated
floats are float32-representable so the torch-f32 case sees the same inputs.
"""

from __future__ import annotations

import functools
from typing import Any

import numpy as np
import pytest
from _detection import ANCHOR_SHAPES
from _detection import anchor_grid
from _detection import finite_differences
from _detection import yolo_pred
from _support import t64

import polyloss as pl
from polyloss.detection._gradients import part_vjp

torch = pytest.importorskip("torch")

C = 4


def f32(a: Any) -> np.ndarray:
    return np.asarray(a, dtype=np.float32).astype(np.float64)


def _tol(xp: Any) -> float:
    return 1e-6 if xp.dtype_name == "float64" else 2e-4


def assert_grads(xp: Any, grads: dict[str, Any], expected: dict[str, np.ndarray], inputs: dict[str, Any]) -> None:
    assert set(grads) == set(expected)
    rtol = _tol(xp)
    for name, want in expected.items():
        got = grads[name]
        like = inputs[name]
        assert type(got) is type(like) and got.dtype == like.dtype and tuple(got.shape) == tuple(like.shape), name
        if xp.library == "array_api_strict":
            assert got.device == like.device, name
        scale = float(np.max(np.abs(want))) if want.size else 0.0
        np.testing.assert_allclose(xp.to_numpy(got), want, rtol=rtol, atol=1e-12 + rtol * 1e-2 * scale, err_msg=name)


def assert_result(xp: Any, result: Any, expected: dict[str, float]) -> None:
    got = {k: float(xp.to_numpy(v)) for k, v in result.components.items()}
    assert list(got) == list(expected)
    for name, value in expected.items():
        np.testing.assert_allclose(got[name], value, rtol=_tol(xp), atol=1e-12, err_msg=name)
    np.testing.assert_allclose(float(xp.to_numpy(result.total)), sum(expected.values()), rtol=_tol(xp), atol=1e-12)


def torch_reference(call: Any, arrays: dict[str, np.ndarray]) -> tuple[dict[str, float], dict[str, np.ndarray]]:
    """Components and autograd gradients of ``call(**tensors).total`` in torch float64."""
    tensors = {k: t64(v, requires_grad=True) for k, v in arrays.items()}
    result = call(**tensors)
    result.total.backward()
    grads = {k: (t.grad if t.grad is not None else torch.zeros_like(t)).numpy() for k, t in tensors.items()}
    return {k: float(v.detach()) for k, v in result.components.items()}, grads


# -- SSD ----------------------------------------------------------------------------------


def ssd_priors(size: int = 4) -> np.ndarray:
    return anchor_grid(size, ANCHOR_SHAPES[:2])


def ground_truth(rng: np.random.Generator, counts: list[int], span: float = 3.0) -> tuple[np.ndarray, np.ndarray]:
    g = max(max(counts, default=0), 1) if any(counts) else 0
    boxes = np.zeros((len(counts), g, 4))
    labels = np.full((len(counts), g), -1, dtype=np.int64)
    for i, c in enumerate(counts):
        corner = rng.uniform(0, span, size=(c, 2))
        boxes[i, :c] = f32(np.concatenate([corner, corner + rng.uniform(1.0, 2.5, size=(c, 2))], axis=1))
        labels[i, :c] = rng.integers(1, C, size=c)
    return boxes, labels


SSD_CONFIGS = {
    "default": {},
    "options": {"neg_pos_ratio": 2, "alpha": 2.0, "beta": 0.5, "weights": {"conf": 0.5}},
    "focal-l1": {"classification_loss": functools.partial(pl.softmax_focal_loss, gamma=2.0, reduction="none"),
                 "regression_loss": functools.partial(pl.huber_loss, delta=0.5, reduction="none")},
}


def ssd_data(counts: list[int], seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    priors = ssd_priors()
    boxes, labels = ground_truth(rng, counts)
    n, p = len(counts), len(priors)
    return {"box_deltas": f32(rng.normal(size=(n, p, 4))), "class_logits": f32(2 * rng.normal(size=(n, p, C))),
            "priors": priors, "gt_boxes": boxes, "gt_labels": labels}


@pytest.mark.parametrize("config", list(SSD_CONFIGS))
@pytest.mark.parametrize("counts", [[2, 0, 3], [0, 0]], ids=["mixed", "empty"])
def test_ssd_matches_torch_autograd(xp, config, counts):
    recipe = pl.get_recipe("ssd", num_classes=C, **SSD_CONFIGS[config])
    data = ssd_data(counts)
    preds = {k: data[k] for k in ("box_deltas", "class_logits")}
    rest = {k: t64(data[k]) for k in ("priors", "gt_boxes", "gt_labels")}
    want_comps, want_grads = torch_reference(lambda **t: recipe(**t, **rest), preds)
    inputs = {k: xp.asarray(v) for k, v in data.items()}
    result, grads = recipe.value_and_grad(**inputs)
    assert_result(xp, result, want_comps)
    assert_grads(xp, grads, want_grads, inputs)
    if not any(counts):
        assert want_comps == {"loc": 0.0, "conf": 0.0}
        assert all(np.all(xp.to_numpy(g) == 0.0) for g in grads.values())
    else:
        assert np.any(want_grads["box_deltas"] != 0) and np.any(want_grads["class_logits"] != 0)


@pytest.mark.parametrize("config", ["default", "options"])
def test_ssd_finite_differences(config):
    recipe = pl.get_recipe("ssd", num_classes=C, **SSD_CONFIGS[config])
    data = ssd_data([2, 0, 3], seed=1)
    preds = {k: data[k] for k in ("box_deltas", "class_logits")}
    rest = {k: data[k] for k in ("priors", "gt_boxes", "gt_labels")}
    _, grads = recipe.value_and_grad(**data)

    def total(**p):
        return float(recipe(**p, **rest).total)

    finite_differences(total, preds, grads, np.random.default_rng(2))


# -- Faster R-CNN -------------------------------------------------------------------------


FRCNN_CONFIGS = {
    # small batches: the sampler really chooses
    "sampled": {"rpn_batch_size": 12, "rpn_positive_fraction": 0.25, "roi_batch_size": 10,
                "roi_positive_fraction": 0.5, "seed": 5},
    "weighted": {"rpn_batch_size": 64, "roi_batch_size": 64, "seed": 1, "beta": 0.5,
                 "weights": {"rpn_box": 2.0, "roi_classifier": 0.5}, "rpn_fg_iou": 0.5, "rpn_bg_iou": 0.2},
}


def frcnn_data(counts: list[int], seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    anchors = anchor_grid(3)
    boxes, labels = ground_truth(rng, counts, span=1.5)
    n, a = len(counts), len(anchors)
    proposals = f32(np.stack([anchors + rng.normal(scale=0.15, size=anchors.shape) for _ in range(n)]))
    return {"anchors": anchors, "objectness": f32(rng.normal(size=(n, a))),
            "rpn_deltas": f32(0.5 * rng.normal(size=(n, a, 4))), "gt_boxes": boxes, "gt_labels": labels,
            "proposals": proposals}


def head_inputs(rng: np.random.Generator, sampled: Any, flat: bool) -> dict[str, np.ndarray]:
    n, r = (int(s) for s in sampled.labels.shape)
    deltas = f32(0.3 * rng.normal(size=(n, r, C, 4)))
    return {"class_logits": f32(rng.normal(size=(n, r, C))),
            "box_deltas": deltas.reshape(n, r, 4 * C) if flat else deltas}


@pytest.mark.parametrize("config", list(FRCNN_CONFIGS))
@pytest.mark.parametrize("counts", [[2, 1], [0, 0]], ids=["gt", "empty"])
def test_faster_rcnn_rpn_matches_torch_autograd(xp, config, counts):
    recipe = pl.get_recipe("faster_rcnn", num_classes=C, **FRCNN_CONFIGS[config])
    data = frcnn_data(counts)
    preds = {k: data[k] for k in ("objectness", "rpn_deltas")}
    rest = {"anchors": t64(data["anchors"]), "gt_boxes": t64(data["gt_boxes"]), "gt_labels": t64(data["gt_labels"])}
    want_comps, want_grads = torch_reference(lambda **t: recipe.rpn_loss(**t, **rest), preds)
    inputs = {k: xp.asarray(data[k]) for k in ("anchors", "objectness", "rpn_deltas", "gt_boxes", "gt_labels")}
    result, grads = recipe.rpn_value_and_grad(**inputs)
    assert_result(xp, result, want_comps)
    assert_grads(xp, grads, want_grads, inputs)
    assert np.any(want_grads["objectness"] != 0)
    if not any(counts):
        assert want_comps["rpn_box"] == 0.0 and np.all(xp.to_numpy(grads["rpn_deltas"]) == 0.0)


@pytest.mark.parametrize("config", list(FRCNN_CONFIGS))
@pytest.mark.parametrize("flat", [False, True], ids=["CxR4", "R4C"])
@pytest.mark.parametrize("counts", [[2, 1], [0, 0]], ids=["gt", "empty"])
def test_faster_rcnn_roi_matches_torch_autograd(xp, config, flat, counts):
    recipe = pl.get_recipe("faster_rcnn", num_classes=C, **FRCNN_CONFIGS[config])
    data = frcnn_data(counts, seed=3)
    sampled_t = recipe.sample_proposals(t64(data["proposals"]), t64(data["gt_boxes"]), t64(data["gt_labels"]))
    head = head_inputs(np.random.default_rng(4), sampled_t, flat)
    want_comps, want_grads = torch_reference(lambda **t: recipe.roi_loss(**t, sampled=sampled_t), head)
    sampled = recipe.sample_proposals(*(xp.asarray(data[k]) for k in ("proposals", "gt_boxes", "gt_labels")))
    np.testing.assert_array_equal(xp.to_numpy(sampled.labels), sampled_t.labels.numpy())
    inputs = {k: xp.asarray(v) for k, v in head.items()}
    result, grads = recipe.roi_value_and_grad(inputs["class_logits"], inputs["box_deltas"], sampled)
    assert_result(xp, result, want_comps)
    assert_grads(xp, grads, want_grads, inputs)
    if any(counts):
        assert np.any(want_grads["box_deltas"] != 0)
        # only the target class of each foreground row gets a box gradient
        nonzero = np.any(want_grads["box_deltas"].reshape(*head["class_logits"].shape, 4) != 0, axis=-1)
        labels = sampled_t.labels.numpy()
        assert np.all(nonzero.sum(axis=-1) <= 1) and not np.any(nonzero[labels <= 0])


def test_faster_rcnn_whole_call_matches_torch_autograd(xp):
    recipe = pl.get_recipe("faster_rcnn", num_classes=C, **FRCNN_CONFIGS["sampled"])
    data = frcnn_data([2, 1], seed=6)
    sampled_t = recipe.sample_proposals(t64(data["proposals"]), t64(data["gt_boxes"]), t64(data["gt_labels"]))
    arrays = {k: data[k] for k in ("objectness", "rpn_deltas")}
    arrays.update(head_inputs(np.random.default_rng(7), sampled_t, flat=False))
    rest = {"anchors": t64(data["anchors"]), "gt_boxes": t64(data["gt_boxes"]), "gt_labels": t64(data["gt_labels"])}
    want_comps, want_grads = torch_reference(lambda **t: recipe(**t, **rest, sampled=sampled_t), arrays)
    sampled = recipe.sample_proposals(*(xp.asarray(data[k]) for k in ("proposals", "gt_boxes", "gt_labels")))
    inputs = {k: xp.asarray(v) for k, v in arrays.items()}
    result, grads = recipe.value_and_grad(xp.asarray(data["anchors"]), inputs["objectness"], inputs["rpn_deltas"],
                                          xp.asarray(data["gt_boxes"]), xp.asarray(data["gt_labels"]),
                                          inputs["class_logits"], inputs["box_deltas"], sampled)
    assert_result(xp, result, want_comps)
    assert list(result.components) == ["rpn_objectness", "rpn_box", "roi_classifier", "roi_box"]
    assert_grads(xp, grads, want_grads, inputs)


@pytest.mark.parametrize("counts", [[2, 1], [0, 0]], ids=["gt", "empty"])
def test_faster_rcnn_finite_differences(counts):
    recipe = pl.get_recipe("faster_rcnn", num_classes=C, **FRCNN_CONFIGS["sampled"])
    data = frcnn_data(counts, seed=8)
    sampled = recipe.sample_proposals(data["proposals"], data["gt_boxes"], data["gt_labels"])
    arrays = {k: data[k] for k in ("objectness", "rpn_deltas")}
    arrays.update(head_inputs(np.random.default_rng(9), sampled, flat=False))
    fixed = {"anchors": data["anchors"], "gt_boxes": data["gt_boxes"], "gt_labels": data["gt_labels"]}
    _, grads = recipe.value_and_grad(**fixed, **arrays, sampled=sampled)

    def total(**p):
        return float(recipe(**fixed, **p, sampled=sampled).total)

    finite_differences(total, arrays, grads, np.random.default_rng(10))


def test_faster_rcnn_fresh_sample_serves_value_and_gradient():
    # seed=None draws a new sample per call: the gradient must belong to the value's own sample
    recipe = pl.get_recipe("faster_rcnn", num_classes=C, rpn_batch_size=6, seed=None)
    data = frcnn_data([2, 1], seed=11)
    args = {k: data[k] for k in ("anchors", "objectness", "rpn_deltas", "gt_boxes", "gt_labels")}
    for _ in range(3):
        result, grads = recipe.rpn_value_and_grad(**args)
        # objectness's gradient is (sigmoid(x) - target) / n on the sampled anchors only
        sampled = grads["objectness"] != 0
        n = sampled.sum()
        assert 0 < n <= 12
        sig = 1 / (1 + np.exp(-args["objectness"]))
        target = np.round(sig - grads["objectness"] * n)  # recovers the 0/1 target where sampled
        expected_obj = np.sum(np.where(sampled, -(target * np.log(sig) + (1 - target) * np.log(1 - sig)), 0)) / n
        np.testing.assert_allclose(float(result.components["rpn_objectness"]), expected_obj, rtol=1e-10)


# -- YOLOv1 -------------------------------------------------------------------------------

S, B, YC = 3, 2, 3


def yolo_data(seed: int = 0, empty: bool = False) -> tuple[np.ndarray, list[np.ndarray], list[np.ndarray]]:
    rng = np.random.default_rng(seed)
    n = 3
    pred = yolo_pred(rng, n, S, B, YC, min_size=0.1)
    pred[0, 0, 0, 2] = -0.3  # a negative width: sqrt(max(w, eps)) has zero gradient there
    pred = f32(pred)
    boxes, labels = [], []
    for count in (0, 0, 0) if empty else (3, 0, 2):
        c = rng.uniform(0.15, 0.85, size=(count, 2))
        wh = rng.uniform(0.1, 0.5, size=(count, 2))
        boxes.append(f32(np.clip(np.concatenate([c - wh / 2, c + wh / 2], axis=1), 0.0, 1.0)))
        labels.append(rng.integers(0, YC, size=count))
    return pred, boxes, labels


YOLO_CONFIGS = {
    "default": {},
    "one-sum": {"conf_target": "one", "normalize": "sum", "lambda_coord": 2.0, "lambda_noobj": 0.25},
}


@pytest.mark.parametrize("config", list(YOLO_CONFIGS))
@pytest.mark.parametrize("empty", [False, True], ids=["gt", "empty"])
def test_yolov1_matches_torch_autograd(xp, config, empty):
    recipe = pl.get_recipe("yolov1", grid=S, boxes_per_cell=B, num_classes=YC, **YOLO_CONFIGS[config])
    pred, boxes, labels = yolo_data(empty=empty)
    gt_t = ([t64(b) for b in boxes], [t64(lab) for lab in labels])
    want_comps, want_grads = torch_reference(lambda pred: recipe(pred, *gt_t), {"pred": pred})
    inputs = {"pred": xp.asarray(pred)}
    result, grads = recipe.value_and_grad(inputs["pred"], [xp.asarray(b) for b in boxes],
                                          [xp.asarray(lab) for lab in labels])
    assert_result(xp, result, want_comps)
    assert_grads(xp, grads, want_grads, inputs)
    assert want_grads["pred"][0, 0, 0, 2] == 0.0  # below sqrt_eps: no gradient (if it is responsible)
    if empty:
        # only the no-object confidence term: 2 lambda_noobj conf / N (or without / N)
        g = want_grads["pred"]
        assert np.all(g[..., [0, 1, 2, 3, 5, 6, 7, 8]] == 0) and np.all(g[..., 5 * B:] == 0)


@pytest.mark.parametrize("config", list(YOLO_CONFIGS))
def test_yolov1_finite_differences(config):
    recipe = pl.get_recipe("yolov1", grid=S, boxes_per_cell=B, num_classes=YC, **YOLO_CONFIGS[config])
    pred, boxes, labels = yolo_data(seed=1)
    _, grads = recipe.value_and_grad(pred, boxes, labels)

    def total(pred):
        return float(recipe(pred, boxes, labels).total)

    finite_differences(total, {"pred": pred}, grads, np.random.default_rng(3), per_array=40)


# -- errors ---------------------------------------------------------------------------------


def test_custom_parts_without_a_gradient_raise():
    def my_error(backend, a, b):
        return backend.xp.sum(backend.xp.abs(a - b), axis=-1)

    pred, boxes, labels = yolo_data()
    recipe = pl.get_recipe("yolov1", grid=S, boxes_per_cell=B, num_classes=YC, class_error=my_error)
    with pytest.raises(TypeError, match="class_error"):
        recipe.value_and_grad(pred, boxes, labels)

    def my_ce(logits, target):
        return pl.cross_entropy(logits, target, reduction="none")

    data = ssd_data([1, 2])
    with pytest.raises(TypeError, match="classification_loss"):
        pl.get_recipe("ssd", num_classes=C, classification_loss=my_ce).value_and_grad(**data)


def test_part_vjp_broadcasts_the_per_prediction_cotangent():
    # a per-coordinate part summed by per_prediction: the cotangent repeats over the coordinates
    from polyloss._namespace import resolve

    x, y = np.linspace(-2, 2, 24).reshape(2, 3, 4), np.zeros((2, 3, 4))
    part = functools.partial(pl.smooth_l1_loss, beta=1.0, reduction="none")
    c = np.arange(6.0).reshape(2, 3)
    g = part_vjp(resolve(x), part, "regression_loss", x, y, part(x, y), c)
    np.testing.assert_allclose(g, c[..., None] * np.clip(x, -1, 1))


def test_third_party_recipe_without_gradient_raises():
    from polyloss.detection._base import DetectionRecipe

    class Mine(DetectionRecipe):
        component_names = ("a",)

    with pytest.raises(TypeError, match="Mine"):
        Mine().value_and_grad(np.zeros(3))


def test_a_third_party_recipe_gets_value_and_grad_by_declaring_its_stages(xp):
    """The sketch of docs/recipes.rst ("Writing your own recipe"): one loss stage, and the base class does the rest."""
    from polyloss.detection import DetectionRecipe
    from polyloss.detection import LossStage

    class MyLoss(DetectionRecipe):
        component_names = ("cls",)
        classification_loss = functools.partial(pl.cross_entropy, reduction="none")

        def loss_stage(self, logits, labels):
            backend = self.backend_of(logits, "logits")
            bxp = backend.xp
            kept = labels >= 0
            term = self.term(backend, "cls", "classification_loss", "logits", logits, bxp.where(kept, labels, 0), kept)
            return LossStage(backend=backend, targets=labels, aux={}, normaliser=self.count(backend, kept, logits),
                             terms=(term,))

        def stages(self, logits, labels):
            return (self.loss_stage(logits, labels),)

        def __call__(self, logits, labels):
            return self.evaluate(*self.stages(logits, labels))

    rng = np.random.default_rng(0)
    logits, labels = f32(rng.normal(size=(2, 5, 3))), np.array([[0, 2, -1, 1, -1], [-1, -1, 2, 2, 0]])
    recipe = MyLoss(weights={"cls": 2.0})
    want_comps, want_grads = torch_reference(lambda logits: recipe(logits, t64(labels)), {"logits": logits})
    inputs = {"logits": xp.asarray(logits)}
    result, grads = recipe.value_and_grad(inputs["logits"], xp.asarray(labels))
    assert_result(xp, result, want_comps)
    assert_grads(xp, grads, want_grads, inputs)
    kept = labels >= 0
    expected = 2.0 * np.mean([-np.log(np.exp(r[c]) / np.exp(r).sum()) for r, c in zip(logits[kept], labels[kept],
                                                                                        strict=True)])
    np.testing.assert_allclose(want_comps["cls"], expected, rtol=1e-12)
