r"""Hungarian (one-to-one, minimum-cost) matching of queries to ground truth, as DETR's set loss needs.

DETR (Carion et al., *End-to-End Object Detection with Transformers*, ECCV 2020)
matches each image's ``G`` ground-truth boxes to ``G`` of its ``Q`` queries so
that the summed matching cost is the smallest; the other queries are "no
object". The work splits in two:

- :func:`hungarian_cost` builds the batched cost ``(N, Q, G)`` on the
  predictions' device with array-API code (any backend, no data-dependent
  shape): with :math:`p` the softmax of the class logits and boxes
  normalised ``cxcywh``,

  .. math::
      C_{qg} = -\lambda_{class}\, p_q(c_g) + \lambda_{bbox} \lVert b_q - \hat b_g \rVert_1
               - \lambda_{giou}\, \mathrm{GIoU}(b_q, \hat b_g),

  non-finite entries replaced by the dtype's largest finite value (so a NaN
  prediction is matched only when nothing else can be), padding columns 0;
- :func:`assign_min_cost` copies the cost to the host and solves each image,
  restricted to its real ground truth, with SciPy's
  ``scipy.optimize.linear_sum_assignment`` (the established solver; a
  Hungarian/Jonker-Volgenant implementation). SciPy is imported there, lazily:
  without it the call raises ``ImportError`` saying ``pip install scipy`` (or
  ``pip install "polyloss[detr]"``); nothing else of polyloss needs SciPy.

The matching comes back as one static-shape int64 array ``(N, Q)``: the
matched ground-truth index of each query, or -1 ("no object"), on the input's
device, so that everything after it (the loss) has static shapes.
:class:`HungarianMatcher` binds the three cost weights and does both steps.

Numbers equal Hugging Face transformers' ``HungarianMatcher``
(``transformers.loss.loss_for_object_detection``, the port of DETR's
``models/matcher.py``): the same cost terms, the same replacement of NaN and
inf, one ``linear_sum_assignment`` per image. Differences: the cost is built
per image (``(N, Q, G)``) instead of all queries against all targets of the
batch, and a predicted box with a negative width is not rejected here (the
recipe checks it).

``torch.compile``: the solver reads values on the host, which a graph cannot
hold. :func:`assign_min_cost` runs under ``torch.compiler.disable`` for torch
tensors, so a compiled function that calls it breaks its graph there: the cost
before it and the loss after it are compiled, the assignment runs eagerly (one
device-to-host copy of ``(N, Q, G)`` and one host-to-device copy of ``(N, Q)``).
For one ``fullgraph=True`` graph, match outside it and compile the loss on the
matching (see the ``"detr"`` recipe).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from polyloss import _checks as v
from polyloss._namespace import check_same
from polyloss._namespace import resolve
from polyloss.backend._base import Backend
from polyloss.boxes.conversions import box_convert
from polyloss.boxes.iou import generalized_box_iou

__all__ = ["HungarianMatcher", "assign_min_cost", "hungarian_cost"]

#: What :func:`assign_min_cost` says when SciPy is missing.
SCIPY_MISSING = ("Hungarian matching (polyloss.boxes.assign_min_cost, the 'detr' recipe) solves each image with "
                 "scipy.optimize.linear_sum_assignment, and SciPy is not installed: pip install scipy "
                 "(or pip install \"polyloss[detr]\")")


def _check_valid(backend: Backend, valid: Any, shape: tuple[int, ...], reference: str) -> None:
    check_same(backend, valid, "valid", reference)
    if backend.dtype_kind(valid.dtype) != "b":
        raise TypeError(f"valid must be a boolean array, got {valid.dtype}")
    if tuple(valid.shape) != shape:
        raise ValueError(f"valid shape {tuple(valid.shape)} must be (N, G) = {shape}")


def hungarian_cost(class_logits: Any, pred_boxes: Any, gt_boxes: Any, gt_labels: Any, *, cost_class: float = 1.0,
                   cost_bbox: float = 1.0, cost_giou: float = 1.0, valid: Any = None) -> Any:
    r"""DETR's matching cost ``(N, Q, G)`` of each query against each ground-truth box (see the module).

    Args:
        class_logits: ``(N, Q, K)`` logits, the last class "no object" (its
            probability enters the softmax, never the cost).
        pred_boxes: ``(N, Q, 4)`` normalised ``cxcywh`` boxes.
        gt_boxes: ``(N, G, 4)`` normalised ``cxcywh`` ground truth.
        gt_labels: ``(N, G)`` int class indices in ``[0, K - 1)``; -1 marks padding.
        cost_class, cost_bbox, cost_giou: weights of ``-p(class)``, of the L1
            distance of the ``cxcywh`` vectors and of ``-GIoU`` (of the xyxy
            boxes, :func:`polyloss.boxes.generalized_box_iou`). Defaults 1 as
            transformers' ``HungarianMatcher``; DETR trains with 1, 5, 2.
        valid: optional ``(N, G)`` bool, False for columns to ignore (padding);
            default ``gt_labels >= 0``.

    Returns the cost in the logits' dtype: non-finite entries replaced by the
    dtype's largest finite number (as transformers), ignored columns 0. It
    carries no gradient meaning (the matching is a constant of the loss).
    """
    backend = resolve(class_logits, input_name="class_logits")
    xp = backend.xp
    for x, name in ((pred_boxes, "pred_boxes"), (gt_boxes, "gt_boxes"), (gt_labels, "gt_labels")):
        check_same(backend, x, name, "class_logits")
    v.check_floating(backend, class_logits, "class_logits")
    v.check_floating(backend, pred_boxes, "pred_boxes")
    if class_logits.ndim != 3 or pred_boxes.ndim != 3 or int(pred_boxes.shape[-1]) != 4 \
            or tuple(pred_boxes.shape[:2]) != tuple(class_logits.shape[:2]):
        raise ValueError(f"class_logits (N, Q, K) and pred_boxes (N, Q, 4) must agree, got "
                         f"{tuple(class_logits.shape)} and {tuple(pred_boxes.shape)}")
    n, k = int(class_logits.shape[0]), int(class_logits.shape[2])
    if gt_boxes.ndim != 3 or int(gt_boxes.shape[0]) != n or int(gt_boxes.shape[-1]) != 4:
        raise ValueError(f"gt_boxes must have shape (N, G, 4) with N = {n}, got {tuple(gt_boxes.shape)}")
    g = int(gt_boxes.shape[1])
    if tuple(gt_labels.shape) != (n, g) or backend.dtype_kind(gt_labels.dtype) != "i":
        raise ValueError(f"gt_labels must be integer (N, G) = {(n, g)}, got {gt_labels.dtype} "
                         f"{tuple(gt_labels.shape)}")
    weights = [v.check_number(c, name) for c, name in
               ((cost_class, "cost_class"), (cost_bbox, "cost_bbox"), (cost_giou, "cost_giou"))]
    if valid is None:
        valid = gt_labels >= 0
    else:
        _check_valid(backend, valid, (n, g), "class_logits")
    logits = backend.stop_gradient(class_logits)
    boxes = backend.stop_gradient(pred_boxes)
    gt = gt_boxes if gt_boxes.dtype == boxes.dtype else xp.astype(gt_boxes, boxes.dtype)
    # -p(class): the probabilities times the one-hot (K, G) of the labels, exact (one product is p * 1)
    prob = backend.softmax(logits, axis=-1)
    classes = xp.reshape(xp.arange(k, dtype=gt_labels.dtype, device=backend.device(gt_labels)), (1, k, 1))
    one_hot = xp.astype(classes == xp.expand_dims(gt_labels, axis=1), prob.dtype)  # (N, K, G); padding: 0
    cost = (-weights[0]) * xp.matmul(prob, one_hot)
    # L1 of the cxcywh vectors, one coordinate at a time: no (N, Q, G, 4) temporary
    l1 = None
    for c in range(4):
        d = xp.abs(xp.expand_dims(boxes[..., c], axis=-1) - xp.expand_dims(gt[..., c], axis=-2))
        l1 = d if l1 is None else l1 + d
    assert l1 is not None
    cost = cost + weights[1] * l1
    giou = generalized_box_iou(box_convert(boxes, "cxcywh", "xyxy"), box_convert(gt, "cxcywh", "xyxy"))
    cost = cost - weights[2] * giou
    largest = float(xp.finfo(cost.dtype).max)
    cost = xp.where(xp.isfinite(cost), cost, largest)
    return xp.where(xp.expand_dims(valid, axis=-2), cost, 0.0)


def _to_host(x: Any) -> Any:
    """``x`` as a NumPy array (a device-to-host copy where it lives elsewhere)."""
    import numpy as np

    library = type(x).__module__.split(".")[0]
    if library == "torch":
        return _torch_to_host(x)
    if library == "cupy":
        return x.get()
    if library == "array_api_strict":
        import array_api_strict

        x = x.to_device(array_api_strict.Device("CPU_DEVICE"))
    return np.asarray(x)


def _torch_to_host(x: Any) -> Any:
    import torch

    x = x.detach()
    if not torch._C._are_functorch_transforms_active():
        return x.cpu().numpy()
    # under torch.func.grad & co the value is that of the wrapped tensor, read with the transforms' stack cleared
    from torch._functorch.pyfunctorch import temporarily_clear_interpreter_stack

    functorch: Any = torch._C._functorch  # pyright: ignore[reportAttributeAccessIssue]
    while functorch.is_functorch_wrapped_tensor(x):
        if functorch.is_batchedtensor(x):
            raise ValueError("Hungarian matching reads the cost on the host, which torch.func.vmap cannot give: "
                             "match outside vmap (recipe.match) and vmap the loss on the matching")
        x = functorch.get_unwrapped(x)
    with temporarily_clear_interpreter_stack():
        return x.cpu().numpy()


def _scipy_solver() -> Callable[..., Any]:
    try:
        optimize = importlib.import_module("scipy.optimize")
    except ImportError as err:
        raise ImportError(SCIPY_MISSING, name="scipy") from err
    solver: Callable[..., Any] = optimize.linear_sum_assignment
    return solver


def _solve(backend: Backend, cost: Any, valid: Any) -> Any:
    """The host part of :func:`assign_min_cost`: copy, solve per image, copy back."""
    import numpy as np

    solver = _scipy_solver()
    n, q, _ = (int(s) for s in cost.shape)
    host_cost = _to_host(cost)
    host_valid = _to_host(valid)
    out = np.full((n, q), -1, dtype=np.int64)
    for i in range(n):
        columns = np.flatnonzero(host_valid[i])
        if columns.size == 0 or q == 0:
            continue
        rows, picked = solver(host_cost[i][:, columns])
        out[i, rows] = columns[picked]
    xp = backend.xp
    return xp.asarray(out, dtype=xp.int64, device=backend.device(cost))


_outside_graphs: list[Callable[..., Any]] = []  # _solve under torch.compiler.disable, made at the first torch call


def _solve_outside_torch_graphs() -> Callable[..., Any]:
    if not _outside_graphs:
        import torch

        _outside_graphs.append(torch.compiler.disable(_solve))
    return _outside_graphs[0]


def assign_min_cost(cost: Any, valid: Any = None) -> Any:
    """Per image, the one-to-one assignment of queries to ground truth of least total cost (SciPy on the host).

    Args:
        cost: ``(N, Q, G)`` finite real costs (any backend; copied to the host).
        valid: optional ``(N, G)`` bool, False for ground-truth columns left
            out (padding); default all True.

    Returns ``(N, Q)`` int64 on ``cost``'s device: the ground-truth index each
    query is assigned, -1 for none. Each image solves
    ``scipy.optimize.linear_sum_assignment`` on its valid columns: ``min(Q,
    G_i)`` queries are assigned, each to a distinct ground truth.

    Raises ``ImportError`` (saying ``pip install scipy``) without SciPy, and
    SciPy's ``ValueError`` for an infeasible (non-finite) cost. For torch
    tensors the call runs under ``torch.compiler.disable`` (a graph break
    inside ``torch.compile``; see the module). No gradient flows through it.
    """
    backend = resolve(cost, input_name="cost")
    if cost.ndim != 3:
        raise ValueError(f"cost must have shape (N, Q, G), got {tuple(cost.shape)}")
    if backend.dtype_kind(cost.dtype) not in "fi":
        raise TypeError(f"cost must have a real dtype, got {cost.dtype}")
    n, _, g = (int(s) for s in cost.shape)
    if valid is None:
        valid = backend.xp.ones((n, g), dtype=backend.xp.bool, device=backend.device(cost))
    else:
        _check_valid(backend, valid, (n, g), "cost")
    solve = _solve_outside_torch_graphs() if backend.name == "torch" else _solve
    return solve(backend, cost, valid)


@dataclass(frozen=True)
class HungarianMatcher:
    """DETR's Hungarian matcher: :func:`hungarian_cost` with these weights, then :func:`assign_min_cost`.

    ``HungarianMatcher(cost_class=1.0, cost_bbox=5.0, cost_giou=2.0)`` is DETR's
    (the ``"detr"`` recipe's default); transformers' class defaults to 1, 1, 1.
    Called as ``matcher(class_logits (N, Q, K), pred_boxes (N, Q, 4),
    gt_boxes (N, G, 4), gt_labels (N, G), valid=None)`` (``cxcywh`` boxes,
    label -1 for padding), it returns ``(N, Q)`` int64: each query's matched
    ground-truth index, or -1. At least one weight must be non-zero (as
    transformers).
    """

    cost_class: float = 1.0
    cost_bbox: float = 1.0
    cost_giou: float = 1.0

    def __post_init__(self) -> None:
        costs = [v.check_number(getattr(self, name), name)
                 for name in ("cost_class", "cost_bbox", "cost_giou")]
        if not any(costs):
            raise ValueError("HungarianMatcher needs a non-zero cost: cost_class, cost_bbox and cost_giou are all 0")

    def cost(self, class_logits: Any, pred_boxes: Any, gt_boxes: Any, gt_labels: Any, valid: Any = None) -> Any:
        """:func:`hungarian_cost` with this matcher's weights, ``(N, Q, G)``."""
        return hungarian_cost(class_logits, pred_boxes, gt_boxes, gt_labels, cost_class=self.cost_class,
                              cost_bbox=self.cost_bbox, cost_giou=self.cost_giou, valid=valid)

    def __call__(self, class_logits: Any, pred_boxes: Any, gt_boxes: Any, gt_labels: Any, valid: Any = None) -> Any:
        if valid is None:
            valid = gt_labels >= 0
        return assign_min_cost(self.cost(class_logits, pred_boxes, gt_boxes, gt_labels, valid), valid)
