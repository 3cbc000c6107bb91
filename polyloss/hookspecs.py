"""Hook specifications of polyloss.

A plugin is a module (or any object) holding functions marked with
:data:`polyloss.hookimpl` and named like the specs below. Built-in backends,
losses and recipes are registered through these very hooks.

Hooks are called once, when the registry is first needed (or after a plugin
is registered or unregistered at run time); their answers are cached in plain
dicts. No hook is ever called while a loss is computed.

Every hook returns a collection. To replace a name another plugin already
registered, wrap the value in :func:`polyloss.override`.
"""

from __future__ import annotations

from collections.abc import Callable
from collections.abc import Mapping
from collections.abc import Sequence
from typing import TYPE_CHECKING
from typing import Any

from polyloss._hooks import hookspec

if TYPE_CHECKING:
    from polyloss.backend._base import Backend

__all__ = [
    "polyloss_register_backends",
    "polyloss_register_losses",
    "polyloss_register_recipes",
]


@hookspec
def polyloss_register_backends() -> Sequence[Backend]:
    """Return the array backends this plugin provides.

    Returns:
        A sequence of :class:`polyloss.Backend` instances. Each names its array
        library in ``module_name``; the backend is consulted for an array only
        once that module has been imported by the user, so registering a
        backend never imports its library.

    Called:
        Once, when polyloss first needs to resolve an array type it has not
        seen (or lists its backends).
    """
    ...


@hookspec
def polyloss_register_losses() -> Mapping[str, Callable[..., Any]]:
    """Return a mapping ``name -> loss function`` this plugin provides.

    Returns:
        Loss functions follow the polyloss convention
        ``loss(input, target, *, ..., reduction="mean")``. Names must be unique
        across plugins unless the value is wrapped in
        :func:`polyloss.override`.

    Called:
        Once, at the first call of :func:`polyloss.losses`,
        :func:`polyloss.get_loss` or :func:`polyloss.value_and_grad` by name.
    """
    ...


@hookspec
def polyloss_register_recipes() -> Mapping[str, Callable[..., Any]]:
    """Return a mapping ``name -> recipe factory`` this plugin provides.

    Returns:
        A factory is called as ``factory(**config)`` by
        :func:`polyloss.get_recipe` and returns a callable recipe whose call
        returns a :class:`polyloss.RecipeResult`.

    Called:
        Once, at the first call of :func:`polyloss.recipes` or
        :func:`polyloss.get_recipe`.
    """
    ...
