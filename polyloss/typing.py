"""Types of polyloss's public API, for type checkers (mypy, pyright).

A loss is typed by the array it is given: ``pl.mse_loss(x, y)`` is a NumPy
array for NumPy arrays ``x``, a ``torch.Tensor`` for tensors, and so on for
every array library, because each loss is declared as::

    def mse_loss(input: ArrayT, target: Array, *, weight: Array | None = None,
                 reduction: Reduction = "mean") -> ArrayT: ...

- :class:`Array`: what polyloss accepts as an array: any object with the array
  API's ``shape``, ``dtype`` and ``ndim`` (NumPy, CuPy, PyTorch, array-api-strict, JAX,
  dask arrays). Python lists and numbers are not arrays (a ``TypeError`` at
  run time, an error for the type checker).
- :data:`ArrayT`: a type variable bound to :class:`Array`. The result has the
  type of the loss's first array argument; the other arrays are :class:`Array`
  (of the same library at run time; a mixed call raises ``TypeError``). For
  NumPy the type checker carries ``input``'s ``ndarray[shape, dtype]``
  parameters over to the result as given: the dtype is right (the result is in
  the input's floating dtype), the shape parameter is not narrowed (a reduced
  loss is 0-d whatever ``input``'s shape type says).
- :data:`Reduction` (``"none" | "mean" | "sum"``) and :data:`KLDivReduction`
  (those plus ``"batchmean"``, :func:`polyloss.kl_div` only): a misspelt
  reduction (``reduction="avg"``) is a type error, as it is a ``ValueError``
  at run time.
- :data:`SegmentationMode` (``"binary" | "multiclass" | "multilabel"``): the
  ``mode`` of the segmentation losses.
- :class:`Recipe`: what :func:`polyloss.get_recipe` returns for a name other
  than a built-in one (the built-in names are typed as their classes,
  :class:`~polyloss.detection.ssd.SSDLoss` for ``"ssd"`` and so on): a callable
  returning a :class:`polyloss.RecipeResult`.

This module imports nothing but :mod:`typing` at run time.
"""

from __future__ import annotations

from typing import TYPE_CHECKING
from typing import Any
from typing import Literal
from typing import Protocol
from typing import TypeVar

if TYPE_CHECKING:
    from polyloss._api import RecipeResult

__all__ = ["Array", "ArrayT", "KLDivReduction", "Recipe", "Reduction", "SegmentationMode"]

#: the reductions of every loss; ``"mean"`` is the default everywhere
Reduction = Literal["none", "mean", "sum"]
#: :func:`polyloss.kl_div`'s reductions: :data:`Reduction` plus ``"batchmean"`` (sum / batch size)
KLDivReduction = Literal["none", "mean", "sum", "batchmean"]
#: the ``mode`` of :func:`polyloss.dice_loss`, :func:`~polyloss.jaccard_loss`, :func:`~polyloss.tversky_loss`
#: and :func:`~polyloss.lovasz_loss`
SegmentationMode = Literal["binary", "multiclass", "multilabel"]


class Array(Protocol):
    """An array of an array-API library: anything with the standard's ``shape``, ``dtype`` and ``ndim``.

    Structural: ``numpy.ndarray``, ``torch.Tensor``, ``cupy.ndarray``,
    ``jax.Array``, ``dask.array.Array`` and array-api-strict's arrays all are
    :class:`Array` without naming polyloss.
    """

    @property
    def shape(self) -> tuple[Any, ...]: ...

    @property
    def dtype(self) -> Any: ...

    @property
    def ndim(self) -> int: ...


#: the array type of a call: a loss returns an array of its first argument's type
ArrayT = TypeVar("ArrayT", bound=Array)


class Recipe(Protocol):
    """A detector recipe: called with its predictions and ground truth, it returns a :class:`polyloss.RecipeResult`.

    Every recipe a plugin's factory builds is one; the built-in ones
    (:class:`~polyloss.detection.DetectionRecipe` subclasses) also expose their
    stages and ``value_and_grad``.
    """

    def __call__(self, *args: Any, **kwargs: Any) -> RecipeResult[Any]: ...
