"""The typed surface: mypy --strict and pyright on the typed example, on misuses, and on an editable install.

Each check runs the real checker as a subprocess (skipped only where that checker
is not installed). The example is ``docs/examples/typed_usage.py``; the
configuration of both checkers is in ``pyproject.toml``.
"""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import textwrap
import zipfile
from pathlib import Path
from typing import get_args

import numpy as np
import pytest

import polyloss as pl
from polyloss import typing as pt

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "docs" / "examples" / "typed_usage.py"


def _mypy() -> list[str]:
    if importlib.util.find_spec("mypy") is None:
        pytest.skip("mypy is not installed")
    return [sys.executable, "-m", "mypy"]


def _pyright() -> list[str]:
    # the PyPI wrapper (python -m pyright) or a pyright on PATH (npm)
    if importlib.util.find_spec("pyright") is not None:
        return [sys.executable, "-m", "pyright"]
    found = shutil.which("pyright")
    if found is None:
        pytest.skip("pyright is not installed")
    return [found]


def _checker(name: str) -> list[str]:
    return _mypy() if name == "mypy" else _pyright()


def _run(cmd: list[str], cwd: Path, timeout: float = 900) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}  # polyloss found as a user's project does
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout, env=env)


# -- the types themselves ---------------------------------------------------------------------------


def test_reduction_literals_are_the_reductions_the_losses_accept():
    from polyloss import _checks
    from polyloss.functional import segmentation

    assert get_args(pl.Reduction) == ("none", "mean", "sum") == _checks.REDUCTIONS
    assert get_args(pl.KLDivReduction) == (*get_args(pl.Reduction), "batchmean") == _checks.KL_REDUCTIONS
    assert set(get_args(pt.SegmentationMode)) == set(segmentation.MODES)
    with pytest.raises(ValueError, match="avg"):
        pl.mse_loss(np.zeros(2), np.zeros(2), reduction="avg")


def test_every_loss_is_typed_by_its_first_array():
    import inspect

    for name in pl.losses():
        fn = pl.get_loss(name)
        sig = inspect.signature(fn)
        params = list(sig.parameters.values())
        assert params[0].annotation == "ArrayT", name
        assert sig.return_annotation == "ArrayT", name
        expected = "KLDivReduction" if name == "kl_div" else "Reduction"
        assert sig.parameters["reduction"].annotation == expected, name


# -- the typed example ------------------------------------------------------------------------------


def test_example_runs():
    pytest.importorskip("torch")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    out = subprocess.run([sys.executable, str(EXAMPLE)], capture_output=True, text=True, timeout=300, env=env)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("ok: ssd total")


@pytest.mark.slow
@pytest.mark.parametrize("checker", ["mypy", "pyright"])
def test_example_is_clean(checker):
    pytest.importorskip("torch")
    # mypy --strict (pyproject), pyright strict (the file's own comments)
    out = _run([*_checker(checker), str(EXAMPLE.relative_to(ROOT))], ROOT)
    assert out.returncode == 0, out.stdout + out.stderr
    assert ("Success: no issues" if checker == "mypy" else "0 errors") in out.stdout


# -- misuses are type errors ------------------------------------------------------------------------

_MISUSES = textwrap.dedent(
    """\
    import numpy as np
    import numpy.typing as npt

    import polyloss as pl

    x: npt.NDArray[np.float64] = np.zeros(3)
    pl.mse_loss(x, x, reduction="avg")
    pl.mse_loss(x, x, reduction="batchmean")
    pl.mse_loss([1.0, 2.0], [0.0, 0.0])
    pl.dice_loss(x, x, mode="multi")
    pl.cross_entropy(x, x, 0)


    def loss_of(name: str) -> None:
        pl.l1_loss(x, x, reduction=name)
    """
)
_BAD_LINES = [7, 8, 9, 10, 11, 15]


def _error_lines(output: str, filename: str) -> set[int]:
    # mypy: path:LINE: error: ...; pyright: path:LINE:COL - error: ...
    pattern = re.compile(re.escape(filename) + r":(\d+):(?:\d+ -)? error:")
    return {int(m.group(1)) for m in pattern.finditer(output)}


@pytest.mark.slow
@pytest.mark.parametrize("checker", ["mypy", "pyright"])
def test_misuses_are_type_errors(checker, tmp_path):
    bad = tmp_path / "misuses.py"
    bad.write_text(_MISUSES)
    out = _run([*_checker(checker), str(bad)], ROOT)  # from the project root: its configuration, its polyloss
    assert _error_lines(out.stdout, bad.name) == set(_BAD_LINES), out.stdout


# -- the README's editable install, seen from another directory -------------------------------------

_USER_CODE = textwrap.dedent(
    """\
    import sys

    import numpy as np
    import numpy.typing as npt

    import polyloss as pl
    from polyloss.typing import Reduction

    if sys.version_info >= (3, 11):
        from typing import assert_type
    else:
        from typing_extensions import assert_type

    reduction: Reduction = "sum"
    x: npt.NDArray[np.float64] = np.zeros(3)
    assert_type(pl.mse_loss(x, x, reduction=reduction), npt.NDArray[np.float64])
    """
)


def _editable_pth(tmp_path: Path) -> str:
    """Build the editable wheel of a copy of the project (setuptools' PEP 660 hook, as ``pip install -e .``
    calls it) and return its .pth file's text."""
    src = tmp_path / "project"
    src.mkdir()
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy(ROOT / name, src / name)
    shutil.copytree(ROOT / "polyloss", src / "polyloss", ignore=shutil.ignore_patterns("__pycache__"))
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    code = f"from setuptools import build_meta; print(build_meta.build_editable({str(wheels)!r}))"
    out = subprocess.run([sys.executable, "-c", code], cwd=src, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    with zipfile.ZipFile(wheels / out.stdout.strip().splitlines()[-1]) as whl:
        (pth,) = [n for n in whl.namelist() if n.endswith(".pth")]
        return whl.read(pth).decode()


def test_editable_install_is_a_plain_path(tmp_path):
    pytest.importorskip("setuptools")
    pth = _editable_pth(tmp_path)
    # a path line, which type checkers follow; not setuptools' import hook ("import ..."), which they cannot
    assert not any(line.startswith("import") for line in pth.splitlines()), pth
    assert [Path(line) for line in pth.splitlines() if line.strip()] == [tmp_path / "project"]


@pytest.mark.slow
@pytest.mark.parametrize("checker", ["mypy", "pyright"])
def test_type_checkers_find_the_editable_install(checker, tmp_path):
    pytest.importorskip("setuptools")
    cmd = _checker(checker)
    pth = _editable_pth(tmp_path)
    # a fresh environment holding only the editable install's .pth, plus this one's packages (numpy)
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    python = venv / ("Scripts/python.exe" if os.name == "nt" else "bin/python")
    site = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          capture_output=True, text=True, check=True).stdout.strip()
    Path(site, "__editable__.polyloss.pth").write_text(pth)
    here = {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]}
    Path(site, "zz_dependencies.pth").write_text("\n".join(sorted(here)) + "\n")
    user = tmp_path / "user"
    user.mkdir()
    (user / "check.py").write_text(_USER_CODE)
    if checker == "mypy":
        args = ["--strict", "--python-executable", str(python), "--cache-dir", str(tmp_path / "cache"), "check.py"]
    else:
        args = ["--pythonpath", str(python), "check.py"]
    out = _run([*cmd, *args], user)
    assert out.returncode == 0, out.stdout + out.stderr
