"""The detection package's layering: no import cycle, no module reaching into another's private names.

- every module of :mod:`polyloss.detection` imports alone in a fresh interpreter;
- the imports between them form no cycle, and no lower layer (backends, losses,
  boxes, gradients) imports them;
- no module imports a private name of another module (``from m import _x``,
  where ``_x`` is not itself a module of the package) or reads one (``obj._x``
  on anything but ``self``/``cls``); the retinanet example plugin is held to
  the same rule;
- ``value_and_grad`` is defined once, on the base class.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

import polyloss
import polyloss.detection

PACKAGE = Path(polyloss.__file__).parent
DETECTION = Path(polyloss.detection.__file__).parent
PLUGIN = PACKAGE.parent / "plugins" / "polyloss-retinanet" / "src" / "polyloss_retinanet"
MODULES = sorted("polyloss.detection" + ("" if p.stem == "__init__" else "." + p.stem) for p in DETECTION.glob("*.py"))


def _type_checking_only(tree: ast.AST) -> set[int]:
    """ids of the nodes under ``if TYPE_CHECKING:`` (imports the checkers see, never run)."""
    inside: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING":
            inside.update(id(n) for stmt in node.body for n in ast.walk(stmt))
    return inside


def _imports(path: Path) -> list[tuple[str, list[str]]]:
    """``(module, names)`` of each import statement run at import time (``names`` empty for ``import module``)."""
    out = []
    tree = ast.parse(path.read_text())
    skip = _type_checking_only(tree)
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.append((node.module, [a.name for a in node.names]))
        elif isinstance(node, ast.Import):
            out.extend((a.name, []) for a in node.names)
    return out


@pytest.mark.parametrize("module", MODULES)
def test_each_module_imports_alone_in_a_fresh_interpreter(module):
    code = f"import {module}"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                         cwd=PACKAGE.parent)
    assert out.returncode == 0, out.stderr


def test_no_import_cycle_and_no_lower_layer_imports_detection():
    graph = {}
    for path in DETECTION.glob("*.py"):
        name = "polyloss.detection" + ("" if path.stem == "__init__" else "." + path.stem)
        graph[name] = {m for m, _ in _imports(path) if m.startswith("polyloss.detection.") or m == "polyloss.detection"}
    state: dict[str, int] = {}

    def visit(node: str, trail: list[str]) -> None:
        if state.get(node) == 2:
            return
        assert state.get(node) != 1, f"import cycle: {' -> '.join([*trail, node])}"
        state[node] = 1
        for nxt in sorted(graph.get(node, ())):
            visit(nxt, [*trail, node])
        state[node] = 2

    for node in sorted(graph):
        visit(node, [])
    lower = [p for p in PACKAGE.rglob("*.py")
             if DETECTION not in p.parents and "_tools" not in p.parts and "testing" not in p.parts]
    offenders = [str(p.relative_to(PACKAGE)) for p in lower
                 if any(m.startswith("polyloss.detection") for m, _ in _imports(p))]
    assert offenders == [], f"lower layers import polyloss.detection: {offenders}"


def _is_module(package: str, name: str) -> bool:
    """Whether ``package.name`` is a module of polyloss (a private module is a layer of the package, not a
    private name of another module)."""
    if package != "polyloss" and not package.startswith("polyloss."):
        return False
    base = PACKAGE.joinpath(*package.split(".")[1:])
    return (base / f"{name}.py").exists() or (base / name / "__init__.py").exists()


def _private_uses(path: Path) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module != "__future__":
            found += [f"from {node.module} import {a.name}" for a in node.names
                      if a.name.startswith("_") and not a.name.startswith("__") and not _is_module(node.module, a.name)]
        elif (isinstance(node, ast.Attribute) and node.attr.startswith("_") and not node.attr.startswith("__")
              and not (isinstance(node.value, ast.Name) and node.value.id in ("self", "cls"))):
            found.append(f"line {node.lineno}: .{node.attr}")
    return found


@pytest.mark.parametrize("path", sorted([*DETECTION.glob("*.py"), *PLUGIN.glob("*.py")]), ids=lambda p: p.name)
def test_no_private_name_of_another_module(path):
    assert _private_uses(path) == []


def test_value_and_grad_is_written_once():
    from polyloss.detection import DetectionRecipe
    from polyloss.detection.faster_rcnn import FasterRCNNLoss
    from polyloss.detection.ssd import SSDLoss
    from polyloss.detection.yolov1 import YOLOv1Loss

    for cls in (SSDLoss, FasterRCNNLoss, YOLOv1Loss):
        assert issubclass(cls, DetectionRecipe)
        assert cls.value_and_grad is DetectionRecipe.value_and_grad, cls.__name__
        assert cls.differentiate is DetectionRecipe.differentiate, cls.__name__
        assert cls.stages is not DetectionRecipe.stages, cls.__name__
