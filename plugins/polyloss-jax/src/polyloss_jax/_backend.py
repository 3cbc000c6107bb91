"""The :class:`JaxBackend`: ``jax.numpy`` plus JAX's native primitives.

``jax.numpy`` implements the array API standard (2024.12 in recent JAX), so
the generic polyloss code runs on it unchanged; this backend only swaps in
JAX's own, fused and numerically careful, primitives, and ``jax.lax.stop_gradient``
(the portable fallback would let gradients through where polyloss means to stop them).

``host`` is False: polyloss never reads array values on this backend (no
``bool(x)``, no ``.item()``), so every loss traces under ``jax.jit`` with
static shapes. The value checks that need to read data (class indices out of
range, boxes with x2 < x1) run only on host backends such as NumPy.

Data parallelism: inside a function mapped over devices with ``jax.shard_map``
or ``jax.pmap``, :func:`data_parallel_axis` names the mapped axis, and the
recipes' ``normalize_over="world"`` then sums their normalising counts over it
with ``jax.lax.psum`` (as ``torch.distributed`` all-reduces them for DDP).
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Hashable
from collections.abc import Iterator
from contextlib import contextmanager
from types import ModuleType
from typing import Any

import polyloss

_mapped = threading.local()


@contextmanager
def data_parallel_axis(axis_name: Hashable) -> Iterator[None]:
    """Name the device axis that ``normalize_over="world"`` sums over, while tracing a mapped function.

    Use it inside the body of ``jax.shard_map`` (or ``jax.pmap``) around the recipe
    call: the counts that normalise the loss terms are then ``jax.lax.psum``-med
    over ``axis_name`` and each device's loss is ``W * local_sum / max(1, global
    count)``, so the mean of the devices' losses (``jax.lax.pmean``) and of their
    gradients equals one device's loss on the whole batch. Outside it (and with
    ``normalize_over="local"``) nothing is summed: a single device.

    Example::

        def step(pred, boxes, labels):
            with polyloss_jax.data_parallel_axis("batch"):
                total = recipe(pred, boxes, labels).total
            return jax.lax.pmean(total, "batch")

        jax.shard_map(step, mesh=mesh, in_specs=P("batch"), out_specs=P())
    """
    previous = getattr(_mapped, "axis_name", None)
    _mapped.axis_name = axis_name
    try:
        yield
    finally:
        _mapped.axis_name = previous


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

    def world_size(self) -> int:
        """The size of the axis named by :func:`data_parallel_axis` (1 outside it)."""
        axis_name = getattr(_mapped, "axis_name", None)
        if axis_name is None:
            return 1
        return int(_jax().lax.axis_size(axis_name))

    def all_reduce_sum(self, x: Any) -> Any:
        """``jax.lax.psum`` of ``x`` over the axis named by :func:`data_parallel_axis`, without gradient."""
        axis_name = getattr(_mapped, "axis_name", None)
        if axis_name is None:
            return x
        lax = _jax().lax
        return lax.stop_gradient(lax.psum(x, axis_name))

    def xlogy(self, x: Any, y: Any) -> Any:
        import jax.scipy.special

        return jax.scipy.special.xlogy(x, y)
