"""Plumbing shared by the loss families (not public)."""

from __future__ import annotations

from typing import Any

from polyloss import _validation as v
from polyloss._namespace import check_same, fast_paths_enabled
from polyloss.backend._base import Backend


def try_fast_path(backend: Backend, name: str, *args: Any, **options: Any) -> Any:
    """The backend's native kernel for ``name`` if it covers these options, else ``NotImplemented``."""
    fast = backend.fast_paths.get(name)
    if fast is None or not fast_paths_enabled():
        return NotImplemented
    return fast(*args, **options)


def pointwise_inputs(backend: Backend, input: Any, target: Any, reduction: str) -> None:
    """Checks of an element-wise loss: float input, target of the same shape, a known reduction."""
    v.check_reduction(reduction)
    v.check_floating(backend, input)
    v.check_same_shape(input, target)


def optional_array(backend: Backend, value: Any, name: str, shape: tuple[int, ...], into: str = "input") -> None:
    if value is None:
        return
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        raise TypeError(f"{name} must be an array of the input's namespace or None, got a Python number")
    check_same(backend, value, name)
    v.check_broadcastable(value, shape, name, into)
    if not (v.is_floating(backend, value.dtype) or v.is_integer(backend, value.dtype)):
        raise TypeError(f"{name} must have a real numeric dtype, got {value.dtype}")


def compute_dtype(backend: Backend, input: Any, *others: Any) -> tuple[Any, ...]:
    """``input`` upcast from half precision, and ``others`` cast to its dtype (None kept)."""
    x = v.upcast_half(backend, input)
    return (x, *(None if o is None else v.as_dtype_of(backend, o, x) for o in others))


def finish(backend: Backend, loss: Any, input: Any) -> Any:
    """Back to the input's dtype (after half-precision upcasting), as an array."""
    return backend.as_array(v.as_dtype_of(backend, loss, input))


def reduce_weighted(backend: Backend, loss: Any, weight: Any, reduction: str, *, normalize_by_weight: bool) -> Any:
    """Reduce ``weight * loss``.

    ``normalize_by_weight``: "mean" is ``sum(w * l) / sum(w)`` (PyTorch's MSE
    and L1 rule); otherwise it is ``mean(w * l)`` (Huber, BCE).
    """
    xp = backend.xp
    if weight is None:
        return v.reduce(backend, loss, reduction)
    weighted = loss * weight
    if reduction != "mean" or not normalize_by_weight:
        return v.reduce(backend, weighted, reduction)
    full_weight = xp.broadcast_to(weight, loss.shape)
    return v.weighted_mean(backend, xp.sum(weighted), xp.sum(full_weight))
