"""Built-in PyTorch backend: native primitives and PyTorch's own fused loss kernels.

Nothing here imports torch at module import time: the backend is consulted
only once the user has imported torch, and its namespace is loaded then.

Each fast path receives arguments already validated by the loss and returns
``NotImplemented`` where the options are not ones the native kernel covers
with exactly polyloss's semantics; the generic code then runs.
"""

from __future__ import annotations

import sys
from types import ModuleType
from typing import Any

from polyloss._hooks import hookimpl
from polyloss.backend._base import Backend

_modules: dict[str, Any] = {}


def _torch() -> Any:
    return sys.modules["torch"]


def _F() -> Any:
    F = _modules.get("F")
    if F is None:
        import torch.nn.functional as F

        _modules["F"] = F
    return F


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


_SUM = 2  # ATen's reduction enum: none 0, mean 1, sum 2


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


def _cross_entropy(
    input: Any, target: Any, *, axis: int, weight: Any, ignore_index: int, label_smoothing: float, reduction: str
) -> Any:
    torch = _torch()
    if (reduction == "mean" and weight is None and label_smoothing == 0.0 and ignore_index is not None
            and input.ndim == 2 and axis == 1 and target.dtype == torch.int64):
        # the common case in as few Python steps as possible (per-call overhead at small sizes)
        total, total_weight = _nll_forward()(torch.log_softmax(input, 1), target, None, _SUM, ignore_index)
        return total / total_weight.clamp_min(1)
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
    if (reduction == "mean" and weight is None and input.ndim == 2 and axis == 1
            and target.dtype == _torch().int64):
        total, total_weight = _nll_forward()(input, target, None, _SUM, ignore_index)
        return total / total_weight.clamp_min(1)
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


FAST_PATHS = {
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
        # values read while torch.compile traces would break the graph
        return bool(x.device.type == "cpu") and not _torch().compiler.is_compiling()

    def stop_gradient(self, x: Any) -> Any:
        return x.detach()

    def logsumexp(self, x: Any, axis: int, keepdims: bool = False) -> Any:
        return _torch().logsumexp(x, dim=axis, keepdim=keepdims)

    def log_softmax(self, x: Any, axis: int) -> Any:
        return _torch().log_softmax(x, dim=axis)

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



@hookimpl
def polyloss_register_backends() -> list[Backend]:
    return [TorchBackend()]
