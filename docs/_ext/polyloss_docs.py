"""Local Sphinx extension: build-time pages and plots for the polyloss docs.

On ``builder-inited`` it writes into ``docs/_generated`` (git-ignored, excluded
from the source files and pulled in with ``.. include::``):

- ``api_autogen.rst``: autodoc directives for every name in ``polyloss.__all__``
  (grouped), ``polyloss.gradients``, ``polyloss.boxes`` and the detection recipe
  modules when they import, so a new public name is documented without editing
  a page;
- ``extra_toc.rst``: a toctree of the plugin author's guide (``plugins.md`` or
  ``plugins.rst``) and the hook pages (``hooks/*``) when they exist, nothing
  otherwise (a toctree glob that matches nothing would be a warning);
- ``gallery/*.png``: the loss/gradient plots of :mod:`polyloss._tools.plot`.
"""

from __future__ import annotations

import importlib
import os
import pkgutil
import re
from collections.abc import Iterable
from typing import Any
from typing import get_origin

GENERATED = "_generated"

_GROUPS: list[tuple[str, list[str]]] = [
    ("Configuration", ["fast_paths"]),
    ("Gradients without autograd", ["value_and_grad"]),
    (
        "Registry and plugins",
        [
            "backends",
            "losses",
            "recipes",
            "get_backend",
            "get_loss",
            "get_recipe",
            "register_plugin",
            "unregister_plugin",
            "hookimpl",
            "override",
            "RecipeResult",
            "PluginConflictError",
            "PluginWarning",
        ],
    ),
    ("Backends", ["Backend"]),
    ("Types", ["Reduction", "KLDivReduction"]),
]

_AUTO_TARGET = re.compile(r"auto(?:function|class|module|data|exception|attribute|method)\}?:{0,2}\s*([\w.]+)")


def _heading(text: str, char: str) -> str:
    return f"{text}\n{char * len(text)}\n\n"


def _documented_elsewhere(srcdir: str) -> set[str]:
    """Objects that the plugin/hook pages autodoc themselves (ours then get ``:no-index:``)."""
    found: set[str] = set()
    for path in _extra_pages(srcdir, absolute=True):
        with open(path, encoding="utf-8") as f:
            found.update(_AUTO_TARGET.findall(f.read()))
    return found


def _extra_pages(srcdir: str, *, absolute: bool = False) -> list[str]:
    """Existing plugin-guide and hook pages: docnames (or absolute paths)."""
    suffixes = (".rst", ".md")
    pages: list[str] = []
    for stem in ("plugins",):
        for suffix in suffixes:
            if os.path.isfile(os.path.join(srcdir, stem + suffix)):
                pages.append(stem + suffix)
                break
    hooks = os.path.join(srcdir, "hooks")
    if os.path.isdir(hooks):
        names = sorted(n for n in os.listdir(hooks) if n.endswith(suffixes) and not n.startswith((".", "_")))
        index = [n for n in names if os.path.splitext(n)[0] == "index"]
        pages.extend(f"hooks/{n}" for n in (index or names))
    if absolute:
        return [os.path.join(srcdir, p) for p in pages]
    return [os.path.splitext(p)[0] for p in pages]


def _directive(kind: str, target: str, elsewhere: set[str], options: Iterable[str] = ()) -> str:
    lines = [f".. {kind}:: {target}"]
    lines += [f"   :{opt}:" if ":" not in opt else f"   :{opt}" for opt in options]
    if target in elsewhere:
        lines.append("   :no-index:")
    return "\n".join(lines) + "\n\n"


def _member_kind(obj: Any) -> str:
    if isinstance(obj, type):
        return "autoexception" if issubclass(obj, BaseException) else "autoclass"
    return "autodata" if get_origin(obj) is not None else "autofunction"  # a type alias (Reduction) is data


def _public_submodules(package: str) -> list[str]:
    try:
        pkg = importlib.import_module(package)
    except Exception:
        return []
    return sorted(
        f"{package}.{m.name}" for m in pkgutil.iter_modules(getattr(pkg, "__path__", [])) if not m.name.startswith("_")
    )


def api_text(srcdir: str) -> str:
    """reStructuredText with an autodoc directive per public object."""
    import polyloss as pl

    elsewhere = _documented_elsewhere(srcdir)
    names = [n for n in pl.__all__ if not n.startswith("_")]
    registered = set(pl.losses())
    out: list[str] = []
    losses = [n for n in names if n in registered and callable(getattr(pl, n))]
    placed = set(losses)
    out.append(_heading("Losses", "-"))
    out.append(
        "Every loss is ``pl.NAME(input, target, *, ...)``; the namespace, device and dtype of the result "
        "are the input's. See :doc:`user_guide` for the conventions they share.\n\n"
    )
    out += [_directive("autofunction", f"polyloss.{n}", elsewhere) for n in losses]
    for title, group in _GROUPS:
        present = [n for n in group if n in names and n not in placed]
        if not present:
            continue
        placed.update(present)
        out.append(_heading(title, "-"))
        for n in present:
            opts = ["members"] if isinstance(getattr(pl, n), type) and n == "RecipeResult" else []
            out.append(_directive(_member_kind(getattr(pl, n)), f"polyloss.{n}", elsewhere, opts))
    rest = [n for n in names if n not in placed]
    if rest:
        out.append(_heading("Other public names", "-"))
        out += [_directive(_member_kind(getattr(pl, n)), f"polyloss.{n}", elsewhere) for n in rest]

    modules: list[tuple[str, str, list[str]]] = [
        (
            "polyloss.gradients",
            "Closed-form gradients (``polyloss.gradients``)",
            ["members", "exclude-members: value_and_grad"],
        ),
        ("polyloss.boxes", "Boxes (``polyloss.boxes``)", ["members"]),
        ("polyloss.typing", "Types for type checkers (``polyloss.typing``)", ["members"]),
        ("polyloss.testing.cases", "Backend cases for tests (``polyloss.testing.cases``)", ["members"]),
        ("polyloss.testing.conformance", "Conformance kit for plugin authors (``polyloss.testing.conformance``)",
         ["members"]),
        ("polyloss.testing.plugin", "The ``xp`` pytest fixture (``polyloss.testing.plugin``)", ["members"]),
    ]
    modules += [
        (m, f"Detector recipe ``{m.rsplit('.', 1)[1]}`` (``{m}``)", ["members"])
        for m in _public_submodules("polyloss.detection")
    ]
    for module, title, opts in modules:
        try:
            importlib.import_module(module)
        except Exception:
            continue
        out.append(_heading(title, "-"))
        out.append(_directive("automodule", module, elsewhere, opts))
    return "".join(out)


def extra_toc_text(srcdir: str) -> str:
    pages = _extra_pages(srcdir)
    if not pages:
        return ".. (no plugin guide or hook pages in this checkout)\n"
    lines = [".. toctree::", "   :maxdepth: 2", "   :caption: Plugins", ""]
    lines += [f"   {p}" for p in pages]
    return "\n".join(lines) + "\n"


def _write_if_changed(path: str, text: str) -> None:
    # an unchanged file keeps its mtime, so incremental builds do not reread every page
    if os.path.exists(path):
        with open(path, encoding="utf-8") as f:
            if f.read() == text:
                return
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)


def make_gallery(directory: str) -> list[str]:
    """Draw every gallery figure into ``directory``; returns the paths."""
    from polyloss._tools.plot import GALLERY
    from polyloss._tools.plot import plot_losses

    os.makedirs(directory, exist_ok=True)
    paths = []
    for stem, title, specs in GALLERY:
        path = os.path.join(directory, f"{stem}.png")
        plot_losses(specs, path, title=title)
        paths.append(path)
    return paths


def generate(app: Any) -> None:
    srcdir = str(app.srcdir)
    gen = os.path.join(srcdir, GENERATED)
    os.makedirs(gen, exist_ok=True)
    _write_if_changed(os.path.join(gen, "api_autogen.rst"), api_text(srcdir))
    _write_if_changed(os.path.join(gen, "extra_toc.rst"), extra_toc_text(srcdir))
    make_gallery(os.path.join(gen, "gallery"))


def setup(app: Any) -> dict[str, Any]:
    app.connect("builder-inited", generate)
    return {"version": "1", "parallel_read_safe": True, "parallel_write_safe": True}


def write_readme_image(path: str | None = None) -> str:
    """Redraw the committed overview image ``docs/images/losses.png`` (all gallery rows in one figure)."""
    from polyloss._tools.plot import GALLERY
    from polyloss._tools.plot import plot_gallery

    out = path or os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "images", "losses.png")
    return plot_gallery(out, [(title, names) for _, title, names in GALLERY])


if __name__ == "__main__":  # python docs/_ext/polyloss_docs.py  ->  redraws docs/images/losses.png
    import sys

    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
    print(write_readme_image())
