"""Built-in NumPy backend, registered through the same hook a plugin uses."""

from __future__ import annotations

import math
import sys
from collections.abc import Callable
from types import ModuleType
from typing import Any

from polyloss._hooks import hookimpl
from polyloss._switches import fast_paths_enabled
from polyloss.backend._base import Backend
from polyloss.backend._base import class_rows


def _np() -> Any:
    return sys.modules["numpy"]


def _row_logsumexp(np: Any, x: Any) -> Any:
    """``logsumexp`` over the last axis of a 2-D array with one temporary of ``x``'s size.

    When every value lies where ``exp`` neither overflows (even summed over a
    row) nor leaves the normal range, no shift is needed: ``log(exp(x) @ 1)``,
    5x faster than NumPy's row-wise max and sum over a short last axis.
    Otherwise (large logits, infinities, NaN) each row is shifted by its max: a row
    holding +inf gives NaN (inf - inf, as ``torch.log_softmax``), an all -inf row -inf.
    """
    info = np.finfo(x.dtype)
    highest = math.log(float(info.max)) - math.log(max(x.shape[1], 1)) - 1.0
    lowest = math.log(float(info.tiny)) + 1.0
    if x.size and lowest <= float(np.min(x)) and float(np.max(x)) <= highest:
        return np.log(np.einsum("ij->i", np.exp(x)))  # not a BLAS matvec: its threads would spin beside torch's
    m = np.max(x, axis=1, keepdims=True)
    m[m == -np.inf] = 0.0  # an all -inf row: shift by 0
    e = np.subtract(x, m)
    np.exp(e, out=e)
    return np.log(np.sum(e, axis=1)) + m[:, 0]


def _pick_rows(np: Any, x: Any, target: Any) -> Any:
    """A new array of ``x[i, target_i]`` for each row of a 2-D ``x`` (``target`` in ``[0, C)``); through
    flat indices where ``x`` is C-contiguous, a third faster than ``x[rows, target]``."""
    rows, cols = x.shape
    if x.flags.c_contiguous and cols:
        return x.ravel()[np.arange(0, rows * cols, cols) + target]
    return x[np.arange(rows), target]


def _nothing_ignored(target: Any, ignore_index: int | None) -> bool:
    """No target can equal ``ignore_index`` (None, or negative while every target is >= 0): no masks."""
    return ignore_index is None or (ignore_index < 0 and (target.size == 0 or int(target.min()) >= 0))


def _pick_rows_mean(np: Any, x: Any, target: Any, ignore_index: int | None, sign: float,
                    offset: Any = None) -> Any:
    """Mean over the non-ignored rows of ``sign * x[i, target_i] + offset_i`` (0 when every row is ignored)."""
    if _nothing_ignored(target, ignore_index):
        picked = _pick_rows(np, x, target)  # nothing can be ignored: no masks
        picked *= sign
        if offset is not None:
            picked += offset
        total = np.add.reduce(picked)
        return total / picked.shape[0] if picked.shape[0] else total
    valid = target != ignore_index
    picked = _pick_rows(np, x, np.where(valid, target, 0))
    picked *= sign
    if offset is not None:
        picked += offset
    n = int(np.count_nonzero(valid))
    total = np.sum(picked, where=valid)
    return total / n if n else total * 0.0


def _simple_index_case(input: Any, target: Any, axis: int, weight: Any, reduction: str,
                       reductions: tuple[str, ...] = ("mean",)) -> bool:
    """The case the row kernels cover. The loss gives them int64 class indices it checked (each in [0, C) or
    equal to ``ignore_index``, which is None where no target equals it): any other integer dtype (a uint64
    would index as float64) is left to the generic code."""
    return (weight is None and reduction in reductions and input.ndim == 2 and axis == 1
            and input.dtype.kind == "f" and input.dtype.itemsize >= 4 and target.dtype == _np().int64
            and input.shape[1] > 0)


def _cross_entropy(input: Any, target: Any, *, axis: int, weight: Any, ignore_index: int | None,
                   label_smoothing: float, reduction: str) -> Any:
    rows = class_rows(input, target, axis)
    if rows is not None:
        out = _cross_entropy(*rows, axis=1, weight=weight, ignore_index=ignore_index,
                             label_smoothing=label_smoothing, reduction=reduction)
        return out.reshape(target.shape) if reduction == "none" and out is not NotImplemented else out
    np = _np()
    if label_smoothing != 0.0 or not _simple_index_case(input, target, axis, weight, reduction,
                                                         ("mean", "sum", "none")):
        return NotImplemented
    # logsumexp - x[target] per row: the full log-softmax is never formed
    if reduction == "mean":
        total = _pick_rows_mean(np, input, target, ignore_index, -1.0, _row_logsumexp(np, input))
        return np.asarray(total, dtype=input.dtype)
    if _nothing_ignored(target, ignore_index):
        loss = _row_logsumexp(np, input) - _pick_rows(np, input, target)
    else:
        valid = target != ignore_index
        loss = np.where(valid, _row_logsumexp(np, input) - _pick_rows(np, input, np.where(valid, target, 0)), 0.0)
    loss = loss.astype(input.dtype, copy=False)
    return loss if reduction == "none" else np.asarray(np.sum(loss), dtype=input.dtype)


def _nll(input: Any, target: Any, *, axis: int, weight: Any, ignore_index: int | None, reduction: str) -> Any:
    np = _np()
    if not _simple_index_case(input, target, axis, weight, reduction):
        return NotImplemented
    return np.asarray(_pick_rows_mean(np, input, target, ignore_index, -1.0), dtype=input.dtype)


def _bce(input: Any, target: Any, *, weight: Any, reduction: str) -> Any:
    np = _np()
    if weight is not None or reduction == "none" or input.dtype.itemsize < 4 or input.size == 0 or input.ndim == 0:
        return NotImplemented
    y = target if target.dtype == input.dtype else target.astype(input.dtype)
    with np.errstate(divide="ignore"):
        log_x = np.log(input)
        log_1mx = np.subtract(1.0, input)
        np.log(log_1mx, out=log_1mx)
    np.maximum(log_x, -100.0, out=log_x)
    np.maximum(log_1mx, -100.0, out=log_1mx)
    # -(y log x + (1 - y) log(1 - x)) = -(log(1 - x) + y (log x - log(1 - x)))
    np.subtract(log_x, log_1mx, out=log_x)
    log_x *= y
    log_x += log_1mx
    total = -np.sum(log_x)
    return np.asarray(total / input.size if reduction == "mean" else total, dtype=input.dtype)


def _exp_rows(np: Any, x: Any, keep_shift: bool) -> tuple[Any, Any, Any]:
    """``(e, s, None)``: ``e = exp(x)`` (a new array) and its row sums, where no shift is needed (as in
    :func:`_row_logsumexp`, whose arithmetic this repeats: the value is the forward's to the last bit); else
    ``(x - m, None, m)``, the shifted logits in a new array (to exponentiate in place) and the row shifts
    ``m`` (rows, 1). ``keep_shift``: always shift (the caller dots the shifted logits first)."""
    info = np.finfo(x.dtype)
    highest = math.log(float(info.max)) - math.log(max(x.shape[1], 1)) - 1.0
    lowest = math.log(float(info.tiny)) + 1.0
    if not keep_shift and lowest <= float(np.min(x)) and float(np.max(x)) <= highest:
        e = np.exp(x)
        return e, np.einsum("ij->i", e), None
    m = np.max(x, axis=1, keepdims=True)
    m[m == -np.inf] = 0.0
    return np.subtract(x, m), None, m


def _cross_entropy_value_and_grad(x: Any, target: Any, *, axis: int, probabilities: bool, weight: Any,
                                  sample_weight: Any, label_smoothing: float, seed: Any) -> Any:
    """Per-sample cross-entropy (not yet masked where ignored) and its gradient times ``seed`` (the per-sample
    upstream factor, 0 where ignored), from one softmax made in place in the gradient's array: four passes
    over the logits and one array of their size. ``target``: checked int64 indices (ignored entries 0) or
    class probabilities; ``sample_weight``: ``weight[target]`` (0 where ignored) or None. For 2-D index targets
    ``seed`` may also be a function of the per-sample cross-entropy returning the factor."""
    np = _np()
    rows = class_rows(x, target, axis) if not probabilities else None
    if rows is not None:
        if callable(seed):
            return NotImplemented
        seed_rows = seed if isinstance(seed, float) or seed.ndim == 0 else seed.reshape(-1)
        sw_rows = None if sample_weight is None else sample_weight.reshape(-1)
        out = _cross_entropy_value_and_grad(*rows, axis=1, probabilities=False, weight=weight,
                                            sample_weight=sw_rows, label_smoothing=label_smoothing, seed=seed_rows)
        return out if out is NotImplemented else (out[0].reshape(target.shape), out[1].reshape(x.shape))
    if not (x.ndim == 2 and axis == 1 and x.dtype.itemsize >= 4 and x.size and x.flags.c_contiguous):
        return NotImplemented
    if probabilities and tuple(target.shape) != tuple(x.shape):
        return NotImplemented
    n, c = x.shape
    eps = label_smoothing
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        if probabilities:
            per_row = not isinstance(seed, float) and seed.ndim > 0
            seed_col = seed[:, None] if per_row else seed  # pyright: ignore[reportIndexIssue]
            q = target if target.dtype == x.dtype else target.astype(x.dtype)
            if eps > 0.0:
                q = q * (1.0 - eps) + eps / c
            if weight is not None:
                q = q * weight
            e, _, m = _exp_rows(np, x, keep_shift=True)
            qz = np.einsum("ij,ij->i", q, e)  # sum_c q_c (x_c - m): each term of the loss below is >= 0
            qs = np.einsum("ij->i", q)
            np.exp(e, out=e)
            s = np.einsum("ij->i", e)
            loss = np.log(s)
            loss *= qs
            loss -= qz
            e *= (qs / s)[:, None]  # p sum_c q'_c - q'
            e -= q
            e *= seed_col
            return loss, e
        e, s, m = _exp_rows(np, x, keep_shift=eps > 0.0)
        picked = _pick_rows(np, x, target)
        smooth = None
        if eps > 0.0:  # sum_c w_c (lse - x_c) from the shifted logits: no cancellation
            smooth = -(np.einsum("ij->i", e) if weight is None else e @ weight)
        if m is not None:
            np.exp(e, out=e)
            s = np.einsum("ij->i", e)
            log_s = np.log(s)
            lse = log_s + m[:, 0]
        else:
            lse = log_s = np.log(s)
        loss = lse - picked
        if callable(seed):  # a factor that depends on the per-sample loss (the softmax focal loss)
            seed = seed(loss)
        per_row = not isinstance(seed, float) and seed.ndim > 0
        seed_col = seed[:, None] if per_row else seed  # pyright: ignore[reportIndexIssue]
        if sample_weight is not None:
            loss *= sample_weight
        scale = 1.0 if sample_weight is None else sample_weight
        if smooth is not None:
            total_weight = c if weight is None else np.sum(weight)
            smooth += log_s * total_weight
            loss *= 1.0 - eps
            loss += (eps / c) * smooth
            # p's factor: sum_c w_c ((1 - eps) [c = y] + eps / C)
            scale = (1.0 - eps) * scale + (eps / c) * total_weight
        e *= (scale * seed / s)[:, None] if per_row or not isinstance(scale, float) else (scale * seed) / s[:, None]
        hit = (1.0 - eps) * (seed if sample_weight is None else sample_weight * seed)
        flat = np.arange(0, n * c, c) + target
        e.reshape(-1)[flat] -= hit  # one write per row (distinct positions)
        if eps > 0.0:
            e -= (eps / c) * (seed_col if weight is None else seed_col * weight)
        return loss, e


def _multi_margin_value_and_grad(x: Any, target: Any, *, p: int, margin: float, axis: int, scale: Any) -> Any:
    r"""Per-sample :math:`\sum_{j \ne y} \max(0, m - x_y + x_j)^p` and its gradient times ``scale`` (per sample),
    in one array of the scores' size (``polyloss.functional.margin``'s terms, in place). Declines (generic code)
    where ``scale`` is not finite: no gradient may flow where no term is active, whatever the factor."""
    np = _np()
    rows = class_rows(x, target, axis)
    if rows is not None:
        per = not isinstance(scale, float) and scale.ndim > 0
        out = _multi_margin_value_and_grad(*rows, p=p, margin=margin, axis=1,
                                           scale=scale.reshape(-1) if per else scale)  # pyright: ignore[reportAttributeAccessIssue]
        return out if out is NotImplemented else (out[0].reshape(target.shape), out[1].reshape(x.shape))
    if not (x.ndim == 2 and axis == 1 and x.dtype.itemsize >= 4 and x.size and x.flags.c_contiguous
            and target.dtype == np.int64) or not bool(np.all(np.isfinite(scale))):
        return NotImplemented
    with np.errstate(invalid="ignore", over="ignore"):
        h, flat, total = _margin_terms(np, x, target, p, margin)
        if p == 2:
            h *= 2.0
        else:
            np.minimum(h, 1.0, out=h)
            np.ceil(h, out=h)  # [z > 0]: 0 at the kink, NaN at NaN
        own = np.einsum("ij->i", h)
        h.reshape(-1)[flat] = -own
        h *= scale[:, None] if not isinstance(scale, float) and scale.ndim else scale
    return total, h


def _margin_terms(np: Any, x: Any, target: Any, p: int, margin: float) -> tuple[Any, Any, Any]:
    """``(r, flat, total)``: ``r = max(0, m - x_y + x_j)`` in a new array (0 at ``j = y``, NaN kept), the flat
    positions of the targets and each row's sum of ``r ** p``, for a C-contiguous 2-D ``x``."""
    n, c = x.shape
    flat = np.arange(0, n * c, c) + target
    r = np.subtract(x, x.reshape(-1)[flat][:, None])
    r += margin
    r.reshape(-1)[flat] = 0.0  # the own class by a select (x_y = inf: inf - inf there)
    np.maximum(r, 0.0, out=r)
    return r, flat, np.einsum("ij,ij->i", r, r) if p == 2 else np.einsum("ij->i", r)


def _multi_margin(input: Any, target: Any, *, p: int, margin: float, weight: Any, axis: int, reduction: str) -> Any:
    """The forward of :func:`polyloss.multi_margin_loss` on one array of the scores' size (checked int64
    indices); the generic code elsewhere."""
    np = _np()
    rows = class_rows(input, target, axis)
    if rows is not None:
        out = _multi_margin(*rows, p=p, margin=margin, weight=weight, axis=1, reduction=reduction)
        return out.reshape(target.shape) if reduction == "none" and out is not NotImplemented else out
    if not (input.ndim == 2 and axis == 1 and input.dtype.itemsize >= 4 and input.size
            and input.flags.c_contiguous and target.dtype == np.int64):
        return NotImplemented
    with np.errstate(invalid="ignore", over="ignore"):
        _, _, total = _margin_terms(np, input, target, p, margin)
    loss = total / input.shape[1]
    if weight is not None:
        loss *= weight.astype(input.dtype, copy=False)[target]
    if reduction == "none":
        return loss.astype(input.dtype, copy=False)
    out = np.sum(loss)
    return np.asarray(out / loss.shape[0] if reduction == "mean" else out, dtype=input.dtype)


def _logaddexp3_into(np: Any, out: Any, a: Any, b: Any, c: Any, m: Any, tmp: Any) -> Any:
    """``out = log(e^a + e^b + e^c)`` as :func:`polyloss.functional.ctc._logaddexp` computes it (the maximum
    shifted out, 0 where all three are -inf; -inf where the sum is not positive, NaN included), in place."""
    np.maximum(a, b, out=m)
    np.maximum(m, c, out=m)
    np.putmask(m, m == -math.inf, 0.0)
    np.subtract(a, m, out=tmp)
    np.exp(tmp, out=out)
    for term in (b, c):
        np.subtract(term, m, out=tmp)
        np.exp(tmp, out=tmp)
        out += tmp
    positive = out > 0.0
    np.putmask(out, ~positive, 1.0)
    np.log(out, out=out)
    out += m
    np.putmask(out, ~positive, -math.inf)
    return out


def _ctc_alphas(lp_ext: Any, skip: Any, in_len: Any, alpha0: Any) -> Any:
    """CTC's forward recursion (:func:`polyloss.functional.ctc._alphas`) step by step in preallocated
    buffers: the log-alphas of every step, ``(T, N, L)``."""
    np = _np()
    t_max, n, ell = lp_ext.shape
    every = np.empty((t_max, n, ell), dtype=lp_ext.dtype)
    every[0] = alpha0
    padded = np.full((n, ell + 2), -math.inf, dtype=lp_ext.dtype)  # alpha at [2:], -inf before it
    skipped, m, tmp, new = (np.empty((n, ell), dtype=lp_ext.dtype) for _ in range(4))
    no_skip = ~skip
    running = in_len[:, None] > np.arange(t_max)[None, :]  # (N, T)
    for t in range(1, t_max):
        previous = every[t - 1]
        padded[:, 2:] = previous
        np.copyto(skipped, padded[:, :-2])
        np.putmask(skipped, no_skip, -math.inf)
        _logaddexp3_into(np, new, previous, padded[:, 1:-1], skipped, m, tmp)
        new += lp_ext[t]
        every[t] = previous
        np.copyto(every[t], new, where=running[:, t : t + 1])
    return every


def _ctc_occupancy(lp_ext: Any, skip_next: Any, in_len: Any, ends: Any, alphas: Any, finite_nll: Any) -> Any:
    """CTC's backward recursion and the occupancies ``exp(alpha + beta - log p + nll)`` of every step
    (the loop of :func:`polyloss.functional.ctc._ctc_value_and_grad`) in preallocated buffers: ``(T, N, L)``."""
    np = _np()
    t_max, n, ell = lp_ext.shape
    out = np.empty((t_max, n, ell), dtype=lp_ext.dtype)
    padded = np.full((n, ell + 2), -math.inf, dtype=lp_ext.dtype)  # beta at [:-2], -inf after it
    beta = padded[:, :-2]
    skipped, m, tmp, recursed = (np.empty((n, ell), dtype=lp_ext.dtype) for _ in range(4))
    no_skip = ~skip_next
    last = in_len[:, None] - 1
    for t in range(t_max - 1, -1, -1):
        np.copyto(skipped, padded[:, 2:])
        np.putmask(skipped, no_skip, -math.inf)
        _logaddexp3_into(np, recursed, beta, padded[:, 1:-1], skipped, m, tmp)
        recursed += lp_ext[t]
        np.copyto(recursed, -math.inf, where=~(last > t))
        np.copyto(recursed, np.where(ends, lp_ext[t], -math.inf), where=last == t)
        beta[...] = recursed
        both = np.add(alphas[t], beta, out=tmp)
        never = both == -math.inf
        both -= lp_ext[t]
        both += finite_nll
        np.exp(both, out=out[t])
        np.putmask(out[t], never, 0.0)
    return out


# The scaled recursions (_ctc_scaled) divide each sample's values by their sum c_t every _CTC_RESCALE steps; with
# emissions of at most e (a log-probability above 1 runs in log space) the values in between stay below (3e)^4. A
# rounding below float64's normal range then changes a value by at most _CTC_ROUNDING * 2^-1074 / min(c_t, 1) in
# the units of its step (c_t = 1 where not rescaled). Such a change moves p relatively by at most that times
# sum_s beta_t(s) / sum_s alpha_t(s) beta_t(s) (alpha and beta swapped for a backward value), and every occupancy
# absolutely by as much; the occupancies' own products (alpha rescaled to sum 1 first) add L + 1 roundings over
# sum_s alpha_t(s) beta_t(s). A sample keeps its linear-space numbers when these bounds sum to at most 1e-18 over
# its read steps (-log p then moves by at most 1e-18); otherwise it runs in log space.
_CTC_RESCALE = 4
_CTC_ROUNDING = 1e5
_CTC_UNDERFLOW_BUDGET = 1e-18 / (_CTC_ROUNDING * 2.0**-1074)


def _ctc_scaled(lp: Any, labels: Any, skip: Any, in_len: Any, ext_len: Any) -> tuple[Any, Any, Any]:
    """CTC's ``(nll, occupancy, exact)`` by the scaled linear-space recursions (float64 whatever the input).

    The classic forward-backward in probability space (Rabiner 1989; Graves et al. 2006, section 4.1):
    ``alpha_t(s) = (alpha_{t-1}(s) + alpha_{t-1}(s-1) + skip_s alpha_{t-1}(s-2)) y_t(s)`` with the emissions
    ``y_t(s) = exp(lp[t, labels[s]])``; beta likewise backwards, without its own step's emission. Every few
    steps each sample's values are divided by their sum ``c_t`` (``log p = sum_t log c_t + log(alpha(end) +
    alpha(end - 1))``); the occupancy at each step is ``alpha beta / sum_s alpha beta``. Sums and products of
    non-negative numbers only: no cancellation, so rounding stays relative (like the log-space steps') except
    below the normal range, which the bound above (``_CTC_UNDERFLOW_BUDGET``) accounts for. ``exact`` (N,) is
    False for a sample that does not meet it, with an input of length 0, a NaN or a log-probability above 1
    among the emissions of its read frames, or a non-finite result (no alignment at all): its other outputs
    are then meaningless."""
    np = _np()
    t_max, n, classes = lp.shape
    ell = labels.shape[1]
    w = ell + 2
    position = np.arange(ell)
    ends = (position >= ext_len[:, None] - 2) & (position < ext_len[:, None])  # (N, L)
    read = np.arange(t_max)[:, None] < in_len[None, :]  # (T, N)
    wild = np.zeros(n, dtype=bool)

    def padded(values: Any) -> Any:
        """(..., N, L) -> (..., N * (L + 2)): each sample's row after two zeros, one flat row (per step)."""
        out = np.zeros((*values.shape[:-2], n, w))
        out[..., 2:] = values
        return out.reshape(*values.shape[:-2], n * w)

    with np.errstate(all="ignore"):
        # the emissions in that layout: exp of the (T, N, C) log-probabilities, then one gather (a 0 after them)
        every = np.zeros((t_max, n * classes + 1))
        np.exp(lp.reshape(t_max, n * classes), out=every[:, :-1], dtype=np.float64)
        column = np.full((n, w), n * classes)
        column[:, 2:] = labels + (np.arange(n) * classes)[:, None]
        y = np.take(every, column.reshape(-1), axis=1)  # (T, N * (L + 2))
        del every
        if not float(np.max(y, initial=0.0)) <= math.e:  # a NaN, or a log-probability above 1
            bad = (y > math.e) | np.isnan(y)
            wild = np.any(bad.reshape(t_max, n, w) & read[:, :, None], axis=(0, 2))
            y[bad] = 0.0  # no NaN nor overflow anywhere: the samples share the rows of one array
        # the forward recursion, flat: the state s - k of every sample is the offset view [.. - k]
        alpha = np.zeros((t_max, n * w))
        alpha[0] = y[0] * padded((position < 2) & (position < ext_len[:, None]))
        skip_p = padded(skip)
        c, d = np.ones((t_max, n)), np.ones((t_max, n))
        add, total = np.add, np.add.reduce

        def rescale(rows: Any, out: Any) -> None:
            total(rows, axis=1, out=out)
            np.multiply(rows, (1.0 / np.where(out > 0.0, out, 1.0))[:, None], out=rows)

        rescale(alpha[0].reshape(n, w), c[0])
        for t in range(1, t_max):  # frames beyond an input length (y = 1 there) are computed, never read
            new, previous = alpha[t], alpha[t - 1]
            np.multiply(previous[:-2], skip_p[2:], out=new[2:])
            add(new[2:], previous[1:-1], out=new[2:])
            add(new[2:], previous[2:], out=new[2:])
            np.multiply(new, y[t], out=new)  # and the zeros before each row back
            if t % _CTC_RESCALE == 0:
                rescale(new.reshape(n, w), c[t])
        # the backward recursion: beta(s) = b(s) + b(s + 1) + skip_{s+2} b(s + 2), b = y_{t+1} beta_{t+1}
        start = ends / np.sum(ends, axis=1, keepdims=True)
        beta = np.zeros((t_max, n * w))
        beta[t_max - 1] = padded(start)
        skip_next = np.zeros((n, ell))
        skip_next[:, :-2] = skip[:, 2:]  # s -> s + 2 allowed
        skip_next = padded(skip_next)
        starts = set((in_len - 1).tolist())
        emitted = np.zeros(n * w + 2)
        for t in range(t_max - 2, -1, -1):
            new = beta[t]
            np.multiply(y[t + 1], beta[t + 1], out=emitted[:-2])
            np.multiply(emitted[2:], skip_next, out=new)
            add(new, emitted[1:-1], out=new)
            add(new, emitted[:-2], out=new)  # (the second zero before each row takes b(0): never read)
            rows = new.reshape(n, w)
            if (t_max - 1 - t) % _CTC_RESCALE == 0:
                rescale(rows[:, 2:], d[t])
            if t in starts:  # each sample's backward recursion starts at its last frame
                here = in_len == t + 1
                rows[here, 2:] = start[here]
                d[t, here] = 1.0
        alpha_3, beta_3 = alpha.reshape(t_max, n, w), beta.reshape(t_max, n, w)
        beta_3[:, :, 1] = 0.0  # every row now holds zeros before its states: sums over whole rows
        final = np.sum(alpha_3[np.maximum(in_len - 1, 0), np.arange(n), 2:] * ends, axis=1)
        nll = -(np.sum(np.log(c, where=read, out=np.zeros_like(c)), axis=0) + np.log(final))
        del y
        # alpha scaled to sum 1 at every step before the products (which could otherwise leave the normal range),
        # z = sum_s alpha beta; the bound's terms, each over z: the forward roundings weigh (sum of beta) / (sum
        # of alpha) / min(c, 1), the backward ones 1 / min(d, 1), the L + 1 roundings of the products at most L
        mass = total(alpha_3, axis=2)
        spread = total(beta_3, axis=2) / (mass * np.minimum(c, 1.0)) + 1.0 / np.minimum(d, 1.0) + ell
        alpha_3 /= mass[:, :, None]
        both = np.multiply(alpha_3, beta_3, out=alpha_3)
        z = total(both, axis=2)
        spread /= z
        bound = np.sum(spread, axis=0, where=read)
        occupancy = both[:, :, 2:]
        occupancy /= z[:, :, None]
        occupancy[~read] = 0.0
        exact = (bound <= _CTC_UNDERFLOW_BUDGET) & (in_len > 0) & np.isfinite(nll) & ~wild
    return nll, occupancy, exact


def _ctc_posterior(lp: Any, labels: Any, skip: Any, in_len: Any, ext_len: Any,
                   log_space: Callable[[Any], tuple[Any, Any]]) -> tuple[Any, Any]:
    """``(nll, occupancy)`` of :func:`polyloss.functional.ctc._posterior` by :func:`_ctc_scaled` (3-4x faster
    than the log-space steps at T=200, N=16, S=40); the samples it cannot guarantee come from
    ``log_space(rows)`` (the log-space recursions on those samples: their numbers to the last bit)."""
    np = _np()
    nll, occupancy, exact = _ctc_scaled(lp, labels, skip, in_len, ext_len)
    nll, occupancy = nll.astype(lp.dtype, copy=False), occupancy.astype(lp.dtype, copy=False)
    rows = np.flatnonzero(~exact)
    if rows.size:
        nll[rows], occupancy[:, rows] = log_space(rows)
    return nll, occupancy


FAST_PATHS: dict[str, Callable[..., Any]] = {
    "ctc_loss.alphas": _ctc_alphas,
    "ctc_loss.occupancy": _ctc_occupancy,
    "ctc_loss.posterior": _ctc_posterior,
    "multi_margin_loss.value_and_grad": _multi_margin_value_and_grad,
    "multi_margin_loss": _multi_margin,
    "cross_entropy.value_and_grad": _cross_entropy_value_and_grad,
    "cross_entropy": _cross_entropy,
    "nll_loss": _nll,
    "binary_cross_entropy": _bce,
}


class NumpyBackend(Backend):
    """NumPy arrays through ``array_api_compat.numpy``; values are on the host."""

    name = "numpy"
    module_name = "numpy"
    host = True

    def __init__(self) -> None:
        super().__init__()
        self.fast_paths = FAST_PATHS

    def matches(self, x: object) -> bool:
        np = sys.modules["numpy"]
        return isinstance(x, (np.ndarray, np.generic))

    def load_namespace(self) -> ModuleType:
        import array_api_compat.numpy as xp

        return xp

    def device(self, x: Any) -> Any:
        return "cpu"

    def as_array(self, value: Any) -> Any:
        np = sys.modules["numpy"]
        return value if type(value) is np.ndarray else np.asarray(value)

    def relu(self, x: Any) -> Any:
        return sys.modules["numpy"].maximum(x, 0.0)

    def logsumexp(self, x: Any, axis: int, keepdims: bool = False) -> Any:
        np = sys.modules["numpy"]
        m = np.max(x, axis=axis, keepdims=True)
        m = np.where(np.isfinite(m), m, 0.0)
        out = np.log(np.sum(np.exp(x - m), axis=axis, keepdims=True)) + m
        return out if keepdims else np.squeeze(out, axis=axis)

    def take_along_axis(self, x: Any, indices: Any, axis: int) -> Any:
        """Whole rows through one ``np.take`` when ``indices`` is constant along the axes after ``axis``
        (10-30x faster than ``np.take_along_axis``'s fancy indexing)."""
        np = _np()
        axis = axis % x.ndim
        trailing = x.shape[axis + 1:]
        same_outer = x.ndim == indices.ndim and all(
            indices.shape[d] == x.shape[d] for d in range(x.ndim) if d != axis)
        if not same_outer or indices.size == 0 or any(stride != 0 for stride in indices.strides[axis + 1:]):
            return np.take_along_axis(x, indices, axis=axis)
        lead, n = math.prod(x.shape[:axis]), x.shape[axis]
        index = indices[(Ellipsis,) + (0,) * len(trailing)].reshape(lead, -1)
        flat = index + (np.arange(lead) * n)[:, None]
        return np.take(x.reshape(lead * n, *trailing), flat.reshape(-1), axis=0).reshape(indices.shape)

    def nonzero_positions(self, mask: Any) -> Any:
        return _np().flatnonzero(mask) if fast_paths_enabled() else None

    def scatter_rows(self, values: Any, positions: Any, size: int) -> Any:
        out = _np().zeros((size, *values.shape[1:]), dtype=values.dtype)
        out[positions] = values
        return out

    def min_max(self, x: Any) -> tuple[Any, Any]:
        return x.min().item(), x.max().item()  # the methods: no array_api_compat wrapper

    def first_index(self, ids: Any, size: int) -> Any:
        """One ``np.minimum.at`` of the positions into ``size + 1`` columns (the last collects the entries of
        no id): ``N * G`` updates where the generic comparison makes ``N * G * size``."""
        np = sys.modules["numpy"]
        n, g = ids.shape
        out = np.full((n, size + 1), g, dtype=np.int64)
        np.minimum.at(out, (np.arange(n)[:, None], ids), np.arange(g, dtype=np.int64))
        return out[:, :size]

    def kth_value(self, keys: Any, position: Any, *, descending: bool = False) -> Any:
        """``np.partition`` row by row (linear time) for up to 256 rows, else one SIMD sort of all rows."""
        np = sys.modules["numpy"]
        index = keys.shape[-1] - position if descending else position - 1  # in ascending order
        if keys.ndim == 0 or math.prod(keys.shape[:-1]) > 256:
            return np.take_along_axis(np.sort(keys, axis=-1), index, axis=-1)
        rows = keys.reshape(-1, keys.shape[-1])
        flat_index = index.reshape(-1)
        values = [np.partition(row, k)[k] for row, k in zip(rows, flat_index.tolist(), strict=True)]
        return np.asarray(values, dtype=keys.dtype).reshape(index.shape)


@hookimpl
def polyloss_register_backends() -> list[Backend]:
    return [NumpyBackend()]
