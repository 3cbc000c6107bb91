r"""The YOLOv1 detector loss (Redmon et al., *You Only Look Once*, CVPR 2016).

Built-in recipe plugin ``"yolov1"``: ``pl.get_recipe("yolov1", **config)``
returns a :class:`YOLOv1Loss`. The image is cut into an ``S x S`` grid; each
cell predicts ``B`` boxes ``(x, y, w, h, conf)`` and ``C`` class scores. With
:math:`\mathbb{1}^{obj}_{ij}` marking the responsible predictor *j* of a cell
*i* that holds an object centre, :math:`\mathbb{1}^{noobj}_{ij} = 1 -
\mathbb{1}^{obj}_{ij}` and :math:`\mathbb{1}^{obj}_i` the cells holding one:

.. math::
    \lambda_{coord} \sum_{ij} \mathbb{1}^{obj}_{ij} \big[(x - \hat x)^2 + (y - \hat y)^2
        + (\sqrt w - \sqrt{\hat w})^2 + (\sqrt h - \sqrt{\hat h})^2\big]
    + \sum_{ij} \mathbb{1}^{obj}_{ij} (c - \hat c)^2
    + \lambda_{noobj} \sum_{ij} \mathbb{1}^{noobj}_{ij} c^2
    + \sum_i \mathbb{1}^{obj}_i \sum_k (p_k - \hat p_k)^2

summed over the batch and divided by the batch size (``normalize="batch"``).
The recipe is written against the array API (NumPy, array-api-strict, PyTorch,
CuPy, ...): no per-image loop, no boolean indexing, no data-dependent shapes.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from polyloss import boxes
from polyloss._api import RecipeResult
from polyloss._hooks import hookimpl
from polyloss._namespace import check_same
from polyloss._namespace import resolve
from polyloss.backend import Backend
from polyloss.boxes.iou import pairwise_score
from polyloss.detection._base import DetectionRecipe
from polyloss.detection._base import LossPart
from polyloss.detection._base import LossStage
from polyloss.detection._base import LossTerm
from polyloss.detection._base import SampleRun
from polyloss.detection._base import normalize_ground_truth
from polyloss.detection._base import per_prediction
from polyloss.detection._base import sample_ground_truth
from polyloss.functional import mse_loss
from polyloss.typing import ArrayT

__all__ = [
    "YOLOv1Cells",
    "YOLOv1Loss",
    "YOLOv1Targets",
    "paired_box_iou",
    "safe_sqrt",
    "squared_error",
    "sum_squared_error",
]

ErrorFn = Callable[[Backend, Any, Any], Any]


# -- parts ---------------------------------------------------------------------


def paired_box_iou(backend: Backend, boxes1: Any, boxes2: Any) -> Any:
    """Element-wise IoU of xyxy boxes ``(..., 4)`` (broadcast against each other), 0 where the union is 0:
    :func:`polyloss.boxes.paired_box_iou` (the one IoU core) as a recipe part. Predicted extents are
    clamped at 0 before it is called, so no box has a negative extent."""
    return boxes.paired_box_iou(boxes1, boxes2)


def squared_error(backend: Backend, input: Any, target: Any) -> Any:
    """Element-wise ``(input - target)^2`` (broadcasting)."""
    d = input - target
    return d * d


def sum_squared_error(backend: Backend, input: Any, target: Any) -> Any:
    """``sum((input - target)^2)`` over the last axis (broadcasting)."""
    return backend.xp.sum(squared_error(backend, input, target), axis=-1)


def safe_sqrt(backend: Backend, x: Any, *, eps: float) -> Any:
    """``sqrt(max(x, eps))``: finite, with a finite gradient (0) at and below ``eps``."""
    return backend.xp.sqrt(backend.xp.clip(x, min=eps))


#: The loss each default error part computes, as a loss with a closed-form gradient (no reduction; the
#: recipe sums the coordinate and class errors per predictor / cell).
_SQUARED_ERROR = functools.partial(mse_loss, reduction="none")
_DEFAULT_ERRORS = (squared_error, sum_squared_error)

#: Axis orders between the recipe's field-major blocks ``(F, B, N, S, S)`` and ``(N, S, S, B, F)``.
_TO_CELLS = (2, 3, 4, 1, 0)
_TO_FIELDS = (4, 3, 0, 1, 2)


# -- stage outputs -------------------------------------------------------------


@dataclass(frozen=True)
class YOLOv1Cells:
    """Ground truth encoded per grid cell (what does not depend on the predictions).

    Attributes:
        obj: ``(N, S, S)`` 1.0 where a cell holds an object centre (the first
            ground truth in input order wins a shared cell), else 0.0.
        coords: ``(N, S, S, 4)`` targets ``(x, y, w, h)``: centre offset inside the
            cell (in cell units) and size relative to the image; 0 in empty cells.
        boxes: ``(N, S, S, 4)`` the same object as xyxy in image units (for the IoU).
        classes: ``(N, S, S, C)`` one-hot class of the cell's object (0 in empty cells).
        non_finite: 0-d bool, a real ground-truth box was not finite (unvalidated;
            see :attr:`polyloss.detection.GroundTruth.non_finite`), or None.
    """

    obj: Any
    coords: Any
    boxes: Any
    classes: Any
    non_finite: Any = None


@dataclass(frozen=True)
class YOLOv1Targets:
    """Everything :meth:`YOLOv1Loss.loss_stage` needs.

    Attributes:
        cells: the per-cell ground truth (:class:`YOLOv1Cells`).
        iou: ``(N, S, S, B)`` IoU of each predicted box with its cell's object
            (0 in empty cells), computed without gradient.
        responsible: ``(N, S, S, B)`` 1.0 for the predictor responsible for the
            cell's object (highest IoU, the first on ties), else 0.0. Every other
            predictor gets the no-object term.
    """

    cells: YOLOv1Cells
    iou: Any
    responsible: Any


# -- the recipe ----------------------------------------------------------------

_CONF_TARGETS = ("iou", "one")
_NORMALIZE = ("batch", "sum")


def _positive_int(value: object, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if value < 1:
        raise ValueError(f"{name} must be >= 1, got {value!r}")
    return value


def _non_negative(value: object, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a Python number, got {type(value).__name__}")
    v = float(value)
    if not math.isfinite(v) or v < 0:
        raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
    return v


class YOLOv1Loss(DetectionRecipe):
    r"""YOLOv1 loss (Redmon et al., 2016), the ``"yolov1"`` recipe.

    Args:
        grid: ``S``, cells per side (default 7).
        boxes_per_cell: ``B``, predictors per cell (default 2).
        num_classes: ``C`` (default 20).
        lambda_coord: weight of the coordinate term (default 5.0).
        lambda_noobj: weight of the no-object confidence term (default 0.5).
        conf_target: ``"iou"`` (paper: the responsible predictor's confidence
            regresses to its IoU with the object, not differentiated) or
            ``"one"``.
        normalize: ``"batch"`` (sum over everything divided by ``N``) or ``"sum"``.
        validate: check ground-truth values on host backends (default True).
        normalize_over: ``"local"`` (default) or ``"world"`` for data-parallel
            training. With ``"world"`` and ``W`` processes (``torch.distributed``
            initialised), each process's terms are ``W * local_sum / N_global``
            (``normalize="batch"``, ``N_global`` the images of all processes,
            all-reduced through the backend) or ``W * local_sum``
            (``normalize="sum"``), so that gradients averaged over the workers
            (DDP) and the mean of the workers' losses equal those of one process
            on the concatenated batch. With a single process it equals ``"local"``.
        weights: factors per component (``"coord"``, ``"obj"``, ``"noobj"``,
            ``"class"``; default 1); ``"coord"`` and ``"noobj"`` default to
            ``lambda_coord`` and ``lambda_noobj`` (a weight given here replaces them).
        box_iou, coord_error, class_error, conf_error: optional replacements of
            the parts of the same name (see below), called as ``fn(backend, a, b)``.

    Call ``recipe(pred, gt_boxes, gt_labels)``:

    - ``pred``: ``(N, S, S, B*5 + C)``; axis 1 is the row (y), axis 2 the column
      (x); per cell ``B x (x, y, w, h, conf)`` then ``C`` class scores. ``x, y``
      are offsets inside the cell, ``w, h`` relative to the image.
    - ``gt_boxes``: image-normalised xyxy boxes in [0, 1], ``(N, G, 4)`` padded,
      or a sequence of ``(G_i, 4)`` arrays; ``gt_labels``: ``(N, G)`` in
      ``[0, C)`` with -1 for padding, or a sequence of ``(G_i,)`` arrays.

    Returns a :class:`polyloss.RecipeResult` with components ``"coord"``,
    ``"obj"``, ``"noobj"``, ``"class"`` (each weighted), ``total`` their sum.
    ``recipe.value_and_grad(pred, gt_boxes, gt_labels)`` returns it with
    ``{"pred": d total / d pred}`` in closed form (the assignment and the IoU
    confidence targets are constants; needs the default error parts and
    ``size_transform``, else ``TypeError`` naming the part).

    Assignment: an object belongs to the cell holding its centre
    (``floor(c * S)``, clamped to the grid so a centre at 1.0 falls in the last
    cell); a cell holding several centres keeps the first in input order (the
    others are ignored, as one cell predicts one class in the paper). For the
    IoU a predictor's box is centred at ``((col + x)/S, (row + y)/S)`` with width
    ``max(w, 0)`` and height ``max(h, 0)``; the responsible predictor is the one
    with the highest IoU (ties, including all-zero IoU: the first; a NaN IoU
    counts as the highest).

    Square roots are ``sqrt(max(w, sqrt_eps))`` (``sqrt_eps = 1e-12``): finite,
    with a finite gradient at ``w = 0`` (zero below ``sqrt_eps``).

    Edge rules (every backend and path; see :mod:`polyloss.detection._base`):
    padding (label -1) is ignored whatever it holds; a real box with a
    non-finite coordinate, ``x2 <= x1`` or ``y2 <= y1``, or a label outside
    ``[0, C)``, raises ``ValueError`` naming the image and the box where values
    can be read (else the non-finite box is left out and every component is
    NaN); NaN anywhere in ``pred`` makes the components computed from that
    part of ``pred`` NaN (a NaN class score in a cell without an object too);
    images without ground truth give only the no-object term, and an empty
    batch (``N = 0``, or empty lists) gives 0.

    Named parts, replaceable by a subclass (class attribute) or the constructor:

    - ``box_iou(backend, boxes1, boxes2)``: element-wise IoU of broadcastable
      xyxy boxes (:func:`paired_box_iou`).
    - ``coord_error(backend, pred, target)``: ``(..., 4)`` coordinates
      ``(x, y, size_transform(w), size_transform(h))`` -> per-predictor error
      (:func:`sum_squared_error`).
    - ``class_error(backend, scores, one_hot)``: ``(..., C)`` -> per-cell error
      (:func:`sum_squared_error`).
    - ``conf_error(backend, conf, target)``: element-wise confidence error
      (:func:`squared_error`).
    - ``size_transform(self, backend, wh)``: the map applied to ``w, h`` before
      ``coord_error`` (:func:`safe_sqrt`).

    Stages: :meth:`encode_ground_truth` (per-cell targets, independent of the
    predictions), :meth:`decode_boxes`, :meth:`match_predictors`,
    :meth:`assign_targets` (the two together), :meth:`loss_stage` (the four
    terms) and :meth:`loss_from_targets` (their result).
    """

    name = "yolov1"
    component_names = ("coord", "obj", "noobj", "class")
    sqrt_eps: float = 1e-12
    box_iou: Callable[..., Any] = staticmethod(paired_box_iou)
    coord_error: Callable[..., Any] = staticmethod(sum_squared_error)
    class_error: Callable[..., Any] = staticmethod(sum_squared_error)
    conf_error: Callable[..., Any] = staticmethod(squared_error)

    @classmethod
    def sample_data(cls, seed: int = 0) -> tuple[dict[str, Any], SampleRun]:
        """Two images of up to three boxes on a 4x4 grid, two boxes per cell, 3 classes."""
        rng = np.random.default_rng(seed)
        gt_boxes, gt_labels = sample_ground_truth(rng, 2, 3, 1.0, 3)
        pred = rng.uniform(0.0, 1.0, size=(2, 4, 4, 2 * 5 + 3))

        def run(recipe: Any, asarray: Callable[[Any], Any]) -> Any:
            return recipe(asarray(pred), asarray(gt_boxes), asarray(gt_labels))

        return {"grid": 4, "boxes_per_cell": 2, "num_classes": 3}, run

    def __init__(
        self,
        *,
        grid: int = 7,
        boxes_per_cell: int = 2,
        num_classes: int = 20,
        lambda_coord: float = 5.0,
        lambda_noobj: float = 0.5,
        conf_target: str = "iou",
        normalize: str = "batch",
        validate: bool = True,
        normalize_over: str = "local",
        weights: Mapping[str, float] | None = None,
        box_iou: ErrorFn | None = None,
        coord_error: ErrorFn | None = None,
        class_error: ErrorFn | None = None,
        conf_error: ErrorFn | None = None,
    ) -> None:
        self.grid = _positive_int(grid, "grid")
        self.boxes_per_cell = _positive_int(boxes_per_cell, "boxes_per_cell")
        self.num_classes = _positive_int(num_classes, "num_classes")
        self.lambda_coord = _non_negative(lambda_coord, "lambda_coord")
        self.lambda_noobj = _non_negative(lambda_noobj, "lambda_noobj")
        if conf_target not in _CONF_TARGETS:
            raise ValueError(f"conf_target must be one of {', '.join(map(repr, _CONF_TARGETS))}, got {conf_target!r}")
        if normalize not in _NORMALIZE:
            raise ValueError(f"normalize must be one of {', '.join(map(repr, _NORMALIZE))}, got {normalize!r}")
        if not isinstance(validate, bool):
            raise TypeError(f"validate must be a bool, got {type(validate).__name__}")
        self.conf_target = conf_target
        self.normalize = normalize
        super().__init__(weights={"coord": self.lambda_coord, "noobj": self.lambda_noobj, **(weights or {})},
                         validate=validate, normalize_over=normalize_over)
        for part_name, part in (
            ("box_iou", box_iou),
            ("coord_error", coord_error),
            ("class_error", class_error),
            ("conf_error", conf_error),
        ):
            if part is not None:
                if not callable(part):
                    raise TypeError(f"{part_name} must be callable, got {type(part).__name__}")
                setattr(self, part_name, part)

    def __repr__(self) -> str:
        return (
            f"YOLOv1Loss(grid={self.grid}, boxes_per_cell={self.boxes_per_cell}, "
            f"num_classes={self.num_classes}, lambda_coord={self.lambda_coord}, "
            f"lambda_noobj={self.lambda_noobj}, conf_target={self.conf_target!r}, "
            f"normalize={self.normalize!r}, normalize_over={self.normalize_over!r}, validate={self.validate})"
        )

    @property
    def channels(self) -> int:
        """``B * 5 + C``, the size of ``pred``'s last axis."""
        return self.boxes_per_cell * 5 + self.num_classes

    def normaliser(self, backend: Backend, pred: Any) -> Any:
        """What the summed terms are divided by (before the weights), a 0-d array.

        ``max(N, 1)`` for ``normalize="batch"``, 1 for ``"sum"``; with
        ``normalize_over="world"`` and a world size ``W > 1``:
        ``max(N_global, 1) / W`` (``N_global`` all-reduced over the processes)
        or ``1 / W``.
        """
        xp = backend.xp
        device = backend.device(pred)
        if self.normalize == "batch":
            n = int(pred.shape[0])
            if self.normalize_over == "local":  # the count of an all-True mask: no reduction
                return xp.asarray(float(max(n, 1)), dtype=pred.dtype, device=device)
            return self.count(backend, xp.ones((n,), dtype=xp.bool, device=device), pred)
        world = backend.world_size() if self.normalize_over == "world" else 1
        return xp.asarray(1.0 / world, dtype=pred.dtype, device=device)

    def scale(self, backend: Backend, pred: Any) -> Any:
        """The factor multiplying the summed terms (before the weights): ``1 / normaliser``."""
        return 1.0 / self.normaliser(backend, pred)

    # -- parts with access to the configuration ---------------------------
    def size_transform(self, backend: Backend, wh: Any) -> Any:
        """``sqrt(max(wh, sqrt_eps))`` applied to widths and heights before ``coord_error``."""
        return safe_sqrt(backend, wh, eps=self.sqrt_eps)

    def size_transform_vjp(self, backend: Backend, wh: Any, transformed: Any, cotangent: Any) -> Any:
        """The gradient of ``<cotangent, size_transform(wh)>`` w.r.t. ``wh`` (the default's: 0 below ``sqrt_eps``).

        Raises ``TypeError`` when ``size_transform`` is overridden and this is not.
        """
        if type(self).size_transform is not YOLOv1Loss.size_transform and (
                type(self).size_transform_vjp is YOLOv1Loss.size_transform_vjp):
            raise TypeError("value_and_grad of the yolov1 recipe needs the default size_transform (safe square root) "
                            "or an overridden size_transform_vjp")
        xp = backend.xp
        # clip's gradient as PyTorch's: the cotangent where wh >= sqrt_eps (1 at the bound), else 0 (NaN too)
        return xp.where(wh >= self.sqrt_eps, cotangent * 0.5 / transformed, 0.0)

    def error_part(self, name: str, backend: Backend) -> LossPart:
        """The part ``name`` (``"coord_error"``, ``"class_error"``, ``"conf_error"``) as ``part(input, target)``.

        The default squared errors are :func:`polyloss.mse_loss` (no
        reduction; the recipe sums per predictor or cell), whose closed-form
        gradient :meth:`value_and_grad` uses; a replacement ``fn(backend, a, b)``
        is called with this backend (and has no closed-form gradient).
        """
        fn = getattr(self, name)
        return _SQUARED_ERROR if any(fn is default for default in _DEFAULT_ERRORS) else functools.partial(fn, backend)

    # -- checks ------------------------------------------------------------
    def _check_pred(self, pred: Any) -> Backend:
        backend = resolve(pred, input_name="pred")
        if backend.dtype_kind(pred.dtype) != "f":
            raise TypeError(f"pred must have a real floating dtype, got {pred.dtype}")
        s, d = self.grid, self.channels
        if pred.ndim != 4 or tuple(pred.shape[1:]) != (s, s, d):
            raise ValueError(
                f"pred must have shape (N, {s}, {s}, {d}) (grid={s}, boxes_per_cell={self.boxes_per_cell}, "
                f"num_classes={self.num_classes}: B*5 + C = {d}), got {tuple(pred.shape)}"
            )
        return backend

    # The predictors' fields are handled field-major, (F, B, N, S, S): every field of every predictor is one
    # block of consecutive cells, and per-cell arrays (N, S, S) broadcast along the leading axes, where the CPU
    # kernels vectorise (a field read in place from pred strides over the channels, and a (N, S, S, 1) array
    # broadcast against (N, S, S, B) repeats every value B times in the innermost loop: both several times
    # slower). The arrays a stage returns keep their documented shapes, as views of these blocks.

    def _fields(self, backend: Backend, pred: Any) -> Any:
        """The predictor fields ``(x, y, w, h, conf)``, ``(5, B, N, S, S)``: one copy of ``pred``'s predictor block."""
        xp = backend.xp
        n, s, b = int(pred.shape[0]), self.grid, self.boxes_per_cell
        p = xp.permute_dims(xp.reshape(pred[..., : 5 * b], (n, s, s, b, 5)), (4, 3, 0, 1, 2))
        return xp.reshape(xp.reshape(p, (5 * b, n * s * s)), (5, b, n, s, s))

    def _corners(self, backend: Backend, fields: Any) -> tuple[Any, Any]:
        """The predicted boxes' corners ``(x1, y1)`` and ``(x2, y2)``, each ``(2, B, N, S, S)``, from :meth:`_fields`
        (both axes in one pass)."""
        xp = backend.xp
        s = self.grid
        offsets = xp.arange(s, dtype=fields.dtype, device=backend.device(fields))
        grid = xp.stack([xp.broadcast_to(xp.reshape(offsets, (1, s)), (s, s)),  # the column (x), then the row (y)
                         xp.broadcast_to(xp.reshape(offsets, (s, 1)), (s, s))], axis=0)
        centre = (xp.reshape(grid, (2, 1, 1, s, s)) + fields[0:2, ...]) / s
        half = xp.clip(fields[2:4, ...], min=0.0) * 0.5
        return centre - half, centre + half

    def _transformed(self, backend: Backend, x: Any, y: Any, w: Any, h: Any) -> tuple[Any, Any, Any]:
        """``(x, y, size_transform(w, h))`` as a field-major block ``(4, B, N, S, S)`` from the four fields, and
        the ``(N, S, S, B, 2)`` views ``wh`` and ``size_transform(wh)`` (for the gradient). The fields are taken
        apart and put together by ``unstack`` and ``stack``, whose gradients are views and one ``stack`` (a
        slice's gradient fills a zero array of the whole block)."""
        xp = backend.xp
        wh = xp.permute_dims(xp.stack([w, h], axis=0), _TO_CELLS)
        sizes = self.size_transform(backend, wh)
        size_w, size_h = xp.unstack(xp.permute_dims(sizes, _TO_FIELDS), axis=0)
        return xp.stack([x, y, size_w, size_h], axis=0), wh, sizes

    def _pred_gradient(self, backend: Backend, pred: Any, *, fields: Any = None, scores: Any = None) -> Any:
        """A gradient of ``pred``'s shape from gradients of its predictor fields, field-major ``(k, B, N, S, S)``
        for the first ``k`` fields (the others: zero), and of its class scores ``(N, S, S, C)`` (None: zero)."""
        xp = backend.xp
        n, s, b, c = int(pred.shape[0]), self.grid, self.boxes_per_cell, self.num_classes
        device = backend.device(pred)
        if fields is None:
            fields = xp.zeros((5, b, n, s, s), dtype=pred.dtype, device=device)
        elif int(fields.shape[0]) < 5:
            missing = xp.zeros((5 - int(fields.shape[0]), b, n, s, s), dtype=pred.dtype, device=device)
            fields = xp.concat([fields, missing], axis=0)
        if scores is None:
            scores = xp.zeros((n, s, s, c), dtype=pred.dtype, device=device)
        predictors = xp.reshape(xp.permute_dims(fields, _TO_CELLS), (n, s, s, 5 * b))
        return xp.concat([predictors, scores], axis=-1)

    # -- stages -------------------------------------------------------------
    def encode_ground_truth(self, gt_boxes: Any, gt_labels: Any, *, like: Any) -> YOLOv1Cells:
        """Per-cell targets from ground truth (padded or per-image sequences).

        Args:
            gt_boxes, gt_labels: as for the call.
            like: ``pred`` (or any array of its namespace, dtype, device and batch size ``N``).

        Returns:
            :class:`YOLOv1Cells` with arrays in ``like``'s dtype and device.
        """
        backend = resolve(like, input_name="pred")
        xp = backend.xp
        n = int(like.shape[0])
        s, c = self.grid, self.num_classes
        dtype = like.dtype
        device = backend.device(like)
        _check_box_dtype(backend, gt_boxes)
        gt = normalize_ground_truth(backend, gt_boxes, gt_labels, like=like, batch_size=n, validate=self.validate,
                                    num_classes=c, background=False)
        boxes, labels, valid = gt.boxes, gt.labels, gt.valid
        g = int(labels.shape[1])
        # field-major boxes (4, N, G + 1), column G a zero box: the source of every field of an empty cell
        boxes = xp.concat([xp.permute_dims(boxes, (2, 0, 1)), xp.zeros((4, n, 1), dtype=dtype, device=device)],
                          axis=2)
        lo, hi = boxes[0:2, ...], boxes[2:4, ...]
        centre = (lo + hi) * (0.5 * s)  # (x, y) in grid units
        cell_xy = xp.clip(xp.floor(centre), min=0.0, max=s - 1.0)  # a centre at 1.0 falls in the last cell
        # (x, y) in the cell, (w, h), (x1, y1, x2, y2): (8, N (G + 1))
        fields = xp.reshape(xp.concat([centre - cell_xy, hi - lo, boxes], axis=0), (8, n * (g + 1)))
        cell = xp.astype(cell_xy[1, :, :g] * s + cell_xy[0, :, :g], xp.int64)  # (N, G) row-major
        # the first object (input order) whose centre lies in a cell owns it (G where none; padding in none)
        first = backend.first_index(xp.where(valid, cell, s * s), s * s)  # (N, S*S)
        obj = xp.astype(first < g, dtype)
        offsets = xp.reshape(xp.arange(0, n * (g + 1), g + 1, dtype=first.dtype, device=device), (n, 1))
        columns = xp.broadcast_to(xp.reshape(first + offsets, (1, n * s * s)), (8, n * s * s))
        per_cell = xp.reshape(backend.take_along_axis(fields, columns, axis=1), (8, n, s, s))  # field-major
        # the one-hot class: a row of the identity, the zero row C for an empty cell (or a label >= C, unvalidated)
        labels = xp.concat([xp.clip(labels, max=c), xp.full((n, 1), c, dtype=labels.dtype, device=device)], axis=1)
        cell_label = xp.reshape(backend.take_along_axis(labels, first, axis=1), (n * s * s, 1))
        classes = backend.take_along_axis(xp.eye(c + 1, c, dtype=dtype, device=device),
                                          xp.broadcast_to(cell_label, (n * s * s, c)), axis=0)  # (N S*S, C)
        return YOLOv1Cells(
            obj=xp.reshape(obj, (n, s, s)),
            coords=xp.permute_dims(per_cell[0:4, ...], (1, 2, 3, 0)),
            boxes=xp.permute_dims(per_cell[4:8, ...], (1, 2, 3, 0)),
            classes=xp.reshape(classes, (n, s, s, c)),
            non_finite=gt.non_finite,
        )

    def decode_boxes(self, pred: Any) -> Any:
        """Predicted boxes as image-normalised xyxy, ``(N, S, S, B, 4)``.

        The box of predictor ``b`` in row ``r``, column ``k`` is centred at
        ``((k + x)/S, (r + y)/S)`` with width ``max(w, 0)`` and height ``max(h, 0)``.
        Differentiable (wrap ``pred`` in ``stop_gradient`` to match without gradient).
        """
        backend = self._check_pred(pred)
        xp = backend.xp
        return xp.permute_dims(xp.concat(self._corners(backend, self._fields(backend, pred)), axis=0), _TO_CELLS)

    def match_predictors(self, pred: Any, cells: YOLOv1Cells) -> YOLOv1Targets:
        """Pick the responsible predictor in every cell holding an object.

        The IoU of each predicted box with the cell's object is computed without
        gradient; the highest wins (ties: the first predictor; a NaN IoU, from a
        NaN prediction, counts as the highest). Empty cells have no responsible predictor.
        """
        backend = self._check_pred(pred)
        fields = self._fields(backend, backend.stop_gradient(pred))
        if type(self).decode_boxes is not YOLOv1Loss.decode_boxes:  # a subclass's own decoding
            return self._match(backend, fields, cells, boxes=self.decode_boxes(backend.stop_gradient(pred)))
        return self._match(backend, fields, cells)

    def _match(self, backend: Backend, fields: Any, cells: YOLOv1Cells, *, boxes: Any = None) -> YOLOv1Targets:
        """:meth:`match_predictors` on the fields (:meth:`_fields`), or on decoded ``boxes`` ``(N, S, S, B, 4)``."""
        xp = backend.xp
        b = self.boxes_per_cell
        lo, hi = self._corners(backend, backend.stop_gradient(fields)) if boxes is None else (None, None)
        if lo is not None and hi is not None and self.box_iou is paired_box_iou:  # the default part, on coordinates
            cell_boxes = xp.permute_dims(cells.boxes, (3, 0, 1, 2))
            if cell_boxes.dtype != fields.dtype:
                cell_boxes = xp.astype(cell_boxes, fields.dtype)
            iou = pairwise_score(xp, "iou")((lo[0, ...], lo[1, ...], hi[0, ...], hi[1, ...]),
                                            tuple(cell_boxes[k, ...] for k in range(4)))
        else:
            if lo is not None and hi is not None:
                boxes = xp.permute_dims(xp.concat([lo, hi], axis=0), _TO_CELLS)
            iou = xp.permute_dims(self.box_iou(backend, boxes, cells.boxes[..., None, :]), (3, 0, 1, 2))
            iou = backend.stop_gradient(iou)
        has_object = cells.obj > 0
        iou = xp.where(has_object, iou, 0.0)  # (B, N, S, S)
        # the first maximum over the predictors, a NaN counting as the highest: predictor j wins where it beats
        # every earlier one strictly (one comparison per predictor) and no later one beats it
        key = xp.where(xp.isnan(iou), math.inf, iou)
        top, wins = key[0, ...], [has_object]
        for j in range(1, b):
            better = key[j, ...] > top
            beaten = ~better
            wins = [w & beaten for w in wins] + [better & has_object]
            if j < b - 1:
                top = xp.where(better, key[j, ...], top)
        responsible = xp.astype(xp.stack(wins, axis=0), fields.dtype)
        return YOLOv1Targets(cells=cells, iou=xp.permute_dims(iou, (1, 2, 3, 0)),
                             responsible=xp.permute_dims(responsible, (1, 2, 3, 0)))

    def assign_targets(self, pred: Any, gt_boxes: Any, gt_labels: Any) -> YOLOv1Targets:
        """:meth:`encode_ground_truth` then :meth:`match_predictors`."""
        self._check_pred(pred)
        cells = self.encode_ground_truth(gt_boxes, gt_labels, like=pred)
        return self.match_predictors(pred, cells)

    def loss_stage(self, pred: Any, targets: YOLOv1Targets) -> LossStage:
        """The four terms on assigned targets: ``"coord"`` and ``"obj"`` over the responsible predictors,
        ``"noobj"`` over the others, ``"class"`` over the cells holding an object; divided by :meth:`normaliser`."""
        backend = self._check_pred(pred)
        return self._loss_stage(backend, pred, self._fields(backend, pred), targets)

    def _loss_stage(self, backend: Backend, pred: Any, fields: Any, targets: YOLOv1Targets) -> LossStage:
        xp = backend.xp
        cells = targets.cells
        responsible = targets.responsible > 0
        scores = pred[..., 5 * self.boxes_per_cell:]
        x, y, w, h, conf = xp.unstack(fields, axis=0)  # (B, N, S, S) each
        conf = xp.permute_dims(conf, (1, 2, 3, 0))  # (N, S, S, B)
        coords, wh, sizes = self._transformed(backend, x, y, w, h)  # (4, B, N, S, S)
        pred_coords = xp.permute_dims(coords, _TO_CELLS)  # (N, S, S, B, 4)
        cell_coords = xp.expand_dims(xp.permute_dims(cells.coords, (3, 0, 1, 2)), axis=1)  # (4, 1, N, S, S)
        target_block = self._transformed(backend, *xp.unstack(cell_coords, axis=0))[0]
        target_coords = xp.broadcast_to(xp.permute_dims(target_block, _TO_CELLS), tuple(pred_coords.shape))
        # one confidence target for both confidence terms: the responsible predictors' (IoU or 1), else 0
        if self.conf_target == "iou":
            conf_target = xp.where(responsible, backend.stop_gradient(targets.iou), 0.0)
        else:
            conf_target = targets.responsible
        conf_output = self.error_part("conf_error", backend)(conf, conf_target)
        coord_output = self.error_part("coord_error", backend)(pred_coords, target_coords)
        if coord_output.ndim == 5:  # per coordinate: summed over the field-major axis (the last axis of
            # these views is the outermost in memory, where PyTorch's reduction is 10x slower)
            coord_loss = xp.permute_dims(xp.sum(xp.permute_dims(coord_output, _TO_FIELDS), axis=0), (1, 2, 3, 0))
        else:
            coord_loss = None

        def coord_pullback(g: Any) -> Any:  # through [x, y, size_transform(w, h)] to pred
            g_wh = self.size_transform_vjp(backend, wh, sizes, g[..., 2:4])
            return self._pred_gradient(backend, pred, fields=xp.permute_dims(
                xp.concat([g[..., 0:2], g_wh], axis=-1), _TO_FIELDS))

        def conf_pullback(g: Any) -> Any:
            n, s, b = int(pred.shape[0]), self.grid, self.boxes_per_cell
            zeros = xp.zeros((4, b, n, s, s), dtype=g.dtype, device=backend.device(g))
            g_conf = xp.expand_dims(xp.permute_dims(g, (3, 0, 1, 2)), axis=0)
            return self._pred_gradient(backend, pred, fields=xp.concat([zeros, g_conf], axis=0))

        def class_pullback(g: Any) -> Any:
            return self._pred_gradient(backend, pred, scores=g)

        def term(component: str, part_name: str, input: Any, target: Any, mask: Any, pullback: Any,
                 **kwargs: Any) -> LossTerm:
            return self.term(backend, component, part_name, "pred", input, target, mask,
                             part=self.error_part(part_name, backend), pullback=pullback, **kwargs)

        class_part = self.error_part("class_error", backend)
        class_output = class_part(scores, cells.classes)
        class_loss = per_prediction(backend, class_output, 3)
        # the default squared error is NaN exactly where a score is (one-hot targets): the NaN test reads the
        # per-cell loss, not the scores (a strided (N, S, S, C) view)
        class_source = class_loss if class_part is _SQUARED_ERROR else None
        return LossStage(
            backend=backend, targets=targets, aux={"responsible": responsible},
            normaliser=self.normaliser(backend, pred),
            terms=(
                term("coord", "coord_error", pred_coords, target_coords, responsible, coord_pullback, source=coords,
                     output=coord_output, loss=coord_loss),
                term("obj", "conf_error", conf, conf_target, responsible, conf_pullback, output=conf_output),
                term("noobj", "conf_error", conf, conf_target, ~responsible, conf_pullback, output=conf_output),
                term("class", "class_error", scores, cells.classes, cells.obj > 0, class_pullback, output=class_output,
                     loss=class_loss, source=class_source),
            ),
            non_finite=cells.non_finite,
        )

    def loss_from_targets(self, pred: Any, targets: YOLOv1Targets) -> RecipeResult:
        """The four weighted terms from assigned targets (see the class docstring)."""
        return self.evaluate(self.loss_stage(pred, targets))

    def stages(self, pred: Any, gt_boxes: Any, gt_labels: Any) -> tuple[LossStage]:
        """The call's one loss stage: :meth:`assign_targets`, then :meth:`loss_stage` (the predictor fields
        read once for both)."""
        if (type(self).assign_targets is not YOLOv1Loss.assign_targets
                or type(self).match_predictors is not YOLOv1Loss.match_predictors
                or type(self).decode_boxes is not YOLOv1Loss.decode_boxes
                or type(self).loss_stage is not YOLOv1Loss.loss_stage):  # a subclass's own stages
            return (self.loss_stage(pred, self.assign_targets(pred, gt_boxes, gt_labels)),)
        backend = self._check_pred(pred)
        fields = self._fields(backend, pred)
        cells = self.encode_ground_truth(gt_boxes, gt_labels, like=pred)
        return (self._loss_stage(backend, pred, fields, self._match(backend, fields, cells)),)

    def __call__(self, pred: ArrayT, gt_boxes: Any, gt_labels: Any) -> RecipeResult[ArrayT]:
        """The YOLOv1 loss of a batch; see the class docstring."""
        return self.evaluate(*self.stages(pred, gt_boxes, gt_labels))


def _check_box_dtype(backend: Backend, gt_boxes: Any) -> None:
    """YOLOv1's boxes are image-normalised: a floating dtype (``TypeError`` naming the array otherwise)."""
    sequence = isinstance(gt_boxes, (list, tuple))
    for i, b in enumerate(gt_boxes if sequence else [gt_boxes]):
        name = f"gt_boxes[{i}]" if sequence else "gt_boxes"
        check_same(backend, b, name, "pred")
        if backend.dtype_kind(b.dtype) != "f":
            raise TypeError(f"{name} must have a real floating dtype (image-normalised xyxy), got {b.dtype}")


@hookimpl
def polyloss_register_recipes() -> dict[str, Callable[..., Any]]:
    return {"yolov1": YOLOv1Loss}
