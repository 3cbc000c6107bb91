"""The ``"retinanet"`` recipe: RetinaNet's losses (Lin et al., *Focal Loss for Dense Object Detection*, ICCV 2017).

Numbers follow torchvision's ``RetinaNet.compute_loss`` (its
``RetinaNetClassificationHead`` and ``RetinaNetRegressionHead`` losses),
batched over images with padded ground truth and no per-image Python loop.
Written only against polyloss's public API.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from collections.abc import Mapping
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import polyloss as pl
from polyloss.boxes import BoxCoder
from polyloss.boxes import Matcher
from polyloss.boxes import box_iou
from polyloss.detection import DetectionRecipe
from polyloss.detection import GroundTruth
from polyloss.detection import LossStage
from polyloss.detection import normalize_ground_truth

__all__ = [
    "BOX_LOSSES",
    "DecodedBoxLoss",
    "EncodedBoxLoss",
    "RetinaNetLoss",
    "RetinaNetTargets",
    "box_loss_part",
    "decode_vjp",
]

#: Names accepted by ``box_loss=`` (torchvision's ``_box_loss`` types).
BOX_LOSSES = ("l1", "smooth_l1", "giou", "diou", "ciou")

_NORMALIZE = ("image", "batch")


def _number(value: object, name: str, *, minimum: float | None = 0.0, maximum: float | None = None) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value):
        raise TypeError(f"{name} must be a Python number, got {value!r}")
    if (minimum is not None and value < minimum) or (maximum is not None and value > maximum):
        bounds = f"[{minimum if minimum is not None else '-inf'}, {maximum if maximum is not None else 'inf'}]"
        raise ValueError(f"{name} must be in {bounds}, got {value!r}")
    return float(value)


# -- the box-loss part ---------------------------------------------------------------
@dataclass(frozen=True)
class EncodedBoxLoss:
    """A box-loss part on encoded targets: ``loss(box_deltas, box_coder.encode(matched_boxes, anchors))``.

    Attributes:
        loss: element-wise ``(deltas, targets) -> (..., 4)`` loss, no reduction
            (e.g. :func:`polyloss.l1_loss` with ``reduction="none"``).
    """

    loss: Callable[[Any, Any], Any]

    def __call__(self, box_deltas: Any, anchors: Any, matched_boxes: Any, box_coder: BoxCoder) -> Any:
        return self.loss(*self.arguments(box_deltas, anchors, matched_boxes, box_coder))

    def arguments(self, box_deltas: Any, anchors: Any, matched_boxes: Any, box_coder: BoxCoder) -> tuple[Any, Any]:
        """What :attr:`loss` is called with: ``(box_deltas, encoded targets)``."""
        return box_deltas, box_coder.encode(matched_boxes, anchors)

    def pullback(self, box_deltas: Any, anchors: Any, box_coder: BoxCoder) -> Callable[[Any], Any] | None:
        """The map from the gradient w.r.t. :attr:`loss`'s input to that w.r.t. ``box_deltas`` (None: the same)."""
        return None


@dataclass(frozen=True)
class DecodedBoxLoss:
    """A box-loss part on decoded boxes: ``loss(box_coder.decode(box_deltas, anchors), matched_boxes)``.

    Attributes:
        loss: paired-box ``(boxes1 (..., 4), boxes2 (..., 4)) -> (...)`` loss,
            no reduction (e.g. :func:`polyloss.giou_loss` with ``reduction="none"``).
    """

    loss: Callable[[Any, Any], Any]

    def __call__(self, box_deltas: Any, anchors: Any, matched_boxes: Any, box_coder: BoxCoder) -> Any:
        return self.loss(*self.arguments(box_deltas, anchors, matched_boxes, box_coder))

    def arguments(self, box_deltas: Any, anchors: Any, matched_boxes: Any, box_coder: BoxCoder) -> tuple[Any, Any]:
        """What :attr:`loss` is called with: ``(decoded boxes, matched boxes)``."""
        return box_coder.decode(box_deltas, anchors), matched_boxes

    def pullback(self, box_deltas: Any, anchors: Any, box_coder: BoxCoder) -> Callable[[Any], Any]:
        """The map from the gradient w.r.t. the decoded boxes to that w.r.t. ``box_deltas`` (the decoding's adjoint)."""
        return functools.partial(decode_vjp, box_coder, box_deltas, anchors)


def decode_vjp(box_coder: BoxCoder, deltas: Any, anchors: Any, cotangent: Any) -> Any:
    r"""``d <cotangent, box_coder.decode(deltas, anchors)> / d deltas`` for a :class:`polyloss.boxes.BoxCoder`.

    With :math:`c_x = d_x a_w / w_x + a_x`, :math:`w = \exp(\min(d_w / w_w, \mathrm{clip})) a_w` and the
    box :math:`(c_x - w/2, c_y - h/2, c_x + w/2, c_y + h/2)`: :math:`g_{d_x} = (g_{x_1} + g_{x_2}) a_w / w_x`,
    :math:`g_{d_w} = (g_{x_2} - g_{x_1}) w / (2 w_w)` up to the clip (0 above it, as PyTorch's clamp), and
    likewise for y and h.

    Raises:
        TypeError: ``box_coder`` is not a plain :class:`polyloss.boxes.BoxCoder` (its decoding is unknown).
    """
    if type(box_coder) is not BoxCoder:
        raise TypeError(f"the closed-form gradient of a decoded box loss needs a polyloss.boxes.BoxCoder, got "
                        f"{type(box_coder).__name__}")
    xp = DetectionRecipe.backend_of(deltas, "box_deltas").xp
    wx, wy, ww, wh = box_coder.weights
    if anchors.dtype != deltas.dtype:
        anchors = xp.astype(anchors, deltas.dtype)
    aw = anchors[..., 2] - anchors[..., 0]
    ah = anchors[..., 3] - anchors[..., 1]
    g = cotangent
    sw = deltas[..., 2] / ww
    sh = deltas[..., 3] / wh
    w = xp.exp(xp.clip(sw, max=box_coder.clip)) * aw
    h = xp.exp(xp.clip(sh, max=box_coder.clip)) * ah
    return xp.stack((
        (g[..., 0] + g[..., 2]) * aw / wx,
        (g[..., 1] + g[..., 3]) * ah / wy,
        xp.where(sw <= box_coder.clip, (g[..., 2] - g[..., 0]) * w * (0.5 / ww), 0.0),
        xp.where(sh <= box_coder.clip, (g[..., 3] - g[..., 1]) * h * (0.5 / wh), 0.0),
    ), axis=-1)


def box_loss_part(kind: str = "l1", *, beta: float = 1.0, eps: float = 1e-7) -> EncodedBoxLoss | DecodedBoxLoss:
    """The box-loss part called ``kind`` (torchvision's ``_box_loss`` types).

    Args:
        kind: ``"l1"`` (torchvision RetinaNet's default) or ``"smooth_l1"``
            (threshold ``beta``) on the encoded targets; ``"giou"``, ``"diou"``
            or ``"ciou"`` (with ``eps``) on the decoded boxes.
        beta: smooth L1 threshold (1.0, torchvision's default for ``"smooth_l1"``).
        eps: the IoU losses' ``eps`` (1e-7).

    Returns:
        A callable ``(box_deltas, anchors, matched_boxes, box_coder) -> loss``
        per anchor ``(N, A)`` or per coordinate ``(N, A, 4)``.
    """
    if kind == "l1":
        return EncodedBoxLoss(functools.partial(pl.l1_loss, reduction="none"))
    if kind == "smooth_l1":
        return EncodedBoxLoss(functools.partial(pl.smooth_l1_loss, beta=_number(beta, "beta"), reduction="none"))
    iou_losses = {"giou": pl.giou_loss, "diou": pl.diou_loss, "ciou": pl.ciou_loss}
    if kind in iou_losses:
        return DecodedBoxLoss(functools.partial(iou_losses[kind], eps=_number(eps, "eps"), reduction="none"))
    raise ValueError(f"box_loss must be one of {', '.join(map(repr, BOX_LOSSES))}, got {kind!r}")


# -- targets ----------------------------------------------------------------------------
@dataclass(frozen=True)
class RetinaNetTargets:
    """Per-anchor targets of a batch (from :meth:`RetinaNetLoss.assign`).

    Attributes:
        matches: ``(N, A)`` int64: index of the matched ground truth, -1 below
            the background threshold, -2 between the thresholds (ignored).
        positive: ``(N, A)`` bool, True for matched anchors.
        valid: ``(N, A)`` bool, False for ignored anchors (they enter no loss).
        labels: ``(N, A)`` int64 class of the matched ground truth, -1 for
            background and ignored anchors (an all-zero one-hot row).
        matched_boxes: ``(N, A, 4)`` the matched ground-truth box; the anchor
            itself where not positive (so its targets are exactly 0).
        anchors: ``(N, A, 4)`` the anchors.
        non_finite: 0-d bool, a real ground-truth box was not finite (only
            without validation; the components are then NaN), or None.
    """

    matches: Any
    positive: Any
    valid: Any
    labels: Any
    matched_boxes: Any
    anchors: Any
    non_finite: Any = None


class RetinaNetLoss(DetectionRecipe):
    r"""RetinaNet's loss, registered as recipe ``"retinanet"`` (Lin et al., ICCV 2017).

    .. math::
        L = \frac{1}{N} \sum_{n=1}^{N} \frac{1}{\max(1, P_n)} \Big(
            \sum_{a \notin \mathrm{ign}_n} \sum_{c} \mathrm{FL}_{\alpha,\gamma}(x_{nac}, y_{nac})
            + \sum_{a \in \mathrm{pos}_n} \ell_{box}(\hat t_{na}, t_{na}) \Big)

    with :math:`P_n` the positive anchors of image ``n`` and :math:`y_{nac}`
    the one-hot class target (an all-zero row for background). This is
    torchvision's normalisation: per image, then the mean over images
    (``normalize="image"``). ``normalize="batch"`` divides both sums over the
    whole batch by :math:`\max(1, \sum_n P_n)` instead (the paper's
    "normalised by the number of anchors assigned to a ground-truth box").

    Args:
        num_classes: C, the number of logits per anchor. Labels are indices in
            ``[0, C)``; torchvision's convention (C counts a background class
            0 that no box carries, e.g. 91 for COCO) works unchanged.
        fg_iou_threshold: an anchor is positive at IoU >= this (0.5).
        bg_iou_threshold: negative below this (0.4); in between it is ignored.
        allow_low_quality_matches: each ground truth also keeps the anchors of
            its highest IoU, ties included (True, as torchvision), where that
            IoU is above 0.
        alpha: focal loss alpha (0.25; a negative value disables it).
        gamma: focal loss gamma (2.0).
        box_loss: ``"l1"`` (default, torchvision's), ``"smooth_l1"``,
            ``"giou"``, ``"diou"`` or ``"ciou"`` (see :func:`box_loss_part`).
        beta: smooth L1 threshold (1.0, torchvision's default for ``"smooth_l1"``;
            Detectron used 0.1 or 1/9).
        eps: ``eps`` of the IoU box losses (1e-7).
        box_weights: box coder weights (1, 1, 1, 1), as torchvision's RetinaNet.
        normalize: ``"image"`` (default, torchvision) or ``"batch"``.
        validate: check ground truth on host backends (True): a degenerate box
            or a label outside ``[0, C)`` raises ``ValueError``.
        normalize_over: ``"local"`` (default) or ``"world"``: the counts
            divided by (images under ``normalize="image"``, positives under
            ``"batch"``) are those of every process of a data-parallel job, as
            for the built-in recipes (see ``polyloss.detection``); without an
            initialised process group the same as ``"local"``.

    Parts (keyword arguments; or override the attributes in a subclass):
    ``matcher`` (a :class:`polyloss.boxes.Matcher`), ``box_coder`` (a
    :class:`polyloss.boxes.BoxCoder`), ``classification_loss``
    (``(logits (N, A, C), one_hot (N, A, C)) -> (N, A, C)`` or ``(N, A)``,
    default sigmoid focal loss), ``regression_loss`` (``(box_deltas, anchors,
    matched_boxes, box_coder) -> (N, A)`` or ``(N, A, 4)``, default
    ``box_loss_part(box_loss, beta=beta, eps=eps)``), ``weights`` (a mapping
    component -> float).

    Call ``recipe(box_deltas (N, A, 4), class_logits (N, A, C), anchors (A, 4)
    or (N, A, 4), gt_boxes, gt_labels)`` with xyxy boxes; ground truth padded
    (``(N, G, 4)``, ``(N, G)`` with label -1 for padding) or per-image
    sequences. Components ``"classification"`` and ``"box_regression"``. An
    image without ground truth has every anchor negative: a finite
    classification term and no box term; a batch without any gives a 0 box
    loss. Stages: :meth:`assign`, :meth:`loss`.
    """

    component_names = ("classification", "box_regression")

    def __init__(
        self,
        num_classes: int,
        *,
        fg_iou_threshold: float = 0.5,
        bg_iou_threshold: float = 0.4,
        allow_low_quality_matches: bool = True,
        alpha: float = 0.25,
        gamma: float = 2.0,
        box_loss: str = "l1",
        beta: float = 1.0,
        eps: float = 1e-7,
        box_weights: Sequence[float] = (1.0, 1.0, 1.0, 1.0),
        normalize: str = "image",
        matcher: Matcher | None = None,
        box_coder: BoxCoder | None = None,
        classification_loss: Callable[[Any, Any], Any] | None = None,
        regression_loss: Callable[[Any, Any, Any, BoxCoder], Any] | None = None,
        weights: Mapping[str, float] | None = None,
        validate: bool = True,
        normalize_over: str = "local",
    ) -> None:
        if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
            raise ValueError(f"num_classes must be an int >= 1, got {num_classes!r}")
        if normalize not in _NORMALIZE:
            raise ValueError(f"normalize must be one of {', '.join(map(repr, _NORMALIZE))}, got {normalize!r}")
        if box_loss not in BOX_LOSSES:
            raise ValueError(f"box_loss must be one of {', '.join(map(repr, BOX_LOSSES))}, got {box_loss!r}")
        super().__init__(weights=weights, validate=validate, normalize_over=normalize_over)
        self.num_classes = num_classes
        self.fg_iou_threshold = _number(fg_iou_threshold, "fg_iou_threshold", maximum=1.0)
        self.bg_iou_threshold = _number(bg_iou_threshold, "bg_iou_threshold", maximum=1.0)
        if self.bg_iou_threshold > self.fg_iou_threshold:
            raise ValueError(f"bg_iou_threshold={self.bg_iou_threshold} must be <= fg_iou_threshold="
                             f"{self.fg_iou_threshold} (IoU below bg_iou_threshold is background, at least "
                             "fg_iou_threshold positive, ignored between)")
        self.alpha = _number(alpha, "alpha", minimum=None, maximum=1.0)
        self.gamma = _number(gamma, "gamma")
        self.box_loss = box_loss
        self.beta = _number(beta, "beta")
        self.eps = _number(eps, "eps")
        self.normalize = normalize
        self.matcher = matcher if matcher is not None else Matcher(
            self.fg_iou_threshold, self.bg_iou_threshold, allow_low_quality_matches=bool(allow_low_quality_matches)
        )
        self.box_coder = box_coder if box_coder is not None else BoxCoder(tuple(box_weights))
        self.classification_loss = classification_loss if classification_loss is not None else functools.partial(
            pl.sigmoid_focal_loss, alpha=self.alpha, gamma=self.gamma, reduction="none"
        )
        self.regression_loss = (
            regression_loss if regression_loss is not None else box_loss_part(box_loss, beta=self.beta, eps=self.eps)
        )

    def __repr__(self) -> str:
        return (f"RetinaNetLoss(num_classes={self.num_classes}, fg_iou_threshold={self.fg_iou_threshold}, "
                f"bg_iou_threshold={self.bg_iou_threshold}, alpha={self.alpha}, gamma={self.gamma}, "
                f"box_loss={self.box_loss!r}, beta={self.beta}, box_weights={self.box_coder.weights}, "
                f"normalize={self.normalize!r}, normalize_over={self.normalize_over!r})")

    # -- stages ------------------------------------------------------------------------
    def ground_truth(self, anchors: Any, gt_boxes: Any, gt_labels: Any, *, batch_size: int,
                     validate: bool | None = None) -> GroundTruth:
        """Ground truth padded to ``(N, G, ...)``, checked on host backends when validating (labels in ``[0, C)``)."""
        backend = self.backend_of(anchors, "anchors")
        validate = self.validate if validate is None else bool(validate)
        return normalize_ground_truth(backend, gt_boxes, gt_labels, like=anchors, batch_size=batch_size,
                                      validate=validate, num_classes=self.num_classes, background=False)

    def assign(self, anchors: Any, gt_boxes: Any, gt_labels: Any, *, batch_size: int | None = None,
               validate: bool | None = None) -> RetinaNetTargets:
        """Match anchors to ground truth (positive / negative / ignored) and gather the matched boxes.

        Args:
            anchors: ``(A, 4)`` (shared by the images) or ``(N, A, 4)`` xyxy anchors.
            gt_boxes: padded ``(N, G, 4)`` or a sequence of N ``(G_i, 4)`` arrays.
            gt_labels: padded ``(N, G)`` (-1 = padding) or a sequence of N ``(G_i,)`` arrays.
            batch_size: N (taken from the ground truth when omitted).
            validate: override the recipe's ``validate``.

        Returns:
            A :class:`RetinaNetTargets`.
        """
        backend = self.backend_of(anchors, "anchors")
        if backend.dtype_kind(anchors.dtype) != "f":
            raise TypeError(f"anchors must have a floating dtype, got {anchors.dtype}")
        if anchors.ndim not in (2, 3) or anchors.shape[-1] != 4:
            raise ValueError(f"anchors must have shape (A, 4) or (N, A, 4), got {tuple(anchors.shape)}")
        if batch_size is None:
            batch_size = len(gt_boxes) if isinstance(gt_boxes, (list, tuple)) else int(gt_boxes.shape[0])
        if anchors.ndim == 3 and int(anchors.shape[0]) != batch_size:
            raise ValueError(f"anchors shape {tuple(anchors.shape)} must be (N, A, 4) with N = {batch_size}")
        gt = self.ground_truth(anchors, gt_boxes, gt_labels, batch_size=batch_size, validate=validate)
        xp = backend.xp
        a = int(anchors.shape[-2])
        anchors_n = xp.broadcast_to(anchors, (batch_size, a, 4))
        matches = self.matcher(box_iou(gt.boxes, anchors), gt.valid)  # (N, A)
        positive = matches >= 0
        valid = matches != getattr(self.matcher, "BETWEEN_THRESHOLDS", Matcher.BETWEEN_THRESHOLDS)
        index = xp.where(positive, matches, 0)
        labels = xp.where(positive, backend.take_along_axis(gt.labels, index, axis=1), -1)
        index4 = xp.broadcast_to(xp.expand_dims(index, axis=-1), (batch_size, a, 4))
        matched = backend.take_along_axis(gt.boxes, index4, axis=1)
        matched = xp.where(xp.expand_dims(positive, axis=-1), matched, anchors_n)
        return RetinaNetTargets(matches=matches, positive=positive, valid=valid, labels=labels,
                                matched_boxes=matched, anchors=anchors_n, non_finite=gt.non_finite)

    def loss(self, box_deltas: Any, class_logits: Any, targets: RetinaNetTargets) -> pl.RecipeResult:
        """Both terms on assigned targets, normalised by the positives (per image or over the batch).

        Args:
            box_deltas: ``(N, A, 4)`` predicted offsets (encoded by :attr:`box_coder`).
            class_logits: ``(N, A, C)`` logits.
            targets: from :meth:`assign`.

        Returns:
            A :class:`polyloss.RecipeResult` with ``"classification"`` and ``"box_regression"``.
        """
        return self.evaluate(self.loss_stage(box_deltas, class_logits, targets))

    def loss_stage(self, box_deltas: Any, class_logits: Any, targets: RetinaNetTargets) -> LossStage:
        """The two terms of :meth:`loss` (a :class:`polyloss.detection.LossStage`), from which the base class
        derives the value and the closed-form gradient (:meth:`value_and_grad`)."""
        backend = self.backend_of(class_logits, "class_logits")
        if self.backend_of(box_deltas, "box_deltas") is not backend:
            raise TypeError(f"box_deltas ({type(box_deltas).__name__}) and class_logits "
                            f"({type(class_logits).__name__}) must belong to one array namespace")
        for name, x in (("class_logits", class_logits), ("box_deltas", box_deltas)):
            if backend.dtype_kind(x.dtype) != "f":
                raise TypeError(f"{name} must have a floating dtype, got {x.dtype}")
        n, a = (int(s) for s in targets.labels.shape)
        if tuple(class_logits.shape) != (n, a, self.num_classes):
            raise ValueError(f"class_logits must have shape (N, A, num_classes) = {(n, a, self.num_classes)}, "
                             f"got {tuple(class_logits.shape)}")
        if tuple(box_deltas.shape) != (n, a, 4):
            raise ValueError(f"box_deltas must have shape (N, A, 4) = {(n, a, 4)}, got {tuple(box_deltas.shape)}")
        xp = backend.xp
        dtype = class_logits.dtype
        device = backend.device(class_logits)

        # classification: one-hot targets (background: an all-zero row) over every non-ignored anchor
        classes = xp.arange(self.num_classes, dtype=xp.int64, device=device)
        one_hot = xp.astype(xp.expand_dims(targets.labels, axis=-1) == classes, dtype)

        # box regression on positives; other anchors see zero deltas against themselves (finite, gradient 0)
        anchors, matched = targets.anchors, targets.matched_boxes
        if anchors.dtype != box_deltas.dtype:
            anchors, matched = xp.astype(anchors, box_deltas.dtype), xp.astype(matched, box_deltas.dtype)
        positive4 = xp.expand_dims(targets.positive, axis=-1)
        deltas = xp.where(positive4, box_deltas, 0.0)
        part, inner = self.regression_loss, None
        if isinstance(part, (EncodedBoxLoss, DecodedBoxLoss)):  # the loss and its arguments: a closed-form gradient
            box_input, box_target = part.arguments(deltas, anchors, matched, self.box_coder)
            inner, part = part.pullback(deltas, anchors, self.box_coder), part.loss
        else:  # any other part: called as documented (no closed-form gradient)
            box_input, box_target = deltas, matched
            part = functools.partial(_call_box_part, self.regression_loss, anchors, self.box_coder)

        def box_pullback(g: Any) -> Any:  # through the decoding (if any), then where(positive, box_deltas, 0)
            return xp.where(positive4, g if inner is None else inner(g), 0.0)

        num_pos = xp.sum(xp.astype(targets.positive, dtype), axis=1)  # (N,)
        if self.normalize == "image":
            # per image max(1, P_n), times max(1, N) images (under normalize_over="world": all processes' / W)
            images = self.count(backend, xp.ones((n,), dtype=xp.bool, device=device), class_logits)
            normaliser = xp.where(num_pos > 0, num_pos, 1.0) * images
        else:
            normaliser = self.count(backend, targets.positive, class_logits)
        return LossStage(
            backend=backend, targets=targets, aux={"positive": targets.positive, "valid": targets.valid},
            normaliser=normaliser,
            terms=(
                self.term(backend, "classification", "classification_loss", "class_logits", class_logits, one_hot,
                          targets.valid),
                self.term(backend, "box_regression", "regression_loss", "box_deltas", box_input, box_target,
                          targets.positive, part=part, source=box_deltas, pullback=box_pullback),
            ),
            non_finite=targets.non_finite,
        )

    def stages(self, box_deltas: Any, class_logits: Any, anchors: Any, gt_boxes: Any, gt_labels: Any, *,
               validate: bool | None = None) -> tuple[LossStage]:
        """The call's one loss stage: :meth:`assign`, then :meth:`loss_stage` (arguments as the call)."""
        backend = self.backend_of(class_logits, "class_logits")
        if self.backend_of(anchors, "anchors") is not backend:
            raise TypeError(f"anchors ({type(anchors).__name__}) and class_logits "
                            f"({type(class_logits).__name__}) must belong to one array namespace")
        if class_logits.ndim != 3:
            raise ValueError(f"class_logits must have shape (N, A, num_classes), got {tuple(class_logits.shape)}")
        n, a = int(class_logits.shape[0]), int(class_logits.shape[1])
        if anchors.ndim < 2 or int(anchors.shape[-2]) != a:
            raise ValueError(f"anchors shape {tuple(anchors.shape)} must be (A, 4) with A = {a} "
                             f"(class_logits shape {tuple(class_logits.shape)})")
        targets = self.assign(anchors, gt_boxes, gt_labels, batch_size=n, validate=validate)
        return (self.loss_stage(box_deltas, class_logits, targets),)

    def __call__(
        self,
        box_deltas: Any,
        class_logits: Any,
        anchors: Any,
        gt_boxes: Any,
        gt_labels: Any,
        *,
        validate: bool | None = None,
    ) -> pl.RecipeResult:
        return self.evaluate(*self.stages(box_deltas, class_logits, anchors, gt_boxes, gt_labels, validate=validate))


def _call_box_part(part: Callable[..., Any], anchors: Any, box_coder: BoxCoder, box_deltas: Any,
                   matched_boxes: Any) -> Any:
    """A custom box-loss part (``(box_deltas, anchors, matched_boxes, box_coder) -> loss``) as ``(input, target)``."""
    return part(box_deltas, anchors, matched_boxes, box_coder)
