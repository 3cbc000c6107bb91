"""Backend cases for tests: one namespace, dtype and device each."""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from collections.abc import Iterable
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from dataclasses import field
from typing import Any

import numpy as np

#: the namespace of the dask case (array_api_compat's wrapper: it has the standard's dtypes and functions)
DASK = "array_api_compat.dask.array"

__all__ = ["Case", "available_cases", "case_params", "register_case", "unregister_case"]


@dataclass
class Case:
    """One backend configuration a test runs on.

    Attributes:
        name: pytest id (``"numpy"``, ``"strict-device1"``, ``"torch-f32"``, ...).
        ns: the array namespace (``numpy``, ``array_api_strict``, ``torch``).
        dtype_name: floating dtype of arrays made by :meth:`asarray`.
        rtol, atol: tolerances suited to that dtype.
    """

    name: str
    library: str
    dtype_name: str = "float64"
    device: Any = None
    rtol: float = 1e-10
    atol: float = 1e-12
    setup: Callable[[], Any] | None = field(default=None, repr=False)
    teardown: Callable[[], Any] | None = field(default=None, repr=False)

    @property
    def ns(self) -> Any:
        return importlib.import_module(self.library)

    @property
    def is_torch(self) -> bool:
        return self.library == "torch"

    @property
    def float_dtype(self) -> Any:
        return getattr(self.ns, self.dtype_name)

    def asarray(self, a: Any, *, dtype: Any = None, requires_grad: bool = False) -> Any:
        """NumPy data -> this case's array: floats in the case dtype, integers int64, bools kept."""
        a = np.asarray(a)
        ns = self.ns
        if dtype is None:
            if a.dtype.kind == "f":
                dtype = self.float_dtype
            elif a.dtype.kind in "iu":
                dtype = ns.int64
            elif a.dtype.kind == "b":
                dtype = ns.bool
        if self.library == "torch":
            import torch

            out = torch.as_tensor(a, dtype=dtype, device=self.device)
            if requires_grad:
                out.requires_grad_(True)
            return out
        if self.library == "cupy":
            import cupy  # pyright: ignore[reportMissingImports] (only where a GPU is)

            return cupy.asarray(a, dtype=dtype)
        if self.library == DASK:
            import dask.array as da

            data = np.asarray(a, dtype=dtype)
            # two chunks along the first axis where it has two elements: every test crosses a chunk boundary
            chunks: Any = tuple(max(1, (n + 1) // 2) if i == 0 else -1 for i, n in enumerate(data.shape)) or -1
            return da.from_array(data, chunks=chunks)  # type: ignore[no-untyped-call]
        if self.device is not None:
            return ns.asarray(a, dtype=dtype, device=self.device)
        return ns.asarray(a, dtype=dtype)

    def to_numpy(self, a: Any) -> np.ndarray:
        """Any array of this case -> float64/int NumPy (detaching torch tensors)."""
        if self.library == "torch":
            a = a.detach().cpu()
            if a.dtype.is_floating_point:
                a = a.double()
            return np.asarray(a.numpy())
        if self.library == "cupy":
            return np.asarray(a.get())
        if self.library == DASK:
            return np.asarray(a.compute() if hasattr(a, "compute") else a)
        if self.library == "array_api_strict":
            import array_api_strict as s

            if self.device is not None:
                a = a.to_device(s.Device("CPU_DEVICE"))
            return np.asarray(a)
        return np.asarray(a)

    @contextmanager
    def active(self) -> Iterator[Case]:
        if self.setup is not None:
            self.setup()
        try:
            yield self
        finally:
            if self.teardown is not None:
                self.teardown()


def _has(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


def _gpu_torch() -> bool:
    if not _has("torch"):
        return False
    import torch

    return bool(torch.cuda.is_available())


def _gpu_cupy() -> bool:
    if not _has("cupy"):
        return False
    try:
        import cupy  # pyright: ignore[reportMissingImports] (only where a GPU is)

        return bool(cupy.cuda.runtime.getDeviceCount() > 0)
    except Exception:
        return False


def _strict_flags(**flags: Any) -> tuple[Callable[[], Any], Callable[[], Any]]:
    def setup() -> None:
        import array_api_strict as s

        s.set_array_api_strict_flags(**flags)

    def teardown() -> None:
        import array_api_strict as s

        s.reset_array_api_strict_flags()

    return setup, teardown


_extra_cases: dict[str, tuple[Case, Callable[[], str | None] | str | None]] = {}


def register_case(case: Case, skip: Callable[[], str | None] | str | None = None) -> Case:
    """Add a backend case (e.g. a plugin's own library) to :func:`available_cases` and the ``xp`` fixture.

    Args:
        case: the case; ``case.library`` is the module imported as ``xp.ns``
            (``"jax.numpy"``). Arrays are made with ``ns.asarray(a, dtype=...)``
            and read back with ``numpy.asarray``, so any library that supports
            both works; ``setup``/``teardown`` run around each test.
        skip: a reason string, or a callable returning one (or None) when the
            case is listed, for when the library is not usable here.

    Returns the case. Registering a name again replaces the earlier case. Call
    it at import time of the plugin's ``conftest.py`` (the ``xp`` fixture is
    parametrised when tests are collected).
    """
    _extra_cases[case.name] = (case, skip)
    return case


def unregister_case(name: str) -> None:
    """Remove a case added with :func:`register_case` (no error if absent)."""
    _extra_cases.pop(name, None)


def available_cases() -> list[tuple[Case, str | None]]:
    """Every case with the reason it is skipped here (None when it runs); registered cases last."""
    return [*_builtin_cases(), *_registered_cases()]


def installed_cases() -> list[Case]:
    """The cases that run here (those :func:`available_cases` gives no skip reason), ready for
    ``check_recipe(cases=...)`` and the other conformance checks."""
    return [case for case, reason in available_cases() if reason is None]


def runnable(cases: Iterable[Case | tuple[Case, str | None]]) -> list[Case]:
    """Cases from a list of cases or of ``(case, skip reason)`` pairs (as :func:`available_cases` returns):
    the pairs with a reason are left out."""
    out = []
    for item in cases:
        if isinstance(item, Case):
            out.append(item)
        elif isinstance(item, tuple) and len(item) == 2 and isinstance(item[0], Case):
            if item[1] is None:
                out.append(item[0])
        else:
            raise TypeError(f"cases must hold polyloss.testing.cases.Case objects or (Case, reason) pairs, "
                            f"got {type(item).__name__}")
    return out


def _registered_cases() -> list[tuple[Case, str | None]]:
    out = []
    for case, skip in _extra_cases.values():
        reason = skip() if callable(skip) else skip
        if reason is None and not _has(case.library.split(".")[0]):
            reason = f"{case.library} is not installed"
        out.append((case, reason))
    return out


def _builtin_cases() -> list[tuple[Case, str | None]]:
    cases: list[tuple[Case, str | None]] = [(Case("numpy", "numpy"), None)]
    if _has("array_api_strict"):
        import array_api_strict as s

        strictest_setup, strictest_teardown = _strict_flags(boolean_indexing=False, data_dependent_shapes=False)
        cases += [
            (Case("strict", "array_api_strict"), None),
            (Case("strict-strictest", "array_api_strict", setup=strictest_setup, teardown=strictest_teardown), None),
            (Case("strict-device1", "array_api_strict", device=s.Device("device1")), None),
        ]
    else:
        cases.append((Case("strict", "array_api_strict"), "array_api_strict is not installed"))
    if _has("torch"):
        cases += [
            (Case("torch-f64", "torch", "float64"), None),
            (Case("torch-f32", "torch", "float32", rtol=2e-5, atol=1e-6), None),
        ]
        gpu = _gpu_torch()
        cases.append(
            (Case("torch-cuda-f32", "torch", "float32", device="cuda", rtol=2e-5, atol=1e-6),
             None if gpu else "no CUDA GPU here")
        )
    else:
        cases.append((Case("torch-f64", "torch", "float64"), "torch is not installed"))
    cases.append((Case("cupy", "cupy"), None if _gpu_cupy() else "cupy with a GPU is not available here"))
    cases.append((Case("dask", DASK), None if _has("dask") else "dask is not installed"))
    return cases


def case_params() -> list[Any]:
    import pytest

    return [
        pytest.param(case, id=case.name, marks=[pytest.mark.skip(reason=reason)] if reason else [])
        for case, reason in available_cases()
    ]
