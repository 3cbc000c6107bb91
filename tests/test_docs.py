"""The documentation builds with warnings as errors, and its examples pass as doctests.

Needs the ``docs`` extra (``pip install -e ".[docs]"``); skipped when Sphinx
(or matplotlib, which draws the gallery) is not installed. The builds write
into a temporary directory; the generated API listing and gallery go to
``docs/_generated`` (git-ignored), as in a normal build.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("sphinx", reason="the docs extra is not installed (pip install -e '.[docs]')")
pytest.importorskip("matplotlib", reason="the docs extra is not installed (pip install -e '.[docs]')")

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"


def _sphinx(builder: str, out: Path) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "sphinx", "-W", "--keep-going", "-q", "-b", builder]
    cmd += ["-d", str(out / "doctrees"), str(DOCS), str(out / builder)]
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    return subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)


def test_html_builds_without_warnings(tmp_path):
    result = _sphinx("html", tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    html = tmp_path / "html"
    for page in ("index", "getting_started", "user_guide", "gallery", "recipes", "comparison", "benchmarks", "api"):
        assert (html / f"{page}.html").is_file(), page

    # every public name has an autodoc entry in the API reference
    import polyloss as pl

    api = (html / "api.html").read_text(encoding="utf-8")
    missing = [n for n in pl.__all__ if not n.startswith("_") and f'id="polyloss.{n}"' not in api]
    assert not missing, f"not in the API reference: {missing}"
    assert 'id="polyloss.gradients.register_gradient"' in api

    # the gallery is drawn at build time and copied with the pages
    from polyloss._tools.plot import GALLERY

    for stem in [stem for stem, _, _ in GALLERY]:
        png = html / "_images" / f"{stem}.png"
        assert png.is_file() and png.read_bytes()[:4] == b"\x89PNG", stem
    assert (html / "_images" / "losses.png").is_file()


def test_doctests_pass(tmp_path):
    result = _sphinx("doctest", tmp_path)
    report = tmp_path / "doctest" / "output.txt"
    text = report.read_text(encoding="utf-8") if report.exists() else ""
    assert result.returncode == 0, result.stdout + result.stderr + text
    assert "0 failures in tests" in text
    # the pages' own examples ran (not only docstrings)
    for page in ("getting_started", "user_guide", "gallery"):
        assert f"Document: {page}" in text, page


def test_every_overridable_backend_member_is_documented_for_plugin_authors():
    import inspect

    from polyloss.backend import Backend

    page = (DOCS / "plugins.md").read_text()
    members = [name for name, _ in inspect.getmembers(Backend) if not name.startswith("_")] + ["fast_paths"]
    missing = [name for name in members if f"`{name}" not in page]
    assert not missing, f"Backend members missing from docs/plugins.md: {missing}"
