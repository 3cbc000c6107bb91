"""PyTorch fast paths of the second set of losses, merged into :data:`polyloss.backend.torch.FAST_PATHS`.

Each receives arguments the loss has already validated (label values, ``var``'s sign, class indices: read
once, by the loss's check function) and returns ``NotImplemented`` where PyTorch's semantics differ from
polyloss's -- the mean of an empty batch (PyTorch: NaN) above all -- so that the generic code runs. Where
PyTorch has a kernel it is ``torch.nn.functional``'s; ``soft_margin_loss`` instead runs the family's
closed-form value and derivative in one fused autograd node, since PyTorch's kernel overflows to inf
(and its gradient to NaN) where ``-y x`` is large.

Nothing here imports torch or :mod:`polyloss.backend.torch` at import time; the latter's helpers are
looked up when a fast path runs.
"""

from __future__ import annotations

import sys
from typing import Any

__all__ = ["FAST_PATHS"]


def _tb() -> Any:
    return sys.modules["polyloss.backend.torch"]


def _usable(input: Any, reduction: str) -> bool:
    """PyTorch's numbers are polyloss's: anything but the mean of an empty input (NaN there)."""
    return not _tb()._empty_mean(input, reduction)


def _poisson_nll(input: Any, target: Any, *, log_input: bool, full: bool, eps: float, reduction: str) -> Any:
    tb = _tb()
    if not _usable(input, reduction):
        return NotImplemented
    return tb._F().poisson_nll_loss(input, tb._same_dtype(target, input), log_input=log_input, full=full,
                                    eps=eps, reduction=reduction)


def _gaussian_nll(input: Any, target: Any, var: Any, *, full: bool, eps: float, reduction: str) -> Any:
    tb = _tb()
    if not _usable(input, reduction):
        return NotImplemented
    if not isinstance(var, float):
        if not tb._values_readable(var):
            return NotImplemented  # PyTorch reads var's values (a sync; a graph break while tracing)
        var = tb._same_dtype(var, input)
    return tb._F().gaussian_nll_loss(input, tb._same_dtype(target, input), var, full=full, eps=eps,
                                     reduction=reduction)


def _cosine_embedding(input1: Any, input2: Any, target: Any, *, margin: float, reduction: str) -> Any:
    tb = _tb()
    if input1.ndim > 2 or not _usable(input1, reduction):
        return NotImplemented  # ATen takes (D,) and (N, D) only
    return tb._F().cosine_embedding_loss(input1, tb._same_dtype(input2, input1), tb._same_dtype(target, input1),
                                         margin=margin, reduction=reduction)


def _margin_ranking(input1: Any, input2: Any, target: Any, *, margin: float, reduction: str) -> Any:
    tb = _tb()
    if not _usable(input1, reduction):
        return NotImplemented
    return tb._F().margin_ranking_loss(input1, tb._same_dtype(input2, input1), tb._same_dtype(target, input1),
                                       margin=margin, reduction=reduction)


def _triplet_margin(anchor: Any, positive: Any, negative: Any, *, margin: float, p: float, eps: float, swap: bool,
                    reduction: str) -> Any:
    tb = _tb()
    if not _usable(anchor, reduction):
        return NotImplemented
    return tb._F().triplet_margin_loss(anchor, tb._same_dtype(positive, anchor), tb._same_dtype(negative, anchor),
                                       margin=margin, p=p, eps=eps, swap=swap, reduction=reduction)


def _hinge_embedding(input: Any, target: Any, *, margin: float, reduction: str) -> Any:
    tb = _tb()
    if not _usable(input, reduction):
        return NotImplemented
    return tb._F().hinge_embedding_loss(input, tb._same_dtype(target, input), margin=margin, reduction=reduction)


def _soft_margin(input: Any, target: Any, *, reduction: str, elementwise: Any) -> Any:
    """``elementwise``: :func:`polyloss.functional.multilabel.soft_margin_elementwise` bound to the backend,
    handed over by the loss (the formula lives in the family only)."""
    tb = _tb()
    if tb._wants_grad(input, target) is None:
        return NotImplemented
    return tb._run_fused("soft_margin_loss", elementwise, reduction, input, tb._same_dtype(target, input))


def _multilabel_soft_margin(input: Any, target: Any, *, weight: Any, reduction: str) -> Any:
    tb = _tb()
    if not _usable(input, reduction):
        return NotImplemented
    return tb._F().multilabel_soft_margin_loss(input, tb._same_dtype(target, input),
                                               weight=tb._same_dtype(weight, input), reduction=reduction)


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


FAST_PATHS = {
    "poisson_nll_loss": _poisson_nll,
    "gaussian_nll_loss": _gaussian_nll,
    "cosine_embedding_loss": _cosine_embedding,
    "margin_ranking_loss": _margin_ranking,
    "triplet_margin_loss": _triplet_margin,
    "hinge_embedding_loss": _hinge_embedding,
    "soft_margin_loss": _soft_margin,
    "multilabel_soft_margin_loss": _multilabel_soft_margin,
    "multilabel_margin_loss": _multilabel_margin,
}
