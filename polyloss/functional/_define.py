"""The tables of built-in losses and their closed-form gradients, filled by two decorators.

A family module declares each loss next to its gradient::

    @loss
    def mse_loss(input, target, *, weight=None, reduction="mean"): ...

    @gradient(mse_loss)
    def mse_loss_grad(input, target, *, weight=None, reduction="mean", cotangent=None): ...

:data:`LOSSES` (name -> function) is what the built-in plugin registers through
``polyloss_register_losses``; :data:`GRADIENTS` (loss function -> gradient) is
what :func:`polyloss.value_and_grad` looks up, and what third parties extend with
:func:`polyloss.gradients.register_gradient`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from typing import TypeVar

__all__ = ["GRADIENTS", "LOSSES", "gradient", "loss"]

F = TypeVar("F", bound=Callable[..., Any])

#: name -> built-in loss function
LOSSES: dict[str, Callable[..., Any]] = {}
#: loss function -> its closed-form gradient function (built-in and registered)
GRADIENTS: dict[Callable[..., Any], Callable[..., Any]] = {}


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
