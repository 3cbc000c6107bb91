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

import math
from collections.abc import Callable
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from polyloss._api import RecipeResult
from polyloss._hooks import hookimpl
from polyloss._namespace import check_same
from polyloss._namespace import resolve
from polyloss.backend._base import Backend
from polyloss.detection._base import check_normalize_over

__all__ = [
    "YOLOv1Cells",
    "YOLOv1Loss",
    "YOLOv1Targets",
    "normalize_ground_truth",
    "paired_box_iou",
    "safe_sqrt",
    "squared_error",
    "sum_squared_error",
]

ErrorFn = Callable[[Backend, Any, Any], Any]


# -- parts ---------------------------------------------------------------------


def paired_box_iou(backend: Backend, boxes1: Any, boxes2: Any) -> Any:
    """Element-wise IoU of xyxy boxes ``(..., 4)`` (broadcast against each other).

    Boxes with negative extent count as empty; IoU is 0 where the union is 0.
    """
    xp = backend.xp
    iw = xp.clip(xp.minimum(boxes1[..., 2], boxes2[..., 2]) - xp.maximum(boxes1[..., 0], boxes2[..., 0]), min=0.0)
    ih = xp.clip(xp.minimum(boxes1[..., 3], boxes2[..., 3]) - xp.maximum(boxes1[..., 1], boxes2[..., 1]), min=0.0)
    inter = iw * ih
    area1 = xp.clip(boxes1[..., 2] - boxes1[..., 0], min=0.0) * xp.clip(boxes1[..., 3] - boxes1[..., 1], min=0.0)
    area2 = xp.clip(boxes2[..., 2] - boxes2[..., 0], min=0.0) * xp.clip(boxes2[..., 3] - boxes2[..., 1], min=0.0)
    union = area1 + area2 - inter
    positive = union > 0
    return xp.where(positive, inter / xp.where(positive, union, 1.0), 0.0)


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


# -- ground truth ----------------------------------------------------------------


def _is_sequence(value: Any) -> bool:
    return isinstance(value, (list, tuple))


def _check_box_dtype(backend: Backend, x: Any, name: str) -> None:
    if backend.dtype_kind(x.dtype) != "f":
        raise TypeError(f"{name} must have a real floating dtype (image-normalised xyxy), got {x.dtype}")


def _check_label_dtype(backend: Backend, x: Any, name: str) -> None:
    if backend.dtype_kind(x.dtype) != "i":
        raise TypeError(f"{name} must have an integer dtype (class indices, -1 for padding), got {x.dtype}")


def _stack_sequences(
    backend: Backend, gt_boxes: Sequence[Any], gt_labels: Any, batch_size: int, dtype: Any, device: Any
) -> tuple[Any, Any]:
    xp = backend.xp
    if not _is_sequence(gt_labels):
        raise TypeError(
            "gt_boxes is a sequence of per-image arrays, so gt_labels must be one too, "
            f"got {type(gt_labels).__name__}"
        )
    if len(gt_boxes) != batch_size or len(gt_labels) != batch_size:
        raise ValueError(
            f"gt_boxes and gt_labels must hold one array per image: pred has {batch_size} image(s), "
            f"got {len(gt_boxes)} box array(s) and {len(gt_labels)} label array(s)"
        )
    boxes_list, labels_list = [], []
    for n, (b, lab) in enumerate(zip(gt_boxes, gt_labels, strict=True)):
        check_same(backend, b, f"gt_boxes[{n}]", "pred")
        check_same(backend, lab, f"gt_labels[{n}]", "pred")
        _check_box_dtype(backend, b, f"gt_boxes[{n}]")
        _check_label_dtype(backend, lab, f"gt_labels[{n}]")
        if math.prod(b.shape) == 0 and math.prod(lab.shape) == 0:
            b = xp.reshape(b, (0, 4))
            lab = xp.reshape(lab, (0,))
        if b.ndim != 2 or b.shape[1] != 4:
            raise ValueError(f"gt_boxes[{n}] must have shape (G, 4), got {tuple(b.shape)}")
        if tuple(lab.shape) != (b.shape[0],):
            raise ValueError(
                f"gt_labels[{n}] shape {tuple(lab.shape)} must be ({b.shape[0]},) to match gt_boxes[{n}] "
                f"shape {tuple(b.shape)}"
            )
        boxes_list.append(xp.astype(b, dtype))
        labels_list.append(xp.astype(lab, xp.int64))
    g_max = max([1, *(int(b.shape[0]) for b in boxes_list)])
    padded_boxes, padded_labels = [], []
    for b, lab in zip(boxes_list, labels_list, strict=True):
        missing = g_max - int(b.shape[0])
        if missing:
            b = xp.concat([b, xp.zeros((missing, 4), dtype=dtype, device=device)], axis=0)
            lab = xp.concat([lab, xp.full((missing,), -1, dtype=xp.int64, device=device)], axis=0)
        padded_boxes.append(b)
        padded_labels.append(lab)
    if not padded_boxes:
        return (
            xp.zeros((0, 1, 4), dtype=dtype, device=device),
            xp.full((0, 1), -1, dtype=xp.int64, device=device),
        )
    return xp.stack(padded_boxes, axis=0), xp.stack(padded_labels, axis=0)


def _validate_values(backend: Backend, boxes: Any, labels: Any, num_classes: int) -> None:
    xp = backend.xp
    if math.prod(labels.shape) == 0:
        return
    g = int(labels.shape[1])

    def first(bad: Any) -> tuple[int, int] | None:
        if not bool(xp.any(bad)):
            return None
        flat = xp.reshape(xp.astype(bad, xp.int32), (-1,))
        return divmod(int(xp.argmax(flat)), g)

    where = first((labels < -1) | (labels >= num_classes))
    if where is not None:
        n, j = where
        raise ValueError(
            f"gt_labels: image {n}, box {j} has label {int(labels[n, j])}; labels must be in "
            f"[0, {num_classes}) or -1 for padding"
        )
    real = labels >= 0
    degenerate = real & ((boxes[..., 2] <= boxes[..., 0]) | (boxes[..., 3] <= boxes[..., 1]))
    where = first(degenerate)
    if where is not None:
        n, j = where
        coords = ", ".join(f"{float(boxes[n, j, k]):.6g}" for k in range(4))
        raise ValueError(
            f"gt_boxes: image {n}, box {j} = ({coords}) (label {int(labels[n, j])}) is degenerate: "
            "a real ground-truth box needs x2 > x1 and y2 > y1 (pass validate=False to skip this check)"
        )


def normalize_ground_truth(
    backend: Backend,
    gt_boxes: Any,
    gt_labels: Any,
    *,
    batch_size: int,
    like: Any,
    num_classes: int,
    validate: bool = True,
) -> tuple[Any, Any]:
    """Ground truth in either accepted form -> padded ``(N, G, 4)`` boxes and ``(N, G)`` labels.

    Args:
        backend: the backend of ``like``.
        gt_boxes: ``(N, G, 4)`` xyxy boxes, or a sequence of ``N`` arrays ``(G_i, 4)``.
        gt_labels: ``(N, G)`` integer labels with -1 for padding, or a sequence of ``(G_i,)`` arrays.
        batch_size: ``N``, the number of images.
        like: boxes are cast to its dtype and created on its device.
        num_classes: labels must lie in ``[0, num_classes)`` or be -1.
        validate: check values (labels in range, real boxes with positive width and
            height) where the backend can read them without a device sync.

    Returns:
        ``(boxes, labels)``: boxes in ``like``'s dtype with ``G >= 1`` (an empty
        batch is padded with one label -1), labels ``int`` with -1 padding.

    Raises:
        TypeError: mixed namespaces, non-floating boxes or non-integer labels.
        ValueError: wrong shapes; on host backends with ``validate``, a label out of
            range or a degenerate real box, naming the image and the box.
    """
    xp = backend.xp
    dtype = like.dtype
    device = backend.device(like)
    if _is_sequence(gt_boxes):
        boxes, labels = _stack_sequences(backend, gt_boxes, gt_labels, batch_size, dtype, device)
    else:
        if _is_sequence(gt_labels):
            raise TypeError("gt_boxes is a padded array, so gt_labels must be one too, got a sequence")
        check_same(backend, gt_boxes, "gt_boxes", "pred")
        check_same(backend, gt_labels, "gt_labels", "pred")
        _check_box_dtype(backend, gt_boxes, "gt_boxes")
        _check_label_dtype(backend, gt_labels, "gt_labels")
        if gt_boxes.ndim != 3 or gt_boxes.shape[2] != 4 or gt_boxes.shape[0] != batch_size:
            raise ValueError(
                f"gt_boxes must have shape (N, G, 4) with N = {batch_size} (the batch size of pred), "
                f"got {tuple(gt_boxes.shape)}"
            )
        if tuple(gt_labels.shape) != tuple(gt_boxes.shape[:2]):
            raise ValueError(
                f"gt_labels shape {tuple(gt_labels.shape)} must equal gt_boxes shape without the last "
                f"axis {tuple(gt_boxes.shape[:2])}"
            )
        boxes = gt_boxes if gt_boxes.dtype == dtype else xp.astype(gt_boxes, dtype)
        labels = gt_labels
        if boxes.shape[1] == 0:
            boxes = xp.zeros((batch_size, 1, 4), dtype=dtype, device=device)
            labels = xp.full((batch_size, 1), -1, dtype=labels.dtype, device=device)
    if validate and (backend.host or backend.is_host_array(boxes)):
        _validate_values(backend, boxes, labels, num_classes)
    return boxes, labels


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
    """

    obj: Any
    coords: Any
    boxes: Any
    classes: Any


@dataclass(frozen=True)
class YOLOv1Targets:
    """Everything :meth:`YOLOv1Loss.loss_from_targets` needs.

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


class YOLOv1Loss:
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
        box_iou, coord_error, class_error, conf_error: optional replacements of
            the parts of the same name (see below), called as ``fn(backend, a, b)``.

    Call ``recipe(pred, gt_boxes, gt_labels)``:

    - ``pred``: ``(N, S, S, B*5 + C)``; axis 1 is the row (y), axis 2 the column
      (x); per cell ``B x (x, y, w, h, conf)`` then ``C`` class scores. ``x, y``
      are offsets inside the cell, ``w, h`` relative to the image.
    - ``gt_boxes``: image-normalised xyxy boxes in [0, 1], ``(N, G, 4)`` padded,
      or a sequence of ``(G_i, 4)`` arrays; ``gt_labels``: ``(N, G)`` with -1
      for padding, or a sequence of ``(G_i,)`` arrays.

    Returns a :class:`polyloss.RecipeResult` with components ``"coord"``,
    ``"obj"``, ``"noobj"``, ``"class"`` (each weighted), ``total`` their sum.

    Assignment: an object belongs to the cell holding its centre
    (``floor(c * S)``, clamped to the grid so a centre at 1.0 falls in the last
    cell); a cell holding several centres keeps the first in input order (the
    others are ignored, as one cell predicts one class in the paper). For the
    IoU a predictor's box is centred at ``((col + x)/S, (row + y)/S)`` with width
    ``max(w, 0)`` and height ``max(h, 0)``; the responsible predictor is the one
    with the highest IoU (ties, including all-zero IoU: the first).

    Square roots are ``sqrt(max(w, sqrt_eps))`` (``sqrt_eps = 1e-12``): finite,
    with a finite gradient at ``w = 0`` (zero below ``sqrt_eps``).

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
    :meth:`assign_targets` (the two together) and :meth:`loss_from_targets`.
    """

    name = "yolov1"
    sqrt_eps: float = 1e-12
    box_iou: Callable[..., Any] = staticmethod(paired_box_iou)
    coord_error: Callable[..., Any] = staticmethod(sum_squared_error)
    class_error: Callable[..., Any] = staticmethod(sum_squared_error)
    conf_error: Callable[..., Any] = staticmethod(squared_error)

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
        self.normalize_over = check_normalize_over(normalize_over)
        self.validate = validate
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

    def scale(self, backend: Backend, pred: Any) -> Any:
        """The factor multiplying the summed terms (before the lambdas).

        ``1 / max(N, 1)`` for ``normalize="batch"``, 1 for ``"sum"``. With
        ``normalize_over="world"`` and a world size ``W > 1``:
        ``W / max(N_global, 1)`` (an array; ``N_global`` all-reduced over the
        processes) or ``W``.
        """
        n = int(pred.shape[0])
        world = backend.world_size() if self.normalize_over == "world" else 1
        if world == 1:
            return 1.0 / max(n, 1) if self.normalize == "batch" else 1.0
        if self.normalize == "sum":
            return float(world)
        xp = backend.xp
        total = backend.all_reduce_sum(xp.asarray(float(n), dtype=pred.dtype, device=backend.device(pred)))
        return float(world) / xp.where(total > 0, total, 1.0)

    # -- parts with access to the configuration ---------------------------
    def size_transform(self, backend: Backend, wh: Any) -> Any:
        """``sqrt(max(wh, sqrt_eps))`` applied to widths and heights before ``coord_error``."""
        return safe_sqrt(backend, wh, eps=self.sqrt_eps)

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

    def _predictors(self, backend: Backend, pred: Any) -> Any:
        n = pred.shape[0]
        s, b = self.grid, self.boxes_per_cell
        return backend.xp.reshape(pred[..., : 5 * b], (n, s, s, b, 5))

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
        boxes, labels = normalize_ground_truth(
            backend, gt_boxes, gt_labels, batch_size=n, like=like, num_classes=c, validate=self.validate
        )
        valid = labels >= 0
        x1, y1, x2, y2 = boxes[..., 0], boxes[..., 1], boxes[..., 2], boxes[..., 3]
        cx = (x1 + x2) * 0.5
        cy = (y1 + y2) * 0.5
        col = xp.clip(xp.floor(cx * s), min=0.0, max=s - 1.0)
        row = xp.clip(xp.floor(cy * s), min=0.0, max=s - 1.0)
        # padding may hold anything (even NaN): zero it so gathered values stay finite
        col = xp.where(valid, col, 0.0)
        row = xp.where(valid, row, 0.0)
        cell = xp.astype(row * s + col, xp.int64)  # (N, G), row-major cell index
        cell_ids = xp.arange(s * s, dtype=xp.int64, device=device)
        hit = (cell[..., None] == cell_ids) & valid[..., None]  # (N, G, S*S)
        # the first object (input order) whose centre lies in a cell owns it
        owner = hit & (xp.cumulative_sum(xp.astype(hit, xp.int64), axis=1) == 1)
        obj = xp.astype(xp.any(owner, axis=1), dtype)  # (N, S*S)
        owner_index = xp.argmax(xp.astype(owner, xp.int64), axis=1)  # (N, S*S); 0 where no owner
        class_ids = xp.arange(c, dtype=labels.dtype, device=device)
        one_hot = xp.astype(labels[..., None] == class_ids, dtype)  # (N, G, C); padding -> zeros
        fields = xp.stack([cx * s - col, cy * s - row, x2 - x1, y2 - y1, x1, y1, x2, y2], axis=1)  # (N, 8, G)
        fields = xp.where(valid[:, None, :], fields, 0.0)
        fields = xp.concat([fields, xp.matrix_transpose(one_hot)], axis=1)  # (N, 8 + C, G)
        index = xp.broadcast_to(owner_index[:, None, :], (n, 8 + c, s * s))
        per_cell = backend.take_along_axis(fields, index, axis=2) * obj[:, None, :]  # (N, 8 + C, S*S)
        per_cell = xp.reshape(xp.permute_dims(per_cell, (0, 2, 1)), (n, s, s, 8 + c))
        return YOLOv1Cells(
            obj=xp.reshape(obj, (n, s, s)),
            coords=per_cell[..., 0:4],
            boxes=per_cell[..., 4:8],
            classes=per_cell[..., 8:],
        )

    def decode_boxes(self, pred: Any) -> Any:
        """Predicted boxes as image-normalised xyxy, ``(N, S, S, B, 4)``.

        The box of predictor ``b`` in row ``r``, column ``k`` is centred at
        ``((k + x)/S, (r + y)/S)`` with width ``max(w, 0)`` and height ``max(h, 0)``.
        Differentiable (wrap ``pred`` in ``stop_gradient`` to match without gradient).
        """
        backend = self._check_pred(pred)
        xp = backend.xp
        s = self.grid
        p = self._predictors(backend, pred)
        offsets = xp.astype(xp.arange(s, device=backend.device(pred)), pred.dtype)
        col = xp.reshape(offsets, (1, 1, s, 1))
        row = xp.reshape(offsets, (1, s, 1, 1))
        cx = (col + p[..., 0]) / s
        cy = (row + p[..., 1]) / s
        half_w = xp.clip(p[..., 2], min=0.0) * 0.5
        half_h = xp.clip(p[..., 3], min=0.0) * 0.5
        return xp.stack([cx - half_w, cy - half_h, cx + half_w, cy + half_h], axis=-1)

    def match_predictors(self, pred: Any, cells: YOLOv1Cells) -> YOLOv1Targets:
        """Pick the responsible predictor in every cell holding an object.

        The IoU of each predicted box with the cell's object is computed without
        gradient; the highest wins (ties: the first predictor). Empty cells have
        no responsible predictor.
        """
        backend = self._check_pred(pred)
        xp = backend.xp
        boxes = self.decode_boxes(backend.stop_gradient(pred))
        iou = backend.stop_gradient(self.box_iou(backend, boxes, cells.boxes[..., None, :]))
        iou = iou * cells.obj[..., None]
        best = xp.astype(xp.argmax(iou, axis=-1), xp.int64)  # first maximum
        ids = xp.arange(self.boxes_per_cell, dtype=xp.int64, device=backend.device(pred))
        responsible = xp.astype(best[..., None] == ids, pred.dtype) * cells.obj[..., None]
        return YOLOv1Targets(cells=cells, iou=iou, responsible=responsible)

    def assign_targets(self, pred: Any, gt_boxes: Any, gt_labels: Any) -> YOLOv1Targets:
        """:meth:`encode_ground_truth` then :meth:`match_predictors`."""
        self._check_pred(pred)
        cells = self.encode_ground_truth(gt_boxes, gt_labels, like=pred)
        return self.match_predictors(pred, cells)

    def loss_from_targets(self, pred: Any, targets: YOLOv1Targets) -> RecipeResult:
        """The four weighted terms from assigned targets (see the class docstring)."""
        backend = self._check_pred(pred)
        xp = backend.xp
        cells = targets.cells
        resp = targets.responsible
        p = self._predictors(backend, pred)
        scores = pred[..., 5 * self.boxes_per_cell :]
        conf = p[..., 4]
        pred_coords = xp.concat([p[..., 0:2], self.size_transform(backend, p[..., 2:4])], axis=-1)
        t = cells.coords[..., None, :]
        target_coords = xp.concat([t[..., 0:2], self.size_transform(backend, t[..., 2:4])], axis=-1)
        coord = xp.sum(resp * self.coord_error(backend, pred_coords, target_coords))
        if self.conf_target == "iou":
            conf_target = backend.stop_gradient(targets.iou)
        else:
            conf_target = xp.ones_like(conf)
        obj = xp.sum(resp * self.conf_error(backend, conf, conf_target))
        noobj = xp.sum((1.0 - resp) * self.conf_error(backend, conf, xp.zeros_like(conf)))
        cls = xp.sum(cells.obj * self.class_error(backend, scores, cells.classes))
        scale = self.scale(backend, pred)
        return RecipeResult.from_components(
            {
                "coord": backend.as_array(coord * (self.lambda_coord * scale)),
                "obj": backend.as_array(obj * scale),
                "noobj": backend.as_array(noobj * (self.lambda_noobj * scale)),
                "class": backend.as_array(cls * scale),
            }
        )

    def __call__(self, pred: Any, gt_boxes: Any, gt_labels: Any) -> RecipeResult:
        """The YOLOv1 loss of a batch; see the class docstring."""
        return self.loss_from_targets(pred, self.assign_targets(pred, gt_boxes, gt_labels))

    def value_and_grad(self, pred: Any, gt_boxes: Any, gt_labels: Any) -> tuple[RecipeResult, dict[str, Any]]:
        """The call's result and the gradient of its total, in closed form (no autograd).

        Returns:
            ``(result, {"pred": ...})``; the assignment (responsible predictors,
            IoU confidence targets) is a constant. Needs the default parts
            (squared errors, safe square root), else ``TypeError``.
        """
        from polyloss.detection._gradients import yolov1_value_and_grad

        return yolov1_value_and_grad(self, pred, gt_boxes, gt_labels)


@hookimpl
def polyloss_register_recipes() -> dict[str, Callable[..., Any]]:
    return {"yolov1": YOLOv1Loss}
