"""The :class:`JaxBackend`: ``jax.numpy`` plus JAX's native primitives.

``jax.numpy`` implements the array API standard (2024.12 in recent JAX), so
the generic polyloss code runs on it unchanged; this backend only swaps in
JAX's own, fused and numerically careful, primitives, and ``jax.lax.stop_gradient``
(the portable fallback would let gradients through where polyloss means to stop them).

``host`` is False: polyloss never reads array values on this backend (no
``bool(x)``, no ``.item()``), so every loss traces under ``jax.jit`` with
static shapes. The value checks that need to read data (class indices out of
range, boxes with x2 < x1) run only on host backends such as NumPy.
"""

from __future__ import annotations

import sys
from types import ModuleType
from typing import Any

import polyloss


def _jax() -> Any:
    return sys.modules["jax"]


class JaxBackend(polyloss.Backend):
    """Arrays of JAX (``jax.Array``, tracers included) through ``jax.numpy``."""

    name = "jax"
    module_name = "jax"
    host = False

    def matches(self, x: object) -> bool:
        # tracers under jit / grad / vmap are instances of jax.Array too
        return isinstance(x, _jax().Array)

    def load_namespace(self) -> ModuleType:
        import jax.numpy as jnp

        return jnp

    def device(self, x: Any) -> Any:
        # a tracer has no device: None lets jax place constants as it places the trace
        import array_api_compat

        return array_api_compat.device(x)

    def version(self) -> str:
        return str(_jax().__version__)

    def stop_gradient(self, x: Any) -> Any:
        return _jax().lax.stop_gradient(x)

    def logsumexp(self, x: Any, axis: int, keepdims: bool = False) -> Any:
        return _jax().nn.logsumexp(x, axis=axis, keepdims=keepdims)

    def log_softmax(self, x: Any, axis: int) -> Any:
        return _jax().nn.log_softmax(x, axis=axis)

    def sigmoid(self, x: Any) -> Any:
        return _jax().nn.sigmoid(x)

    def log_sigmoid(self, x: Any) -> Any:
        return _jax().nn.log_sigmoid(x)

    def relu(self, x: Any) -> Any:
        return _jax().nn.relu(x)

    def xlogy(self, x: Any, y: Any) -> Any:
        import jax.scipy.special

        return jax.scipy.special.xlogy(x, y)
