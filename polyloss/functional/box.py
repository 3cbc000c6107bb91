"""Box regression losses of the IoU family: IoU, GIoU, DIoU and CIoU.

Element-wise on paired ``(..., 4)`` xyxy boxes, with ``torchvision.ops``
semantics (``generalized_box_iou_loss``, ``distance_box_iou_loss``,
``complete_box_iou_loss``), and their closed-form gradients. The terms come
from the IoU family's one core, :func:`polyloss.boxes.iou.iou_terms` (the
paired convention), and the gradients from its derivative
:func:`polyloss.boxes.iou.iou_terms_grad`; :func:`box_loss_elementwise` puts
them together for the generic forward, the closed-form gradients and
PyTorch's fused value-and-gradient path alike.

Each loss is declared with ``@loss`` and its gradient, next to it, with ``@gradient(...)``.
"""

from __future__ import annotations

from functools import partial
from typing import Any

from polyloss import _checks as v
from polyloss._namespace import resolve
from polyloss.backend._base import Backend
from polyloss.boxes.conversions import corners
from polyloss.boxes.iou import iou_terms
from polyloss.boxes.iou import iou_terms_grad
from polyloss.functional._common import apply_sample_seed
from polyloss.functional._common import compute_dtype
from polyloss.functional._common import finish
from polyloss.functional._common import try_fast_path
from polyloss.functional._define import gradient
from polyloss.functional._define import loss
from polyloss.functional._reductions import pointwise_scale
from polyloss.functional._reductions import reduce
from polyloss.typing import Array
from polyloss.typing import ArrayT
from polyloss.typing import Reduction

__all__ = [
    "ciou_loss",
    "ciou_loss_grad",
    "diou_loss",
    "diou_loss_grad",
    "giou_loss",
    "giou_loss_grad",
    "iou_loss",
    "iou_loss_grad",
]


def _check(boxes1: Any, boxes2: Any, eps: float, reduction: str) -> tuple[Backend, float]:
    """The checks of every box loss (before any kernel runs); returns the backend and ``eps`` as a float."""
    backend = resolve(boxes1, boxes2, input_name="boxes1", target_name="boxes2")
    v.check_reduction(reduction)
    v.check_floating(backend, boxes1, "boxes1")
    if backend.dtype_kind(boxes2.dtype) not in "fi":
        raise TypeError(f"boxes2 must have a real (floating or integer) dtype, got {boxes2.dtype}")
    for x, name in ((boxes1, "boxes1"), (boxes2, "boxes2")):
        if x.ndim < 1 or x.shape[-1] != 4:
            raise ValueError(f"{name} must have shape (..., 4), got {tuple(x.shape)}")
    v.check_same_shape(boxes1, boxes2, input_name="boxes1", target_name="boxes2")
    return backend, v.check_number(eps, "eps", strict=True)


def box_loss_elementwise(backend: Backend, kind: str, boxes1: Any, boxes2: Any, *, eps: float,
                         need_grad: bool) -> tuple[Any, Any]:
    """The element-wise loss ``1 - score`` of ``kind`` (``"iou"``, ``"giou"``, ``"diou"``, ``"ciou"``) of paired
    xyxy boxes of one floating dtype, shape ``(...)``, and where ``need_grad`` its derivative by ``boxes1``,
    ``(..., 4)`` (else None).

    The one definition of the four losses and their gradients: the generic
    forward, the closed-form gradients and PyTorch's fused path all call it.
    ``eps`` below the dtype's smallest normal number is raised to it, so that it
    never rounds to 0 (its limit: a pair of point boxes still gives 0 / eps = 0).
    """
    xp = backend.xp
    eps = max(eps, float(xp.finfo(boxes1.dtype).smallest_normal))
    a, b = corners(boxes1), corners(boxes2)
    terms = iou_terms(xp, kind, a, b, eps=eps, paired=True, stop_gradient=backend.stop_gradient)
    loss = 1.0 - terms.score
    if not need_grad:
        return loss, None
    grad = iou_terms_grad(xp, kind, a, b, terms, eps=eps)
    return loss, xp.stack([-g for g in grad], axis=-1)


def _box_loss(kind: str, boxes1: Any, boxes2: Any, eps: float, reduction: str) -> Any:
    backend, eps = _check(boxes1, boxes2, eps, reduction)
    elementwise = partial(box_loss_elementwise, backend, kind, eps=eps)
    out = try_fast_path(backend, f"{kind}_loss", boxes1, boxes2, eps=eps, reduction=reduction,
                        elementwise=elementwise)
    if out is not NotImplemented:
        return out
    b1, b2 = compute_dtype(backend, boxes1, boxes2)
    loss, _ = elementwise(b1, b2, need_grad=False)
    return finish(backend, reduce(backend, loss, reduction), boxes1)


def _box_loss_grad(kind: str, boxes1: Any, boxes2: Any, eps: float, reduction: str, cotangent: Any) -> Any:
    """d <cotangent, loss(boxes1, boxes2)> / d boxes1."""
    backend, eps = _check(boxes1, boxes2, eps, reduction)
    b1, b2 = compute_dtype(backend, boxes1, boxes2)
    _, grad = box_loss_elementwise(backend, kind, b1, b2, eps=eps, need_grad=True)
    up = pointwise_scale(backend, b1[..., 0], None, reduction, cotangent, normalize_by_weight=False)
    return finish(backend, apply_sample_seed(backend, grad, up, -1), boxes1)


@loss
def iou_loss(boxes1: ArrayT, boxes2: Array, *, eps: float = 1e-7, reduction: Reduction = "mean") -> ArrayT:
    r"""IoU loss :math:`1 - |A \cap B| / (|A \cup B| + \epsilon)` of paired xyxy boxes.

    Args:
        boxes1: predicted boxes ``(..., 4)`` as (x1, y1, x2, y2), real floating.
        boxes2: target boxes, same shape (never broadcast); floating or integer
            (any width: cast to ``boxes1``'s dtype).
        eps: added to the union, default 1e-7 (as torchvision's IoU losses); a
            number > 0 (``inf`` gives the limit, a loss of 1).
        reduction: ``"none"`` (shape ``(...)``), ``"mean"`` (default; 0 for an
            empty input) or ``"sum"``.

    The intersection counts only where the boxes overlap with positive width
    and height (no gradient through a zero overlap). Differentiable with
    respect to ``boxes1`` (and ``boxes2``). Symmetric in its two arguments.

    Edge rules (the same on every backend and path, for all four box losses):

    - NaN in a coordinate of either box: NaN for that pair, so NaN for
      ``"mean"`` and ``"sum"``.
    - An infinite coordinate: the formulas' IEEE result, as torchvision's: the
      IoU loss of an infinite box against a finite one is 1 (IoU 0), GIoU, DIoU
      and CIoU are NaN (``inf / inf``); the gradient there is not specified.
    - Zero-width, zero-height and point boxes: finite value and gradient,
      torchvision's wherever torchvision's is finite (CIoU of a point box: see
      :func:`ciou_loss`).
    - Inverted boxes (``x2 < x1`` or ``y2 < y1``) are not rejected (that would
      read the values, a device sync): they enter the formulas with signed
      widths and heights, exactly as torchvision computes them.
    - Empty input: ``"mean"`` and ``"sum"`` 0, ``"none"`` an empty array.
    - ``eps`` 0, negative or NaN: ``ValueError`` naming ``eps``; below the
      dtype's smallest normal number it acts as that number (it never rounds
      to 0, so two point boxes still give a finite loss).
    - Integer ``boxes1``: ``TypeError``; a ``boxes2`` dtype that is neither
      floating nor integer (bool): ``TypeError``; shapes not ending in 4 or
      not equal: ``ValueError`` naming the argument.
    """
    return _box_loss("iou", boxes1, boxes2, eps, reduction)


@loss
def giou_loss(boxes1: ArrayT, boxes2: Array, *, eps: float = 1e-7, reduction: Reduction = "mean") -> ArrayT:
    r"""Generalized IoU loss (Rezatofighi et al., CVPR 2019) of paired xyxy boxes.

    .. math::
        \ell = 1 - \Big(\mathrm{IoU} - \frac{|C| - |A \cup B|}{|C| + \epsilon}\Big),\quad
        \mathrm{IoU} = \frac{|A \cap B|}{|A \cup B| + \epsilon}

    with ``C`` the smallest box enclosing both. Args and edge rules as :func:`iou_loss`.
    Matches ``torchvision.ops.generalized_box_iou_loss`` (whose default
    reduction is ``"none"``; polyloss's is ``"mean"``).
    """
    return _box_loss("giou", boxes1, boxes2, eps, reduction)


@loss
def diou_loss(boxes1: ArrayT, boxes2: Array, *, eps: float = 1e-7, reduction: Reduction = "mean") -> ArrayT:
    r"""Distance IoU loss (Zheng et al., AAAI 2020) of paired xyxy boxes.

    .. math::
        \ell = 1 - \mathrm{IoU} + \frac{\rho^2}{c^2 + \epsilon}

    with :math:`\rho` the distance between the box centres and ``c`` the
    diagonal of the smallest enclosing box. Args and edge rules as :func:`iou_loss`.
    Matches ``torchvision.ops.distance_box_iou_loss``.
    """
    return _box_loss("diou", boxes1, boxes2, eps, reduction)


@loss
def ciou_loss(boxes1: ArrayT, boxes2: Array, *, eps: float = 1e-7, reduction: Reduction = "mean") -> ArrayT:
    r"""Complete IoU loss (Zheng et al., AAAI 2020) of paired xyxy boxes.

    .. math::
        \ell = \ell_{\mathrm{DIoU}} + \alpha v,\quad
        v = \frac{4}{\pi^2}\Big(\arctan\frac{w_2}{h_2} - \arctan\frac{w_1}{h_1}\Big)^2,\quad
        \alpha = \frac{v}{1 - \mathrm{IoU} + v + \epsilon}

    :math:`\alpha` is a constant for the gradient (no gradient flows through
    it), as in the paper and ``torchvision.ops.complete_box_iou_loss``.
    :math:`\arctan(w/h)` is evaluated as ``atan2(s w, s h)`` with ``s`` the
    sign of ``h`` (-1 where ``h < 0``, else 1): identical for every ``h != 0``,
    :math:`\pm\pi/2` for ``h = 0 != w`` (torchvision's value, with a finite
    gradient where torchvision's is NaN) and 0 for a point box (finite value
    and gradient, where torchvision gives NaN; the limit of a zero-width box
    whose height shrinks to 0). Args and edge rules as :func:`iou_loss`.
    """
    return _box_loss("ciou", boxes1, boxes2, eps, reduction)


# -- closed-form gradients ----------------------------------------------------------------------


@gradient(iou_loss)
def iou_loss_grad(
    boxes1: Any, boxes2: Any, *, eps: float = 1e-7, reduction: Reduction = "mean", cotangent: Any = None
) -> Any:
    r"""Gradient of :func:`polyloss.iou_loss` with respect to ``boxes1``.

    With :math:`I` the intersection, :math:`U` the union and
    :math:`\mathrm{IoU} = I / (U + \epsilon)`:
    :math:`-\big(\partial I - \mathrm{IoU}\,\partial U\big) / (U + \epsilon)`,
    where :math:`\partial I` is 0 unless the boxes overlap with positive width
    and height.
    """
    return _box_loss_grad("iou", boxes1, boxes2, eps, reduction, cotangent)


@gradient(giou_loss)
def giou_loss_grad(
    boxes1: Any, boxes2: Any, *, eps: float = 1e-7, reduction: Reduction = "mean", cotangent: Any = None
) -> Any:
    r"""Gradient of :func:`polyloss.giou_loss` with respect to ``boxes1``.

    The IoU loss's gradient plus that of :math:`(|C| - U) / (|C| + \epsilon)`,
    ``C`` the enclosing box (PyTorch's half gradient where two edges coincide).
    """
    return _box_loss_grad("giou", boxes1, boxes2, eps, reduction, cotangent)


@gradient(diou_loss)
def diou_loss_grad(
    boxes1: Any, boxes2: Any, *, eps: float = 1e-7, reduction: Reduction = "mean", cotangent: Any = None
) -> Any:
    r"""Gradient of :func:`polyloss.diou_loss` with respect to ``boxes1``.

    The IoU loss's gradient plus that of :math:`\rho^2 / (c^2 + \epsilon)`.
    """
    return _box_loss_grad("diou", boxes1, boxes2, eps, reduction, cotangent)


@gradient(ciou_loss)
def ciou_loss_grad(
    boxes1: Any, boxes2: Any, *, eps: float = 1e-7, reduction: Reduction = "mean", cotangent: Any = None
) -> Any:
    r"""Gradient of :func:`polyloss.ciou_loss` with respect to ``boxes1``.

    The DIoU loss's gradient plus :math:`\alpha\,\partial v`, with
    :math:`\alpha` held constant as the forward does (no gradient flows
    through it) and :math:`\arctan(w/h)` differentiated as ``atan2(w, h)``
    (a point box gets :math:`\partial/\partial w = 1`, :math:`\partial/\partial h = 0`).
    """
    return _box_loss_grad("ciou", boxes1, boxes2, eps, reduction, cotangent)
