"""The edge-input table: one rule per edge case, checked on every path and backend.

A row names a loss, builds its arrays in NumPy and states the rule:

- ``"nan"``: the value holds NaN (NaN in predictions is never hidden);
- ``"finite"``: the value is finite;
- an exception class: every path raises it, with a message naming one of ``row.names``.

Every path must then agree with every other: the same value (NaN where NaN) or the
same exception class. The paths of one backend case: the loss with the fast paths on
and off, :func:`polyloss.value_and_grad` with the fast paths on and off and, on torch,
autograd through the loss (the fused closed-form backward where the fast path is one)
compared with the closed-form gradient. On torch, the loss and autograd also run after a call of the same
signature on tame values (0.5 and class 0, or 1.0 where the labels must be 1 or -1), which caches the call's
kernel plan: the edge input then meets the plan's guards instead of the loss's checks
(``polyloss.functional._common.planned``).

Families add their rows in ``tests/functional/_edge_rows_<family>.py`` (a ``ROWS``
list); ``tests/functional/test_edge_rules.py`` runs them all in one parametrised test.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass
from dataclasses import field
from typing import Any

import numpy as np

import polyloss as pl


@dataclass(frozen=True)
class EdgeRow:
    """One edge input of one loss and the rule it obeys.

    ``make()`` returns ``(arrays, options)``: the positional NumPy arrays (floating ones
    are converted to the case's float dtype, integer and bool ones keep their dtype)
    and the keyword options (NumPy arrays among them are converted the same way).
    ``grad``: also check :func:`polyloss.value_and_grad` and torch autograd.
    """

    loss: str
    label: str
    make: Callable[[], tuple[tuple[Any, ...], dict[str, Any]]]
    expect: Any  # "nan" | "finite" | an exception class
    names: tuple[str, ...] = ()
    grad: bool = True
    skip: tuple[str, ...] = field(default=())  # case names where an integer dtype does not exist

    @property
    def id(self) -> str:
        return f"{self.loss}-{self.label}"


def _convert(case: Any, a: Any, float_dtype: Any) -> Any:
    if not isinstance(a, np.ndarray):
        return a
    ns = case.ns
    if a.dtype.kind == "f":
        dtype = float_dtype
    else:
        dtype = getattr(ns, a.dtype.name if a.dtype.kind != "b" else "bool")
    if case.library == "torch":
        import torch

        return torch.as_tensor(a, dtype=dtype, device=case.device)
    if case.device is not None:
        return ns.asarray(a, dtype=dtype, device=case.device)
    return ns.asarray(a, dtype=dtype)


def builder(x0: np.ndarray, y0: np.ndarray) -> Callable[..., Callable[[], tuple[tuple[Any, ...], dict[str, Any]]]]:
    """``with_(**changes)`` giving a row's ``make`` from the base arrays ``(x0, y0)``: ``x_at=(index, value)``
    and ``y_at=...`` set one entry, ``x=...`` and ``y=...`` replace an array, ``y_dtype=...`` casts the
    target; every other keyword is an option of the loss."""

    def with_(**changes: Any) -> Callable[[], tuple[tuple[Any, ...], dict[str, Any]]]:
        def make() -> tuple[tuple[Any, ...], dict[str, Any]]:
            x, y = x0.copy(), y0.copy()
            options = {}
            for key, value in changes.items():
                if key == "x_at":
                    x[value[0]] = value[1]
                elif key == "y_at":
                    y[value[0]] = value[1]
                elif key == "x":
                    x = value
                elif key == "y":
                    y = value
                elif key == "y_dtype":
                    y = y.astype(value)
                else:
                    options[key] = value
            return (x, y), options

        return make

    return with_


@dataclass
class Outcome:
    path: str
    value: np.ndarray | None = None
    grad: np.ndarray | None = None
    error: type[BaseException] | None = None
    message: str = ""

    def describe(self) -> str:
        if self.error is not None:
            return f"{self.path}: raises {self.error.__name__}: {self.message}"
        return f"{self.path}: value {self.value!r} grad {self.grad!r}"


def _run(path: str, body: Callable[[], tuple[Any, Any]], case: Any) -> Outcome:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # NumPy's invalid-value warnings: the NaN is the rule
            value, grad = body()
    except (ValueError, TypeError, RuntimeError, IndexError, OverflowError, ZeroDivisionError) as exc:
        return Outcome(path, error=type(exc), message=str(exc).splitlines()[0] if str(exc) else "")
    return Outcome(path, value=case.to_numpy(value), grad=None if grad is None else case.to_numpy(grad))


def outcomes(row: EdgeRow, case: Any) -> list[Outcome]:
    """The row through every path of ``case``."""
    fn = pl.get_loss(row.loss)
    arrays, options = row.make()
    float_dtype = case.float_dtype

    def args(requires_grad: bool = False) -> tuple[tuple[Any, ...], dict[str, Any]]:
        xs = [_convert(case, a, float_dtype) for a in arrays]
        if requires_grad:
            xs[0].requires_grad_(True)
        return tuple(xs), {k: _convert(case, v, float_dtype) for k, v in options.items()}

    results = []
    for fast in (True, False):
        tag = "fast" if fast else "generic"
        with pl.fast_paths(fast):

            def loss_only() -> tuple[Any, Any]:
                xs, opts = args()
                return fn(*xs, **opts), None

            results.append(_run(f"{case.name}/{tag}/loss", loss_only, case))
            if not row.grad:
                continue

            def closed_form() -> tuple[Any, Any]:
                xs, opts = args()
                return pl.value_and_grad(fn, *xs, **opts)

            results.append(_run(f"{case.name}/{tag}/value_and_grad", closed_form, case))
            if case.is_torch and np.asarray(arrays[0]).dtype.kind == "f":

                def autograd() -> tuple[Any, Any]:
                    xs, opts = args(requires_grad=True)
                    out = fn(*xs, **opts)
                    out.sum().backward()
                    return out, xs[0].grad

                results.append(_run(f"{case.name}/{tag}/autograd", autograd, case))
            if case.is_torch and fast:

                def planned(requires_grad: bool) -> tuple[Any, Any]:
                    xs, opts = args(requires_grad)
                    _warm_plan(fn, xs, opts)
                    out = fn(*xs, **opts)
                    if not requires_grad:
                        return out, None
                    out.sum().backward()
                    return out, xs[0].grad

                results.append(_run(f"{case.name}/planned/loss", lambda: planned(False), case))
                if row.grad and np.asarray(arrays[0]).dtype.kind == "f":
                    results.append(_run(f"{case.name}/planned/autograd", lambda: planned(True), case))
    return results


def _warm_plan(fn: Callable[..., Any], xs: tuple[Any, ...], opts: dict[str, Any]) -> None:
    """Call ``fn`` on arrays of ``xs``'s signature holding 0.5 (floating) or 0 (integer, bool), else, where the
    loss's checks refuse those (labels 1 or -1), 1.0 and 0: where a call passes the checks, its kernel plan for
    the signature is cached."""
    import torch

    for fill in (0.5, 1.0):
        tame = [x if not isinstance(x, torch.Tensor) else torch.full_like(x, fill) if x.is_floating_point()
                else torch.zeros_like(x) for x in xs]
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                fn(*tame, **opts)
            return
        except (ValueError, TypeError, RuntimeError, IndexError):
            pass


def _same(a: np.ndarray | None, b: np.ndarray | None, rtol: float, atol: float) -> bool:
    if a is None or b is None:
        return True
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    return a.shape == b.shape and bool(np.allclose(a, b, rtol=rtol, atol=atol, equal_nan=True))


def check_row(row: EdgeRow, case: Any) -> None:
    """Assert the row's rule on every path of ``case`` and that every path agrees."""
    results = outcomes(row, case)
    report = "\n".join(r.describe() for r in results)
    first = results[0]
    if isinstance(row.expect, type):
        for r in results:
            assert r.error is not None and issubclass(r.error, row.expect), f"expected {row.expect.__name__}\n{report}"
            if row.names:
                assert any(name in r.message for name in row.names), f"message must name one of {row.names}\n{report}"
        return
    for r in results:
        assert r.error is None, f"expected a value\n{report}"
        value = np.asarray(r.value, dtype=float)
        if row.expect == "nan":
            assert np.isnan(value).any(), f"expected NaN (never hidden)\n{report}"
        elif row.expect == "finite":
            assert np.isfinite(value).all(), f"expected a finite value\n{report}"
        else:  # pragma: no cover - a row with an unknown rule
            raise AssertionError(f"unknown rule {row.expect!r}")
        rtol = max(case.rtol, 1e-5)
        assert _same(r.value, first.value, rtol, case.atol), f"paths disagree on the value\n{report}"
    grads = [r for r in results if r.grad is not None]
    for r in grads[1:]:
        same = _same(r.grad, grads[0].grad, max(case.rtol, 1e-5), case.atol)
        assert same, f"paths disagree on the gradient\n{report}"
