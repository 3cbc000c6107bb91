"""The ``"ssd"`` recipe: SSD's MultiBox loss (Liu et al., *SSD: Single Shot MultiBox Detector*, ECCV 2016).

Numbers follow torchvision's ``SSD.compute_loss`` except for one documented
fix: hard-negative mining never selects a positive prior, so no prior is
counted twice (torchvision counts positives again when they exceed a quarter
of the priors).
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
from typing import cast

import numpy as np

from polyloss import _checks as v
from polyloss._api import RecipeResult
from polyloss._hooks import hookimpl
from polyloss._namespace import check_same
from polyloss.boxes import BoxCoder
from polyloss.boxes import BoxWeights
from polyloss.boxes import Matcher
from polyloss.boxes import SSDMatcher
from polyloss.boxes import encode_matched
from polyloss.boxes import hard_negative_mining
from polyloss.detection._base import DetectionRecipe
from polyloss.detection._base import GroundTruth
from polyloss.detection._base import LossPart
from polyloss.detection._base import LossStage
from polyloss.detection._base import SampleRun
from polyloss.detection._base import check_num_classes
from polyloss.detection._base import check_predictions
from polyloss.detection._base import check_shape
from polyloss.detection._base import match_boxes
from polyloss.detection._base import normalize_ground_truth
from polyloss.detection._base import sample_grid_boxes
from polyloss.detection._base import sample_ground_truth
from polyloss.detection._base import smooth_l1
from polyloss.detection._base import softmax_cross_entropy
from polyloss.typing import ArrayT

__all__ = ["SSDLoss", "SSDTargets"]


@dataclass(frozen=True)
class SSDTargets:
    """Per-prior targets of a batch (from :meth:`SSDLoss.assign`).

    Attributes:
        matches: ``(N, P)`` int64 index of the matched ground truth, -1 for background.
        positive: ``(N, P)`` bool, True for matched priors.
        labels: ``(N, P)`` int64 class target (0 = background).
        box_targets: ``(N, P, 4)`` encoded regression targets (0 for background).
        non_finite: 0-d bool, a real ground-truth box was not finite (unvalidated;
            see :attr:`polyloss.detection.GroundTruth.non_finite`), or None.
    """

    matches: Any
    positive: Any
    labels: Any
    box_targets: Any
    non_finite: Any = None


class SSDLoss(DetectionRecipe):
    r"""SSD MultiBox loss, registered as recipe ``"ssd"``.

    .. math::
        L = \frac{1}{\max(1, N_{pos})}\Big(\sum_{i \in pos \cup neg} \mathrm{CE}_i
            + \alpha \sum_{i \in pos} \mathrm{smoothL1}_\beta(\ell_i - g_i)\Big)

    with :math:`N_{pos}` the matched priors of the whole batch.

    Args:
        num_classes: C, including the background class 0.
        iou_threshold: a prior matches its best ground truth at IoU >= this (0.5);
            then every ground truth also takes its best prior (the later one wins
            a prior two ground truths pick).
        neg_pos_ratio: per image, at most ``neg_pos_ratio`` x its positives hard
            negatives, ranked by their cross-entropy (3); never a positive.
        alpha: weight of the localisation term (1.0).
        box_weights: box coder weights (10, 10, 5, 5), i.e. variances (0.1, 0.2).
        beta: smooth L1 threshold (1.0).
        validate: check ground truth on host backends (True).
        normalize_over: ``"local"`` (default): :math:`N_{pos}` counts this
            process's batch; ``"world"``: it counts the batch of every process
            of a data-parallel job (all-reduced through the backend, e.g.
            ``torch.distributed``) and each process's loss is
            ``W * local_sum / max(1, global N_pos)`` (``W`` the world size), so
            that gradients averaged over the workers (DDP) and the mean of the
            workers' losses equal those of one process on the concatenated
            batch. Matching and mining are per image, so they are unaffected.
            Without an initialised process group ``"world"`` equals ``"local"``.

    The arguments are the config of ``pl.get_recipe("ssd", ...)``.

    Parts (constructor keywords; or override the attributes in a subclass):
    ``matcher``, ``box_coder``, ``classification_loss`` (``(logits (N, P, C),
    labels (N, P)) -> (N, P)``), ``regression_loss`` (``(deltas, targets)
    -> (N, P, 4)`` or ``(N, P)``), ``negative_miner`` (``(loss (N, P),
    positive (N, P)) -> negative mask``), ``weights`` (``{"loc": alpha,
    "conf": 1.0}`` by default).

    Call ``recipe(box_deltas (N, P, 4), class_logits (N, P, C), priors (P, 4),
    gt_boxes, gt_labels)`` with xyxy priors and ground truth (padded with label
    -1, or per-image sequences); it returns a :class:`polyloss.RecipeResult`
    with components ``"loc"`` and ``"conf"``. An image without ground truth
    contributes nothing (no positives, so no negatives either); a batch
    without any gives 0. ``recipe.value_and_grad(...)`` (the call's
    arguments) returns the result and ``{"box_deltas": ..., "class_logits":
    ...}`` in closed form, matching and mining constants.

    Stages: :meth:`assign`, :meth:`mine`, :meth:`loss_stage` (the terms),
    :meth:`loss` (their result), :meth:`stages` (a whole call).

    Edge rules (every backend and path: eager, ``value_and_grad``, torch
    autograd, ``torch.func``, compiled):

    - padding (label -1) is ignored whatever it holds (NaN, inf);
    - a real box (label >= 0) with a non-finite coordinate, ``x2 <= x1`` or
      ``y2 <= y1``, or a label outside ``[1, num_classes)``, raises
      ``ValueError`` naming the image and the box where the values can be read
      without a device sync (NumPy, array-api-strict, PyTorch on the CPU
      outside tracing); elsewhere, or with ``validate=False``, a non-finite real
      box takes no part in matching and both components are NaN;
    - NaN in ``class_logits`` makes ``"conf"`` NaN and NaN in ``box_deltas``
      makes ``"loc"`` NaN, even at priors that are neither positive nor mined
      (a NaN cross-entropy ranks as the hardest negative);
    - an empty batch (``N = 0``, ground truth as empty lists or ``(0, G, 4)``)
      and images without ground truth give 0, never NaN;
    - ``neg_pos_ratio`` may be ``inf``: every negative of an image with a
      positive is mined.
    """

    component_names = ("loc", "conf")

    @classmethod
    def sample_data(cls, seed: int = 0) -> tuple[dict[str, Any], SampleRun]:
        """Two images of up to three boxes (one padding entry), 72 priors, 4 classes."""
        rng = np.random.default_rng(seed)
        priors = sample_grid_boxes(6, 100.0)
        gt_boxes, gt_labels = sample_ground_truth(rng, 2, 3, 100.0, 4)
        deltas = rng.normal(size=(2, priors.shape[0], 4))
        logits = rng.normal(size=(2, priors.shape[0], 4))

        def run(recipe: Any, asarray: Callable[[Any], Any]) -> Any:
            return recipe(asarray(deltas), asarray(logits), asarray(priors), asarray(gt_boxes), asarray(gt_labels))

        return {"num_classes": 4}, run

    def __init__(
        self,
        num_classes: int,
        iou_threshold: float = 0.5,
        neg_pos_ratio: float = 3,
        alpha: float = 1.0,
        box_weights: Sequence[float] = (10.0, 10.0, 5.0, 5.0),
        beta: float = 1.0,
        *,
        matcher: Matcher | None = None,
        box_coder: BoxCoder | None = None,
        classification_loss: LossPart | None = None,
        regression_loss: LossPart | None = None,
        negative_miner: Callable[[Any, Any], Any] | None = None,
        weights: Mapping[str, float] | None = None,
        validate: bool = True,
        normalize_over: str = "local",
    ) -> None:
        self.num_classes = check_num_classes(num_classes)
        self.iou_threshold = v.check_number(iou_threshold, "iou_threshold", maximum=1.0)
        self.neg_pos_ratio = v.check_number(neg_pos_ratio, "neg_pos_ratio")
        self.alpha = v.check_number(alpha, "alpha")
        self.beta = v.check_number(beta, "beta")
        super().__init__(weights={"loc": self.alpha, **(weights or {})}, validate=validate,
                         normalize_over=normalize_over)
        self.matcher = matcher if matcher is not None else SSDMatcher.with_threshold(self.iou_threshold)
        self.box_coder = box_coder if box_coder is not None else BoxCoder(cast(BoxWeights, tuple(box_weights)))
        self.classification_loss = classification_loss if classification_loss is not None else softmax_cross_entropy
        self.regression_loss = regression_loss if regression_loss is not None else smooth_l1(self.beta)
        self.negative_miner = (
            negative_miner
            if negative_miner is not None
            else functools.partial(hard_negative_mining, neg_pos_ratio=self.neg_pos_ratio)
        )

    def __repr__(self) -> str:
        return (f"SSDLoss(num_classes={self.num_classes}, iou_threshold={self.iou_threshold}, "
                f"neg_pos_ratio={self.neg_pos_ratio}, alpha={self.alpha}, "
                f"box_weights={self.box_coder.weights}, beta={self.beta}, normalize_over={self.normalize_over!r})")

    # -- stages ------------------------------------------------------------------
    def ground_truth(self, priors: Any, gt_boxes: Any, gt_labels: Any, *, batch_size: int,
                     validate: bool | None = None) -> GroundTruth:
        """Ground truth padded to ``(N, G, ...)`` (see :func:`normalize_ground_truth`)."""
        backend = self.backend_of(priors, "priors")
        return normalize_ground_truth(
            backend, gt_boxes, gt_labels, like=priors, batch_size=batch_size,
            validate=self.validate if validate is None else validate, num_classes=self.num_classes,
        )

    def assign(self, priors: Any, gt_boxes: Any, gt_labels: Any, *, batch_size: int | None = None,
               validate: bool | None = None) -> SSDTargets:
        """Match priors to ground truth and encode the regression targets.

        Args:
            priors: ``(P, 4)`` (or per image ``(N, P, 4)``) xyxy priors.
            gt_boxes, gt_labels: padded or per-image ground truth.
            batch_size: N (taken from the ground truth when omitted).
        """
        if batch_size is None:
            batch_size = len(gt_boxes) if isinstance(gt_boxes, (list, tuple)) else int(gt_boxes.shape[0])
        return self._assign(priors, gt_boxes, gt_labels, batch_size=batch_size, validate=validate)[0]

    def _assign(self, priors: Any, gt_boxes: Any, gt_labels: Any, *, batch_size: int, validate: bool | None,
                encode: bool = True) -> tuple[SSDTargets, GroundTruth]:
        """:meth:`assign` and the normalised ground truth; with ``encode=False`` ``box_targets`` is None
        (the call encodes the positives alone, :meth:`_box_term_at_positives`)."""
        backend = self.backend_of(priors, "priors")
        v.check_floating(backend, priors, "priors")
        if priors.ndim not in (2, 3) or priors.shape[-1] != 4:
            raise ValueError(f"priors must have shape (P, 4) or (N, P, 4), got {tuple(priors.shape)}")
        gt = self.ground_truth(priors, gt_boxes, gt_labels, batch_size=batch_size, validate=validate)
        xp = backend.xp
        matches = match_boxes(backend, self.matcher, gt.boxes, priors, gt.valid)  # (N, P)
        positive = matches >= 0
        index = matches * xp.astype(positive, matches.dtype)  # matches are -2, -1 or an index
        labels = backend.take_along_axis(gt.labels, index, axis=1) * xp.astype(positive, gt.labels.dtype)
        box_targets = (encode_matched(self.box_coder, backend, gt.boxes, gt.valid, index, priors, positive)
                       if encode else None)
        return SSDTargets(matches=matches, positive=positive, labels=labels, box_targets=box_targets,
                          non_finite=gt.non_finite), gt

    def mine(self, class_loss: Any, positive: Any) -> Any:
        """Hard negatives ``(N, P)``: per image the highest-loss non-positive priors.

        A NaN loss ranks first (the hardest negative), so mining never hides it.
        """
        xp = self.backend_of(class_loss, "class_loss").xp
        return self.negative_miner(xp.where(xp.isnan(class_loss), math.inf, class_loss), positive)

    def loss_stage(self, box_deltas: Any, class_logits: Any, targets: SSDTargets) -> LossStage:
        """The terms of :meth:`loss`: ``"loc"`` over the positives, ``"conf"`` over positives and hard negatives.

        The hard negatives are mined here (:meth:`mine`); both terms are divided
        by max(1, positives in the batch).
        """
        return self._loss_stage(box_deltas, class_logits, targets)

    def _loss_stage(self, box_deltas: Any, class_logits: Any, targets: SSDTargets, *, priors: Any = None,
                    gt: GroundTruth | None = None) -> LossStage:
        """:meth:`loss_stage`; without ``targets.box_targets`` (the call's own assignment, with ``priors``
        and ``gt``) the ``"loc"`` term is encoded and computed at the positives alone where the backend
        lists them cheaply (eager host arrays), else on every prior."""
        backend = self.backend_of(class_logits, "class_logits")
        check_predictions(backend, "class_logits", {"class_logits": class_logits, "box_deltas": box_deltas})
        n, p = (int(s) for s in targets.labels.shape)
        check_shape(class_logits, (n, p, self.num_classes), "class_logits", "(N, P, num_classes)")
        check_shape(box_deltas, (n, p, 4), "box_deltas", "(N, P, 4)")
        positive = targets.positive
        # "loc" first: autograd runs the later "conf" first, so that the box gradient is not yet allocated
        # at the peak of the cross-entropy's backward (torchvision's peak)
        loc = None
        if targets.box_targets is None:
            assert priors is not None and gt is not None
            loc = self._box_term_at_positives(backend, box_deltas, priors, gt, targets)
            if loc is None:
                index = targets.matches * backend.xp.astype(positive, targets.matches.dtype)
                targets = replace(targets, box_targets=encode_matched(self.box_coder, backend, gt.boxes, gt.valid,
                                                                      index, priors, positive))
        if loc is None:
            box_targets = v.as_dtype_of(backend, targets.box_targets, box_deltas)
            loc = self.term(backend, "loc", "regression_loss", "box_deltas", box_deltas, box_targets, positive)
        conf = self.term(backend, "conf", "classification_loss", "class_logits", class_logits, targets.labels,
                         positive)
        negative = self.mine(conf.loss, positive)
        conf = replace(conf, mask=positive | negative)
        return LossStage(
            backend=backend, targets=targets, aux={"positive": positive, "negative": negative},
            normaliser=self.count(backend, positive, class_logits), terms=(loc, conf),
            non_finite=targets.non_finite,
        )

    def _box_term_at_positives(self, backend: Any, box_deltas: Any, priors: Any, gt: GroundTruth,
                               targets: SSDTargets) -> Any:
        """The ``"loc"`` term on the positives alone, ``(1, K, 4)``, or None where the backend does not list
        them cheaply (or ``box_deltas`` holds a NaN: then every path takes the whole batch, same gradient).

        Its gradient goes back to ``(N, P, 4)`` by :meth:`Backend.scatter_rows`; NaN anywhere in
        ``box_deltas`` still reaches ``"loc"`` (its ``source``).
        """
        xp = backend.xp
        positions = backend.nonzero_positions(targets.positive)
        n, p = (int(s) for s in targets.positive.shape)
        if positions is None or (n * p and bool(xp.isnan(xp.max(box_deltas)))):
            return None
        g = int(gt.boxes.shape[1])
        image = positions // p
        box_rows = image * g + xp.take(xp.reshape(targets.matches, (-1,)), positions)
        matched = xp.take(xp.reshape(gt.boxes, (-1, 4)), box_rows, axis=0)
        prior_rows = positions - image * p if priors.ndim == 2 else positions
        anchors = xp.take(xp.reshape(priors, (-1, 4)), prior_rows, axis=0)
        deltas = xp.expand_dims(xp.take(xp.reshape(box_deltas, (-1, 4)), positions, axis=0), axis=0)
        box_targets = xp.expand_dims(v.as_dtype_of(backend, self.box_coder.encode(matched, anchors), deltas), axis=0)
        mask = xp.ones(tuple(deltas.shape[:2]), dtype=xp.bool, device=backend.device(deltas))

        def pullback(grad: Any) -> Any:  # (1, K, 4) back to the priors they were taken from, (N, P, 4)
            return xp.reshape(backend.scatter_rows(grad[0, ...], positions, n * p), (n, p, 4))

        return self.term(backend, "loc", "regression_loss", "box_deltas", deltas, box_targets, mask,
                         source=box_deltas, pullback=pullback)

    def loss(self, box_deltas: Any, class_logits: Any, targets: SSDTargets) -> RecipeResult:
        """Both terms on assigned targets, normalised by max(1, positives in the batch)."""
        return self.evaluate(self.loss_stage(box_deltas, class_logits, targets))

    def stages(self, box_deltas: Any, class_logits: Any, priors: Any, gt_boxes: Any, gt_labels: Any, *,
               validate: bool | None = None) -> tuple[LossStage]:
        """The call's one loss stage: :meth:`assign` (``priors`` checked against ``class_logits``), then
        :meth:`loss_stage`."""
        backend = self.backend_of(class_logits, "class_logits")
        check_same(backend, priors, "priors", "class_logits")
        if class_logits.ndim != 3:
            raise ValueError(f"class_logits must have shape (N, P, num_classes), got {tuple(class_logits.shape)}")
        n, p = int(class_logits.shape[0]), int(class_logits.shape[1])
        if priors.ndim < 2 or int(priors.shape[-2]) != p:
            raise ValueError(f"priors shape {tuple(priors.shape)} must be (P, 4) with P = {p} "
                             f"(class_logits shape {tuple(class_logits.shape)})")
        own = type(self).assign is SSDLoss.assign and type(self).loss_stage is SSDLoss.loss_stage
        if not own:
            targets = self.assign(priors, gt_boxes, gt_labels, batch_size=n, validate=validate)
            return (self.loss_stage(box_deltas, class_logits, targets),)
        targets, gt = self._assign(priors, gt_boxes, gt_labels, batch_size=n, validate=validate, encode=False)
        return (self._loss_stage(box_deltas, class_logits, targets, priors=priors, gt=gt),)

    def __call__(
        self,
        box_deltas: ArrayT,
        class_logits: Any,
        priors: Any,
        gt_boxes: Any,
        gt_labels: Any,
        *,
        validate: bool | None = None,
    ) -> RecipeResult[ArrayT]:
        return self.evaluate(*self.stages(box_deltas, class_logits, priors, gt_boxes, gt_labels, validate=validate))


@hookimpl
def polyloss_register_recipes() -> dict[str, Callable[..., Any]]:
    return {"ssd": SSDLoss}
