"""Building blocks shared by the detector recipes.

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
from polyloss.backend._base import Backend
from polyloss.boxes import Matcher
from polyloss.boxes import box_iou
from polyloss.functional import binary_cross_entropy_with_logits
from polyloss.functional import cross_entropy
from polyloss.functional import smooth_l1_loss

__all__ = [
    "NORMALIZE_OVER",
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
    "normalize_ground_truth",
    "per_prediction",
    "sigmoid_objectness_loss",
    "smooth_l1",
    "softmax_cross_entropy",
]

LossPart = Callable[[Any, Any], Any]


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


def softmax_cross_entropy(logits: Any, target: Any) -> Any:
    """Per-prediction softmax cross-entropy over the last axis (the default classification part)."""
    return cross_entropy(logits, target, reduction="none")


def sigmoid_objectness_loss(logits: Any, target: Any) -> Any:
    """Per-prediction binary cross-entropy with logits (the default RPN objectness part)."""
    return binary_cross_entropy_with_logits(logits, target, reduction="none")


def smooth_l1(beta: float) -> LossPart:
    """The default regression part: element-wise smooth L1 with threshold ``beta``."""
    return functools.partial(smooth_l1_loss, beta=beta, reduction="none")


@dataclass(frozen=True)
class GroundTruth:
    """Ground truth padded to a common ``G >= 1``.

    Attributes:
        boxes: ``(N, G, 4)`` xyxy boxes in the predictions' dtype (padding: 0).
        labels: ``(N, G)`` int64 labels (padding: -1).
        valid: ``(N, G)`` bool, True for real boxes.
    """

    boxes: Any
    labels: Any
    valid: Any


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


def _pad_sequence(backend: Backend, items: Sequence[Any], tail: tuple[int, ...], fill: Any, dtype: Any,
                  device: Any, name: str) -> tuple[Any, int]:
    xp = backend.xp
    for i, item in enumerate(items):
        check_same(backend, item, f"{name}[{i}]", "the predictions")
        if tuple(item.shape[1:]) != tail or item.ndim != 1 + len(tail):
            raise ValueError(f"{name}[{i}] must have shape (G_i{''.join(', ' + str(t) for t in tail)}), "
                             f"got {tuple(item.shape)}")
    g = max([int(item.shape[0]) for item in items], default=0)
    g = max(g, 1)
    rows = []
    for item in items:
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
) -> GroundTruth:
    """Padded ground truth from either accepted layout.

    Args:
        backend: the predictions' backend; every array must belong to it.
        gt_boxes: ``(N, G, 4)`` array or a sequence of N ``(G_i, 4)`` arrays.
        gt_labels: ``(N, G)`` int array (-1 = padding), a sequence of N
            ``(G_i,)`` arrays, or None when ``labels_required`` is False (then
            every box is real).
        like: an array whose dtype the boxes take (the predictions).
        batch_size: N of the predictions.
        validate: on host backends, raise ``ValueError`` for a real box with
            ``x2 <= x1`` or ``y2 <= y1`` (naming image and box) and for a label
            outside ``[1, num_classes)`` (0 is the background class).
        num_classes: the label range checked when validating.

    Returns:
        A :class:`GroundTruth` with ``G >= 1`` (an empty batch gets one padding box).
    """
    xp = backend.xp
    device = backend.device(like)
    dtype = like.dtype
    if gt_labels is None and labels_required:
        raise ValueError("gt_labels is required (class per box, -1 for padding)")
    if _is_sequence(gt_boxes):
        if len(gt_boxes) != batch_size:
            raise ValueError(f"gt_boxes holds {len(gt_boxes)} images but the predictions have batch size {batch_size}")
        if gt_labels is not None and (not _is_sequence(gt_labels) or len(gt_labels) != batch_size):
            raise ValueError("with per-image gt_boxes, gt_labels must be a sequence of as many per-image arrays")
        boxes, g = _pad_sequence(backend, gt_boxes, (4,), 0.0, dtype, device, "gt_boxes")
        if gt_labels is None:
            items = [xp.zeros((int(b.shape[0]),), dtype=xp.int64, device=device) for b in gt_boxes]
        else:
            items = list(gt_labels)
            for i, (lab, b) in enumerate(zip(items, gt_boxes, strict=True)):
                check_same(backend, lab, f"gt_labels[{i}]", "the predictions")
                if backend.dtype_kind(lab.dtype) != "i":
                    raise TypeError(f"gt_labels[{i}] must have an integer dtype, got {lab.dtype}")
                if tuple(lab.shape) != (int(b.shape[0]),):
                    raise ValueError(f"gt_labels[{i}] shape {tuple(lab.shape)} must be ({int(b.shape[0])},) "
                                     f"to match gt_boxes[{i}] shape {tuple(b.shape)}")
        labels, _ = _pad_sequence(backend, items, (), -1, xp.int64, device, "gt_labels")
    else:
        check_same(backend, gt_boxes, "gt_boxes", "the predictions")
        check_shape(gt_boxes, (batch_size, None, 4), "gt_boxes", "(N, G, 4)")
        if backend.dtype_kind(gt_boxes.dtype) not in "fi":
            raise TypeError(f"gt_boxes must have a real numeric dtype, got {gt_boxes.dtype}")
        boxes = gt_boxes if gt_boxes.dtype == dtype else xp.astype(gt_boxes, dtype)
        g = int(boxes.shape[1])
        if gt_labels is None:
            labels = xp.zeros((batch_size, g), dtype=xp.int64, device=device)
        else:
            if _is_sequence(gt_labels):
                raise ValueError("padded gt_boxes need padded gt_labels of shape (N, G), got a sequence")
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
    valid = labels >= 0
    if validate and backend.is_host_array(boxes) and batch_size > 0:
        _validate(backend, boxes, labels, valid, num_classes if gt_labels is not None else None)
    return GroundTruth(boxes=boxes, labels=labels, valid=valid)


def _first(backend: Backend, bad: Any) -> tuple[int, int] | None:
    xp = backend.xp
    if not bool(xp.any(bad)):
        return None
    g = int(bad.shape[1])
    flat = int(xp.argmax(xp.astype(xp.reshape(bad, (-1,)), xp.int8)))
    return flat // g, flat % g


def _validate(backend: Backend, boxes: Any, labels: Any, valid: Any, num_classes: int | None) -> None:
    x1, y1, x2, y2 = boxes[..., 0], boxes[..., 1], boxes[..., 2], boxes[..., 3]
    where = _first(backend, valid & ((x2 <= x1) | (y2 <= y1)))
    if where is not None:
        i, j = where
        coords = [float(boxes[i, j, k]) for k in range(4)]
        raise ValueError(
            f"degenerate ground-truth box {j} of image {i}: {coords} (xyxy needs x2 > x1 and y2 > y1); "
            "pass validate=False to skip this check"
        )
    where = _first(backend, labels < -1)
    if where is not None:
        i, j = where
        raise ValueError(f"gt_labels[{i}][{j}] = {int(labels[i, j])}: labels are class indices, -1 marks padding")
    if num_classes is not None:
        where = _first(backend, valid & ((labels == 0) | (labels >= num_classes)))
        if where is not None:
            i, j = where
            raise ValueError(
                f"gt_labels[{i}][{j}] = {int(labels[i, j])} is outside [1, num_classes={num_classes}) "
                "(0 is the background class, -1 marks padding)"
            )


def per_prediction(backend: Backend, loss: Any, ndim: int) -> Any:
    """Sum a part's output over its trailing axes so that it has ``ndim`` axes."""
    xp = backend.xp
    while loss.ndim > ndim:
        loss = xp.sum(loss, axis=-1)
    return loss


def masked_sum(backend: Backend, loss: Any, mask: Any) -> Any:
    """``sum(loss where mask)``; unselected entries (even inf/NaN) contribute nothing."""
    xp = backend.xp
    return xp.sum(xp.where(mask, loss, 0.0))


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
    """One component of a recipe stage, ``sum(loss where mask) / normaliser``, and what its gradient needs.

    Attributes:
        component: the component's name (weighted by ``recipe.weights[component]``).
        part: the attribute name of the recipe part that computed it (``"regression_loss"``, ...).
        argument: the name of the prediction array ``input`` comes from (the gradient's key).
        input: what the part was called with (the predictions, or values taken from them).
        target: the part's target.
        output: what the part returned.
        loss: ``output`` summed per prediction (:func:`per_prediction`).
        mask: the predictions the term sums over (bool).
    """

    component: str
    part: str
    argument: str
    input: Any
    target: Any
    output: Any
    loss: Any
    mask: Any


@dataclass(frozen=True)
class LossStage:
    """A recipe stage's terms and the intermediate values its value and its gradient share.

    Attributes:
        backend: the predictions' backend.
        targets: the assigned (or sampled) targets the stage ran on.
        aux: named intermediate arrays of the stage: its masks (``"positive"``,
            ``"negative"``, ...) and indices the gradient reuses.
        normaliser: the count every term is divided by (:meth:`DetectionRecipe.count`).
        terms: the components, in the result's order.
    """

    backend: Backend
    targets: Any
    aux: Mapping[str, Any]
    normaliser: Any
    terms: tuple[LossTerm, ...]

    def components(self) -> dict[str, Any]:
        """The unweighted components: ``sum(term.loss where term.mask) / normaliser`` by name."""
        return {t.component: masked_sum(self.backend, t.loss, t.mask) / self.normaliser for t in self.terms}

    def cotangent(self, term: LossTerm, weights: Mapping[str, float]) -> Any:
        """``d total / d term.loss``: ``weight / normaliser`` where ``term.mask``, else 0, in the input's dtype."""
        return self.backend.xp.astype(term.mask, term.input.dtype) * (weights[term.component] / self.normaliser)


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


class DetectionRecipe:
    """Base class of the built-in recipes: named parts, weights, and the result type.

    Subclasses set :attr:`component_names` and call :meth:`result` with the
    unweighted components; ``weights`` (a mapping name -> float) scales them;
    ``normalize_over`` (``"local"`` or ``"world"``, see :data:`NORMALIZE_OVER`)
    selects the counts :meth:`count` divides by.
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

    def value_and_grad(self, *args: Any, **kwargs: Any) -> tuple[RecipeResult, dict[str, Any]]:
        """The call's result and the gradient of its total w.r.t. each prediction array, without autograd.

        The built-in recipes override this (see :mod:`polyloss.detection._gradients`);
        a subclass that does not raises ``TypeError``.
        """
        raise TypeError(f"the recipe {type(self).__name__} has no closed-form value_and_grad; "
                        "use the autograd of an array library that has one")
