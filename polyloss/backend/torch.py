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
from functools import partial
from types import ModuleType
from typing import Any

from polyloss._hooks import hookimpl
from polyloss._namespace import fast_paths_enabled
from polyloss.backend._base import Backend
from polyloss.backend._base import class_rows

_modules: dict[str, Any] = {}


def _torch() -> Any:
    return sys.modules["torch"]


def _F() -> Any:
    F = _modules.get("F")
    if F is None:
        import torch.nn.functional as F

        _modules["F"] = F
    return F


@functools.cache
def _numpy_backend() -> Any:
    from polyloss.backend.numpy import NumpyBackend

    return NumpyBackend()


def _dist() -> Any:
    """``torch.distributed`` when it is built and a default process group is initialised, else None."""
    dist = _modules.get("dist")
    if dist is None:
        import torch.distributed as dist

        _modules["dist"] = dist
    return dist if dist.is_available() and dist.is_initialized() else None


def _same_dtype(x: Any, like: Any) -> Any:
    return x if x is None or x.dtype == like.dtype else x.to(like.dtype)


def _mse(input: Any, target: Any, *, weight: Any, reduction: str) -> Any:
    if weight is not None or _empty_mean(input, reduction):
        return NotImplemented
    return _F().mse_loss(input, _same_dtype(target, input), reduction=reduction)


def _l1(input: Any, target: Any, *, weight: Any, reduction: str) -> Any:
    if weight is not None or _empty_mean(input, reduction):
        return NotImplemented
    return _F().l1_loss(input, _same_dtype(target, input), reduction=reduction)


def _smooth_l1(input: Any, target: Any, *, beta: float, weight: Any, reduction: str) -> Any:
    if weight is not None or _empty_mean(input, reduction):
        return NotImplemented
    return _F().smooth_l1_loss(input, _same_dtype(target, input), beta=beta, reduction=reduction)


def _huber(input: Any, target: Any, *, delta: float, weight: Any, reduction: str) -> Any:
    if weight is not None or _empty_mean(input, reduction):
        return NotImplemented
    return _F().huber_loss(input, _same_dtype(target, input), delta=delta, reduction=reduction)


def _empty_mean(input: Any, reduction: str) -> bool:
    return reduction == "mean" and input.numel() == 0


def _bce(input: Any, target: Any, *, weight: Any, reduction: str) -> Any:
    if _empty_mean(input, reduction):
        return NotImplemented
    return _F().binary_cross_entropy(
        input, _same_dtype(target, input), weight=_same_dtype(weight, input), reduction=reduction
    )


def _bce_logits(input: Any, target: Any, *, weight: Any, pos_weight: Any, reduction: str) -> Any:
    if _empty_mean(input, reduction):
        return NotImplemented
    return _F().binary_cross_entropy_with_logits(
        input,
        _same_dtype(target, input),
        weight=_same_dtype(weight, input),
        pos_weight=_same_dtype(pos_weight, input),
        reduction=reduction,
    )


def _to_class_dim_1(input: Any, axis: int) -> Any:
    return input if input.ndim == 1 or axis == 1 else input.movedim(axis, 1)


_MEAN = 1  # ATen's reduction enum: none 0, mean 1, sum 2
_SUM = 2


def _index_mean(total: Any, target: Any, weight: Any, ignore_index: int) -> Any:
    torch = _torch()
    valid = target != ignore_index
    if weight is None:
        return total / valid.sum().clamp_min(1)
    sample_weight = torch.where(valid, weight[torch.where(valid, target, 0)], 0)
    return _divide_by_total_weight(total, sample_weight.sum())


def _divide_by_total_weight(total: Any, total_weight: Any) -> Any:
    torch = _torch()
    return total / torch.where(total_weight == 0, 1, total_weight)


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
        if weight is None:
            return total / total_weight.clamp_min(1)
        return _divide_by_total_weight(total, total_weight)
    total = _F().nll_loss(log_probabilities, target, weight=weight, ignore_index=ignore_index, reduction="sum")
    return _index_mean(total, target, weight, ignore_index)


def _tracing() -> bool:
    """Whether torch.compile or a torch.func transform is tracing: no value may be read (a read breaks the
    graph; ``vmap`` cannot read one at all)."""
    torch = _torch()
    return torch.compiler.is_compiling() or torch._C._are_functorch_transforms_active()


def _values_readable(x: Any) -> bool:
    """Whether the values of ``x`` can be read now, on the host, without a device sync."""
    return bool(x.device.type == "cpu") and not _tracing()


def _native_mean_on_cpu(input: Any) -> bool:
    """Whether ATen's own "mean" may be taken and its value read: a plain tensor (not a subclass such as
    FakeTensor) whose values are readable."""
    return type(input) is _torch().Tensor and _values_readable(input)


def _is_number(loss: Any) -> bool:
    """False for NaN: ATen's mean of class indices is NaN where every target is ignored (0 / 0), where
    polyloss's is 0, and where the input holds NaN; the caller recomputes the mean then."""
    value = loss.detach().item()
    return value == value


def _cross_entropy(
    input: Any, target: Any, *, axis: int, weight: Any, ignore_index: int, label_smoothing: float, reduction: str
) -> Any:
    rows = class_rows(input, target, axis)
    if rows is not None:
        out = _cross_entropy(*rows, axis=1, weight=weight, ignore_index=ignore_index,
                             label_smoothing=label_smoothing, reduction=reduction)
        return out.reshape(target.shape) if reduction == "none" and out is not NotImplemented else out
    torch = _torch()
    if (reduction == "mean" and label_smoothing == 0.0 and ignore_index is not None
            and input.ndim == 2 and axis == 1 and target.dtype == torch.int64):
        w = _same_dtype(weight, input)
        if _native_mean_on_cpu(input):
            # one C++ call and ATen's own two-node graph: the least per-call overhead at small sizes
            out = torch._C._nn.cross_entropy_loss(input, target, w, _MEAN, ignore_index, 0.0)
            if _is_number(out):
                return out
        return _nll_mean(torch.log_softmax(input, 1), target, w, ignore_index)
    F = _F()
    x = _to_class_dim_1(input, axis)
    w = _same_dtype(weight, input)
    if ignore_index is None:
        return NotImplemented
    if target.dtype.is_floating_point:
        if _empty_mean(input, reduction):
            return NotImplemented
        t = _to_class_dim_1(_same_dtype(target, input), axis)
        return F.cross_entropy(x, t, weight=w, label_smoothing=label_smoothing, reduction=reduction)
    t = target if target.dtype == _torch().int64 else target.long()
    if reduction != "mean":
        return F.cross_entropy(
            x, t, weight=w, ignore_index=ignore_index, label_smoothing=label_smoothing, reduction=reduction
        )
    if label_smoothing == 0.0:
        return _nll_mean(_torch().log_softmax(x, 1 if x.ndim > 1 else 0), t, w, ignore_index)
    total = F.cross_entropy(
        x, t, weight=w, ignore_index=ignore_index, label_smoothing=label_smoothing, reduction="sum"
    )
    return _index_mean(total, t, w, ignore_index)


def _nll(input: Any, target: Any, *, axis: int, weight: Any, ignore_index: int, reduction: str) -> Any:
    if ignore_index is None:
        return NotImplemented
    if reduction == "mean" and input.ndim == 2 and axis == 1 and target.dtype == _torch().int64:
        w = _same_dtype(weight, input)
        if _native_mean_on_cpu(input):
            out = _torch()._C._nn.nll_loss(input, target, w, _MEAN, ignore_index)
            if _is_number(out):
                return out
        return _nll_mean(input, target, w, ignore_index)
    F = _F()
    # nll_loss's backward needs a contiguous gradient buffer for K-dim inputs
    x = _to_class_dim_1(input, axis).contiguous()
    w = _same_dtype(weight, input)
    t = target if target.dtype == _torch().int64 else target.long()
    if reduction != "mean":
        return F.nll_loss(x, t, weight=w, ignore_index=ignore_index, reduction=reduction)
    return _nll_mean(x, t, w, ignore_index)


def _kl_div(input: Any, target: Any, *, log_target: bool, reduction: str) -> Any:
    F = _F()
    t = _same_dtype(target, input)
    if reduction in ("none", "sum"):
        return F.kl_div(input, t, reduction=reduction, log_target=log_target)
    total = F.kl_div(input, t, reduction="sum", log_target=log_target)
    n = input.numel() if reduction == "mean" else (input.shape[0] if input.ndim else 1)
    return total / n if n else total


def _multi_margin(
    input: Any, target: Any, *, p: int, margin: float, weight: Any, axis: int, reduction: str
) -> Any:
    if input.ndim > 2 or (input.ndim == 2 and axis != 1) or input.numel() == 0:
        return NotImplemented  # ATen's kernel returns uninitialised memory for an empty batch under "sum"
    if input.device.type == "cpu" and input.dtype in (_torch().float16, _torch().bfloat16):
        return NotImplemented  # no half-precision CPU kernel
    t = target if target.dtype == _torch().int64 else target.long()
    return _F().multi_margin_loss(
        input, t, p=p, margin=margin, weight=_same_dtype(weight, input), reduction=reduction
    )


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
    if _tracing():
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

    class _Fused(torch.autograd.Function):
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


def _run_fused(name: str, compute: Any, reduction: str, input: Any, *rest: Any) -> Any:
    if input.requires_grad and _torch().is_grad_enabled():
        return _fused_function().apply(name, compute, reduction, input, *rest)
    loss, _ = compute(input, *rest, need_grad=False)
    return _reduce(loss, reduction)


def _focal_value_and_grad(x: Any, y: Any, alpha: float, gamma: float, *, need_grad: bool) -> tuple[Any, Any]:
    """Element-wise sigmoid focal loss and, if asked, its derivative (the formulas of
    :func:`polyloss.functional.sigmoid_focal_loss_grad`, sharing the intermediates).

    Written with in-place ops on as few buffers as possible: on CPU every fresh
    buffer of the input's size costs about as much as an element-wise pass.
    """
    torch = _torch()
    a = _F().logsigmoid(x)  # log p
    ce = a - x  # log(1 - p)
    # ce = -(y log p + (1 - y) log(1 - p)); lerp is exact at y = 0 and y = 1
    ce.lerp_(a, y).neg_()
    if gamma == 0.0 and not need_grad:
        if alpha >= 0:
            ce.mul_(torch.mul(y, 2.0 * alpha - 1.0, out=a).add_(1.0 - alpha))
        return ce, None
    q = torch.sigmoid(torch.neg(x, out=a), out=a)  # 1 - p
    p = torch.sigmoid(x)
    u = torch.lerp(p, q, y) if need_grad else p.lerp_(q, y)  # 1 - p_t = y q + (1 - y) p
    grad = None
    if need_grad:
        # d ce / dx = p - y, written (1 - y) p - y q (no cancellation)
        grad = torch.lerp(p, q.neg_(), y)
        q.neg_()
        if gamma != 0.0:
            # d u / dx = (1 - 2 y) p q; the modulating factor's derivative meets ce
            s = q.mul_(p)
            s.addcmul_(s, y, value=-2.0).mul_(ce)
            if gamma == 2.0:
                grad.mul_(u).add_(s, alpha=2.0).mul_(u)
            elif gamma == 1.0:
                grad.mul_(u).add_(s)
            else:
                grad.mul_(u**gamma).add_(s.mul_(u ** (gamma - 1.0)), alpha=gamma)  # gamma > 1: finite at u = 0
        a_t = None
        if alpha >= 0:
            a_t = torch.mul(y, 2.0 * alpha - 1.0, out=p).add_(1.0 - alpha)  # alpha y + (1 - alpha)(1 - y)
            grad.mul_(a_t)
    else:
        a_t = torch.mul(y, 2.0 * alpha - 1.0, out=a).add_(1.0 - alpha) if alpha >= 0 else None
    if gamma == 2.0:
        ce.mul_(u).mul_(u)
    elif gamma == 1.0:
        ce.mul_(u)
    elif gamma != 0.0:
        ce.mul_(u.pow_(gamma))
    if a_t is not None:
        ce.mul_(a_t)
    return ce, grad


_FOUR_OVER_PI2 = 4.0 / math.pi**2


def _box_value_and_grad(b1: Any, b2: Any, kind: str, eps: float, *, need_grad: bool) -> tuple[Any, Any]:
    """Element-wise IoU-family loss of paired xyxy boxes and, if asked, its derivative by ``b1``.

    The value is computed as :mod:`polyloss.functional.box` computes it; the
    derivative is :func:`polyloss.functional.giou_loss_grad` (and siblings)
    rewritten on ``(..., 2)`` corner pairs (half the ops of per-coordinate
    code), with the masks of PyTorch's subgradients as float arithmetic:
    ``d max(a, b) / da = (1 + sign(a - b)) / 2`` (1/2 at a tie) and the
    overlap indicator ``sign(clamp(iw, 0))``.
    """
    torch = _torch()
    lo1, hi1, lo2, hi2 = b1[..., :2], b1[..., 2:], b2[..., :2], b2[..., 2:]
    iwh = torch.minimum(hi1, hi2) - torch.maximum(lo1, lo2)  # (iw, ih)
    iwh.clamp_(min=0.0)  # the intersection counts only where both sides are positive
    inter = iwh[..., 0] * iwh[..., 1]
    wh1 = hi1 - lo1
    wh2 = hi2 - lo2
    union = wh1[..., 0] * wh1[..., 1] + wh2[..., 0] * wh2[..., 1] - inter
    den = union + eps
    iou = inter / den
    loss = 1.0 - iou
    if kind != "iou":
        ewh = torch.maximum(hi1, hi2) - torch.minimum(lo1, lo2)  # enclosing (ew, eh)
    if kind == "giou":
        area_c = ewh[..., 0] * ewh[..., 1]
        c = area_c + eps
        term = (area_c - union) / c
        loss = 1.0 - (iou - term)
    elif kind in ("diou", "ciou"):
        dxy = (lo1 + hi1) / 2 - (lo2 + hi2) / 2  # centre offsets (dx, dy)
        diag = ewh[..., 0] * ewh[..., 0] + ewh[..., 1] * ewh[..., 1] + eps
        ratio = (dxy[..., 0] * dxy[..., 0] + dxy[..., 1] * dxy[..., 1]) / diag
        loss = loss + ratio
        if kind == "ciou":
            # contiguous widths and heights (atan2 on strided rows is not vectorised); atan2(w, h) with
            # h -> 1 for a point box (w = h = 0): point = 1 - sign(w^2 + h^2)
            w1, h1 = b1[..., 2] - b1[..., 0], b1[..., 3] - b1[..., 1]
            norm1 = w1 * w1 + h1 * h1
            point1 = 1.0 - torch.sign(norm1)
            h1 += point1
            w2, h2 = b2[..., 2] - b2[..., 0], b2[..., 3] - b2[..., 1]
            h2 += 1.0 - torch.sign(w2 * w2 + h2 * h2)
            diff = torch.atan2(w2, h2).sub_(torch.atan2(w1, h1))
            aspect = _FOUR_OVER_PI2 * diff * diff
            alpha = aspect / (1.0 - iou + aspect + eps)
            loss = loss + alpha * aspect
    if not need_grad:
        return loss, None
    s_lo = torch.sign(lo1 - lo2)
    s_hi = torch.sign(hi1 - hi2)
    # d inter: -P (1 + s_lo) / 2 by the low corner, P (1 - s_hi) / 2 by the high one, with P = (ov ih, ov iw)
    p = iwh.flip(-1).mul_(iwh.sign_())
    q = wh1.flip(-1)  # d area1 / d (x2, y2) = (h1, w1)
    iou_ = iou.unsqueeze(-1)
    half_one_iou = (0.5 + 0.5 * iou).unsqueeze(-1)
    den_ = den.unsqueeze(-1)
    # (iou d union - d inter) / den with d union = d area1 - d inter
    iou_q = iou_ * q
    d_lo = p * (1.0 + s_lo)  # -2 d inter by the low corner
    d_hi = p * (1.0 - s_hi)  # 2 d inter by the high corner
    g_lo = (d_lo * half_one_iou).sub_(iou_q).div_(den_)
    g_hi = (d_hi * half_one_iou).sub_(iou_q).neg_().div_(den_)
    if kind == "giou":
        c_ = c.unsqueeze(-1)
        half_f = (0.5 - 0.5 * term).unsqueeze(-1)
        e = ewh.flip(-1)
        # ((1 - term) d area_c - d union) / c, d union = d area1 - d inter
        g_lo += (e * (1.0 - s_lo)).mul_(half_f).sub_(q).add_(d_lo, alpha=0.5).div_(c_).neg_()
        g_hi += (e * (1.0 + s_hi)).mul_(half_f).sub_(q).add_(d_hi, alpha=0.5).div_(c_)
    elif kind in ("diou", "ciou"):
        r = ratio.unsqueeze(-1)
        diag_ = diag.unsqueeze(-1)
        # (d rho - ratio d diag) / diag, d rho = (dx, dy) by either corner
        g_lo += (ewh * (1.0 - s_lo)).mul_(r).add_(dxy).div_(diag_)
        g_hi -= (ewh * (1.0 + s_hi)).mul_(r).sub_(dxy).div_(diag_)
        if kind == "ciou":
            inv = 1.0 / (norm1 + point1)
            da = torch.stack((h1 * inv, -w1 * inv), dim=-1)  # d atan2(w, h) / d (w, h)
            da.mul_(((-2.0 * _FOUR_OVER_PI2) * diff * alpha).unsqueeze(-1))
            g_lo -= da
            g_hi += da
    return loss, torch.cat((g_lo, g_hi), dim=-1)


def _box_fast_path(kind: str) -> Any:
    def fast(boxes1: Any, boxes2: Any, *, eps: float, reduction: str) -> Any:
        if _wants_grad(boxes1, boxes2) is None:
            return NotImplemented
        b2 = _same_dtype(boxes2, boxes1)
        return _run_fused(f"{kind}_loss", partial(_box_value_and_grad, kind=kind, eps=eps), reduction, boxes1, b2)

    fast.__name__ = f"_{kind}_loss"
    return fast


_scalars: dict[tuple[float, Any, Any], Any] = {}


def _scalar_like(value: float, like: Any) -> Any:
    """``value`` as a 0-d tensor of ``like``'s dtype and device (cached), for ops that take tensors only."""
    key = (value, like.dtype, like.device)
    scalar = _scalars.get(key)
    if scalar is None:
        if len(_scalars) > 64:
            _scalars.clear()
        scalar = _scalars[key] = _torch().tensor(value, dtype=like.dtype, device=like.device)
    return scalar


def _hinge_value_and_grad(x: Any, y: Any, margin: float, squared: bool, *, need_grad: bool) -> tuple[Any, Any]:
    """Element-wise (squared) hinge loss and, if asked, its derivative, in as few passes as possible.

    Labels in {-1, 0, 1} map to -1/+1 as in :func:`polyloss.functional.margin._signed_target`
    with one threshold (1 stays, 0 and -1 become -1), and ``m - s x`` is one ``addcmul``;
    the derivative is ``-s [m - s x > 0]`` (0 at the kink, ``relu``'s rule) or ``-2 s max(0, m - s x)``.
    """
    torch = _torch()
    signed = torch.threshold(y, 0.5, -1.0)
    h = torch.addcmul(_scalar_like(margin, x), signed, x, value=-1, out=None if need_grad else signed)
    h.relu_()
    if not need_grad:
        return (h.mul_(h) if squared else h), None
    grad = signed.mul_(h).mul_(-2.0) if squared else torch.sign(h).mul_(signed).neg_()
    return (h * h if squared else h), grad


def _hinge_fast_path(squared: bool) -> Any:
    name = "squared_hinge_loss" if squared else "hinge_loss"
    compute = partial(_hinge_value_and_grad, squared=squared)

    def fast(input: Any, target: Any, *, margin: float, reduction: str) -> Any:
        if _wants_grad(input, target) is None:
            return NotImplemented
        return _run_fused(name, compute, reduction, input, _same_dtype(target, input), margin)

    fast.__name__ = f"_{name}"
    return fast


def _sigmoid_focal(input: Any, target: Any, *, alpha: float, gamma: float, reduction: str) -> Any:
    if not (gamma == 0.0 or gamma >= 1.0) or _wants_grad(input, target) is None:
        return NotImplemented
    y = _same_dtype(target, input)
    compute = partial(_focal_value_and_grad, alpha=alpha, gamma=gamma)
    return _run_fused("sigmoid_focal_loss", compute, reduction, input, y)


FAST_PATHS = {
    "sigmoid_focal_loss": _sigmoid_focal,
    "hinge_loss": _hinge_fast_path(squared=False),
    "squared_hinge_loss": _hinge_fast_path(squared=True),
    "iou_loss": _box_fast_path("iou"),
    "giou_loss": _box_fast_path("giou"),
    "diou_loss": _box_fast_path("diou"),
    "ciou_loss": _box_fast_path("ciou"),
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
FAST_PATHS.update(__import__("polyloss.backend._torch_ctc", fromlist=["FAST_PATHS"]).FAST_PATHS)  # ctc_loss


class TorchBackend(Backend):
    """PyTorch tensors on any device, through ``array_api_compat.torch``."""

    name = "torch"
    module_name = "torch"
    host = False

    def __init__(self) -> None:
        super().__init__()
        self.fast_paths = FAST_PATHS

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
        # torch.take_along_dim wraps negative indices with an int64 remainder pass: 3x slower
        return _torch().gather(x, axis, indices)

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
        return out.index_copy(0, positions, values)

    def kth_value(self, keys: Any, position: Any, *, descending: bool = False) -> Any:
        """NumPy's selection on a zero-copy view for CPU tensors (``torch.sort`` and ``topk`` are 5-30x
        slower on CPU); ``topk`` up to the largest position elsewhere; a full sort while compiling and under
        ``torch.func`` transforms (no value read)."""
        torch = _torch()
        if _tracing():
            return super().kth_value(keys, position, descending=descending)
        keys = keys.detach()
        if keys.device.type == "cpu" and keys.dtype not in (torch.bfloat16, torch.float16):
            numpy_backend = _numpy_backend()
            return torch.from_numpy(numpy_backend.kth_value(keys.numpy(), position.numpy(), descending=descending))
        head = int(position.max()) if position.numel() else 1
        ordered = torch.topk(keys, head, dim=-1, largest=descending, sorted=True).values
        return self.take_along_axis(ordered, position - 1, axis=-1)


@hookimpl
def polyloss_register_backends() -> list[Backend]:
    return [TorchBackend()]
