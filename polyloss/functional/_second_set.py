"""Helpers shared by the second set of losses (not public): option checks, ``clamp_min`` with PyTorch's
subgradient, the label checks, and the forward / gradient drivers of a loss written once as
``parts(*arrays, need_grad) -> (values, derivative or None)``."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from polyloss import _checks as v
from polyloss.backend._base import Backend
from polyloss.functional._common import compute_dtype
from polyloss.functional._common import finish
from polyloss.functional._common import try_fast_path
from polyloss.functional._reductions import pointwise_scale
from polyloss.functional._reductions import reduce
from polyloss.functional._reductions import sample_upstream


def check_bool(value: object, name: str) -> bool:
    if not isinstance(value, bool):
        raise TypeError(f"{name} must be a bool, got {type(value).__name__}")
    return value


def finite_number(value: object, name: str, *, minimum: float | None = None, strict: bool = False,
                  maximum: float | None = None) -> float:
    """A finite Python real number within bounds (NaN and +-inf are a ``ValueError`` naming ``name``)."""
    out = v.check_number(value, name, minimum=minimum, strict=strict, maximum=maximum)
    if math.isnan(out):
        raise ValueError(f"{name} must not be NaN")
    if math.isinf(out):
        raise ValueError(f"{name} must be finite, got {value!r}")
    return out


def clamp_min0(backend: Backend, z: Any, *, strict: bool = False) -> Any:
    """``max(z, 0)`` as PyTorch's ``clamp_min(z, 0)``: NaN kept; under autograd the gradient is
    ``[z >= 0]`` (1 at the kink, 0 at NaN), or ``[z > 0]`` with ``strict``: :func:`clamp_min0_grad`."""
    xp = backend.xp
    if strict:
        return xp.where(z > 0, z, xp.where(z <= 0, 0.0, backend.stop_gradient(z)))
    return xp.where(z >= 0, z, xp.where(z < 0, 0.0, backend.stop_gradient(z)))


def clamp_min0_grad(backend: Backend, z: Any, *, strict: bool = False) -> Any:
    """Derivative of :func:`clamp_min0`: 1 where ``z >= 0`` (the kink included, as PyTorch's ``clamp_min``)
    or ``z > 0`` (``strict``), else 0 (NaN included)."""
    xp = backend.xp
    return xp.astype(z > 0 if strict else z >= 0, z.dtype)  # (where(c, 1.0, 0.0) would be float32 on torch)


def label_dtype(backend: Backend, target: Any, name: str = "target") -> None:
    """``target`` holds real numbers (floating or integer; not bool or complex)."""
    if backend.dtype_kind(target.dtype) not in "fi":
        raise TypeError(f"{name} must have a real floating or integer dtype, got {target.dtype}")


def check_signs(backend: Backend, target: Any, loss: str, name: str = "target") -> None:
    """Where values can be read without a sync: every label is 1 or -1, else ``ValueError`` naming one."""
    if not backend.is_host_array(target) or math.prod(target.shape) == 0:
        return
    xp = backend.xp
    signs, magnitude = v.unit_magnitudes(backend, target)
    if signs:
        return
    ok = magnitude == 1
    if backend.dtype_kind(target.dtype) == "i":
        target = xp.astype(target, xp.float64)
    bad = float(xp.max(xp.where(ok, -math.inf, target)))
    raise ValueError(f"{name} of {loss} must hold labels 1 or -1, got {bad!r}")


def check_unit_interval(backend: Backend, target: Any, loss: str, name: str = "target") -> None:
    """Where values can be read without a sync: every value lies in [0, 1] (NaN does not)."""
    if backend.dtype_kind(target.dtype) == "b" or not backend.is_host_array(target) or math.prod(target.shape) == 0:
        return
    xp = backend.xp
    lo, hi = backend.min_max(target)  # one pass on PyTorch, whose bool all() is slow; NaN fails
    if lo >= 0 and hi <= 1:
        return
    ok = (target >= 0) & (target <= 1)
    if backend.dtype_kind(target.dtype) != "f":
        target = xp.astype(target, xp.float64)
    bad = float(xp.max(xp.where(ok, -math.inf, target)))
    raise ValueError(f"{name} of {loss} must hold labels in [0, 1], got {bad!r}")


# -- the forward and gradient drivers of a loss written as ``parts(*arrays, need_grad) -> (loss, derivative)``


def forward(backend: Backend, name: str, arrays: tuple[Any, ...], options: dict[str, Any],
            parts: Callable[..., tuple[Any, Any]], raw: tuple[Any, ...] = (), *,
            plan: tuple[Any, ...] | None = None) -> Any:
    """The loss ``name``: the backend's fast path for ``(*arrays, *raw, **options)`` where it has one,
    else ``parts(*arrays in the input's compute dtype, *raw, need_grad=False)`` (element-wise or
    per-sample values) reduced by ``options["reduction"]``. ``plan``: the key :func:`planned` gave for
    ``arrays`` (the loss's own), under which the kernel call is cached."""
    out = try_fast_path(backend, name, *arrays, *raw, plan=plan if not raw else None, **options)
    if out is not NotImplemented:
        return out
    value, _ = parts(*compute_dtype(backend, *arrays), *raw, need_grad=False)
    return finish(backend, reduce(backend, value, options["reduction"]), arrays[0])


def backward(backend: Backend, arrays: tuple[Any, ...], reduction: str, cotangent: Any,
             parts: Callable[..., tuple[Any, Any]], raw: tuple[Any, ...] = (), *, per_sample: bool = False) -> Any:
    """The closed-form gradient by ``arrays[0]``: the derivative ``parts`` returns (by element, or by
    element of per-sample values over the last axis with ``per_sample``) times the reduction's upstream factor."""
    cast = compute_dtype(backend, *arrays)
    _, derivative = parts(*cast, *raw, need_grad=True)
    x = cast[0]
    if per_sample:
        up = sample_upstream(backend, cotangent, tuple(x.shape[:-1]), reduction, x)
        if not isinstance(up, float):
            up = backend.xp.expand_dims(up, axis=-1)
    else:
        up = pointwise_scale(backend, x, None, reduction, cotangent, normalize_by_weight=False)
    return finish(backend, derivative * up, arrays[0])
