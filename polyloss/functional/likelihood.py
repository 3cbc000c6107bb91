"""Likelihood losses: Poisson and Gaussian negative log-likelihood, with their closed-form gradients.

Each loss is declared with ``@loss`` and its gradient, next to it, with ``@gradient(...)``;
both run the same check function and the same element-wise terms.
"""

from __future__ import annotations

import math
from functools import partial
from typing import Any

from polyloss import _checks as v
from polyloss._namespace import check_same
from polyloss._namespace import resolve
from polyloss.backend._base import Backend
from polyloss.functional._common import planned
from polyloss.functional._common import pointwise_inputs
from polyloss.functional._define import gradient
from polyloss.functional._define import loss
from polyloss.functional._second_set import backward
from polyloss.functional._second_set import check_bool
from polyloss.functional._second_set import finite_number
from polyloss.functional._second_set import forward
from polyloss.typing import Array
from polyloss.typing import ArrayT
from polyloss.typing import Reduction

__all__ = [
    "gaussian_nll_loss",
    "gaussian_nll_loss_grad",
    "poisson_nll_loss",
    "poisson_nll_loss_grad",
]

_HALF_LOG_2PI = 0.5 * math.log(2.0 * math.pi)


# -- Poisson ----------------------------------------------------------------------------------


def _check_poisson(input: Any, target: Any, log_input: object, full: object, eps: object,
                   reduction: str) -> tuple[Backend, float]:
    backend = resolve(input, target)
    pointwise_inputs(backend, input, target, reduction)
    check_bool(log_input, "log_input")
    check_bool(full, "full")
    return backend, finite_number(eps, "eps", minimum=0.0)


def poisson_nll_parts(backend: Backend, x: Any, y: Any, *, log_input: bool, full: bool, eps: float,
                      need_grad: bool) -> tuple[Any, Any]:
    """Element-wise Poisson NLL and, if asked, its derivative by ``x`` (``y`` in ``x``'s dtype)."""
    xp = backend.xp
    if log_input:
        rate = xp.exp(x)
        loss = rate - y * x
        grad = rate - y if need_grad else None
    else:
        shifted = x + eps
        loss = x - y * xp.log(shifted)
        grad = 1.0 - y / shifted if need_grad else None
    if full:
        # Stirling's approximation of log(y!), only where y > 1 (PyTorch's mask); evaluated at 1 elsewhere
        big = y > 1
        ys = xp.where(big, y, 1.0)
        stirling = ys * xp.log(ys) - ys + 0.5 * xp.log((2.0 * math.pi) * ys)
        loss = loss + xp.where(big, stirling, 0.0)
    return loss, grad


@loss
def poisson_nll_loss(input: ArrayT, target: Array, *, log_input: bool = True, full: bool = False, eps: float = 1e-8,
                     reduction: Reduction = "mean") -> ArrayT:
    r"""Poisson negative log-likelihood.

    .. math::
        \ell_i = e^{x_i} - y_i x_i \quad (\texttt{log\_input=True}),\qquad
        \ell_i = x_i - y_i \log(x_i + \epsilon) \quad (\texttt{log\_input=False})

    plus, with ``full=True``, Stirling's term
    :math:`y \log y - y + \tfrac12 \log(2\pi y)` where :math:`y > 1` (0 elsewhere).

    Args:
        input: the log-rate (``log_input=True``, default) or the rate, real floating.
        target: counts, same shape (never broadcast); floating, integer or bool.
        log_input: whether ``input`` is the log of the rate (default True).
        full: add Stirling's approximation of :math:`\log y!` (default False).
        eps: added to the rate before the log when ``log_input=False``, default
            1e-8, finite and >= 0 (else a ``ValueError``).
        reduction: ``"none"``, ``"mean"`` (default) or ``"sum"``.

    Edge rules (every path): NaN in ``input`` or ``target`` gives NaN; an infinite
    log-rate gives inf or NaN (:math:`\infty - \infty` against a positive count) and
    ``0 log 0`` with ``eps=0`` NaN, PyTorch's numbers; a negative
    rate with ``log_input=False`` gives NaN (the log's domain; PyTorch's number);
    target values are not checked (PyTorch accepts any real count); the mean of an
    empty input is 0 (PyTorch: NaN); another target shape is a ``ValueError``.

    Matches ``torch.nn.functional.poisson_nll_loss``.
    """
    _, plan, out = planned("poisson_nll_loss", (input, target), log_input, full, eps, reduction)
    if out is not NotImplemented:
        return out
    backend, eps = _check_poisson(input, target, log_input, full, eps, reduction)
    options: dict[str, Any] = {"log_input": log_input, "full": full, "eps": eps}
    parts = partial(poisson_nll_parts, backend, **options)
    return forward(backend, "poisson_nll_loss", (input, target), {**options, "reduction": reduction}, parts,
                   plan=plan)


@gradient(poisson_nll_loss)
def poisson_nll_loss_grad(input: Any, target: Any, *, log_input: bool = True, full: bool = False,
                          eps: float = 1e-8, reduction: Reduction = "mean", cotangent: Any = None) -> Any:
    r"""Gradient of :func:`polyloss.poisson_nll_loss`: :math:`e^x - y`, or :math:`1 - y / (x + \epsilon)`."""
    backend, eps = _check_poisson(input, target, log_input, full, eps, reduction)
    parts = partial(poisson_nll_parts, backend, log_input=log_input, full=False, eps=eps)  # full: a constant in x
    return backward(backend, (input, target), reduction, cotangent, parts)


# -- Gaussian ---------------------------------------------------------------------------------


def _var_shape(input_shape: tuple[int, ...], var_shape: tuple[int, ...]) -> bool:
    """PyTorch's rule; True: ``var`` lacks the last axis (it gets one); False: it broadcasts as it is."""
    if var_shape == input_shape:
        return False
    if input_shape[:-1] == var_shape and len(input_shape) > 0:
        return True
    if len(var_shape) == len(input_shape) and sum(b for a, b in zip(input_shape, var_shape, strict=True)
                                                    if a != b) == 1:
        return False
    raise ValueError(
        f"var shape {var_shape} must equal input shape {input_shape}, equal it without the last axis, "
        "or differ from it in one axis of size 1 (PyTorch's rule)"
    )


def _check_gaussian(input: Any, target: Any, var: Any, full: object, eps: object,
                    reduction: str) -> tuple[Backend, Any, float]:
    """Checks of :func:`gaussian_nll_loss`; returns the backend, ``var`` (a float, or an array shaped to
    broadcast into the input) and ``eps``."""
    backend = resolve(input, target)
    pointwise_inputs(backend, input, target, reduction)
    check_bool(full, "full")
    eps = finite_number(eps, "eps", minimum=0.0)
    if isinstance(var, bool) or var is None:
        raise TypeError(f"var must be an array or a Python number, got {type(var).__name__}")
    if isinstance(var, (int, float)):
        var = float(var)
        if var < 0:
            raise ValueError(f"var has negative entry/entries: var={var!r}")
        return backend, var, eps
    check_same(backend, var, "var")
    if backend.dtype_kind(var.dtype) not in "fi":
        raise TypeError(f"var must have a real floating or integer dtype, got {var.dtype}")
    if _var_shape(tuple(input.shape), tuple(var.shape)):
        var = backend.xp.expand_dims(var, axis=-1)
    # one pass that allocates nothing (NaN passes, as PyTorch's any(var < 0))
    if backend.is_host_array(var) and math.prod(var.shape) and backend.min_max(var)[0] < 0:
        raise ValueError("var has negative entry/entries (the variance must be >= 0)")
    return backend, var, eps


def gaussian_nll_parts(backend: Backend, x: Any, y: Any, var: Any, *, full: bool, eps: float,
                       need_grad: bool) -> tuple[Any, Any]:
    """Element-wise Gaussian NLL and, if asked, its derivative by ``x``; ``var`` a float, or an array
    broadcasting into ``x`` (cast to its dtype here), clamped at ``eps`` as PyTorch."""
    d = x - y
    if isinstance(var, float):
        vc = max(var, eps) if var == var else var
        log_var = math.log(vc) if vc > 0 else (-math.inf if vc == 0 else math.nan)
    else:
        vc = backend.xp.clip(v.as_dtype_of(backend, var, x), min=eps)
        log_var = backend.xp.log(vc)
    value = 0.5 * (log_var + d * d / vc)
    if full:
        value = value + _HALF_LOG_2PI
    return value, (d / vc if need_grad else None)


@loss
def gaussian_nll_loss(input: ArrayT, target: Array, var: Array, *, full: bool = False, eps: float = 1e-6,
                      reduction: Reduction = "mean") -> ArrayT:
    r"""Gaussian negative log-likelihood with a predicted variance.

    .. math::
        \ell_i = \tfrac12 \Big(\log \max(v_i, \epsilon) + \frac{(x_i - y_i)^2}{\max(v_i, \epsilon)}\Big)
                 \;[+\; \tfrac12 \log 2\pi \text{ with } \texttt{full}]

    Args:
        input: predicted means, real floating.
        target: same shape as ``input`` (never broadcast).
        var: the variance: an array of ``input``'s shape, of its shape without the
            last axis (one variance per sample), or of its shape with one axis of
            size 1 (PyTorch's rule; any other shape is a ``ValueError``); or a
            Python number. It must be >= 0.
        full: add the constant :math:`\tfrac12 \log 2\pi` (default False).
        eps: the variance's lower clamp, default 1e-6, finite and >= 0.
        reduction: ``"none"``, ``"mean"`` (default, over ``input``'s elements) or ``"sum"``.

    Gradient: :math:`(x - y) / \max(v, \epsilon)` by ``input``. Under autograd the
    gradient by ``var`` is PyTorch's on the fast path; the generic code's is 0 where
    ``var < eps`` (PyTorch passes it through the clamp).

    Edge rules: a negative ``var`` is a ``ValueError`` (as PyTorch) wherever the
    values can be read without a device sync (NumPy, array-api-strict, torch on the
    CPU outside tracing); on a GPU or under ``torch.compile`` it is clamped to
    ``eps`` unchecked. NaN in ``input``, ``target`` or ``var`` gives NaN; the mean
    of an empty input is 0 (PyTorch: NaN).

    Nix & Weigend, *Estimating the mean and variance of the target probability
    distribution*, 1994. Matches ``torch.nn.functional.gaussian_nll_loss``.
    """
    backend, var, eps = _check_gaussian(input, target, var, full, eps, reduction)
    parts = partial(gaussian_nll_parts, backend, full=full, eps=eps)
    return forward(backend, "gaussian_nll_loss", (input, target),
                   {"full": full, "eps": eps, "reduction": reduction, "parts": parts}, parts, raw=(var,))


@gradient(gaussian_nll_loss)
def gaussian_nll_loss_grad(input: Any, target: Any, var: Any, *, full: bool = False, eps: float = 1e-6,
                           reduction: Reduction = "mean", cotangent: Any = None) -> Any:
    r"""Gradient of :func:`polyloss.gaussian_nll_loss` by ``input``: :math:`(x - y) / \max(v, \epsilon)`."""
    backend, var, eps = _check_gaussian(input, target, var, full, eps, reduction)
    return backward(backend, (input, target), reduction, cotangent,
                    partial(gaussian_nll_parts, backend, full=full, eps=eps), raw=(var,))
