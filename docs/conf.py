"""Sphinx configuration for the polyloss documentation.

Build (warnings are errors)::

    sphinx-build -W -b html docs docs/_build/html
    sphinx-build -W -b doctest docs docs/_build/doctest

The gallery plots and the API listing are generated at build time into
``docs/_generated`` (git-ignored) by the local extension ``_ext/polyloss_docs.py``.
No network access is needed (no intersphinx).
"""

from __future__ import annotations

import importlib.util
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
# document the checkout this conf.py belongs to, installed or not
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(HERE, "_ext"))

import polyloss  # noqa: E402

project = "polyloss"
author = "polyloss developers"
copyright = "polyloss developers"
version = release = polyloss.__version__

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "sphinx.ext.doctest",
    "sphinx.ext.mathjax",
    "polyloss_docs",
]
# Markdown pages (the plugin author's guide) need myst-parser; the rest is reStructuredText.
HAVE_MYST = importlib.util.find_spec("myst_parser") is not None
if HAVE_MYST:
    extensions.append("myst_parser")
    source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
    myst_enable_extensions = ["dollarmath"]
    myst_heading_anchors = 3
else:
    source_suffix = {".rst": "restructuredtext"}
    _markdown = [
        os.path.join(d, f)
        for d, _, files in os.walk(HERE)
        if "_build" not in d and "_generated" not in d
        for f in files
        if f.endswith(".md") and f != "README.md"
    ]
    if _markdown:
        raise RuntimeError(f"these pages are Markdown and need myst-parser (pip install myst-parser): {_markdown}")

root_doc = "index"
exclude_patterns = ["_build", "_generated", "Thumbs.db", ".DS_Store", "README.md"]
templates_path: list[str] = []

# autodoc / napoleon
autodoc_member_order = "bysource"
autodoc_typehints = "description"
autodoc_typehints_format = "short"
autodoc_preserve_defaults = True
napoleon_google_docstring = True
napoleon_numpy_docstring = True
napoleon_use_rtype = False

# doctest: every page and docstring example runs on NumPy only
doctest_global_setup = """
import numpy as np
import polyloss as pl
"""
doctest_test_doctest_blocks = "default"

# mathjax is loaded by the browser; the build itself needs no network
html_theme = "alabaster"
html_title = f"polyloss {release}"
html_static_path: list[str] = []
html_theme_options = {
    "description": "Training losses written once against the Python array API standard",
    "fixed_sidebar": True,
}

nitpicky = False
# polyloss.Reduction is polyloss.typing.Reduction re-exported: a signature naming it has two equal targets
suppress_warnings = ["ref.python"]
