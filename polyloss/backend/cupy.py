"""Built-in CuPy backend (arrays on an NVIDIA GPU; needs a GPU to run)."""

from __future__ import annotations

import sys
from types import ModuleType

from polyloss._hooks import hookimpl
from polyloss.backend._base import Backend


class CupyBackend(Backend):
    """CuPy arrays through ``array_api_compat.cupy``; values live on the GPU."""

    name = "cupy"
    module_name = "cupy"
    host = False

    def matches(self, x: object) -> bool:
        cp = sys.modules["cupy"]
        return isinstance(x, cp.ndarray)

    def load_namespace(self) -> ModuleType:
        import array_api_compat.cupy as xp

        return xp


@hookimpl
def polyloss_register_backends() -> list[Backend]:
    return [CupyBackend()]
