"""The torch fast path of :func:`polyloss.lovasz_loss`: one Lovasz problem (row) at a time, a radix sort.

Merged into the torch backend's ``FAST_PATHS`` as ``"lovasz_loss.rows"``. The loss has checked its
arguments and flattened them to ``(N, C, S)``; the kernel returns the Lovasz extension of every row of
the loss's ``(B, K, L)`` layout and its foreground count, both ``(B, K)``, and the loss reduces them as
its generic code does (for the closed-form gradient also each pixel's derivative of its row's value and
the softmax). It differs from the generic code in three ways, none of them in the numbers:

- one row (a class over the batch, or an image's class, or a hinge problem) is solved at a time (rows
  of fewer than ``ALONE`` pixels a few together), so that only one row's sort order and temporaries
  are alive, where the generic code sorts all of them at once and keeps their ``int64`` orders for the
  gather's backward;
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


# rows of ALONE pixels or more are sorted one at a time (int32 keys: the fastest radix sort); shorter ones
# together, CHUNK pixels at a time (one sort of int64 keys: fewer calls), measured on one CPU thread
ALONE = 1 << 15
CHUNK = 1 << 17


def _sort_descending(v: Any) -> tuple[Any, Any]:
    """``(sorted, order)`` of each row of the errors ``v`` ``(R, L)`` (each +0 or above, or a NaN without its
    sign bit) in decreasing order, NaN first, ties in index order; ``order`` indexes the flattened rows.

    The stable ascending sort of the integer keys ``bits(+inf) - bits(v)`` (a NaN of any payload clamped to
    -1): one 1-d sort (PyTorch's radix sort on the CPU), float32 rows after the row's index in the high bits;
    several float64 rows (no bits to spare) sorted along the last axis."""
    torch = _tb()._torch()
    rows, length = v.shape
    int_dtype, inf = _key_dtype(v.dtype)  # type: ignore[misc]
    key = torch.sub(inf, v.view(int_dtype)).clamp_(min=-1)
    if rows == 1:
        key, order = torch.sort(key.view(-1), stable=True)
    elif int_dtype == torch.int32:  # (row, key + 1) in 31 + 33 bits
        row = torch.arange(rows, dtype=torch.int64, device=v.device).unsqueeze(-1)
        key, order = torch.sort(key.to(torch.int64).add_(1).add_(row << 31).view(-1), stable=True)
        key = key.bitwise_and_(0x7FFFFFFF).sub_(1).to(int_dtype)
    else:
        key, order = torch.sort(key, dim=-1, stable=True)
        row = torch.arange(0, rows * length, length, dtype=order.dtype, device=v.device).unsqueeze(-1)
        order = order.add_(row).view(-1)
    return key.neg_().add_(inf).view(v.dtype).view(rows, length), order


def _solve(v: Any, fg: Any, need_grad: bool, masked: bool) -> tuple[Any, Any, Any]:
    """Rows ``(R, L)``: ``(values, |F|, d values / d v)`` (``(R,)``, ``(R,)``, ``(R, L)``, the last None without
    ``need_grad``) of the Lovasz extension at the errors ``v`` (>= 0 or NaN, 0 where dropped) with foreground
    ``fg`` (floats or bools), as :func:`polyloss.functional.segmentation._lovasz_weights` and the loss's sum,
    term by term. ``masked``: the derivative is 0 at an error of 0 (else the Lovasz weight there)."""
    torch = _tb()._torch()
    v_sorted, order = _sort_descending(v)
    # (``fg[order]``, ATen's general indexing, is 4x slower than index_select)
    fg_sorted = torch.index_select(fg.reshape(-1), 0, order).to(v.dtype).view(v.shape)
    total = fg_sorted.sum(-1, keepdim=True)
    inter = torch.sub(total, fg_sorted.cumsum(-1))
    union = torch.rsub(fg_sorted, 1.0).cumsum_(-1).add_(total)
    del fg_sorted
    jaccard = inter.div_(union).neg_().add_(1.0)
    del union
    weights = torch.empty_like(jaccard)
    weights[:, :1] = jaccard[:, :1]
    torch.sub(jaccard[:, 1:], jaccard[:, :-1], out=weights[:, 1:])
    del jaccard
    values = torch.mul(v_sorted, weights).sum(-1)
    if not need_grad:
        return values, total[:, 0], None
    if masked:
        weights.masked_fill_(v_sorted <= 0.0, 0.0)  # dropped errors (and the hinge's relu at 0) pass nothing
    d = torch.empty_like(weights).view(-1).scatter_(0, order, weights.view(-1))
    return values, total[:, 0], d.view(v.shape)


def _row_view(a: Any, hinge: bool, per_image: bool) -> Any:
    """``a`` (N, C, S) as ``(R, ...)``: entry ``r`` holds row ``r``'s pixels in the (B, K, L) layout's order
    (a view where ``a`` is contiguous; multiclass over the batch: (C, N, S), a class a row)."""
    n, c, s = a.shape
    if hinge:
        return a.reshape(n, c * s) if per_image else a.reshape(1, n * c * s)
    return a.reshape(n * c, s) if per_image else a.transpose(0, 1)


def _forward(xs: Any, ts: Any, valid: Any, hinge: bool, per_image: bool, from_logits: bool,
             need_grad: bool) -> tuple[Any, Any, Any, Any]:
    """``(losses, totals, d, p)``: the rows' values and foreground counts ``(B, K)``; with ``need_grad``, ``d``
    (N, C, S), the derivative of each pixel's row value by ``x`` (hinge) or by ``p`` (softmax), and ``p``
    (the softmax probabilities, None in the hinge modes or for probabilities given). Rows of ``L`` pixels are
    solved one at a time from ``L = ALONE`` up, else ``CHUNK // L`` at a time."""
    torch = _tb()._torch()
    n, c, s = xs.shape
    losses = xs.new_empty((n if per_image else 1, 1 if hinge else c))
    totals = torch.empty_like(losses)
    p = torch.softmax(xs, dim=1) if from_logits and not hinge else None
    source = _row_view(xs if p is None else p, hinge, per_image)
    drop = None if valid is None else valid <= 0.0  # the ignored pixels: (N, C, S), or (N, S) in multiclass
    if hinge:
        ts = _row_view(ts, hinge, per_image)
        drop = None if drop is None else _row_view(drop, hinge, per_image)
    else:
        drop = None if drop is None else drop[:, 0, :]
        ts = ts.long() if drop is None else ts.long().masked_fill_(drop, -1)  # no class at ignored pixels
        if not per_image:
            ts, drop = ts.reshape(1, n * s), None if drop is None else drop.reshape(1, n * s)
    d_all = xs.new_empty(xs.shape) if need_grad else None  # contiguous: its row view is a view
    d_rows = None if d_all is None else _row_view(d_all, hinge, per_image)
    count, length = losses.numel(), xs.numel() // losses.numel()
    step = 1 if length >= ALONE else max(1, CHUNK // length)
    for r0 in range(0, count, step):
        r1 = min(count, r0 + step)
        part = source[r0:r1].reshape(r1 - r0, length).contiguous()  # (a view of other strides where S = 1)
        if hinge:
            t = ts[r0:r1].reshape(r1 - r0, length).contiguous()
            sign = 2.0 * t - 1.0
            e = torch.mul(part, sign).neg_().add_(1.0)
            dropped = e <= 0.0  # the relu's kink and below (NaN kept)
            if drop is not None:
                dropped.logical_or_(drop[r0:r1].reshape(dropped.shape))
            e.masked_fill_(dropped, 0.0).abs_()  # |.|: a NaN's sign bit cleared, as the key needs
            del dropped
        else:
            classes = torch.arange(r0, r1, device=xs.device)
            images = classes // c if per_image else None
            t = (ts if images is None else ts[images]) == (classes % c).unsqueeze(-1)
            sign = part - t.to(part.dtype)
            e = torch.abs(sign)
            if drop is not None:
                e.masked_fill_(drop if images is None else drop[images], 0.0)
        # a multiclass error of 0 is where p = t: its gradient, times sign(p - t) = 0, is 0 unmasked
        values, total, d = _solve(e, t, need_grad, hinge or drop is not None)
        losses.view(-1)[r0:r1] = values
        totals.view(-1)[r0:r1] = total
        del e
        if d_rows is not None:
            if hinge:
                sign.neg_()  # d error / d x = -(2 t - 1)
            else:
                torch.sign(sign, out=sign)  # d |p - t| / d p (0 at p = t, as autograd's abs)
            d_rows[r0:r1] = sign.mul_(d).view(d_rows[r0:r1].shape)
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
            if p is not None:  # the softmax's backward p (g - sum_c p g) in place: no second image-sized buffer
                dot = torch.mul(p[:, 0], g[:, 0])
                for k in range(1, p.shape[1]):
                    dot.addcmul_(p[:, k], g[:, k])
                g.sub_(dot.unsqueeze(1)).mul_(p)
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
