r"""The ``"detr"`` recipe: DETR's set loss (Carion et al., *End-to-End Object Detection with Transformers*, ECCV 2020).

Numbers equal Hugging Face transformers' ``ForObjectDetectionLoss``
(``transformers.loss.loss_for_object_detection``: ``HungarianMatcher`` and
``ImageLoss``, the port of DETR's ``SetCriterion``), auxiliary decoder outputs
included. The Hungarian assignment is SciPy's ``linear_sum_assignment`` on the
host (:mod:`polyloss.boxes.hungarian`); everything else is array-API code with
static shapes.
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from collections.abc import Mapping
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from polyloss import _checks as v
from polyloss._api import RecipeResult
from polyloss._hooks import hookimpl
from polyloss._namespace import check_same
from polyloss.backend import Backend
from polyloss.boxes import HungarianMatcher
from polyloss.boxes import box_convert
from polyloss.detection._base import PADDING_BOX
from polyloss.detection._base import DetectionRecipe
from polyloss.detection._base import GroundTruth
from polyloss.detection._base import LossStage
from polyloss.detection._base import SampleRun
from polyloss.detection._base import check_predictions
from polyloss.detection._base import check_shape
from polyloss.detection._base import normalize_ground_truth
from polyloss.detection._base import sample_ground_truth
from polyloss.functional import cross_entropy
from polyloss.functional import giou_loss
from polyloss.functional import l1_loss

__all__ = ["DETRLoss", "DETRTargets"]

#: The box-L1 part: element-wise absolute error of the cxcywh vectors.
box_l1 = functools.partial(l1_loss, reduction="none")

#: The GIoU part on xyxy boxes: transformers' ``1 - GIoU`` has no epsilon, and ``giou_loss`` takes the
#: smallest positive one (raised to the dtype's smallest normal number), which leaves every sum unchanged.
box_giou = functools.partial(giou_loss, eps=sys.float_info.min, reduction="none")


class _LayerWeights(dict[str, float]):
    """Component weights where an auxiliary layer's ``name_k`` (``k`` digits) takes the weight of ``name``."""

    def __missing__(self, key: str) -> float:
        base, _, layer = key.rpartition("_")
        if base and layer.isdigit() and base in self:
            return self[base]
        raise KeyError(key)

    def get(self, key: str, default: Any = None) -> Any:
        try:
            return self[key]
        except KeyError:
            return default


@dataclass(frozen=True)
class DETRTargets:
    """The matching of one decoder layer's queries and the targets it gives (from :meth:`DETRLoss.match`).

    Every array has a static shape: ``(N, Q)`` per query, whatever the number of boxes.

    Attributes:
        matches: ``(N, Q)`` int64, the ground-truth index each query is matched
            to (index into the padded ``(N, G)`` ground truth), -1 for "no object".
        matched: ``(N, Q)`` bool, ``matches >= 0``.
        labels: ``(N, Q)`` int64 class target: the matched box's label, or
            ``K - 1`` ("no object", the logits' last class).
        boxes: ``(N, Q, 4)`` cxcywh box target of each matched query
            (:data:`polyloss.detection.PADDING_BOX` elsewhere, never used).
        valid: ``(N, G)`` bool, the real ground-truth boxes (their count is
            transformers' ``num_boxes``).
        non_finite: 0-d bool, a real box was not finite (unvalidated), or None.
    """

    matches: Any
    matched: Any
    labels: Any
    boxes: Any
    valid: Any
    non_finite: Any = None


def _cxcywh_pullback(backend: Backend, g: Any) -> Any:
    """The gradient w.r.t. xyxy boxes ``(..., 4)`` pulled back to the cxcywh boxes they were converted from."""
    xp = backend.xp
    g0, g1, g2, g3 = g[..., 0], g[..., 1], g[..., 2], g[..., 3]
    return xp.stack([g0 + g2, g1 + g3, 0.5 * (g2 - g0), 0.5 * (g3 - g1)], axis=-1)


def _first(backend: Backend, bad: Any) -> tuple[int, int] | None:
    """The first ``(row, column)`` where the 2-D bool ``bad`` holds, or None (reads values: host arrays only)."""
    xp = backend.xp
    if not bool(xp.any(bad)):
        return None
    flat = int(xp.argmax(xp.astype(xp.reshape(bad, (-1,)), xp.int8)))
    return flat // int(bad.shape[1]), flat % int(bad.shape[1])


def _coords(box: Any) -> list[float]:
    return [float(box[k]) for k in range(4)]


class DETRLoss(DetectionRecipe):
    r"""DETR's Hungarian set loss, registered as recipe ``"detr"``; transformers' ``ForObjectDetectionLoss`` numbers.

    Per decoder layer, the queries are matched one-to-one to the ground truth
    (:meth:`match`: :class:`polyloss.boxes.HungarianMatcher`, cost
    :math:`-\lambda_{c} p_q(c_g) + \lambda_{b} \lVert b_q - \hat b_g\rVert_1 - \lambda_{g}\,\mathrm{GIoU}`),
    then with :math:`\sigma` the matching, :math:`B` the number of real
    ground-truth boxes of the batch (transformers' ``num_boxes``, at least 1)
    and :math:`w_{c} = 1` for a class, ``eos_coef`` for "no object":

    .. math::
        L_{ce} = \frac{\sum_{q} w_{y_q}\,\mathrm{CE}(z_q, y_q)}{\sum_q w_{y_q}},\qquad
        L_{bbox} = \frac{1}{B}\sum_{g} \lVert b_{\sigma(g)} - \hat b_g \rVert_1,\qquad
        L_{giou} = \frac{1}{B}\sum_{g} \big(1 - \mathrm{GIoU}(b_{\sigma(g)}, \hat b_g)\big)

    (:math:`y_q` the matched label, "no object" for an unmatched query; the
    cross-entropy's weighted mean runs over every query of the batch). The
    result's components are these times their weights, ``"loss_ce"``,
    ``"loss_bbox"``, ``"loss_giou"``, and for the auxiliary output ``k`` (each
    matched anew) the same suffixed ``_k``; ``total`` is their sum, which is
    transformers' loss.

    Args:
        cost_class, cost_bbox, cost_giou: matcher costs (1, 5, 2).
        loss_ce, loss_bbox, loss_giou: the components' weights (1, 5, 2), also
            for the auxiliary layers.
        eos_coef: the "no object" class's weight in the cross-entropy (0.1), >= 0.
        validate: check ground truth (and predicted widths) on host backends (True).
        normalize_over: ``"local"`` (default) or ``"world"``: :math:`B` counts
            the boxes of every process of a data-parallel job and the
            cross-entropy's weight sum :math:`\sum_q w_{y_q}` is that of every
            process too (see :data:`polyloss.detection._base.NORMALIZE_OVER`):
            a process's terms are ``W * local_sum / global normaliser``, so that
            gradients averaged over the ``W`` workers (DDP) equal those of one
            process on the whole batch. transformers (with accelerate) divides
            the box terms by ``max(1, global B / W)`` (the same whenever the batch
            holds at least ``W`` boxes) and keeps a per-process cross-entropy mean
            (not DDP-exact).
        matcher: a :class:`polyloss.boxes.HungarianMatcher` (or any callable of
            its signature returning ``(N, Q)`` matches) replacing the default.
        weights: a mapping of component weights overriding the three above.

    The arguments are the config of ``pl.get_recipe("detr", ...)``.

    Call ``recipe(class_logits (N, Q, K), pred_boxes (N, Q, 4), gt_boxes,
    gt_labels, *, aux=None)``: ``K - 1`` classes plus "no object" (the last
    index), boxes normalised cxcywh (predictions and ground truth), ground truth
    padded with label -1 or as per-image sequences, labels in ``[0, K - 1)``,
    ``aux`` a sequence of ``(class_logits, pred_boxes)`` of the auxiliary
    decoder layers (transformers' ``outputs_class[:-1]``, ``outputs_coord[:-1]``).

    ``recipe.value_and_grad(...)`` (the same arguments) returns the result and
    the gradient of ``total`` in closed form, matching constant, keyed
    ``"class_logits"``, ``"pred_boxes"`` and, for the auxiliary output ``k``,
    ``"aux_class_logits_k"``, ``"aux_pred_boxes_k"``.

    Stages: :meth:`match` (public: the Hungarian matching of one layer, SciPy
    on the host), :meth:`loss_stage` / :meth:`loss` (the terms on a matching,
    static shapes), :meth:`stages` (a whole call, one stage per layer).

    ``torch.compile``: the matching solves on the host. Compiling a whole call
    (``torch.compile(recipe)``) breaks the graph at the solver
    (:func:`polyloss.boxes.assign_min_cost` runs under
    ``torch.compiler.disable``): the cost matrix and the loss compile, the
    assignment runs eagerly, with ``validate=False`` for no other graph break.
    For one ``fullgraph=True`` graph, call ``targets = recipe.match(...)``
    eagerly and ``torch.compile(recipe.loss, fullgraph=True)(class_logits,
    pred_boxes, targets)``.

    Edge rules (every backend and path):

    - padding (label -1) is ignored whatever it holds;
    - a real box with a non-finite coordinate, ``w <= 0`` or ``h <= 0``, or a
      label outside ``[0, K - 1)`` raises ``ValueError`` naming the image and
      the box where values are readable (NumPy, array-api-strict, PyTorch on the
      CPU outside tracing); so does a predicted box with a negative width or
      height (transformers' GIoU raises too); unvalidated, a non-finite real box
      is not matched and every component is NaN;
    - NaN in ``class_logits`` makes ``"loss_ce"`` NaN, NaN in ``pred_boxes``
      ``"loss_bbox"`` and ``"loss_giou"`` (a NaN cost is matched last, as transformers);
    - images without ground truth give zero box terms (their queries are all
      "no object" in the cross-entropy), an empty batch 0, never NaN; with
      more boxes than queries, ``Q`` of them are matched and :math:`B` still
      counts them all (as transformers).
    """

    component_names = ("loss_ce", "loss_bbox", "loss_giou")

    @classmethod
    def sample_data(cls, seed: int = 0) -> tuple[dict[str, Any], SampleRun]:
        """Two images of up to three boxes (one padding entry), 6 queries, 3 classes, one auxiliary layer."""
        rng = np.random.default_rng(seed)
        xyxy, gt_labels = sample_ground_truth(rng, 2, 3, 1.0, 3, first_label=0)
        gt_boxes = np.concatenate([(xyxy[..., :2] + xyxy[..., 2:]) / 2, xyxy[..., 2:] - xyxy[..., :2]], axis=-1)
        logits = rng.normal(size=(2, 2, 6, 4))
        boxes = 1.0 / (1.0 + np.exp(-rng.normal(size=(2, 2, 6, 4))))

        def run(recipe: Any, asarray: Callable[[Any], Any]) -> Any:
            return recipe(asarray(logits[1]), asarray(boxes[1]), asarray(gt_boxes), asarray(gt_labels),
                          aux=[(asarray(logits[0]), asarray(boxes[0]))])

        return {}, run

    def __init__(
        self,
        cost_class: float = 1.0,
        cost_bbox: float = 5.0,
        cost_giou: float = 2.0,
        loss_ce: float = 1.0,
        loss_bbox: float = 5.0,
        loss_giou: float = 2.0,
        eos_coef: float = 0.1,
        *,
        matcher: Callable[..., Any] | None = None,
        weights: Mapping[str, float] | None = None,
        validate: bool = True,
        normalize_over: str = "local",
    ) -> None:
        self.eos_coef = v.check_number(eos_coef, "eos_coef")
        own = {"loss_ce": v.check_number(loss_ce, "loss_ce", minimum=None),
               "loss_bbox": v.check_number(loss_bbox, "loss_bbox", minimum=None),
               "loss_giou": v.check_number(loss_giou, "loss_giou", minimum=None)}
        super().__init__(weights={**own, **(weights or {})}, validate=validate, normalize_over=normalize_over)
        self.weights = _LayerWeights(self.weights)
        self.matcher = matcher if matcher is not None else HungarianMatcher(cost_class, cost_bbox, cost_giou)

    def __repr__(self) -> str:
        return (f"DETRLoss(matcher={self.matcher!r}, weights={dict(self.weights)}, eos_coef={self.eos_coef}, "
                f"normalize_over={self.normalize_over!r})")

    # -- stages ------------------------------------------------------------------
    def ground_truth(self, class_logits: Any, gt_boxes: Any, gt_labels: Any, *,
                     validate: bool | None = None) -> GroundTruth:
        """Ground truth padded to ``(N, G, ...)``, checked as cxcywh with labels in ``[0, K - 1)`` (host arrays)."""
        backend = self.backend_of(class_logits, "class_logits")
        n, k = int(class_logits.shape[0]), int(class_logits.shape[-1])
        gt = normalize_ground_truth(backend, gt_boxes, gt_labels, like=class_logits, batch_size=n, validate=False)
        if (self.validate if validate is None else validate) and backend.is_host_array(gt.labels) and n > 0:
            self._check_ground_truth(backend, gt, gt_boxes, k - 1)
        return gt

    @staticmethod
    def _check_ground_truth(backend: Backend, gt: GroundTruth, gt_boxes: Any, num_classes: int) -> None:
        real = gt.labels >= 0
        where = _first(backend, real & ~gt.valid)
        if where is not None:
            i, j = where
            box = gt_boxes[i][j, :] if isinstance(gt_boxes, (list, tuple)) else gt_boxes[i, j, :]
            raise ValueError(f"ground-truth box {j} of image {i} (label {int(gt.labels[i, j])}) is not finite: "
                             f"{_coords(box)} (label -1 marks padding, which may hold anything); "
                             "pass validate=False to skip this check")
        where = _first(backend, real & ((gt.boxes[..., 2] <= 0) | (gt.boxes[..., 3] <= 0)))
        if where is not None:
            i, j = where
            raise ValueError(f"degenerate ground-truth box {j} of image {i} (label {int(gt.labels[i, j])}): "
                             f"{_coords(gt.boxes[i, j, :])} (cxcywh needs w > 0 and h > 0); pass validate=False "
                             "to skip this check")
        where = _first(backend, (gt.labels < -1) | (real & (gt.labels >= num_classes)))
        if where is not None:
            i, j = where
            raise ValueError(f"gt_labels[{i}][{j}] = {int(gt.labels[i, j])} is outside [0, {num_classes}) (the "
                             f"logits' last index {num_classes} is 'no object'; -1 marks padding)")

    def _check_predictions(self, backend: Backend, class_logits: Any, pred_boxes: Any, name: str) -> None:
        check_predictions(backend, "class_logits", {"class_logits": class_logits, "pred_boxes": pred_boxes})
        if class_logits.ndim != 3 or int(class_logits.shape[-1]) < 2:
            raise ValueError(f"{name}class_logits must have shape (N, Q, K) with K >= 2 (classes and 'no object'), "
                             f"got {tuple(class_logits.shape)}")
        n, q = int(class_logits.shape[0]), int(class_logits.shape[1])
        check_shape(pred_boxes, (n, q, 4), f"{name}pred_boxes", "(N, Q, 4)")

    @staticmethod
    def _check_widths(backend: Backend, pred_boxes: Any, name: str) -> None:
        if not (backend.is_host_array(pred_boxes) and int(pred_boxes.shape[0]) > 0):
            return
        where = _first(backend, backend.xp.reshape((pred_boxes[..., 2] < 0) | (pred_boxes[..., 3] < 0),
                                                   (int(pred_boxes.shape[0]), -1)))
        if where is not None:
            i, j = where
            raise ValueError(f"{name}pred_boxes[{i}][{j}] = {_coords(pred_boxes[i, j, :])} has a negative width or "
                             "height (cxcywh); pass validate=False to skip this check")

    def targets(self, backend: Backend, matches: Any, gt: GroundTruth, num_classes: int) -> DETRTargets:
        """The per-query targets of a matching ``(N, Q)`` of the padded ground truth ``gt``."""
        xp = backend.xp
        n, q = int(matches.shape[0]), int(matches.shape[1])
        matched = matches >= 0
        index = xp.where(matched, matches, 0)
        labels = xp.where(matched, backend.take_along_axis(gt.labels, index, axis=1), num_classes)
        boxes = backend.take_along_axis(gt.boxes, xp.broadcast_to(xp.expand_dims(index, axis=-1), (n, q, 4)), axis=1)
        padding = xp.asarray(PADDING_BOX, dtype=gt.boxes.dtype, device=backend.device(gt.boxes))
        boxes = xp.where(xp.expand_dims(matched, axis=-1), boxes, padding)
        return DETRTargets(matches=matches, matched=matched, labels=labels, boxes=boxes, valid=gt.valid,
                           non_finite=gt.non_finite)

    def _match(self, backend: Backend, class_logits: Any, pred_boxes: Any, gt: GroundTruth, validate: bool | None,
               name: str = "") -> DETRTargets:
        if self.validate if validate is None else validate:
            self._check_widths(backend, pred_boxes, name)
        matches = self.matcher(class_logits, pred_boxes, gt.boxes, gt.labels, gt.valid)
        return self.targets(backend, matches, gt, int(class_logits.shape[-1]) - 1)

    def match(self, class_logits: Any, pred_boxes: Any, gt_boxes: Any, gt_labels: Any, *,
              validate: bool | None = None) -> DETRTargets:
        """The Hungarian matching of one decoder layer's queries (SciPy on the host) and its targets.

        Args:
            class_logits: ``(N, Q, K)``, the last class "no object".
            pred_boxes: ``(N, Q, 4)`` normalised cxcywh.
            gt_boxes, gt_labels: padded (label -1) or per-image cxcywh ground truth.

        Returns a :class:`DETRTargets` of static shapes, for :meth:`loss`.
        Needs SciPy (``ImportError`` saying ``pip install scipy`` without it).
        """
        backend = self.backend_of(class_logits, "class_logits")
        self._check_predictions(backend, class_logits, pred_boxes, "")
        gt = self.ground_truth(class_logits, gt_boxes, gt_labels, validate=validate)
        return self._match(backend, class_logits, pred_boxes, gt, validate)

    def loss_stage(self, class_logits: Any, pred_boxes: Any, targets: DETRTargets, *,
                   layer: int | None = None) -> LossStage:
        """The three terms of one layer on its matching: ``"loss_ce"``, ``"loss_bbox"``, ``"loss_giou"``.

        ``layer`` (an auxiliary output's index) suffixes the components
        ``_layer`` and names the gradients ``"aux_class_logits_layer"``,
        ``"aux_pred_boxes_layer"``.
        """
        backend = self.backend_of(class_logits, "class_logits")
        xp = backend.xp
        self._check_predictions(backend, class_logits, pred_boxes, "" if layer is None else f"aux[{layer}] ")
        n, q, k = (int(s) for s in class_logits.shape)
        check_shape(targets.matched, (n, q), "targets.matched", "(N, Q) of class_logits")
        suffix = "" if layer is None else f"_{layer}"
        logits_name = "class_logits" if layer is None else f"aux_class_logits_{layer}"
        boxes_name = "pred_boxes" if layer is None else f"aux_pred_boxes_{layer}"
        device = backend.device(class_logits)
        matched = targets.matched
        # the cross-entropy's weighted mean over every query: w = 1 for a class, eos_coef for "no object"
        class_weight = xp.concat([xp.ones((k - 1,), dtype=class_logits.dtype, device=device),
                                  xp.full((1,), self.eos_coef, dtype=class_logits.dtype, device=device)])
        ce_part = functools.partial(cross_entropy, weight=class_weight, reduction="none")
        # (count sums the per-query weights as it sums a mask: over every process with normalize_over="world")
        query_weight = xp.where(matched, 1.0, xp.asarray(self.eos_coef, dtype=class_logits.dtype, device=device))
        total_weight = self.count(backend, query_weight, class_logits)
        everything = xp.ones((n, q), dtype=xp.bool, device=device)
        ce = self.term(backend, "loss_ce" + suffix, "classification_loss", logits_name, class_logits,
                       targets.labels, everything, part=ce_part, normaliser=total_weight)
        box_targets = v.as_dtype_of(backend, targets.boxes, pred_boxes)
        bbox = self.term(backend, "loss_bbox" + suffix, "box_l1", boxes_name, pred_boxes, box_targets, matched,
                         part=box_l1)
        giou = self.term(backend, "loss_giou" + suffix, "box_giou", boxes_name,
                         box_convert(pred_boxes, "cxcywh", "xyxy"), box_convert(box_targets, "cxcywh", "xyxy"),
                         matched, part=box_giou, source=pred_boxes,
                         pullback=functools.partial(_cxcywh_pullback, backend))
        return LossStage(backend=backend, targets=targets, aux={"matched": matched},
                         normaliser=self.count(backend, targets.valid, pred_boxes), terms=(ce, bbox, giou),
                         non_finite=targets.non_finite)

    def loss(self, class_logits: Any, pred_boxes: Any, targets: DETRTargets) -> RecipeResult:
        """The final layer's three components on a matching (static shapes: compiles with ``fullgraph=True``)."""
        return self.evaluate(self.loss_stage(class_logits, pred_boxes, targets))

    def stages(self, class_logits: Any, pred_boxes: Any, gt_boxes: Any, gt_labels: Any, *,
               aux: Sequence[tuple[Any, Any]] | None = None, validate: bool | None = None) -> tuple[LossStage, ...]:
        """One loss stage per layer, the final first, then each auxiliary output (each matched anew)."""
        backend = self.backend_of(class_logits, "class_logits")
        self._check_predictions(backend, class_logits, pred_boxes, "")
        layers = list(aux or ())
        for i, layer in enumerate(layers):
            if not isinstance(layer, (tuple, list)) or len(layer) != 2:
                raise TypeError(f"aux[{i}] must be a (class_logits, pred_boxes) pair, got {type(layer).__name__}")
            check_same(backend, layer[0], f"aux[{i}] class_logits", "class_logits")
            check_same(backend, layer[1], f"aux[{i}] pred_boxes", "class_logits")
            self._check_predictions(backend, layer[0], layer[1], f"aux[{i}] ")
            if tuple(layer[0].shape) != tuple(class_logits.shape):
                raise ValueError(f"aux[{i}] class_logits shape {tuple(layer[0].shape)} must equal class_logits "
                                 f"shape {tuple(class_logits.shape)}")
        gt = self.ground_truth(class_logits, gt_boxes, gt_labels, validate=validate)
        out = [self.loss_stage(class_logits, pred_boxes, self._match(backend, class_logits, pred_boxes, gt,
                                                                             validate))]
        for i, (logits, boxes) in enumerate(layers):
            targets = self._match(backend, logits, boxes, gt, validate, f"aux[{i}] ")
            out.append(self.loss_stage(logits, boxes, targets, layer=i))
        return tuple(out)

    def __call__(self, class_logits: Any, pred_boxes: Any, gt_boxes: Any, gt_labels: Any, *,
                 aux: Sequence[tuple[Any, Any]] | None = None, validate: bool | None = None) -> RecipeResult:
        return self.evaluate(*self.stages(class_logits, pred_boxes, gt_boxes, gt_labels, aux=aux, validate=validate))


@hookimpl
def polyloss_register_recipes() -> dict[str, Callable[..., Any]]:
    return {"detr": DETRLoss}
