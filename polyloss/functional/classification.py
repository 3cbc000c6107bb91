"""Classification losses: binary and categorical cross-entropy, NLL, KL divergence, with their closed-form gradients.

Each loss is declared with ``@loss`` and its gradient, next to it, with ``@gradient(...)``.
A loss and its gradient share one check function (``_check_<loss>``), which
validates the arguments and, where the values can be read without a device
sync (NumPy, array-api-strict, PyTorch on the CPU outside tracing:
``backend.is_host_array``), their values, once, before any kernel runs. The
native kernels (``backend.fast_paths``) run behind those checks only.
"""

from __future__ import annotations

import math
from typing import Any
from typing import NamedTuple

from polyloss import _checks as v
from polyloss._namespace import check_same
from polyloss._namespace import fast_paths_enabled
from polyloss._namespace import resolve
from polyloss.backend._base import Backend
from polyloss.functional._common import apply_sample_seed
from polyloss.functional._common import compute_dtype
from polyloss.functional._common import finish
from polyloss.functional._common import one_hot
from polyloss.functional._common import optional_array
from polyloss.functional._common import planned
from polyloss.functional._common import pointwise_inputs
from polyloss.functional._common import runs_fused
from polyloss.functional._common import try_fast_path
from polyloss.functional._define import gradient
from polyloss.functional._define import loss
from polyloss.functional._define import value_and_gradient
from polyloss.functional._reductions import pointwise_scale
from polyloss.functional._reductions import reduce
from polyloss.functional._reductions import reduce_weighted
from polyloss.functional._reductions import sample_upstream
from polyloss.functional._reductions import upstream
from polyloss.functional._reductions import weighted_mean
from polyloss.functional._reductions import weighted_mean_upstream
from polyloss.typing import Array
from polyloss.typing import ArrayT
from polyloss.typing import KLDivReduction
from polyloss.typing import Reduction

__all__ = [
    "binary_cross_entropy",
    "binary_cross_entropy_grad",
    "binary_cross_entropy_with_logits",
    "binary_cross_entropy_with_logits_grad",
    "cross_entropy",
    "cross_entropy_grad",
    "kl_div",
    "kl_div_grad",
    "nll_loss",
    "nll_loss_grad",
]

_LOG_CLAMP = -100.0
_INT64_MIN = -(2**63)
_INT64_MAX = 2**63 - 1


# -- value checks (host-readable arrays only) ---------------------------------------------------


def _value_range(backend: Backend, values: Any) -> tuple[float, float, bool]:
    """``(min, max, holds NaN)`` of a non-empty real array, NaN left out of the min and max (values are read)."""
    if backend.dtype_kind(values.dtype) == "b":
        return 0, 1, False
    lo, hi = backend.min_max(values)
    if lo == lo and hi == hi:  # the common case: one or two reductions, no NaN
        return lo, hi, False
    xp = backend.xp
    values = backend.stop_gradient(values)
    nan = xp.isnan(values)
    lo = float(xp.min(xp.where(nan, math.inf, values)))
    hi = float(xp.max(xp.where(nan, -math.inf, values)))
    return lo, hi, True


def _check_unit_interval(backend: Backend, values: Any, name: str, loss_name: str) -> bool:
    """For values that can be read (the caller asks ``backend.is_host_array``): ``ValueError`` naming ``name``
    where a value lies outside [0, 1] (NaN is not out of range); returns whether a value is NaN."""
    if math.prod(values.shape) == 0:
        return False
    lo, hi, nan = _value_range(backend, values)
    if lo < 0 or hi > 1:
        raise ValueError(f"{name} of {loss_name} must hold probabilities in [0, 1], got {lo if lo < 0 else hi!r}")
    return nan


# -- binary ---------------------------------------------------------------------------------------


def _check_binary_cross_entropy(backend: Backend, input: Any, target: Any, weight: Any, reduction: str) -> bool:
    """The checks of :func:`binary_cross_entropy` and its gradient; returns whether the values were read and
    hold no NaN: only then may a native kernel run (PyTorch's raises on NaN, and asserts on a GPU)."""
    pointwise_inputs(backend, input, target, reduction)
    optional_array(backend, weight, "weight", tuple(input.shape))
    if not backend.is_host_array(input):
        return False
    nan = _check_unit_interval(backend, input, "input", "binary_cross_entropy")
    nan = _check_unit_interval(backend, target, "target", "binary_cross_entropy") or nan
    return not nan


@loss
def binary_cross_entropy(
    input: ArrayT, target: Array, *, weight: Array | None = None, reduction: Reduction = "mean"
) -> ArrayT:
    r"""Binary cross-entropy on probabilities.

    .. math::
        \ell_i = -w_i\,[\,y_i \max(\log x_i, -100) + (1 - y_i)\max(\log(1 - x_i), -100)\,]

    Each log is clamped at -100 as in PyTorch, so probabilities of exactly 0
    and 1 give a finite loss.

    Args:
        input: probabilities in [0, 1].
        target: same shape, values in [0, 1] (soft labels allowed; integer and
            bool targets are read as floats).
        weight: optional element weights broadcastable to ``input``;
            ``"mean"`` is ``mean(w * l)`` (no rule for weights summing to 0 is needed).
        reduction: ``"none"``, ``"mean"`` (default) or ``"sum"``.

    Edge rules (every backend and path):

    - NaN in ``input`` or ``target`` gives NaN (in that element, and in ``"mean"``/``"sum"``).
    - A value of ``input`` or ``target`` outside [0, 1] raises ``ValueError`` naming the argument
      and the value, where values can be read without a device sync (NumPy,
      array-api-strict, PyTorch on the CPU outside tracing). Where they cannot (a GPU,
      ``torch.compile``, ``torch.func``) nothing is read: no native kernel runs there
      (PyTorch's asserts on the device), and the formula gives NaN for an ``input``
      outside [0, 1]; a ``target`` outside [0, 1] enters the formula as it is.
    - An empty batch: ``"mean"`` and ``"sum"`` 0, ``"none"`` empty.

    The gradient is PyTorch's backward formula (see :func:`binary_cross_entropy_grad`);
    for probabilities below :math:`10^{-12}` (or within that of 1) autograd through the
    generic code differs from it, as it does from PyTorch's own kernel.

    Matches ``torch.nn.functional.binary_cross_entropy``.
    """
    backend, plan, out = planned("binary_cross_entropy", (input, target), reduction, cacheable=weight is None)
    if out is not NotImplemented:
        return out
    if _check_binary_cross_entropy(backend, input, target, weight, reduction):
        out = try_fast_path(backend, "binary_cross_entropy", input, target, weight=weight, reduction=reduction,
                            plan=plan)
        if out is not NotImplemented:
            return out
    x, y, w = compute_dtype(backend, input, target, weight)
    loss = -(y * _clamped_log(backend, x) + (1.0 - y) * _clamped_log(backend, 1.0 - x))
    return finish(backend, reduce_weighted(backend, loss, w, reduction, normalize_by_weight=False), input)


def _clamped_log(backend: Backend, p: Any) -> Any:
    """``max(log p, -100)``, NaN for NaN and negative ``p``; log(0) = -inf would make the clamp's gradient
    0 * inf = nan, so the log is evaluated at 1 there."""
    xp = backend.xp
    zero = p == 0
    return xp.where(zero, _LOG_CLAMP, xp.clip(xp.log(xp.where(zero, 1.0, p)), min=_LOG_CLAMP))


def _check_binary_cross_entropy_with_logits(
    backend: Backend, input: Any, target: Any, weight: Any, pos_weight: Any, reduction: str
) -> None:
    pointwise_inputs(backend, input, target, reduction)
    optional_array(backend, weight, "weight", tuple(input.shape))
    optional_array(backend, pos_weight, "pos_weight", tuple(input.shape))
    if backend.is_host_array(target):
        _check_unit_interval(backend, target, "target", "binary_cross_entropy_with_logits")


@loss
def binary_cross_entropy_with_logits(
    input: ArrayT, target: Array, *, weight: Array | None = None, pos_weight: Array | None = None,
    reduction: Reduction = "mean",
) -> ArrayT:
    r"""Binary cross-entropy on logits, through the log-sigmoid.

    .. math::
        \ell_i = w_i\,[\,(1 - y_i)\,x_i - (1 + (p - 1)\,y_i)\log\sigma(x_i)\,]
               = -w_i\,[\,p\,y_i \log\sigma(x_i) + (1 - y_i)\log\sigma(-x_i)\,]

    with :math:`\log\sigma(x) = \min(x, 0) - \log(1 + e^{-|x|})`, finite for
    finite logits of any size (the first form, PyTorch's, is the one evaluated).

    Args:
        input: logits.
        target: same shape, probabilities in [0, 1].
        weight: optional element weights broadcastable to ``input``.
        pos_weight: optional weight :math:`p` of positive examples,
            broadcastable to ``input`` (typically shape ``(C,)`` on the last axis).
        reduction: ``"none"``, ``"mean"`` (default, ``mean(w * l)``) or ``"sum"``.

    Edge rules (every backend and path):

    - NaN in ``input``, ``target``, ``weight`` or ``pos_weight`` gives NaN.
    - Infinite logits are evaluated as PyTorch does: :math:`+\infty` gives :math:`+\infty`
      for a target below 1 and NaN for a target of 1 (:math:`0\cdot\infty`); :math:`-\infty`
      gives NaN. Finite logits of any size (1e30) give the exact finite loss.
    - A ``target`` outside [0, 1] raises ``ValueError`` naming it where values can be read
      without a device sync; elsewhere (GPU, tracing) it enters the formula as it is.
    - An empty batch: ``"mean"`` and ``"sum"`` 0, ``"none"`` empty.

    Matches ``torch.nn.functional.binary_cross_entropy_with_logits``.
    """
    backend, plan, out = planned("binary_cross_entropy_with_logits", (input, target), reduction,
                                 cacheable=weight is None and pos_weight is None)
    if out is not NotImplemented:
        return out
    _check_binary_cross_entropy_with_logits(backend, input, target, weight, pos_weight, reduction)
    out = try_fast_path(
        backend, "binary_cross_entropy_with_logits", input, target,
        weight=weight, pos_weight=pos_weight, reduction=reduction, plan=plan,
    )
    if out is not NotImplemented:
        return out
    x, y, w, pw = compute_dtype(backend, input, target, weight, pos_weight)
    log_sig = backend.log_sigmoid(x)
    if pw is not None:
        log_sig = (1.0 + (pw - 1.0) * y) * log_sig
    loss = (1.0 - y) * x - log_sig
    return finish(backend, reduce_weighted(backend, loss, w, reduction, normalize_by_weight=False), input)


# -- categorical ---------------------------------------------------------------


def class_axis_inputs(
    backend: Backend, input: Any, target: Any, axis: int, *, allow_probabilities: bool
) -> tuple[int, bool]:
    """Validate ``(input, target)`` of a class-axis loss; returns (axis, target is probabilities)."""
    kind = backend.dtype_kind
    if kind(input.dtype) != "f":
        raise TypeError(f"input must have a real floating dtype, got {input.dtype}")
    in_shape = input.shape
    ndim = len(in_shape)
    if ndim == 0:
        raise ValueError("input must have a class axis, got a 0-d array")
    if type(axis) is int and -ndim <= axis < ndim:  # the common case without a call (per-call overhead)
        axis = axis % ndim
    else:
        axis = v.normalize_axis(axis, ndim)
    shape = target.shape
    target_kind = kind(target.dtype)
    if target_kind == "i" and ndim == 2 and axis == 1 and len(shape) == 1 and shape[0] == in_shape[0]:
        return axis, False  # (batch, C) logits and (batch,) indices without building shapes (per-call overhead)
    expected = in_shape[:-1] if axis == ndim - 1 else in_shape[:axis] + in_shape[axis + 1 :]
    if target_kind == "i":
        if shape != expected and tuple(shape) != tuple(expected):
            raise ValueError(
                f"target shape {tuple(shape)} must equal input shape {tuple(in_shape)} without the "
                f"class axis {axis}, i.e. {tuple(expected)}"
            )
        return axis, False
    if target_kind != "f":
        raise TypeError(f"target must hold integer class indices, got dtype {target.dtype}")
    if not allow_probabilities:
        raise TypeError(f"target must hold integer class indices, got floating dtype {target.dtype}")
    in_shape, shape, expected = tuple(in_shape), tuple(shape), tuple(expected)
    if shape != in_shape:
        if shape == expected:
            raise TypeError(
                f"target has floating dtype {target.dtype} and shape {shape}: class indices "
                f"must be integers (or pass class probabilities of the input's shape {in_shape})"
            )
        raise ValueError(
            f"target shape {shape} must equal input shape {in_shape} for class "
            f"probabilities, or {expected} for class indices"
        )
    return axis, True


def class_weight(backend: Backend, weight: Any, num_classes: int, name: str = "weight") -> None:
    if weight is None:
        return
    if isinstance(weight, (int, float)):
        raise TypeError(f"{name} must be an array of shape ({num_classes},) or None, got a Python number")
    check_same(backend, weight, name)
    if tuple(weight.shape) != (num_classes,):
        raise ValueError(f"{name} must have shape ({num_classes},) (one per class), got {tuple(weight.shape)}")


def expand_to_axis(backend: Backend, vector: Any, ndim: int, axis: int) -> Any:
    """A length-C vector reshaped to broadcast along ``axis`` of an ``ndim`` array."""
    shape = [1] * ndim
    shape[axis] = vector.shape[0]
    return backend.xp.reshape(vector, tuple(shape))


def pick(backend: Backend, values: Any, index: Any, axis: int, *, checked: bool = False) -> Any:
    """``values`` taken at ``index`` along ``axis`` (index has values' shape without axis).

    ``checked``: the indices were already checked by :func:`class_indices` (no second read).
    """
    xp = backend.xp
    if not (checked or backend.host):
        # torch's take_along_dim returns a wrong value for an index >= C instead of raising:
        # check where the values are readable without a sync (torch on CPU, not while compiling)
        v.check_class_indices(backend, index, values.shape[axis], ignore_index=None, always=True)
    if index.dtype != xp.int64:  # torch's take_along_dim takes int64 indices only
        index = xp.astype(index, xp.int64)
    taken = backend.take_along_axis(values, xp.expand_dims(index, axis=axis), axis=axis)
    return xp.squeeze(taken, axis=axis)


def take_per_class(backend: Backend, vector: Any, index: Any) -> Any:
    """``vector[index]`` for a class-index array of any shape (a per-class weight per sample)."""
    xp = backend.xp
    try:
        taken = xp.take(vector, xp.reshape(index, (-1,)), axis=0)
    except (IndexError, RuntimeError):  # torch's index_select on an index out of range: say which
        v.check_class_indices(backend, index, vector.shape[0], ignore_index=None, always=True)
        raise
    return xp.reshape(taken, tuple(index.shape))


def _int64_ignore_index(backend: Backend, target: Any, ignore_index: int | None) -> int | None:
    """``ignore_index`` as compared with ``target`` widened to int64: None where no target can equal it
    (the dtype cannot hold it, e.g. -100 for uint8), wrapped as the widening wraps a uint64 above int64's max."""
    ignore_index = v.usable_ignore_index(backend, target, ignore_index)
    if ignore_index is None or _INT64_MIN <= ignore_index <= _INT64_MAX:
        return ignore_index
    # beyond int64: only a uint64 target can hold it (usable_ignore_index bounds the other dtypes)
    return ignore_index - 2**64 if target.dtype != backend.xp.int64 else None


def class_indices(backend: Backend, target: Any, num_classes: int, ignore_index: int | None, *,
                  read: bool = True) -> tuple[Any, int | None]:
    """Integer class indices of any integer dtype as int64, and the ``ignore_index`` left to apply.

    Where the values can be read without a device sync (``backend.is_host_array``:
    NumPy, array-api-strict, torch on the CPU outside tracing), every index must lie in
    ``[0, C)`` or equal ``ignore_index``, else ``ValueError`` names ``target`` and the
    value (a uint64 above int64's largest value included); the returned
    ``ignore_index`` is then None where no target equals it (nothing to mask). Elsewhere
    nothing is read, and it is None only where the dtype cannot hold it; nor where ``read`` is false (the
    caller's native kernel checks the int64 indices itself).
    """
    xp = backend.xp
    given = ignore_index
    ignore_index = _int64_ignore_index(backend, target, ignore_index)
    wide = target if target.dtype == xp.int64 else xp.astype(target, xp.int64)
    if not (read or wide is not target) or not backend.is_host_array(target):
        return wide, ignore_index
    if math.prod(target.shape) == 0:
        return wide, None
    lo, hi = backend.min_max(wide)  # one or two reductions in the common case
    if lo >= 0 and hi < num_classes:
        return wide, ignore_index if ignore_index is not None and 0 <= ignore_index < num_classes else None
    if ignore_index is not None and lo <= ignore_index <= hi:
        kept = xp.where(wide == ignore_index, 0, wide)
        lo, hi = backend.min_max(kept)
        if lo >= 0 and hi < num_classes:
            return wide, ignore_index
    bad = lo if lo < 0 else hi
    if bad < 0 and target.dtype != xp.int64 and xp.iinfo(target.dtype).max > _INT64_MAX:
        bad += 2**64  # a uint64 above int64's max, wrapped by the widening
    raise ValueError(
        f"target holds class index {bad} outside [0, {num_classes})"
        + (f" that is not ignore_index={given}" if ignore_index is not None else "")
    )


def index_targets(backend: Backend, target: Any, ignore_index: int | None) -> tuple[Any, Any]:
    """(valid mask or None, int64 indices with ignored entries replaced by 0)."""
    xp = backend.xp
    ignore_index = _int64_ignore_index(backend, target, ignore_index)
    if target.dtype != xp.int64:
        target = xp.astype(target, xp.int64)
    if ignore_index is None:
        return None, target
    valid = target != ignore_index
    return valid, xp.where(valid, target, 0)


class _ClassParts(NamedTuple):
    """What the checks of a class-axis loss decide, shared by the loss, its gradient and its kernels."""

    axis: int
    probabilities: bool
    #: int64 class indices (checked where readable), or the class probabilities as given
    target: Any
    #: None where no target can equal it
    ignore_index: int | None
    label_smoothing: float


def _check_class_loss(
    backend: Backend, input: Any, target: Any, axis: int, weight: Any, ignore_index: int | None,
    label_smoothing: float, reduction: str, *, allow_probabilities: bool, kernel: bool = False,
) -> _ClassParts:
    """The checks of :func:`cross_entropy`, :func:`nll_loss` and their gradients. ``kernel``: the loss
    will hand int64 indices to its native kernel, which where the backend says so checks them itself (on
    values it reads anyway: no read here)."""
    v.check_reduction(reduction)
    v.check_ignore_index(ignore_index)
    axis, probabilities = class_axis_inputs(backend, input, target, axis, allow_probabilities=allow_probabilities)
    num_classes = input.shape[axis]
    if weight is not None:
        class_weight(backend, weight, num_classes)
    eps = label_smoothing
    if eps != 0.0 or type(eps) is not float:  # the default skips a call (per-call overhead)
        eps = v.check_number(label_smoothing, "label_smoothing", maximum=1.0)
    if probabilities:
        if backend.is_host_array(target):
            _check_unit_interval(backend, target, "target", "cross_entropy")
        return _ClassParts(axis, True, target, None, eps)
    read = not (kernel and getattr(backend, "kernels_check_indices", False) and fast_paths_enabled())
    target, ignore_index = class_indices(backend, target, num_classes, ignore_index, read=read)
    return _ClassParts(axis, False, target, ignore_index, eps)


_CLASS_RULES = """
    Edge rules (every backend and path):

    - NaN in ``input`` gives NaN in the samples whose loss reads it (every class for
      ``cross_entropy``, the target class for ``nll_loss``) and in ``"mean"``/``"sum"``. A
      sample whose target is ignored contributes nothing to the value, whatever it holds
      (its gradient row is NaN where a NaN logit's softmax is, as PyTorch's backward).
    - Class indices of any integer dtype work as int64. An index outside ``[0, C)`` that is
      not ``ignore_index`` (a uint64 above int64's max included) raises ``ValueError``
      naming ``target`` and the value where values can be read without a device sync
      (NumPy, array-api-strict, PyTorch on the CPU outside tracing); elsewhere (GPU,
      tracing) nothing is read and PyTorch's kernels raise or assert on the device.
      ``ignore_index=None`` ignores nothing; an ``ignore_index`` the target's dtype cannot
      hold (-100 with uint8) ignores nothing either.
    - ``"mean"`` over class indices divides by the sum of the target weights of the
      samples not ignored; where that is 0 (every target ignored, class weights 0 or
      summing to 0) the value is 0 times the sum (0, NaN kept) with gradient 0
      (PyTorch gives NaN or inf: a documented deviation).
    - An empty batch: ``"mean"`` and ``"sum"`` 0, ``"none"`` empty.
"""


@loss
def cross_entropy(
    input: ArrayT,
    target: Array,
    *,
    axis: int = -1,
    weight: Array | None = None,
    ignore_index: int = -100,
    label_smoothing: float = 0.0,
    reduction: Reduction = "mean",
) -> ArrayT:
    r"""Softmax cross-entropy over the class axis.

    With class indices :math:`y_i` and :math:`\log p = \operatorname{log\_softmax}(x)`,

    .. math::
        \ell_i = (1 - \varepsilon)\,(-w_{y_i} \log p_{i,y_i})
                 + \frac{\varepsilon}{C}\,\Big(-\sum_c w_c \log p_{i,c}\Big)

    and with class probabilities :math:`q` (same shape as the input),
    :math:`\ell_i = -\sum_c w_c\,((1-\varepsilon) q_{i,c} + \varepsilon / C)\log p_{i,c}`.

    Args:
        input: logits; the class axis is ``axis`` (default -1; PyTorch uses 1).
        target: integer class indices of ``input``'s shape without the class
            axis, or floating class probabilities of ``input``'s shape.
        weight: optional class weights of shape ``(C,)``.
        ignore_index: index targets equal to it contribute nothing (default -100);
            None ignores nothing.
        label_smoothing: :math:`\varepsilon \in [0, 1]` (Szegedy et al., 2016); 1 is
            the cross-entropy against the uniform distribution.
        reduction: ``"none"`` (per sample), ``"mean"`` (default) or ``"sum"``.
            For index targets ``"mean"`` divides by :math:`\sum w_{y_i}` over
            the non-ignored samples (the count without weights); for
            probabilities by the number of samples. All targets ignored gives
            0 with zero gradient (PyTorch gives NaN: a documented deviation).
    {rules}
    - Logits: :math:`+\infty` gives NaN in its sample (:math:`\infty - \infty` in the
      log-softmax, as PyTorch); :math:`-\infty` in a class other than the target is a
      probability of 0 (finite unless label smoothing or a probability target weighs it);
      finite logits of any size (1e30) give the exact finite loss.
    - Class probabilities: each must lie in [0, 1] (``ValueError`` naming ``target``
      where readable, as for class indices); NaN gives NaN; rows that do not sum to 1
      enter the formula as they are (PyTorch's rule: the loss is linear in :math:`q`).

    Matches ``torch.nn.functional.cross_entropy``. The logits are never
    expanded into a one-hot array.
    """
    backend, plan, out = planned("cross_entropy", (input, target), axis, ignore_index, label_smoothing, reduction,
                                 cacheable=weight is None)
    if out is not NotImplemented:
        return out
    parts = _check_class_loss(backend, input, target, axis, weight, ignore_index, label_smoothing, reduction,
                              allow_probabilities=True, kernel=True)
    axis = parts.axis
    out = try_fast_path(
        backend, "cross_entropy", input, parts.target, axis=axis, weight=weight,
        ignore_index=parts.ignore_index, label_smoothing=parts.label_smoothing, reduction=reduction,
        plan=plan if parts.target is target else None,
    )
    if out is not NotImplemented:
        return out
    x, w = compute_dtype(backend, input, weight)
    logp = backend.log_softmax(x, axis)
    if parts.probabilities:
        loss = -backend.xp.sum(_weighted_probabilities(backend, parts, x, w) * logp, axis=axis)
        return finish(backend, reduce(backend, loss, reduction), input)
    loss, denominator = _nll_terms(backend, logp, parts, w)
    return finish(backend, _index_reduce(backend, loss, denominator, reduction), input)


cross_entropy.__doc__ = (cross_entropy.__doc__ or "").replace("    {rules}\n", _CLASS_RULES)


def _weighted_probabilities(backend: Backend, parts: _ClassParts, x: Any, w: Any) -> Any:
    """:math:`w_c q'_{i,c}` with the smoothed targets :math:`q' = (1 - \\varepsilon) q + \\varepsilon / C`."""
    axis, eps = parts.axis, parts.label_smoothing
    q = v.as_dtype_of(backend, parts.target, x)
    if eps > 0.0:
        q = q * (1.0 - eps) + eps / x.shape[axis]
    return q if w is None else q * expand_to_axis(backend, w, x.ndim, axis)


def _sample_weights(backend: Backend, parts: _ClassParts, w: Any) -> tuple[Any, Any, Any]:
    """``(valid mask or None, indices with ignored entries at 0, w[y_i] (0 where ignored) or None)``."""
    valid, safe = index_targets(backend, parts.target, parts.ignore_index)
    if w is None:
        return valid, safe, None
    sample_w = take_per_class(backend, w, safe)
    return valid, safe, sample_w if valid is None else backend.xp.where(valid, sample_w, 0.0)


def _mean_denominator(backend: Backend, valid: Any, sample_w: Any, count: int, like: Any) -> Any:
    """The ``"mean"`` denominator of an index-target loss: the sum of the target weights of the samples not
    ignored, their number without weights (a Python int where nothing can be ignored)."""
    xp = backend.xp
    if sample_w is not None:
        return xp.sum(sample_w if valid is None else xp.where(valid, sample_w, 0.0))
    if valid is not None:
        return xp.sum(xp.astype(valid, like.dtype))
    return count


def _nll_terms(backend: Backend, logp: Any, parts: _ClassParts, w: Any) -> tuple[Any, Any]:
    """Per-sample loss and the "mean" denominator (sum of target weights / count)."""
    xp = backend.xp
    axis, eps = parts.axis, parts.label_smoothing
    valid, safe, sample_w = _sample_weights(backend, parts, w)
    picked = pick(backend, logp, safe, axis, checked=True)
    nll = -picked if sample_w is None else -sample_w * picked
    if valid is not None and sample_w is None:
        nll = xp.where(valid, nll, 0.0)
    if eps > 0.0:
        terms = logp if w is None else logp * expand_to_axis(backend, w, logp.ndim, axis)
        smooth = -xp.sum(terms, axis=axis)
        if valid is not None:
            smooth = xp.where(valid, smooth, 0.0)
        nll = (1.0 - eps) * nll + (eps / logp.shape[axis]) * smooth
    if valid is not None and sample_w is not None:
        nll = xp.where(valid, nll, 0.0)  # 0 * NaN of an ignored sample would be NaN
    return nll, _mean_denominator(backend, valid, sample_w, math.prod(safe.shape), logp)


def _index_reduce(backend: Backend, loss: Any, denominator: Any, reduction: str) -> Any:
    if reduction != "mean":
        return reduce(backend, loss, reduction)
    total = backend.xp.sum(loss)
    if isinstance(denominator, int):
        return reduce(backend, loss, "mean") if denominator else backend.as_array(total)
    return weighted_mean(backend, total, denominator)


@loss
def nll_loss(
    input: ArrayT,
    target: Array,
    *,
    axis: int = -1,
    weight: Array | None = None,
    ignore_index: int = -100,
    reduction: Reduction = "mean",
) -> ArrayT:
    r"""Negative log-likelihood of log-probabilities, :math:`\ell_i = -w_{y_i}\,x_{i, y_i}`.

    Args:
        input: log-probabilities; class axis ``axis`` (default -1).
        target: integer class indices, ``input``'s shape without the class axis.
        weight: optional class weights ``(C,)``.
        ignore_index: targets equal to it contribute nothing (default -100); None
            ignores nothing.
        reduction: ``"none"``, ``"mean"`` (default; divides by the sum of the
            target weights, 0 if every target is ignored) or ``"sum"``.
    {rules}
    - ``input`` is not checked to hold log-probabilities: any value enters the formula
      (only the target class's value is read; :math:`-\infty` there gives :math:`+\infty`).

    Matches ``torch.nn.functional.nll_loss``.
    """
    backend, plan, out = planned("nll_loss", (input, target), axis, ignore_index, reduction, cacheable=weight is None)
    if out is not NotImplemented:
        return out
    parts = _check_class_loss(backend, input, target, axis, weight, ignore_index, 0.0, reduction,
                              allow_probabilities=False, kernel=True)
    out = try_fast_path(
        backend, "nll_loss", input, parts.target, axis=parts.axis, weight=weight,
        ignore_index=parts.ignore_index, reduction=reduction, plan=plan if parts.target is target else None,
    )
    if out is not NotImplemented:
        return out
    x, w = compute_dtype(backend, input, weight)
    loss, denominator = _nll_terms(backend, x, parts, w)
    return finish(backend, _index_reduce(backend, loss, denominator, reduction), input)


nll_loss.__doc__ = (nll_loss.__doc__ or "").replace("    {rules}\n", _CLASS_RULES)


def _check_kl_div(backend: Backend, input: Any, target: Any, log_target: bool, reduction: str) -> None:
    v.check_reduction(reduction, v.KL_REDUCTIONS)
    v.check_floating(backend, input)
    v.check_same_shape(input, target)
    if backend.dtype_kind(target.dtype) not in "fib":
        raise TypeError(f"target must have a real (floating, integer or bool) dtype, got {target.dtype}")
    if not isinstance(log_target, bool):
        raise TypeError(f"log_target must be a bool, got {type(log_target).__name__}")
    if log_target or not backend.is_host_array(target) or math.prod(target.shape) == 0:
        return
    lo, _, _ = _value_range(backend, target)
    if lo < 0:
        raise ValueError(f"target of kl_div must hold probabilities >= 0 (log_target=False), got {lo!r}")


def _kl_target(backend: Backend, input: Any, target: Any, log_target: bool) -> tuple[Any, Any, Any]:
    """``(x, y, q)``: the arrays in the compute dtype and the target probability ``q`` (``e^y`` or ``y``)."""
    x, y = compute_dtype(backend, input, target)
    return x, y, backend.xp.exp(y) if log_target else y


@loss
def kl_div(input: ArrayT, target: Array, *, log_target: bool = False, reduction: KLDivReduction = "mean") -> ArrayT:
    r"""Kullback-Leibler divergence with ``input`` given as log-probabilities.

    .. math::
        \ell_i = y_i (\log y_i - x_i) \quad\text{or, with log\_target,}\quad
        \ell_i = e^{y_i} (y_i - x_i)

    with :math:`0 \log 0 = 0`.

    Args:
        input: log-probabilities.
        target: probabilities (or log-probabilities with ``log_target=True``),
            same shape.
        log_target: whether ``target`` holds log-probabilities.
        reduction: ``"none"``, ``"mean"`` (default; over every element, as
            PyTorch), ``"sum"`` or ``"batchmean"`` (sum / ``input.shape[0]``,
            the mathematical KL divergence per sample).

    Edge rules (every backend and path):

    - NaN in ``input`` or ``target`` gives NaN.
    - A target probability of 0 contributes :math:`0 \log 0 = 0` for a finite ``input``;
      against an ``input`` of :math:`-\infty` it gives NaN (:math:`0\cdot\infty`), as in
      PyTorch, and so does a log-target of :math:`-\infty` (``log_target=True``).
    - A negative ``target`` (``log_target=False``) raises ``ValueError`` naming it where
      values can be read without a device sync; elsewhere the formula gives NaN
      (the log of a negative number). Targets above 1 are not an error (an unnormalised
      measure), nor are log-targets of any sign.
    - An empty batch: every reduction 0 (``"batchmean"`` divides by nothing), ``"none"`` empty.

    Matches ``torch.nn.functional.kl_div``.
    """
    backend, plan, out = planned("kl_div", (input, target), log_target, reduction)
    if out is not NotImplemented:
        return out
    _check_kl_div(backend, input, target, log_target, reduction)
    out = try_fast_path(backend, "kl_div", input, target, log_target=log_target, reduction=reduction, plan=plan)
    if out is not NotImplemented:
        return out
    x, y, q = _kl_target(backend, input, target, log_target)
    loss = q * (y - x) if log_target else backend.xlogy(y, y) - y * x
    if reduction == "batchmean":
        total = reduce(backend, loss, "sum")
        if input.ndim > 0 and input.shape[0] > 0:
            total = total / input.shape[0]
        return finish(backend, total, input)
    return finish(backend, reduce(backend, loss, reduction), input)


# -- closed-form gradients ----------------------------------------------------------------------

# PyTorch's clamp of x (1 - x) in binary_cross_entropy's backward: 1e-12 rounded to float32
_BCE_EPSILON = 9.999999960041972e-13


@gradient(binary_cross_entropy)
def binary_cross_entropy_grad(
    input: Any, target: Any, *, weight: Any = None, reduction: Reduction = "mean", cotangent: Any = None
) -> Any:
    r"""Gradient of :func:`polyloss.binary_cross_entropy`, PyTorch's backward formula.

    :math:`w\,(x - y) / \max(x (1 - x), \epsilon)` with PyTorch's :math:`\epsilon = 10^{-12}`
    (rounded to float32): finite at probabilities 0
    and 1 and equal to PyTorch's there (it ignores the clamp of the logs at -100).
    Same checks and edge rules as the loss (NaN gives NaN).
    """
    backend = resolve(input, target)
    xp = backend.xp
    _check_binary_cross_entropy(backend, input, target, weight, reduction)
    x, y, w = compute_dtype(backend, input, target, weight)
    g = (x - y) / xp.maximum(x * (1.0 - x), _BCE_EPSILON)
    up = pointwise_scale(backend, x, w, reduction, cotangent, normalize_by_weight=False)
    return finish(backend, g * up, input)


@gradient(binary_cross_entropy_with_logits)
def binary_cross_entropy_with_logits_grad(
    input: Any, target: Any, *, weight: Any = None, pos_weight: Any = None, reduction: Reduction = "mean",
    cotangent: Any = None,
) -> Any:
    r"""Gradient of :func:`polyloss.binary_cross_entropy_with_logits`.

    :math:`w\,[(1 - y)\,\sigma(x) - p\,y\,\sigma(-x)]` (:math:`\sigma(x) - y`
    without ``pos_weight``), each sigmoid evaluated without cancellation; 0 at
    infinite logits where the target agrees (PyTorch's backward).
    """
    backend = resolve(input, target)
    _check_binary_cross_entropy_with_logits(backend, input, target, weight, pos_weight, reduction)
    x, y, w, pw = compute_dtype(backend, input, target, weight, pos_weight)
    positive = y * backend.sigmoid(-x)
    if pw is not None:
        positive = pw * positive
    g = (1.0 - y) * backend.sigmoid(x) - positive
    up = pointwise_scale(backend, x, w, reduction, cotangent, normalize_by_weight=False)
    return finish(backend, g * up, input)


@value_and_gradient(binary_cross_entropy_with_logits)
def _binary_cross_entropy_with_logits_value_and_grad(
    input: Any, target: Any, *, weight: Any = None, pos_weight: Any = None, reduction: str = "mean",
    cotangent: Any = None,
) -> Any:
    r"""Value and gradient from one ``e = exp(-|x|)``: :math:`\log\sigma(x) = \min(x, 0) - \log(1 + e)` and
    :math:`\sigma(x) = [x \ge 0 \;?\; 1 : e] / (1 + e)` (without ``pos_weight``; with it the two run apart)."""
    backend = resolve(input, target)
    _check_binary_cross_entropy_with_logits(backend, input, target, weight, pos_weight, reduction)
    if pos_weight is not None or not runs_fused(backend, "binary_cross_entropy_with_logits", input):
        return NotImplemented
    xp = backend.xp
    x, y, w = compute_dtype(backend, input, target, weight)
    e = xp.abs(x)
    e *= -1.0
    e = xp.exp(e)
    loss = (1.0 - y) * x
    loss -= xp.minimum(x, 0.0)
    loss += xp.log1p(e)  # (1 - y) x - log sigmoid(x), as the loss
    value = reduce_weighted(backend, loss, w, reduction, normalize_by_weight=False)
    del loss
    g = xp.where(x >= 0, 1.0, e)
    e += 1.0
    g /= e
    del e
    g -= y  # sigmoid(x) - y
    g *= pointwise_scale(backend, x, w, reduction, cotangent, normalize_by_weight=False)
    return finish(backend, value, input), finish(backend, g, input)


def index_seed(
    backend: Backend, x: Any, target: Any, valid: Any, sample_weight: Any, reduction: str, cotangent: Any
) -> Any:
    """Per-sample upstream factor of an index-target loss: cotangent, mask, "mean" denominator.

    ``sample_weight`` is :math:`w_{y_i}` (or None); "mean" divides by the sum of
    the non-ignored target weights (or their count); where that is 0 the
    forward is ``0 * total`` and the factor is 0 (the weighted-mean rule).
    """
    xp = backend.xp
    mask = None if valid is None else xp.astype(valid, x.dtype)
    if reduction != "mean" or (sample_weight is None and mask is None):
        up = sample_upstream(backend, cotangent, tuple(target.shape), reduction, x)
    else:
        denominator = _mean_denominator(backend, valid, sample_weight, 0, x)
        up = weighted_mean_upstream(backend, upstream(backend, cotangent, (), x), denominator)
    return up if mask is None else mask * up


@gradient(cross_entropy)
def cross_entropy_grad(
    input: Any,
    target: Any,
    *,
    axis: int = -1,
    weight: Any = None,
    ignore_index: int = -100,
    label_smoothing: float = 0.0,
    reduction: Reduction = "mean",
    cotangent: Any = None,
) -> Any:
    r"""Gradient of :func:`polyloss.cross_entropy` with respect to the logits.

    With :math:`p = \operatorname{softmax}(x)`, smoothing :math:`\varepsilon`
    and class weights :math:`w` (all ones without ``weight``), for index targets

    .. math::
        \partial \ell_i / \partial x_{i,k} = (1-\varepsilon)\,w_{y_i}(p_{i,k} - [k = y_i])
            + \tfrac{\varepsilon}{C}\,(p_{i,k} \textstyle\sum_c w_c - w_k),

    0 for ignored samples; for probability targets with
    :math:`q' = (1-\varepsilon) q + \varepsilon / C`,
    :math:`p_{i,k} \sum_c w_c q'_{i,c} - w_k q'_{i,k}`. Same checks as the loss.
    """
    backend = resolve(input, target)
    parts = _check_class_loss(backend, input, target, axis, weight, ignore_index, label_smoothing, reduction,
                              allow_probabilities=True)
    x, w = compute_dtype(backend, input, weight)
    p = backend.softmax(x, parts.axis)
    return finish(backend, _cross_entropy_grad_terms(backend, parts, x, w, p, reduction, cotangent), input)


def _cross_entropy_seed(backend: Backend, parts: _ClassParts, x: Any, w: Any, reduction: str,
                        cotangent: Any) -> tuple[Any, Any, Any, Any]:
    """``(valid, safe indices, w[y_i] or None, per-sample upstream factor)`` of index targets, or for
    probability targets ``(None, None, None, factor)``."""
    if parts.probabilities:
        axis = parts.axis
        shape = tuple(x.shape[:axis] + x.shape[axis + 1 :])
        return None, None, None, sample_upstream(backend, cotangent, shape, reduction, x)
    valid, safe, sw = _sample_weights(backend, parts, w)
    return valid, safe, sw, index_seed(backend, x, safe, valid, sw, reduction, cotangent)


def _cross_entropy_grad_terms(backend: Backend, parts: _ClassParts, x: Any, w: Any, p: Any, reduction: str,
                              cotangent: Any) -> Any:
    """The gradient of :func:`cross_entropy` from the softmax ``p`` (see :func:`cross_entropy_grad`)."""
    xp = backend.xp
    axis, eps = parts.axis, parts.label_smoothing
    num_classes = x.shape[axis]
    _, safe, sw, seed = _cross_entropy_seed(backend, parts, x, w, reduction, cotangent)
    if parts.probabilities:
        wq = _weighted_probabilities(backend, parts, x, w)
        g = p * xp.sum(wq, axis=axis, keepdims=True) - wq
        return apply_sample_seed(backend, g, seed, axis)
    hot = xp.astype(one_hot(backend, safe, num_classes, axis, x.ndim), x.dtype)
    if w is None:
        g = p - hot if eps == 0.0 else p - (1.0 - eps) * hot - eps / num_classes
    else:
        g = (1.0 - eps) * xp.expand_dims(sw, axis=axis) * (p - hot)
        if eps > 0.0:
            g = g + (eps / num_classes) * (p * xp.sum(w) - expand_to_axis(backend, w, x.ndim, axis))
    return apply_sample_seed(backend, g, seed, axis)


@value_and_gradient(cross_entropy)
def _cross_entropy_value_and_grad(
    input: Any,
    target: Any,
    *,
    axis: int = -1,
    weight: Any = None,
    ignore_index: int = -100,
    label_smoothing: float = 0.0,
    reduction: str = "mean",
    cotangent: Any = None,
) -> Any:
    """The value and gradient of :func:`cross_entropy` from one softmax: the backend's fused kernel where it
    has one (NumPy: the softmax made in place in the gradient's own array), else the log-softmax shared."""
    backend = resolve(input, target)
    parts = _check_class_loss(backend, input, target, axis, weight, ignore_index, label_smoothing, reduction,
                              allow_probabilities=True)
    if not runs_fused(backend, "cross_entropy", input):
        return NotImplemented
    x, w = compute_dtype(backend, input, weight)
    kernel = backend.fast_paths.get("cross_entropy.value_and_grad") if fast_paths_enabled() else None
    if kernel is not None:
        valid, safe, sw, seed = _cross_entropy_seed(backend, parts, x, w, reduction, cotangent)
        out = kernel(x, parts.target if safe is None else safe, axis=parts.axis, probabilities=parts.probabilities,
                     weight=w, sample_weight=sw, label_smoothing=parts.label_smoothing, seed=seed)
        if out is not NotImplemented:
            loss, g = out
            if parts.probabilities:
                value = reduce(backend, loss, reduction)
            else:
                if valid is not None:
                    loss = backend.xp.where(valid, loss, 0.0)
                assert safe is not None  # index targets
                denominator = _mean_denominator(backend, valid, sw, math.prod(safe.shape), x)
                value = _index_reduce(backend, loss, denominator, reduction)
            return finish(backend, value, input), finish(backend, g, input)
    logp = backend.log_softmax(x, parts.axis)
    if parts.probabilities:
        loss = -backend.xp.sum(_weighted_probabilities(backend, parts, x, w) * logp, axis=parts.axis)
        value = reduce(backend, loss, reduction)
    else:
        loss, denominator = _nll_terms(backend, logp, parts, w)
        value = _index_reduce(backend, loss, denominator, reduction)
    g = _cross_entropy_grad_terms(backend, parts, x, w, backend.xp.exp(logp), reduction, cotangent)
    return finish(backend, value, input), finish(backend, g, input)


@gradient(nll_loss)
def nll_loss_grad(
    input: Any,
    target: Any,
    *,
    axis: int = -1,
    weight: Any = None,
    ignore_index: int = -100,
    reduction: Reduction = "mean",
    cotangent: Any = None,
) -> Any:
    r"""Gradient of :func:`polyloss.nll_loss`: :math:`-w_{y_i}` at the target class, 0 elsewhere and when ignored."""
    backend = resolve(input, target)
    xp = backend.xp
    parts = _check_class_loss(backend, input, target, axis, weight, ignore_index, 0.0, reduction,
                              allow_probabilities=False)
    x, w = compute_dtype(backend, input, weight)
    valid, safe, sw = _sample_weights(backend, parts, w)
    seed = index_seed(backend, x, safe, valid, sw, reduction, cotangent)
    per_sample = apply_sample_seed(backend, -xp.ones_like(x), seed if sw is None else sw * seed, parts.axis)
    # the other classes' zeros are exact (a NaN class weight or denominator reaches the target class only)
    hot = one_hot(backend, safe, x.shape[parts.axis], parts.axis, x.ndim)
    return finish(backend, xp.where(hot, per_sample, 0.0), input)


@gradient(kl_div)
def kl_div_grad(
    input: Any, target: Any, *, log_target: bool = False, reduction: KLDivReduction = "mean", cotangent: Any = None
) -> Any:
    r"""Gradient of :func:`polyloss.kl_div`: :math:`-y` (or :math:`-e^{y}` with ``log_target``).

    ``"batchmean"`` divides by ``input.shape[0]``, ``"mean"`` by the element count. Same checks as the loss.
    """
    backend = resolve(input, target)
    _check_kl_div(backend, input, target, log_target, reduction)
    x, _, q = _kl_target(backend, input, target, log_target)
    if reduction == "batchmean":
        up = upstream(backend, cotangent, (), x)
        if x.ndim > 0 and x.shape[0] > 0:
            up = up / x.shape[0]
    else:
        up = pointwise_scale(backend, x, None, reduction, cotangent, normalize_by_weight=False)
    return finish(backend, -q * up, input)
