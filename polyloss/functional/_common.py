"""Plumbing shared by the loss families (not public): dtypes, the native-kernel dispatch, one-hots."""

from __future__ import annotations

import math
from typing import Any

from polyloss import _checks as v
from polyloss._namespace import check_same
from polyloss._namespace import fast_paths_enabled
from polyloss._namespace import resolve
from polyloss.backend._base import Backend


def _half(dtype: Any) -> bool:
    """Whether a floating dtype is float16 or bfloat16: two bytes (no cache, so that a compiled graph
    guards on nothing filled at first use)."""
    itemsize = getattr(dtype, "itemsize", None)
    if itemsize is not None:
        return bool(itemsize == 2)
    return str(dtype).rsplit(".", 1)[-1] in ("float16", "bfloat16")


#: :meth:`Backend.plan_key` -> ``run(*arrays)``: the kernel call checked arguments of that signature took (see
#: :func:`planned`)
_PLANS: dict[tuple[Any, ...], Any] = {}
_MAX_PLANS = 4096


def planned(
    name: str, arrays: tuple[Any, ...], *options: Any, cacheable: bool = True, input_name: str = "input"
) -> tuple[Backend, tuple[Any, ...] | None, Any]:
    """``(backend, plan key, loss)``: the backend of ``arrays`` (the loss's array arguments in order, input
    first, named ``input_name`` in errors; of two, the second must share the first's namespace), the
    signature under which this call's kernel plan is cached (None where the backend uses none now: no plans,
    another array type, tracing, fast paths off, or not ``cacheable``) and the loss from the plan cached under
    it, or ``NotImplemented`` (no plan, or one of its guards or the kernel declined the values: the loss then
    takes its full path, checks included, and hands the key to :func:`try_fast_path`).

    A plan stands for the checks that depend on the signature alone (types, dtypes, shapes, options), which
    passed when it was built; reads of values stay in the plan, as guards. The per-call overhead of a small
    loss is then one key and one dictionary lookup above the native kernel. ``options``: every option the
    checks depend on, in a fixed order (array options are not: a call holding one passes ``cacheable=False``).
    """
    backend = resolve(*arrays[:2] if len(arrays) == 2 else arrays[:1], input_name=input_name)
    key = backend.plan_key(name, arrays, options) if cacheable and backend.kernel_plans else None
    run = _PLANS.get(key) if key is not None else None
    if run is None:
        return backend, key, NotImplemented
    try:
        return backend, key, run(*arrays)
    except (IndexError, RuntimeError):  # the full path raises it again, explained where it can be
        return backend, key, NotImplemented


def _remember_plan(backend: Backend, key: tuple[Any, ...], name: str, args: tuple[Any, ...],
                   options: dict[str, Any]) -> None:
    build = backend.kernel_plans.get(name)
    run = build(*args, **options) if build is not None else None
    if run is not None:
        if len(_PLANS) >= _MAX_PLANS:
            _PLANS.clear()
        _PLANS[key] = run


def try_fast_path(backend: Backend, name: str, *args: Any, plan: tuple[Any, ...] | None = None,
                  **options: Any) -> Any:
    """The backend's native kernel for ``name`` if it covers these options, else ``NotImplemented``.

    Half-precision inputs are given to the kernel in float32 and the result cast
    back (as PyTorch's autocast does for losses): native half kernels round every
    intermediate, e.g. ``x - y`` before squaring, and lose up to 10x the result's precision.

    ``plan``: the call's plan key from :func:`planned`, given where ``args`` are the loss's own arrays (as given to
    :func:`planned`) and its checks passed: the kernel call is then cached for the next call of this signature.
    """
    fast = backend.fast_paths.get(name)
    if fast is None or not fast_paths_enabled():
        return NotImplemented
    input = args[0]
    try:
        if not _half(input.dtype):
            out = fast(*args, **options)
            if plan is not None and out is not NotImplemented:
                _remember_plan(backend, plan, name, args, options)
            return out
        up = [v.upcast_half(backend, a) if hasattr(a, "dtype") else a for a in args]
        out = fast(*up, **{k: v.upcast_half(backend, a) if hasattr(a, "dtype") else a for k, a in options.items()})
    except (IndexError, RuntimeError):
        _explain_kernel_error(backend, name, args, options)
        raise
    return out if out is NotImplemented else finish(backend, out, input)


def _explain_kernel_error(backend: Backend, name: str, args: tuple[Any, ...], options: dict[str, Any]) -> None:
    """A native kernel rejected its arguments: raise ``ValueError`` naming the bad values if they can be read."""
    input, target = args[0], args[1]
    if not backend.is_host_array(input):
        return
    try:
        _check_kernel_arguments(backend, name, input, target, options)
    except ValueError:
        raise
    except Exception:  # the explanation failed: the kernel's own error is re-raised
        return


def _check_kernel_arguments(backend: Backend, name: str, input: Any, target: Any, options: dict[str, Any]) -> None:
    if "axis" in options and backend.dtype_kind(target.dtype) == "i":
        v.check_class_indices(backend, target, input.shape[options["axis"]],
                              ignore_index=options.get("ignore_index"), always=True)


def pointwise_inputs(backend: Backend, input: Any, target: Any, reduction: str) -> None:
    """Checks of an element-wise loss: float input, target of the same shape, a known reduction."""
    v.check_reduction(reduction)
    v.check_floating(backend, input)
    v.check_same_shape(input, target)
    if backend.dtype_kind(target.dtype) not in "fib":
        raise TypeError(f"target must have a real (floating, integer or bool) dtype, got {target.dtype}")


def optional_array(backend: Backend, value: Any, name: str, shape: tuple[int, ...], into: str = "input") -> None:
    if value is None:
        return
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        raise TypeError(f"{name} must be an array of the input's namespace or None, got a Python number")
    check_same(backend, value, name)
    v.check_broadcastable(value, shape, name, into)
    dtype = value.dtype  # pyright: ignore[reportAttributeAccessIssue] (a bool is no array: check_same raised)
    if not (v.is_floating(backend, dtype) or v.is_integer(backend, dtype)):
        raise TypeError(f"{name} must have a real numeric dtype, got {dtype}")


def compute_dtype(backend: Backend, input: Any, *others: Any) -> tuple[Any, ...]:
    """``input`` upcast from half precision, and ``others`` cast to its dtype (None kept)."""
    x = v.upcast_half(backend, input)
    return (x, *(None if o is None else v.as_dtype_of(backend, o, x) for o in others))


def finish(backend: Backend, loss: Any, input: Any) -> Any:
    """Back to the input's dtype (after half-precision upcasting), as an array."""
    return backend.as_array(v.as_dtype_of(backend, loss, input))


def one_hot(backend: Backend, index: Any, num_classes: int, axis: int, ndim: int) -> Any:
    """Boolean one-hot of integer ``index`` along ``axis`` of an ``ndim`` array (never materialised as floats)."""
    xp = backend.xp
    shape = [1] * ndim
    shape[axis] = num_classes
    classes = xp.reshape(xp.arange(num_classes, dtype=index.dtype, device=backend.device(index)), tuple(shape))
    return classes == xp.expand_dims(index, axis=axis)


def apply_sample_seed(backend: Backend, grad: Any, seed: Any, axis: int) -> Any:
    """``grad`` times a per-sample factor (a float, a 0-d array or an array without the class axis)."""
    if isinstance(seed, float) or seed.ndim == 0:
        return grad * seed
    return grad * backend.xp.expand_dims(seed, axis=axis)


def runs_fused(backend: Backend, name: str, input: Any) -> bool:
    """Whether a loss's fused value-and-gradient runs for ``input`` (else the loss and its gradient run apart).

    Not where the backend's native kernel gives the loss's value on a device backend (PyTorch keeps its
    kernel's value and autograd's graph), nor on an ``input`` that requires grad: the fused code updates
    the arrays it made in place, which autograd could not differentiate through.
    """
    if not backend.host and fast_paths_enabled() and name in backend.fast_paths:
        return False
    return not getattr(input, "requires_grad", False)


def flat_dot(backend: Backend, a: Any, b: Any) -> Any:
    """``sum(a * b)`` over every element without an ``a * b`` temporary: the ``matmul`` of the flat arrays (a
    BLAS dot in NumPy; NumPy's ``vecdot`` ufunc is up to 6x slower in float64)."""
    xp = backend.xp
    n = math.prod(a.shape)
    return xp.matmul(xp.reshape(a, (n,)), xp.reshape(b, (n,)))
