"""Built-in dask.array backend: every loss lazily, chunk by chunk, for data larger than one machine's memory.

A loss of dask arrays returns a dask array: nothing is computed inside the call
(``host`` is False, so no value is read), and the result is computed where and
when the user asks (``.compute()``, a ``dask.distributed`` cluster, ...). The
generic array-API code runs through ``array_api_compat.dask.array``; this backend
adds what dask lacks: ``take_along_axis`` and sorting along one axis (done chunk
by chunk, with that axis in a single chunk).
"""

from __future__ import annotations

import sys
from types import ModuleType
from typing import Any

from polyloss._hooks import hookimpl
from polyloss.backend._base import Backend


def _da() -> Any:
    return sys.modules["dask.array"]


def _block_namespace(block: Any) -> Any:
    import array_api_compat

    return array_api_compat.array_namespace(block)


def _take_along_block(block: Any, index_block: Any, axis: int) -> Any:
    return _block_namespace(block).take_along_axis(block, index_block, axis=axis)


def _sort_block(block: Any, axis: int, descending: bool) -> Any:
    return _block_namespace(block).sort(block, axis=axis, descending=descending)


class DaskBackend(Backend):
    """``dask.array`` arrays (of NumPy or CuPy chunks) through ``array_api_compat.dask.array``."""

    name = "dask"
    module_name = "dask"
    host = False

    def matches(self, x: object) -> bool:
        da = sys.modules.get("dask.array")
        return da is not None and isinstance(x, da.Array)

    def load_namespace(self) -> ModuleType:
        import array_api_compat.dask.array as xp

        return xp

    def device(self, x: Any) -> Any:
        return "cpu"

    def take_along_axis(self, x: Any, indices: Any, axis: int) -> Any:
        """``take_along_axis`` chunk by chunk: ``axis`` in one chunk, the other axes chunked alike."""
        da = _da()
        axis = axis % x.ndim
        shape = tuple(x.shape)
        index_shape = tuple(indices.shape)
        # broadcast the index to x's shape except along axis, then align the chunks of both
        target = tuple(index_shape[i] if i == axis else shape[i] for i in range(x.ndim))
        if index_shape != target:
            indices = da.broadcast_to(indices, target)
        x = x.rechunk({axis: -1})
        chunks = tuple(x.chunks[i] if i != axis else (target[axis],) for i in range(x.ndim))
        indices = indices.rechunk(chunks)
        return da.map_blocks(_take_along_block, x, indices, axis=axis, dtype=x.dtype, chunks=indices.chunks)

    def kth_value(self, keys: Any, position: Any, *, descending: bool = False) -> Any:
        ordered = _da().map_blocks(_sort_block, keys.rechunk({keys.ndim - 1: -1}), axis=-1,
                                   descending=descending, dtype=keys.dtype)
        return self.take_along_axis(ordered, position - 1, axis=-1)


@hookimpl
def polyloss_register_backends() -> list[Backend]:
    return [DaskBackend()]
