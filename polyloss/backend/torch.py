"""Built-in PyTorch backend: native primitives and PyTorch's own fused loss kernels.

Nothing here imports torch at module import time: the backend is consulted
only once the user has imported torch, and its namespace is loaded then.

Each fast path receives arguments already validated by the loss and returns
``NotImplemented`` where the options are not ones the native kernel covers
with exactly polyloss's semantics; the generic code then runs.
"""

from __future__ import annotations

import functools
import math
import sys
from collections.abc import Callable
from types import ModuleType
from typing import Any

from polyloss._hooks import hookimpl
from polyloss._switches import fast_paths_enabled
from polyloss.backend._base import Backend
from polyloss.backend._base import class_rows

_modules: dict[str, Any] = {}


def _torch() -> Any:
    return sys.modules["torch"]


def _F() -> Any:
    """``torch.nn.functional`` (imported by ``import torch``; no cache filled at first use, so that a
    compiled graph guards on nothing that changes after its first trace)."""
    return sys.modules["torch.nn.functional"]


@functools.cache
def _numpy_backend() -> Any:
    from polyloss.backend.numpy import NumpyBackend

    return NumpyBackend()


def _dist() -> Any:
    """``torch.distributed`` when it is built and a default process group is initialised, else None."""
    dist: Any = _modules.get("dist")
    if dist is None:
        import torch.distributed as dist

        _modules["dist"] = dist
    return dist if dist.is_available() and dist.is_initialized() else None


def _same_dtype(x: Any, like: Any) -> Any:
    return x if x is None or x.dtype == like.dtype else x.to(like.dtype)


# ATen's reduction enum by polyloss's name
_REDUCTION = {"none": 0, "mean": 1, "sum": 2}


def _aten_nn(name: str) -> Any:
    """``torch._C._nn.<name>``, ATen's own entry point, outside torch.compile (None while compiling: the caller
    then uses ``torch.nn.functional``). ``torch.nn.functional``'s Python wrappers repeat checks the loss made
    (``broadcast_tensors``, size warnings): about 5 us a call at tiny sizes."""
    torch = _torch()
    if torch.compiler.is_compiling():
        return None
    return getattr(torch._C._nn, name)


# -- kernel plans -------------------------------------------------------------------------------------------------
#
# A plan builder takes a loss's checked arguments and returns the kernel call ``run(*arrays)`` its fast path
# makes for arrays of that signature, or None where the options are not ones a kernel covers. The fast path is the
# plan run at once (:func:`_run_plan`); the loss caches the plan per call signature (``TorchBackend.plan_key``) and
# runs it on the next call without its checks. A value a plan must read (a guard) is read in ``run`` unless the
# loss's checks read it this call (``checked``); ``run`` returns ``NotImplemented`` where the kernel would not give
# polyloss's number.


def _run_plan(build: Any) -> Any:
    """The fast path that runs the plan ``build`` makes for its arguments (``NotImplemented`` where none)."""

    def fast(*arrays: Any, **options: Any) -> Any:
        run = build(*arrays, **options)
        return NotImplemented if run is None else run(*arrays, checked=True)

    fast.__name__ = fast.__qualname__ = build.__name__.removesuffix("_plan")
    fast.__doc__ = build.__doc__
    return fast


def _pointwise_run(name: str, reduction: str, **options: Any) -> Any:
    """``run(input, target)``: ATen's ``name`` kernel (its arguments after the reduction: ``options``' values, in
    ``torch.nn.functional``'s order), or ``torch.nn.functional``'s while compiling."""
    aten = _aten_nn(name)
    if aten is not None:
        args = (_REDUCTION[reduction], *options.values())
        return lambda input, target, checked=False: aten(input, _same_dtype(target, input), *args)
    f = getattr(_F(), name)
    return lambda input, target, checked=False: f(input, _same_dtype(target, input), reduction=reduction, **options)


def _mse_plan(input: Any, target: Any, *, weight: Any, reduction: str) -> Any:
    if weight is not None or _empty_mean(input, reduction):
        return None
    return _pointwise_run("mse_loss", reduction)


def _l1_plan(input: Any, target: Any, *, weight: Any, reduction: str) -> Any:
    if weight is not None or _empty_mean(input, reduction):
        return None
    return _pointwise_run("l1_loss", reduction)


def _smooth_l1_plan(input: Any, target: Any, *, beta: float, weight: Any, reduction: str) -> Any:
    if beta == 0.0:  # ATen's smooth L1 divides by beta in its backward: L1's kernel, as torch.nn.functional
        return _l1_plan(input, target, weight=weight, reduction=reduction)
    if weight is not None or _empty_mean(input, reduction):
        return None
    return _pointwise_run("smooth_l1_loss", reduction, beta=beta)


def _huber_plan(input: Any, target: Any, *, delta: float, weight: Any, reduction: str) -> Any:
    if weight is not None or _empty_mean(input, reduction):
        return None
    return _pointwise_run("huber_loss", reduction, delta=delta)


def _empty_mean(input: Any, reduction: str) -> bool:
    return reduction == "mean" and input.numel() == 0


def _in_unit_interval(target: Any) -> bool:
    """Whether every value of ``target`` (readable) lies in [0, 1]: one ``aminmax`` (False for NaN)."""
    if target.dtype == _torch().bool:
        return True
    lo, hi = _torch().aminmax(target.detach())
    return bool(lo.item() >= 0 and hi.item() <= 1)


def _bce_plan(input: Any, target: Any, *, weight: Any, reduction: str) -> Any:
    """ATen's kernel; the loss calls it only on values it read and found in [0, 1] without NaN (the kernel
    raises on NaN, and asserts on a GPU, where the loss runs the generic code instead). A cached plan reads
    the target; ATen's CPU kernel raises on an input outside [0, 1] or NaN, and the loss's full path then
    reads both."""
    if _empty_mean(input, reduction):
        return None
    if weight is not None or _aten_nn("binary_cross_entropy") is None:  # F broadcasts a weight
        f, w = _F().binary_cross_entropy, _same_dtype(weight, input)
        return lambda input, target, checked=False: f(input, _same_dtype(target, input), weight=w,
                                                      reduction=reduction)
    aten, r = _torch()._C._nn.binary_cross_entropy, _REDUCTION[reduction]

    def run(input: Any, target: Any, checked: bool = False) -> Any:
        if not (checked or _in_unit_interval(target)):
            return NotImplemented
        return aten(input, _same_dtype(target, input), None, r)

    return run


def _bce_logits_plan(input: Any, target: Any, *, weight: Any, pos_weight: Any, reduction: str) -> Any:
    """ATen's kernel; the target is in [0, 1] (the loss read it where readable; a cached plan reads it)."""
    if _empty_mean(input, reduction):
        return None
    torch = _torch()
    w, pw = _same_dtype(weight, input), _same_dtype(pos_weight, input)
    if torch.compiler.is_compiling():
        f = _F().binary_cross_entropy_with_logits
        return lambda input, target, checked=False: f(input, _same_dtype(target, input), weight=w, pos_weight=pw,
                                                      reduction=reduction)
    aten, r, readable = torch.binary_cross_entropy_with_logits, _REDUCTION[reduction], _values_readable(target)

    def run(input: Any, target: Any, checked: bool = False) -> Any:
        if readable and not (checked or _in_unit_interval(target)):
            return NotImplemented
        return aten(input, _same_dtype(target, input), w, pw, r)

    return run


_mse, _l1, _smooth_l1, _huber = map(_run_plan, (_mse_plan, _l1_plan, _smooth_l1_plan, _huber_plan))
_bce, _bce_logits = _run_plan(_bce_plan), _run_plan(_bce_logits_plan)


def _to_class_dim_1(input: Any, axis: int) -> Any:
    return input if input.ndim == 1 or axis == 1 else input.movedim(axis, 1)


_MEAN = 1  # ATen's reduction enum: none 0, mean 1, sum 2
_SUM = 2
# ATen's kernels take an int ignore_index: for polyloss's None (nothing ignored), one no target holds in practice
# (where the values were read, none does: the loss checked every index in [0, C))
_NO_IGNORE = -(2**63)


def _aten_ignore_index(ignore_index: int | None) -> int:
    return _NO_IGNORE if ignore_index is None else ignore_index


def _weighted_mean(total: Any, total_weight: Any) -> Any:
    """polyloss's weighted mean (``polyloss.functional._reductions.weighted_mean``): ``total / total_weight``,
    ``0 * total`` where the total weight is 0 (every target ignored, class weights 0 or summing to 0), with
    gradient 0 there."""
    torch = _torch()
    zero = total_weight == 0
    return torch.where(zero, total * 0.0, total / torch.where(zero, 1, total_weight))


def _index_mean(total: Any, target: Any, weight: Any, ignore_index: int) -> Any:
    torch = _torch()
    valid = target != ignore_index
    if weight is None:
        return _weighted_mean(total, valid.sum())
    sample_weight = torch.where(valid, weight[torch.where(valid, target, 0)], 0)
    return _weighted_mean(total, sample_weight.sum())


def _nll_forward() -> Any:
    """ATen's ``nll_loss_forward`` -> (output, total weight), differentiable.

    Outside torch.compile its C++ entry point is called directly: the Python
    wrapper of ``torch.ops`` costs about 0.5 us per call at tiny sizes.
    """
    torch = _torch()
    if torch.compiler.is_compiling():
        return torch.ops.aten.nll_loss_forward.default
    op = _modules.get("nll_loss_forward")
    if op is None:
        op = _modules["nll_loss_forward"] = torch.ops.aten.nll_loss_forward.default._op
    return op


def _nll_mean(log_probabilities: Any, target: Any, weight: Any, ignore_index: int) -> Any:
    """Mean NLL that is 0 when every target is ignored (PyTorch's mean gives NaN there)."""
    if log_probabilities.ndim <= 2:
        # ATen's forward also returns the total weight: no extra pass over the targets
        total, total_weight = _nll_forward()(log_probabilities, target, weight, _SUM, ignore_index)
        return _weighted_mean(total, total_weight)
    total = _F().nll_loss(log_probabilities, target, weight=weight, ignore_index=ignore_index, reduction="sum")
    return _index_mean(total, target, weight, ignore_index)


def tracing() -> bool:
    """Whether torch.compile or a torch.func transform is tracing: no value may be read (a read breaks the
    graph; ``vmap`` cannot read one at all)."""
    torch = _torch()
    return bool(torch.compiler.is_compiling() or torch._C._are_functorch_transforms_active())


def _values_readable(x: Any) -> bool:
    """Whether the values of ``x`` can be read now, on the host, without a device sync (not a FakeTensor,
    whose values do not exist)."""
    if not x.is_cpu or tracing():
        return False
    return type(x) is _torch().Tensor or not _is_fake(x)


def _is_fake(x: Any) -> bool:
    fake: Any = _modules.get("FakeTensor")
    if fake is None:
        from torch._subclasses.fake_tensor import FakeTensor as fake

        _modules["FakeTensor"] = fake
    return isinstance(x, fake)


def _native_mean_on_cpu(input: Any) -> bool:
    """Whether ATen's own "mean" may be taken and its value read: a plain tensor (not a subclass such as
    FakeTensor) whose values are readable."""
    return type(input) is _torch().Tensor and _values_readable(input)


def _native_mean_exact(target: Any, weight: Any, ignore_index: int | None) -> bool:
    """Whether ATen's "mean" of class indices is polyloss's without a read: without class weights, with no target
    to ignore and a sample at least, it is the sum over the count (NaN only from a NaN input). Otherwise it is
    where it is finite (ATen divides 0 by 0, or by class weights summing to 0, where polyloss's rule gives
    0 * sum; an infinite input gives the same inf either way): the value is read."""
    return weight is None and ignore_index is None and target.numel() > 0


def _native_mean_plan(kernel: Any, input: Any, target: Any, weight: Any, ignore_index: int | None, *,
                      logits: bool) -> Any:
    """``run(x, target)``: ATen's class-index ``kernel(x, target, weight, "mean", ignore_index, ...)`` (one C++
    call and ATen's own two-node graph: the least per-call overhead at small sizes) where its mean is polyloss's
    (see :func:`_native_mean_exact`), else polyloss's mean of ``nll_loss_forward`` on the log-probabilities
    (``log_softmax(x)`` of ``logits``, else ``x``). None where the mean cannot be read (not a plain CPU tensor,
    tracing)."""
    if target.dtype.is_floating_point or not _native_mean_on_cpu(input):
        return None
    torch = _torch()
    w, ignore = _same_dtype(weight, input), _aten_ignore_index(ignore_index)
    extra = (0.0,) if logits else ()  # cross_entropy_loss's label smoothing
    if _native_mean_exact(target, w, ignore_index):
        return lambda input, target, checked=False: kernel(input, target, w, _MEAN, ignore, *extra)

    def run(input: Any, target: Any, checked: bool = False) -> Any:
        out = kernel(input, target, w, _MEAN, ignore, *extra)
        if math.isfinite(out.item()):
            return out
        return _nll_mean(torch.log_softmax(input, 1) if logits else input, target, w, ignore)

    return run


def _cross_entropy_plan(
    input: Any, target: Any, *, axis: int, weight: Any, ignore_index: int | None, label_smoothing: float,
    reduction: str,
) -> Any:
    """ATen's one-call cross-entropy of 2-D logits and class indices under "mean" without smoothing."""
    if reduction != "mean" or label_smoothing != 0.0 or input.ndim != 2 or axis != 1:
        return None
    return _native_mean_plan(_torch()._C._nn.cross_entropy_loss, input, target, weight, ignore_index, logits=True)


def _nll_plan(input: Any, target: Any, *, axis: int, weight: Any, ignore_index: int | None, reduction: str) -> Any:
    """ATen's one-call NLL of 2-D log-probabilities and class indices under "mean"."""
    if reduction != "mean" or input.ndim != 2 or axis != 1:
        return None
    return _native_mean_plan(_torch()._C._nn.nll_loss, input, target, weight, ignore_index, logits=False)


def _cross_entropy(
    input: Any, target: Any, *, axis: int, weight: Any, ignore_index: int | None, label_smoothing: float,
    reduction: str,
) -> Any:
    """ATen's kernels on targets the loss checked: int64 class indices (in [0, C) or ``ignore_index`` where
    readable; ``ignore_index`` None where nothing is ignored) or class probabilities."""
    rows = class_rows(input, target, axis)
    if rows is not None:
        out = _cross_entropy(*rows, axis=1, weight=weight, ignore_index=ignore_index,
                             label_smoothing=label_smoothing, reduction=reduction)
        return out.reshape(target.shape) if reduction == "none" and out is not NotImplemented else out
    torch = _torch()
    F = _F()
    w = _same_dtype(weight, input)
    if target.dtype.is_floating_point:
        if _empty_mean(input, reduction):
            return NotImplemented
        t = _to_class_dim_1(_same_dtype(target, input), axis)
        return F.cross_entropy(_to_class_dim_1(input, axis), t, weight=w, label_smoothing=label_smoothing,
                               reduction=reduction)
    ignore = _aten_ignore_index(ignore_index)
    if reduction == "mean" and label_smoothing == 0.0 and input.ndim == 2 and axis == 1:
        run = _cross_entropy_plan(input, target, axis=axis, weight=weight, ignore_index=ignore_index,
                                  label_smoothing=label_smoothing, reduction=reduction)
        if run is not None:
            return run(input, target, True)
        return _nll_mean(torch.log_softmax(input, 1), target, w, ignore)
    x = _to_class_dim_1(input, axis)
    if reduction != "mean":
        return F.cross_entropy(x, target, weight=w, ignore_index=ignore, label_smoothing=label_smoothing,
                               reduction=reduction)
    if label_smoothing == 0.0:
        return _nll_mean(torch.log_softmax(x, 1 if x.ndim > 1 else 0), target, w, ignore)
    total = F.cross_entropy(x, target, weight=w, ignore_index=ignore, label_smoothing=label_smoothing,
                            reduction="sum")
    return _index_mean(total, target, w, ignore)


def _nll(input: Any, target: Any, *, axis: int, weight: Any, ignore_index: int | None, reduction: str) -> Any:
    """ATen's kernels on int64 class indices the loss checked (see :func:`_cross_entropy`)."""
    w = _same_dtype(weight, input)
    ignore = _aten_ignore_index(ignore_index)
    if reduction == "mean" and input.ndim == 2 and axis == 1:
        run = _nll_plan(input, target, axis=axis, weight=weight, ignore_index=ignore_index, reduction=reduction)
        if run is not None:
            return run(input, target, True)
        return _nll_mean(input, target, w, ignore)
    # nll_loss's backward needs a contiguous gradient buffer for K-dim inputs
    x = _to_class_dim_1(input, axis).contiguous()
    if reduction != "mean":
        return _F().nll_loss(x, target, weight=w, ignore_index=ignore, reduction=reduction)
    return _nll_mean(x, target, w, ignore)


def _kl_div_plan(input: Any, target: Any, *, log_target: bool, reduction: str) -> Any:
    """``torch.kl_div`` ("batchmean", and "mean" of an empty input, from its sum). Probability targets are >= 0
    (the loss read them where readable; a cached plan reads their minimum)."""
    torch = _torch()
    if torch.compiler.is_compiling():
        def kl(x: Any, t: Any, r: str) -> Any:
            return _F().kl_div(x, t, reduction=r, log_target=log_target)
    else:
        def kl(x: Any, t: Any, r: str) -> Any:
            return torch.kl_div(x, t, _REDUCTION[r], log_target=log_target)
    guarded = not log_target and target.dtype != torch.bool and target.numel() > 0 and _values_readable(target)
    # ATen's own reduction where it is polyloss's: "none", "sum" and the "mean" of a non-empty input
    native = reduction in ("none", "sum") or (reduction == "mean" and input.numel() > 0)
    n = None if native else (input.numel() if reduction == "mean" else (input.shape[0] if input.ndim else 1))

    def run(input: Any, target: Any, checked: bool = False) -> Any:
        if guarded and not checked and not target.detach().min().item() >= 0:
            return NotImplemented
        t = _same_dtype(target, input)
        if n is None:
            return kl(input, t, reduction)
        total = kl(input, t, "sum")
        return total / n if n else total

    return run


def _finite(x: Any) -> bool:
    """Whether every value of ``x`` (readable) is finite: one reduction, its sum (NaN or inf otherwise;
    a finite sum that overflows only sends the caller to the generic code)."""
    return math.isfinite(float(x.detach().sum()))


def _multi_margin_plan(
    input: Any, target: Any, *, p: int, margin: float, weight: Any, axis: int, reduction: str
) -> Any:
    """ATen's kernel, which checks the class indices itself. It (and its backward) adds a term only where
    m - x_y + x_j > 0, false for NaN: it would hide a NaN score (or an infinite one meeting another), so it runs
    on inputs (and weights) read and found finite only."""
    if input.ndim > 2 or (input.ndim == 2 and axis != 1) or input.numel() == 0:
        return None  # ATen's kernel returns uninitialised memory for an empty batch under "sum"
    if input.device.type == "cpu" and input.dtype in (_torch().float16, _torch().bfloat16):
        return None  # no half-precision CPU kernel
    if not _values_readable(input):
        return None
    aten, w, r = _aten_nn("multi_margin_loss"), _same_dtype(weight, input), _REDUCTION[reduction]

    def run(input: Any, target: Any, checked: bool = False) -> Any:
        if not _finite(input) or (w is not None and not _finite(w)):
            return NotImplemented
        return aten(input, target, p, margin, w, r)

    return run


_kl_div, _multi_margin = _run_plan(_kl_div_plan), _run_plan(_multi_margin_plan)


# -- fused closed-form backward -------------------------------------------------------------------------------------
#
# A loss written as a chain of small element-wise ops costs, under autograd, one saved tensor and one backward
# kernel per op. Where the gradient has a short closed form, the forward computes it alongside the value (sharing
# the intermediates), saves that one tensor, and the backward is a single multiplication by the upstream gradient.
# The gradient is with respect to the first argument only: a second argument that requires grad, or double
# backward, is left to autograd through the generic code (double backward raises a clear error here).

_fused: dict[str, Any] = {}


def _wants_grad(input: Any, *others: Any) -> bool | None:
    """True: only ``input`` needs a gradient; False: none does; None: use the generic code (another
    argument needs a gradient too, torch.compile is tracing, or a torch.func transform is active)."""
    torch = _torch()
    if tracing():
        # the compiler fuses the generic code itself (its autograd is the reference); vmap has no batching
        # rule for the in-place and out= ops, and grad needs a setup_context
        return None
    if not torch.is_grad_enabled():
        return False
    for other in others:
        if other is not None and other.requires_grad:
            return None
    return bool(input.requires_grad)


def _reduce(loss: Any, reduction: str) -> Any:
    """As ``polyloss._checks.reduce``: the mean is the sum over the count (0 for an empty input)."""
    if reduction == "none":
        return loss
    total = loss.sum()
    count = loss.numel()
    return total.div_(count) if reduction == "mean" and count else total


def _fused_function() -> Any:
    """``_Fused.apply(name, value_and_grad, reduction, input, *rest)``: the loss reduced from
    ``value_and_grad(input, *rest, need_grad=True)``, which returns the element-wise loss and its
    derivative by ``input`` (element-wise, for a cotangent of ones)."""
    fn = _fused.get("function")
    if fn is not None:
        return fn
    torch = _torch()

    class _Fused(torch.autograd.Function):  # type: ignore[misc,name-defined]
        @staticmethod
        def forward(ctx: Any, name: str, compute: Any, reduction: str, input: Any, *rest: Any) -> Any:
            loss, grad = compute(input, *rest, need_grad=True)
            ctx.name = name
            ctx.reduction = reduction
            ctx.count = loss.numel()
            ctx.save_for_backward(grad)
            return _reduce(loss, reduction)

        @staticmethod
        def backward(ctx: Any, grad_output: Any) -> Any:
            if torch.is_grad_enabled():
                raise RuntimeError(
                    f"polyloss.{ctx.name}: the fused closed-form backward on PyTorch has no second derivative "
                    "(backward with create_graph=True); run the loss under polyloss.fast_paths(False) to "
                    "differentiate autograd's graph of the generic code instead"
                )
            (grad,) = ctx.saved_tensors
            if ctx.reduction == "mean" and ctx.count:
                grad_output = grad_output / ctx.count
            elif grad_output.ndim and grad_output.ndim < grad.ndim:  # per-box loss, per-coordinate gradient
                grad_output = grad_output.unsqueeze(-1)
            return (None, None, None, grad * grad_output, *([None] * (len(ctx.needs_input_grad) - 4)))

    _fused["function"] = _Fused
    return _Fused


def _one_hot_bce_function() -> Any:
    """``_OneHotBCESum.apply(x, labels, weight)``: :meth:`Backend.one_hot_bce_sum` whose backward is one
    sigmoid and a scatter of ``-weight`` (autograd's would add a zero-filled gather gradient to softplus')."""
    fn = _fused.get("one_hot_bce")
    if fn is not None:
        return fn
    torch = _torch()

    class _OneHotBCESum(torch.autograd.Function):  # type: ignore[misc,name-defined]
        @staticmethod
        def forward(ctx: Any, x: Any, labels: Any, weight: Any) -> Any:
            index = labels.unsqueeze(-1)
            ctx.save_for_backward(x, index, weight)
            threshold = 40.0 if x.dtype == torch.float64 else 20.0
            return _F().softplus(x, threshold=threshold).sum(-1) - x.gather(-1, index).squeeze(-1) * weight

        @staticmethod
        def backward(ctx: Any, grad_output: Any) -> Any:
            if torch.is_grad_enabled():
                raise RuntimeError("polyloss: the closed-form backward of one_hot_bce_sum has no second derivative "
                                   "(backward with create_graph=True); run under polyloss.fast_paths(False)")
            x, index, weight = ctx.saved_tensors
            grad = torch.sigmoid(x).mul_(grad_output.unsqueeze(-1))
            return grad.scatter_add_(-1, index, (-weight * grad_output).unsqueeze(-1)), None, None

    _fused["one_hot_bce"] = _OneHotBCESum
    return _OneHotBCESum


def _run_fused(name: str, compute: Any, reduction: str, input: Any, *rest: Any) -> Any:
    if input.requires_grad and _torch().is_grad_enabled():
        return _fused_function().apply(name, compute, reduction, input, *rest)
    loss, _ = compute(input, *rest, need_grad=False)
    return _reduce(loss, reduction)




def _fused_elementwise(name: str) -> Any:
    """The fast path of an element-wise loss whose family hands it, as ``elementwise``, its one
    closed-form value-and-derivative ``elementwise(x, y, need_grad=...) -> (loss, d loss / d x)``
    (e.g. :func:`polyloss.functional.focal.sigmoid_focal_elementwise` with its options bound): the
    loss through :func:`_run_fused`, one saved tensor and a one-multiplication backward. The
    formula lives in the family only; the generic code takes this path's place where a second
    argument needs a gradient, or while tracing."""

    def fast(input: Any, target: Any, *, elementwise: Any, reduction: str, **options: Any) -> Any:
        if _wants_grad(input, target) is None:
            return NotImplemented
        return _run_fused(name, elementwise, reduction, input, _same_dtype(target, input))

    fast.__name__ = f"_{name}"
    return fast


FAST_PATHS = {
    "sigmoid_focal_loss": _fused_elementwise("sigmoid_focal_loss"),
    "hinge_loss": _fused_elementwise("hinge_loss"),
    "squared_hinge_loss": _fused_elementwise("squared_hinge_loss"),
    "iou_loss": _fused_elementwise("iou_loss"),
    "giou_loss": _fused_elementwise("giou_loss"),
    "diou_loss": _fused_elementwise("diou_loss"),
    "ciou_loss": _fused_elementwise("ciou_loss"),
    "mse_loss": _mse,
    "l1_loss": _l1,
    "smooth_l1_loss": _smooth_l1,
    "huber_loss": _huber,
    "binary_cross_entropy": _bce,
    "binary_cross_entropy_with_logits": _bce_logits,
    "cross_entropy": _cross_entropy,
    "nll_loss": _nll,
    "kl_div": _kl_div,
    "multi_margin_loss": _multi_margin,
}
#: loss name -> plan builder (see "kernel plans" above): the kernel calls losses cache per call signature
KERNEL_PLANS: dict[str, Callable[..., Any]] = {
    "mse_loss": _mse_plan,
    "l1_loss": _l1_plan,
    "smooth_l1_loss": _smooth_l1_plan,
    "huber_loss": _huber_plan,
    "binary_cross_entropy": _bce_plan,
    "binary_cross_entropy_with_logits": _bce_logits_plan,
    "cross_entropy": _cross_entropy_plan,
    "nll_loss": _nll_plan,
    "kl_div": _kl_div_plan,
    "multi_margin_loss": _multi_margin_plan,
}
_second_set = __import__("polyloss.backend._torch_second_set", fromlist=["FAST_PATHS"])
FAST_PATHS.update(_second_set.FAST_PATHS)
FAST_PATHS.update({name: _run_plan(build) for name, build in _second_set.KERNEL_PLANS.items()})
KERNEL_PLANS.update(_second_set.KERNEL_PLANS)
FAST_PATHS.update(__import__("polyloss.backend._torch_ctc", fromlist=["FAST_PATHS"]).FAST_PATHS)  # ctc_loss
FAST_PATHS.update(__import__("polyloss.backend._torch_lovasz", fromlist=["FAST_PATHS"]).FAST_PATHS)  # lovasz_loss


class TorchBackend(Backend):
    """PyTorch tensors on any device, through ``array_api_compat.torch``."""

    name = "torch"
    module_name = "torch"
    host = False
    #: ATen's class-index kernels raise ``IndexError`` on an index outside [0, C) that is not ``ignore_index``
    #: where values are readable (CPU): the losses that run them need not read the targets first
    #: (``polyloss.functional._common.try_fast_path`` explains the error as the check would have)
    kernels_check_indices = True

    def __init__(self) -> None:
        super().__init__()
        self.fast_paths = FAST_PATHS
        self.kernel_plans = KERNEL_PLANS

    def plan_key(self, name: str, arrays: tuple[Any, ...], options: tuple[Any, ...]) -> tuple[Any, ...] | None:
        """Plain tensors outside tracing, with the fast paths on (a plan made eagerly never runs while compiling
        or under ``torch.func``; a subclass such as FakeTensor gets none)."""
        torch = _torch()
        tensor = torch.Tensor
        input = arrays[0]
        if input.__class__ is not tensor or not fast_paths_enabled():
            return None
        if torch.compiler.is_compiling() or torch._C._are_functorch_transforms_active():
            return None
        if len(arrays) == 2:  # the usual (input, target): one flat tuple, no loop (a third of a tiny call's key)
            target = arrays[1]
            if target.__class__ is not tensor:
                return None
            return (name, input.dtype, input.shape, input.device, target.dtype, target.shape, *options,
                    *map(type, options))
        signature: list[Any] = [name, input.device]
        for a in arrays:
            if a.__class__ is not tensor:
                return None
            signature += (a.dtype, a.shape)
        return (*signature, *options, *map(type, options))

    def matches(self, x: object) -> bool:
        return isinstance(x, _torch().Tensor)

    def load_namespace(self) -> ModuleType:
        import array_api_compat.torch as xp

        return xp

    def device(self, x: Any) -> Any:
        return x.device

    def is_host_array(self, x: Any) -> bool:
        return _values_readable(x)

    def stop_gradient(self, x: Any) -> Any:
        return x.detach()

    def logsumexp(self, x: Any, axis: int, keepdims: bool = False) -> Any:
        return _torch().logsumexp(x, dim=axis, keepdim=keepdims)

    def log_softmax(self, x: Any, axis: int) -> Any:
        return _torch().log_softmax(x, dim=axis)

    def softmax(self, x: Any, axis: int) -> Any:
        return _torch().softmax(x, dim=axis)

    def clip(self, x: Any, min: float | None = None, max: float | None = None) -> Any:
        """``hardtanh`` on floating tensors: its backward is one fused kernel, where ``clamp``'s (and
        array_api_compat's ``clip``, a select) is a ``where`` that is 10x slower on CPU. Its gradient
        at a bound itself is 0."""
        if not x.is_floating_point():
            return _torch().clamp(x, min=min, max=max)
        return _F().hardtanh(x, -math.inf if min is None else min, math.inf if max is None else max)

    def sigmoid(self, x: Any) -> Any:
        return _torch().sigmoid(x)

    def relu(self, x: Any) -> Any:
        return _torch().relu(x)

    def log_sigmoid(self, x: Any) -> Any:
        return _F().logsigmoid(x)

    def one_hot_bce_sum(self, x: Any, labels: Any, weight: Any) -> Any:
        if x.requires_grad and _torch().is_grad_enabled() and fast_paths_enabled() and not tracing():
            return _one_hot_bce_function().apply(x, labels, weight.detach())
        return super().one_hot_bce_sum(x, labels, weight)

    def softplus(self, x: Any) -> Any:
        """``F.softplus``, whose linear branch starts where ``log1p(exp(-x))`` is below half an ulp of ``x``
        (20 in single precision, 40 in double)."""
        torch = _torch()
        return _F().softplus(x, threshold=40.0 if x.dtype == torch.float64 else 20.0)

    def xlogy(self, x: Any, y: Any) -> Any:
        return _torch().xlogy(x, y)

    def world_size(self) -> int:
        """``torch.distributed``'s world size when a default process group is initialised, else 1."""
        dist = _dist()
        return int(dist.get_world_size()) if dist is not None else 1

    def all_reduce_sum(self, x: Any) -> Any:
        """Sum over the default process group (``torch.distributed.all_reduce``) of a detached copy of ``x``.

        ``x`` itself when ``torch.distributed`` is not available or not initialised.
        """
        dist = _dist()
        if dist is None:
            return x
        out = x.detach().clone()
        dist.all_reduce(out, op=dist.ReduceOp.SUM)
        return out

    def take_along_axis(self, x: Any, indices: Any, axis: int) -> Any:
        """``gather`` (``torch.take_along_dim`` wraps negative indices with an int64 remainder pass: 3x
        slower); one ``index_select`` when ``indices`` is expanded along the axes after ``axis`` (whole rows)
        or along every other axis (``gather`` reads element by element: 5-10x slower on CPU)."""
        torch = _torch()
        ndim = x.ndim
        axis = axis % ndim
        shape, index_shape = x.shape, indices.shape
        if (ndim < 2 or indices.ndim != ndim or shape[:axis] != index_shape[:axis]
                or shape[axis + 1:] != index_shape[axis + 1:] or indices.numel() == 0):
            return torch.gather(x, axis, indices)
        strides = indices.stride()
        if not any(strides[:axis]) and not any(strides[axis + 1:]):  # one index for every slice
            return x.index_select(axis, indices[(0,) * axis + (slice(None),) + (0,) * (ndim - axis - 1)])
        if axis == ndim - 1 or any(strides[axis + 1:]):
            return torch.gather(x, axis, indices)
        lead, n = math.prod(shape[:axis]), int(shape[axis])
        index = indices[(Ellipsis,) + (0,) * (ndim - axis - 1)].reshape(lead, -1)
        if lead > 1:
            index = index + torch.arange(0, lead * n, n, dtype=index.dtype, device=index.device)[:, None]
        rows = x.reshape(lead * n, math.prod(shape[axis + 1:])).index_select(0, index.reshape(-1))
        return rows.reshape(index_shape)

    def random_bits(self, shape: tuple[int, ...], bits: int, *, rng: Any = None, device: Any = None) -> Any:
        """``torch.randint`` on a GPU and while compiling (no host draw, no transfer; ``torch.manual_seed``
        makes it repeatable); NumPy's generator for CPU tensors (faster) and for a given ``rng``."""
        torch = _torch()
        if rng is None and (torch.compiler.is_compiling() or torch.device(device or "cpu").type != "cpu"):
            return torch.randint(0, 1 << bits, shape, dtype=torch.int64, device=device)
        return super().random_bits(shape, bits, rng=rng, device=device)

    def nonzero_positions(self, mask: Any) -> Any:
        """``nonzero`` of CPU tensors outside compilation (on a GPU it would wait for the device)."""
        if not (fast_paths_enabled() and self.is_host_array(mask)):
            return None
        return _torch().nonzero(mask.reshape(-1)).reshape(-1)

    def scatter_rows(self, values: Any, positions: Any, size: int) -> Any:
        out = values.new_zeros((size, *values.shape[1:]))
        return out.index_copy_(0, positions, values)  # in place: the out-of-place form copies the zeros

    def min_max(self, x: Any) -> tuple[Any, Any]:
        """One ``aminmax`` pass (unsigned dtypes wider than 8 bits, which have no reductions, widened first)."""
        torch = _torch()
        if x.dtype in (torch.uint16, torch.uint32):
            x = x.to(torch.int64)
        elif x.dtype == torch.uint64:
            x = x.to(torch.float64)  # above int64's max: a float of the right size
        lo, hi = torch.aminmax(x.detach())
        return lo.item(), hi.item()

    def first_index(self, ids: Any, size: int) -> Any:
        """One ``scatter_reduce`` (``"amin"``) of the positions into ``size + 1`` columns (the last collects
        the entries of no id)."""
        torch = _torch()
        n, g = ids.shape
        positions = torch.arange(g, dtype=torch.int64, device=ids.device).expand(n, g)
        out = torch.full((n, size + 1), g, dtype=torch.int64, device=ids.device)
        ids = ids if ids.dtype == torch.int64 else ids.to(torch.int64)
        return out.scatter_reduce_(1, ids, positions, "amin")[:, :size]

    def kth_value(self, keys: Any, position: Any, *, descending: bool = False) -> Any:
        """:func:`_eager_kth_value`; while compiling, for CPU tensors, the same as one opaque operator of the graph
        (``torch.ops.polyloss.kth_value``: no sort, no graph break); a full sort elsewhere while compiling and
        under ``torch.func`` transforms (no value read)."""
        torch = _torch()
        if (torch.compiler.is_compiling() and keys.device.type == "cpu"
                and not torch._C._are_functorch_transforms_active()):
            from polyloss.backend import _torch_select

            return _torch_select.kth_value(keys.detach(), position, descending)
        if tracing():
            return super().kth_value(keys, position, descending=descending)
        return _eager_kth_value(keys, position, descending=descending)


def _eager_kth_value(keys: Any, position: Any, *, descending: bool) -> Any:
    """:meth:`Backend.kth_value` on tensors whose values can be read: NumPy's selection on a zero-copy view for
    CPU tensors (``torch.sort`` and ``topk`` are 5-30x slower on CPU), ``topk`` up to the largest position
    elsewhere. A new tensor, without a graph."""
    torch = _torch()
    keys = keys.detach()
    if keys.device.type == "cpu" and keys.dtype not in (torch.bfloat16, torch.float16):
        numpy_backend = _numpy_backend()
        return torch.from_numpy(numpy_backend.kth_value(keys.numpy(), position.numpy(), descending=descending))
    head = int(position.max()) if position.numel() else 1
    ordered = torch.topk(keys, head, dim=-1, largest=descending, sorted=True).values
    return ordered.gather(-1, position - 1)


@hookimpl
def polyloss_register_backends() -> list[Backend]:
    return [TorchBackend()]
