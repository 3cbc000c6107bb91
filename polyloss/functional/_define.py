"""The tables of built-in losses and their closed-form gradients, filled by two decorators.

A family module declares each loss next to its gradient::

    @loss
    def mse_loss(input, target, *, weight=None, reduction="mean"): ...

    @gradient(mse_loss)
    def mse_loss_grad(input, target, *, weight=None, reduction="mean", cotangent=None): ...

:data:`LOSSES` (name -> function) is what the built-in plugin registers through
``polyloss_register_losses``; :data:`GRADIENTS` (loss function -> gradient) is
what :func:`polyloss.value_and_grad` looks up, and what third parties extend with
:func:`polyloss.gradients.register_gradient`. A loss may also declare, with
``@value_and_gradient(loss)``, one function computing its value and gradient together
from shared terms (:data:`VALUE_AND_GRADS`), which :func:`polyloss.value_and_grad`
prefers while the built-in gradient is the registered one.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from typing import TypeVar

__all__ = ["GRADIENTS", "LOSSES", "VALUE_AND_GRADS", "gradient", "loss", "value_and_gradient"]

F = TypeVar("F", bound=Callable[..., Any])

#: name -> built-in loss function
LOSSES: dict[str, Callable[..., Any]] = {}
#: loss function -> its closed-form gradient function (built-in and registered)
GRADIENTS: dict[Callable[..., Any], Callable[..., Any]] = {}
#: loss function -> (its built-in gradient, its fused value-and-gradient); the latter takes the gradient's
#: arguments and returns ``(value, grad)``, or ``NotImplemented`` where the loss and its gradient are to run apart
VALUE_AND_GRADS: dict[Callable[..., Any], tuple[Callable[..., Any], Callable[..., Any]]] = {}


def loss(fn: F) -> F:
    """Declare ``fn`` a built-in loss, registered under its ``__name__``."""
    if fn.__name__ in LOSSES:
        raise ValueError(f"built-in loss {fn.__name__!r} is declared twice")
    LOSSES[fn.__name__] = fn
    return fn


def gradient(loss_fn: Callable[..., Any]) -> Callable[[F], F]:
    """Declare the decorated function the closed-form gradient of the built-in ``loss_fn``.

    The gradient takes the loss's own arguments plus ``cotangent=`` and returns
    :math:`\\partial \\langle c, \\mathrm{loss}(x)\\rangle / \\partial x`.
    """

    def declare(grad_fn: F) -> F:
        if loss_fn in GRADIENTS:
            raise ValueError(f"the gradient of {loss_fn.__name__!r} is declared twice")
        GRADIENTS[loss_fn] = grad_fn
        return grad_fn

    return declare


def value_and_gradient(loss_fn: Callable[..., Any]) -> Callable[[F], F]:
    """Declare the decorated function the fused value-and-gradient of the built-in ``loss_fn``, whose
    ``@gradient`` must be declared first: it takes the gradient's arguments and returns ``(value, grad)``
    sharing the terms both need (or ``NotImplemented``: the loss and the gradient then run one after the other).
    """

    def declare(fn: F) -> F:
        grad_fn = GRADIENTS.get(loss_fn)
        if grad_fn is None:
            raise ValueError(f"declare the gradient of {loss_fn.__name__!r} before its value-and-gradient")
        if loss_fn in VALUE_AND_GRADS:
            raise ValueError(f"the value-and-gradient of {loss_fn.__name__!r} is declared twice")
        VALUE_AND_GRADS[loss_fn] = (grad_fn, fn)
        return fn

    return declare
