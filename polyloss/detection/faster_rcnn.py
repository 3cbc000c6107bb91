"""The ``"faster_rcnn"`` recipe: RPN and Fast R-CNN head losses (Ren et al., NeurIPS 2015).

Numbers follow torchvision's ``RegionProposalNetwork.assign_targets_to_anchors``
+ ``compute_loss`` and ``RoIHeads.select_training_samples`` + ``fastrcnn_loss``,
batched over images with padded ground truth and no per-image Python loop.
One documented difference: a low-quality match needs an IoU above 0 (a ground
truth that overlaps no anchor makes no anchor positive).
"""

from __future__ import annotations

from collections.abc import Callable
from collections.abc import Mapping
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from typing import cast

import numpy as np

from polyloss import _checks as v
from polyloss._api import RecipeResult
from polyloss._hooks import hookimpl
from polyloss.backend import Backend
from polyloss.boxes import BalancedSampler
from polyloss.boxes import BoxCoder
from polyloss.boxes import BoxWeights
from polyloss.boxes import Matcher
from polyloss.boxes import encode_matched
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
from polyloss.detection._base import pad_sequence
from polyloss.detection._base import sample_grid_boxes
from polyloss.detection._base import sample_ground_truth
from polyloss.detection._base import sigmoid_objectness_loss
from polyloss.detection._base import smooth_l1
from polyloss.detection._base import softmax_cross_entropy
from polyloss.typing import ArrayT

__all__ = ["AnchorTargets", "FasterRCNNLoss", "SampledProposals"]

_CONFIG = object()  # "use the recipe's configured seed"


@dataclass(frozen=True)
class AnchorTargets:
    """RPN targets of a batch (from :meth:`FasterRCNNLoss.assign_anchors`).

    Attributes:
        labels: ``(N, A)`` int64: 1 object, 0 background, -1 ignored (between thresholds).
        box_targets: ``(N, A, 4)`` encoded targets (0 where the label is not 1).
    """

    labels: Any
    box_targets: Any


@dataclass(frozen=True)
class SampledProposals:
    """What the box head runs on (from :meth:`FasterRCNNLoss.sample_proposals`).

    Attributes:
        boxes: ``(N, R, 4)`` sampled proposals (ground truth included), sampled
            ones first in their original order; padding rows hold an unsampled
            box (possibly an all-zero padding box) and are ignored by the loss.
        labels: ``(N, R)`` int64 class: >= 1 object, 0 background, -1 padding.
        targets: ``(N, R, 4)`` encoded regression targets (0 for background and padding).
        non_finite: 0-d bool, a real ground-truth box was not finite (unvalidated;
            see :attr:`polyloss.detection.GroundTruth.non_finite`), or None.
    """

    boxes: Any
    labels: Any
    targets: Any
    non_finite: Any = None


def _ignored(xp: Any, matches: Any) -> Any:
    """int64 -1 between the thresholds (match -2), else 0: the label of an unmatched prediction (branch-free)."""
    return -xp.astype(matches == Matcher.BETWEEN_THRESHOLDS, xp.int64)


def _anchor_labels(xp: Any, matches: Any) -> Any:
    """int64 1 for a match, 0 below the low threshold (-1), -1 between the thresholds (-2)."""
    return xp.astype(matches >= 0, xp.int64) + _ignored(xp, matches)


def _count_int(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{name} must be a non-negative int, got {value!r}")
    return value


def _thresholds(stage: str, fg_iou: object, bg_iou: object) -> tuple[float, float]:
    """``(fg, bg)`` IoU thresholds of a stage, checked under the recipe's own option names."""
    fg = v.check_number(fg_iou, f"{stage}_fg_iou")
    bg = v.check_number(bg_iou, f"{stage}_bg_iou")
    if bg > fg:
        raise ValueError(f"{stage}_bg_iou={bg} must be <= {stage}_fg_iou={fg} (IoU below {stage}_bg_iou is "
                         f"background, at least {stage}_fg_iou foreground, ignored between)")
    return fg, bg


class FasterRCNNLoss(DetectionRecipe):
    r"""Faster R-CNN training losses, registered as recipe ``"faster_rcnn"``.

    RPN: anchors with IoU >= ``rpn_fg_iou`` (or the best anchors of a ground
    truth, when that IoU is above 0) are objects, IoU < ``rpn_bg_iou`` are
    background, the rest ignored; ``rpn_batch_size`` anchors per image are
    sampled, at most ``rpn_positive_fraction`` of them objects. Head: the
    ground truth is appended to the proposals, proposals with IoU >=
    ``roi_fg_iou`` take their ground truth's class, IoU < ``roi_bg_iou`` are
    background; ``roi_batch_size`` per image are sampled with at most
    ``roi_positive_fraction`` objects.

    Losses (torchvision's normalisation): ``rpn_objectness`` and
    ``roi_classifier`` are means over the sampled set of the whole batch;
    ``rpn_box`` and ``roi_box`` are smooth L1 (``beta``) summed over sampled
    positives and divided by the number sampled. With nothing sampled they are 0.

    Config: ``num_classes`` (background 0 included), ``rpn_fg_iou=0.7``,
    ``rpn_bg_iou=0.3``, ``rpn_batch_size=256``, ``rpn_positive_fraction=0.5``,
    ``roi_fg_iou=0.5``, ``roi_bg_iou=0.5``, ``roi_batch_size=512``,
    ``roi_positive_fraction=0.25``, ``rpn_box_weights=(1, 1, 1, 1)``,
    ``roi_box_weights=(10, 10, 5, 5)``, ``beta=1/9``, ``seed=None`` (an int
    gives the same sample for the same inputs on every call, on every backend,
    eager or compiled; a 0-d integer array is traced, e.g. a step counter
    under ``jax.jit``; None draws fresh; a ``numpy.random.Generator`` is drawn
    from; see :func:`polyloss.boxes.random_keys`), ``validate=True``,
    ``normalize_over="local"``.

    ``normalize_over``: with ``"local"`` the sampled sets counted are those of
    this process's batch; with ``"world"`` the two counts (sampled anchors,
    sampled proposals) are summed over every process of a data-parallel job
    through the backend (``torch.distributed`` when a process group is
    initialised, else the same as ``"local"``) and each process's component
    is ``W * local_sum / max(1, global count)`` (``W`` the world size): the
    gradients averaged over the workers (DDP) and the mean of the workers'
    losses equal those of one process on the concatenated batch, provided each
    image gets the same sample. Matching is per image; random sampling draws
    keys for the whole ``(N, A)`` batch from one stream, so a worker holding
    half of the batch draws different samples than one process would with
    the same seed: equality is exact when the per-image sample is the same
    (e.g. when the batch sizes are large enough that every candidate is taken).

    Parts (constructor keywords, or attributes a subclass overrides):
    ``rpn_matcher``, ``roi_matcher``, ``rpn_box_coder``, ``roi_box_coder``,
    ``rpn_sampler``, ``roi_sampler``, ``objectness_loss`` (``(logits (N, A),
    target (N, A) float) -> (N, A)``), ``classification_loss``,
    ``regression_loss`` and ``weights`` (per component, default 1).

    Stages: :meth:`assign_anchors`, :meth:`rpn_loss` (its terms:
    :meth:`rpn_stage`), :meth:`sample_proposals`, :meth:`roi_loss` (its terms:
    :meth:`roi_stage`), :meth:`combine`; calling the recipe runs
    ``combine(rpn_loss(...), roi_loss(...))``. Closed-form gradients:
    :meth:`rpn_value_and_grad`, :meth:`roi_value_and_grad` and
    ``value_and_grad`` (the call's arguments; keys ``"objectness"``,
    ``"rpn_deltas"``, ``"class_logits"``, ``"box_deltas"``), matching and
    sampling constants.

    Edge rules (every backend and path: eager, ``value_and_grad``, torch
    autograd, ``torch.func``, compiled):

    - ``rpn_bg_iou > rpn_fg_iou`` (or ``roi_bg_iou > roi_fg_iou``) raises
      ``ValueError`` naming both options;
    - padding (label -1) is ignored whatever it holds (NaN, inf);
    - a real box with a non-finite coordinate, ``x2 <= x1`` or ``y2 <= y1``,
      or a label outside ``[1, num_classes)``, raises ``ValueError`` naming
      the image and the box where the values can be read without a device
      sync; elsewhere, or with ``validate=False``, a non-finite real box takes
      no part in matching and every component is NaN;
    - NaN in a prediction array makes the components computed from it NaN,
      even where sampling leaves that anchor or proposal out (or, for
      ``box_deltas``, at a class the row is not labelled with);
    - an empty batch (``N = 0``; ``gt_boxes=[]``, ``gt_labels=[]``, and
      ``(0, R0, 4)`` proposals) and images without ground truth give zero
      box terms, never NaN.
    """

    component_names = ("rpn_objectness", "rpn_box", "roi_classifier", "roi_box")

    @classmethod
    def sample_data(cls, seed: int = 0) -> tuple[dict[str, Any], SampleRun]:
        """Two images of up to three boxes, 72 anchors, 20 proposals per image, 4 classes.

        The sampler's batch sizes exceed the candidate counts, so sampling
        takes every candidate and the backends agree exactly.
        """
        rng = np.random.default_rng(seed)
        config = {"num_classes": 4, "rpn_batch_size": 10_000, "roi_batch_size": 10_000, "seed": 0}
        anchors = sample_grid_boxes(6, 100.0)
        gt_boxes, gt_labels = sample_ground_truth(rng, 2, 3, 100.0, 4)
        objectness = rng.normal(size=(2, anchors.shape[0]))
        rpn_deltas = 0.1 * rng.normal(size=(2, anchors.shape[0], 4))
        proposals = np.broadcast_to(anchors[:20], (2, 20, 4)) + rng.uniform(-2, 2, size=(2, 20, 4))
        proposals[..., 2:] = np.maximum(proposals[..., 2:], proposals[..., :2] + 1.0)

        def run(recipe: Any, asarray: Callable[[Any], Any]) -> Any:
            sampled = recipe.sample_proposals(asarray(proposals), asarray(gt_boxes), asarray(gt_labels))
            n, r = sampled.labels.shape
            head = np.random.default_rng(seed + 1)  # the same head outputs on every backend
            class_logits = asarray(head.normal(size=(n, r, 4)))
            box_deltas = asarray(0.1 * head.normal(size=(n, r, 4, 4)))
            return recipe(asarray(anchors), asarray(objectness), asarray(rpn_deltas), asarray(gt_boxes),
                          asarray(gt_labels), class_logits, box_deltas, sampled)

        return config, run

    def __init__(
        self,
        num_classes: int,
        rpn_fg_iou: float = 0.7,
        rpn_bg_iou: float = 0.3,
        rpn_batch_size: int = 256,
        rpn_positive_fraction: float = 0.5,
        roi_fg_iou: float = 0.5,
        roi_bg_iou: float = 0.5,
        roi_batch_size: int = 512,
        roi_positive_fraction: float = 0.25,
        rpn_box_weights: Sequence[float] = (1.0, 1.0, 1.0, 1.0),
        roi_box_weights: Sequence[float] = (10.0, 10.0, 5.0, 5.0),
        beta: float = 1.0 / 9,
        seed: Any = None,
        *,
        rpn_matcher: Matcher | None = None,
        roi_matcher: Matcher | None = None,
        rpn_box_coder: BoxCoder | None = None,
        roi_box_coder: BoxCoder | None = None,
        rpn_sampler: Callable[..., tuple[Any, Any]] | None = None,
        roi_sampler: Callable[..., tuple[Any, Any]] | None = None,
        objectness_loss: LossPart | None = None,
        classification_loss: LossPart | None = None,
        regression_loss: LossPart | None = None,
        weights: Mapping[str, float] | None = None,
        validate: bool = True,
        normalize_over: str = "local",
    ) -> None:
        self.num_classes = check_num_classes(num_classes)
        super().__init__(weights=weights, validate=validate, normalize_over=normalize_over)
        self.rpn_batch_size = _count_int("rpn_batch_size", rpn_batch_size)
        self.roi_batch_size = _count_int("roi_batch_size", roi_batch_size)
        self.beta = v.check_number(beta, "beta")
        self.seed = seed
        self.rpn_matcher = rpn_matcher if rpn_matcher is not None else Matcher(
            *_thresholds("rpn", rpn_fg_iou, rpn_bg_iou), allow_low_quality_matches=True)
        self.roi_matcher = roi_matcher if roi_matcher is not None else Matcher(
            *_thresholds("roi", roi_fg_iou, roi_bg_iou))
        self.rpn_box_coder = rpn_box_coder if rpn_box_coder is not None else BoxCoder(
            cast(BoxWeights, tuple(rpn_box_weights)))
        self.roi_box_coder = roi_box_coder if roi_box_coder is not None else BoxCoder(
            cast(BoxWeights, tuple(roi_box_weights)))
        self.rpn_sampler = rpn_sampler if rpn_sampler is not None else BalancedSampler(
            self.rpn_batch_size, v.check_number(rpn_positive_fraction, "rpn_positive_fraction", maximum=1.0))
        self.roi_sampler = roi_sampler if roi_sampler is not None else BalancedSampler(
            self.roi_batch_size, v.check_number(roi_positive_fraction, "roi_positive_fraction", maximum=1.0))
        self.objectness_loss = objectness_loss if objectness_loss is not None else sigmoid_objectness_loss
        self.classification_loss = classification_loss if classification_loss is not None else softmax_cross_entropy
        self.regression_loss = regression_loss if regression_loss is not None else smooth_l1(self.beta)

    def __repr__(self) -> str:
        return (f"FasterRCNNLoss(num_classes={self.num_classes}, seed={self.seed!r}, "
                f"normalize_over={self.normalize_over!r})")

    # -- helpers -----------------------------------------------------------------
    def _seed(self, seed: Any, stream: int) -> Any:
        """The configured (or given) seed, split into independent streams per stage."""
        seed = self.seed if seed is _CONFIG else seed  # checked where it is used (polyloss.boxes.random_keys)
        if isinstance(seed, (list, tuple)):
            return (*seed, stream)
        if seed is None or hasattr(seed, "bit_generator"):  # fresh draws; a numpy.random.Generator is drawn from
            return seed
        return (seed, stream)

    def _gt(self, backend: Backend, gt_boxes: Any, gt_labels: Any, like: Any, batch_size: int,
            validate: bool | None, labels_required: bool) -> GroundTruth:
        return normalize_ground_truth(
            backend, gt_boxes, gt_labels, like=like, batch_size=batch_size,
            validate=self.validate if validate is None else validate,
            num_classes=self.num_classes if labels_required else None, labels_required=labels_required,
        )

    @staticmethod
    def _gather_boxes(backend: Backend, boxes: Any, index: Any) -> Any:
        """``boxes (N, G, 4)`` at ``index (N, K)`` -> ``(N, K, 4)``."""
        xp = backend.xp
        n, k = (int(s) for s in index.shape)
        return backend.take_along_axis(boxes, xp.broadcast_to(xp.expand_dims(index, axis=-1), (n, k, 4)), axis=1)

    # -- RPN ---------------------------------------------------------------------
    def assign_anchors(self, anchors: Any, gt: GroundTruth) -> AnchorTargets:
        """RPN labels (1 / 0 / -1) and regression targets of ``anchors`` ``(A, 4)`` or ``(N, A, 4)``."""
        backend = self.backend_of(anchors, "anchors")
        matches = match_boxes(backend, self.rpn_matcher, gt.boxes, anchors, gt.valid)
        return AnchorTargets(labels=_anchor_labels(backend.xp, matches),
                             box_targets=self._encode_anchors(backend, anchors, gt, matches))

    def _encode_anchors(self, backend: Backend, anchors: Any, gt: GroundTruth, matches: Any) -> Any:
        """``(N, A, 4)`` targets of the matched anchors (0 elsewhere)."""
        positive = matches >= 0
        index = matches * backend.xp.astype(positive, matches.dtype)  # matches are -2, -1 or an index
        return encode_matched(self.rpn_box_coder, backend, gt.boxes, gt.valid, index, anchors, positive)

    def _encode_at(self, backend: Backend, anchors: Any, gt: GroundTruth, matches: Any, positions: Any) -> Any:
        """``(K, 4)`` targets of the anchors at the flat ``positions`` of ``matches (N, A)``, all matched."""
        xp = backend.xp
        a, g = int(matches.shape[1]), int(gt.boxes.shape[1])
        image = positions // a
        box_rows = image * g + xp.take(xp.reshape(matches, (-1,)), positions)
        matched = xp.take(xp.reshape(gt.boxes, (-1, 4)), box_rows, axis=0)
        anchor_rows = positions - image * a if anchors.ndim == 2 else positions
        return self.rpn_box_coder.encode(matched, xp.take(xp.reshape(anchors, (-1, 4)), anchor_rows, axis=0))

    def rpn_loss(
        self,
        anchors: Any,
        objectness: Any,
        rpn_deltas: Any,
        gt_boxes: Any,
        gt_labels: Any = None,
        *,
        seed: Any = _CONFIG,
        validate: bool | None = None,
    ) -> RecipeResult:
        """RPN losses: components ``"rpn_objectness"`` and ``"rpn_box"``.

        Args:
            anchors: ``(A, 4)`` xyxy anchors shared by the batch, or ``(N, A, 4)``.
            objectness: ``(N, A)`` logits.
            rpn_deltas: ``(N, A, 4)`` predicted deltas.
            gt_boxes: padded ``(N, G, 4)`` or per-image sequence.
            gt_labels: only marks padding (-1); None means every box is real.
            seed: overrides the configured seed for this call.
        """
        return self.evaluate(self.rpn_stage(anchors, objectness, rpn_deltas, gt_boxes, gt_labels, seed=seed,
                                            validate=validate))

    def rpn_stage(self, anchors: Any, objectness: Any, rpn_deltas: Any, gt_boxes: Any, gt_labels: Any = None, *,
                  seed: Any = _CONFIG, validate: bool | None = None) -> LossStage:
        """The terms of :meth:`rpn_loss` with its one sample and normaliser (arguments as :meth:`rpn_loss`).

        Anchors are labelled (:meth:`assign_anchors`, or the same matching
        inline), ``rpn_batch_size`` per image sampled; ``"rpn_objectness"``
        sums over the sampled anchors, ``"rpn_box"`` over the sampled
        positives, both divided by the number sampled in the batch.
        """
        backend = self.backend_of(objectness, "objectness")
        check_predictions(backend, "objectness",
                          {"objectness": objectness, "anchors": anchors, "rpn_deltas": rpn_deltas})
        if objectness.ndim != 2:
            raise ValueError(f"objectness must have shape (N, A), got {tuple(objectness.shape)}")
        n, a = (int(s) for s in objectness.shape)
        check_shape(rpn_deltas, (n, a, 4), "rpn_deltas", "(N, A, 4)")
        if tuple(anchors.shape) not in ((a, 4), (n, a, 4)):
            raise ValueError(f"anchors must have shape (A, 4) or (N, A, 4) with A = {a}, got {tuple(anchors.shape)}")
        xp = backend.xp
        gt = self._gt(backend, gt_boxes, gt_labels, anchors, n, validate, labels_required=False)
        own_assignment = type(self).assign_anchors is FasterRCNNLoss.assign_anchors
        matches: Any = None  # own assignment: the matches; otherwise the targets (each set below)
        targets: Any = None
        if own_assignment:  # the targets are encoded below, where they are needed
            matches = match_boxes(backend, self.rpn_matcher, gt.boxes, anchors, gt.valid)
            labels = _anchor_labels(xp, matches)
        else:
            targets = self.assign_anchors(anchors, gt)
            labels = targets.labels
        positive, negative = self.rpn_sampler(labels, seed=self._seed(seed, 0))
        sampled = positive | negative
        objectness_term = self.term(backend, "rpn_objectness", "objectness_loss", "objectness", objectness,
                                    xp.astype(positive, objectness.dtype), sampled)
        aux = {"positive": positive, "negative": negative, "sampled": sampled}
        positions = backend.nonzero_positions(positive) if own_assignment else None
        if positions is not None and n * a and bool(xp.isnan(xp.max(rpn_deltas))):
            positions = None  # the whole-batch path, so that the gradient at a NaN delta is that of every path
        if positions is not None:
            # eager host arrays: the box term runs on the sampled positives alone, as (1, K, 4)
            deltas = xp.expand_dims(xp.take(xp.reshape(rpn_deltas, (-1, 4)), positions, axis=0), axis=0)
            box_targets = xp.expand_dims(
                v.as_dtype_of(backend, self._encode_at(backend, anchors, gt, matches, positions), deltas), axis=0)
            box_mask = xp.ones(tuple(deltas.shape[:2]), dtype=xp.bool, device=backend.device(deltas))
            targets = AnchorTargets(labels=labels, box_targets=None)
            aux["box_positions"] = positions

            def pullback(g: Any) -> Any:  # (1, K, 4) back to the anchors they were taken from, (N, A, 4)
                return xp.reshape(backend.scatter_rows(g[0, ...], positions, n * a), (n, a, 4))

            box_term = self.term(backend, "rpn_box", "regression_loss", "rpn_deltas", deltas, box_targets, box_mask,
                                 source=rpn_deltas, pullback=pullback)
        else:
            if own_assignment:
                targets = AnchorTargets(labels=labels, box_targets=self._encode_anchors(backend, anchors, gt, matches))
            box_targets = v.as_dtype_of(backend, targets.box_targets, rpn_deltas)
            box_term = self.term(backend, "rpn_box", "regression_loss", "rpn_deltas", rpn_deltas, box_targets,
                                 positive)
        return LossStage(backend=backend, targets=targets, aux=aux, normaliser=self.count(backend, sampled, objectness),
                         terms=(objectness_term, box_term), non_finite=gt.non_finite)

    # -- box head --------------------------------------------------------------------
    def sample_proposals(
        self,
        proposals: Any,
        gt_boxes: Any,
        gt_labels: Any,
        *,
        seed: Any = _CONFIG,
        validate: bool | None = None,
    ) -> SampledProposals:
        """Choose the proposals the head trains on, and their targets.

        The ground truth is appended to the proposals (as torchvision does),
        every proposal is matched to the ground truth, and
        ``roi_batch_size`` per image are sampled. The result has
        ``R = min(roi_batch_size, R0 + G)`` rows per image (a static shape);
        images with fewer samples are padded with label -1.

        Args:
            proposals: ``(N, R0, 4)`` xyxy, or a sequence of N ``(R0_i, 4)``
                arrays (padding rows are never sampled).
            gt_boxes, gt_labels: padded ``(N, G, 4)`` / ``(N, G)`` or per-image sequences.
            seed: overrides the configured seed for this call.
        """
        if isinstance(proposals, (list, tuple)):
            if not proposals:
                raise ValueError("proposals is an empty list: the array namespace cannot be taken from it; give "
                                 "an empty batch as a (0, R0, 4) array")
            backend = self.backend_of(proposals[0], "proposals[0]")
            like = proposals[0]
            boxes0, _ = pad_sequence(backend, proposals, (4,), 0.0, like.dtype, backend.device(like), "proposals")
            xp = backend.xp
            r0 = int(boxes0.shape[1])
            sizes = xp.asarray([int(p.shape[0]) for p in proposals], dtype=xp.int64, device=backend.device(like))
            proposal_valid = xp.arange(r0, dtype=xp.int64, device=backend.device(like)) < xp.expand_dims(sizes, 1)
        else:
            backend = self.backend_of(proposals, "proposals")
            if proposals.ndim != 3 or proposals.shape[-1] != 4:
                raise ValueError(f"proposals must have shape (N, R0, 4), got {tuple(proposals.shape)}")
            boxes0 = proposals
            xp = backend.xp
            proposal_valid = xp.ones(tuple(proposals.shape[:2]), dtype=xp.bool, device=backend.device(proposals))
        v.check_floating(backend, boxes0, "proposals")
        n = int(boxes0.shape[0])
        gt = self._gt(backend, gt_boxes, gt_labels, boxes0, n, validate, labels_required=True)
        boxes = xp.concat([boxes0, gt.boxes], axis=1)  # (N, T, 4)
        valid = xp.concat([proposal_valid, gt.valid], axis=1)
        t = int(boxes.shape[1])
        matches = match_boxes(backend, self.roi_matcher, gt.boxes, boxes, gt.valid)  # (N, T)
        positive = matches >= 0
        index = xp.where(positive, matches, 0)
        labels = xp.where(positive, backend.take_along_axis(gt.labels, index, axis=1),
                          _ignored(xp, matches))
        labels = xp.where(valid, labels, -1)
        pos, neg = self.roi_sampler(labels, seed=self._seed(seed, 1))
        sampled = pos | neg
        # sampled proposals first, each group in its original order; keep a static R
        r = min(self.roi_batch_size, t)
        position = xp.arange(t, dtype=xp.int64, device=backend.device(boxes))
        order = xp.argsort(xp.where(sampled, position, position + t), axis=-1, stable=True)[:, :r]
        out_boxes = self._gather_boxes(backend, boxes, order)
        out_labels = backend.take_along_axis(xp.where(sampled, labels, -1), order, axis=1)
        matched = self._gather_boxes(backend, gt.boxes, backend.take_along_axis(index, order, axis=1))
        foreground = xp.expand_dims(out_labels > 0, axis=-1)
        # rows without a target are encoded unit box against unit box: finite, no 0/0 anywhere
        unit = xp.asarray([0.0, 0.0, 1.0, 1.0], dtype=out_boxes.dtype, device=backend.device(out_boxes))
        reference = xp.where(foreground, out_boxes, unit)
        targets = xp.where(foreground, self.roi_box_coder.encode(xp.where(foreground, matched, unit), reference), 0.0)
        return SampledProposals(boxes=out_boxes, labels=xp.astype(out_labels, xp.int64), targets=targets,
                                non_finite=gt.non_finite)

    def roi_loss(self, class_logits: Any, box_deltas: Any, sampled: SampledProposals) -> RecipeResult:
        """Head losses: components ``"roi_classifier"`` and ``"roi_box"``.

        Args:
            class_logits: ``(N, R, C)`` for the boxes of ``sampled``.
            box_deltas: ``(N, R, C, 4)`` (or ``(N, R, 4 C)``) class-specific deltas;
                the deltas of the target class enter the box term.
            sampled: the result of :meth:`sample_proposals`.
        """
        return self.evaluate(self.roi_stage(class_logits, box_deltas, sampled))

    def roi_stage(self, class_logits: Any, box_deltas: Any, sampled: SampledProposals) -> LossStage:
        """The terms of :meth:`roi_loss` (arguments as :meth:`roi_loss`).

        ``"roi_classifier"`` sums over the sampled rows, ``"roi_box"`` over the
        foreground rows, both divided by the number sampled in the batch. The
        box term's input is the target class's deltas ``(N, R, 4)``, taken at
        ``aux["class_index"]`` from ``box_deltas`` viewed as ``(N, R, C, 4)``.
        """
        backend = self.backend_of(class_logits, "class_logits")
        check_predictions(backend, "class_logits", {"class_logits": class_logits, "box_deltas": box_deltas})
        xp = backend.xp
        n, r = (int(s) for s in sampled.labels.shape)
        c = self.num_classes
        check_shape(class_logits, (n, r, c), "class_logits", "(N, R, num_classes)")
        given = box_deltas
        if tuple(box_deltas.shape) == (n, r, 4 * c):
            box_deltas = xp.reshape(box_deltas, (n, r, c, 4))
        check_shape(box_deltas, (n, r, c, 4), "box_deltas", "(N, R, num_classes, 4)")
        labels = sampled.labels
        chosen = labels >= 0
        foreground = labels > 0
        class_index = xp.where(foreground, labels, 0)
        index = xp.broadcast_to(xp.reshape(class_index, (n, r, 1, 1)), (n, r, 1, 4))
        deltas = backend.take_along_axis(box_deltas, index, axis=2)[:, :, 0, :]
        classes = xp.arange(c, dtype=class_index.dtype, device=backend.device(class_index))
        one_hot = xp.expand_dims(xp.astype(xp.expand_dims(class_index, axis=-1) == classes, deltas.dtype), axis=-1)

        def pullback(g: Any) -> Any:  # take_along_axis's adjoint: back to the class the deltas were taken from
            return xp.reshape(one_hot * xp.expand_dims(g, axis=2), tuple(given.shape))

        return LossStage(
            backend=backend, targets=sampled,
            aux={"chosen": chosen, "foreground": foreground, "class_index": class_index},
            normaliser=self.count(backend, chosen, class_logits),
            terms=(
                self.term(backend, "roi_classifier", "classification_loss", "class_logits", class_logits,
                          xp.where(chosen, labels, 0), chosen),
                self.term(backend, "roi_box", "regression_loss", "box_deltas", deltas,
                          v.as_dtype_of(backend, sampled.targets, deltas), foreground, source=given,
                          pullback=pullback),
            ),
            non_finite=sampled.non_finite,
        )

    def combine(self, rpn_result: RecipeResult, roi_result: RecipeResult) -> RecipeResult:
        """One four-component result from :meth:`rpn_loss` and :meth:`roi_loss` (already weighted)."""
        return RecipeResult.from_components({**rpn_result.components, **roi_result.components})

    def __call__(
        self,
        anchors: ArrayT,
        objectness: Any,
        rpn_deltas: Any,
        gt_boxes: Any,
        gt_labels: Any,
        class_logits: Any,
        box_deltas: Any,
        sampled: SampledProposals,
        *,
        seed: Any = _CONFIG,
        validate: bool | None = None,
    ) -> RecipeResult[ArrayT]:
        """``combine(rpn_loss(anchors, objectness, rpn_deltas, gt_boxes, gt_labels), roi_loss(...))``.

        ``sampled`` comes from :meth:`sample_proposals`, called before the head ran.
        """
        rpn = self.rpn_loss(anchors, objectness, rpn_deltas, gt_boxes, gt_labels, seed=seed, validate=validate)
        return self.combine(rpn, self.roi_loss(class_logits, box_deltas, sampled))

    def stages(
        self, anchors: Any, objectness: Any, rpn_deltas: Any, gt_boxes: Any, gt_labels: Any, class_logits: Any,
        box_deltas: Any, sampled: SampledProposals, *, seed: Any = _CONFIG, validate: bool | None = None,
    ) -> tuple[LossStage, LossStage]:
        """The call's loss stages (arguments as the call): :meth:`rpn_stage` and :meth:`roi_stage`."""
        return (self.rpn_stage(anchors, objectness, rpn_deltas, gt_boxes, gt_labels, seed=seed, validate=validate),
                self.roi_stage(class_logits, box_deltas, sampled))

    # -- closed-form gradients of the two halves (value_and_grad of the call: DetectionRecipe) --------
    def rpn_value_and_grad(
        self, anchors: Any, objectness: Any, rpn_deltas: Any, gt_boxes: Any, gt_labels: Any = None, *,
        seed: Any = _CONFIG, validate: bool | None = None,
    ) -> tuple[RecipeResult, dict[str, Any]]:
        """:meth:`rpn_loss` and the gradient of its total: ``(result, {"objectness": ..., "rpn_deltas": ...})``.

        Matching and sampling are constants; one sample serves value and gradient.
        """
        return self.differentiate(self.rpn_stage(anchors, objectness, rpn_deltas, gt_boxes, gt_labels, seed=seed,
                                                 validate=validate))

    def roi_value_and_grad(self, class_logits: Any, box_deltas: Any,
                           sampled: SampledProposals) -> tuple[RecipeResult, dict[str, Any]]:
        """:meth:`roi_loss` and the gradient of its total: ``(result, {"class_logits": ..., "box_deltas": ...})``.

        ``box_deltas``'s gradient has its shape (``(N, R, C, 4)`` or ``(N, R, 4 C)``)
        and is non-zero only at the target class of foreground rows.
        """
        return self.differentiate(self.roi_stage(class_logits, box_deltas, sampled))


@hookimpl
def polyloss_register_recipes() -> dict[str, Callable[..., Any]]:
    return {"faster_rcnn": FasterRCNNLoss}
