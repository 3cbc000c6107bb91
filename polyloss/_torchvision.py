"""Import torchvision's pure-Python detection code, for benchmarks and tests.

The torchvision wheel that pairs with the CPU build of torch is built against
CUDA torch: its compiled operators (``nms``, ``roi_align``...) cannot load, and
``import torchvision`` then fails while registering fake kernels for
``torchvision::nms``. polyloss compares against torchvision's box IoU, matchers,
box coder, samplers and losses only, all plain torch code, so on that failure
the two operator schemas are declared (never implemented) and the import is
retried. Nothing here runs unless torchvision is installed.
"""

from __future__ import annotations

import importlib.util
import sys
from types import ModuleType

_SCHEMAS = ("nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
            "qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
_declared: list[object] = []  # keeps the torch.library fragment alive


def installed() -> bool:
    return importlib.util.find_spec("torchvision") is not None


def import_torchvision() -> ModuleType | None:
    """torchvision, importable for its Python code; None where it is not installed or still fails."""
    if not installed():
        return None
    try:
        import torchvision
    except RuntimeError as err:
        if "torchvision::" not in str(err) or _declared:
            return None
        _declare_operator_schemas()
        try:
            import torchvision
        except Exception:
            return None
    except ImportError:
        return None
    module: ModuleType = torchvision
    return module


def _declare_operator_schemas() -> None:
    import torch

    for name in [m for m in sys.modules if m == "torchvision" or m.startswith("torchvision.")]:
        del sys.modules[name]
    fragment = torch.library.Library("torchvision", "FRAGMENT")
    for schema in _SCHEMAS:
        fragment.define(schema)
    _declared.append(fragment)
