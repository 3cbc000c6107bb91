"""Built-in NumPy backend, registered through the same hook a plugin uses."""

from __future__ import annotations

import sys
from types import ModuleType
from typing import Any

from polyloss._hooks import hookimpl
from polyloss.backend._base import Backend


class NumpyBackend(Backend):
    """NumPy arrays through ``array_api_compat.numpy``; values are on the host."""

    name = "numpy"
    module_name = "numpy"
    host = True

    def matches(self, x: object) -> bool:
        np = sys.modules["numpy"]
        return isinstance(x, (np.ndarray, np.generic))

    def load_namespace(self) -> ModuleType:
        import array_api_compat.numpy as xp

        return xp

    def device(self, x: Any) -> Any:
        return "cpu"

    def as_array(self, value: Any) -> Any:
        np = sys.modules["numpy"]
        return value if type(value) is np.ndarray else np.asarray(value)

    def relu(self, x: Any) -> Any:
        return sys.modules["numpy"].maximum(x, 0.0)

    def logsumexp(self, x: Any, axis: int, keepdims: bool = False) -> Any:
        np = sys.modules["numpy"]
        m = np.max(x, axis=axis, keepdims=True)
        m = np.where(np.isfinite(m), m, 0.0)
        out = np.log(np.sum(np.exp(x - m), axis=axis, keepdims=True)) + m
        return out if keepdims else np.squeeze(out, axis=axis)


@hookimpl
def polyloss_register_backends() -> list[Backend]:
    return [NumpyBackend()]
