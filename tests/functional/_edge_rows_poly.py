"""Edge rows of poly1_cross_entropy."""

from __future__ import annotations

import numpy as np
from _edge import EdgeRow
from functional._second_set_rows import builder

X = np.array([[0.5, -1.0, 2.0, 0.0], [0.0, 3.0, -0.25, 1.0], [1.0, 1.0, 0.0, -2.0]])
T = np.array([2, 1, 0])
Q = np.array([[0.1, 0.2, 0.3, 0.4], [0.0, 1.0, 0.0, 0.0], [0.25, 0.25, 0.25, 0.25]])

poly = builder(X, T)

ROWS = [
    EdgeRow("poly1_cross_entropy", "nan-input", poly(at0=((0, 1), np.nan)), "nan"),
    EdgeRow("poly1_cross_entropy", "nan-input-none", poly(at0=((0, 1), np.nan), reduction="none"), "nan"),
    EdgeRow("poly1_cross_entropy", "nan-input-sum", poly(at0=((2, 3), np.nan), reduction="sum"), "nan"),
    EdgeRow("poly1_cross_entropy", "inf-input-at-target", poly(at0=((0, 2), np.inf)), "nan"),
    EdgeRow("poly1_cross_entropy", "large-logits", poly(a0=X * 1e30), "finite"),
    EdgeRow("poly1_cross_entropy", "probabilities", poly(a1=Q), "finite"),
    EdgeRow("poly1_cross_entropy", "nan-probabilities", poly(a1=Q, at1=((1, 1), np.nan)), "nan"),
    EdgeRow("poly1_cross_entropy", "index-too-large", poly(at1=(1, 4)), ValueError, ("target", "class index")),
    EdgeRow("poly1_cross_entropy", "index-negative", poly(at1=(1, -1)), ValueError, ("target", "class index")),
    *[EdgeRow("poly1_cross_entropy", f"{dtype.__name__}-target", poly(a1=T.astype(dtype)), "finite")
      for dtype in (np.uint8, np.int8, np.int16, np.int32)],
    EdgeRow("poly1_cross_entropy", "float-index-shape", poly(a1=T.astype(np.float64)), TypeError, ("target",)),
    EdgeRow("poly1_cross_entropy", "bool-target", poly(a1=T > 0), TypeError, ("target",)),
    *[EdgeRow("poly1_cross_entropy", f"empty-{r}", poly(a0=np.zeros((0, 4)), a1=np.zeros(0, dtype=np.int64),
                                                        reduction=r), "finite")
      for r in ("mean", "sum", "none")],
    EdgeRow("poly1_cross_entropy", "epsilon-nan", poly(epsilon=float("nan")), ValueError, ("epsilon",)),
    EdgeRow("poly1_cross_entropy", "epsilon-inf", poly(epsilon=float("inf")), ValueError, ("epsilon",)),
    EdgeRow("poly1_cross_entropy", "epsilon-minus-one", poly(epsilon=-1.0), "finite"),
    EdgeRow("poly1_cross_entropy", "epsilon-huge", poly(epsilon=1e30), "finite"),
    EdgeRow("poly1_cross_entropy", "epsilon-not-number", poly(epsilon="2"), TypeError, ("epsilon",)),
    EdgeRow("poly1_cross_entropy", "class-axis-0", poly(a0=X.T.copy(), axis=0), "finite"),
    EdgeRow("poly1_cross_entropy", "axis-out-of-range", poly(axis=2), ValueError, ("axis",)),
    EdgeRow("poly1_cross_entropy", "target-shape", poly(a1=np.array([0, 1])), ValueError, ("target",)),
    EdgeRow("poly1_cross_entropy", "integer-input", poly(a0=np.ones((3, 4), dtype=np.int64)), TypeError,
            ("input",), grad=False),
    EdgeRow("poly1_cross_entropy", "bad-reduction", poly(reduction="avg"), ValueError, ("reduction",)),
]
