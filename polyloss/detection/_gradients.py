r"""Closed-form gradients of recipe parts: a per-prediction cotangent pulled back through a part.

A recipe *part* is a loss called as ``part(input, target)`` with no reduction
(``classification_loss``, ``regression_loss``, ``objectness_loss``, ...). Its
gradient comes from the per-loss closed-form gradients of
:mod:`polyloss.gradients` (:func:`polyloss.gradients.gradient_of`): a part
that is a loss with a registered gradient, or ``functools.partial(loss,
**options)`` of one, is differentiable. Any other part raises ``TypeError``
naming it.

This module knows nothing about recipes: :meth:`polyloss.detection.DetectionRecipe.differentiate`
(written once, for every recipe) walks the terms a recipe's stages declare and
calls :func:`part_vjp` on each.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from polyloss.backend._base import Backend
from polyloss.gradients import GRADIENTS

__all__ = ["part_gradient", "part_vjp"]


def part_gradient(part: Any, name: str) -> tuple[Callable[..., Any], dict[str, Any]]:
    """``(gradient function, its keyword options)`` of the recipe part ``part`` (attribute ``name``).

    Raises:
        TypeError: ``part`` is neither a loss with a registered gradient nor a
            ``functools.partial`` of one with keyword options only (the message names ``name``).
    """
    if isinstance(part, functools.partial) and not part.args and part.func in GRADIENTS:
        return GRADIENTS[part.func], dict(part.keywords)
    try:
        if part in GRADIENTS:
            return GRADIENTS[part], {}
    except TypeError:  # an unhashable callable
        pass
    raise TypeError(
        f"the recipe part {name} = {part!r} has no closed-form gradient: use a built-in part, a loss with a "
        "registered gradient or functools.partial(loss, **options) of one (see "
        "polyloss.gradients.register_gradient), or the autograd of an array library that has one"
    )


def part_vjp(backend: Backend, part: Any, name: str, input: Any, target: Any, output: Any, cotangent: Any) -> Any:
    """``d <c, per_prediction(part(input, target))> / d input``.

    Args:
        backend: the predictions' backend.
        part: the recipe part (``classification_loss``, ``regression_loss``, ...).
        name: the part's attribute name (for the error message).
        input, target: what the part was called with.
        output: what it returned (its shape places the cotangent).
        cotangent: per-prediction cotangent; broadcast over the output's
            trailing axes, which :func:`polyloss.detection._base.per_prediction` sums.
    """
    xp = backend.xp
    grad_fn, options = part_gradient(part, name)
    c = cotangent
    while c.ndim < output.ndim:
        c = xp.expand_dims(c, axis=-1)
    if tuple(c.shape) != tuple(output.shape):
        c = xp.broadcast_to(c, tuple(output.shape))
    return grad_fn(input, target, cotangent=c, **options)
