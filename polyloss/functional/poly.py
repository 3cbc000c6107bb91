"""PolyLoss: the Poly-1 cross-entropy, with its closed-form gradient.

Declared with ``@loss`` and its gradient, next to it, with ``@gradient(...)``; both run the same check
function and share the softmax terms. The class-axis checks are cross-entropy's
(:mod:`polyloss.functional.classification`).
"""

from __future__ import annotations

from typing import Any

from polyloss import _checks as v
from polyloss._namespace import resolve
from polyloss.backend._base import Backend
from polyloss.functional._common import apply_sample_seed
from polyloss.functional._common import compute_dtype
from polyloss.functional._common import finish
from polyloss.functional._common import one_hot
from polyloss.functional._common import try_fast_path
from polyloss.functional._define import gradient
from polyloss.functional._define import loss
from polyloss.functional._reductions import reduce
from polyloss.functional._reductions import sample_upstream
from polyloss.functional._second_set import finite_number
from polyloss.functional.classification import class_axis_inputs
from polyloss.typing import Array
from polyloss.typing import ArrayT
from polyloss.typing import Reduction

__all__ = ["poly1_cross_entropy", "poly1_cross_entropy_grad"]


def _check_poly1(input: Any, target: Any, epsilon: object, axis: int,
                 reduction: str) -> tuple[Backend, float, int, bool]:
    backend = resolve(input, target)
    v.check_reduction(reduction)
    axis, probabilities = class_axis_inputs(backend, input, target, axis, allow_probabilities=True)
    epsilon = finite_number(epsilon, "epsilon")
    if not probabilities:
        # once, here, wherever values can be read without a sync (torch on the CPU too): the gather below and
        # the one-hot of the gradient never see an index outside [0, C)
        v.check_class_indices(backend, target, input.shape[axis], ignore_index=None, always=True)
    return backend, epsilon, axis, probabilities


def _index(backend: Backend, target: Any) -> Any:
    xp = backend.xp
    return target if target.dtype == xp.int64 else xp.astype(target, xp.int64)


def _targets(backend: Backend, x: Any, target: Any, axis: int, probabilities: bool) -> Any:
    """The target as class probabilities ``q`` in ``x``'s dtype (a one-hot for class indices)."""
    xp = backend.xp
    if probabilities:
        return v.as_dtype_of(backend, target, x)
    return xp.astype(one_hot(backend, _index(backend, target), x.shape[axis], axis, x.ndim), x.dtype)


@loss
def poly1_cross_entropy(input: ArrayT, target: Array, *, epsilon: float = 2.0, axis: int = -1,
                        reduction: Reduction = "mean") -> ArrayT:
    r"""Poly-1 cross-entropy (Leng et al., *PolyLoss: A Polynomial Expansion Perspective of
    Classification Loss Functions*, ICLR 2022).

    .. math::
        \ell_i = -\log p_{i,y_i} + \epsilon\,(1 - p_{i,y_i}),\qquad p = \operatorname{softmax}(x)

    and with class probabilities :math:`q` (same shape as the input)
    :math:`\ell_i = -\sum_c q_{i,c} \log p_{i,c} + \epsilon \sum_c q_{i,c} (1 - p_{i,c})`
    (optax's ``poly_loss_cross_entropy``; :math:`\epsilon(1 - \sum_c q_c p_c)` when :math:`q`
    sums to 1).

    Args:
        input: logits; the class axis is ``axis`` (default -1).
        target: integer class indices of ``input``'s shape without the class axis, or floating
            class probabilities of ``input``'s shape.
        epsilon: the weight of the first polynomial term, any finite number, default 2.0 (the
            paper's and optax's; :math:`\epsilon = -1` removes the first term, 0 is cross-entropy).
        axis: the class axis.
        reduction: ``"none"`` (per sample), ``"mean"`` (default) or ``"sum"``.

    Edge rules: a class index outside [0, C) is a ``ValueError`` naming it where values can be
    read without a device sync; NaN logits give NaN; the mean of no samples is 0; a floating target
    of the shape without the class axis is a ``TypeError``; NaN or infinite ``epsilon`` a ``ValueError``.

    Same numbers as optax's ``poly_loss_cross_entropy`` (reduced here).
    """
    backend, epsilon, axis, probabilities = _check_poly1(input, target, epsilon, axis, reduction)
    out = try_fast_path(backend, "poly1_cross_entropy", input, target, epsilon=epsilon, axis=axis,
                        reduction=reduction)
    if out is not NotImplemented:
        return out
    xp = backend.xp
    (x,) = compute_dtype(backend, input)
    logp = backend.log_softmax(x, axis)
    if probabilities:
        q = _targets(backend, x, target, axis, probabilities)
        value = -xp.sum(q * logp, axis=axis) + epsilon * xp.sum(q * (1.0 - xp.exp(logp)), axis=axis)
    else:
        index = xp.expand_dims(_index(backend, target), axis=axis)
        logp_t = xp.squeeze(backend.take_along_axis(logp, index, axis=axis), axis=axis)
        value = -logp_t - epsilon * xp.expm1(logp_t)  # 1 - p_t without cancellation
    return finish(backend, reduce(backend, value, reduction), input)


@gradient(poly1_cross_entropy)
def poly1_cross_entropy_grad(input: Any, target: Any, *, epsilon: float = 2.0, axis: int = -1,
                             reduction: Reduction = "mean", cotangent: Any = None) -> Any:
    r"""Gradient of :func:`polyloss.poly1_cross_entropy` by the logits.

    With :math:`p = \operatorname{softmax}(x)`, :math:`q` the target's probabilities (a one-hot for
    indices) and :math:`p_t = \sum_c q_c p_c`:
    :math:`\partial\ell/\partial x_k = p_k \sum_c q_c - q_k + \epsilon\, p_k (p_t - q_k)`.
    """
    backend, epsilon, axis, probabilities = _check_poly1(input, target, epsilon, axis, reduction)
    xp = backend.xp
    (x,) = compute_dtype(backend, input)
    p = backend.softmax(x, axis)
    q = _targets(backend, x, target, axis, probabilities)
    p_t = xp.sum(q * p, axis=axis, keepdims=True)
    total = xp.sum(q, axis=axis, keepdims=True) if probabilities else 1.0
    g = p * total - q + epsilon * p * (p_t - q)
    sample_shape = tuple(x.shape[:axis] + x.shape[axis + 1:])
    up = sample_upstream(backend, cotangent, sample_shape, reduction, x)
    return finish(backend, apply_sample_seed(backend, g, up, axis), input)
