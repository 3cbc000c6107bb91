"""``torch.ops.polyloss.kth_value``: the torch backend's eager selection as one opaque operator of a compiled graph.

Under ``torch.compile`` no value may be read, so the generic :meth:`Backend.kth_value` sorts whole rows (a sort of
every prior for SSD's hard-negative mining: a third of the compiled step on a CPU). This custom operator runs the
eager selection (NumPy's ``partition`` on a zero-copy view of a CPU tensor) inside the graph instead: the compiler
sees its output's shape only, and no graph breaks. Imported by :meth:`TorchBackend.kth_value` while compiling
(torch is loaded by then; ``import polyloss`` never imports this module).
"""

from __future__ import annotations

import torch

__all__ = ["kth_value"]


@torch.library.custom_op("polyloss::kth_value", mutates_args=())
def kth_value(keys: torch.Tensor, position: torch.Tensor, descending: bool) -> torch.Tensor:
    """Per row, the value at ``position`` (1-based) of ``keys`` sorted along the last axis: ``(..., 1)``."""
    from polyloss.backend.torch import _eager_kth_value

    value: torch.Tensor = _eager_kth_value(keys, position, descending=descending)
    return value


@kth_value.register_fake
def _(keys: torch.Tensor, position: torch.Tensor, descending: bool) -> torch.Tensor:
    return keys.new_empty(position.shape)
