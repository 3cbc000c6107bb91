r"""The ``"fcos"`` recipe: FCOS's training loss (Tian et al., *FCOS: Fully Convolutional One-Stage Object
Detection*, ICCV 2019), with torchvision's numbers (``FCOS.compute_loss`` and ``FCOSHead.compute_loss``).

Every anchor (a location of a feature level) is assigned at most one ground
truth by center sampling with per-level size ranges
(:func:`polyloss.boxes.center_sampling`); with :math:`\mathcal{F}` the
assigned (foreground) anchors of the batch and :math:`N_{fg} = \max(1, |\mathcal{F}|)`:

.. math::
    L_{cls} = \frac{1}{N_{fg}} \sum_{i, c} \mathrm{FL}(x_{ic}, y_{ic}),\quad
    L_{box} = \frac{1}{N_{fg}} \sum_{i \in \mathcal{F}} \big(1 - \mathrm{GIoU}(\hat b_i, b_i)\big),\quad
    L_{ctr} = \frac{1}{N_{fg}} \sum_{i \in \mathcal{F}} \mathrm{BCE}(o_i, c_i)

with the sigmoid focal loss FL over every anchor and class (``y`` one-hot of
the assigned class, all zero for background; label 0 is a real class), the
predicted box :math:`\hat b_i` decoded from the ltrb distances times the
anchor's width and height (:func:`polyloss.boxes.decode_ltrb`, torchvision's
``BoxLinearCoder(normalize_by_size=True)``), and the centerness target
:math:`c_i = \sqrt{\frac{\min(l, r)}{\max(l, r)} \frac{\min(t, b)}{\max(t, b)}}`
of the anchor centre's distances to its ground-truth box.

Written against the array API: no per-image loop, no boolean indexing, no
data-dependent shapes (it compiles with ``torch.compile(fullgraph=True)``).
"""

from __future__ import annotations

import functools
import math
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
from polyloss._namespace import resolve
from polyloss.backend import Backend
from polyloss.boxes import CenterSampler
from polyloss.boxes import decode_ltrb
from polyloss.boxes import encode_ltrb
from polyloss.boxes.center_sampling import SizeRanges
from polyloss.detection._base import DetectionRecipe
from polyloss.detection._base import LossPart
from polyloss.detection._base import LossStage
from polyloss.detection._base import SampleRun
from polyloss.detection._base import check_predictions
from polyloss.detection._base import check_shape
from polyloss.detection._base import normalize_ground_truth
from polyloss.detection._base import sample_ground_truth
from polyloss.detection._base import sigmoid_objectness_loss
from polyloss.functional import giou_loss
from polyloss.functional import sigmoid_focal_loss
from polyloss.functional.focal import modulating_factor
from polyloss.functional.focal import sigmoid_focal_loss_grad
from polyloss.gradients import register_gradient

__all__ = ["FCOSLoss", "FCOSTargets", "centerness_target", "fcos_anchors", "indexed_sigmoid_focal_loss",
           "indexed_sigmoid_focal_loss_grad"]


def fcos_anchors(image_size: int, strides: Sequence[int] = (8, 16, 32, 64, 128),
                 sizes: Sequence[float] | None = None) -> tuple[Any, list[int]]:
    """Float64 NumPy anchors ``(A, 4)`` of a square image and the anchors per level, finest level first.

    Level ``i`` has ``ceil(image_size / strides[i])`` locations per side at
    ``(k * stride, l * stride)`` (torchvision's ``AnchorGenerator`` layout, one
    aspect ratio), each a square anchor of side ``sizes[i]`` (default: the
    stride, as torchvision's FCOS) centred there. For sample data, tests and
    benchmarks; a model passes its own anchors.
    """
    sizes = list(strides) if sizes is None else list(sizes)
    levels, counts = [], []
    for stride, size in zip(strides, sizes, strict=True):
        n = math.ceil(image_size / stride)
        ys, xs = np.meshgrid(np.arange(n) * float(stride), np.arange(n) * float(stride), indexing="ij")
        half = size / 2.0
        levels.append(np.stack([xs - half, ys - half, xs + half, ys + half], axis=-1).reshape(-1, 4))
        counts.append(n * n)
    return np.concatenate(levels), counts


# -- the classification part: the focal loss of one-hot targets given as class indices --------------------------


def _negative_focal(backend: Backend, x: Any, alpha: float, gamma: float) -> tuple[Any, Any]:
    r"""The focal loss of logits ``x`` against target 0 and its derivative, element-wise, as constants.

    With :math:`p = \sigma(x)`, :math:`q = \sigma(-x)` and :math:`\mathrm{sp} = \log(1 + e^x) = -\log q`:
    :math:`\ell_0 = (1 - \alpha)\,p^\gamma\,\mathrm{sp}` and
    :math:`\ell_0' = (1 - \alpha)\,p^\gamma\,(p + \gamma\,q\,\mathrm{sp})` (no cancellation; the
    factor :math:`1 - \alpha` is 1 for ``alpha < 0``): :func:`polyloss.sigmoid_focal_loss` at ``y = 0``.
    """
    x = backend.stop_gradient(x)
    p = backend.sigmoid(x)
    minus_x = -x
    q = backend.sigmoid(minus_x)
    log_q = backend.log_sigmoid(minus_x)  # -sp
    del minus_x
    factor = p * p if gamma == 2.0 else modulating_factor(backend, p, gamma)
    if alpha >= 0:
        factor *= 1.0 - alpha
    grad = q * log_q
    del q
    grad *= -gamma
    grad += p
    grad *= factor
    factor *= log_q
    factor = -factor
    return factor, grad


def _check_indexed(backend: Backend, input: Any, labels: Any, alpha: float, gamma: float) -> tuple[float, float]:
    v.check_floating(backend, input, "input")
    check_same(backend, labels, "labels", "input")
    if backend.dtype_kind(labels.dtype) != "i":
        raise TypeError(f"labels must have an integer dtype, got {labels.dtype}")
    if input.ndim < 1 or tuple(labels.shape) != tuple(input.shape[:-1]):
        raise ValueError(f"labels shape {tuple(labels.shape)} must be input's shape without its class axis "
                         f"{tuple(input.shape[:-1])}")
    return v.check_number(alpha, "alpha", minimum=None, maximum=1.0), v.check_number(gamma, "gamma")


def _labelled(backend: Backend, labels: Any) -> tuple[Any, Any]:
    """``(positive (...) bool, index (..., 1))``: rows with a class, and the class to take (0 where none)."""
    xp = backend.xp
    positive = labels >= 0
    index = xp.expand_dims(xp.where(positive, labels, 0), axis=-1)
    return positive, index


def _take(backend: Backend, x: Any, index: Any) -> Any:
    return backend.take_along_axis(x, index, axis=-1)[..., 0]


def indexed_sigmoid_focal_loss(input: Any, labels: Any, *, alpha: float = 0.25, gamma: float = 2.0) -> Any:
    r"""Per-row sigmoid focal loss of one-hot targets given as class indices: the ``"fcos"`` classification part.

    .. math::
        \ell_r = \sum_c \mathrm{FL}_{\alpha, \gamma}(x_{rc}, [c = y_r])

    equal to ``sigmoid_focal_loss(input, one_hot(labels), alpha=alpha, gamma=gamma,
    reduction="none").sum(-1)`` (torchvision's ``sigmoid_focal_loss`` on the
    dense one-hot target, as ``FCOSHead.compute_loss``), without building the
    one-hot target: every entry is taken at target 0 (:math:`(1 - \alpha)
    p^\gamma \log(1 + e^x)`, one pass), and the labelled entry of each row is
    corrected to :func:`polyloss.sigmoid_focal_loss` at target 1.

    Args:
        input: logits ``(..., C)``, real floating.
        labels: int ``(...)``: the class of each row, or a negative value for
            none (background: every target 0).
        alpha, gamma: as :func:`polyloss.sigmoid_focal_loss` (0.25, 2.0).

    Returns:
        ``(...)``, the loss of each row summed over its classes.

    Under autograd (PyTorch, JAX) the element-wise derivative is computed with
    the value and enters through a linear surrogate (``v + <x - sg(x), g>``,
    ``sg`` the stop-gradient): one multiplication in the backward pass, first
    derivatives only (a second derivative through this part is 0, not the
    true one). :func:`indexed_sigmoid_focal_loss_grad` is its closed-form gradient.
    """
    backend = resolve(input, labels, input_name="input", target_name="labels")
    alpha, gamma = _check_indexed(backend, input, labels, alpha, gamma)
    xp = backend.xp
    value, grad = _negative_focal(backend, input, alpha, gamma)
    positive, index = _labelled(backend, labels)
    x_label = _take(backend, input, index)
    negative_label, slope = _take(backend, value, index), _take(backend, grad, index)
    positive_label = sigmoid_focal_loss(x_label, xp.ones_like(x_label), alpha=alpha, gamma=gamma, reduction="none")
    rows = xp.sum(value, axis=-1)
    fixed = backend.stop_gradient(input)
    if fixed is not input:  # autograd: the derivatives enter linearly (their value adds exactly 0)
        moved = xp.sum(input * grad, axis=-1)
        rows = rows + (moved - backend.stop_gradient(moved))
        moved = x_label * slope
        negative_label = negative_label + (moved - backend.stop_gradient(moved))
    return rows + xp.where(positive, positive_label - negative_label, 0.0)


def indexed_sigmoid_focal_loss_grad(input: Any, labels: Any, *, alpha: float = 0.25, gamma: float = 2.0,
                                    cotangent: Any = None) -> Any:
    r"""Gradient of :func:`indexed_sigmoid_focal_loss` w.r.t. ``input``: :math:`c_r\,\ell_0'(x_{rc})` on
    every entry and :math:`c_r (\partial \mathrm{FL}(x_{ry}, 1) - \ell_0'(x_{ry}))` added at the labelled
    class (``cotangent`` ``c`` of the rows' shape, a number, or None for ones)."""
    backend = resolve(input, labels, input_name="input", target_name="labels")
    alpha, gamma = _check_indexed(backend, input, labels, alpha, gamma)
    xp = backend.xp
    _, grad = _negative_focal(backend, input, alpha, gamma)
    c = 1.0 if cotangent is None else cotangent
    positive, index = _labelled(backend, labels)
    x_label = _take(backend, input, index)
    up = sigmoid_focal_loss_grad(x_label, xp.ones_like(x_label), alpha=alpha, gamma=gamma, reduction="none")
    fix = xp.where(positive, up - _take(backend, grad, index), 0.0) * c
    if not isinstance(c, float):
        c = xp.expand_dims(c, axis=-1)
    classes = xp.arange(int(input.shape[-1]), dtype=index.dtype, device=backend.device(index))
    return grad * c + xp.where(index == classes, xp.expand_dims(fix, axis=-1), 0.0)


register_gradient(indexed_sigmoid_focal_loss, indexed_sigmoid_focal_loss_grad)


@dataclass(frozen=True)
class FCOSTargets:
    """Per-anchor targets of a batch (from :meth:`FCOSLoss.assign`).

    Attributes:
        matches: ``(N, A)`` int64 index of the assigned ground truth, -1 for background.
        foreground: ``(N, A)`` bool, ``matches >= 0``.
        labels: ``(N, A)`` int64 class of the assigned ground truth, -1 for background.
        boxes: ``(N, A, 4)`` xyxy assigned ground-truth box (for background a
            finite placeholder box that no term uses).
        centerness: ``(N, A)`` centerness target (0 for background).
        non_finite: 0-d bool, a real ground-truth box was not finite (unvalidated;
            see :attr:`polyloss.detection.GroundTruth.non_finite`), or None.
    """

    matches: Any
    foreground: Any
    labels: Any
    boxes: Any
    centerness: Any
    non_finite: Any = None


def _centres_and_sizes(anchors: Any) -> tuple[Any, Any]:
    """``(centres (..., 2), sizes (..., 2))`` of xyxy anchors: midpoints and ``(width, height)``."""
    return (anchors[..., :2] + anchors[..., 2:]) / 2, anchors[..., 2:] - anchors[..., :2]


def centerness_target(backend: Backend, boxes: Any, centres: Any, sizes: Any, foreground: Any) -> Any:
    r"""FCOS's centerness target, 0 off ``foreground``:
    :math:`\sqrt{\frac{\min(l, r)}{\max(l, r)} \frac{\min(t, b)}{\max(t, b)}}`.

    The distances are torchvision's (``BoxLinearCoder.encode``: divided by the
    anchor's width and height); off the foreground no division by zero or
    square root of a negative number is evaluated.
    """
    xp = backend.xp
    ltrb = encode_ltrb(boxes, centres, scale=sizes)
    fg = xp.expand_dims(foreground, axis=-1)
    ltrb = xp.where(fg, ltrb, 1.0)
    left, top, right, bottom = ltrb[..., 0], ltrb[..., 1], ltrb[..., 2], ltrb[..., 3]
    ratio = (xp.minimum(left, right) / xp.maximum(left, right)) * (xp.minimum(top, bottom) / xp.maximum(top, bottom))
    return xp.where(foreground, xp.sqrt(ratio), 0.0)


def _count_classes(num_classes: object) -> int:
    """``num_classes`` if it is an int >= 1 (label 0 is a real class), else ``ValueError`` naming it."""
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
        raise ValueError(f"num_classes must be an int >= 1 (label 0 is a real class), got {num_classes!r}")
    return num_classes


class FCOSLoss(DetectionRecipe):
    r"""FCOS's loss, registered as recipe ``"fcos"``; torchvision's numbers.

    .. math::
        L = \frac{1}{\max(1, N_{fg})}\Big(\sum_{i, c} \mathrm{FL}_{\alpha, \gamma}(x_{ic}, y_{ic})
            + \sum_{i \in fg} (1 - \mathrm{GIoU}(\hat b_i, b_i))
            + \sum_{i \in fg} \mathrm{BCE}(o_i, c_i)\Big)

    (see :mod:`polyloss.detection.fcos`), with :math:`N_{fg}` the foreground
    anchors of the whole batch.

    Args:
        num_classes: C, the number of classes; label 0 is a real class (no
            background index, as torchvision's FCOS).
        center_sampling_radius: an anchor is a candidate of a box whose centre
            is within this many anchor widths (Chebyshev distance) of its own (1.5).
        alpha: focal loss alpha (0.25; negative disables the alpha factor).
        gamma: focal loss gamma (2.0).
        size_ranges: per-level ``(lo, hi)`` bounds of an anchor's largest
            distance to the box sides; None (default) is torchvision's rule
            (:func:`polyloss.boxes.level_size_bounds`).
        validate: check ground truth on host backends (True).
        normalize_over: ``"local"`` (default) or ``"world"``: the foreground
            count of the whole data-parallel job (see
            :data:`polyloss.detection._base.NORMALIZE_OVER`); each process's
            components are then ``W * local_sum / max(1, global N_fg)``.

    The arguments are the config of ``pl.get_recipe("fcos", ...)``. Parts
    (constructor keywords, or attributes a subclass overrides): ``assigner``
    (a :class:`polyloss.boxes.CenterSampler`), ``classification_loss``
    (``(logits (N, A, C), one-hot (N, A, C)) -> (N, A, C)``),
    ``regression_loss`` (``(boxes (N, A, 4), target boxes) -> (N, A)``,
    GIoU loss), ``centerness_loss`` (``(logits (N, A), target (N, A)) -> (N, A)``),
    ``weights`` (per component, default 1).

    Call ``recipe(class_logits (N, A, C), box_regression (N, A, 4), centerness
    (N, A), anchors (A, 4), num_anchors_per_level, gt_boxes, gt_labels)``:
    ``box_regression`` holds torchvision's ltrb distances divided by the
    anchor size, ``centerness`` logits (``(N, A, 1)`` is accepted too),
    ``num_anchors_per_level`` a list of ints (finest level first), ground truth
    xyxy (padded with label -1, or per-image sequences). Components
    ``"classification"``, ``"bbox_regression"``, ``"bbox_ctrness"``.
    ``recipe.value_and_grad(...)`` (the call's arguments) returns the result and
    ``{"class_logits": ..., "box_regression": ..., "centerness": ...}`` in
    closed form, the assignment constant.

    Stages: :meth:`assign` (center sampling and targets), :meth:`loss_stage`
    (the terms), :meth:`loss` (their result), :meth:`stages` (a whole call).

    Edge rules (every backend and path: eager, ``value_and_grad``, torch
    autograd, ``torch.func``, compiled):

    - padding (label -1) is ignored whatever it holds (NaN, inf);
    - a real box with a non-finite coordinate, ``x2 <= x1`` or ``y2 <= y1``,
      or a label outside ``[0, num_classes)``, raises ``ValueError`` naming
      the image and the box where the values can be read without a device
      sync; elsewhere, or with ``validate=False``, a non-finite real box is
      never assigned and every component is NaN;
    - NaN in a prediction array makes its component NaN, even at anchors
      that are background;
    - images without ground truth give zero box terms (their anchors are
      background for the focal term); an empty batch gives 0; never NaN.

    One difference from torchvision, in the assignment's tie rule (see
    :mod:`polyloss.boxes.center_sampling`): areas are compared exactly.
    """

    component_names = ("classification", "bbox_regression", "bbox_ctrness")

    @classmethod
    def sample_data(cls, seed: int = 0) -> tuple[dict[str, Any], SampleRun]:
        """Two images of up to three boxes (one padding entry), a 256 x 256 image on five levels, 4 classes."""
        rng = np.random.default_rng(seed)
        anchors, counts = fcos_anchors(256)
        gt_boxes, gt_labels = sample_ground_truth(rng, 2, 3, 256.0, 4, first_label=0)
        a = anchors.shape[0]
        logits = rng.normal(size=(2, a, 4))
        regression = rng.uniform(0.2, 3.0, size=(2, a, 4))
        centerness = rng.normal(size=(2, a))

        def run(recipe: Any, asarray: Callable[[Any], Any]) -> Any:
            return recipe(asarray(logits), asarray(regression), asarray(centerness), asarray(anchors), counts,
                          asarray(gt_boxes), asarray(gt_labels))

        return {"num_classes": 4}, run

    def __init__(
        self,
        num_classes: int,
        center_sampling_radius: float = 1.5,
        alpha: float = 0.25,
        gamma: float = 2.0,
        *,
        size_ranges: SizeRanges | None = None,
        assigner: Callable[..., Any] | None = None,
        classification_loss: LossPart | None = None,
        regression_loss: LossPart | None = None,
        centerness_loss: LossPart | None = None,
        weights: Mapping[str, float] | None = None,
        validate: bool = True,
        normalize_over: str = "local",
    ) -> None:
        self.num_classes = _count_classes(num_classes)
        super().__init__(weights=weights, validate=validate, normalize_over=normalize_over)
        self.assigner = assigner if assigner is not None else CenterSampler(center_sampling_radius, size_ranges)
        self.center_sampling_radius = getattr(self.assigner, "radius", center_sampling_radius)
        self.alpha = v.check_number(alpha, "alpha", minimum=None, maximum=1.0)
        self.gamma = v.check_number(gamma, "gamma")
        self.classification_loss = classification_loss if classification_loss is not None else functools.partial(
            indexed_sigmoid_focal_loss, alpha=self.alpha, gamma=self.gamma)
        self.regression_loss = regression_loss if regression_loss is not None else functools.partial(
            giou_loss, reduction="none")
        self.centerness_loss = centerness_loss if centerness_loss is not None else sigmoid_objectness_loss

    def __repr__(self) -> str:
        return (f"FCOSLoss(num_classes={self.num_classes}, center_sampling_radius={self.center_sampling_radius}, "
                f"alpha={self.alpha}, gamma={self.gamma}, normalize_over={self.normalize_over!r})")

    # -- stages ------------------------------------------------------------------
    def assign(self, anchors: Any, num_anchors_per_level: Sequence[int], gt_boxes: Any, gt_labels: Any, *,
               batch_size: int | None = None, validate: bool | None = None) -> FCOSTargets:
        """Assign anchors to ground truth (:attr:`assigner`, center sampling) and build the targets.

        Args:
            anchors: ``(A, 4)`` xyxy anchors (or ``(N, A, 4)`` per image); the
                ground truth takes their dtype.
            num_anchors_per_level: ints adding up to ``A``, finest level first.
            gt_boxes, gt_labels: padded or per-image ground truth (labels in ``[0, num_classes)``).
            batch_size: N (taken from the ground truth when omitted).
        """
        backend = self.backend_of(anchors, "anchors")
        v.check_floating(backend, anchors, "anchors")
        if anchors.ndim not in (2, 3) or anchors.shape[-1] != 4:
            raise ValueError(f"anchors must have shape (A, 4) or (N, A, 4), got {tuple(anchors.shape)}")
        if batch_size is None:
            batch_size = len(gt_boxes) if isinstance(gt_boxes, (list, tuple)) else int(gt_boxes.shape[0])
        gt = normalize_ground_truth(backend, gt_boxes, gt_labels, like=anchors, batch_size=batch_size,
                                    validate=self.validate if validate is None else validate,
                                    num_classes=self.num_classes, background=False)
        xp = backend.xp
        matches = self.assigner(anchors, gt.boxes, num_anchors_per_level, gt.valid)  # (N, A)
        foreground = matches >= 0
        index = xp.where(foreground, matches, 0)
        labels = xp.where(foreground, backend.take_along_axis(gt.labels, index, axis=1), -1)
        n, a = (int(s) for s in index.shape)
        boxes = backend.take_along_axis(gt.boxes, xp.broadcast_to(xp.expand_dims(index, axis=-1), (n, a, 4)), axis=1)
        centres, sizes = _centres_and_sizes(anchors)
        return FCOSTargets(matches=matches, foreground=foreground, labels=labels, boxes=boxes,
                           centerness=centerness_target(backend, boxes, centres, sizes, foreground),
                           non_finite=gt.non_finite)

    def loss_stage(self, class_logits: Any, box_regression: Any, centerness: Any, anchors: Any,
                   targets: FCOSTargets) -> LossStage:
        """The three terms of :meth:`loss`, each divided by max(1, foreground anchors in the batch).

        ``"classification"``: the focal loss summed over every anchor and class;
        ``"bbox_regression"``: the GIoU loss of the decoded boxes (their input,
        background anchors replaced by their placeholder target so that nothing
        there is evaluated; pulled back through the linear decoding);
        ``"bbox_ctrness"``: BCE with logits of ``centerness`` on the foreground.
        """
        backend = self.backend_of(class_logits, "class_logits")
        check_predictions(backend, "class_logits", {"class_logits": class_logits, "box_regression": box_regression,
                                                    "centerness": centerness})
        check_same(backend, anchors, "anchors", "class_logits")
        xp = backend.xp
        n, a = (int(s) for s in targets.foreground.shape)
        c = self.num_classes
        check_shape(class_logits, (n, a, c), "class_logits", "(N, A, num_classes)")
        check_shape(box_regression, (n, a, 4), "box_regression", "(N, A, 4)")
        given_centerness = centerness
        if tuple(centerness.shape) == (n, a, 1):
            centerness = xp.reshape(centerness, (n, a))
        check_shape(centerness, (n, a), "centerness", "(N, A)")
        fg = targets.foreground
        anchors = v.as_dtype_of(backend, anchors, box_regression)
        centres, sizes = _centres_and_sizes(anchors)
        every = xp.ones((n, a), dtype=xp.bool, device=backend.device(fg))
        goal = v.as_dtype_of(backend, targets.boxes, box_regression)
        decoded = xp.where(xp.expand_dims(fg, axis=-1), decode_ltrb(box_regression, centres, scale=sizes), goal)
        signed = xp.concat([-sizes, sizes], axis=-1)  # decode_ltrb's vector-Jacobian product: g (-sx, -sy, sx, sy)

        def box_pullback(g: Any) -> Any:
            return g * signed

        def centerness_pullback(g: Any) -> Any:
            return xp.reshape(g, tuple(given_centerness.shape))

        return LossStage(
            backend=backend, targets=targets, aux={"foreground": fg},
            normaliser=self.count(backend, fg, class_logits),
            terms=(
                self.term(backend, "classification", "classification_loss", "class_logits", class_logits,
                          targets.labels, every),
                self.term(backend, "bbox_regression", "regression_loss", "box_regression", decoded, goal, fg,
                          source=box_regression, pullback=box_pullback),
                self.term(backend, "bbox_ctrness", "centerness_loss", "centerness", centerness,
                          v.as_dtype_of(backend, targets.centerness, centerness), fg, source=given_centerness,
                          pullback=None if centerness is given_centerness else centerness_pullback),
            ),
            non_finite=targets.non_finite,
        )

    def loss(self, class_logits: Any, box_regression: Any, centerness: Any, anchors: Any,
             targets: FCOSTargets) -> RecipeResult:
        """The three components on assigned targets (:meth:`loss_stage`)."""
        return self.evaluate(self.loss_stage(class_logits, box_regression, centerness, anchors, targets))

    def stages(self, class_logits: Any, box_regression: Any, centerness: Any, anchors: Any,
               num_anchors_per_level: Sequence[int], gt_boxes: Any, gt_labels: Any, *,
               validate: bool | None = None) -> tuple[LossStage]:
        """The call's one loss stage: :meth:`assign` (anchors in ``class_logits``' dtype), then :meth:`loss_stage`."""
        backend = self.backend_of(class_logits, "class_logits")
        check_same(backend, anchors, "anchors", "class_logits")
        check_shape(class_logits, (None, None, self.num_classes), "class_logits", "(N, A, num_classes)")
        v.check_floating(backend, class_logits, "class_logits")
        n, a = (int(size) for size in class_logits.shape[:2])
        if anchors.ndim not in (2, 3) or tuple(anchors.shape[-2:]) != (a, 4):
            raise ValueError(f"anchors must have shape (A, 4) or (N, A, 4) with A = {a} anchors of class_logits "
                             f"{tuple(class_logits.shape)}, got {tuple(anchors.shape)}")
        anchors = v.as_dtype_of(backend, anchors, class_logits) if backend.dtype_kind(anchors.dtype) == "f" else anchors
        targets = self.assign(anchors, num_anchors_per_level, gt_boxes, gt_labels, batch_size=n, validate=validate)
        return (self.loss_stage(class_logits, box_regression, centerness, anchors, targets),)

    def __call__(
        self,
        class_logits: Any,
        box_regression: Any,
        centerness: Any,
        anchors: Any,
        num_anchors_per_level: Sequence[int],
        gt_boxes: Any,
        gt_labels: Any,
        *,
        validate: bool | None = None,
    ) -> RecipeResult:
        return self.evaluate(*self.stages(class_logits, box_regression, centerness, anchors, num_anchors_per_level,
                                          gt_boxes, gt_labels, validate=validate))


@hookimpl
def polyloss_register_recipes() -> dict[str, Callable[..., Any]]:
    return {"fcos": FCOSLoss}
