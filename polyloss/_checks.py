"""Argument checks shared by the losses, the box utilities and the recipes.

Checks read shapes and dtypes only (never array values), except the value
checks marked *host*, which run only where a backend says values can be read
without a device synchronisation.
"""

from __future__ import annotations

import math
from typing import Any
from typing import get_args

from polyloss.backend._base import Backend
from polyloss.typing import KLDivReduction
from polyloss.typing import Reduction

REDUCTIONS: tuple[str, ...] = get_args(Reduction)
KL_REDUCTIONS: tuple[str, ...] = get_args(KLDivReduction)
_HALF = ("float16", "bfloat16")


def check_reduction(reduction: object, allowed: tuple[str, ...] = REDUCTIONS) -> None:
    if reduction not in allowed:
        raise ValueError(f"reduction must be one of {', '.join(map(repr, allowed))}, got {reduction!r}")


def is_floating(backend: Backend, dtype: Any) -> bool:
    return backend.dtype_kind(dtype) == "f"


def is_integer(backend: Backend, dtype: Any) -> bool:
    return backend.dtype_kind(dtype) == "i"


def check_floating(backend: Backend, x: Any, name: str = "input") -> None:
    if backend.dtype_kind(x.dtype) != "f":
        raise TypeError(f"{name} must have a real floating dtype, got {x.dtype}")


def check_same_shape(input: Any, target: Any, *, input_name: str = "input", target_name: str = "target") -> None:
    if input.shape != target.shape and tuple(input.shape) != tuple(target.shape):
        raise ValueError(
            f"{target_name} shape {tuple(target.shape)} must equal {input_name} shape "
            f"{tuple(input.shape)} (polyloss never broadcasts a target)"
        )


def check_broadcastable(x: Any, shape: tuple[int, ...], name: str, into: str = "input") -> None:
    """``x`` must broadcast to ``shape`` without enlarging it."""
    xs = tuple(x.shape)
    ok = len(xs) <= len(shape) and all(a in (1, b) for a, b in zip(reversed(xs), reversed(shape), strict=False))
    if not ok:
        raise ValueError(f"{name} shape {xs} does not broadcast to {into} shape {tuple(shape)}")


def check_number(value: object, name: str, *, minimum: float | None = 0.0, strict: bool = False,
                 maximum: float | None = None) -> float:
    """A Python real number within bounds, returned as float."""
    if type(value) is float and (minimum is None or value > minimum or (value == minimum and not strict)) and (
        maximum is None or value <= maximum
    ):
        return value
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a Python number, got {type(value).__name__}")
    v = float(value)
    if math.isnan(v):
        raise ValueError(f"{name} must not be NaN")
    if minimum is not None and (v < minimum or (strict and v == minimum)):
        rel = ">" if strict else ">="
        raise ValueError(f"{name} must be {rel} {minimum}, got {value!r}")
    if maximum is not None and v > maximum:
        raise ValueError(f"{name} must be <= {maximum}, got {value!r}")
    return v


def check_ignore_index(ignore_index: object) -> None:
    if type(ignore_index) is int:
        return
    if ignore_index is not None and (isinstance(ignore_index, bool) or not isinstance(ignore_index, int)):
        raise TypeError(f"ignore_index must be an int or None, got {type(ignore_index).__name__}")


def normalize_axis(axis: object, ndim: int, name: str = "axis") -> int:
    if type(axis) is int and -ndim <= axis < ndim:
        return axis % ndim
    if isinstance(axis, bool) or not isinstance(axis, int):
        raise TypeError(f"{name} must be an int, got {type(axis).__name__}")
    if not -ndim <= axis < ndim:
        raise ValueError(f"{name}={axis} is out of range for an input with {ndim} dimension(s)")
    return axis % ndim


def as_dtype_of(backend: Backend, x: Any, like: Any) -> Any:
    """``x`` cast to ``like``'s dtype when it differs (keeps autograd graphs)."""
    if x.dtype == like.dtype:
        return x
    return backend.xp.astype(x, like.dtype)


def upcast_half(backend: Backend, x: Any) -> Any:
    """float16/bfloat16 -> float32 for internal accumulation (others unchanged)."""
    if str(x.dtype).rsplit(".", 1)[-1] in _HALF:
        return backend.xp.astype(x, backend.xp.float32)
    return x


def unit_magnitudes(backend: Backend, x: Any) -> tuple[bool, Any]:
    """``(every |x| is 1, |x|)``: the range of ``|x|`` in one pass where the library has one (PyTorch's
    ``aminmax``; its bool reductions, as ``all(|x| == 1)``, take seven times as long); NaN fails. ``|x|`` is
    fine for unsigned dtypes (which cannot be compared with -1 on array-api-strict; int8's abs(-128) is -128).
    Reads values: only for non-empty arrays where :meth:`Backend.is_host_array` holds."""
    magnitude = backend.xp.abs(x)
    lo, hi = backend.min_max(magnitude)
    return lo == 1 and hi == 1, magnitude


def usable_ignore_index(backend: Backend, target: Any, ignore_index: int | None) -> int | None:
    """``ignore_index``, or None when no value of ``target``'s integer dtype can equal it (-100 for uint8)."""
    if ignore_index is None or target.dtype == backend.xp.int64:
        return ignore_index
    info = backend.xp.iinfo(target.dtype)
    return ignore_index if info.min <= ignore_index <= info.max else None


def check_class_indices(backend: Backend, target: Any, num_classes: int, *, ignore_index: int | None,
                        name: str = "target", always: bool = False) -> bool:
    """Host backends only: every index in [0, C) or equal to ``ignore_index``.

    ``always=True`` also checks arrays of other backends whose values can be read
    without a device sync (torch on CPU): used to explain a native kernel's error.
    Returns True when the values were read and every one is in [0, C).
    """
    if not (backend.host or (always and backend.is_host_array(target))):
        return False
    if math.prod(target.shape) == 0:
        return True
    xp = backend.xp
    if int(xp.min(target)) >= 0 and int(xp.max(target)) < num_classes:
        return True  # two reductions instead of four element-wise passes in the common case
    bad = (target < 0) | (target >= num_classes)
    ignore_index = usable_ignore_index(backend, target, ignore_index)
    if ignore_index is not None:
        bad = bad & (target != ignore_index)
    if bool(xp.any(bad)):
        wide = xp.astype(target, xp.int64)  # -1 does not fit an unsigned target
        lo = int(xp.min(xp.where(bad, wide, num_classes)))
        hi = int(xp.max(xp.where(bad, wide, -1)))
        bad_value = lo if lo < 0 else hi
        raise ValueError(
            f"{name} holds class index {bad_value} outside [0, {num_classes})"
            + (f" that is not ignore_index={ignore_index}" if ignore_index is not None else "")
        )
    return False
