"""The source distribution: it builds, holds the tests, docs and changelog, and pytest runs from it unpacked."""

from __future__ import annotations

import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def unpacked(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("sdist")
    code = "import sys; from setuptools import build_meta; print(build_meta.build_sdist(sys.argv[1]))"
    done = subprocess.run([sys.executable, "-c", code, str(out)], cwd=ROOT, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    name = done.stdout.strip().splitlines()[-1]
    with tarfile.open(out / name) as archive:
        archive.extractall(out, filter="data")
    return out / name.removesuffix(".tar.gz")


def _files(root: Path, folder: str, pattern: str) -> set[str]:
    return {str(p.relative_to(root)) for p in (root / folder).rglob(pattern) if "__pycache__" not in p.parts
            and "_build" not in p.parts and "_generated" not in p.parts}


def test_sdist_holds_every_test_doc_and_the_changelog(unpacked: Path) -> None:
    for name in ("CHANGELOG.md", "LICENSE", "README.md", "conftest.py", "pyproject.toml", "polyloss/py.typed"):
        assert (unpacked / name).is_file(), name
    for folder, pattern in (("tests", "*.py"), ("docs", "*.rst"), ("docs", "*.md"), ("polyloss", "*.py")):
        missing = _files(ROOT, folder, pattern) - _files(unpacked, folder, pattern)
        assert not missing, f"not in the sdist: {sorted(missing)}"


def test_pytest_runs_from_the_unpacked_sdist(unpacked: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(unpacked)}
    run = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"]
    collected = subprocess.run([*run, "--collect-only"], cwd=unpacked, env=env, capture_output=True, text=True,
                               timeout=600)
    assert collected.returncode == 0, collected.stdout[-3000:] + collected.stderr[-3000:]
    assert " error" not in collected.stdout.splitlines()[-1], collected.stdout[-3000:]
    probe = subprocess.run([sys.executable, "-c", "import polyloss; print(polyloss.__file__)"], cwd=unpacked,
                           env=env, capture_output=True, text=True, check=True)
    assert Path(probe.stdout.strip()).is_relative_to(unpacked)
    done = subprocess.run([*run, "-x", "tests/test_namespace.py", "tests/functional/test_regression.py"],
                          cwd=unpacked, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert " passed" in done.stdout.splitlines()[-1]
