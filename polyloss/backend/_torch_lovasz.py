"""The torch fast path of :func:`polyloss.lovasz_loss`: one Lovasz problem (row) at a time, a radix sort.

Merged into the torch backend's ``FAST_PATHS`` as ``"lovasz_loss.rows"``. The loss has checked its
arguments and flattened them to ``(N, C, S)``; the kernel returns the Lovasz extension of every row of
the loss's ``(B, K, L)`` layout and its foreground count, both ``(B, K)``, and the loss reduces them as
its generic code does. It differs from the generic code in three ways, none of them in the numbers:

- one row (a class over the batch, or an image's class, or a hinge problem) is solved at a time, so
  that only one row's sort order and temporaries are alive, where the generic code sorts all of them
  at once and keeps their ``int64`` orders for the gather's backward;
- the errors are sorted as integer keys: a non-negative float's bits, read as an integer, order as the
  float does, and ``torch.sort`` of a 1-d integer tensor on the CPU is a radix sort (3-4x faster than
  its comparison sort of floats). The sort is stable, NaN (any payload) comes first and the errors the
  loss drops (an error of at most 0 in the hinge's ``relu``, an ignored pixel) are keyed as 0, last:
  their order among themselves changes no term of the value or of its gradient;
- the backward is a custom :class:`torch.autograd.Function`'s: the gradient of a row's value with
  respect to its errors is the Lovasz weight vector scattered back through the sort, computed in the
  forward (one ``(N, C, S)`` tensor, with the sign of ``d error / d (x or p)``), then scaled by the
  upstream gradient of each row and taken through the softmax.

It runs in eager mode only: while ``torch.compile`` or a ``torch.func`` transform traces, or where the
target needs a gradient too, the generic code runs (``NotImplemented``).
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from typing import Any

__all__ = ["FAST_PATHS"]

_cache: dict[str, Any] = {}


def _tb() -> Any:
    return sys.modules["polyloss.backend.torch"]


def _key_dtype(dtype: Any) -> tuple[Any, int] | None:
    """The integer dtype of a float dtype's bits, and the bits of ``+inf``; None: no fast path."""
    torch = _tb()._torch()
    if dtype == torch.float32:
        return torch.int32, 0x7F800000
    if dtype == torch.float64:
        return torch.int64, 0x7FF0000000000000
    return None


def _sort_descending(v: Any) -> tuple[Any, Any]:
    """``(sorted, order)`` of the 1-d errors ``v`` (each +0 or above, or a NaN without its sign bit) in
    decreasing order, NaN first, ties in index order: the stable ascending sort of ``bits(+inf) - bits(v)``
    (a NaN of any payload clamped to -1)."""
    torch = _tb()._torch()
    int_dtype, inf = _key_dtype(v.dtype)  # type: ignore[misc]
    key = torch.sub(inf, v.view(int_dtype)).clamp_(min=-1)
    key, order = torch.sort(key, stable=True)
    return key.neg_().add_(inf).view(v.dtype), order


def _solve(v: Any, fg: Any, need_grad: bool, masked: bool) -> tuple[Any, Any, Any]:
    """One row: ``(value, |F|, d value / d v)`` (the last None without ``need_grad``) of the Lovasz extension
    at the 1-d errors ``v`` (>= 0 or NaN, 0 where dropped) with foreground ``fg`` (floats or bools), as
    :func:`polyloss.functional.segmentation._lovasz_weights` and the loss's sum, term by term. ``masked``:
    the derivative is 0 at an error of 0 (else the Lovasz weight there)."""
    torch = _tb()._torch()
    v_sorted, order = _sort_descending(v)
    fg_sorted = torch.index_select(fg, 0, order).to(v.dtype)  # (``fg[order]``, ATen's indexing, is 4x slower)
    total = fg_sorted.sum()
    inter = torch.sub(total, fg_sorted.cumsum(0))
    union = torch.rsub(fg_sorted, 1.0).cumsum_(0).add_(total)
    del fg_sorted
    jaccard = inter.div_(union).neg_().add_(1.0)
    del union
    weights = torch.empty_like(jaccard)
    weights[:1] = jaccard[:1]
    torch.sub(jaccard[1:], jaccard[:-1], out=weights[1:])
    del jaccard
    value = torch.mul(v_sorted, weights).sum()
    if not need_grad:
        return value, total, None
    if masked:
        weights.masked_fill_(v_sorted <= 0.0, 0.0)  # dropped errors (and the hinge's relu at 0) pass nothing
    return value, total, torch.empty_like(weights).scatter_(0, order, weights)


Row = tuple[int, int, tuple[Any, ...], tuple[Any, ...]]


def _rows(hinge: bool, per_image: bool, n: int, c: int) -> Iterator[Row]:
    """``(b, k, index, pixels)``: each row of the (B, K, L) layout, the part of (N, C, S) it holds and that
    part's pixels in the (N, S) class indices (multiclass) or (N, C, S) masks (hinge)."""
    for b in range(n if per_image else 1):
        if hinge:
            index = (b,) if per_image else ()
            yield b, 0, index, index
        else:
            for k in range(c):
                yield b, k, (b, k) if per_image else (slice(None), k), (b,) if per_image else ()


def _forward(xs: Any, ts: Any, valid: Any, hinge: bool, per_image: bool, from_logits: bool,
             need_grad: bool) -> tuple[Any, Any, Any, Any]:
    """``(losses, totals, d, p)``: the rows' values and foreground counts ``(B, K)``; with ``need_grad``, ``d``
    (N, C, S), the derivative of each pixel's row value by ``x`` (hinge) or by ``p`` (softmax), and ``p``
    (the softmax probabilities, None in the hinge modes or for probabilities given)."""
    torch = _tb()._torch()
    n, c, _ = xs.shape
    losses = xs.new_empty((n if per_image else 1, 1 if hinge else c))
    totals = torch.empty_like(losses)
    p = torch.softmax(xs, dim=1) if from_logits and not hinge else None
    source = xs if p is None else p
    drop = None if valid is None else valid <= 0.0  # the ignored pixels: (N, C, S), or (N, S) in multiclass
    if not hinge:
        drop = None if drop is None else drop[:, 0, :]
        ts = ts.long() if drop is None else ts.long().masked_fill_(drop, -1)  # no class at ignored pixels
    d_all = torch.empty_like(xs) if need_grad else None
    for b, k, index, pixels in _rows(hinge, per_image, n, c):
        part, t = source[index], ts[pixels]
        if hinge:
            sign = 2.0 * t - 1.0
            e = torch.mul(part, sign).neg_().add_(1.0)
            dropped = e <= 0.0  # the relu's kink and below (NaN kept)
            if drop is not None:
                dropped.logical_or_(drop[index])
            e.masked_fill_(dropped, 0.0).abs_()  # |.|: a NaN's sign bit cleared, as the key needs
            del dropped
        else:
            t = t == k
            sign = part - t.to(part.dtype)
            e = torch.abs(sign)
            if drop is not None:
                e.masked_fill_(drop[pixels], 0.0)
        # a multiclass error of 0 is where p = t: its gradient, times sign(p - t) = 0, is 0 unmasked
        value, total, d = _solve(e.reshape(-1), t.reshape(-1), need_grad, hinge or drop is not None)
        losses[b, k] = value
        totals[b, k] = total
        del e
        if d_all is not None:
            if hinge:
                sign.neg_()  # d error / d x = -(2 t - 1)
            else:
                torch.sign(sign, out=sign)  # d |p - t| / d p (0 at p = t, as autograd's abs)
            d_all[index] = sign.mul_(d.view(sign.shape))
    return losses, totals, d_all, p


def _function() -> Any:
    """``_LovaszRows.apply(xs, ts, valid, hinge, per_image, from_logits) -> (losses, totals)``, whose backward
    is ``d`` times the rows' upstream gradients, through the softmax."""
    fn = _cache.get("function")
    if fn is not None:
        return fn
    torch = _tb()._torch()

    class _LovaszRows(torch.autograd.Function):  # type: ignore[misc,name-defined]
        @staticmethod
        def forward(ctx: Any, xs: Any, ts: Any, valid: Any, hinge: bool, per_image: bool,
                    from_logits: bool) -> Any:
            losses, totals, d, p = _forward(xs, ts, valid, hinge, per_image, from_logits, True)
            ctx.save_for_backward(d, p)
            ctx.mark_non_differentiable(totals)
            return losses, totals

        @staticmethod
        def backward(ctx: Any, grad_losses: Any, _: Any) -> Any:
            if torch.is_grad_enabled():
                raise RuntimeError(
                    "polyloss.lovasz_loss: the fast path's backward has no second derivative (backward with "
                    "create_graph=True); run the loss under polyloss.fast_paths(False) to differentiate "
                    "autograd's graph of the generic code instead"
                )
            d, p = ctx.saved_tensors
            g = d * grad_losses.unsqueeze(-1)
            if p is not None:
                g = torch.ops.aten._softmax_backward_data(g, p, 1, p.dtype)
            return g, None, None, None, None, None

    _cache["function"] = _LovaszRows
    return _LovaszRows


def _lovasz_rows(xs: Any, ts: Any, valid: Any, *, hinge: bool, per_image: bool, from_logits: bool,
                 need_grad: bool) -> Any:
    """``(losses, totals, d, p)`` of :func:`polyloss.lovasz_loss` (as :func:`_forward`) from its flattened
    ``(N, C, S)`` input, its targets (multiclass: the ``(N, S)`` class indices; hinge: ``(N, C, S)`` masks, 0
    at ignored pixels) and the float mask of the kept pixels (``(N, 1, S)`` or ``(N, C, S)``; None: all kept).

    For the loss (``need_grad`` false) ``d`` and ``p`` are None and ``losses`` is differentiable (by the custom
    backward) where ``xs`` requires grad; for the closed-form gradient, only where it does not (the gradient
    built from ``xs`` by autograd-traced operations stays differentiable: the generic code's)."""
    tb = _tb()
    wants = tb._wants_grad(xs, ts, valid)
    if wants is None or (need_grad and wants) or _key_dtype(xs.dtype) is None or xs.numel() == 0:
        return NotImplemented  # tracing, a target needing a gradient, half precision, or nothing to sort
    if hinge:
        ts = tb._same_dtype(ts, xs)
    if wants:
        losses, totals = _function().apply(xs, ts, valid, hinge, per_image, from_logits)
        return losses, totals, None, None
    losses, totals, d, p = _forward(xs, ts, valid, hinge, per_image, from_logits, need_grad)
    return losses, totals, d, p if need_grad else None


FAST_PATHS = {"lovasz_loss.rows": _lovasz_rows}
