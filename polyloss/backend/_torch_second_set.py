"""PyTorch fast paths and kernel plans of the second set of losses, merged into
:data:`polyloss.backend.torch.FAST_PATHS` and ``KERNEL_PLANS``.

Each receives arguments the loss has already validated (label values, ``var``'s sign, class indices: read
once, by the loss's check function) and returns ``NotImplemented`` where PyTorch's semantics differ from
polyloss's -- the mean of an empty batch (PyTorch: NaN) above all -- so that the generic code runs. Where
PyTorch has a kernel it is ATen's (``torch.<name>``, which ``torch.nn.functional``'s wrapper calls), built
as a plan (see "kernel plans" in :mod:`polyloss.backend.torch`): a cached plan reads the labels a loss
checks (1 or -1, or in [0, 1]) as its guard. ``soft_margin_loss`` runs ATen's kernel on small inputs whose
scores it cannot overflow on, and else the family's closed-form value and derivative in one fused autograd
node: PyTorch's kernel overflows to inf (and its gradient to NaN) where ``-y x`` is large.

Nothing here imports torch or :mod:`polyloss.backend.torch` at import time; the latter's helpers are
looked up when a fast path runs.
"""

from __future__ import annotations

import sys
from functools import partial
from typing import Any

__all__ = ["FAST_PATHS", "KERNEL_PLANS"]


def _tb() -> Any:
    return sys.modules["polyloss.backend.torch"]


def _usable(input: Any, reduction: str) -> bool:
    """PyTorch's numbers are polyloss's: anything but the mean of an empty input (NaN there)."""
    return not _tb()._empty_mean(input, reduction)


def _signs(target: Any) -> bool:
    """Whether every label is 1 or -1: the range of ``|t|`` in one ``aminmax`` (NaN fails)."""
    lo, hi = _tb()._torch().aminmax(target.detach().abs())
    return bool(lo.item() == 1 and hi.item() == 1)


def _in_unit_interval(target: Any) -> bool:
    return bool(_tb()._in_unit_interval(target))


def _label_run(kernel: Any, guard: Any, target: Any, options: tuple[Any, ...]) -> Any:
    """``run(*arrays)``: ``kernel(input, *rest in its dtype, *options)``, after ``guard(target)`` (the last
    array) unless the loss read the target this call (``checked``), it cannot be read, or it is empty."""
    tb = _tb()
    read = guard if guard is not None and target.numel() > 0 and tb._values_readable(target) else None
    same = tb._same_dtype

    def run(input: Any, other: Any, *last: Any, checked: bool = False) -> Any:
        if read is not None and not checked and not read(last[0] if last else other):
            return NotImplemented
        if last:
            return kernel(input, same(other, input), same(last[0], input), *options)
        return kernel(input, same(other, input), *options)

    return run


def _poisson_nll_plan(input: Any, target: Any, *, log_input: bool, full: bool, eps: float, reduction: str) -> Any:
    if not _usable(input, reduction):
        return None
    torch = _tb()._torch()
    return _label_run(torch.poisson_nll_loss, None, target, (log_input, full, eps, _tb()._REDUCTION[reduction]))


def _gaussian_nll(input: Any, target: Any, var: Any, *, full: bool, eps: float, reduction: str, parts: Any) -> Any:
    """``parts``: :func:`polyloss.functional.likelihood.gaussian_nll_parts` bound to the backend and options,
    handed over by the loss. Where only ``input`` may need a gradient, the family's closed form in one fused
    node (``torch.nn.functional``'s composite makes some fourteen passes forward and backward); where ``var``
    needs one too, ``torch.nn.functional``'s (PyTorch's gradient by ``var``)."""
    tb = _tb()
    if not _usable(input, reduction):
        return NotImplemented
    if not isinstance(var, float):
        if not tb._values_readable(var):
            return NotImplemented  # PyTorch reads var's values (a sync; a graph break while tracing)
        var = tb._same_dtype(var, input)
    target = tb._same_dtype(target, input)
    if tb._wants_grad(input, target, None if isinstance(var, float) else var) is not None:
        return tb._run_fused("gaussian_nll_loss", parts, reduction, input, target, var)
    return tb._F().gaussian_nll_loss(input, target, var, full=full, eps=eps, reduction=reduction)


def _cosine_embedding_plan(input1: Any, input2: Any, target: Any, *, margin: float, reduction: str) -> Any:
    if input1.ndim > 2 or not _usable(input1, reduction):
        return None  # ATen takes (D,) and (N, D) only
    torch = _tb()._torch()
    return _label_run(torch.cosine_embedding_loss, _signs, target, (margin, _tb()._REDUCTION[reduction]))


#: below this many elements a custom autograd node's own cost (about 10 us) outweighs the passes it saves
_FUSED_MIN_ELEMENTS = 1 << 15


def _margin_ranking_plan(input1: Any, input2: Any, target: Any, *, margin: float, reduction: str,
                         parts: Any) -> Any:
    """ATen's kernel; where only ``input1`` needs a gradient (and it holds :data:`_FUSED_MIN_ELEMENTS` at
    least), ``parts`` (the family's closed form, bound by the loss) in one fused node instead: ATen's
    composite makes about eleven passes forward and backward, its ``clamp_min`` backward a slow select."""
    if not _usable(input1, reduction):
        return None
    tb = _tb()
    aten = _label_run(tb._torch().margin_ranking_loss, _signs, target, (margin, tb._REDUCTION[reduction]))
    fused = _label_run(partial(tb._run_fused, "margin_ranking_loss", parts, reduction), _signs, target, ())

    def run(input1: Any, input2: Any, target: Any, checked: bool = False) -> Any:
        large = input1.numel() >= _FUSED_MIN_ELEMENTS
        return (fused if large and tb._wants_grad(input1, input2, target) else aten)(input1, input2, target,
                                                                                     checked=checked)

    return run


#: below these score magnitudes PyTorch's soft margin kernel (``exp(-y x)``) overflows neither its value nor its
#: gradient (``z / (1 + z)``): ``e^80`` and ``e^700`` are within float32's and float64's range
_ATEN_SOFT_MARGIN_BOUND = {"float32": 80.0, "float64": 700.0}


def _soft_margin_plan(input: Any, target: Any, *, reduction: str, elementwise: Any) -> Any:
    """ATen's kernel below :data:`_FUSED_MIN_ELEMENTS` where every score is small enough for it (one ``aminmax``
    a call; NaN and inf fail it); else ``elementwise`` (the family's closed form, bound by the loss) in one
    fused node, which is finite for any score and, at larger sizes, makes fewer passes than ATen's composite.
    Where the target needs a gradient (ATen has none by it) or while tracing, the generic code."""
    if not _usable(input, reduction):
        return None
    tb = _tb()
    torch = tb._torch()
    bound = _ATEN_SOFT_MARGIN_BOUND.get(str(input.dtype).removeprefix("torch."), 0.0)  # 0: other dtypes, never
    small = bound > 0.0 and 0 < input.numel() < _FUSED_MIN_ELEMENTS and tb._values_readable(input)
    aten = _label_run(torch._C._nn.soft_margin_loss, _signs, target, (tb._REDUCTION[reduction],))
    fused = _label_run(partial(tb._run_fused, "soft_margin_loss", elementwise, reduction), _signs, target, ())

    def run(input: Any, target: Any, checked: bool = False) -> Any:
        if tb._wants_grad(input, target) is None:
            return NotImplemented
        if small:
            lo, hi = torch.aminmax(input.detach())
            if -bound < lo.item() and hi.item() < bound:  # (NaN fails)
                return aten(input, target, checked=checked)
        return fused(input, target, checked=checked)

    return run


def _triplet_margin_plan(anchor: Any, positive: Any, negative: Any, *, margin: float, p: float, eps: float,
                         swap: bool, reduction: str) -> Any:
    if not _usable(anchor, reduction):
        return None
    torch = _tb()._torch()
    return _label_run(torch.triplet_margin_loss, None, negative, (margin, p, eps, swap, _tb()._REDUCTION[reduction]))


def _hinge_embedding_plan(input: Any, target: Any, *, margin: float, reduction: str) -> Any:
    if not _usable(input, reduction):
        return None
    torch = _tb()._torch()
    return _label_run(torch.hinge_embedding_loss, _signs, target, (margin, _tb()._REDUCTION[reduction]))


def _multilabel_soft_margin_plan(input: Any, target: Any, *, weight: Any, reduction: str) -> Any:
    """``torch.nn.functional``'s (a composite of ATen ops); a cached plan has no weight."""
    if not _usable(input, reduction):
        return None
    tb = _tb()
    f, w = tb._F().multilabel_soft_margin_loss, tb._same_dtype(weight, input)

    def kernel(input: Any, target: Any) -> Any:
        return f(input, target, weight=w, reduction=reduction)

    return _label_run(kernel, _in_unit_interval, target, ())


def _multilabel_margin(input: Any, target: Any, *, reduction: str) -> Any:
    tb = _tb()
    torch = tb._torch()
    if input.numel() == 0:
        return NotImplemented  # ATen's "mean" of no samples is uninitialised memory
    t = target if target.dtype == torch.int64 else target.long()
    # polyloss keeps NaN (ATen's kernel skips a NaN score): NaN where the sample holds one, else 0 (amax
    # propagates NaN: one pass, then a select on one value per sample)
    top = input.detach().amax(-1)
    # on the CPU outside tracing a sum tells whether any sample has a NaN: none (the usual case), no add
    clean = tb._values_readable(top) and not bool(torch.isnan(top.sum()))
    nan = None if clean else torch.where(torch.isnan(top), top, 0.0)
    F = tb._F()
    if input.ndim <= 2:
        out = F.multilabel_margin_loss(input, t, reduction=reduction)
        return out if nan is None else out + (nan if reduction == "none" else nan.sum())
    classes = input.shape[-1]
    out = F.multilabel_margin_loss(input.reshape(-1, classes), t.reshape(-1, classes), reduction="none")
    out = out.reshape(input.shape[:-1])
    return tb._reduce(out if nan is None else out + nan, reduction)


#: loss name -> plan builder (see "kernel plans" in polyloss.backend.torch, which makes their fast paths)
KERNEL_PLANS = {
    "poisson_nll_loss": _poisson_nll_plan,
    "cosine_embedding_loss": _cosine_embedding_plan,
    "margin_ranking_loss": _margin_ranking_plan,
    "triplet_margin_loss": _triplet_margin_plan,
    "hinge_embedding_loss": _hinge_embedding_plan,
    "soft_margin_loss": _soft_margin_plan,
    "multilabel_soft_margin_loss": _multilabel_soft_margin_plan,
}
FAST_PATHS = {
    "gaussian_nll_loss": _gaussian_nll,
    "multilabel_margin_loss": _multilabel_margin,
}
