"""The recipes' edge-input table: one rule per edge case, checked on every path of every backend.

A row names a recipe, builds its inputs in NumPy and states the rule:

- ``"same"``: the result (components and gradients) equals that of ``row.like``,
  the clean input (padding that holds garbage changes nothing);
- ``"nan"``: the components ``row.nan`` are NaN (NaN in predictions is never hidden);
- ``"finite"``: every component is finite, and the components ``row.zero`` are exactly 0;
- an exception class: every path raises it, with a message naming each of ``row.names``.

The paths of one backend case (the ``xp`` fixture): the recipe call and
``recipe.value_and_grad`` with the fast paths on and off and, on torch, autograd
through the call (fast paths on and off) and ``torch.func.grad_and_value``, under
which no value can be read (``row.traced`` gives the rule there when it differs:
a non-finite real ground-truth box cannot be reported, so every component is NaN).
Every path must also agree with every other: the same components (NaN where NaN)
and the same gradients.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from dataclasses import field
from typing import Any

import numpy as np
import pytest
from _detection import ANCHOR_SHAPES
from _detection import anchor_grid

import polyloss as pl

C = 4  # classes, background 0 included
NAN, INF = math.nan, math.inf


# -- the recipes' calls -------------------------------------------------------------------------


@dataclass(frozen=True)
class Spec:
    """How to call one recipe: its prediction arguments and the call on converted arrays."""

    predictions: tuple[str, ...]
    call: Callable[[Any, dict[str, Any], str], Any]  # (recipe, arrays, method) -> call's result


def _ssd_call(recipe: Any, a: dict[str, Any], method: str) -> Any:
    return getattr(recipe, method)(a["box_deltas"], a["class_logits"], a["priors"], a["gt_boxes"], a["gt_labels"])


def _frcnn_call(recipe: Any, a: dict[str, Any], method: str) -> Any:
    sampled = recipe.sample_proposals(a["proposals"], a["gt_boxes"], a["gt_labels"])
    return getattr(recipe, method)(a["anchors"], a["objectness"], a["rpn_deltas"], a["gt_boxes"], a["gt_labels"],
                                   a["class_logits"], a["box_deltas"], sampled)


def _yolo_call(recipe: Any, a: dict[str, Any], method: str) -> Any:
    return getattr(recipe, method)(a["pred"], a["gt_boxes"], a["gt_labels"])


def _yolov8_call(recipe: Any, a: dict[str, Any], method: str) -> Any:
    return getattr(recipe, method)(a["pred_distri"], a["pred_scores"], a["anchor_points"], a["strides"],
                                   a["gt_boxes"], a["gt_labels"])


SPECS = {
    "ssd": Spec(("box_deltas", "class_logits"), _ssd_call),
    "faster_rcnn": Spec(("objectness", "rpn_deltas", "class_logits", "box_deltas"), _frcnn_call),
    "yolov1": Spec(("pred",), _yolo_call),
    "yolov8": Spec(("pred_distri", "pred_scores"), _yolov8_call),
}


def _detr_call(recipe: Any, a: dict[str, Any], method: str) -> Any:
    return getattr(recipe, method)(a["class_logits"], a["pred_boxes"], a["gt_boxes"], a["gt_labels"],
                                   aux=[(a["aux_class_logits_0"], a["aux_pred_boxes_0"])])


SPECS["detr"] = Spec(("class_logits", "pred_boxes", "aux_class_logits_0", "aux_pred_boxes_0"), _detr_call)


# -- scenes (NumPy) ----------------------------------------------------------------------------

Inputs = tuple[dict[str, Any], dict[str, Any]]  # (config, arrays)


def _gt(counts: list[int], g: int, span: float, size: tuple[float, float], rng: np.random.Generator,
        first_label: int) -> tuple[np.ndarray, np.ndarray]:
    boxes = np.zeros((len(counts), g, 4))
    labels = np.full((len(counts), g), -1, dtype=np.int64)
    for i, k in enumerate(counts):
        corner = rng.uniform(0, span, size=(k, 2))
        boxes[i, :k] = np.concatenate([corner, corner + rng.uniform(*size, size=(k, 2))], axis=1)
        labels[i, :k] = rng.integers(first_label, C, size=k)
    return boxes, labels


def ssd_scene(counts: tuple[int, ...] = (2, 1, 0), g: int = 3, **config: Any) -> Inputs:
    rng = np.random.default_rng(0)
    priors = anchor_grid(3, ANCHOR_SHAPES[:2])
    boxes, labels = _gt(list(counts), g, 2.0, (1.0, 2.0), rng, 1)
    n, p = len(counts), len(priors)
    return ({"num_classes": C, **config},
            {"box_deltas": rng.normal(size=(n, p, 4)), "class_logits": 2 * rng.normal(size=(n, p, C)),
             "priors": priors, "gt_boxes": boxes, "gt_labels": labels})


FRCNN_CONFIG = {"num_classes": C, "rpn_batch_size": 8, "roi_batch_size": 6, "seed": 3}
R0 = 10


def frcnn_scene(counts: tuple[int, ...] = (2, 1, 0), g: int = 3, **config: Any) -> Inputs:
    rng = np.random.default_rng(1)
    anchors = anchor_grid(3)
    boxes, labels = _gt(list(counts), g, 1.5, (1.0, 2.0), rng, 1)
    n, a = len(counts), len(anchors)
    config = {**FRCNN_CONFIG, **config}
    r = min(config["roi_batch_size"], R0 + g)
    return (config,
            {"anchors": anchors, "objectness": rng.normal(size=(n, a)), "rpn_deltas": 0.5 * rng.normal(size=(n, a, 4)),
             "gt_boxes": boxes, "gt_labels": labels,
             "proposals": anchors[:R0] + rng.normal(scale=0.1, size=(n, R0, 4)),
             "class_logits": rng.normal(size=(n, r, C)), "box_deltas": 0.3 * rng.normal(size=(n, r, C, 4))})


S, B = 3, 2


def yolo_scene(counts: tuple[int, ...] = (2, 1, 0), g: int = 3, **config: Any) -> Inputs:
    rng = np.random.default_rng(2)
    n = len(counts)
    pred = rng.uniform(0.05, 0.8, size=(n, S, S, 5 * B + C))
    boxes, labels = _gt(list(counts), g, 0.5, (0.2, 0.45), rng, 0)
    return {"grid": S, "boxes_per_cell": B, "num_classes": C, **config}, {"pred": pred, "gt_boxes": boxes,
                                                                          "gt_labels": labels}


Q = 5  # DETR's queries


def detr_scene(counts: tuple[int, ...] = (2, 1, 0), g: int = 3, **config: Any) -> Inputs:
    """C classes and "no object" (C + 1 logits), Q queries, one auxiliary layer; boxes normalised cxcywh."""
    rng = np.random.default_rng(3)
    n = len(counts)
    xyxy, labels = _gt(list(counts), g, 0.5, (0.2, 0.45), rng, 0)
    boxes = np.concatenate([(xyxy[..., :2] + xyxy[..., 2:]) / 2, xyxy[..., 2:] - xyxy[..., :2]], axis=-1)
    boxes[labels < 0] = 0.0
    pred = rng.uniform(0.1, 0.6, size=(2, n, Q, 4))
    logits = 2 * rng.normal(size=(2, n, Q, C + 1))
    return config, {"class_logits": logits[1], "pred_boxes": pred[1], "aux_class_logits_0": logits[0],
                    "aux_pred_boxes_0": pred[0], "gt_boxes": boxes, "gt_labels": labels}


def yolov8_scene(counts: tuple[int, ...] = (2, 1, 0), g: int = 3, **config: Any) -> Inputs:
    """32 x 32 pixel images: 21 anchors at strides 8, 16, 32; four bins per side."""
    from polyloss.detection.yolov8 import make_anchor_points

    rng = np.random.default_rng(4)
    points, strides = make_anchor_points(32, 32)
    n, a = len(counts), len(points)
    boxes, labels = _gt(list(counts), g, 16.0, (6.0, 14.0), rng, 0)
    return ({"num_classes": C, "reg_max": 4, **config},
            {"pred_distri": rng.normal(size=(n, a, 16)), "pred_scores": rng.normal(size=(n, a, C)),
             "anchor_points": points, "strides": strides, "gt_boxes": boxes, "gt_labels": labels})


SCENES = {"ssd": ssd_scene, "faster_rcnn": frcnn_scene, "yolov1": yolo_scene, "detr": detr_scene,
          "yolov8": yolov8_scene}


def _changed(scene: Callable[..., Inputs], *, at: dict[str, list[tuple[Any, Any]]] | None = None,
             lists: bool = False, extra_padding: float | None = None, **scene_args: Any) -> Callable[[], Inputs]:
    """A scene with entries set (``at``: name -> [(index, value)]), ground truth as per-image lists, or one
    more padding column in every image holding ``extra_padding``."""

    def make() -> Inputs:
        config, arrays = scene(**scene_args)
        arrays = {k: v.copy() for k, v in arrays.items()}
        for name, changes in (at or {}).items():
            for index, value in changes:
                arrays[name][index] = value
        if extra_padding is not None:
            n = arrays["gt_boxes"].shape[0]
            arrays["gt_boxes"] = np.concatenate([arrays["gt_boxes"], np.full((n, 1, 4), extra_padding)], axis=1)
            arrays["gt_labels"] = np.concatenate([arrays["gt_labels"], np.full((n, 1), -1)], axis=1)
        if lists:
            keep = [arrays["gt_labels"][i] >= 0 for i in range(arrays["gt_labels"].shape[0])]
            arrays["gt_boxes"] = [b[k] for b, k in zip(arrays["gt_boxes"], keep, strict=True)]
            arrays["gt_labels"] = [lab[k] for lab, k in zip(arrays["gt_labels"], keep, strict=True)]
        return config, arrays

    return make


# -- rows ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RecipeEdgeRow:
    """One edge input of one recipe and the rule it obeys (see the module docstring)."""

    recipe: str
    label: str
    make: Callable[[], Inputs]
    expect: Any  # "same" | "nan" | "finite" | an exception class
    names: tuple[str, ...] = ()
    like: Callable[[], Inputs] | None = None  # the clean input of a "same" row
    nan: tuple[str, ...] = ()  # components that must be NaN ("nan" rows; none named: the total)
    zero: tuple[str, ...] = ()  # components that must be exactly 0
    traced: str | None = None  # the rule under torch.func, where it differs
    xfail: str | None = None
    paths: tuple[str, ...] = field(default=())  # only these paths (default: all)

    @property
    def id(self) -> str:
        return f"{self.recipe}-{self.label}"


def _padding_rows(recipe: str, scene: Callable[..., Inputs]) -> list[RecipeEdgeRow]:
    clean = _changed(scene)
    return [
        RecipeEdgeRow(recipe, "nan-padding", _changed(scene, at={"gt_boxes": [((1, 2), NAN)]}), "same", like=clean),
        RecipeEdgeRow(recipe, "inf-padding", _changed(scene, at={"gt_boxes": [((0, 2), [-INF, -INF, INF, INF]),
                                                                              ((1, 1), [INF, NAN, -INF, 0.0])]}),
                      "same", like=clean),
        RecipeEdgeRow(recipe, "nan-padding-trailing", _changed(scene, extra_padding=NAN), "same", like=clean),
        RecipeEdgeRow(recipe, "degenerate-padding", _changed(scene, at={"gt_boxes": [((2, 0), [5.0, 5.0, 1.0, 1.0])]}),
                      "same", like=clean),
        RecipeEdgeRow(recipe, "nan-real-box", _changed(scene, at={"gt_boxes": [((1, 0, 2), NAN)]}), ValueError,
                      ("box 0 of image 1", "not finite"), traced="nan"),
        RecipeEdgeRow(recipe, "inf-real-box", _changed(scene, at={"gt_boxes": [((0, 1, 3), INF)]}), ValueError,
                      ("box 1 of image 0", "not finite"), traced="nan"),
        RecipeEdgeRow(recipe, "nan-real-box-in-lists",
                      _changed(scene, at={"gt_boxes": [((0, 0, 0), NAN)]}, lists=True), ValueError,
                      ("box 0 of image 0", "not finite"), traced="nan"),
        RecipeEdgeRow(recipe, "degenerate-real-box", _changed(scene, at={"gt_boxes": [((0, 1, 2), -1.0)]}),
                      ValueError, ("box 1 of image 0", "degenerate"), paths=("eager",)),
        RecipeEdgeRow(recipe, "lists-equal-padded", _changed(scene, lists=True), "same", like=clean),
        RecipeEdgeRow(recipe, "empty-batch-lists", _changed(scene, counts=(), lists=True), "finite",
                      zero=("*",)),
        RecipeEdgeRow(recipe, "empty-batch-arrays", _changed(scene, counts=(), g=0), "finite", zero=("*",)),
    ]


def _ssd_rows() -> list[RecipeEdgeRow]:
    p = len(anchor_grid(3, ANCHOR_SHAPES[:2]))
    return [
        *_padding_rows("ssd", ssd_scene),
        # a negative prior's logit: mined first (its loss ranks hardest), and NaN in any case
        RecipeEdgeRow("ssd", "nan-logit-negative", _changed(ssd_scene, at={"class_logits": [((0, 17, 2), NAN)]}),
                      "nan", nan=("conf",)),
        # an image without ground truth mines nothing: the NaN must still show
        RecipeEdgeRow("ssd", "nan-logit-unmined", _changed(ssd_scene, at={"class_logits": [((2, 3, 0), NAN)]}),
                      "nan", nan=("conf",)),
        RecipeEdgeRow("ssd", "nan-delta-negative", _changed(ssd_scene, at={"box_deltas": [((1, 16, 1), NAN)]}),
                      "nan", nan=("loc",)),
        RecipeEdgeRow("ssd", "images-without-gt", _changed(ssd_scene, counts=(0, 0)), "finite", zero=("loc", "conf")),
        RecipeEdgeRow("ssd", "neg-pos-ratio-inf", _changed(ssd_scene, neg_pos_ratio=INF), "same",
                      like=_changed(ssd_scene, neg_pos_ratio=p)),
        RecipeEdgeRow("ssd", "neg-pos-ratio-1e18", _changed(ssd_scene, neg_pos_ratio=1e18), "same",
                      like=_changed(ssd_scene, neg_pos_ratio=p)),
    ]


def _frcnn_rows() -> list[RecipeEdgeRow]:
    return [
        *_padding_rows("faster_rcnn", frcnn_scene),
        RecipeEdgeRow("faster_rcnn", "nan-objectness", _changed(frcnn_scene, at={"objectness": [((2, 5), NAN)]}),
                      "nan", nan=("rpn_objectness",)),
        RecipeEdgeRow("faster_rcnn", "nan-rpn-delta", _changed(frcnn_scene, at={"rpn_deltas": [((2, 20, 0), NAN)]}),
                      "nan", nan=("rpn_box",)),
        RecipeEdgeRow("faster_rcnn", "nan-class-logit", _changed(frcnn_scene, at={"class_logits": [((1, 5, 1), NAN)]}),
                      "nan", nan=("roi_classifier",)),
        # the deltas of a class the row is not labelled with: never selected, still NaN
        RecipeEdgeRow("faster_rcnn", "nan-other-class-delta",
                      _changed(frcnn_scene, at={"box_deltas": [((0, 0, 3, 2), NAN), ((0, 1, 3, 2), NAN)]}),
                      "nan", nan=("roi_box",)),
        RecipeEdgeRow("faster_rcnn", "images-without-gt", _changed(frcnn_scene, counts=(0, 0)), "finite",
                      zero=("rpn_box", "roi_box")),
        RecipeEdgeRow("faster_rcnn", "swapped-rpn-thresholds", _changed(frcnn_scene, rpn_fg_iou=0.3, rpn_bg_iou=0.7),
                      ValueError, ("rpn_bg_iou", "rpn_fg_iou")),
        RecipeEdgeRow("faster_rcnn", "swapped-roi-thresholds", _changed(frcnn_scene, roi_fg_iou=0.4, roi_bg_iou=0.6),
                      ValueError, ("roi_bg_iou", "roi_fg_iou")),
    ]


def _yolo_rows() -> list[RecipeEdgeRow]:
    return [
        *_padding_rows("yolov1", yolo_scene),
        # a class score of a cell without an object (image 2 has none): never selected, still NaN
        RecipeEdgeRow("yolov1", "nan-class-score-empty-cell", _changed(yolo_scene, at={"pred": [((2, 1, 1, 11), NAN)]}),
                      "nan", nan=("class",)),
        RecipeEdgeRow("yolov1", "nan-confidence", _changed(yolo_scene, at={"pred": [((2, 0, 2, 4), NAN)]}),
                      "nan", nan=("obj", "noobj")),
        RecipeEdgeRow("yolov1", "nan-width", _changed(yolo_scene, at={"pred": [((0, 2, 2, 7), NAN)]}),
                      "nan", nan=("coord",)),
        RecipeEdgeRow("yolov1", "images-without-gt", _changed(yolo_scene, counts=(0, 0)), "finite",
                      zero=("coord", "obj", "class")),
    ]


def _detr_rows() -> list[RecipeEdgeRow]:
    box_terms = ("loss_bbox", "loss_giou", "loss_bbox_0", "loss_giou_0")
    return [
        *_padding_rows("detr", detr_scene),
        # an unmatched query's logit and box (image 2 has no ground truth: every query is "no object")
        RecipeEdgeRow("detr", "nan-logit-unmatched", _changed(detr_scene, at={"class_logits": [((2, 1, 0), NAN)]}),
                      "nan", nan=("loss_ce",)),
        RecipeEdgeRow("detr", "nan-box-unmatched", _changed(detr_scene, at={"pred_boxes": [((2, 3, 2), NAN)]}),
                      "nan", nan=("loss_bbox", "loss_giou")),
        RecipeEdgeRow("detr", "nan-aux-box", _changed(detr_scene, at={"aux_pred_boxes_0": [((0, 0, 0), NAN)]}),
                      "nan", nan=("loss_bbox_0", "loss_giou_0")),
        RecipeEdgeRow("detr", "images-without-gt", _changed(detr_scene, counts=(0, 0)), "finite", zero=box_terms),
        RecipeEdgeRow("detr", "more-boxes-than-queries", _changed(detr_scene, counts=(Q + 2, 1, 0), g=Q + 2),
                      "finite"),
        RecipeEdgeRow("detr", "zero-width-real-box", _changed(detr_scene, at={"gt_boxes": [((1, 0, 2), 0.0)]}),
                      ValueError, ("box 0 of image 1", "degenerate"), paths=("eager",)),
        RecipeEdgeRow("detr", "no-object-label", _changed(detr_scene, at={"gt_labels": [((0, 1), C)]}),
                      ValueError, ("gt_labels[0][1]", "no object"), paths=("eager",)),
        RecipeEdgeRow("detr", "negative-predicted-width",
                      _changed(detr_scene, at={"pred_boxes": [((1, 2, 2), -0.1)]}),
                      ValueError, ("pred_boxes[1][2]", "negative width"), paths=("eager",)),
        RecipeEdgeRow("detr", "eos-coef-zero-no-gt", _changed(detr_scene, counts=(0, 0), eos_coef=0.0), "finite",
                      zero=("*",)),
    ]


def _yolov8_rows() -> list[RecipeEdgeRow]:
    return [
        *_padding_rows("yolov8", yolov8_scene),
        # image 2 has no ground truth: its anchors are background, their logits still show NaN
        RecipeEdgeRow("yolov8", "nan-score-background", _changed(yolov8_scene, at={"pred_scores": [((2, 5, 1), NAN)]}),
                      "nan", nan=("cls",)),
        # PyTorch's BCE of a -inf logit against a target of 0 is NaN (-inf + inf), whatever the path; +1e30 is
        # finite. (Under torch.func the gradient at -inf is NaN, torch.nn.functional's too: eager paths only.)
        RecipeEdgeRow("yolov8", "minus-inf-score-background",
                      _changed(yolov8_scene, at={"pred_scores": [((2, 5, 1), -INF)]}), "nan", nan=("cls",),
                      paths=("eager",)),
        RecipeEdgeRow("yolov8", "huge-score-background",
                      _changed(yolov8_scene, at={"pred_scores": [((2, 5, 1), 1e30)]}),
                      "finite"),
        RecipeEdgeRow("yolov8", "nan-distribution-background",
                      _changed(yolov8_scene, at={"pred_distri": [((2, 7, 3), NAN)]}), "nan", nan=("box", "dfl")),
        RecipeEdgeRow("yolov8", "images-without-gt", _changed(yolov8_scene, counts=(0, 0)), "finite",
                      zero=("box", "dfl")),
    ]


ROWS = _ssd_rows() + _frcnn_rows() + _yolo_rows() + _detr_rows() + _yolov8_rows()


# -- the paths ------------------------------------------------------------------------------------


def _convert(case: Any, a: Any) -> Any:
    if isinstance(a, list):
        return [_convert(case, x) for x in a]
    return case.asarray(a)


@dataclass
class Outcome:
    path: str
    values: dict[str, float] | None = None
    grads: dict[str, np.ndarray] | None = None
    error: type[BaseException] | None = None
    message: str = ""

    def describe(self) -> str:
        if self.error is not None:
            return f"{self.path}: raises {self.error.__name__}: {self.message}"
        return f"{self.path}: {self.values}"


def _components(case: Any, result: Any) -> dict[str, float]:
    out = {k: float(case.to_numpy(v)) for k, v in result.components.items()}
    out["total"] = float(case.to_numpy(result.total))
    return out


def _run(path: str, body: Callable[[], tuple[dict[str, float], dict[str, np.ndarray] | None]]) -> Outcome:
    import warnings

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # NumPy's invalid-value warnings: the NaN is the rule
            values, grads = body()
    except (ValueError, TypeError) as exc:
        return Outcome(path, error=type(exc), message=str(exc).splitlines()[0])
    return Outcome(path, values=values, grads=grads)


def outcomes(recipe_name: str, make: Callable[[], Inputs], case: Any) -> list[Outcome]:
    """The input through every path of ``case``."""
    spec = SPECS[recipe_name]
    config, arrays = make()
    results = []

    def arrays_of(requires_grad: bool = False) -> dict[str, Any]:
        out = {k: _convert(case, v) for k, v in arrays.items()}
        if requires_grad:
            for name in spec.predictions:
                out[name].requires_grad_(True)
        return out

    for fast in (True, False):
        tag = "fast" if fast else "generic"
        with pl.fast_paths(fast):

            def call() -> tuple[dict[str, float], None]:
                return _components(case, spec.call(pl.get_recipe(recipe_name, **config), arrays_of(), "__call__")), None

            def closed_form() -> tuple[dict[str, float], dict[str, np.ndarray]]:
                result, grads = spec.call(pl.get_recipe(recipe_name, **config), arrays_of(), "value_and_grad")
                assert set(grads) == set(spec.predictions)
                return _components(case, result), {k: case.to_numpy(g) for k, g in grads.items()}

            results.append(_run(f"{case.name}/{tag}/call", call))
            results.append(_run(f"{case.name}/{tag}/value_and_grad", closed_form))
            if case.is_torch:

                def autograd() -> tuple[dict[str, float], dict[str, np.ndarray]]:
                    a = arrays_of(requires_grad=True)
                    result = spec.call(pl.get_recipe(recipe_name, **config), a, "__call__")
                    result.total.backward()
                    return _components(case, result), {
                        k: case.to_numpy(a[k].grad) if a[k].grad is not None else np.zeros(a[k].shape)
                        for k in spec.predictions}

                results.append(_run(f"{case.name}/{tag}/autograd", autograd))
    if case.is_torch:
        import torch

        def func() -> tuple[dict[str, float], dict[str, np.ndarray]]:
            a = arrays_of()
            recipe = pl.get_recipe(recipe_name, **config)

            def total(*preds: Any) -> tuple[Any, dict[str, Any]]:
                result = spec.call(recipe, {**a, **dict(zip(spec.predictions, preds, strict=True))}, "__call__")
                return result.total, {**result.components, "total": result.total}

            argnums = tuple(range(len(spec.predictions)))
            grads, (_, comps) = torch.func.grad_and_value(total, argnums=argnums, has_aux=True)(
                *(a[k] for k in spec.predictions))
            return ({k: float(case.to_numpy(v)) for k, v in comps.items()},
                    {k: case.to_numpy(g) for k, g in zip(spec.predictions, grads, strict=True)})

        results.append(_run(f"{case.name}/torch.func", func))
    return results


def _same(a: Any, b: Any, rtol: float, atol: float) -> bool:
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    return a.shape == b.shape and bool(np.allclose(a, b, rtol=rtol, atol=atol, equal_nan=True))


def check(row: RecipeEdgeRow, case: Any) -> None:
    """Assert the row's rule on every path of ``case`` and that every path agrees."""
    results = outcomes(row.recipe, row.make, case)
    if row.paths == ("eager",):
        results = [r for r in results if not r.path.endswith("torch.func")]
    report = "\n".join(r.describe() for r in results)
    rtol, atol = max(case.rtol, 1e-5), max(case.atol, 1e-9)
    values = []
    for r in results:
        expect = row.traced if row.traced is not None and r.path.endswith("torch.func") else row.expect
        if isinstance(expect, type):
            raised = r.error is not None and issubclass(r.error, expect)
            assert raised, f"{r.path}: expected {expect.__name__}\n{report}"
            missing = [name for name in row.names if name not in r.message]
            assert not missing, f"{r.path}: the message must name {missing}\n{report}"
            continue
        assert r.error is None, f"{r.path}: expected a value\n{report}"
        if expect == "nan":
            for name in row.nan or ("total",):
                assert math.isnan(r.values[name]), f"{r.path}: {name} must be NaN (never hidden)\n{report}"
            assert math.isnan(r.values["total"]), f"{r.path}: the total must be NaN\n{report}"
        elif expect == "finite":
            assert all(math.isfinite(x) for x in r.values.values()), f"{r.path}: expected finite values\n{report}"
            for name in r.values if row.zero == ("*",) else row.zero:
                assert r.values[name] == 0.0, f"{r.path}: {name} must be 0\n{report}"
        values.append(r)
    if row.expect == "same":
        clean = {r.path: r for r in outcomes(row.recipe, row.like, case)}
        for r in values:
            want = clean[r.path]
            assert want.error is None, want.describe()
            for name, value in want.values.items():
                assert _same(r.values[name], value, rtol, atol), f"{r.path}: {name} differs from the clean input's " \
                                                                  f"{value}\n{report}"
            for name, g in (want.grads or {}).items():
                assert _same(r.grads[name], g, rtol, atol), f"{r.path}: the gradient of {name} differs from the " \
                                                            f"clean input's\n{report}"
    # every path agrees with every other (the paths that raise were checked above)
    for r in values[1:]:
        for name, value in values[0].values.items():
            assert _same(r.values[name], value, rtol, atol), f"paths disagree on {name}\n{report}"
    with_grads = [r for r in values if r.grads is not None]
    for r in with_grads[1:]:
        for name, g in with_grads[0].grads.items():
            assert _same(r.grads[name], g, rtol, atol), \
                f"{r.path} and {with_grads[0].path} disagree on the gradient of {name}\n{report}"


@pytest.mark.parametrize(
    "row", [pytest.param(row, marks=[pytest.mark.xfail(strict=False, reason=row.xfail)] if row.xfail else [])
            for row in ROWS], ids=[row.id for row in ROWS])
def test_edge_rule(row: RecipeEdgeRow, xp) -> None:
    check(row, xp)


def test_every_recipe_has_the_shared_rows() -> None:
    for recipe in SPECS:
        have = {row.label for row in ROWS if row.recipe == recipe}
        assert {"nan-padding", "nan-real-box", "empty-batch-lists", "images-without-gt"} <= have, recipe
        assert any(row.expect == "nan" for row in ROWS if row.recipe == recipe), recipe
