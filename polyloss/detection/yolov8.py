r"""The ``"yolov8"`` recipe: the anchor-free loss of YOLOv8 / YOLO11 (ultralytics' ``v8DetectionLoss``).

Each anchor point ``a`` (a grid-cell centre of one of the feature levels)
predicts ``C`` class logits and, per box side, logits over ``reg_max``
integral distances ``0 .. reg_max - 1`` (grid units); the side's distance is
their softmax expectation and the box is the point plus / minus the four
distances. Anchors are assigned by :func:`polyloss.boxes.task_aligned_assign`
(TAL) and the loss is

.. math::
    L = N\Big(\lambda_{box} \frac{\sum_{a \in fg} w_a (1 - \mathrm{CIoU}(\hat b_a, b_a))}{S}
        + \lambda_{cls} \frac{\sum_{a, c} \mathrm{BCE}(x_{ac}, t_{ac})}{S}
        + \lambda_{dfl} \frac{\sum_{a \in fg} w_a \tfrac14 \sum_{side} \mathrm{DFL}(z_{a, side}, d_{a, side})}{S}\Big)

with ``t`` the assigner's soft targets, :math:`w_a = \sum_c t_{ac}`,
:math:`S = \max(1, \sum_{a, c} t_{ac})`, ``N`` the batch size and ``d`` the
target distances clipped to ``[0, reg_max - 1.01]``. Numbers equal
ultralytics' ``v8DetectionLoss`` (8.4.x).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from collections.abc import Mapping
from collections.abc import Sequence
from dataclasses import dataclass
from dataclasses import replace
from typing import Any

import numpy as np

from polyloss import _checks as v
from polyloss._api import RecipeResult
from polyloss._hooks import hookimpl
from polyloss.backend import Backend
from polyloss.boxes import TaskAlignedAssigner
from polyloss.boxes import TaskAlignedAssignment
from polyloss.boxes import decode_ltrb
from polyloss.boxes import encode_ltrb
from polyloss.boxes import second_level_stride
from polyloss.detection._base import DetectionRecipe
from polyloss.detection._base import LossPart
from polyloss.detection._base import LossStage
from polyloss.detection._base import LossTerm
from polyloss.detection._base import SampleRun
from polyloss.detection._base import check_predictions
from polyloss.detection._base import check_shape
from polyloss.detection._base import normalize_ground_truth
from polyloss.detection._base import sample_ground_truth
from polyloss.functional import binary_cross_entropy_with_logits
from polyloss.functional import ciou_loss
from polyloss.functional import distribution_focal_loss

__all__ = ["YOLOv8Loss", "YOLOv8Targets", "make_anchor_points"]

#: ultralytics clips the distance targets of the DFL this far below the last bin
DFL_MARGIN = 0.01

_BCE_PART = functools.partial(binary_cross_entropy_with_logits, reduction="none")


def make_anchor_points(height: int, width: int, strides: Sequence[int] = (8, 16, 32), *,
                       offset: float = 0.5) -> tuple[Any, Any]:
    """Anchor points of an image of ``height x width`` pixels, level by level: ``(points (A, 2), strides (A,))``.

    Float64 NumPy arrays: per level of stride ``s``, the cell centres ``(x + offset, y + offset)`` in grid
    units of its ``height // s x width // s`` grid, row by row (ultralytics' ``make_anchors``).
    """
    points, per_anchor = [], []
    for s in strides:
        h, w = height // int(s), width // int(s)
        ys, xs = np.meshgrid(np.arange(h) + offset, np.arange(w) + offset, indexing="ij")
        points.append(np.stack([xs.ravel(), ys.ravel()], axis=1))
        per_anchor.append(np.full(h * w, float(s)))
    return np.concatenate(points).astype(np.float64), np.concatenate(per_anchor)


@dataclass(frozen=True)
class YOLOv8Targets:
    """The targets of one batch (from :meth:`YOLOv8Loss.assign`).

    Attributes:
        assignment: the task-aligned assignment (:class:`polyloss.boxes.TaskAlignedAssignment`, pixels).
        boxes: ``(N, A, 4)`` the assigned boxes in grid units (pixels / stride).
        distances: ``(N, A, 4)`` their ``(l, t, r, b)`` distances from the anchor points, clipped to
            ``[0, reg_max - 1.01]`` (the DFL targets).
        weight: ``(N, A)`` each anchor's target score summed over the classes (0 for background).
        non_finite: 0-d bool, a real ground-truth box was not finite (unvalidated), or None.
    """

    assignment: TaskAlignedAssignment
    boxes: Any
    distances: Any
    weight: Any
    non_finite: Any = None


def _positive_int(value: object, name: str, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}, got {value!r}")
    return value


class YOLOv8Loss(DetectionRecipe):
    r"""YOLOv8 / YOLO11 detection loss, registered as recipe ``"yolov8"``; ultralytics' ``v8DetectionLoss``.

    Args:
        num_classes: ``C`` (no background class; labels in ``[0, C)``).
        reg_max: bins per box side (16): distances ``0 .. reg_max - 1`` grid units.
        box, cls, dfl: the gains of the three components (7.5, 0.5, 1.5).
        tal_topk, tal_alpha, tal_beta: the assigner's ``top_k`` (10), ``alpha``
            (0.5) and ``beta`` (6.0) (:func:`polyloss.boxes.task_aligned_assign`).
        weights: factors per component replacing the gains (``"box"``, ``"cls"``, ``"dfl"``).
        validate: check ground truth on host backends (True).
        normalize_over: ``"local"`` (default) or ``"world"``: the target-score
            sum :math:`S` and the batch size are summed over the processes of a
            data-parallel job (``torch.distributed``), each process's
            components are ``W N_{global} local\_sum / S_{global}`` (``W`` the
            world size), so that gradients averaged over the workers (DDP) and
            the mean of the workers' losses equal one process's on the
            concatenated batch. Without a process group it equals ``"local"``.
        assigner: a replacement of the :class:`polyloss.boxes.TaskAlignedAssigner` built from the ``tal_*`` options.

    Call ``recipe(pred_distri, pred_scores, anchor_points, strides, gt_boxes, gt_labels)``:

    - ``pred_distri``: ``(N, A, 4 * reg_max)`` distance logits, side by side
      (``l``, ``t``, ``r``, ``b``; ``reg_max`` logits each);
    - ``pred_scores``: ``(N, A, C)`` class logits;
    - ``anchor_points``: ``(A, 2)`` grid-cell centres in grid units, level
      after level (:func:`make_anchor_points`, ultralytics' ``make_anchors``);
    - ``strides``: ``(A,)`` (or ``(A, 1)``) each anchor's stride in pixels;
    - ``gt_boxes``: pixel xyxy ``(N, G, 4)`` padded with label -1, or per-image
      sequences; ``gt_labels``: ``(N, G)`` classes in ``[0, C)``.

    Returns a :class:`polyloss.RecipeResult` with components ``"box"``,
    ``"cls"``, ``"dfl"``, each times its gain and the batch size ``N`` as
    ultralytics returns them (``loss * batch_size``), ``total`` their sum.
    ``recipe.value_and_grad(...)`` (the call's arguments) returns it with
    ``{"pred_distri": ..., "pred_scores": ...}`` in closed form; the
    assignment and its soft targets are constants, as in ultralytics (it
    detaches the assigner's inputs).

    Assignment (:meth:`assign`): the class probabilities ``sigmoid(pred_scores)``
    and the decoded boxes in pixels go to the task-aligned assigner with the
    anchor points in pixels; ground-truth sides below the second level's
    stride (:func:`polyloss.boxes.second_level_stride`) are raised to it when
    candidates are selected (ultralytics >= 8.4.131).

    Stages: :meth:`decode_boxes`, :meth:`assign` (public), :meth:`loss_stage`
    (the three terms), :meth:`loss` (their result), :meth:`stages` (a whole call).

    Edge rules (every backend and path): padding (label -1) is ignored
    whatever it holds; a real box with a non-finite coordinate, ``x2 <= x1``
    or ``y2 <= y1``, or a label outside ``[0, C)``, raises ``ValueError``
    naming the image and the box where values can be read (else the box is
    left out and every component is NaN); NaN in ``pred_distri`` makes
    ``"box"`` and ``"dfl"`` NaN, NaN in ``pred_scores`` makes ``"cls"`` NaN
    (and, through the assignment, usually the others); images without ground
    truth give zero ``"box"`` and ``"dfl"`` terms, an empty batch 0.

    Deviation in the last digits: CIoU is polyloss's one CIoU
    (:func:`polyloss.ciou_loss`, torchvision's convention, ``eps = 1e-7`` in
    the union), where ultralytics also adds ``eps`` to each box's height:
    relative differences of order ``1e-7 / side``.
    """

    name = "yolov8"
    component_names = ("box", "cls", "dfl")
    #: per-anchor, per-class BCE with logits (no reduction)
    classification_loss: LossPart = staticmethod(_BCE_PART)
    #: per-anchor ``1 - CIoU`` of predicted and target boxes (no reduction)
    box_loss: LossPart = staticmethod(functools.partial(ciou_loss, reduction="none"))
    #: per-side DFL of the distance logits (no reduction)
    distribution_loss: LossPart = staticmethod(functools.partial(distribution_focal_loss, reduction="none"))

    @classmethod
    def sample_data(cls, seed: int = 0) -> tuple[dict[str, Any], SampleRun]:
        """Two 64 x 64 images (84 anchors at strides 8, 16, 32) of up to three boxes, 3 classes, ``reg_max`` 8."""
        rng = np.random.default_rng(seed)
        points, strides = make_anchor_points(64, 64)
        gt_boxes, gt_labels = sample_ground_truth(rng, 2, 3, 64.0, 3, first_label=0)
        a = points.shape[0]
        distri = rng.normal(size=(2, a, 4 * 8))
        scores = rng.normal(size=(2, a, 3))

        def run(recipe: Any, asarray: Callable[[Any], Any]) -> Any:
            return recipe(asarray(distri), asarray(scores), asarray(points), asarray(strides), asarray(gt_boxes),
                          asarray(gt_labels))

        return {"num_classes": 3, "reg_max": 8}, run

    def __init__(
        self,
        num_classes: int,
        reg_max: int = 16,
        box: float = 7.5,
        cls: float = 0.5,
        dfl: float = 1.5,
        tal_topk: int = 10,
        tal_alpha: float = 0.5,
        tal_beta: float = 6.0,
        *,
        weights: Mapping[str, float] | None = None,
        validate: bool = True,
        normalize_over: str = "local",
        assigner: Callable[..., TaskAlignedAssignment] | None = None,
    ) -> None:
        self.num_classes = _positive_int(num_classes, "num_classes")
        self.reg_max = _positive_int(reg_max, "reg_max", 2)
        self.box = v.check_number(box, "box")
        self.cls = v.check_number(cls, "cls")
        self.dfl = v.check_number(dfl, "dfl")
        self.tal_topk = _positive_int(tal_topk, "tal_topk")
        self.tal_alpha = v.check_number(tal_alpha, "tal_alpha")
        self.tal_beta = v.check_number(tal_beta, "tal_beta")
        if not isinstance(validate, bool):
            raise TypeError(f"validate must be a bool, got {type(validate).__name__}")
        super().__init__(weights={"box": self.box, "cls": self.cls, "dfl": self.dfl, **(weights or {})},
                         validate=validate, normalize_over=normalize_over)
        self.assigner = assigner if assigner is not None else TaskAlignedAssigner(
            top_k=self.tal_topk, alpha=self.tal_alpha, beta=self.tal_beta)

    def __repr__(self) -> str:
        return (f"YOLOv8Loss(num_classes={self.num_classes}, reg_max={self.reg_max}, box={self.box}, cls={self.cls}, "
                f"dfl={self.dfl}, tal_topk={self.tal_topk}, tal_alpha={self.tal_alpha}, tal_beta={self.tal_beta}, "
                f"normalize_over={self.normalize_over!r})")

    # -- checks ------------------------------------------------------------------------
    def _check(self, pred_distri: Any, pred_scores: Any, anchor_points: Any, strides: Any) -> tuple[Backend, Any]:
        """The backend, and ``strides`` as ``(A,)``; ``ValueError``/``TypeError`` naming a wrong argument."""
        backend = self.backend_of(pred_scores, "pred_scores")
        check_predictions(backend, "pred_scores", {"pred_scores": pred_scores, "pred_distri": pred_distri,
                                                   "anchor_points": anchor_points, "strides": strides})
        if pred_scores.ndim != 3:
            raise ValueError(f"pred_scores must have shape (N, A, num_classes), got {tuple(pred_scores.shape)}")
        n, a = int(pred_scores.shape[0]), int(pred_scores.shape[1])
        check_shape(pred_scores, (n, a, self.num_classes), "pred_scores", "(N, A, num_classes)")
        check_shape(pred_distri, (n, a, 4 * self.reg_max), "pred_distri", "(N, A, 4 * reg_max)")
        check_shape(anchor_points, (a, 2), "anchor_points", "(A, 2)")
        if a == 0:
            raise ValueError("the predictions need at least one anchor (A >= 1)")
        if tuple(strides.shape) not in ((a,), (a, 1)):
            raise ValueError(f"strides must have shape (A,) or (A, 1) with A = {a}, got {tuple(strides.shape)}")
        return backend, backend.xp.reshape(strides, (a,))

    # -- stages ------------------------------------------------------------------------
    def distances(self, backend: Backend, pred_distri: Any) -> tuple[Any, Any]:
        """``(probabilities (..., 4, reg_max), distances (..., 4))``: each side's softmax and its expectation."""
        xp = backend.xp
        logits = xp.reshape(pred_distri, (*pred_distri.shape[:-1], 4, self.reg_max))
        probs = backend.softmax(logits, axis=-1)
        proj = xp.astype(xp.arange(self.reg_max, device=backend.device(pred_distri)), pred_distri.dtype)
        return probs, xp.matmul(probs, proj)

    def decode_boxes(self, pred_distri: Any, anchor_points: Any) -> Any:
        """Predicted xyxy boxes ``(N, A, 4)`` in grid units: the anchor point minus / plus the expected distances
        (:func:`polyloss.boxes.decode_ltrb`; multiply by the strides for pixels). Differentiable."""
        backend = self.backend_of(pred_distri, "pred_distri")
        _, dist = self.distances(backend, pred_distri)
        return decode_ltrb(dist, v.as_dtype_of(backend, anchor_points, pred_distri))

    def assign(self, pred_distri: Any, pred_scores: Any, anchor_points: Any, strides: Any, gt_boxes: Any,
               gt_labels: Any, *, validate: bool | None = None) -> YOLOv8Targets:
        """Task-aligned assignment of the anchors to the ground truth, and the box and distance targets.

        The assigner sees ``sigmoid(pred_scores)``, the decoded boxes and the
        anchor points in pixels (no gradient), the ground truth, and the second
        level's stride as the smallest side of a box when candidates are
        selected. Arguments as the call's.
        """
        backend, strides = self._check(pred_distri, pred_scores, anchor_points, strides)
        boxes = self.decode_boxes(backend.stop_gradient(pred_distri), anchor_points)
        return self._assign(backend, boxes, pred_scores, anchor_points, strides, gt_boxes, gt_labels, validate)

    def _assign(self, backend: Backend, boxes: Any, pred_scores: Any, anchor_points: Any, strides: Any,
                gt_boxes: Any, gt_labels: Any, validate: bool | None) -> YOLOv8Targets:
        xp = backend.xp
        n = int(pred_scores.shape[0])
        gt = normalize_ground_truth(backend, gt_boxes, gt_labels, like=pred_scores, batch_size=n,
                                    validate=self.validate if validate is None else validate,
                                    num_classes=self.num_classes, background=False)
        points = v.as_dtype_of(backend, anchor_points, pred_scores)
        scale = xp.expand_dims(v.as_dtype_of(backend, strides, pred_scores), axis=-1)  # (A, 1)
        assignment = self.assigner(backend.stop_gradient(pred_scores), backend.stop_gradient(boxes) * scale,
                                   points * scale, gt.boxes, gt.labels, gt.valid, min_side=second_level_stride(scale),
                                   from_logits=True)
        target_boxes = assignment.boxes / scale
        distances = xp.clip(encode_ltrb(target_boxes, points), min=0.0, max=self.reg_max - 1 - DFL_MARGIN)
        return YOLOv8Targets(assignment=assignment, boxes=target_boxes, distances=distances,
                             weight=assignment.alignment, non_finite=gt.non_finite)

    def normaliser(self, backend: Backend, targets: YOLOv8Targets, like: Any) -> Any:
        """What the summed terms are divided by (before the gains), a 0-d array: ``max(1, S) / N``.

        ``S`` is the target scores' sum; with ``normalize_over="world"`` and
        ``W`` processes, ``max(1, S_global) / (W N_global)``.
        """
        xp = backend.xp
        n = int(like.shape[0])
        total = xp.sum(targets.weight)  # the scores' sum: one non-zero class per anchor
        images = xp.asarray(float(n), dtype=like.dtype, device=backend.device(like))
        world = 1
        if self.normalize_over == "world":
            total = backend.all_reduce_sum(total)
            images = backend.all_reduce_sum(images)
            world = backend.world_size()
        images = xp.where(images > 0, images, 1.0)
        return xp.clip(total, min=1.0) / (images * float(world) if world != 1 else images)

    def loss_stage(self, pred_distri: Any, pred_scores: Any, anchor_points: Any, strides: Any,
                   targets: YOLOv8Targets) -> LossStage:
        """The three terms on assigned targets: ``"cls"`` over every anchor and class, ``"box"`` and ``"dfl"``
        over the foreground anchors weighted by their target-score sums; all divided by :meth:`normaliser`.

        On eager host arrays (fast paths on) the box terms run on the
        foreground anchors alone; elsewhere on every anchor, masked.
        """
        backend, strides = self._check(pred_distri, pred_scores, anchor_points, strides)
        xp = backend.xp
        n, a = int(pred_scores.shape[0]), int(pred_scores.shape[1])
        assignment = targets.assignment
        positive = assignment.positive
        positions = backend.nonzero_positions(positive)
        cls_term = self._cls_term(backend, pred_scores, assignment, sparse=positions is not None)
        points = v.as_dtype_of(backend, anchor_points, pred_distri)
        fields = (targets.boxes, targets.distances, targets.weight)
        finite = positions is not None and (n * a == 0 or not bool(xp.isnan(xp.max(pred_distri))))
        if not finite:
            positions = None  # every anchor, so that the gradient at a NaN logit is that of every path
        if positions is not None:  # eager host arrays: the foreground anchors alone, as (1, K, ...)
            rows = xp.reshape(pred_distri, (n * a, 4 * self.reg_max))
            distri = xp.expand_dims(xp.take(rows, positions, axis=0), axis=0)
            points = xp.take(points, positions % a, axis=0)
            boxes, distances, weight = (
                xp.expand_dims(xp.take(xp.reshape(f, (n * a, *f.shape[2:])), positions, axis=0), axis=0)
                for f in fields)
            mask = xp.ones(tuple(weight.shape), dtype=xp.bool, device=backend.device(weight))

            def scatter(g: Any) -> Any:  # (1, K, 4 * reg_max) back to the anchors, (N, A, 4 * reg_max)
                return xp.reshape(backend.scatter_rows(g[0, ...], positions, n * a), (n, a, 4 * self.reg_max))
        else:
            distri, (boxes, distances, weight), mask = pred_distri, fields, positive

            def scatter(g: Any) -> Any:
                return g
        terms = tuple(replace(t, finite_source=finite) for t in
                      self._box_terms(backend, distri, points, boxes, distances, weight, mask, pred_distri, scatter))
        return LossStage(backend=backend, targets=targets, aux={"positive": positive},
                         normaliser=self.normaliser(backend, targets, pred_scores),
                         terms=(terms[0], cls_term, terms[1]), non_finite=targets.non_finite)

    def _cls_term(self, backend: Backend, pred_scores: Any, assignment: TaskAlignedAssignment, *,
                  sparse: bool) -> LossTerm:
        r"""The ``"cls"`` term: the classification part on every anchor and class.

        With the default part (BCE with logits) on finite eager host arrays
        (``sparse``), each anchor's sum over the classes is
        :meth:`polyloss.backend.Backend.one_hot_bce_sum`:
        :math:`\sum_c \mathrm{softplus}(x_{ac}) - x_{a c_a} t_a` (the soft
        target is non-zero at the assigned class alone), so no target array
        enters the passes over ``(N, A, C)``. The closed-form gradient is the part's.
        """
        xp = backend.xp
        n, a = int(pred_scores.shape[0]), int(pred_scores.shape[1])
        target = v.as_dtype_of(backend, assignment.scores, pred_scores)
        everywhere = xp.ones((n, a), dtype=xp.bool, device=backend.device(pred_scores))
        if not (sparse and self.classification_loss is _BCE_PART and n * a and
                all(math.isfinite(m) for m in backend.min_max(backend.stop_gradient(pred_scores)))):
            return self.term(backend, "cls", "classification_loss", "pred_scores", pred_scores, target, everywhere)
        loss = backend.one_hot_bce_sum(pred_scores, assignment.labels,
                                       v.as_dtype_of(backend, assignment.alignment, pred_scores))
        return LossTerm(component="cls", part_name="classification_loss", part=self.classification_loss,
                        argument="pred_scores", input=pred_scores, target=target, output=target, loss=loss,
                        mask=everywhere, finite_source=True)

    def _box_terms(self, backend: Backend, distri: Any, points: Any, boxes: Any, distances: Any, weight: Any,
                   mask: Any, source: Any, scatter: Callable[[Any], Any]) -> tuple[LossTerm, LossTerm]:
        """The ``"box"`` (CIoU of the decoded boxes) and ``"dfl"`` terms of the distance logits ``distri``
        ``(..., 4 * reg_max)``, each anchor's loss times ``weight``; gradients pulled back to ``distri``'s
        anchors by ``scatter``."""
        xp = backend.xp
        r = self.reg_max
        probs, dist = self.distances(backend, distri)
        pred_boxes = decode_ltrb(dist, points)
        lead = tuple(int(s) for s in distri.shape[:-1])
        proj = xp.astype(xp.arange(r, device=backend.device(distri)), distri.dtype)
        w = xp.expand_dims(weight, axis=-1)

        def box_pullback(g: Any) -> Any:  # boxes -> distances (decode_ltrb) -> softmax expectation -> logits
            g_dist = xp.stack((-g[..., 0], -g[..., 1], g[..., 2], g[..., 3]), axis=-1) * w
            g_logits = xp.expand_dims(g_dist, axis=-1) * probs * (proj - xp.expand_dims(dist, axis=-1))
            return scatter(xp.reshape(g_logits, (*lead, 4 * r)))

        def dfl_pullback(g: Any) -> Any:
            return scatter(xp.reshape(g * xp.expand_dims(w, axis=-1) * 0.25, (*lead, 4 * r)))

        box = self.term(backend, "box", "box_loss", "pred_distri", pred_boxes, v.as_dtype_of(backend, boxes, distri),
                        mask, source=source, pullback=box_pullback)
        logits = xp.reshape(distri, (*lead, 4, r))
        dfl = self.term(backend, "dfl", "distribution_loss", "pred_distri", logits,
                        v.as_dtype_of(backend, distances, distri), mask, source=source, pullback=dfl_pullback)
        return (replace(box, loss=box.loss * weight), replace(dfl, loss=dfl.loss * (weight * 0.25)))

    def loss(self, pred_distri: Any, pred_scores: Any, anchor_points: Any, strides: Any,
             targets: YOLOv8Targets) -> RecipeResult:
        """The three weighted components on assigned targets (:meth:`loss_stage`)."""
        return self.evaluate(self.loss_stage(pred_distri, pred_scores, anchor_points, strides, targets))

    def stages(self, pred_distri: Any, pred_scores: Any, anchor_points: Any, strides: Any, gt_boxes: Any,
               gt_labels: Any, *, validate: bool | None = None) -> tuple[LossStage]:
        """The call's one loss stage: :meth:`assign`, then :meth:`loss_stage`."""
        targets = self.assign(pred_distri, pred_scores, anchor_points, strides, gt_boxes, gt_labels,
                              validate=validate)
        return (self.loss_stage(pred_distri, pred_scores, anchor_points, strides, targets),)

    def __call__(self, pred_distri: Any, pred_scores: Any, anchor_points: Any, strides: Any, gt_boxes: Any,
                 gt_labels: Any, *, validate: bool | None = None) -> RecipeResult:
        """The YOLOv8 loss of a batch; see the class docstring."""
        return self.evaluate(*self.stages(pred_distri, pred_scores, anchor_points, strides, gt_boxes, gt_labels,
                                          validate=validate))


@hookimpl
def polyloss_register_recipes() -> dict[str, Callable[..., Any]]:
    return {"yolov8": YOLOv8Loss}

