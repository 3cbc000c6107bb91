"""Helpers of the second set's tests: losses of several positional arrays against a float64 reference.

``check_multi`` runs a loss on one backend case through every path -- the loss itself (fast paths on and,
on torch, off, with autograd of the first array) and the closed-form ``pl.value_and_grad`` -- and compares
each value and gradient with a float64 torch reference (``torch.nn.functional``) or a NumPy one.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
from _support import assert_close
from _support import t64
from _support import torch

import polyloss as pl


def _to_case(xp: Any, value: Any) -> Any:
    return xp.asarray(value) if isinstance(value, np.ndarray) else value


def torch_reference(ref: Callable[..., Any], arrays: tuple[np.ndarray, ...],
                    options: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
    """Value of ``ref`` on float64 (int64) tensors and the gradient of its sum by the first array."""
    tensors = [t64(a) for a in arrays]
    tensors[0].requires_grad_(True)
    out = ref(*tensors, **{k: (t64(v) if isinstance(v, np.ndarray) else v) for k, v in options.items()})
    (grad,) = torch.autograd.grad(out.sum(), tensors[0])
    return out.detach().numpy(), grad.numpy()


def check_multi(xp: Any, fn: Callable[..., Any], arrays: tuple[np.ndarray, ...], options: dict[str, Any],
                expected: tuple[np.ndarray, np.ndarray], *, scale: float = 10.0) -> None:
    """Every path of ``fn`` on case ``xp`` gives ``expected = (value, gradient of the value's sum)``."""
    ref_value, ref_grad = expected
    opts = {k: _to_case(xp, v) for k, v in options.items()}
    value, grad = pl.value_and_grad(fn, *[xp.asarray(a) for a in arrays], **opts)
    first = xp.asarray(arrays[0])
    assert value.dtype == first.dtype and grad.dtype == first.dtype
    assert tuple(grad.shape) == tuple(arrays[0].shape)
    assert tuple(value.shape) == tuple(np.shape(ref_value))
    assert_close(xp.to_numpy(value), ref_value, xp, scale=scale)
    assert_close(xp.to_numpy(grad), ref_grad, xp, scale=scale, what="closed-form gradient")
    for fast in ([True, False] if xp.is_torch else [True]):
        with pl.fast_paths(fast):
            inputs = [xp.asarray(a) for a in arrays]
            if xp.is_torch:
                inputs[0].requires_grad_(True)
            out = fn(*inputs, **opts)
            assert out.dtype == inputs[0].dtype
            assert_close(xp.to_numpy(out), ref_value, xp, scale=scale, what=f"value (fast={fast})")
            if xp.is_torch:
                (g,) = torch.autograd.grad(out.sum(), inputs[0])
                assert_close(xp.to_numpy(g), ref_grad, xp, scale=scale, what=f"autograd (fast={fast})")


def check_against_torch(xp: Any, fn: Callable[..., Any], ref: Callable[..., Any], arrays: tuple[np.ndarray, ...],
                        options: dict[str, Any], *, scale: float = 10.0) -> None:
    check_multi(xp, fn, arrays, options, torch_reference(ref, arrays, options), scale=scale)


def assert_fast_equals_generic(fn: Callable[..., Any], arrays: tuple[np.ndarray, ...], **options: Any) -> None:
    """On float64 torch tensors, the fast path's value and autograd gradient equal the generic code's."""
    results = []
    for fast in (True, False):
        tensors = [t64(a) for a in arrays]
        tensors[0].requires_grad_(True)
        with pl.fast_paths(fast):
            out = fn(*tensors, **{k: (t64(v) if isinstance(v, np.ndarray) else v) for k, v in options.items()})
        (g,) = torch.autograd.grad(out.sum(), tensors[0])
        results.append((out.detach(), g))
    torch.testing.assert_close(results[0][0], results[1][0], rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(results[0][1], results[1][1], rtol=1e-12, atol=1e-14)


def assert_compiles(fn: Callable[..., Any], arrays: tuple[np.ndarray, ...], **options: Any) -> None:
    """``torch.compile(fullgraph=True)`` traces the loss (fast paths on and off) to the eager numbers."""
    from polyloss import _namespace

    for fast in (True, False):
        tensors = [t64(a) for a in arrays]
        tensors[0].requires_grad_(True)
        torch._dynamo.reset()
        _namespace.clear_cache()
        with pl.fast_paths(fast):
            compiled = torch.compile(lambda *a: fn(*a, **options), fullgraph=True, backend="eager")
            out = compiled(*tensors)
            (grad,) = torch.autograd.grad(out.sum(), tensors[0])
            expected = fn(*tensors, **options)
            (expected_grad,) = torch.autograd.grad(expected.sum(), tensors[0])
        torch.testing.assert_close(out, expected)
        torch.testing.assert_close(grad, expected_grad)
