"""Segmentation overlap losses: Dice, Jaccard (IoU) and Tversky, with their closed-form gradients.

One score per class over the batch and every spatial position, in the binary,
multiclass and multilabel modes of segmentation_models_pytorch (smp), whose numbers
they match. Every overlap score is a function of three per-class sums of the
probabilities ``p`` and targets ``t`` over the non-ignored pixels ``m``:

.. math::
    I_c = \\sum \\min(p, t) = \\tfrac12 \\big(P_c + T_c - \\sum |p - t|\\big),\\qquad
    P_c = \\sum p\\,m,\\qquad T_c = \\sum t

(:math:`I_c = \\sum p\\,t` for 0/1 targets; smp's soft intersection otherwise), so a
loss is declared by its numerator and denominator in ``(I, P, T)`` and the gradient is,
at every pixel, :math:`a_c h + b_c m` (:math:`h = \\partial I / \\partial p`) chained
through the activation.
Each loss is declared with ``@loss`` and its gradient, next to it, with ``@gradient(...)``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from polyloss import _checks as v
from polyloss._namespace import fast_paths_enabled
from polyloss._namespace import resolve
from polyloss.backend._base import Backend
from polyloss.functional._common import compute_dtype
from polyloss.functional._common import finish
from polyloss.functional._common import one_hot
from polyloss.functional._define import gradient
from polyloss.functional._define import loss
from polyloss.functional._reductions import pointwise_scale
from polyloss.functional._reductions import reduce
from polyloss.functional._reductions import upstream
from polyloss.functional._reductions import weighted_mean
from polyloss.functional._reductions import weighted_mean_upstream
from polyloss.functional.classification import class_axis_inputs
from polyloss.functional.focal import modulating_factor
from polyloss.functional.quality import finite_number
from polyloss.typing import Array
from polyloss.typing import ArrayT
from polyloss.typing import Reduction
from polyloss.typing import SegmentationMode

__all__ = [
    "dice_loss",
    "dice_loss_grad",
    "jaccard_loss",
    "jaccard_loss_grad",
    "lovasz_loss",
    "lovasz_loss_grad",
    "tversky_loss",
    "tversky_loss_grad",
]

MODES = ("binary", "multiclass", "multilabel")


@dataclass
class _Pixels:
    """The checked inputs of an overlap loss, in the input's layout (class axis ``axis``)."""

    backend: Backend
    x: Any  # logits (or probabilities), compute dtype
    p: Any  # probabilities
    t: Any  # targets, 0 at ignored pixels, broadcast to x's shape
    m: Any  # float mask of the non-ignored pixels (broadcastable to x), or None: nothing ignored
    axis: int
    mode: str
    from_logits: bool

    @property
    def sum_axes(self) -> tuple[int, ...]:
        return tuple(i for i in range(self.x.ndim) if i != self.axis)


def _check_masks(backend: Backend, t: Any, ignore_index: int | None, loss_name: str) -> None:
    """Where values can be read without a sync: every target in [0, 1] or equal to ``ignore_index``."""
    if not backend.is_host_array(t) or math.prod(t.shape) == 0:
        return
    xp = backend.xp
    lo, hi = backend.min_max(t)  # one pass on PyTorch, whose bool all() is slow
    if lo >= 0.0 and hi <= 1.0:
        return
    ok = (t >= 0.0) & (t <= 1.0)
    if ignore_index is not None:
        ok = ok | (t == float(ignore_index))
    if not bool(xp.all(ok)):
        bad = float(xp.min(xp.where(ok, math.inf, t)))
        ignored = f" or ignore_index={ignore_index}" if ignore_index is not None else ""
        raise ValueError(f"target of {loss_name} must hold masks with values in [0, 1]{ignored}, got {bad}")


def _check_probabilities(backend: Backend, x: Any, loss_name: str) -> None:
    """``from_logits=False``: where values can be read, the input holds probabilities (NaN passes: it propagates)."""
    if not backend.is_host_array(x) or math.prod(x.shape) == 0:
        return
    xp = backend.xp
    x = backend.stop_gradient(x)
    lo, hi = backend.min_max(x)
    if lo >= 0.0 and hi <= 1.0:
        return
    if bool(xp.any((x < 0.0) | (x > 1.0))):
        bad = float(xp.min(xp.where((x < 0.0) | (x > 1.0), x, math.inf)))
        raise ValueError(f"input of {loss_name} with from_logits=False must hold probabilities in [0, 1], got {bad}")


def _segmentation_inputs(
    input: Any, target: Any, mode: Any, axis: Any, from_logits: Any, ignore_index: Any, reduction: str,
    loss_name: str, *, check_reduction: bool = True, labels: bool = False,
) -> tuple[Backend, Any, Any, Any, int]:
    """The checks of every segmentation loss, then ``(backend, x, t, m, axis)``: the input in its compute
    dtype, the targets as floats in its layout (one-hot in multiclass mode, 0 at ignored pixels) and the
    float mask of the non-ignored pixels (broadcastable to ``x``; None when nothing can be ignored).
    With ``labels``, multiclass targets stay class indices (0 at ignored pixels; :func:`_class_masks`
    makes the one-hot floats)."""
    backend = resolve(input, target)
    if check_reduction:
        v.check_reduction(reduction)
    if mode not in MODES:
        raise ValueError(f"mode must be one of {', '.join(map(repr, MODES))}, got {mode!r}")
    if not isinstance(from_logits, bool):
        raise TypeError(f"from_logits must be a bool, got {type(from_logits).__name__}")
    v.check_ignore_index(ignore_index)
    xp = backend.xp
    if mode == "multiclass":
        axis, _ = class_axis_inputs(backend, input, target, axis, allow_probabilities=False)
    else:
        v.check_floating(backend, input)
        if input.ndim == 0:
            raise ValueError(f"input of {loss_name} must have a class axis, got a 0-d array")
        axis = v.normalize_axis(axis, input.ndim)
        if backend.dtype_kind(target.dtype) not in "fib":
            raise TypeError(f"target must have a real (floating, integer or bool) dtype, got {target.dtype}")
        if mode == "binary" and input.shape[axis] != 1:
            raise ValueError(
                f"input of {loss_name} in binary mode must have a class axis {axis} of size 1, "
                f"got shape {tuple(input.shape)}"
            )
        squeezed = tuple(s for i, s in enumerate(input.shape) if i != axis)
        if tuple(target.shape) != tuple(input.shape) and not (mode == "binary" and tuple(target.shape) == squeezed):
            allowed = f" or {squeezed}" if mode == "binary" else ""
            raise ValueError(
                f"target shape {tuple(target.shape)} must equal input shape {tuple(input.shape)}{allowed} "
                f"in {mode} mode"
            )
    x = compute_dtype(backend, input)[0]
    if not from_logits:
        _check_probabilities(backend, x, loss_name)
    m = None
    if mode == "multiclass":
        num_classes = x.shape[axis]
        v.check_class_indices(backend, target, num_classes, ignore_index=ignore_index, always=True)
        usable = v.usable_ignore_index(backend, target, ignore_index)
        if usable is not None:
            valid = target != usable
            target = xp.where(valid, target, xp.zeros_like(target))
            m = xp.expand_dims(xp.astype(valid, x.dtype), axis=axis)
        t = target if labels else _class_masks(backend, target, m, x, axis)
    else:
        t = xp.astype(target, x.dtype)
        if t.ndim < x.ndim:
            t = xp.expand_dims(t, axis=axis)
        _check_masks(backend, t, ignore_index, loss_name)
        if ignore_index is not None:
            valid = t != float(ignore_index)
            t = xp.where(valid, t, 0.0)
            m = xp.astype(valid, x.dtype)
    return backend, x, t, m, axis


def _class_masks(backend: Backend, labels: Any, m: Any, x: Any, axis: int) -> Any:
    """The multiclass targets as floats of ``x``'s dtype and layout: the one-hot of ``labels`` (class axis
    ``axis``), times the mask ``m`` of the non-ignored pixels (None: all kept)."""
    xp = backend.xp
    t = xp.astype(one_hot(backend, labels, x.shape[axis], axis, x.ndim), x.dtype)
    return t if m is None else t * m


def _pixels(
    input: Any, target: Any, mode: Any, axis: Any, from_logits: Any, smooth: Any, eps: Any, ignore_index: Any,
    reduction: str, loss_name: str,
) -> tuple[_Pixels, float, float]:
    """Every check of an overlap loss (shared by the loss and its gradient); returns the pixels, smooth and eps."""
    v.check_reduction(reduction)
    smooth = finite_number(smooth, "smooth")
    eps = finite_number(eps, "eps")
    backend, x, t, m, axis = _segmentation_inputs(input, target, mode, axis, from_logits, ignore_index, reduction,
                                                  loss_name, check_reduction=False)
    xp = backend.xp
    if eps < float(xp.finfo(x.dtype).smallest_normal):
        raise ValueError(f"eps must be at least the smallest normal number of the input's dtype {x.dtype}, got {eps!r}")
    if not from_logits:
        p = x
    elif mode == "multiclass":
        p = backend.softmax(x, axis)
    else:
        p = backend.sigmoid(x)
    return _Pixels(backend, x, p, t, m, axis, mode, from_logits), smooth, eps


# (numerator, denominator) of each score as functions of (I, P, T, smooth, options), and
# their constant partial derivatives (d num / dI, d den / dI, d den / dP)
def _dice(i: Any, p: Any, t: Any, s: float, o: dict[str, float]) -> tuple[Any, Any, float, float, float]:
    # smp >= 0.5 computes Dice as the Tversky score with alpha = beta = 1/2
    return i + s, 0.5 * (p + t) + s, 1.0, 0.0, 0.5


def _jaccard(i: Any, p: Any, t: Any, s: float, o: dict[str, float]) -> tuple[Any, Any, float, float, float]:
    return i + s, p + t - i + s, 1.0, -1.0, 1.0


def _tversky(i: Any, p: Any, t: Any, s: float, o: dict[str, float]) -> tuple[Any, Any, float, float, float]:
    a, b = o["alpha"], o["beta"]
    # false positives P - I and false negatives T - I over the non-ignored pixels
    return i + s, i + a * (p - i) + b * (t - i) + s, 1.0, 1.0 - a - b, a


def _per_class(
    px: _Pixels, score_fn: Any, smooth: float, eps: float, options: dict[str, float], need_grad: bool
) -> tuple[Any, Any, Any, Any]:
    """``(per-class loss (C,), a, b, h)``: the loss ``(1 - score) * present`` and, with ``need_grad``, its
    derivative by ``p`` at a pixel, ``a h + b m`` (``a``, ``b`` per class; ``h = dI/dp``)."""
    xp = px.backend.xp
    axes = px.sum_axes
    pm = px.p if px.m is None else xp.where(px.m > 0.0, px.p, 0.0)  # ignored pixels leave every sum
    diff = pm - px.t
    prob = xp.sum(pm, axis=axes)
    true = xp.sum(px.t, axis=axes)
    # I = sum min(p, t) = (P + T - sum |p - t|) / 2, smp's soft intersection (sum p t for 0/1 targets)
    inter = 0.5 * (prob + true - xp.sum(xp.abs(diff), axis=axes))
    num, den, num_i, den_i, den_p = score_fn(inter, prob, true, smooth, options)
    small = den < eps  # NaN passes through, as clamp_min
    d = xp.where(small, eps, den)
    score = num / d
    present = xp.astype(true > 0.0, score.dtype)  # a class absent from the target counts 0 (smp)
    per_class = (1.0 - score) * present
    if not need_grad:
        return per_class, None, None, None
    gate = xp.astype(~small, score.dtype)
    a = -present * (num_i - score * den_i * gate) / d
    b = present * score * den_p * gate / d
    h = 0.5 * (1.0 - xp.sign(diff))  # dI/dp: 1 where p < t, 1/2 at p = t (|.|'s subgradient 0 there)
    return per_class, a, b, h if px.m is None else h * px.m


def _overlap_value(px: _Pixels, per_class: Any, reduction: str, gamma: float) -> Any:
    reduced = reduce(px.backend, per_class, reduction)
    if gamma != 1.0:
        reduced = modulating_factor(px.backend, reduced, gamma)
    return finish(px.backend, reduced, px.x)


def _overlap_grad(
    px: _Pixels, parts: tuple[Any, Any, Any, Any], reduction: str, gamma: float, cotangent: Any
) -> Any:
    per_class, a, b, h = parts
    backend = px.backend
    xp = backend.xp
    up = pointwise_scale(backend, per_class, None, reduction, cotangent, normalize_by_weight=False)
    if gamma != 1.0:
        up = up * modulating_factor(backend, reduce(backend, per_class, reduction), gamma, derivative=True)
    shape = [1] * px.x.ndim
    shape[px.axis] = per_class.shape[0]
    ua = xp.reshape(a * up, tuple(shape))
    ub = xp.reshape(b * up, tuple(shape))
    g = ua * h + (ub if px.m is None else ub * px.m)  # d loss / d p
    if not px.from_logits:
        return finish(backend, g, px.x)
    if px.mode == "multiclass":
        g = px.p * (g - xp.sum(px.p * g, axis=px.axis, keepdims=True))
    else:
        g = g * px.p * backend.sigmoid(-px.x)
    return finish(backend, g, px.x)


_EDGE_RULES = """
    Edge rules (every segmentation loss, every path): ignored pixels leave every sum,
    their predictions included (a NaN there is dropped, as ``cross_entropy``'s
    ``ignore_index``); NaN elsewhere in ``input`` gives NaN; an empty batch gives 0
    (every class absent); a multiclass index outside [0, C) that is not ``ignore_index``,
    a binary/multilabel target outside [0, 1] (or NaN) that is not ``ignore_index``, and
    with ``from_logits=False`` an input outside [0, 1], are a ``ValueError`` naming
    ``target``/``input`` where values can be read without a sync (NumPy,
    array-api-strict, torch on the CPU outside tracing; elsewhere they are not
    checked); an unknown ``mode`` is a ``ValueError``; integer targets of any integer
    dtype work.{OPTIONS}
"""
_OVERLAP_OPTIONS = """ ``eps`` below the input dtype's smallest normal number and a NaN,
    negative or infinite ``eps``/``smooth`` are a ``ValueError``."""


def _doc(text: str, options: str = _OVERLAP_OPTIONS) -> str:
    return text.replace("{EDGE}", _EDGE_RULES.strip("\n").replace("{OPTIONS}", options))


@loss
def dice_loss(
    input: ArrayT,
    target: Array,
    *,
    mode: SegmentationMode = "multiclass",
    axis: int = 1,
    from_logits: bool = True,
    smooth: float = 0.0,
    eps: float = 1e-7,
    ignore_index: int | None = None,
    reduction: Reduction = "mean",
) -> ArrayT:
    px, smooth, eps = _pixels(input, target, mode, axis, from_logits, smooth, eps, ignore_index, reduction,
                              "dice_loss")
    per_class = _per_class(px, _dice, smooth, eps, {}, False)[0]
    return _overlap_value(px, per_class, reduction, 1.0)


dice_loss.__doc__ = _doc(r"""Dice loss (Milletari et al., *V-Net*, 3DV 2016), one soft Dice score per class.

    .. math::
        \ell_c = \Big(1 - \frac{I_c + s}{\max(\frac12 (P_c + T_c) + s,\ \epsilon)}\Big)\,[T_c > 0],\quad
        I_c = \sum \min(p, t),\ P_c = \sum p,\ T_c = \sum t

    the sums running over the batch and every spatial position of the non-ignored
    pixels, ``p`` the probabilities (softmax over the class axis in multiclass mode,
    sigmoid otherwise, the input itself with ``from_logits=False``). For 0/1 targets
    and ``smooth=0`` this is :math:`1 - 2 \sum p t / (P_c + T_c)`. It is smp's (>= 0.5)
    Dice, the Tversky score with :math:`\alpha = \beta = \frac12`; older smp wrote
    :math:`(2I + s) / \max(P + T + s, \epsilon)`, the same score with ``smooth`` doubled.

    Args:
        input: ``(N, C, ...)`` logits (class axis ``axis``, default 1); ``C = 1`` in binary mode.
        target: multiclass: integer class indices, ``input``'s shape without the class
            axis; multilabel: 0/1 (or soft) masks of ``input``'s shape; binary: masks of
            ``input``'s shape or of it without the class axis.
        mode: ``"binary"``, ``"multiclass"`` (default) or ``"multilabel"``.
        axis: the class axis (default 1, the image convention).
        from_logits: apply the softmax/sigmoid (default True).
        smooth: added to numerator and denominator (default 0).
        eps: lower bound of the denominator (default 1e-7).
        ignore_index: target value whose pixels are left out of every sum (default None).
        reduction: ``"mean"`` (default: smp's value, the mean over all C classes, an
            absent class counting 0), ``"none"`` (the per-class vector ``(C,)``) or ``"sum"``.

{EDGE}

    Matches segmentation_models_pytorch's ``DiceLoss(mode, from_logits, smooth, ignore_index, eps)``.
    """)


@gradient(dice_loss)
def dice_loss_grad(
    input: Any,
    target: Any,
    *,
    mode: SegmentationMode = "multiclass",
    axis: int = 1,
    from_logits: bool = True,
    smooth: float = 0.0,
    eps: float = 1e-7,
    ignore_index: int | None = None,
    reduction: Reduction = "mean",
    cotangent: Any = None,
) -> Any:
    r"""Gradient of :func:`polyloss.dice_loss`: by ``p``, :math:`-[T_c > 0]\,(h - (I + s) m / (2D)) / D`
    with :math:`h = \partial I / \partial p = [p < t]` (1/2 at :math:`p = t`), the second term 0 where
    the denominator is clamped at ``eps``; then through the softmax or sigmoid."""
    px, smooth, eps = _pixels(input, target, mode, axis, from_logits, smooth, eps, ignore_index, reduction,
                              "dice_loss")
    parts = _per_class(px, _dice, smooth, eps, {}, True)
    return _overlap_grad(px, parts, reduction, 1.0, cotangent)


@loss
def jaccard_loss(
    input: ArrayT,
    target: Array,
    *,
    mode: SegmentationMode = "multiclass",
    axis: int = 1,
    from_logits: bool = True,
    smooth: float = 0.0,
    eps: float = 1e-7,
    ignore_index: int | None = None,
    reduction: Reduction = "mean",
) -> ArrayT:
    px, smooth, eps = _pixels(input, target, mode, axis, from_logits, smooth, eps, ignore_index, reduction,
                              "jaccard_loss")
    per_class = _per_class(px, _jaccard, smooth, eps, {}, False)[0]
    return _overlap_value(px, per_class, reduction, 1.0)


jaccard_loss.__doc__ = _doc(r"""Jaccard (soft IoU) loss, one score per class.

    .. math::
        \ell_c = \Big(1 - \frac{I_c + s}{\max(P_c + T_c - I_c + s,\ \epsilon)}\Big)\,[T_c > 0]

    with the sums of :func:`dice_loss` (Rahman and Wang, *Optimizing Intersection-Over-Union
    in Deep Neural Networks for Image Segmentation*, ISVC 2016). Arguments, modes and
    reductions as :func:`dice_loss`.

{EDGE}

    Matches segmentation_models_pytorch's ``JaccardLoss``.
    """)


@gradient(jaccard_loss)
def jaccard_loss_grad(
    input: Any,
    target: Any,
    *,
    mode: SegmentationMode = "multiclass",
    axis: int = 1,
    from_logits: bool = True,
    smooth: float = 0.0,
    eps: float = 1e-7,
    ignore_index: int | None = None,
    reduction: Reduction = "mean",
    cotangent: Any = None,
) -> Any:
    r"""Gradient of :func:`polyloss.jaccard_loss`: by ``p``,
    :math:`-[T_c > 0]\,(h / D - (I + s)(m - h) / D^2)` (:math:`h = \partial I / \partial p`), then through
    the activation."""
    px, smooth, eps = _pixels(input, target, mode, axis, from_logits, smooth, eps, ignore_index, reduction,
                              "jaccard_loss")
    parts = _per_class(px, _jaccard, smooth, eps, {}, True)
    return _overlap_grad(px, parts, reduction, 1.0, cotangent)


def _tversky_options(alpha: Any, beta: Any, gamma: Any) -> tuple[dict[str, float], float]:
    options = {"alpha": finite_number(alpha, "alpha"), "beta": finite_number(beta, "beta")}
    gamma = finite_number(gamma, "gamma")
    if gamma == 0.0:
        raise ValueError("gamma must be > 0, got 0")
    return options, gamma


@loss
def tversky_loss(
    input: ArrayT,
    target: Array,
    *,
    mode: SegmentationMode = "multiclass",
    axis: int = 1,
    from_logits: bool = True,
    smooth: float = 0.0,
    eps: float = 1e-7,
    ignore_index: int | None = None,
    alpha: float = 0.5,
    beta: float = 0.5,
    gamma: float = 1.0,
    reduction: Reduction = "mean",
) -> ArrayT:
    options, gamma = _tversky_options(alpha, beta, gamma)
    px, smooth, eps = _pixels(input, target, mode, axis, from_logits, smooth, eps, ignore_index, reduction,
                              "tversky_loss")
    per_class = _per_class(px, _tversky, smooth, eps, options, False)[0]
    return _overlap_value(px, per_class, reduction, gamma)


tversky_loss.__doc__ = _doc(r"""Tversky loss (Salehi et al., *Tversky loss function for image segmentation
    using 3D fully convolutional deep networks*, MLMI 2017); ``gamma != 1`` is the focal
    Tversky loss (Abraham and Khan, ISBI 2019).

    .. math::
        \ell_c = \Big(1 - \frac{I_c + s}{\max(I_c + \alpha\,FP_c + \beta\,FN_c + s,\ \epsilon)}\Big)\,[T_c > 0],
        \quad FP_c = P_c - I_c,\ FN_c = T_c - I_c

    over the non-ignored pixels, then the reduction raised to ``gamma``: ``"mean"`` is
    :math:`(\frac1C \sum_c \ell_c)^\gamma` (smp's value), ``"sum"``
    :math:`(\sum_c \ell_c)^\gamma` and ``"none"`` the vector :math:`(\ell_c^\gamma)_c`.
    ``alpha = beta = 0.5`` is the Dice loss, ``alpha = beta = 1`` the Jaccard loss.

    Args:
        alpha: weight of the false positives, >= 0 (default 0.5).
        beta: weight of the false negatives, >= 0 (default 0.5).
        gamma: exponent > 0 of the reduced loss (default 1.0).
        others: as :func:`dice_loss`.

{EDGE}

    Matches segmentation_models_pytorch's ``TverskyLoss``.
    """)


@gradient(tversky_loss)
def tversky_loss_grad(
    input: Any,
    target: Any,
    *,
    mode: SegmentationMode = "multiclass",
    axis: int = 1,
    from_logits: bool = True,
    smooth: float = 0.0,
    eps: float = 1e-7,
    ignore_index: int | None = None,
    alpha: float = 0.5,
    beta: float = 0.5,
    gamma: float = 1.0,
    reduction: Reduction = "mean",
    cotangent: Any = None,
) -> Any:
    r"""Gradient of :func:`polyloss.tversky_loss`: by ``p``,
    :math:`-[T_c > 0]\,(h / D - (I + s)(h (1 - \alpha - \beta) + \alpha m) / D^2)`, times
    :math:`\gamma L^{\gamma - 1}` of the reduced loss ``L`` (0 at ``L = 0``), then through the activation."""
    options, gamma = _tversky_options(alpha, beta, gamma)
    px, smooth, eps = _pixels(input, target, mode, axis, from_logits, smooth, eps, ignore_index, reduction,
                              "tversky_loss")
    parts = _per_class(px, _tversky, smooth, eps, options, True)
    return _overlap_grad(px, parts, reduction, gamma, cotangent)


# -- Lovasz -------------------------------------------------------------------------------------


@dataclass
class _Lovasz:
    """The sorted errors of a Lovasz loss, laid out (B, K, L): B images (1 unless ``per_image``),
    K classes (1 for the hinge) and L pixels, with what the gradient needs to undo the layout."""

    backend: Backend
    x: Any  # the input in its compute dtype
    axis: int
    shape: tuple[int, ...]  # (N, C, S): the input with its class axis at 1, space flattened
    moved: tuple[int, ...]  # the input's shape with its class axis moved to 1
    hinge: bool
    per_image: bool
    p: Any  # (N, C, S) probabilities (softmax mode) or None
    sign: Any  # (N, C, S): 2 t - 1 (hinge) or sign(p - t) (softmax; gradient only): d error / d (x or p) up to sign
    perm: Any  # (B, K, L) the descending order of the errors (None on a backend's fast path: as grad, keep)
    keep: Any  # (B, K, L) float: the sorted pixel counts (not ignored, error above 0 for the hinge); None: all
    grad: Any  # (B, K, L) the Lovasz extension's weights at the sorted errors
    losses: Any  # (B, K) the Lovasz extension of each image and class
    weight: Any  # (B, K) how each enters its row of the "none" vector
    count: Any  # the "mean" denominator: None for the mean over the rows, else a 0-d array
    d_rows: Any = None  # a fast path's (N, C, S) d (its row's value) / d (x or p) at each pixel (gradient only)


def _lovasz_layout(xp: Any, a: Any, n: int, k: int, per_image: bool, hinge: bool) -> Any:
    """(N, C, S) -> (B, K, L) (explicit sizes: -1 cannot be solved for an empty batch)."""
    s = a.shape[2]
    if hinge:
        return xp.reshape(a, (n, 1, k * s)) if per_image else xp.reshape(a, (1, 1, n * k * s))
    if per_image:
        return a
    return xp.reshape(xp.permute_dims(a, (1, 0, 2)), (1, k, n * s))


def _lovasz_unlayout(xp: Any, a: Any, shape: tuple[int, ...], per_image: bool, hinge: bool) -> Any:
    """(B, K, L) -> (N, C, S)."""
    n, c, s = shape
    if hinge or per_image:
        return xp.reshape(a, shape)
    return xp.permute_dims(xp.reshape(a, (c, n, s)), (1, 0, 2))


def _lovasz_weights(xp: Any, fg_sorted: Any) -> tuple[Any, Any]:
    """``(g, |F|)``: the Lovasz extension's weights of the Jaccard loss at the sorted errors (Berman et al.,
    Alg. 1) from the sorted foreground ``(B, K, L)``, and the foreground counts ``(B, K, 1)``."""
    total = xp.sum(fg_sorted, axis=-1, keepdims=True)
    if fg_sorted.shape[-1] == 0:
        return xp.zeros_like(fg_sorted), total
    inter = total - xp.cumulative_sum(fg_sorted, axis=-1)
    union = total + xp.cumulative_sum(1.0 - fg_sorted, axis=-1)
    jaccard = 1.0 - inter / union
    return xp.concat([jaccard[..., :1], jaccard[..., 1:] - jaccard[..., :-1]], axis=-1), total


def _lovasz_parts(
    input: Any, target: Any, mode: Any, axis: Any, per_image: Any, ignore_index: Any, from_logits: Any,
    reduction: str, need_grad: bool,
) -> _Lovasz:
    """Checks (shared by the loss and its gradient), then the sorted errors and the Lovasz weights."""
    if not isinstance(per_image, bool):
        raise TypeError(f"per_image must be a bool, got {type(per_image).__name__}")
    if mode in ("binary", "multilabel") and from_logits is False:
        raise ValueError(f"from_logits=False is not possible in {mode} mode: the Lovasz hinge takes logits")
    backend, x, t, m, axis = _segmentation_inputs(input, target, mode, axis, from_logits, ignore_index, reduction,
                                                  "lovasz_loss", labels=True)
    if x.ndim < 2:
        raise ValueError(f"input of lovasz_loss must be (N, C, ...) with a batch axis, got shape {tuple(x.shape)}")
    xp = backend.xp
    hinge = mode != "multiclass"
    moved = tuple(xp.moveaxis(x, axis, 1).shape)
    n, c = moved[0], moved[1]
    shape = (n, c, math.prod(moved[2:]))

    def flat(a: Any) -> Any:
        return xp.reshape(xp.moveaxis(xp.broadcast_to(a, tuple(x.shape)), axis, 1), shape)

    xs = flat(x)
    valid = None if m is None else flat(m)
    kernel = backend.fast_paths.get("lovasz_loss.rows") if fast_paths_enabled() else None
    if kernel is not None:  # multiclass: the class indices (N, S), and the kept pixels (N, 1, S)
        rows = kernel(xs, flat(t) if hinge else xp.reshape(t, (n, shape[2])),
                      valid if hinge or valid is None else valid[:, :1, ...], hinge=hinge, per_image=per_image,
                      from_logits=from_logits, need_grad=need_grad)
        if rows is not NotImplemented:  # the rows' values and foreground counts (B, K), d_rows and p
            losses, total, d_rows, p = rows
            return _Lovasz(backend, x, axis, shape, moved, hinge, per_image, p, None, None, None, None, losses,
                           *_lovasz_row_weights(xp, losses, total, hinge, per_image), d_rows)
    ts = flat(t if hinge else _class_masks(backend, t, m, x, axis))
    if hinge:
        sign = 2.0 * ts - 1.0
        errors = 1.0 - xs * sign
        p = None
    else:
        p = backend.softmax(xs, 1) if from_logits else xs
        d = p - ts
        errors = xp.abs(d)
        sign = xp.sign(d) if need_grad else None
    layout = _lovasz_layout
    e, fg = layout(xp, errors, n, c, per_image, hinge), layout(xp, ts, n, c, per_image, hinge)
    ok = None if valid is None else layout(xp, valid, n, c, per_image, hinge) > 0.0
    del t, ts, errors, valid  # image-sized: the layouts (copies, or views of them) are what is read from here
    key = e if ok is None else xp.where(ok, e, -math.inf)  # ignored pixels sort last
    perm = xp.argsort(key, axis=-1, descending=True, stable=True)
    del key
    e_sorted = backend.take_along_axis(e, perm, axis=-1)
    lovasz, total = _lovasz_weights(xp, backend.take_along_axis(fg, perm, axis=-1))
    del fg
    errs = xp.where(e_sorted <= 0.0, 0.0, e_sorted) if hinge else e_sorted  # the hinge's relu, NaN kept
    keep = None  # all pixels count (only the gradient reads it)
    if ok is not None:
        keep = xp.astype(backend.take_along_axis(ok, perm, axis=-1), e.dtype)
        errs = xp.where(keep > 0.0, errs, 0.0)
    if need_grad:
        keep = xp.ones_like(e_sorted) if keep is None else keep
        if hinge:
            keep = keep * xp.astype(~(e_sorted <= 0.0), e.dtype)  # the relu's derivative (1 at NaN, as autograd)
    losses = xp.sum(errs * lovasz, axis=-1)
    return _Lovasz(backend, x, axis, shape, moved, hinge, per_image, p, sign, perm, keep, lovasz, losses,
                   *_lovasz_row_weights(xp, losses, total[..., 0], hinge, per_image))


def _lovasz_row_weights(xp: Any, losses: Any, total: Any, hinge: bool, per_image: bool) -> tuple[Any, Any]:
    """``(weight, count)`` of :class:`_Lovasz` from the rows' values and foreground counts ``(B, K)``."""
    if hinge:
        return xp.ones_like(losses), None
    present = xp.astype(total > 0.0, losses.dtype)  # classes absent from the target are skipped
    classes = xp.sum(present, axis=1, keepdims=True)
    if per_image:
        return present / xp.where(classes == 0.0, 1.0, classes), None
    return present, classes[0, 0]


def _lovasz_rows(lv: _Lovasz) -> Any:
    """The "none" vector: per image (``per_image``), per class (multiclass), else the one loss, shape (1,)."""
    xp = lv.backend.xp
    if lv.count is not None:
        return (lv.weight * lv.losses)[0, ...]
    return xp.sum(lv.weight * lv.losses, axis=1)


@loss
def lovasz_loss(
    input: ArrayT,
    target: Array,
    *,
    mode: SegmentationMode = "multiclass",
    axis: int = 1,
    per_image: bool = False,
    ignore_index: int | None = None,
    from_logits: bool = True,
    reduction: Reduction = "mean",
) -> ArrayT:
    lv = _lovasz_parts(input, target, mode, axis, per_image, ignore_index, from_logits, reduction, False)
    rows = _lovasz_rows(lv)
    if reduction == "mean" and lv.count is not None:
        out = weighted_mean(lv.backend, lv.backend.xp.sum(rows), lv.count)
    else:
        out = reduce(lv.backend, rows, reduction)
    return finish(lv.backend, out, input)


lovasz_loss.__doc__ = _doc(r"""Lovasz loss (Berman et al., *The Lovasz-Softmax loss: a tractable surrogate
    for the optimization of the intersection-over-union measure in neural networks*, CVPR 2018).

    The Lovasz extension of the Jaccard loss, evaluated at the pixel errors sorted in
    decreasing order, :math:`\ell = \sum_k e_{(k)}\,g_k` with :math:`g_k = J_k - J_{k-1}`,
    :math:`J_k = 1 - \frac{|F| - |F \cap \{1..k\}|}{|F| + |\{1..k\} \setminus F|}` over the
    sorted foreground ``F``:

    - multiclass mode (Lovasz-softmax): per class, the errors :math:`|[y = c] - p_c|` of the
      softmax probabilities ``p``; the loss is the mean over the classes present in the
      target (absent classes skipped);
    - binary and multilabel modes (Lovasz hinge): the errors :math:`\max(1 - x (2t - 1), 0)`
      of the logits, every element of the batch (all classes together, as smp) one problem.

    Args:
        input: ``(N, C, ...)`` logits (class axis ``axis``, default 1); ``C = 1`` in binary mode.
        target: as :func:`dice_loss` (class indices, or 0/1 masks).
        mode: ``"binary"``, ``"multiclass"`` (default) or ``"multilabel"``.
        axis: the class axis (default 1).
        per_image: one loss per image (its own sorting), then their mean (default False: the
            whole batch is one problem).
        ignore_index: target value whose pixels are left out (default None).
        from_logits: multiclass: apply the softmax (default True; False: ``input`` holds
            probabilities); must be True in the hinge modes (a ``ValueError`` otherwise).
        reduction: ``"mean"`` (default: smp's value), ``"sum"`` or ``"none"``: with
            ``per_image=True`` the per-image losses ``(N,)`` (an image without a present class
            counting 0, "mean" their mean); otherwise, multiclass, the per-class vector ``(C,)``
            (absent classes 0, "mean" its sum over the present classes' count), and in the hinge
            modes a vector ``(1,)`` holding the loss.

    The gradient (:func:`polyloss.value_and_grad`) is the Lovasz weights at the sorted errors,
    scattered back to the pixels (PyTorch's autograd through ``sort``), through the hinge's
    ``relu`` (0 at an error of 0) or ``|.|`` (0 at ``p = t``) and the softmax. On eager PyTorch
    tensors the problems (classes, images) are solved one at a time, sorted as integer keys, with
    a custom backward: the same numbers, tied errors in the same order, a fraction of the time and
    memory, and no second derivative (``polyloss.fast_paths(False)`` runs the generic code).

{EDGE}

    Matches segmentation_models_pytorch's ``LovaszLoss(mode, per_image, ignore_index)``.
    """, options="")


@gradient(lovasz_loss)
def lovasz_loss_grad(
    input: Any,
    target: Any,
    *,
    mode: SegmentationMode = "multiclass",
    axis: int = 1,
    per_image: bool = False,
    ignore_index: int | None = None,
    from_logits: bool = True,
    reduction: Reduction = "mean",
    cotangent: Any = None,
) -> Any:
    r"""Gradient of :func:`polyloss.lovasz_loss`: :math:`\partial \ell / \partial e_{(k)} = g_k` (times the
    reduction's factor), scattered back through the sort, then through the hinge or ``|t - p|`` and the softmax."""
    lv = _lovasz_parts(input, target, mode, axis, per_image, ignore_index, from_logits, reduction, True)
    backend = lv.backend
    xp = backend.xp
    rows = _lovasz_rows(lv)
    if reduction == "mean" and lv.count is not None:
        up = weighted_mean_upstream(backend, upstream(backend, cotangent, (), lv.x), lv.count)
    else:
        up = pointwise_scale(backend, rows, None, reduction, cotangent, normalize_by_weight=False)
    if isinstance(up, float) or up.ndim == 0:
        dl = lv.weight * up
    elif lv.count is not None:
        dl = lv.weight * xp.expand_dims(up, axis=0)
    else:
        dl = lv.weight * xp.expand_dims(up, axis=1)
    if lv.d_rows is not None:  # a fast path's: through the sort and the hinge or |p - t| already
        g = lv.d_rows * xp.expand_dims(dl, axis=-1)
    else:
        sorted_grad = xp.expand_dims(dl, axis=-1) * lv.grad * lv.keep
        inverse = xp.argsort(lv.perm, axis=-1, stable=True)
        d_errors = _lovasz_unlayout(xp, backend.take_along_axis(sorted_grad, inverse, axis=-1), lv.shape,
                                    lv.per_image, lv.hinge)
        g = -lv.sign * d_errors if lv.hinge else lv.sign * d_errors
    if not lv.hinge and from_logits:
        g = lv.p * (g - xp.sum(lv.p * g, axis=1, keepdims=True))
    g = xp.moveaxis(xp.reshape(g, lv.moved), 1, lv.axis)
    return finish(backend, g, input)
