"""Robust regression losses beyond the first set: log-cosh, with its closed-form gradient.

Declared with ``@loss`` and its gradient, next to it, with ``@gradient(...)``; both run the same check
function and element-wise terms.
"""

from __future__ import annotations

import math
from functools import partial
from typing import Any

from polyloss._namespace import resolve
from polyloss.backend._base import Backend
from polyloss.functional._common import pointwise_inputs
from polyloss.functional._define import gradient
from polyloss.functional._define import loss
from polyloss.functional._second_set import backward
from polyloss.functional._second_set import forward
from polyloss.typing import Array
from polyloss.typing import ArrayT
from polyloss.typing import Reduction

__all__ = ["log_cosh_loss", "log_cosh_loss_grad"]

_LOG2 = math.log(2.0)


def _check_log_cosh(input: Any, target: Any, reduction: str) -> Backend:
    backend = resolve(input, target)
    pointwise_inputs(backend, input, target, reduction)
    return backend


def log_cosh_parts(backend: Backend, x: Any, y: Any, *, need_grad: bool) -> tuple[Any, Any]:
    """With ``d = x - y``: ``log(cosh(d)) = |d| + log1p(exp(-2|d|)) - log 2`` (never overflows) and, if
    asked, its derivative ``tanh(d)``."""
    xp = backend.xp
    d = x - y
    a = xp.abs(d)
    value = a + xp.log1p(xp.exp(-2.0 * a)) - _LOG2
    return value, (xp.tanh(d) if need_grad else None)


@loss
def log_cosh_loss(input: ArrayT, target: Array, *, reduction: Reduction = "mean") -> ArrayT:
    r"""Log-cosh loss, :math:`\ell_i = \log\cosh(x_i - y_i)`.

    Quadratic (:math:`d^2/2`) for small differences and linear (:math:`|d| - \log 2`) for large
    ones, smooth everywhere. Computed as :math:`|d| + \log(1 + e^{-2|d|}) - \log 2`, finite for
    any finite difference (``cosh`` itself overflows past ~710).

    Args:
        input: predictions, real floating.
        target: same shape (never broadcast); floating, integer or bool.
        reduction: ``"none"``, ``"mean"`` (default) or ``"sum"``.

    Edge rules: NaN (or ``inf - inf``) gives NaN; an infinite difference gives inf with gradient
    :math:`\pm 1`; the mean of an empty input is 0.

    Same numbers as optax's ``log_cosh`` (reduced here); see e.g. Chen et al., *Log hyperbolic
    cosine loss improves variational auto-encoder*, 2019.
    """
    backend = _check_log_cosh(input, target, reduction)
    parts = partial(log_cosh_parts, backend)
    return forward(backend, "log_cosh_loss", (input, target), {"reduction": reduction}, parts)


@gradient(log_cosh_loss)
def log_cosh_loss_grad(input: Any, target: Any, *, reduction: Reduction = "mean", cotangent: Any = None) -> Any:
    r"""Gradient of :func:`polyloss.log_cosh_loss`: :math:`\tanh(x - y)`."""
    backend = _check_log_cosh(input, target, reduction)
    return backward(backend, (input, target), reduction, cotangent, partial(log_cosh_parts, backend))
