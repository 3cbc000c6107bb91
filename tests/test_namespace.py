"""Namespace and backend resolution."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

import polyloss as pl
from polyloss import _namespace


def test_import_polyloss_imports_no_framework():
    code = (
        "import sys, polyloss, polyloss.hookspecs, polyloss.testing\n"
        "polyloss.losses(); polyloss.backends(); polyloss.recipes()\n"
        "bad = [m for m in ('torch', 'cupy', 'jax') if m in sys.modules]\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_resolution_is_cached_per_type_and_needs_no_hook_call(monkeypatch):
    x = np.zeros(3)
    backend = _namespace.resolve(x, x)
    assert backend.name == "numpy"
    assert _namespace._by_type[np.ndarray] is backend
    from polyloss._registry import registry

    calls = []
    monkeypatch.setattr(type(registry), "tables", property(lambda self: calls.append(1)))
    pl.mse_loss(x, x)
    assert calls == []


def test_backend_of_each_library(xp):
    backend = _namespace.resolve(xp.asarray(np.zeros(2)))
    expected = {"numpy": "numpy", "torch": "torch", "cupy": "cupy"}.get(xp.library, "array_api_strict")
    assert backend.name == expected


def test_mixed_namespaces_raise_type_error_naming_both():
    torch = pytest.importorskip("torch")
    with pytest.raises(TypeError, match=r"target .*numpy.*input is from torch"):
        pl.mse_loss(torch.zeros(3), np.zeros(3))
    with pytest.raises(TypeError, match=r"weight .*torch.*input is from numpy"):
        pl.mse_loss(np.zeros(3), np.zeros(3), weight=torch.ones(3))


def test_strict_and_numpy_do_not_mix():
    import array_api_strict as s

    with pytest.raises(TypeError, match="mixed array namespaces"):
        pl.cross_entropy(s.asarray([[1.0, 2.0]]), np.asarray([0]))


def test_unsupported_type_names_argument():
    with pytest.raises(TypeError, match="input must be an array"):
        pl.mse_loss([1.0, 2.0], np.zeros(2))


def test_fast_paths_switch_is_scoped():
    assert _namespace.fast_paths_enabled()
    with pl.fast_paths(False):
        assert not _namespace.fast_paths_enabled()
    assert _namespace.fast_paths_enabled()


def test_result_keeps_device_and_dtype(xp):
    x = xp.asarray(np.ones((3, 4)))
    t = xp.asarray(np.zeros(3, dtype=np.int64))
    out = pl.cross_entropy(x, t)
    assert out.dtype == x.dtype
    if xp.library == "array_api_strict":
        assert out.device == x.device
    if xp.is_torch:
        assert out.device == x.device
