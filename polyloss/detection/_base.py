r"""The recipe base class and the building blocks the recipes share.

A recipe is :class:`DetectionRecipe` plus its *stages*, all public methods:
target assignment, sampling or mining, and one or more *loss stages*, each
returning a :class:`LossStage` (its :class:`LossTerm` s, their masks and
normaliser). From the loss stages the base class derives, once for every
recipe:

- :meth:`DetectionRecipe.evaluate`: the weighted :class:`polyloss.RecipeResult`;
- :meth:`DetectionRecipe.differentiate` and :meth:`DetectionRecipe.value_and_grad`:
  the result and the closed-form gradient of its total with respect to each
  prediction array, each term's part differentiated by its per-loss gradient
  (:mod:`polyloss.detection._gradients`) and pulled back to its argument.

A recipe is assembled from named parts, each replaceable by a constructor
argument or by overriding an attribute in a subclass:

``matcher``
    a :class:`polyloss.boxes.Matcher` (quality ``(N, G, P)`` -> matches ``(N, P)``);
``box_coder``
    a :class:`polyloss.boxes.BoxCoder` (``encode(boxes, anchors)``);
``classification_loss``
    ``(logits, target) -> per-prediction loss`` (no reduction);
``regression_loss``
    ``(deltas (..., 4), targets (..., 4)) -> per-coordinate loss`` (no reduction);
``weights``
    a mapping component name -> Python float multiplying that component.

Ground truth goes through :func:`normalize_ground_truth`: either padded
``(N, G, 4)`` boxes with ``(N, G)`` labels (``-1`` marks padding) or a sequence
of per-image ``(G_i, 4)`` / ``(G_i,)`` arrays, padded here.

Edge rules every recipe built on these blocks follows, on every backend and
path (eager, ``value_and_grad``, torch autograd, ``torch.func``, compiled):

- padding (label -1) is ignored whatever it holds (NaN, inf): it is replaced
  by a fixed finite box (:data:`PADDING_BOX`) where the ground truth is normalised;
- a real box (label >= 0) with a non-finite coordinate, ``x2 <= x1`` or
  ``y2 <= y1`` raises ``ValueError`` naming the image and the box where the
  values can be read without a device sync (NumPy, array-api-strict, PyTorch
  on the CPU outside tracing); where they cannot (GPU, ``torch.compile``,
  ``torch.func``, ``jax.jit``) or with ``validate=False``, a non-finite real box
  takes no part in matching and makes every component NaN;
- NaN in a prediction array makes every component computed from it NaN, even
  where matching, sampling or mining leaves that prediction out;
- an empty batch (``N = 0``, or per-image sequences that are empty lists) and
  images without ground truth give zero box terms, never NaN.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from collections.abc import Mapping
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from polyloss import _checks as v
from polyloss._api import RecipeResult
from polyloss._namespace import check_same
from polyloss._namespace import resolve
from polyloss.backend import Backend
from polyloss.boxes import Matcher
from polyloss.boxes import box_iou
from polyloss.detection._gradients import part_vjp
from polyloss.functional import binary_cross_entropy_with_logits
from polyloss.functional import cross_entropy
from polyloss.functional import smooth_l1_loss

__all__ = [
    "NORMALIZE_OVER",
    "PADDING_BOX",
    "DetectionRecipe",
    "GroundTruth",
    "LossStage",
    "LossTerm",
    "check_normalize_over",
    "check_num_classes",
    "check_predictions",
    "check_shape",
    "count",
    "masked_sum",
    "match_boxes",
    "nan_if",
    "normalize_ground_truth",
    "pad_sequence",
    "per_prediction",
    "sigmoid_objectness_loss",
    "smooth_l1",
    "softmax_cross_entropy",
]

LossPart = Callable[[Any, Any], Any]

#: The box every padding row (label -1) holds once ground truth is normalised,
#: whatever it held before (NaN, inf, a degenerate box): finite, of positive
#: area, so that no IoU, encoding or centre computed for padding is NaN.
PADDING_BOX = (0.0, 0.0, 1.0, 1.0)


def match_boxes(backend: Backend, matcher: Callable[[Any, Any], Any], gt_boxes: Any, predictions: Any,
                valid: Any) -> Any:
    """``matcher(box_iou(gt_boxes, predictions), valid)``; a :class:`~polyloss.boxes.Matcher` takes the IoU rows.

    ``gt_boxes (N, G, 4)`` and ``valid (N, G)``. On host arrays the trailing
    ground-truth columns that are padding in every image are dropped first
    (one host read): no IoU row is computed for them, and the matches are the same.
    """
    if valid is not None and backend.is_host_array(valid) and valid.ndim == 2 and int(valid.shape[1]) > 1:
        gt_boxes, valid = _drop_unused_padding(backend, gt_boxes, valid)
    if isinstance(matcher, Matcher):
        return matcher.match_boxes(gt_boxes, predictions, valid)
    return matcher(box_iou(gt_boxes, predictions), valid)


def _drop_unused_padding(backend: Backend, gt_boxes: Any, valid: Any) -> tuple[Any, Any]:
    xp = backend.xp
    g = int(valid.shape[1])
    columns = xp.arange(1, g + 1, dtype=xp.int64, device=backend.device(valid))
    keep = max(1, int(xp.max(xp.where(xp.any(valid, axis=0), columns, 0))))
    return (gt_boxes, valid) if keep == g else (gt_boxes[:, :keep, :], valid[:, :keep])


#: The default classification part: per-prediction softmax cross-entropy over the last axis.
softmax_cross_entropy = functools.partial(cross_entropy, reduction="none")

#: The default RPN objectness part: per-prediction binary cross-entropy with logits.
sigmoid_objectness_loss = functools.partial(binary_cross_entropy_with_logits, reduction="none")


def smooth_l1(beta: float) -> LossPart:
    """The default regression part: element-wise smooth L1 with threshold ``beta``."""
    return functools.partial(smooth_l1_loss, beta=beta, reduction="none")


@dataclass(frozen=True)
class GroundTruth:
    """Ground truth padded to a common ``G >= 1``.

    Attributes:
        boxes: ``(N, G, 4)`` xyxy boxes in the predictions' dtype; every entry
            that is not a usable real box holds :data:`PADDING_BOX`.
        labels: ``(N, G)`` int64 labels (padding: -1).
        valid: ``(N, G)`` bool, True for the real boxes that take part in
            matching (label >= 0 and finite coordinates).
        non_finite: 0-d bool array, True when a real box (label >= 0) held a
            non-finite coordinate (only possible without validation): the
            recipe's components are then NaN. None means False.
    """

    boxes: Any
    labels: Any
    valid: Any
    non_finite: Any = None


def check_shape(x: Any, shape: Sequence[int | None], name: str, what: str) -> None:
    """``x.shape`` must match ``shape`` (None: any size), else ``ValueError`` naming both."""
    got = tuple(x.shape)
    if len(got) != len(shape) or any(s is not None and g != s for g, s in zip(got, shape, strict=False)):
        want = "(" + ", ".join("?" if s is None else str(s) for s in shape) + ")"
        raise ValueError(f"{name} must have shape {what} = {want}, got {got}")


def check_predictions(backend: Backend, reference: str, arrays: Mapping[str, Any]) -> None:
    """Every array of ``arrays`` (name -> array) belongs to ``backend`` and has a real floating dtype.

    Raises ``TypeError`` naming the array (and ``reference``, the array the
    backend was taken from, for a foreign namespace).
    """
    for name, x in arrays.items():
        if name != reference:
            check_same(backend, x, name, reference)
    for name, x in arrays.items():
        v.check_floating(backend, x, name)


def check_num_classes(num_classes: object) -> int:
    """``num_classes`` if it is an int >= 2 (background included), else ``ValueError`` naming it."""
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 2:
        raise ValueError(f"num_classes must be an int >= 2 (background included), got {num_classes!r}")
    return num_classes


def _is_sequence(x: Any) -> bool:
    return isinstance(x, (list, tuple))


def pad_sequence(backend: Backend, items: Sequence[Any], tail: tuple[int, ...], fill: Any, dtype: Any,
                 device: Any, name: str) -> tuple[Any, int]:
    """Per-image arrays ``(G_i, *tail)`` stacked into ``(N, G, *tail)`` with ``G = max(1, G_i)``, padded with ``fill``.

    An empty item of any shape counts as ``(0, *tail)``; an empty sequence
    gives ``(0, 1, *tail)``. Raises ``TypeError`` for a foreign namespace and
    ``ValueError`` for a wrong shape, naming ``name[i]``.
    """
    xp = backend.xp
    shaped = []
    for i, item in enumerate(items):
        check_same(backend, item, f"{name}[{i}]", "the predictions")
        if math.prod(item.shape) == 0 and (item.ndim != 1 + len(tail) or tuple(item.shape[1:]) != tail):
            item = xp.reshape(item, (0, *tail))
        if tuple(item.shape[1:]) != tail or item.ndim != 1 + len(tail):
            raise ValueError(f"{name}[{i}] must have shape (G_i{''.join(', ' + str(t) for t in tail)}), "
                             f"got {tuple(item.shape)}")
        shaped.append(item)
    g = max([1, *(int(item.shape[0]) for item in shaped)])
    if not shaped:
        return xp.full((0, g, *tail), fill, dtype=dtype, device=device), g
    rows = []
    for item in shaped:
        item = item if item.dtype == dtype else xp.astype(item, dtype)
        missing = g - int(item.shape[0])
        if missing:
            item = xp.concat([item, xp.full((missing, *tail), fill, dtype=dtype, device=device)], axis=0)
        rows.append(item)
    return xp.stack(rows, axis=0), g


def normalize_ground_truth(
    backend: Backend,
    gt_boxes: Any,
    gt_labels: Any,
    *,
    like: Any,
    batch_size: int,
    validate: bool = True,
    num_classes: int | None = None,
    labels_required: bool = True,
    background: bool = True,
) -> GroundTruth:
    """Padded ground truth from either accepted layout, padding made harmless.

    Args:
        backend: the predictions' backend; every array must belong to it.
        gt_boxes: ``(N, G, 4)`` array or a sequence of N ``(G_i, 4)`` arrays
            (an empty list for an empty batch).
        gt_labels: ``(N, G)`` int array (-1 = padding), a sequence of N
            ``(G_i,)`` arrays, or None when ``labels_required`` is False (then
            every box is real).
        like: an array whose dtype the boxes take (the predictions).
        batch_size: N of the predictions.
        validate: where the values can be read without a device sync
            (:meth:`Backend.is_host_array`), raise ``ValueError`` naming the
            image and the box for a real box with a non-finite coordinate or
            ``x2 <= x1`` or ``y2 <= y1``, and for a label below -1 or outside
            the class range.
        num_classes: the label range checked when validating.
        background: labels are in ``[1, num_classes)`` (class 0 is the
            background, the default) or, with False, in ``[0, num_classes)``.

    Returns:
        A :class:`GroundTruth` with ``G >= 1`` (an empty batch gets one padding
        box). Padding rows, and real boxes with a non-finite coordinate when
        not validated, hold :data:`PADDING_BOX` and are not ``valid``; the
        latter set ``non_finite``.
    """
    xp = backend.xp
    device = backend.device(like)
    dtype = like.dtype
    if gt_labels is None and labels_required:
        raise ValueError("gt_labels is required (class per box, -1 for padding)")
    if _is_sequence(gt_boxes):
        if len(gt_boxes) != batch_size:
            raise ValueError(f"gt_boxes holds {len(gt_boxes)} image(s) but the predictions have batch size "
                             f"{batch_size}: give one array per image")
        if gt_labels is not None and not _is_sequence(gt_labels):
            raise TypeError("gt_boxes is a sequence of per-image arrays, so gt_labels must be one too, "
                            f"got {type(gt_labels).__name__}")
        if gt_labels is not None and len(gt_labels) != batch_size:
            raise ValueError(f"gt_labels holds {len(gt_labels)} image(s) but the predictions have batch size "
                             f"{batch_size}: give one array per image")
        boxes, g = pad_sequence(backend, gt_boxes, (4,), 0.0, dtype, device, "gt_boxes")
        sizes = [int(b.shape[0]) if math.prod(b.shape) else 0 for b in gt_boxes]
        if gt_labels is None:
            items = [xp.zeros((size,), dtype=xp.int64, device=device) for size in sizes]
        else:
            items = list(gt_labels)
            for i, (lab, b, size) in enumerate(zip(items, gt_boxes, sizes, strict=True)):
                check_same(backend, lab, f"gt_labels[{i}]", "the predictions")
                if backend.dtype_kind(lab.dtype) != "i":
                    raise TypeError(f"gt_labels[{i}] must have an integer dtype, got {lab.dtype}")
                if tuple(lab.shape) != (size,) and not (size == 0 and math.prod(lab.shape) == 0):
                    raise ValueError(f"gt_labels[{i}] shape {tuple(lab.shape)} must be ({size},) "
                                     f"to match gt_boxes[{i}] shape {tuple(b.shape)}")
        labels, _ = pad_sequence(backend, items, (), -1, xp.int64, device, "gt_labels")
    else:
        if _is_sequence(gt_labels):
            raise TypeError("gt_boxes is a padded array, so gt_labels must be one too, got a sequence")
        check_same(backend, gt_boxes, "gt_boxes", "the predictions")
        check_shape(gt_boxes, (batch_size, None, 4), "gt_boxes", "(N, G, 4)")
        if backend.dtype_kind(gt_boxes.dtype) not in "fi":
            raise TypeError(f"gt_boxes must have a real numeric dtype, got {gt_boxes.dtype}")
        boxes = gt_boxes if gt_boxes.dtype == dtype else xp.astype(gt_boxes, dtype)
        g = int(boxes.shape[1])
        if gt_labels is None:
            labels = xp.zeros((batch_size, g), dtype=xp.int64, device=device)
        else:
            check_same(backend, gt_labels, "gt_labels", "the predictions")
            if tuple(gt_labels.shape) != (batch_size, g):
                raise ValueError(f"gt_labels shape {tuple(gt_labels.shape)} must be (N, G) = {(batch_size, g)} "
                                 f"to match gt_boxes shape {tuple(gt_boxes.shape)}")
            if backend.dtype_kind(gt_labels.dtype) != "i":
                raise TypeError(f"gt_labels must have an integer dtype, got {gt_labels.dtype}")
            labels = gt_labels if gt_labels.dtype == xp.int64 else xp.astype(gt_labels, xp.int64)
        if g == 0:
            boxes = xp.zeros((batch_size, 1, 4), dtype=dtype, device=device)
            labels = xp.full((batch_size, 1), -1, dtype=xp.int64, device=device)
    real = labels >= 0
    finite = xp.max(xp.abs(boxes), axis=-1) < math.inf  # NaN compares False (isfinite and all: 2x slower)
    validated = validate and backend.is_host_array(boxes) and batch_size > 0
    if validated:
        _validate(backend, boxes, labels, real, finite, num_classes if gt_labels is not None else None, background)
    valid = real & finite
    padding = xp.asarray(PADDING_BOX, dtype=dtype, device=device)
    # validated: every real box is finite (else it raised)
    return GroundTruth(boxes=xp.where(xp.expand_dims(valid, axis=-1), boxes, padding), labels=labels, valid=valid,
                       non_finite=None if validated else xp.any(real & ~finite))


def _first(backend: Backend, bad: Any) -> tuple[int, int] | None:
    xp = backend.xp
    if not bool(xp.any(bad)):
        return None
    g = int(bad.shape[1])
    flat = int(xp.argmax(xp.astype(xp.reshape(bad, (-1,)), xp.int8)))
    return flat // g, flat % g


def _validate(backend: Backend, boxes: Any, labels: Any, real: Any, finite: Any, num_classes: int | None,
              background: bool) -> None:
    xp = backend.xp
    # one read when all is well: a real box not finite or with x2 <= x1 or y2 <= y1 (NaN compares False), a
    # label below -1, or a real label outside [first, num_classes) (label 0 is the background's)
    bad_box = real & ~(finite & (boxes[..., 2] > boxes[..., 0]) & (boxes[..., 3] > boxes[..., 1]))
    first = 1 if background else 0
    bad_label = labels < -1
    if num_classes is not None:
        bad_label = bad_label | (labels >= num_classes)
        if background:
            bad_label = bad_label | (labels == 0)
    if not bool(xp.any(bad_box | bad_label)):
        return
    where = _first(backend, bad_box)
    if where is not None:
        i, j = where
        coords = [float(boxes[i, j, k]) for k in range(4)]
        label = int(labels[i, j])
        if not bool(finite[i, j]):
            raise ValueError(f"ground-truth box {j} of image {i} (label {label}) is not finite: {coords} "
                             "(a real box needs finite coordinates; label -1 marks padding, which may hold "
                             "anything); pass validate=False to skip this check")
        raise ValueError(
            f"degenerate ground-truth box {j} of image {i} (label {label}): {coords} (xyxy needs x2 > x1 and "
            "y2 > y1); pass validate=False to skip this check"
        )
    where = _first(backend, labels < -1)
    if where is not None:
        i, j = where
        raise ValueError(f"gt_labels[{i}][{j}] = {int(labels[i, j])}: labels are class indices, -1 marks padding")
    if num_classes is not None:
        where = _first(backend, real & ((labels < first) | (labels >= num_classes)))
        if where is not None:
            i, j = where
            hint = "0 is the background class, -1 marks padding" if background else "-1 marks padding"
            raise ValueError(f"gt_labels[{i}][{j}] = {int(labels[i, j])} is outside [{first}, "
                             f"num_classes={num_classes}) ({hint})")


def per_prediction(backend: Backend, loss: Any, ndim: int) -> Any:
    """Sum a part's output over its trailing axes so that it has ``ndim`` axes."""
    xp = backend.xp
    while loss.ndim > ndim:
        loss = xp.sum(loss, axis=-1)
    return loss


def masked_sum(backend: Backend, loss: Any, mask: Any) -> Any:
    """``sum(loss where mask)``; unselected entries (even inf/NaN) contribute nothing to it.

    (A recipe's component still shows NaN from unselected predictions: see :meth:`LossStage.components`.)
    """
    xp = backend.xp
    return xp.sum(xp.where(mask, loss, 0.0))


def nan_if(backend: Backend, flag: Any, like: Any) -> Any:
    """A 0-d array of ``like``'s dtype: NaN where the 0-d bool ``flag`` is True, else 0 (a constant: no gradient)."""
    xp = backend.xp
    nan = xp.asarray(math.nan, dtype=like.dtype, device=backend.device(like))
    return xp.where(flag, nan, 0.0)


def count(backend: Backend, mask: Any, like: Any, *, normalize_over: str = "local") -> Any:
    """A normaliser: ``max(1, number of True in mask)`` in ``like``'s dtype.

    With ``normalize_over="world"`` the number is summed over the processes of
    a data-parallel job first (:meth:`Backend.all_reduce_sum`) and the result
    is divided by the world size ``W``: a term ``local_sum / count(...)`` is
    then ``W * local_sum / max(1, global count)``, whose average over the
    ``W`` processes is the single-process value on the concatenated batch
    (see :data:`NORMALIZE_OVER`).
    """
    xp = backend.xp
    n = xp.sum(xp.astype(mask, like.dtype))
    world = 1
    if normalize_over == "world":
        n = backend.all_reduce_sum(n)
        world = backend.world_size()
    n = xp.where(n > 0, n, 1.0)
    return n / float(world) if world != 1 else n


@dataclass(frozen=True)
class LossTerm:
    """One component of a loss stage and everything its value and its gradient need.

    Its value is ``sum(loss where mask) / normaliser``; made by :meth:`DetectionRecipe.term`.

    Attributes:
        component: the component's name (weighted by ``recipe.weights[component]``).
        part_name: the attribute name of the recipe part (``"regression_loss"``, ...), for messages.
        part: the part as called, ``part(input, target)`` (no reduction); its
            closed-form gradient is looked up by :func:`polyloss.detection._gradients.part_gradient`.
        argument: the name of the prediction array ``input`` comes from (the gradient's key).
        input: what the part was called with (the predictions, or values taken from them).
        target: the part's target.
        output: what the part returned (or an array of its shape, where a recipe computes the loss another way).
        loss: ``output`` summed per prediction (:func:`per_prediction`), the mask's shape.
        mask: the predictions the term sums over (bool).
        source: the prediction array ``input`` was taken from, when it is not
            ``input`` itself: a NaN anywhere in it makes the component NaN.
        pullback: maps the gradient w.r.t. ``input`` to the gradient w.r.t.
            ``argument`` (None: ``input`` is the argument).
        normaliser: this term's normaliser when it is not the stage's: a 0-d
            array, or ``(N,)`` (one per image, dividing the image's sum).
        finite_source: True where the recipe has already read that ``input``
            (or ``source``) holds no NaN: the component skips its own NaN test.
    """

    component: str
    part_name: str
    part: LossPart
    argument: str
    input: Any
    target: Any
    output: Any
    loss: Any
    mask: Any
    source: Any = None
    pullback: Callable[[Any], Any] | None = None
    normaliser: Any = None
    finite_source: bool = False


@dataclass(frozen=True)
class LossStage:
    """A recipe stage's terms and the intermediate values its value and its gradient share.

    Attributes:
        backend: the predictions' backend.
        targets: the assigned (or sampled) targets the stage ran on.
        aux: named intermediate arrays of the stage: its masks (``"positive"``,
            ``"negative"``, ...) and indices.
        normaliser: the count every term is divided by (:meth:`DetectionRecipe.count`),
            unless the term has its own.
        terms: the components, in the result's order.
        non_finite: 0-d bool, True when the ground truth held a non-finite
            real box (:attr:`GroundTruth.non_finite`): every component is NaN. None: False.
    """

    backend: Backend
    targets: Any
    aux: Mapping[str, Any]
    normaliser: Any
    terms: tuple[LossTerm, ...]
    non_finite: Any = None

    def _normaliser(self, term: LossTerm) -> Any:
        return self.normaliser if term.normaliser is None else term.normaliser

    def component(self, term: LossTerm, nan_flags: dict[int, Any] | None = None) -> Any:
        """The unweighted component of ``term``: ``sum(term.loss where term.mask) / normaliser``, or NaN.

        NaN when the term's input (or its ``source``) holds a NaN anywhere,
        selected by the mask or not, or when :attr:`non_finite` is set. The NaN
        is added as a constant: the gradient is the term's own. ``nan_flags``
        keeps the NaN test of each source array by ``id`` across the terms of
        one call (a 0-d array, NaN or 0, or None: no test).
        """
        xp = self.backend.xp
        n = self._normaliser(term)
        if n.ndim == 0:
            value = masked_sum(self.backend, term.loss, term.mask) / n
        else:  # one normaliser per image
            value = xp.sum(per_prediction(self.backend, xp.where(term.mask, term.loss, 0.0), 1) / n)
        source = term.input if term.source is None else term.source
        nans = {} if nan_flags is None else nan_flags
        if term.finite_source:
            nans[id(source)] = None
        elif id(source) not in nans:  # the standard's max propagates NaN: one reduction, no (..., C) bool array;
            # clip(., 0, 0) maps every number (inf too) to 0 and keeps a NaN: NaN or 0, a constant
            nans[id(source)] = (xp.clip(xp.max(self.backend.stop_gradient(source)), min=0.0, max=0.0)
                                if math.prod(source.shape) else None)
        nan = nans[id(source)]
        if self.non_finite is not None:
            flagged = nan_if(self.backend, self.non_finite, term.loss)
            nan = flagged if nan is None else nan + flagged
        if nan is None:
            return value
        return value + (nan if nan.dtype == value.dtype else xp.astype(nan, value.dtype))

    def components(self) -> dict[str, Any]:
        """The unweighted components by name (:meth:`component` of each term)."""
        nan_flags: dict[int, Any] = {}
        return {t.component: self.component(t, nan_flags) for t in self.terms}

    def cotangent(self, term: LossTerm, weights: Mapping[str, float]) -> Any:
        """``d total / d term.loss``: ``weight / normaliser`` where ``term.mask``, else 0, in the input's dtype."""
        xp = self.backend.xp
        n = self._normaliser(term)
        if n.ndim != 0:
            n = xp.reshape(n, (int(n.shape[0]),) + (1,) * (term.mask.ndim - 1))
        return xp.astype(term.mask, term.input.dtype) * (weights[term.component] / n)


NORMALIZE_OVER = ("local", "world")
"""Values of the recipes' ``normalize_over`` option.

``"local"`` (default)
    counts (positives, sampled anchors, ...) are those of the batch the
    process sees: in data-parallel training each worker divides by its own
    count, so averaging gradients over workers does not reproduce the loss of
    one process on the whole batch.
``"world"``
    counts are summed over every process of the data-parallel job through
    the backend (``torch.distributed`` when a process group is initialised;
    with a single process, or a backend without collectives, the same as
    ``"local"``), and each worker's loss is ``W * local_sum / global_count``
    with ``W`` the world size. When the framework averages gradients over the
    ``W`` workers (DDP's all-reduce mean), the averaged gradient is exactly
    the gradient of the single-process loss on the concatenated batch, and
    the mean of the workers' losses is that loss. Every worker must call the
    recipe the same number of times, in the same order (each call runs
    collectives).
"""


def check_normalize_over(value: object) -> str:
    """``value`` if it is one of :data:`NORMALIZE_OVER`, else ``ValueError`` naming it."""
    if not isinstance(value, str) or value not in NORMALIZE_OVER:
        raise ValueError(f"normalize_over must be one of {', '.join(map(repr, NORMALIZE_OVER))}, got {value!r}")
    return value



# -- sample data (``DetectionRecipe.sample_data``) ------------------------------

#: ``run(recipe, asarray)``: calls a recipe on sample data converted by ``asarray``
SampleRun = Callable[[Any, Callable[[Any], Any]], Any]


def sample_ground_truth(rng: Any, images: int, boxes: int, scale: float, num_classes: int, *,
                        first_label: int = 1) -> tuple[Any, Any]:
    """Padded float64 xyxy ground truth ``(images, boxes, 4)`` in ``[0, scale]`` and int64 labels, for sample data.

    Labels are drawn from ``[first_label, num_classes)``; the last entry of
    the last image is padding (label -1), so every sample exercises padding.
    ``rng`` is a :class:`numpy.random.Generator`.
    """
    import numpy as np

    corner = rng.uniform(0.0, 0.6 * scale, size=(images, boxes, 2))
    gt_boxes = np.concatenate([corner, corner + rng.uniform(0.15 * scale, 0.4 * scale, size=(images, boxes, 2))],
                              axis=-1)
    labels = rng.integers(first_label, num_classes, size=(images, boxes))
    labels[-1, -1] = -1
    return gt_boxes, labels


def sample_grid_boxes(size: int, scale: float) -> Any:
    """Float64 xyxy anchors on a ``size x size`` grid over ``[0, scale]``: a cell-sized and a double one per cell."""
    import numpy as np

    step = scale / size
    ys, xs = np.meshgrid(np.arange(size) * step, np.arange(size) * step, indexing="ij")
    small = np.stack([xs, ys, xs + step, ys + step], -1).reshape(-1, 4)
    large = np.stack([xs, ys, np.minimum(xs + 2 * step, scale), np.minimum(ys + 2 * step, scale)], -1).reshape(-1, 4)
    return np.concatenate([small, large])


class DetectionRecipe:
    """Base class of the recipes: named parts, weights, loss stages, and value and gradient derived from them.

    A subclass sets :attr:`component_names`, exposes its stages as public
    methods, builds each loss stage's terms with :meth:`term` into a
    :class:`LossStage`, and implements :meth:`stages` (the loss stages of one
    call, from the call's arguments). Then :meth:`evaluate` gives the
    :class:`polyloss.RecipeResult` of stages and :meth:`value_and_grad` the
    result of a call with the closed-form gradient of its total, for every
    recipe alike.

    ``weights`` (a mapping name -> float) scales the components;
    ``normalize_over`` (``"local"`` or ``"world"``, see :data:`NORMALIZE_OVER`)
    selects the counts :meth:`count` divides by; ``validate`` checks ground
    truth on host backends.
    """

    component_names: tuple[str, ...] = ()

    def __init__(self, *, weights: Mapping[str, float] | None = None, validate: bool = True,
                 normalize_over: str = "local") -> None:
        self.weights = self._check_weights(weights)
        self.validate = bool(validate)
        self.normalize_over = check_normalize_over(normalize_over)

    def count(self, backend: Backend, mask: Any, like: Any) -> Any:
        """The normaliser of a batch-summed term: :func:`count` under this recipe's ``normalize_over``."""
        return count(backend, mask, like, normalize_over=self.normalize_over)

    def _check_weights(self, weights: Mapping[str, float] | None) -> dict[str, float]:
        out = dict.fromkeys(self.component_names, 1.0)
        for name, value in (weights or {}).items():
            if name not in out:
                raise ValueError(f"unknown weight {name!r}; components: {', '.join(self.component_names)}")
            if isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value):
                raise TypeError(f"weights[{name!r}] must be a Python number, got {value!r}")
            out[name] = float(value)
        return out

    def result(self, backend: Backend, components: Mapping[str, Any]) -> RecipeResult:
        """A :class:`polyloss.RecipeResult` of the weighted components."""
        weighted = {}
        for name, value in components.items():
            w = self.weights.get(name, 1.0)
            weighted[name] = backend.as_array(value if w == 1.0 else value * w)
        return RecipeResult.from_components(weighted)

    @staticmethod
    def backend_of(x: Any, name: str) -> Backend:
        return resolve(x, input_name=name)

    # -- loss stages --------------------------------------------------------------------
    def term(self, backend: Backend, component: str, part_name: str, argument: str, input: Any, target: Any,
             mask: Any, *, part: LossPart | None = None, source: Any = None,
             pullback: Callable[[Any], Any] | None = None, normaliser: Any = None, output: Any = None,
             loss: Any = None) -> LossTerm:
        """Call the part ``part_name`` (``getattr(self, part_name)`` unless ``part`` is given) on
        ``(input, target)`` and describe the term (see :class:`LossTerm` for the other arguments).

        ``output``: what the part returned on ``(input, target)`` when the recipe has called it already (two
        terms on one part's output, each with its own mask): the part is not called again. ``loss``: that
        output summed per prediction when the recipe has summed it (default: :func:`per_prediction`).
        """
        fn: LossPart = getattr(self, part_name) if part is None else part
        if output is None:
            output = fn(input, target)
        if loss is None:
            loss = per_prediction(backend, output, mask.ndim)
        return LossTerm(component=component, part_name=part_name, part=fn, argument=argument, input=input,
                        target=target, output=output, loss=loss, mask=mask, source=source, pullback=pullback,
                        normaliser=normaliser)

    @classmethod
    def sample_data(cls, seed: int = 0) -> tuple[dict[str, Any], SampleRun] | None:
        """Small deterministic sample data: ``(config, run)``, or None (the base class has none).

        ``python -m polyloss check`` and :func:`polyloss.testing.check_recipe`
        build ``get_recipe(name, **config)`` and call ``run(recipe, asarray)``
        on every backend, ``asarray`` converting each float64/int64 NumPy
        input. A plugin recipe overrides this classmethod (or gives its
        factory a ``sample_data`` attribute) so that ``check`` covers it.
        """
        return None

    def stages(self, *args: Any, **kwargs: Any) -> tuple[LossStage, ...]:
        """The loss stages of one call, from the call's arguments (each recipe declares its own).

        The base class has none: a recipe that does not declare them has no
        closed-form :meth:`value_and_grad`.
        """
        raise TypeError(f"the recipe {type(self).__name__} declares no loss stages (DetectionRecipe.stages), so it "
                        "has no closed-form value_and_grad; use the autograd of an array library that has one")

    def evaluate(self, *stages: LossStage) -> RecipeResult:
        """The weighted :class:`polyloss.RecipeResult` of the stages' components, in their order."""
        components: dict[str, Any] = {}
        for stage in stages:
            components.update(stage.components())
        return self.result(stages[0].backend, components)

    def differentiate(self, *stages: LossStage) -> tuple[RecipeResult, dict[str, Any]]:
        """:meth:`evaluate` and the gradient of its total w.r.t. each term's argument, in closed form.

        Each term's cotangent (``weight / normaliser`` on its mask,
        :meth:`LossStage.cotangent`) is pulled back through its part by the
        part's per-loss gradient, then to the prediction array by the term's
        ``pullback``; terms of one argument add up. Matching, sampling, mining
        and the normalisers are constants, as they are for autograd.
        """
        grads: dict[str, Any] = {}
        for stage in stages:
            for term in stage.terms:
                g = part_vjp(stage.backend, term.part, term.part_name, term.input, term.target, term.output,
                             stage.cotangent(term, self.weights))
                if term.pullback is not None:
                    g = term.pullback(g)
                grads[term.argument] = g if term.argument not in grads else grads[term.argument] + g
        return self.evaluate(*stages), grads

    def value_and_grad(self, *args: Any, **kwargs: Any) -> tuple[RecipeResult, dict[str, Any]]:
        """The call's result and the gradient of its total w.r.t. each prediction array, without autograd.

        Takes the arguments of the recipe's call: ``differentiate(*stages(...))``.
        Returns ``(result, grads)`` with ``grads`` keyed by the prediction
        arguments' names, each of its argument's shape, namespace and dtype.
        Raises ``TypeError`` naming the part for a part without a closed-form
        gradient, and for a recipe that declares no :meth:`stages`.
        """
        return self.differentiate(*self.stages(*args, **kwargs))
