"""The torch fast path of :func:`polyloss.ctc_loss`: PyTorch's native CTC kernel.

Merged into the torch backend's ``FAST_PATHS`` (``polyloss/backend/torch.py``). The loss has
already checked and converted the arguments (lengths as int64 tensors on the input's device) and asks
for the per-sample losses (``reduction="none"``): it applies its NaN rule and PyTorch's reduction itself.
"""

from __future__ import annotations

from typing import Any


def _ctc(log_probs: Any, targets: Any, input_lengths: Any, target_lengths: Any, *, blank: int, reduction: str,
         zero_infinity: bool) -> Any:
    import torch.nn.functional as F

    from polyloss.backend.torch import tracing

    if tracing():
        return NotImplemented  # the kernel's output shape depends on the lengths' values: no graph holds it
    if targets.shape[1] == 0 or log_probs.shape[1] == 0 or log_probs.shape[0] == 0:
        return NotImplemented  # the kernel rejects an empty batch or padded width 0: the generic code runs
    return F.ctc_loss(log_probs, targets.long(), input_lengths, target_lengths, blank=blank, reduction=reduction,
                      zero_infinity=zero_infinity)


FAST_PATHS = {"ctc_loss": _ctc}
