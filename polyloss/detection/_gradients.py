r"""Closed-form gradients of the detector recipes ("ssd", "faster_rcnn", "yolov1").

Each function returns the recipe's :class:`polyloss.RecipeResult` and the
gradient of its ``total`` with respect to every prediction array, as a dict
keyed by the argument's name. Matching, sampling, hard-negative mining and
the normalising counts are constants, as they are for autograd (they are
computed from the predictions without gradient). Everything is array-API
code: NumPy, CuPy and array-api-strict get exact gradients without autograd.

The recipes' loss parts are differentiated through the per-loss gradients of
:mod:`polyloss.gradients`, called with a cotangent: the default parts are
known, and a part that is a ``functools.partial`` of a loss with a
registered gradient (or such a loss itself) works too. Any other part raises
``TypeError`` naming it.

The recipe classes expose these as methods: ``SSDLoss.value_and_grad``,
``FasterRCNNLoss.rpn_value_and_grad`` / ``roi_value_and_grad`` /
``value_and_grad`` and ``YOLOv1Loss.value_and_grad``.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING
from typing import Any

from polyloss._api import RecipeResult
from polyloss.backend._base import Backend
from polyloss.detection._base import DetectionRecipe
from polyloss.detection._base import LossStage
from polyloss.detection._base import sigmoid_objectness_loss
from polyloss.detection._base import softmax_cross_entropy

if TYPE_CHECKING:
    from polyloss.detection.faster_rcnn import FasterRCNNLoss
    from polyloss.detection.faster_rcnn import SampledProposals
    from polyloss.detection.ssd import SSDLoss
    from polyloss.detection.ssd import SSDTargets
    from polyloss.detection.yolov1 import YOLOv1Loss
    from polyloss.detection.yolov1 import YOLOv1Targets

__all__ = [
    "faster_rcnn_roi_value_and_grad",
    "faster_rcnn_rpn_value_and_grad",
    "faster_rcnn_value_and_grad",
    "part_vjp",
    "stage_grads",
    "ssd_loss_value_and_grad",
    "ssd_value_and_grad",
    "yolov1_value_and_grad",
]

Grads = dict[str, Any]


# -- parts ---------------------------------------------------------------------------


def _part_gradient(part: Any, name: str) -> tuple[Any, dict[str, Any]]:
    """(gradient function, its options) of a recipe part."""
    from polyloss.functional import binary_cross_entropy_with_logits
    from polyloss.functional import cross_entropy
    from polyloss.gradients import GRADIENTS

    if part is softmax_cross_entropy:
        return GRADIENTS[cross_entropy], {"reduction": "none"}
    if part is sigmoid_objectness_loss:
        return GRADIENTS[binary_cross_entropy_with_logits], {"reduction": "none"}
    if isinstance(part, functools.partial) and not part.args and part.func in GRADIENTS:
        return GRADIENTS[part.func], dict(part.keywords)
    try:
        if part in GRADIENTS:
            return GRADIENTS[part], {}
    except TypeError:  # an unhashable callable
        pass
    raise TypeError(
        f"the recipe part {name} = {part!r} has no closed-form gradient: use a built-in part, a loss with a "
        "registered gradient or functools.partial(loss, **options) of one (see "
        "polyloss.functional.register_gradient), or the autograd of an array library that has one"
    )


def part_vjp(backend: Backend, part: Any, name: str, input: Any, target: Any, output: Any, cotangent: Any) -> Any:
    """``d <c, per_prediction(part(input, target))> / d input``.

    Args:
        backend: the predictions' backend.
        part: the recipe part (``classification_loss``, ``regression_loss``, ...).
        name: the part's attribute name (for the error message).
        input, target: what the part was called with.
        output: what it returned (its shape places the cotangent).
        cotangent: per-prediction cotangent; broadcast over the output's
            trailing axes, which :func:`per_prediction` sums.
    """
    xp = backend.xp
    grad_fn, options = _part_gradient(part, name)
    c = cotangent
    while c.ndim < output.ndim:
        c = xp.expand_dims(c, axis=-1)
    if tuple(c.shape) != tuple(output.shape):
        c = xp.broadcast_to(c, tuple(output.shape))
    return grad_fn(input, target, cotangent=c, **options)


def stage_grads(recipe: DetectionRecipe, stage: LossStage) -> Grads:
    """The gradient of the weighted total of ``stage``'s terms w.r.t. each term's input, keyed by its argument.

    Each term's cotangent is :meth:`LossStage.cotangent` (``weight / normaliser``
    on the term's mask), pulled back through the recipe part that computed it.
    """
    return {
        term.argument: part_vjp(stage.backend, getattr(recipe, term.part), term.part, term.input, term.target,
                                term.output, stage.cotangent(term, recipe.weights))
        for term in stage.terms
    }


# -- SSD ---------------------------------------------------------------------------------


def ssd_loss_value_and_grad(recipe: SSDLoss, box_deltas: Any, class_logits: Any,
                            targets: SSDTargets) -> tuple[RecipeResult, Grads]:
    """:meth:`SSDLoss.loss` and its gradient with respect to ``box_deltas`` and ``class_logits``.

    ``loc = w_loc * sum_pos(reg) / n``, ``conf = w_conf * sum_{pos or neg}(ce) / n``
    with the hard negatives and ``n = max(1, positives)`` constants.
    """
    stage = recipe._loss_stage(box_deltas, class_logits, targets)
    return recipe.result(stage.backend, stage.components()), stage_grads(recipe, stage)


def ssd_value_and_grad(recipe: SSDLoss, box_deltas: Any, class_logits: Any, priors: Any, gt_boxes: Any,
                       gt_labels: Any, *, validate: bool | None = None) -> tuple[RecipeResult, Grads]:
    """``recipe(box_deltas, class_logits, priors, gt_boxes, gt_labels)`` and its gradient."""
    targets = recipe._call_targets(class_logits, priors, gt_boxes, gt_labels, validate)
    return ssd_loss_value_and_grad(recipe, box_deltas, class_logits, targets)


# -- Faster R-CNN -------------------------------------------------------------------------


def faster_rcnn_rpn_value_and_grad(
    recipe: FasterRCNNLoss, anchors: Any, objectness: Any, rpn_deltas: Any, gt_boxes: Any, gt_labels: Any = None,
    *, seed: Any, validate: bool | None = None,
) -> tuple[RecipeResult, Grads]:
    """:meth:`FasterRCNNLoss.rpn_loss` and its gradient w.r.t. ``objectness`` and ``rpn_deltas``.

    The sample is drawn once and serves both the value and the gradient.
    """
    stage = recipe._rpn_stage(anchors, objectness, rpn_deltas, gt_boxes, gt_labels, seed=seed, validate=validate)
    grads = stage_grads(recipe, stage)
    positions = stage.aux.get("box_positions")
    if positions is not None:  # the box term ran on the sampled positives alone: (1, K, 4) back to (N, A, 4)
        n, a = (int(s) for s in objectness.shape)
        rows = stage.backend.scatter_rows(grads["rpn_deltas"][0, ...], positions, n * a)
        grads["rpn_deltas"] = stage.backend.xp.reshape(rows, (n, a, 4))
    return recipe.result(stage.backend, stage.components()), grads


def faster_rcnn_roi_value_and_grad(recipe: FasterRCNNLoss, class_logits: Any, box_deltas: Any,
                                   sampled: SampledProposals) -> tuple[RecipeResult, Grads]:
    """:meth:`FasterRCNNLoss.roi_loss` and its gradient w.r.t. ``class_logits`` and ``box_deltas``.

    ``box_deltas``'s gradient has its shape (``(N, R, C, 4)`` or ``(N, R, 4 C)``)
    and is non-zero only at the target class of foreground rows.
    """
    stage = recipe._roi_stage(class_logits, box_deltas, sampled)
    grads = stage_grads(recipe, stage)
    xp = stage.backend.xp
    class_index = stage.aux["class_index"]
    g_sel = grads["box_deltas"]  # w.r.t. the target class's deltas (N, R, 4)
    # scatter back to the class the row's deltas were taken from (take_along_axis's adjoint)
    classes = xp.arange(recipe.num_classes, dtype=class_index.dtype, device=stage.backend.device(class_index))
    one_hot = xp.astype(xp.expand_dims(class_index, axis=-1) == classes, g_sel.dtype)  # (N, R, C)
    g_box = xp.expand_dims(one_hot, axis=-1) * xp.expand_dims(g_sel, axis=2)
    if tuple(g_box.shape) != tuple(box_deltas.shape):
        g_box = xp.reshape(g_box, tuple(box_deltas.shape))
    return recipe.result(stage.backend, stage.components()), {**grads, "box_deltas": g_box}


def faster_rcnn_value_and_grad(
    recipe: FasterRCNNLoss, anchors: Any, objectness: Any, rpn_deltas: Any, gt_boxes: Any, gt_labels: Any,
    class_logits: Any, box_deltas: Any, sampled: SampledProposals, *, seed: Any, validate: bool | None = None,
) -> tuple[RecipeResult, Grads]:
    """The whole recipe call and the gradient w.r.t. its four prediction arrays."""
    rpn, rpn_grads = faster_rcnn_rpn_value_and_grad(recipe, anchors, objectness, rpn_deltas, gt_boxes, gt_labels,
                                                    seed=seed, validate=validate)
    roi, roi_grads = faster_rcnn_roi_value_and_grad(recipe, class_logits, box_deltas, sampled)
    return recipe.combine(rpn, roi), {**rpn_grads, **roi_grads}


# -- YOLOv1 -----------------------------------------------------------------------------------


def _check_default_yolo_parts(recipe: YOLOv1Loss) -> None:
    from polyloss.detection.yolov1 import YOLOv1Loss
    from polyloss.detection.yolov1 import squared_error
    from polyloss.detection.yolov1 import sum_squared_error

    for name, default in (("coord_error", sum_squared_error), ("class_error", sum_squared_error),
                          ("conf_error", squared_error)):
        if getattr(recipe, name) is not default:
            raise TypeError(f"value_and_grad of the yolov1 recipe needs the default {name} (squared error); "
                            f"{getattr(recipe, name)!r} has no closed-form gradient")
    if type(recipe).size_transform is not YOLOv1Loss.size_transform:
        raise TypeError("value_and_grad of the yolov1 recipe needs the default size_transform (safe square root)")


def yolov1_loss_value_and_grad(recipe: YOLOv1Loss, pred: Any, targets: YOLOv1Targets) -> tuple[RecipeResult, Grads]:
    r""":meth:`YOLOv1Loss.loss_from_targets` and its gradient w.r.t. ``pred``.

    With ``k`` the recipe's scale (:meth:`YOLOv1Loss.scale`), ``r`` the
    responsible mask and :math:`s(w) = \sqrt{\max(w, \epsilon)}`:
    :math:`2 \lambda_c k r (x - \hat x)` for ``x, y``;
    :math:`\lambda_c k r (s(w) - s(\hat w)) / s(w)` for ``w, h`` (0 below
    :math:`\epsilon`); :math:`2 k [r (c - \hat c) + \lambda_{noobj} (1 - r) c]`
    for the confidence (the IoU target a constant); :math:`2 k\,\mathbb 1^{obj} (p - \hat p)`
    for the class scores.
    """
    _check_default_yolo_parts(recipe)
    result = recipe.loss_from_targets(pred, targets)
    backend = recipe._check_pred(pred)
    xp = backend.xp
    cells = targets.cells
    resp = targets.responsible
    b = recipe.boxes_per_cell
    n, s = int(pred.shape[0]), recipe.grid
    p = recipe._predictors(backend, pred)
    scale = recipe.scale(backend, pred)
    coord_k = (2.0 * recipe.lambda_coord) * scale
    t = cells.coords[..., None, :]
    g_xy = coord_k * resp[..., None] * (p[..., 0:2] - t[..., 0:2])
    wh = p[..., 2:4]
    s_pred = recipe.size_transform(backend, wh)
    s_target = recipe.size_transform(backend, t[..., 2:4])
    passes = xp.astype(wh >= recipe.sqrt_eps, wh.dtype)  # clip's gradient (PyTorch: 1 at the bound)
    g_wh = coord_k * resp[..., None] * (s_pred - s_target) * passes * 0.5 / s_pred
    conf = p[..., 4]
    conf_target = targets.iou if recipe.conf_target == "iou" else 1.0
    g_conf = (2.0 * scale) * (resp * (conf - conf_target) + recipe.lambda_noobj * (1.0 - resp) * conf)
    g_p = xp.concat([g_xy, g_wh, xp.expand_dims(g_conf, axis=-1)], axis=-1)  # (N, S, S, B, 5)
    scores = pred[..., 5 * b:]
    g_cls = (2.0 * scale) * xp.expand_dims(cells.obj, axis=-1) * (scores - cells.classes)
    grad = xp.concat([xp.reshape(g_p, (n, s, s, 5 * b)), g_cls], axis=-1)
    return result, {"pred": grad}


def yolov1_value_and_grad(recipe: YOLOv1Loss, pred: Any, gt_boxes: Any,
                          gt_labels: Any) -> tuple[RecipeResult, Grads]:
    """``recipe(pred, gt_boxes, gt_labels)`` and its gradient ``{"pred": ...}``."""
    _check_default_yolo_parts(recipe)
    return yolov1_loss_value_and_grad(recipe, pred, recipe.assign_targets(pred, gt_boxes, gt_labels))
