"""Gradients without autograd: :func:`value_and_grad` and the table of closed-form gradients.

``value_and_grad(loss, input, target, **options)`` returns the loss (validation
and half-precision handling exactly the loss's; computed by the loss itself, or with
the gradient from shared terms where the loss declares a fused value-and-gradient)
and its gradient with respect to ``input``, written in
array-API code: it runs on NumPy, CuPy and array-api-strict as well as
PyTorch, and agrees with PyTorch autograd (including PyTorch's choice of
subgradient at kinks).

Each built-in gradient is declared next to its loss in :mod:`polyloss.functional`
(``@gradient(loss)``); it is named ``<loss>_grad``, takes the loss's own
arguments plus ``cotangent=`` and returns
:math:`\\partial \\langle c, \\mathrm{loss}(x)\\rangle / \\partial x`.
Third parties add the gradient of their own loss with :func:`register_gradient`.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from polyloss.functional._define import GRADIENTS
from polyloss.functional._define import VALUE_AND_GRADS
from polyloss.typing import ArrayT

__all__ = [
    "GRADIENTS",
    "gradient_of",
    "register_gradient",
    "unregister_gradient",
    "value_and_grad",
]

GradientFn = Callable[..., Any]

_lock = threading.Lock()



def _loss_function(loss: Any) -> Callable[..., Any]:
    if isinstance(loss, str):
        from polyloss._api import get_loss

        named: Callable[..., Any] = get_loss(loss)
        return named
    if not callable(loss):
        raise TypeError(f"loss must be a loss function or a registered loss name, got {type(loss).__name__}")
    fn: Callable[..., Any] = loss
    return fn


def _describe(fn: Callable[..., Any]) -> str:
    name = getattr(fn, "__qualname__", None) or getattr(fn, "__name__", None) or repr(fn)
    module = getattr(fn, "__module__", None)
    return f"{module}.{name}" if module else str(name)


def gradient_of(loss: Callable[..., Any] | str) -> GradientFn:
    """The gradient function registered for ``loss`` (a function or a registered name).

    Raises:
        TypeError: no gradient is registered for this loss (e.g. a third-party
            loss whose plugin did not call :func:`register_gradient`).
        ValueError: ``loss`` is a name no plugin registered.
    """
    fn = _loss_function(loss)
    grad = GRADIENTS.get(fn)
    if grad is None:
        shown = f"{loss!r} ({_describe(fn)})" if isinstance(loss, str) else _describe(fn)
        raise TypeError(
            f"no closed-form gradient is registered for the loss {shown}; "
            "register one with polyloss.gradients.register_gradient(loss, grad_fn), or use the "
            "autograd of an array library that has one"
        )
    return grad


def register_gradient(loss: Callable[..., Any] | str, grad_fn: GradientFn, *, replace: bool = False) -> GradientFn:
    """Register the closed-form gradient of a (third-party) loss for :func:`value_and_grad`.

    Args:
        loss: the loss function, or the name it is registered under.
        grad_fn: ``grad_fn(input, target, *, cotangent=None, **options)`` (or, for a
            loss of more arrays, all of them positional in the loss's order) taking
            the loss's own options and returning
            :math:`\\partial \\langle c, \\mathrm{loss}(\\mathrm{input}, \\mathrm{target}, **\\mathrm{options})
            \\rangle / \\partial\\,\\mathrm{input}` as an array of ``input``'s
            shape, namespace, device and dtype. ``cotangent`` is None (meaning
            ones of the value's shape), a Python number or an array of the
            value's shape; for scalar reductions it scales the gradient.
        replace: allow replacing a gradient already registered for ``loss``.

    Returns:
        ``grad_fn`` (so the function can be used as a decorator's body).

    Raises:
        ValueError: a gradient is already registered and ``replace`` is false.
    """
    fn = _loss_function(loss)
    if not callable(grad_fn):
        raise TypeError(f"grad_fn must be callable, got {type(grad_fn).__name__}")
    with _lock:
        existing = GRADIENTS.get(fn)
        if existing is not None and existing is not grad_fn and not replace:
            raise ValueError(
                f"a gradient ({_describe(existing)}) is already registered for the loss {_describe(fn)}; "
                "pass replace=True to replace it"
            )
        GRADIENTS[fn] = grad_fn
    return grad_fn


def unregister_gradient(loss: Callable[..., Any] | str) -> None:
    """Forget the gradient registered for ``loss`` (no error if there is none)."""
    fn = _loss_function(loss)
    with _lock:
        GRADIENTS.pop(fn, None)


def value_and_grad(
    loss: Callable[..., Any] | str, input: ArrayT, /, *arrays: Any, cotangent: Any = None, **options: Any
) -> tuple[ArrayT, ArrayT]:
    r"""The loss and its closed-form gradient with respect to ``input``, without autograd.

    Args:
        loss: a polyloss loss function (``pl.cross_entropy``) or its registered
            name (``"cross_entropy"``), or a third-party loss whose gradient was
            registered with :func:`register_gradient`.
        input, \*arrays: the loss's positional arrays, in its order (``input, target`` for most;
            ``input1, input2, target`` for ``cosine_embedding_loss``, ``input, target, var`` for
            ``gaussian_nll_loss``, ...). The gradient is with respect to the first.
        cotangent: upstream gradient. None (default) means 1 for ``"mean"``,
            ``"sum"`` and ``"batchmean"``, and ones of the value's shape for
            ``reduction="none"``: the gradient returned is then that of
            ``sum(loss)``. A Python number or an array broadcastable to the
            value's shape gives :math:`\partial \langle c, \mathrm{loss}\rangle / \partial x`
            (a vector-Jacobian product).
        **options: the loss's keyword options (``weight``, ``reduction``, ...).

    Returns:
        ``(value, grad)``, both of ``input``'s array type (``tuple[ArrayT, ArrayT]`` for
        type checkers): ``value`` as ``loss(input, *arrays, **options)`` returns
        it (where a loss computes both from shared terms, as the built-in losses do on
        NumPy, equal to it up to rounding), and ``grad`` with ``input``'s shape, namespace, device and
        dtype (half precision is computed in float32 and cast back, as the losses do).

    At kinks the subgradient is PyTorch's: 0 for ``l1_loss`` at :math:`x = y`,
    0 for the hinge losses and ``multi_margin_loss`` at the margin,
    ``smooth_l1_loss``/``huber_loss`` as PyTorch's backward;
    ``binary_cross_entropy`` uses PyTorch's backward formula
    :math:`w (x - y) / \max(x(1-x), 10^{-12})`, which agrees with PyTorch at
    probabilities 0 and 1. On PyTorch, ``grad`` is built from ``input`` with
    ordinary tensor operations, so it stays differentiable if ``input``
    requires grad.

    Raises:
        TypeError: no gradient is registered for ``loss``; otherwise whatever
            the loss itself raises for bad arguments, and ``cotangent`` errors.

    Example:
        >>> import numpy as np, polyloss as pl
        >>> value, grad = pl.value_and_grad("mse_loss", np.array([1.0, 2.0]), np.array([0.0, 0.0]))
        >>> float(value), grad.tolist()
        (2.5, [1.0, 2.0])
    """
    grad_fn = gradient_of(loss)
    fn = _loss_function(loss)
    fused = VALUE_AND_GRADS.get(fn)
    if fused is not None and fused[0] is grad_fn:  # not where a registered gradient replaced the built-in one
        out = fused[1](input, *arrays, cotangent=cotangent, **options)
        if out is not NotImplemented:
            value_and_gradient: tuple[ArrayT, ArrayT] = out
            return value_and_gradient
    value: ArrayT = fn(input, *arrays, **options)
    grad: ArrayT = grad_fn(input, *arrays, cotangent=cotangent, **options)
    return value, grad
