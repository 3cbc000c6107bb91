"""Focal losses (Lin et al., *Focal Loss for Dense Object Detection*, ICCV 2017), with their closed-form gradients.

Each loss is declared with ``@loss`` and its gradient, next to it, with ``@gradient(...)``. Each has
one check function (run by the loss and by its gradient) and one element-wise value-and-derivative
(:func:`sigmoid_focal_elementwise`, :func:`softmax_focal_elementwise`), written in array-API code:
the forward takes its value, the closed-form gradient its derivative, and PyTorch's fused backward
(``_Fused`` in :mod:`polyloss.backend.torch`) both, from the function the loss hands to the fast path.
"""

from __future__ import annotations

import math
from functools import partial
from typing import Any
from typing import NamedTuple

from polyloss import _checks as v
from polyloss._namespace import fast_paths_enabled
from polyloss._namespace import resolve
from polyloss.backend._base import Backend
from polyloss.functional._common import apply_sample_seed
from polyloss.functional._common import compute_dtype
from polyloss.functional._common import finish
from polyloss.functional._common import one_hot
from polyloss.functional._common import pointwise_inputs
from polyloss.functional._common import runs_fused
from polyloss.functional._common import try_fast_path
from polyloss.functional._define import gradient
from polyloss.functional._define import loss
from polyloss.functional._define import value_and_gradient
from polyloss.functional._reductions import pointwise_scale
from polyloss.functional._reductions import reduce
from polyloss.functional._reductions import weighted_mean
from polyloss.functional.classification import class_axis_inputs
from polyloss.functional.classification import class_weight
from polyloss.functional.classification import index_seed
from polyloss.functional.classification import index_targets
from polyloss.functional.classification import pick
from polyloss.functional.classification import take_per_class
from polyloss.typing import Array
from polyloss.typing import ArrayT
from polyloss.typing import Reduction

__all__ = [
    "sigmoid_focal_elementwise",
    "sigmoid_focal_loss",
    "sigmoid_focal_loss_grad",
    "softmax_focal_elementwise",
    "softmax_focal_loss",
    "softmax_focal_loss_grad",
]

#: float32's largest value: the narrowest dtype a loss computes in (half precision is computed in float32)
_GAMMA_MAX = 3.4028234663852886e38


def _check_gamma(gamma: Any) -> float:
    """``gamma`` as a float: a number in [0, 3.4e38]; NaN, negative, inf and larger values raise ``ValueError``."""
    checked = v.check_number(gamma, "gamma")
    if not checked <= _GAMMA_MAX:
        raise ValueError(f"gamma must be finite and at most float32's largest value 3.4e38, got {gamma!r}")
    return checked


def _modulate(backend: Backend, a: Any, u: Any, gamma: float, *, derivative: bool = False, copy: bool = False) -> Any:
    """``a`` times the modulating factor ``u ** gamma`` (``u = 1 - p_t`` in [0, 1], ``gamma > 0``), or times
    its derivative ``gamma * u ** (gamma - 1)`` if ``derivative``: written into ``a`` (a fresh array of the
    caller's that no autograd op has saved), or into a new array if ``copy``; ``gamma`` 1 and 2 need no
    other buffer.

    For ``0 < gamma < 1`` that derivative is infinite at ``u = 0`` (a saturated, correct prediction,
    where the true gradient of the loss tends to 0) and overflows just above it, so wherever ``u`` is
    below the dtype's smallest normal number the factor and its derivative are taken as 0 (the loss
    term there is below that number too). Written with a masked base, so autograd through the factor
    agrees with the derivative.
    """
    if gamma == 1.0:
        factors = [] if derivative else [u]
    elif gamma == 2.0:
        factors = [u, 2.0] if derivative else [u, u]
    elif gamma > 1.0:
        factors = [gamma * u ** (gamma - 1.0) if derivative else u**gamma]
    else:
        xp = backend.xp
        ok = u >= xp.finfo(u.dtype).smallest_normal
        base = xp.where(ok, u, 1.0)
        factors = [xp.where(ok, gamma * base ** (gamma - 1.0) if derivative else base**gamma, 0.0)]
    for i, factor in enumerate(factors):
        if i == 0 and copy:
            a = a * factor
        else:
            a *= factor
    return a


def modulating_factor(backend: Backend, u: Any, gamma: float, *, derivative: bool = False) -> Any:
    """The focal modulating factor ``u ** gamma`` (or its derivative by ``u``) as a new array, with the
    care of :func:`_modulate` at ``u = 0``; shared with the quality focal and varifocal losses."""
    return _modulate(backend, backend.xp.ones_like(u), u, gamma, derivative=derivative)


# -- sigmoid focal loss -------------------------------------------------------------------------


def _check_soft_labels(backend: Backend, target: Any) -> None:
    """Where values can be read without a device sync: ``target`` in [0, 1] (NaN passes: it gives NaN)."""
    kind = backend.dtype_kind(target.dtype)
    if kind == "b" or math.prod(target.shape) == 0 or not backend.is_host_array(target):
        return
    xp = backend.xp
    t = backend.stop_gradient(target if kind == "f" else xp.astype(target, xp.float64))  # (no uint64 min on torch)
    lo, hi = float(xp.min(t)), float(xp.max(t))
    if lo >= 0.0 and hi <= 1.0:
        return
    nan = xp.isnan(t)
    lo = float(xp.min(xp.where(nan, 0.5, t)))
    hi = float(xp.max(xp.where(nan, 0.5, t)))
    if lo < 0.0 or hi > 1.0:
        bad = lo if lo < 0 else hi
        raise ValueError(f"target of sigmoid_focal_loss must hold probabilities in [0, 1], got {bad!r}")


def _check_sigmoid_focal(
    backend: Backend, input: Any, target: Any, alpha: Any, gamma: Any, reduction: str
) -> tuple[float, float]:
    """The checks of :func:`sigmoid_focal_loss` and its gradient; returns ``(alpha, gamma)`` as floats."""
    pointwise_inputs(backend, input, target, reduction)
    gamma = _check_gamma(gamma)
    alpha = v.check_number(alpha, "alpha", minimum=None, maximum=1.0)
    _check_soft_labels(backend, target)
    return alpha, gamma


def sigmoid_focal_elementwise(
    backend: Backend, x: Any, y: Any, *, alpha: float, gamma: float, need_grad: bool
) -> tuple[Any, Any]:
    r"""Element-wise sigmoid focal loss of logits ``x`` and labels ``y`` (same dtype), and if
    ``need_grad`` its derivative by ``x`` (else None).

    With :math:`p = \sigma(x)`, :math:`q = 1 - p = \sigma(-x)`, :math:`u = 1 - p_t = y q + (1 - y) p`,
    :math:`\mathrm{ce} = -\log p_t = (1 - y) x - \log\sigma(x)` and
    :math:`\alpha_t = \alpha y + (1 - \alpha)(1 - y)` (1 when :math:`\alpha < 0`):

    .. math::
        \ell = \alpha_t\,u^\gamma\,\mathrm{ce},\qquad
        \partial\ell/\partial x = \alpha_t\,[\,u^\gamma\,((1 - y) p - y q)
            + \gamma u^{\gamma-1}\,(1 - 2y)\,p q\,\mathrm{ce}\,]

    (:math:`(1 - y)p - yq = p - y` and :math:`(1 - 2y)pq = du/dx`, written without cancellation;
    soft labels allowed). The loss, its closed-form gradient and PyTorch's fused backward all call this.
    """
    # In place only arrays made here that no autograd op has saved yet (autograd, torch.func and array-api-strict
    # accept that), and each array dropped after its last use: on CPU a fresh buffer costs about as much as an
    # element-wise pass, so the fewer live at once, the faster (PyTorch's fused path runs this).
    ny = 1.0 - y
    ce = ny * x
    ce -= backend.log_sigmoid(x)  # -(y log p + (1 - y) log(1 - p)), with log(1 - p) = log p - x
    loss, grad = ce, None
    if gamma != 0.0 or need_grad:
        p = backend.sigmoid(x)
        q = backend.sigmoid(-x)
        du = None
        if need_grad and gamma != 0.0:
            du = (ny - y) * p  # d u / d x = (1 - 2 y) p q
            du *= q
        u = y * q
        del q
        pos = ny * p
        del p, ny
        if need_grad:
            grad = pos - u  # p - y = (1 - y) p - y q, without cancellation
        u += pos  # 1 - p_t = y q + (1 - y) p
        del pos
        if gamma != 0.0:
            if du is not None:
                du = _modulate(backend, du, u, gamma, derivative=True)
                du *= ce
                grad = _modulate(backend, grad, u, gamma)
                grad += du
                del du
            loss = _modulate(backend, ce, u, gamma, copy=True)
            del ce, u
    if alpha >= 0:
        a_t = (2.0 * alpha - 1.0) * y
        a_t += 1.0 - alpha  # alpha y + (1 - alpha)(1 - y)
        loss *= a_t
        if need_grad:
            grad *= a_t
    return loss, grad


@loss
def sigmoid_focal_loss(
    input: ArrayT, target: Array, *, alpha: float = 0.25, gamma: float = 2.0, reduction: Reduction = "mean"
) -> ArrayT:
    r"""Sigmoid focal loss, element-wise on logits (Lin et al., ICCV 2017).

    .. math::
        \ell_i = -\alpha_t (1 - p_t)^\gamma \log p_t,\quad
        p_t = p\,y + (1 - p)(1 - y),\quad \alpha_t = \alpha y + (1 - \alpha)(1 - y)

    where :math:`p = \sigma(x)`; :math:`-\log p_t` is the binary cross-entropy
    with logits, computed through the log-sigmoid (finite for any finite logit), and
    :math:`1 - p_t = y\,\sigma(-x) + (1 - y)\,\sigma(x)` without cancellation
    (see :func:`sigmoid_focal_elementwise`).

    Args:
        input: logits, any shape, real floating dtype.
        target: binary or soft labels in [0, 1], same shape (floating, integer or bool).
        alpha: weight of positives in [0, 1], default 0.25; any negative value
            disables the alpha factor (torchvision's convention).
        gamma: focusing parameter >= 0, default 2.0.
        reduction: ``"none"``, ``"mean"`` (default; torchvision's default is
            ``"none"``) or ``"sum"``.

    Edge rules (every path and backend):

    - NaN in ``input`` or ``target`` gives NaN (in its element, and in ``"mean"``/``"sum"``).
    - Logits: :math:`+\infty` gives :math:`\infty` for a label below 1 and NaN for a label of 1
      (:math:`0 \cdot \infty`), :math:`-\infty` gives NaN, as torchvision; finite logits of
      any size give a finite loss and gradient.
    - A ``target`` outside [0, 1] raises ``ValueError`` naming it where values can be read
      without a device sync (NumPy, array-api-strict, PyTorch on the CPU outside
      ``torch.compile``/``torch.func``); elsewhere it enters the formula as it is.
    - ``alpha`` above 1 or NaN raises ``ValueError`` naming it; any negative ``alpha``
      (-inf too) disables the factor.
    - ``gamma``: negative, NaN, inf or above float32's largest value (3.4e38) raise
      ``ValueError`` naming it; ``gamma=0`` is the binary cross-entropy with logits.
      For :math:`0 < \gamma < 1` the factor's derivative is infinite at :math:`p_t = 1`: where
      :math:`1 - p_t` is below the dtype's smallest normal number the factor and its
      derivative are taken as 0, so the gradient at a saturated correct logit is 0 (its
      limit) and finite on every path, fused PyTorch backward included.
    - Empty input: ``"mean"`` and ``"sum"`` are 0, ``"none"`` is empty.

    Matches ``torchvision.ops.sigmoid_focal_loss``.
    """
    backend = resolve(input, target)
    alpha, gamma = _check_sigmoid_focal(backend, input, target, alpha, gamma, reduction)
    elementwise = partial(sigmoid_focal_elementwise, backend, alpha=alpha, gamma=gamma)
    out = try_fast_path(backend, "sigmoid_focal_loss", input, target, alpha=alpha, gamma=gamma,
                        reduction=reduction, elementwise=elementwise)
    if out is not NotImplemented:
        return out
    x, y = compute_dtype(backend, input, target)
    value, _ = elementwise(x, y, need_grad=False)
    return finish(backend, reduce(backend, value, reduction), input)


@gradient(sigmoid_focal_loss)
def sigmoid_focal_loss_grad(
    input: Any, target: Any, *, alpha: float = 0.25, gamma: float = 2.0, reduction: Reduction = "mean",
    cotangent: Any = None,
) -> Any:
    r"""Gradient of :func:`polyloss.sigmoid_focal_loss` with respect to the logits.

    With :math:`p = \sigma(x)`, :math:`u = 1 - p_t = y(1 - p) + (1 - y)p` and
    :math:`\mathrm{ce} = -\log p_t`:

    .. math::
        \partial\ell/\partial x = \alpha_t\,[\,u^\gamma (p - y)
            + \gamma u^{\gamma-1} (1 - 2y)\,p (1 - p)\,\mathrm{ce}\,]

    (:func:`sigmoid_focal_elementwise`; 0 at a saturated correct logit for any ``gamma``).
    """
    backend = resolve(input, target)
    alpha, gamma = _check_sigmoid_focal(backend, input, target, alpha, gamma, reduction)
    x, y = compute_dtype(backend, input, target)
    _, g = sigmoid_focal_elementwise(backend, x, y, alpha=alpha, gamma=gamma, need_grad=True)
    up = pointwise_scale(backend, x, None, reduction, cotangent, normalize_by_weight=False)
    return finish(backend, g * up, input)


@value_and_gradient(sigmoid_focal_loss)
def _sigmoid_focal_loss_value_and_grad(
    input: Any, target: Any, *, alpha: float = 0.25, gamma: float = 2.0, reduction: str = "mean",
    cotangent: Any = None,
) -> Any:
    backend = resolve(input, target)
    alpha, gamma = _check_sigmoid_focal(backend, input, target, alpha, gamma, reduction)
    if not runs_fused(backend, "sigmoid_focal_loss", input):
        return NotImplemented
    x, y = compute_dtype(backend, input, target)
    loss, g = sigmoid_focal_elementwise(backend, x, y, alpha=alpha, gamma=gamma, need_grad=True)
    value = reduce(backend, loss, reduction)
    del loss
    g *= pointwise_scale(backend, x, None, reduction, cotangent, normalize_by_weight=False)
    return finish(backend, value, input), finish(backend, g, input)


# -- softmax focal loss -------------------------------------------------------------------------


class _SoftmaxFocal(NamedTuple):
    axis: int
    alpha: float | None  # a factor for every class (Python number), or None
    alpha_array: Any  # per-class factors (C,), or None
    gamma: float
    ignore_index: int | None  # None where no target of this dtype can equal it
    target: Any  # int64 class indices


def _check_softmax_focal(
    backend: Backend, input: Any, target: Any, axis: Any, alpha: Any, gamma: Any, ignore_index: Any,
    reduction: str,
) -> _SoftmaxFocal:
    """The checks of :func:`softmax_focal_loss` and its gradient, class indices included (where readable)."""
    v.check_reduction(reduction)
    gamma = _check_gamma(gamma)
    v.check_ignore_index(ignore_index)
    axis, _ = class_axis_inputs(backend, input, target, axis, allow_probabilities=False)
    num_classes = input.shape[axis]
    alpha_array = None
    if alpha is not None and not isinstance(alpha, (int, float)):
        class_weight(backend, alpha, num_classes, name="alpha")
        if backend.dtype_kind(alpha.dtype) not in "fi":
            raise TypeError(f"alpha must have a real numeric dtype, got {alpha.dtype}")
        alpha_array, alpha = alpha, None
    elif alpha is not None:
        alpha = v.check_number(alpha, "alpha")
        if not math.isfinite(alpha):
            raise ValueError(f"alpha must be finite, got {alpha!r}")
    ignore_index = v.usable_ignore_index(backend, target, ignore_index)
    xp = backend.xp
    # int64 indices: every integer dtype works alike (uint8 ... uint64; torch has few uint64 kernels)
    index = target if target.dtype == xp.int64 else xp.astype(target, xp.int64)
    v.check_class_indices(backend, index, num_classes, ignore_index=ignore_index, always=True)
    return _SoftmaxFocal(axis, alpha, alpha_array, gamma, ignore_index, index)


def softmax_focal_elementwise(backend: Backend, logp_y: Any, *, gamma: float, need_grad: bool) -> tuple[Any, Any]:
    r"""Per-sample softmax focal loss :math:`f(L) = -(1 - e^L)^\gamma L` of the target's
    log-probability :math:`L = \log p_y`, and if ``need_grad`` its derivative
    :math:`f'(L) = \gamma u^{\gamma-1} e^L L - u^\gamma` (:math:`u = 1 - e^L = -\mathrm{expm1}(L)`,
    accurate as :math:`p_y \to 1`); the gradient by the logits is :math:`f'(L)([k = y] - p_k)`.
    """
    if gamma == 0.0:
        return -logp_y, (-1.0 if need_grad else None)
    xp = backend.xp
    u = -xp.expm1(logp_y)
    value = _modulate(backend, -logp_y, u, gamma)
    if not need_grad:
        return value, None
    coef = _modulate(backend, xp.exp(logp_y) * logp_y, u, gamma, derivative=True)
    coef -= _modulate(backend, xp.ones_like(u), u, gamma)
    return value, coef


def _softmax_focal_terms(
    backend: Backend, input: Any, parts: _SoftmaxFocal, need_grad: bool
) -> tuple[Any, Any, Any, Any, Any, Any]:
    r"""``(x, log p, valid, safe indices, per-sample loss, d loss / d log p_y)``, alpha applied to both; ``log p``
    is None where the cross-entropy kernel gave :math:`\log p_y` (NumPy, value only)."""
    x, a = compute_dtype(backend, input, parts.alpha_array)
    valid, safe = index_targets(backend, parts.target, parts.ignore_index)
    logp, nll = None, NotImplemented
    if not need_grad and backend.host:  # NumPy: the cross-entropy kernel's -log p_y, no log-softmax formed
        nll = try_fast_path(backend, "cross_entropy", x, safe, axis=parts.axis, weight=None, ignore_index=None,
                            label_smoothing=0.0, reduction="none")
    if nll is NotImplemented:
        logp = backend.log_softmax(x, parts.axis)
        logp_y = pick(backend, logp, safe, parts.axis)
    else:
        logp_y = -nll
    value, coef = softmax_focal_elementwise(backend, logp_y, gamma=parts.gamma, need_grad=need_grad)
    factor = take_per_class(backend, a, safe) if a is not None else parts.alpha
    if factor is not None:
        value = value * factor
        coef = None if coef is None else coef * factor
    return x, logp, valid, safe, value, coef


@loss
def softmax_focal_loss(
    input: ArrayT,
    target: Array,
    *,
    axis: int = -1,
    alpha: Any = None,
    gamma: float = 2.0,
    ignore_index: int = -100,
    reduction: Reduction = "mean",
) -> ArrayT:
    r"""Multi-class focal loss on softmax probabilities (Lin et al., ICCV 2017).

    .. math::
        \ell_i = -\alpha_{y_i}\,(1 - p_{i,y_i})^\gamma \log p_{i,y_i}

    with :math:`\log p = \operatorname{log\_softmax}(x)` and
    :math:`1 - p_y = -\operatorname{expm1}(\log p_y)` (accurate as :math:`p_y \to 1`).
    ``gamma=0`` and ``alpha=None`` is exactly :func:`cross_entropy`.

    Args:
        input: logits, class axis ``axis`` (default -1).
        target: integer class indices (any integer dtype), ``input``'s shape without the class axis.
        alpha: None (default, no class factor), a Python number >= 0 (one factor
            for every class) or an array ``(C,)`` of per-class factors.
        gamma: focusing parameter >= 0, default 2.0.
        ignore_index: targets equal to it contribute nothing (default -100).
        reduction: ``"none"``, ``"mean"`` (default: over the non-ignored
            samples, 0 if all are ignored) or ``"sum"``.

    Edge rules (every path and backend):

    - NaN in ``input`` gives NaN in its sample (and in ``"mean"``/``"sum"``), unless the
      sample is ignored. A logit of :math:`+\infty` gives NaN in its sample, on the target's
      class or another (:math:`\infty - \infty` in the log-softmax, as PyTorch's);
      :math:`-\infty` on another class is a probability of 0 (finite loss and gradient).
    - A class index outside [0, C) that is not ``ignore_index`` raises ``ValueError`` naming
      ``target`` where values can be read without a device sync (NumPy,
      array-api-strict, PyTorch on the CPU outside ``torch.compile``/``torch.func``). On a GPU
      or while tracing it is not checked (PyTorch's gather then fails or reads garbage).
      ``ignore_index`` outside the target's dtype (-100 for uint8) ignores nothing.
    - Every sample ignored (or an empty batch): ``"mean"`` and ``"sum"`` are 0 with a zero
      gradient.
    - ``alpha``: the "mean" is over the non-ignored samples, so per-class factors that are
      0 or sum to 0 just scale (or zero) their samples; NaN in a used factor gives NaN. A
      negative, NaN or infinite number raises ``ValueError`` naming ``alpha``.
    - ``gamma``: as :func:`sigmoid_focal_loss` (``ValueError`` for negative, NaN, inf, or
      above 3.4e38; for :math:`0 < \gamma < 1` the gradient at :math:`p_y = 1` is 0, its limit).
    """
    backend = resolve(input, target)
    parts = _check_softmax_focal(backend, input, target, axis, alpha, gamma, ignore_index, reduction)
    _, _, valid, _, value, _ = _softmax_focal_terms(backend, input, parts, need_grad=False)
    return finish(backend, _softmax_focal_reduce(backend, value, valid, reduction), input)


def _softmax_focal_reduce(backend: Backend, value: Any, valid: Any, reduction: str) -> Any:
    """The per-sample loss reduced: "mean" over the samples not ignored (0 where all are)."""
    xp = backend.xp
    if valid is None:
        return reduce(backend, value, reduction)
    value = xp.where(valid, value, 0.0)
    if reduction == "mean":
        count = xp.sum(xp.astype(valid, value.dtype))
        return weighted_mean(backend, xp.sum(value), count)
    return reduce(backend, value, reduction)


@gradient(softmax_focal_loss)
def softmax_focal_loss_grad(
    input: Any,
    target: Any,
    *,
    axis: int = -1,
    alpha: Any = None,
    gamma: float = 2.0,
    ignore_index: int = -100,
    reduction: Reduction = "mean",
    cotangent: Any = None,
) -> Any:
    r"""Gradient of :func:`polyloss.softmax_focal_loss` with respect to the logits.

    With :math:`L = \log p_y`, :math:`u = 1 - e^L` and
    :math:`f(L) = -u^\gamma L`,
    :math:`\partial\ell/\partial x_k = \alpha_y f'(L)\,([k = y] - p_k)` where
    :math:`f'(L) = \gamma u^{\gamma-1} e^L L - u^\gamma` (:func:`softmax_focal_elementwise`);
    0 for ignored samples.
    """
    backend = resolve(input, target)
    parts = _check_softmax_focal(backend, input, target, axis, alpha, gamma, ignore_index, reduction)
    x, logp, valid, safe, _, coef = _softmax_focal_terms(backend, input, parts, need_grad=True)
    return finish(backend, _softmax_focal_grad(backend, parts, x, logp, valid, safe, coef, reduction, cotangent),
                  input)


def _softmax_focal_grad(backend: Backend, parts: _SoftmaxFocal, x: Any, logp: Any, valid: Any, safe: Any,
                        coef: Any, reduction: str, cotangent: Any) -> Any:
    xp = backend.xp
    axis = parts.axis
    hot = xp.astype(one_hot(backend, safe, x.shape[axis], axis, x.ndim), x.dtype)
    g = (hot - xp.exp(logp)) * (coef if isinstance(coef, float) else xp.expand_dims(coef, axis=axis))
    # "mean" is over the non-ignored samples (alpha does not enter the denominator)
    seed = index_seed(backend, x, parts.target, valid, None, reduction, cotangent)
    return apply_sample_seed(backend, g, seed, axis)


@value_and_gradient(softmax_focal_loss)
def _softmax_focal_loss_value_and_grad(
    input: Any,
    target: Any,
    *,
    axis: int = -1,
    alpha: Any = None,
    gamma: float = 2.0,
    ignore_index: int = -100,
    reduction: str = "mean",
    cotangent: Any = None,
) -> Any:
    r"""Value and gradient of :func:`softmax_focal_loss` from one softmax: on NumPy the cross-entropy kernel's
    (the gradient is the cross-entropy's times :math:`-\alpha_y f'(L)` per sample), else the log-softmax shared."""
    backend = resolve(input, target)
    parts = _check_softmax_focal(backend, input, target, axis, alpha, gamma, ignore_index, reduction)
    if not runs_fused(backend, "softmax_focal_loss", input):
        return NotImplemented
    kernel = backend.fast_paths.get("cross_entropy.value_and_grad") if fast_paths_enabled() else None
    if kernel is not None:
        x, a = compute_dtype(backend, input, parts.alpha_array)
        valid, safe = index_targets(backend, parts.target, parts.ignore_index)
        factor = take_per_class(backend, a, safe) if a is not None else parts.alpha
        seed = index_seed(backend, x, parts.target, valid, None, reduction, cotangent)
        losses = []

        def ce_factor(nll: Any) -> Any:  # d loss / d logits = ce_factor * (p - [k = y])
            value, coef = softmax_focal_elementwise(backend, -nll, gamma=parts.gamma, need_grad=True)
            if factor is not None:
                value, coef = value * factor, coef * factor
            losses.append(value)
            return -coef * seed

        out = kernel(x, safe, axis=parts.axis, probabilities=False, weight=None, sample_weight=None,
                     label_smoothing=0.0, seed=ce_factor)
        if out is not NotImplemented:
            value = _softmax_focal_reduce(backend, losses[0], valid, reduction)
            return finish(backend, value, input), finish(backend, out[1], input)
    x, logp, valid, safe, value, coef = _softmax_focal_terms(backend, input, parts, need_grad=True)
    g = _softmax_focal_grad(backend, parts, x, logp, valid, safe, coef, reduction, cotangent)
    return finish(backend, _softmax_focal_reduce(backend, value, valid, reduction), input), finish(backend, g, input)
