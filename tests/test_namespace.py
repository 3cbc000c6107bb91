"""Namespace and backend resolution."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import polyloss as pl
from polyloss import _namespace
from polyloss._registry import registry

BACKEND_DIR = Path(pl.__file__).parent / "backend"


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
    assert _namespace._slots[_namespace._slot(np.ndarray, registry.generation)] is backend

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


def test_fast_paths_switch_is_restored_after_an_exception():
    with pytest.raises(RuntimeError), pl.fast_paths(False):
        raise RuntimeError
    assert _namespace.fast_paths_enabled()


def test_switch_functions_are_one_and_the_same():
    from polyloss import _switches

    assert pl.fast_paths is _namespace.fast_paths is _switches.fast_paths
    assert _namespace.fast_paths_enabled is _switches.fast_paths_enabled


# -- layering: backends are below the namespace layer --------------------------------------------

_ABOVE_BACKENDS = ("polyloss._namespace", "polyloss._api", "polyloss.functional", "polyloss.autodiff",
                   "polyloss.detection", "polyloss.boxes", "polyloss.losses")


def _imports(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
    return names


@pytest.mark.parametrize("path", sorted(BACKEND_DIR.glob("*.py")), ids=lambda p: p.name)
def test_backends_do_not_import_higher_layers(path):
    bad = sorted(name for name in _imports(path)
                 if any(name == layer or name.startswith(layer + ".") for layer in _ABOVE_BACKENDS))
    assert not bad, f"{path.name} imports {bad}"


def test_switch_module_is_a_leaf():
    assert not [name for name in _imports(Path(pl.__file__).parent / "_switches.py") if name.startswith("polyloss")]


# -- the type cache and the registry generation --------------------------------------------------


def test_cache_follows_the_registry_generation_without_a_listener():
    x = np.zeros(2)
    backend = _namespace.backend_of(x)
    generation = registry.generation
    assert _namespace._slot(np.ndarray, generation) >= 0
    assert _namespace._slot(np.ndarray, generation + 1) == -1  # an answer of another generation is not used
    assert not [f for f in registry._listeners if getattr(f, "__module__", None) == _namespace.__name__]
    registry.reload()
    try:
        assert registry.generation == generation + 1
        assert _namespace._slot(np.ndarray, registry.generation) == -1  # stale: looked up again
        again = _namespace.backend_of(x)
        assert type(again) is type(backend)
        assert _namespace._slot(np.ndarray, registry.generation) >= 0
    finally:
        _namespace.clear_cache()


def test_an_answer_found_while_the_plugins_changed_is_not_kept():
    _namespace.clear_cache()
    backend = _namespace.backend_of(np.zeros(1))

    class Kind:
        pass

    _namespace._store(Kind, backend, registry.generation - 1)  # found from older tables
    assert _namespace._slot(Kind, registry.generation) == -1
    assert _namespace._slot(Kind, registry.generation - 1) == -1
    _namespace._store(Kind, backend, registry.generation)
    assert _namespace._slots[_namespace._slot(Kind, registry.generation)] is backend
    _namespace.clear_cache()


def test_result_keeps_device_and_dtype(xp):
    x = xp.asarray(np.ones((3, 4)))
    t = xp.asarray(np.zeros(3, dtype=np.int64))
    out = pl.cross_entropy(x, t)
    assert out.dtype == x.dtype
    if xp.library == "array_api_strict":
        assert out.device == x.device
    if xp.is_torch:
        assert out.device == x.device
