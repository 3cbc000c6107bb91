"""Embedding and ranking losses: cosine embedding, margin ranking, triplet margin and hinge embedding,
with their closed-form gradients (by the first array).

Each loss is declared with ``@loss`` and its gradient, next to it, with ``@gradient(...)``; both run the
same check function and the same element-wise terms. Every ``max(z, 0)`` here is PyTorch's ``clamp_min``:
NaN is kept, and the subgradient at the kink ``z = 0`` is 1 (PyTorch's backward passes the gradient
where ``z >= 0``).
"""

from __future__ import annotations

import math
from functools import partial
from typing import Any

from polyloss import _checks as v
from polyloss._namespace import check_same
from polyloss._namespace import resolve
from polyloss.backend._base import Backend
from polyloss.functional._common import planned
from polyloss.functional._define import gradient
from polyloss.functional._define import loss
from polyloss.functional._second_set import backward
from polyloss.functional._second_set import check_bool
from polyloss.functional._second_set import check_signs
from polyloss.functional._second_set import clamp_min0
from polyloss.functional._second_set import clamp_min0_grad
from polyloss.functional._second_set import finite_number
from polyloss.functional._second_set import forward
from polyloss.functional._second_set import label_dtype
from polyloss.typing import Array
from polyloss.typing import ArrayT
from polyloss.typing import Reduction

__all__ = [
    "cosine_embedding_loss",
    "cosine_embedding_loss_grad",
    "hinge_embedding_loss",
    "hinge_embedding_loss_grad",
    "margin_ranking_loss",
    "margin_ranking_loss_grad",
    "triplet_margin_loss",
    "triplet_margin_loss_grad",
]

# ATen's cosine_embedding_loss adds this to each squared norm (a zero vector has cosine 0, not NaN)
_COSINE_EPSILON = 1e-12


def _same_float_shape(backend: Backend, first: Any, other: Any, first_name: str, other_name: str) -> None:
    check_same(backend, other, other_name, first_name)
    v.check_floating(backend, other, other_name)
    v.check_same_shape(first, other, input_name=first_name, target_name=other_name)


# -- cosine embedding -------------------------------------------------------------------------


def _check_cosine(input1: Any, input2: Any, target: Any, margin: object, reduction: str) -> tuple[Backend, float]:
    backend = resolve(input1, input_name="input1")
    v.check_reduction(reduction)
    v.check_floating(backend, input1, "input1")
    _same_float_shape(backend, input1, input2, "input1", "input2")
    check_same(backend, target, "target", "input1")
    label_dtype(backend, target)
    if input1.ndim == 0:
        raise ValueError("input1 must have an embedding axis (the last), got a 0-d array")
    expected = tuple(input1.shape[:-1])
    if tuple(target.shape) != expected:
        raise ValueError(
            f"target shape {tuple(target.shape)} must equal input1 shape {tuple(input1.shape)} without the "
            f"embedding axis, i.e. {expected}"
        )
    margin = finite_number(margin, "margin", minimum=-1.0, maximum=1.0)
    check_signs(backend, target, "cosine_embedding_loss")
    return backend, margin


def cosine_embedding_parts(backend: Backend, x1: Any, x2: Any, y: Any, *, margin: float,
                           need_grad: bool) -> tuple[Any, Any]:
    """Per-sample cosine embedding loss and, if asked, its derivative by ``x1`` (ATen's formula)."""
    xp = backend.xp
    dot = xp.sum(x1 * x2, axis=-1)
    m1 = xp.sum(x1 * x1, axis=-1) + _COSINE_EPSILON
    m2 = xp.sum(x2 * x2, axis=-1) + _COSINE_EPSILON
    denominator = xp.sqrt(m1 * m2)
    cos = dot / denominator
    z = cos - margin
    positive = y == 1
    negative = y == -1
    # labels other than 1 and -1 (not checked where values cannot be read) give 0, as PyTorch
    value = xp.where(positive, 1.0 - cos, xp.where(negative, clamp_min0(backend, z), 0.0))
    if not need_grad:
        return value, None
    dcos = xp.where(positive, -1.0, xp.where(negative, clamp_min0_grad(backend, z), 0.0))
    # d cos / d x1 = x2 / |x1||x2| - cos x1 / |x1|^2
    grad = xp.expand_dims(dcos / denominator, axis=-1) * x2 - xp.expand_dims(dcos * cos / m1, axis=-1) * x1
    return value, grad


@loss
def cosine_embedding_loss(input1: ArrayT, input2: Array, target: Array, *, margin: float = 0.0,
                          reduction: Reduction = "mean") -> ArrayT:
    r"""Cosine embedding loss: pull pairs labelled 1 together, push pairs labelled -1 apart.

    .. math::
        \ell_i = \begin{cases} 1 - \cos(x_{1,i}, x_{2,i}) & y_i = 1 \\
                 \max(0, \cos(x_{1,i}, x_{2,i}) - m) & y_i = -1 \end{cases},\quad
        \cos(a, b) = \frac{a \cdot b}{\sqrt{(|a|^2 + 10^{-12})(|b|^2 + 10^{-12})}}

    Args:
        input1, input2: embeddings ``(..., D)`` of the same shape (PyTorch: ``(N, D)`` or ``(D,)``).
        target: labels 1 or -1, ``input1``'s shape without the last axis (floating or integer).
        margin: :math:`m \in [-1, 1]`, default 0 (outside, or NaN, a ``ValueError``).
        reduction: ``"none"`` (per pair), ``"mean"`` (default) or ``"sum"``.

    Edge rules: a label other than 1 or -1 is a ``ValueError`` naming it wherever values can be
    read without a device sync (NumPy, array-api-strict, torch on the CPU outside tracing);
    elsewhere it contributes 0 (PyTorch's number). NaN in an embedding gives NaN; a zero vector
    has cosine 0 (the :math:`10^{-12}`); the mean of no pairs is 0 (PyTorch: NaN). The
    gradient (by ``input1``) at the kink :math:`\cos = m` is PyTorch's (the hinge's slope, 1).

    Matches ``torch.nn.functional.cosine_embedding_loss``.
    """
    arrays = (input1, input2, target)
    _, plan, out = planned("cosine_embedding_loss", arrays, margin, reduction, input_name="input1")
    if out is not NotImplemented:
        return out
    backend, margin = _check_cosine(input1, input2, target, margin, reduction)
    return forward(backend, "cosine_embedding_loss", arrays, {"margin": margin, "reduction": reduction},
                   partial(cosine_embedding_parts, backend, margin=margin), plan=plan)


@gradient(cosine_embedding_loss)
def cosine_embedding_loss_grad(input1: Any, input2: Any, target: Any, *, margin: float = 0.0,
                               reduction: Reduction = "mean", cotangent: Any = None) -> Any:
    r"""Gradient of :func:`polyloss.cosine_embedding_loss` by ``input1``.

    :math:`s\,(x_2 / \sqrt{m_1 m_2} - \cos\, x_1 / m_1)` with :math:`m_k = |x_k|^2 + 10^{-12}`,
    :math:`s = -1` for label 1 and :math:`[\cos \ge m]` for label -1.
    """
    backend, margin = _check_cosine(input1, input2, target, margin, reduction)
    return backward(backend, (input1, input2, target), reduction, cotangent,
                    partial(cosine_embedding_parts, backend, margin=margin), per_sample=True)


# -- margin ranking ---------------------------------------------------------------------------


def _check_ranking(input1: Any, input2: Any, target: Any, margin: object, reduction: str) -> tuple[Backend, float]:
    backend = resolve(input1, input_name="input1")
    v.check_reduction(reduction)
    v.check_floating(backend, input1, "input1")
    _same_float_shape(backend, input1, input2, "input1", "input2")
    check_same(backend, target, "target", "input1")
    label_dtype(backend, target)
    v.check_same_shape(input1, target, input_name="input1")
    margin = finite_number(margin, "margin")
    check_signs(backend, target, "margin_ranking_loss")
    return backend, margin


def margin_ranking_parts(backend: Backend, x1: Any, x2: Any, y: Any, *, margin: float,
                         need_grad: bool) -> tuple[Any, Any]:
    """Element-wise ``max(0, m - y (x1 - x2))`` and, if asked, its derivative by ``x1`` (then the value is the
    closed form's, ``relu``: no autograd runs through it). Also the torch fast path's fused forward and backward."""
    z = margin - y * (x1 - x2)
    if not need_grad:
        return clamp_min0(backend, z), None
    return backend.relu(z), -y * clamp_min0_grad(backend, z)


@loss
def margin_ranking_loss(input1: ArrayT, input2: Array, target: Array, *, margin: float = 0.0,
                        reduction: Reduction = "mean") -> ArrayT:
    r"""Margin ranking loss, :math:`\ell_i = \max(0, -y_i (x_{1,i} - x_{2,i}) + m)`.

    ``y = 1`` asks for :math:`x_1` to rank above :math:`x_2` by at least :math:`m`, ``y = -1`` below.

    Args:
        input1, input2: scores of the same shape, real floating.
        target: labels 1 or -1 of the same shape (floating or integer; never broadcast).
        margin: :math:`m`, any finite number, default 0 (NaN or inf: ``ValueError``).
        reduction: ``"none"``, ``"mean"`` (default) or ``"sum"``.

    Edge rules: a label other than 1 or -1 is a ``ValueError`` where values can be read
    without a device sync (elsewhere PyTorch's formula applies to it as it is); NaN gives
    NaN; the mean of an empty input is 0 (PyTorch: NaN); the gradient at the kink is
    PyTorch's (:math:`-y`).

    Matches ``torch.nn.functional.margin_ranking_loss``.
    """
    arrays = (input1, input2, target)
    _, plan, out = planned("margin_ranking_loss", arrays, margin, reduction, input_name="input1")
    if out is not NotImplemented:
        return out
    backend, margin = _check_ranking(input1, input2, target, margin, reduction)
    parts = partial(margin_ranking_parts, backend, margin=margin)
    return forward(backend, "margin_ranking_loss", arrays, {"margin": margin, "reduction": reduction, "parts": parts},
                   parts, plan=plan)


@gradient(margin_ranking_loss)
def margin_ranking_loss_grad(input1: Any, input2: Any, target: Any, *, margin: float = 0.0,
                             reduction: Reduction = "mean", cotangent: Any = None) -> Any:
    r"""Gradient of :func:`polyloss.margin_ranking_loss` by ``input1``: :math:`-y\,[m - y (x_1 - x_2) \ge 0]`."""
    backend, margin = _check_ranking(input1, input2, target, margin, reduction)
    return backward(backend, (input1, input2, target), reduction, cotangent,
                    partial(margin_ranking_parts, backend, margin=margin))


# -- triplet margin ---------------------------------------------------------------------------


def _check_triplet(anchor: Any, positive: Any, negative: Any, margin: object, p: object, eps: object,
                   swap: object, reduction: str) -> tuple[Backend, float, float, float]:
    backend = resolve(anchor, input_name="anchor")
    v.check_reduction(reduction)
    v.check_floating(backend, anchor, "anchor")
    _same_float_shape(backend, anchor, positive, "anchor", "positive")
    _same_float_shape(backend, anchor, negative, "anchor", "negative")
    if anchor.ndim == 0:
        raise ValueError("anchor must have an embedding axis (the last), got a 0-d array")
    margin = finite_number(margin, "margin", minimum=0.0, strict=True)
    p = v.check_number(p, "p", minimum=0.0, strict=True)  # inf is the max norm
    eps = finite_number(eps, "eps", minimum=None)
    check_bool(swap, "swap")
    return backend, margin, p, eps


def _p_norm(backend: Backend, d: Any, p: float, need_grad: bool) -> tuple[Any, Any]:
    """``|d|_p`` over the last axis (``torch.norm``) and, if asked, its derivative (PyTorch's: 0 where
    the norm is 0, and 0 at zero components for p < 1)."""
    xp = backend.xp
    a = xp.abs(d)
    if p == math.inf:
        return _max_norm(backend, d, a, need_grad)
    if p == 1.0:
        norm = xp.sum(a, axis=-1)
    else:
        # 0 where the difference is 0, with a 0 gradient there under autograd too (not 0 * inf)
        if p == 2.0:
            total = xp.sum(d * d, axis=-1)
        else:
            nil = a == 0
            total = xp.sum(xp.where(nil, 0.0, xp.where(nil, 1.0, a) ** p), axis=-1)
        empty = total == 0
        safe = xp.where(empty, 1.0, total)
        norm = xp.where(empty, 0.0, xp.sqrt(safe) if p == 2.0 else safe ** (1.0 / p))
    if not need_grad:
        return norm, None
    if p == 1.0:
        return norm, xp.sign(d)
    zero = norm == 0
    scale = xp.expand_dims(xp.where(zero, 0.0, 1.0 / xp.where(zero, 1.0, norm ** (p - 1.0))), axis=-1)
    if p == 2.0:
        return norm, d * scale
    power = xp.where(a == 0, 0.0, xp.where(a == 0, 1.0, a) ** (p - 1.0))
    return norm, xp.sign(d) * power * scale


def _max_norm(backend: Backend, d: Any, a: Any, need_grad: bool) -> tuple[Any, Any]:
    """``max |d|`` over the last axis (0 for no components) and, if asked, its derivative: ``sign(d)`` shared
    evenly among the components at the maximum (PyTorch's rule for ties)."""
    xp = backend.xp
    if d.shape[-1] == 0:
        norm = xp.sum(a, axis=-1)
        return norm, (d if need_grad else None)
    norm = xp.max(a, axis=-1)
    if not need_grad:
        return norm, None
    hit = xp.astype(a == xp.expand_dims(norm, axis=-1), d.dtype)
    return norm, xp.sign(d) * hit / xp.sum(hit, axis=-1, keepdims=True)


def triplet_parts(backend: Backend, a: Any, pos: Any, neg: Any, *, margin: float, p: float, eps: float, swap: bool,
                  need_grad: bool) -> tuple[Any, Any]:
    """Per-triplet loss and, if asked, its derivative by the anchor (PyTorch's ``pairwise_distance``:
    the p-norm of ``x1 - x2 + eps``)."""
    xp = backend.xp
    d_ap, g_ap = _p_norm(backend, a - pos + eps, p, need_grad)
    d_an, g_an = _p_norm(backend, a - neg + eps, p, need_grad)
    share: Any = None  # the tie share of the swap (set with it)
    if swap:
        d_pn, _ = _p_norm(backend, pos - neg + eps, p, False)
        # the gradient of min(d_an, d_pn) by d_an: 1 below, 1/2 at a tie, 0 above (PyTorch's rule)
        share = 0.5 * (xp.astype(d_an <= d_pn, d_an.dtype) + xp.astype(d_an < d_pn, d_an.dtype))
        d_an = xp.minimum(d_an, d_pn)
    z = margin + d_ap - d_an
    value = clamp_min0(backend, z)
    if not need_grad:
        return value, None
    active = clamp_min0_grad(backend, z)
    g_neg = g_an * xp.expand_dims(active * share if swap else active, axis=-1)
    return value, g_ap * xp.expand_dims(active, axis=-1) - g_neg


@loss
def triplet_margin_loss(anchor: ArrayT, positive: Array, negative: Array, *, margin: float = 1.0, p: float = 2.0,
                        eps: float = 1e-6, swap: bool = False, reduction: Reduction = "mean") -> ArrayT:
    r"""Triplet margin loss (Schroff et al., *FaceNet*, 2015; Balntas et al. 2016 for ``swap``).

    .. math::
        \ell_i = \max(0,\; m + d(a_i, p_i) - d(a_i, n_i)),\qquad d(x, y) = \lVert x - y + \epsilon \rVert_p

    over the last axis; with ``swap=True`` :math:`d(a, n)` is replaced by
    :math:`\min(d(a, n), d(p, n))` (the distance swap).

    Args:
        anchor, positive, negative: embeddings ``(..., D)`` of one shape.
        margin: :math:`m > 0`, default 1.0 (as PyTorch: 0 or less is a ``ValueError``; finite).
        p: the norm's degree, > 0 (``inf``: the largest absolute component), default 2.
        eps: added to each difference before the norm (PyTorch's ``pairwise_distance``), default 1e-6.
        swap: the distance swap, default False.
        reduction: ``"none"`` (per triplet), ``"mean"`` (default) or ``"sum"``.

    Edge rules: NaN in an embedding gives NaN; the mean of no triplets is 0 (PyTorch: NaN);
    shapes must be equal (``ValueError``). ``value_and_grad`` differentiates ``anchor``; the
    subgradients are PyTorch's (the norm's is 0 at a zero difference, the hinge's 1 at the kink).

    Matches ``torch.nn.functional.triplet_margin_loss``.
    """
    arrays = (anchor, positive, negative)
    _, plan, out = planned("triplet_margin_loss", arrays, margin, p, eps, swap, reduction, input_name="anchor")
    if out is not NotImplemented:
        return out
    backend, margin, p, eps = _check_triplet(anchor, positive, negative, margin, p, eps, swap, reduction)
    options: dict[str, Any] = {"margin": margin, "p": p, "eps": eps, "swap": swap}
    return forward(backend, "triplet_margin_loss", arrays, {**options, "reduction": reduction},
                   partial(triplet_parts, backend, **options), plan=plan)


@gradient(triplet_margin_loss)
def triplet_margin_loss_grad(anchor: Any, positive: Any, negative: Any, *, margin: float = 1.0, p: float = 2.0,
                             eps: float = 1e-6, swap: bool = False, reduction: Reduction = "mean",
                             cotangent: Any = None) -> Any:
    r"""Gradient of :func:`polyloss.triplet_margin_loss` by ``anchor``.

    :math:`[z \ge 0]\,(\nabla d(a, p) - s\,\nabla d(a, n))` with :math:`\nabla \lVert u\rVert_p =
    \operatorname{sign}(u) |u|^{p-1} / \lVert u\rVert_p^{p-1}` and :math:`s` the swap's share.
    """
    backend, margin, p, eps = _check_triplet(anchor, positive, negative, margin, p, eps, swap, reduction)
    parts = partial(triplet_parts, backend, margin=margin, p=p, eps=eps, swap=swap)
    return backward(backend, (anchor, positive, negative), reduction, cotangent, parts, per_sample=True)


# -- hinge embedding --------------------------------------------------------------------------


def _check_hinge_embedding(input: Any, target: Any, margin: object, reduction: str) -> tuple[Backend, float]:
    backend = resolve(input, target)
    v.check_reduction(reduction)
    v.check_floating(backend, input)
    label_dtype(backend, target)
    v.check_same_shape(input, target)
    margin = finite_number(margin, "margin")
    check_signs(backend, target, "hinge_embedding_loss")
    return backend, margin


def hinge_embedding_parts(backend: Backend, x: Any, y: Any, *, margin: float, need_grad: bool) -> tuple[Any, Any]:
    """Element-wise hinge embedding loss and, if asked, its derivative: ATen's formula, which reads a label
    other than 1 and -1 as both (its loss is the sum of the two branches)."""
    xp = backend.xp
    z = margin - x
    not_pos = y != 1
    not_neg = y != -1
    value = xp.where(not_pos, clamp_min0(backend, z), 0.0) + xp.where(not_neg, x, 0.0)
    if not need_grad:
        return value, None
    return value, xp.astype(not_neg, x.dtype) - xp.where(not_pos, clamp_min0_grad(backend, z), 0.0)


@loss
def hinge_embedding_loss(input: ArrayT, target: Array, *, margin: float = 1.0, reduction: Reduction = "mean") -> ArrayT:
    r"""Hinge embedding loss, for distances labelled similar (1) or dissimilar (-1).

    .. math::
        \ell_i = \begin{cases} x_i & y_i = 1 \\ \max(0, m - x_i) & y_i = -1 \end{cases}

    Args:
        input: distances (or any scores), real floating.
        target: labels 1 or -1 of the same shape (floating or integer; never broadcast).
        margin: :math:`m`, any finite number, default 1.0.
        reduction: ``"none"``, ``"mean"`` (default) or ``"sum"``.

    Edge rules: a label other than 1 or -1 is a ``ValueError`` where values can be read
    without a device sync (elsewhere PyTorch's formula: both branches added); NaN gives NaN;
    the mean of an empty input is 0 (PyTorch: NaN); the gradient at the kink
    :math:`x = m` is PyTorch's (-1).

    Matches ``torch.nn.functional.hinge_embedding_loss``.
    """
    _, plan, out = planned("hinge_embedding_loss", (input, target), margin, reduction)
    if out is not NotImplemented:
        return out
    backend, margin = _check_hinge_embedding(input, target, margin, reduction)
    return forward(backend, "hinge_embedding_loss", (input, target), {"margin": margin, "reduction": reduction},
                   partial(hinge_embedding_parts, backend, margin=margin), plan=plan)


@gradient(hinge_embedding_loss)
def hinge_embedding_loss_grad(input: Any, target: Any, *, margin: float = 1.0, reduction: Reduction = "mean",
                              cotangent: Any = None) -> Any:
    r"""Gradient of :func:`polyloss.hinge_embedding_loss`: 1 for label 1, :math:`-[m - x \ge 0]` for -1."""
    backend, margin = _check_hinge_embedding(input, target, margin, reduction)
    parts = partial(hinge_embedding_parts, backend, margin=margin)
    return backward(backend, (input, target), reduction, cotangent, parts)

