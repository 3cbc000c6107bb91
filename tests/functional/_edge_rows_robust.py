"""Edge rows of log_cosh_loss."""

from __future__ import annotations

import numpy as np
from _edge import EdgeRow
from functional._second_set_rows import builder

X = np.array([[0.5, -1.0, 2.0], [0.0, 3.0, -0.25]])
Y = np.array([[0.0, -1.5, 2.0], [1.0, 2.0, 0.25]])
EMPTY = np.zeros((0, 3))

log_cosh = builder(X, Y)

ROWS = [
    EdgeRow("log_cosh_loss", "nan-input", log_cosh(at0=((0, 1), np.nan)), "nan"),
    EdgeRow("log_cosh_loss", "nan-input-none", log_cosh(at0=((0, 1), np.nan), reduction="none"), "nan"),
    EdgeRow("log_cosh_loss", "nan-input-sum", log_cosh(at0=((1, 2), np.nan), reduction="sum"), "nan"),
    EdgeRow("log_cosh_loss", "inf-minus-inf", log_cosh(at0=((0, 0), np.inf), at1=((0, 0), np.inf)), "nan"),
    EdgeRow("log_cosh_loss", "nan-target", log_cosh(at1=((1, 0), np.nan)), "nan"),
    EdgeRow("log_cosh_loss", "cosh-overflows", log_cosh(a0=X * 1e30), "finite"),
    *[EdgeRow("log_cosh_loss", f"empty-{r}", log_cosh(a0=EMPTY, a1=EMPTY, reduction=r), "finite")
      for r in ("mean", "sum", "none")],
    EdgeRow("log_cosh_loss", "uint8-target", log_cosh(a1=np.array([[0, 1, 2], [3, 4, 5]], dtype=np.uint8)),
            "finite"),
    EdgeRow("log_cosh_loss", "bool-target", log_cosh(a1=Y > 0), "finite"),
    EdgeRow("log_cosh_loss", "target-shape", log_cosh(a1=np.zeros((2, 1))), ValueError, ("target",)),
    EdgeRow("log_cosh_loss", "integer-input", log_cosh(a0=np.ones((2, 3), dtype=np.int64)), TypeError, ("input",),
            grad=False),
    EdgeRow("log_cosh_loss", "bad-reduction", log_cosh(reduction="avg"), ValueError, ("reduction",)),
]
