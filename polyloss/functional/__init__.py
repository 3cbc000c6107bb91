"""Built-in losses: one module per family, each loss declared next to its closed-form gradient.

``regression``, ``classification``, ``focal``, ``margin`` and ``box`` hold the
argument checks, the forward and the gradient of each of their losses; the
decorators of :mod:`polyloss.functional._define` fill the tables this built-in
plugin registers (exactly as a third-party plugin registers its losses).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from polyloss._hooks import hookimpl
from polyloss.functional._define import LOSSES
from polyloss.functional.box import *  # noqa: F403
from polyloss.functional.classification import *  # noqa: F403
from polyloss.functional.contrastive import *  # noqa: F403
from polyloss.functional.ctc import *  # noqa: F403
from polyloss.functional.embedding import *  # noqa: F403
from polyloss.functional.focal import *  # noqa: F403
from polyloss.functional.likelihood import *  # noqa: F403
from polyloss.functional.margin import *  # noqa: F403
from polyloss.functional.multilabel import *  # noqa: F403
from polyloss.functional.poly import *  # noqa: F403
from polyloss.functional.quality import *  # noqa: F403
from polyloss.functional.regression import *  # noqa: F403
from polyloss.functional.robust import *  # noqa: F403
from polyloss.functional.segmentation import *  # noqa: F403

#: name -> function of every built-in loss, in declaration order
BUILTIN_LOSSES: dict[str, Callable[..., Any]] = dict(LOSSES)

__all__ = ["BUILTIN_LOSSES", *BUILTIN_LOSSES]


@hookimpl
def polyloss_register_losses() -> dict[str, Callable[..., Any]]:
    return dict(BUILTIN_LOSSES)
