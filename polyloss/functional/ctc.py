"""Connectionist temporal classification (CTC) loss, with its closed-form gradient.

The forward (alpha) and backward (beta) recursions run in log space over the time
steps, vectorised over the batch and the extended label sequence; PyTorch's native
kernel is the torch fast path (``polyloss/backend/_torch_ctc.py``). NumPy's gradient
runs scaled linear-space recursions (``ctc_loss.posterior``), each sample falling back
to the log-space steps where an underflow bound is not met.
Each loss is declared with ``@loss`` and its gradient, next to it, with ``@gradient(...)``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from polyloss import _checks as v
from polyloss._namespace import check_same
from polyloss._namespace import resolve
from polyloss._switches import fast_paths_enabled
from polyloss.backend._base import Backend
from polyloss.functional._common import compute_dtype
from polyloss.functional._common import finish
from polyloss.functional._common import runs_fused
from polyloss.functional._common import try_fast_path
from polyloss.functional._define import gradient
from polyloss.functional._define import loss
from polyloss.functional._define import value_and_gradient
from polyloss.functional._reductions import upstream
from polyloss.typing import Array
from polyloss.typing import ArrayT
from polyloss.typing import Reduction

__all__ = ["ctc_loss", "ctc_loss_grad"]

NEG_INF = -math.inf


@dataclass
class _Lattice:
    backend: Backend
    lp: Any  # (T, N, C) log-probabilities, compute dtype
    labels: Any  # (N, L) the extended label sequence (blank, l1, blank, l2, ..., blank), int64
    lp_ext: Any  # (T, N, L) log-probabilities of the extended labels (None until a log-space recursion needs them)
    skip: Any  # (N, L) bool: the transition s - 2 -> s is allowed
    in_len: Any  # (N,) int64
    ext_len: Any  # (N,) int64: 2 * target length + 1
    target_len: Any  # (N,) int64


def _lengths(backend: Backend, lengths: Any, n: int, name: str, like: Any) -> Any:
    """A length per sample as int64 (Python sequences of ints accepted, as PyTorch)."""
    xp = backend.xp
    if isinstance(lengths, (list, tuple)):
        if not all(type(k) is int for k in lengths):
            raise TypeError(f"{name} must hold integers")
        lengths = xp.asarray(lengths, dtype=xp.int64, device=backend.device(like))
    else:
        check_same(backend, lengths, name)
        if backend.dtype_kind(lengths.dtype) != "i":
            raise TypeError(f"{name} must have an integer dtype, got {lengths.dtype}")
    if tuple(lengths.shape) != (n,):
        raise ValueError(f"{name} must have shape ({n},) (one length per sample), got {tuple(lengths.shape)}")
    return xp.astype(lengths, xp.int64) if lengths.dtype != xp.int64 else lengths


def _check_values(backend: Backend, lengths: Any, maximum: int, name: str, what: str) -> None:
    if not backend.is_host_array(lengths) or lengths.shape[0] == 0:
        return
    xp = backend.xp
    lo, hi = int(xp.min(lengths)), int(xp.max(lengths))
    if lo < 0 or hi > maximum:
        raise ValueError(f"{name} must lie in [0, {maximum}] ({what}), got {lo if lo < 0 else hi}")


def _logaddexp(backend: Backend, *terms: Any) -> Any:
    """``log(sum(e^term))`` element-wise, -inf where every term is, with a zero (not NaN) derivative there."""
    xp = backend.xp
    m = terms[0]
    for term in terms[1:]:
        m = xp.maximum(m, term)
    m = backend.stop_gradient(xp.where(m == NEG_INF, 0.0, m))
    total = xp.exp(terms[0] - m)
    for term in terms[1:]:
        total = total + xp.exp(term - m)
    positive = total > 0.0
    return xp.where(positive, m + xp.log(xp.where(positive, total, 1.0)), NEG_INF)


def _shift(xp: Any, a: Any, k: int) -> Any:
    """``a`` moved ``k`` positions along its last axis (right for k > 0, left for k < 0), -inf filled."""
    size = a.shape[-1]
    kk = min(abs(k), size)  # in-bounds slices only (the array API leaves others unspecified)
    fill = xp.full_like(a[..., :kk], NEG_INF)
    if k > 0:
        return xp.concat([fill, a[..., : size - kk]], axis=-1)
    return xp.concat([a[..., kk:], fill], axis=-1)


def _lattice(
    log_probs: Any, targets: Any, input_lengths: Any, target_lengths: Any, blank: Any, reduction: str,
    zero_infinity: Any, *, gather: bool = True,
) -> _Lattice:
    """Every check (shared by the loss and its gradient), then the extended labels and, with ``gather``, their
    log-probabilities (else gathered by :func:`_gathered` where needed)."""
    backend = resolve(log_probs, targets)
    v.check_reduction(reduction)
    v.check_floating(backend, log_probs, "log_probs")
    if not isinstance(zero_infinity, bool):
        raise TypeError(f"zero_infinity must be a bool, got {type(zero_infinity).__name__}")
    if log_probs.ndim != 3:
        raise ValueError(f"log_probs must be (T, N, C), got shape {tuple(log_probs.shape)}")
    t_max, n, c = log_probs.shape
    if type(blank) is not int:
        raise TypeError(f"blank must be an int, got {type(blank).__name__}")
    if not 0 <= blank < c:
        raise ValueError(f"blank={blank} must be a class index in [0, {c})")
    if backend.dtype_kind(targets.dtype) != "i":
        raise TypeError(f"targets must hold integer class indices, got dtype {targets.dtype}")
    if targets.ndim != 2 or targets.shape[0] != n:
        raise ValueError(f"targets must be padded (N, S) = ({n}, S), got shape {tuple(targets.shape)}")
    s_max = targets.shape[1]
    in_len = _lengths(backend, input_lengths, n, "input_lengths", log_probs)
    target_len = _lengths(backend, target_lengths, n, "target_lengths", log_probs)
    _check_values(backend, in_len, t_max, "input_lengths", "the time steps of log_probs")
    _check_values(backend, target_len, s_max, "target_lengths", "the padded targets' length")
    xp = backend.xp
    device = backend.device(log_probs)
    position = xp.arange(s_max, dtype=xp.int64, device=device)
    used = xp.expand_dims(position, axis=0) < xp.expand_dims(target_len, axis=1)  # (N, S)
    wide = xp.astype(targets, xp.int64)
    if backend.is_host_array(targets) and n * s_max:
        bad = used & ((wide < 0) | (wide >= c) | (wide == blank))
        if bool(xp.any(bad)):
            value = int(xp.min(xp.where(bad, wide, 2**62)))
            raise ValueError(
                f"targets hold {value}: a label must be a class index in [0, {c}) other than blank={blank}"
            )
    labels_only = xp.where(used, wide, blank)
    # the extended sequence: blank at even positions, the labels at odd ones
    ext = xp.reshape(xp.stack([xp.full((n, s_max), blank, dtype=xp.int64, device=device), labels_only], axis=2),
                     (n, 2 * s_max))
    labels = xp.concat([ext, xp.full((n, 1), blank, dtype=xp.int64, device=device)], axis=1)
    lp = compute_dtype(backend, log_probs)[0]
    # frames beyond each input length are never read: 0 there keeps their values out of every derivative
    frames = xp.reshape(xp.arange(t_max, device=device), (t_max, 1, 1))
    lp = xp.where(frames < xp.reshape(in_len, (1, n, 1)), lp, 0.0)
    previous = _shift(xp, xp.astype(labels, lp.dtype), 2)
    skip = (labels != blank) & (xp.astype(labels, lp.dtype) != previous)
    lt = _Lattice(backend, lp, labels, None, skip, in_len, 2 * target_len + 1, target_len)
    return _gathered(lt) if gather else lt


def _gathered(lt: _Lattice) -> _Lattice:
    """``lt`` with the log-probabilities of its extended labels, ``lp_ext`` (T, N, L)."""
    if lt.lp_ext is not None:
        return lt
    backend, xp = lt.backend, lt.backend.xp
    t_max, n, ell = lt.lp.shape[0], lt.lp.shape[1], lt.labels.shape[1]
    if t_max * n * ell:
        index = xp.broadcast_to(xp.expand_dims(lt.labels, axis=0), (t_max, n, ell))
        lp_ext = backend.take_along_axis(lt.lp, index, axis=2)
    else:
        lp_ext = xp.zeros((t_max, n, ell), dtype=lt.lp.dtype, device=backend.device(lt.lp))
    return _Lattice(backend, lt.lp, lt.labels, lp_ext, lt.skip, lt.in_len, lt.ext_len, lt.target_len)


def _alphas(lt: _Lattice, keep_all: bool) -> tuple[Any, Any]:
    """The forward recursion: the final log-alphas (N, L) (frozen after each input length) and, with
    ``keep_all``, the log-alphas of every time step (indexable by step; a backend's kernel gives them all)."""
    xp = lt.backend.xp
    t_max, n, ell = lt.lp_ext.shape
    position = xp.arange(ell, dtype=xp.int64, device=lt.backend.device(lt.lp))
    first = (xp.expand_dims(position, axis=0) < xp.expand_dims(lt.ext_len, axis=1)) & (
        xp.expand_dims(position, axis=0) < 2)
    alpha = xp.where(first, lt.lp_ext[0, ...], NEG_INF) if t_max else xp.full(
        (n, ell), NEG_INF, dtype=lt.lp.dtype, device=lt.backend.device(lt.lp))
    # an input of length 0 has only the empty path (of probability 1 when the target is empty)
    empty_path = xp.where(xp.expand_dims(position, axis=0) == 0, 0.0, xp.full_like(alpha, NEG_INF))
    alpha = xp.where(xp.expand_dims(lt.in_len, axis=1) > 0, alpha, empty_path)
    kernel = lt.backend.fast_paths.get("ctc_loss.alphas") if fast_paths_enabled() and t_max else None
    if kernel is not None:  # the same steps, in place (a host backend's loop without allocations)
        every = kernel(lt.lp_ext, lt.skip, lt.in_len, alpha)
        return every[t_max - 1, ...], every
    history = [alpha] if keep_all else []
    for t in range(1, t_max):
        skipped = xp.where(lt.skip, _shift(xp, alpha, 2), NEG_INF)
        new = _logaddexp(lt.backend, alpha, _shift(xp, alpha, 1), skipped) + lt.lp_ext[t, ...]
        alpha = xp.where(xp.expand_dims(lt.in_len, axis=1) > t, new, alpha)
        if keep_all:
            history.append(alpha)
    return alpha, history


def _nll(lt: _Lattice, alpha: Any) -> Any:
    """``-log p(target | input)`` per sample from the final log-alphas."""
    xp = lt.backend.xp
    last = xp.expand_dims(lt.ext_len - 1, axis=1)
    end = xp.squeeze(lt.backend.take_along_axis(alpha, last, axis=1), axis=1)
    before = xp.squeeze(lt.backend.take_along_axis(alpha, xp.where(last > 0, last - 1, 0), axis=1), axis=1)
    before = xp.where(lt.ext_len > 1, before, NEG_INF)
    return -_logaddexp(lt.backend, end, before)


def _reduce_ctc(lt: _Lattice, nll: Any, reduction: str, zero_infinity: bool) -> tuple[Any, Any]:
    """``(value, per-sample upstream factor of the reduction)``: "mean" divides each loss by its
    target length (at least 1), then averages over the batch, as PyTorch."""
    xp = lt.backend.xp
    if zero_infinity:
        nll = xp.where(nll == math.inf, 0.0, nll)
    n = nll.shape[0]
    if reduction == "none":
        return nll, None
    if reduction == "sum":
        return lt.backend.as_array(xp.sum(nll)), None
    lengths = xp.astype(xp.where(lt.target_len > 0, lt.target_len, 1), nll.dtype)
    total = xp.sum(nll / lengths)
    return lt.backend.as_array(total / n if n else total), lengths


@loss
def ctc_loss(
    log_probs: ArrayT,
    targets: Array,
    input_lengths: Array | Sequence[int],
    target_lengths: Array | Sequence[int],
    *,
    blank: int = 0,
    reduction: Reduction = "mean",
    zero_infinity: bool = False,
) -> ArrayT:
    r"""Connectionist temporal classification loss (Graves et al., ICML 2006).

    .. math::
        \ell_n = -\log \sum_{\pi \in \mathcal{B}^{-1}(y_n)} \prod_{t < T_n} p_t(\pi_t)

    over the alignments :math:`\pi` of length :math:`T_n` that collapse (repeats merged,
    blanks removed) to the target :math:`y_n`, computed by the forward recursion in log space.

    Args:
        log_probs: ``(T, N, C)`` log-probabilities (``log_softmax`` over the classes).
        targets: ``(N, S)`` integer labels padded to ``S`` (the padding is never read).
        input_lengths: ``(N,)`` integers in [0, T] (an array or a sequence of ints).
        target_lengths: ``(N,)`` integers in [0, S].
        blank: the blank class index, default 0.
        reduction: ``"mean"`` (default: each loss divided by its target length, at least 1,
            then the batch mean, as PyTorch), ``"sum"`` or ``"none"`` (``(N,)``).
        zero_infinity: an impossible alignment (target longer than the input allows) gives
            ``inf``; with ``zero_infinity=True`` it gives 0 and a zero gradient.

    The gradient (:func:`polyloss.value_and_grad`, w.r.t. ``log_probs``) is PyTorch's:
    :math:`e^{\log p_t(c)} - \gamma_t(c)` with :math:`\gamma` the posterior occupancy of class
    ``c`` at ``t`` (from the alpha-beta recursions), 0 beyond each input length; it equals
    the true gradient after a ``log_softmax`` (the :math:`e^{\log p}` term then cancels), and
    on torch the generic path's autograd gives the same numbers. On NumPy the gradient (and the
    value :func:`polyloss.value_and_grad` returns with it) comes from the scaled linear-space
    recursions (Rabiner's scaling, in float64 also for float32 input), within 1e-12 of the log-space
    numbers; a sample whose probabilities leave float64's range there (a bound on what the
    underflows can change is checked per sample), or that holds a NaN or no alignment, runs in log
    space and gives its numbers to the last bit.

    Edge rules: a NaN (or +inf) anywhere in a sample's frames below its input length, even at
    a class no alignment reads, gives NaN for that sample (never hidden; PyTorch's kernel skips
    unread entries) and a NaN gradient on those frames; frames beyond each input length are
    never read (any value there, NaN included, changes nothing and gets a zero gradient); an
    impossible alignment is ``inf`` with a NaN gradient on its frames (PyTorch's), or 0 with a
    zero gradient with ``zero_infinity``, not an error; an input of length 0 gives 0 for an
    empty target and ``inf`` otherwise; a label outside [0, C) or equal to ``blank`` (within the
    target length), or a length out of range, is a ``ValueError`` where values can be read
    without a sync (elsewhere not checked); a ``blank`` outside [0, C), or ``log_probs`` not
    3-D, is a ``ValueError``; integer targets and lengths of any integer dtype work (lengths
    also as Python sequences); the mean over an empty batch is 0.

    Matches ``torch.nn.functional.ctc_loss`` (the torch fast path is that kernel).
    """
    lt = _lattice(log_probs, targets, input_lengths, target_lengths, blank, reduction, zero_infinity)
    backend, xp = lt.backend, lt.backend.xp
    read = _read_frames(lt)
    nll = try_fast_path(backend, "ctc_loss", log_probs, targets, lt.in_len, lt.target_len, blank=blank,
                        reduction="none", zero_infinity=zero_infinity)
    if nll is NotImplemented:
        alpha, _ = _alphas(lt, False)
        nll = _nll(lt, alpha)
        # a term of value 0 whose derivative is e^{log p} on the frames read: PyTorch's gradient convention
        p = xp.exp(lt.lp)
        nll = nll + xp.sum(xp.sum(xp.where(read, p - backend.stop_gradient(p), 0.0), axis=2), axis=0)
    else:
        nll = v.as_dtype_of(backend, nll, lt.lp)
    poisoned, flagged = _flags(lt, read, nll, zero_infinity)
    nll = xp.where(poisoned, math.nan, nll)
    # a NaN gradient on the read frames of a flagged sample (PyTorch's for an infinite loss): a term of
    # value 0 whose derivative is sqrt'(0) * 0 = NaN there, and exactly 0 elsewhere
    flag = read & xp.expand_dims(xp.expand_dims(flagged, axis=0), axis=2)
    d = lt.lp - backend.stop_gradient(lt.lp)
    nll = nll + xp.sum(xp.sum(xp.where(flag, xp.sqrt(xp.where(flag, d * d, 1.0)), 0.0), axis=2), axis=0)
    value, _ = _reduce_ctc(lt, nll, reduction, zero_infinity)
    return finish(backend, value, log_probs)


def _read_frames(lt: _Lattice) -> Any:
    """(T, N, 1) bool: the frames below each input length (the only ones any alignment reads)."""
    xp = lt.backend.xp
    frames = xp.reshape(xp.arange(lt.lp.shape[0], device=lt.backend.device(lt.lp)), (lt.lp.shape[0], 1, 1))
    return frames < xp.reshape(lt.in_len, (1, lt.lp.shape[1], 1))


def _flags(lt: _Lattice, read: Any, nll: Any, zero_infinity: bool) -> tuple[Any, Any]:
    """``(poisoned, flagged)`` per sample: a NaN or +inf among its read frames (any class: a NaN is never
    hidden, even where no alignment reads it), and poisoned or, without ``zero_infinity``, impossible
    (an infinite loss): the samples whose gradient is NaN on their read frames."""
    xp = lt.backend.xp
    bad = read & ((lt.lp != lt.lp) | (lt.lp == math.inf))
    poisoned = xp.any(xp.any(bad, axis=2), axis=0)
    return poisoned, poisoned if zero_infinity else poisoned | (nll == math.inf)


@gradient(ctc_loss)
def ctc_loss_grad(
    log_probs: Any,
    targets: Any,
    input_lengths: Any,
    target_lengths: Any,
    *,
    blank: int = 0,
    reduction: Reduction = "mean",
    zero_infinity: bool = False,
    cotangent: Any = None,
) -> Any:
    r"""Gradient of :func:`polyloss.ctc_loss` w.r.t. ``log_probs`` (PyTorch's convention, see the loss):
    :math:`e^{\log p_t(c)} - \exp(\log\sum_{s: l'_s = c} \alpha_t(s)\beta_t(s) + \ell - \log p_t(c))`."""
    lt = _lattice(log_probs, targets, input_lengths, target_lengths, blank, reduction, zero_infinity, gather=False)
    return finish(lt.backend, _ctc_value_and_grad(lt, reduction, zero_infinity, cotangent)[1], log_probs)


@value_and_gradient(ctc_loss)
def _ctc_loss_value_and_grad(
    log_probs: Any,
    targets: Any,
    input_lengths: Any,
    target_lengths: Any,
    *,
    blank: int = 0,
    reduction: str = "mean",
    zero_infinity: bool = False,
    cotangent: Any = None,
) -> Any:
    """The loss from the forward recursion the gradient runs anyway (two recursions instead of three)."""
    lt = _lattice(log_probs, targets, input_lengths, target_lengths, blank, reduction, zero_infinity, gather=False)
    if not runs_fused(lt.backend, "ctc_loss", log_probs):
        return NotImplemented
    value, grad = _ctc_value_and_grad(lt, reduction, zero_infinity, cotangent)
    return finish(lt.backend, value, log_probs), finish(lt.backend, grad, log_probs)


def _rows(lt: _Lattice, rows: Any) -> _Lattice:
    """The lattice of the samples at positions ``rows`` (an integer index array along the batch)."""
    xp = lt.backend.xp

    def take(a: Any, axis: int) -> Any:
        return xp.take(a, rows, axis=axis)

    lp_ext = None if lt.lp_ext is None else take(lt.lp_ext, 1)
    return _Lattice(lt.backend, take(lt.lp, 1), take(lt.labels, 0), lp_ext, take(lt.skip, 0),
                    take(lt.in_len, 0), take(lt.ext_len, 0), take(lt.target_len, 0))


def _posterior(lt: _Lattice) -> tuple[Any, Any]:
    """``(nll (N,), occupancy (T, N, L))``: ``-log p(target | input)`` (inf where no alignment exists) and
    the posterior occupancy ``exp(alpha + beta - log p_t(l'_s) + nll)`` of every state at every step (0
    beyond each input length and where no alignment exists).

    A backend's ``ctc_loss.posterior`` kernel may compute them another way (NumPy: scaled linear-space
    recursions), handing the samples it cannot guarantee to the log-space recursions here (its last argument:
    ``rows -> (nll, occupancy)`` of those samples)."""
    kernel = lt.backend.fast_paths.get("ctc_loss.posterior") if fast_paths_enabled() and lt.lp.shape[0] else None
    if kernel is not None:
        return kernel(lt.lp, lt.labels, lt.skip, lt.in_len, lt.ext_len, lambda rows: _log_posterior(_rows(lt, rows)))
    return _log_posterior(lt)


def _log_posterior(lt: _Lattice) -> tuple[Any, Any]:
    """:func:`_posterior` by the forward and backward recursions in log space."""
    lt = _gathered(lt)
    backend = lt.backend
    xp = backend.xp
    t_max, n, ell = lt.lp_ext.shape
    alpha_final, alphas = _alphas(lt, True)
    nll = _nll(lt, alpha_final)
    # the backward recursion, each sample starting at its own last frame
    position = xp.expand_dims(xp.arange(ell, dtype=xp.int64, device=backend.device(lt.lp)), axis=0)
    last = xp.expand_dims(lt.ext_len, axis=1)
    ends = (position == last - 1) | (position == last - 2)
    skip_next = _shift(xp, xp.astype(lt.skip, lt.lp.dtype), -2) > 0  # s -> s + 2 allowed
    finite_nll = xp.expand_dims(xp.where(nll == math.inf, 0.0, nll), axis=1)  # no path at all: occupancy 0
    kernel = backend.fast_paths.get("ctc_loss.occupancy") if fast_paths_enabled() and t_max else None
    if kernel is not None:  # the same steps, in place
        return nll, kernel(lt.lp_ext, skip_next, lt.in_len, ends, alphas, finite_nll)
    beta = xp.full((n, ell), NEG_INF, dtype=lt.lp.dtype, device=backend.device(lt.lp))
    steps = []
    in_len = xp.expand_dims(lt.in_len, axis=1)
    for t in range(t_max - 1, -1, -1):
        skipped = xp.where(skip_next, _shift(xp, beta, -2), NEG_INF)
        recursed = _logaddexp(backend, beta, _shift(xp, beta, -1), skipped) + lt.lp_ext[t, ...]
        beta = xp.where(in_len - 1 == t, xp.where(ends, lt.lp_ext[t, ...], NEG_INF),
                        xp.where(in_len - 1 > t, recursed, NEG_INF))
        both = alphas[t] + beta
        steps.append(xp.where(both == NEG_INF, 0.0, xp.exp(both - lt.lp_ext[t, ...] + finite_nll)))
    return nll, xp.stack(steps[::-1], axis=0)  # (T, N, L)


def _ctc_value_and_grad(lt: _Lattice, reduction: str, zero_infinity: bool, cotangent: Any) -> tuple[Any, Any]:
    """``(value, gradient)`` in the compute dtype, from one forward and one backward recursion."""
    backend = lt.backend
    xp = backend.xp
    n = lt.lp.shape[1]
    nll, occupancy = _posterior(lt)
    classes = lt.lp.shape[2]
    hot = xp.astype(xp.expand_dims(lt.labels, axis=2) == xp.reshape(
        xp.arange(classes, dtype=xp.int64, device=backend.device(lt.lp)), (1, 1, classes)), lt.lp.dtype)  # (N, L, C)
    gamma = xp.permute_dims(xp.matmul(xp.permute_dims(occupancy, (1, 0, 2)), hot), (1, 0, 2))  # (T, N, C)
    read = _read_frames(lt)
    g = xp.where(read, xp.exp(lt.lp) - gamma, 0.0)
    poisoned, flagged = _flags(lt, read, nll, zero_infinity)
    value, lengths = _reduce_ctc(lt, xp.where(poisoned, math.nan, nll), reduction, zero_infinity)
    up = upstream(backend, cotangent, (n,) if reduction == "none" else (), lt.lp)
    if isinstance(up, float):
        per_sample = xp.full((n,), up, dtype=lt.lp.dtype, device=backend.device(lt.lp))
    else:
        per_sample = xp.broadcast_to(up, (n,))
    if reduction == "mean":
        per_sample = per_sample / (lengths * n)
    if zero_infinity:
        per_sample = xp.where(nll == math.inf, 0.0, per_sample)
    g = g * xp.reshape(per_sample, (1, n, 1))
    g = xp.where(read & xp.reshape(flagged, (1, n, 1)), math.nan, g)
    return value, g
