"""Registry queries of the public API: names, look-ups, run-time registration."""

from __future__ import annotations

from collections.abc import Callable
from collections.abc import Mapping
from dataclasses import dataclass
from dataclasses import field
from typing import TYPE_CHECKING
from typing import Any
from typing import Generic
from typing import Literal
from typing import overload

from polyloss._registry import registry

if TYPE_CHECKING:
    # a TypeVar with a default (PEP 696) for the checkers only: a bare ``RecipeResult`` is
    # ``RecipeResult[Any]``; at run time a plain TypeVar does (typing's takes no default before 3.13)
    from typing_extensions import TypeVar

    from polyloss.backend._base import Backend
    from polyloss.detection.detr import DETRLoss
    from polyloss.detection.faster_rcnn import FasterRCNNLoss
    from polyloss.detection.fcos import FCOSLoss
    from polyloss.detection.ssd import SSDLoss
    from polyloss.detection.yolov1 import YOLOv1Loss
    from polyloss.detection.yolov8 import YOLOv8Loss
    from polyloss.typing import Recipe

    ResultT = TypeVar("ResultT", default=Any)
else:
    from typing import TypeVar

    ResultT = TypeVar("ResultT")

__all__ = [
    "RecipeResult",
    "backends",
    "get_backend",
    "get_loss",
    "get_recipe",
    "losses",
    "recipes",
    "register_plugin",
    "reload_plugins",
    "unregister_plugin",
]


def backends() -> list[str]:
    """Sorted names of the registered backends (installed or not)."""
    return sorted(registry.tables.backends)


def get_backend(name: str | Any) -> Backend:
    """The registered backend object called ``name``, or the backend of an array.

    ``pl.get_backend("torch")`` and ``pl.get_backend(tensor)`` give the same
    object; an object that is neither a name nor an array of a known library is
    a ``TypeError``.
    """
    if not isinstance(name, str):
        from polyloss._namespace import backend_of

        return backend_of(name, "name")
    try:
        backend: Backend = registry.tables.backends[name]
    except KeyError:
        raise ValueError(f"unknown backend {name!r}; registered: {', '.join(backends())}") from None
    return backend


def losses() -> list[str]:
    """Sorted names of the registered losses."""
    return sorted(registry.tables.losses)


def get_loss(name: str) -> Callable[..., Any]:
    """The loss function registered as ``name``."""
    try:
        return registry.tables.losses[name]
    except KeyError:
        raise ValueError(f"unknown loss {name!r}; registered: {', '.join(losses())}") from None


def recipes() -> list[str]:
    """Sorted names of the registered detector recipes."""
    return sorted(registry.tables.recipes)


@overload
def get_recipe(name: Literal["ssd"], **config: Any) -> SSDLoss: ...
@overload
def get_recipe(name: Literal["faster_rcnn"], **config: Any) -> FasterRCNNLoss: ...
@overload
def get_recipe(name: Literal["yolov1"], **config: Any) -> YOLOv1Loss: ...
@overload
def get_recipe(name: Literal["fcos"], **config: Any) -> FCOSLoss: ...
@overload
def get_recipe(name: Literal["detr"], **config: Any) -> DETRLoss: ...
@overload
def get_recipe(name: Literal["yolov8"], **config: Any) -> YOLOv8Loss: ...
@overload
def get_recipe(name: str, **config: Any) -> Recipe: ...


def get_recipe(name: str, **config: Any) -> Recipe:
    """Build the recipe registered as ``name`` with ``config`` (keyword arguments).

    For type checkers, a built-in name gives its class (``get_recipe("ssd")`` is a
    :class:`~polyloss.detection.ssd.SSDLoss`), any other name a
    :class:`polyloss.typing.Recipe` (a callable returning a :class:`RecipeResult`).
    """
    try:
        factory = registry.tables.recipes[name]
    except KeyError:
        raise ValueError(f"unknown recipe {name!r}; registered: {', '.join(recipes()) or 'none'}") from None
    recipe: Recipe = factory(**config)
    return recipe


def register_plugin(plugin: object, *, name: str | None = None) -> str:
    """Register a plugin object (a module or any object with hook implementations) now.

    Caches of names and of array types are invalidated. Returns the plugin's
    registered name, to pass to :func:`unregister_plugin`.
    """
    return registry.register(plugin, name=name)


def unregister_plugin(name: str) -> None:
    """Remove the plugin registered as ``name`` and invalidate the caches."""
    registry.unregister(name)


def reload_plugins() -> list[str]:
    """Look at the ``polyloss`` entry points again (e.g. after ``pip install`` in a running session).

    Plugins registered at run time with :func:`register_plugin` are dropped; the
    built-in plugins and the installed entry points are loaded anew and every
    cache is invalidated. Returns the messages of the plugins that failed to
    load (each also reported as a :class:`polyloss.PluginWarning`).
    """
    registry.reload()
    registry.tables  # noqa: B018 - load now, so that failures are reported here
    return [f"{f.plugin} ({f.distribution}): {f.error}" for f in registry.failures]


@dataclass(frozen=True)
class RecipeResult(Generic[ResultT]):
    """What a detector recipe returns.

    Generic in the array type: a recipe called on torch tensors returns a
    ``RecipeResult[torch.Tensor]`` (a bare ``RecipeResult`` is ``RecipeResult[Any]``).

    Attributes:
        total: scalar array, differentiable, equal to the sum of the components.
        components: named scalar arrays, each already weighted.
    """

    total: ResultT
    components: Mapping[str, ResultT] = field(default_factory=dict)

    @classmethod
    def from_components(cls, components: Mapping[str, ResultT]) -> RecipeResult[ResultT]:
        """Build a result whose total is the sum of ``components`` (in order)."""
        items: list[Any] = list(components.values())
        if not items:
            raise ValueError("a RecipeResult needs at least one component")
        total = items[0]
        for item in items[1:]:
            total = total + item
        from polyloss._namespace import backend_of

        return cls(total=backend_of(total, "total").as_array(total), components=dict(components))
