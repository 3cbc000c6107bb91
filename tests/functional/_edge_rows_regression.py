"""Edge rows of the regression losses (mse, l1, smooth L1, Huber)."""

from __future__ import annotations

import numpy as np
from _edge import EdgeRow
from _edge import builder

X = np.array([[0.5, -1.0, 2.0], [0.0, 3.0, -0.25]])
Y = np.array([[0.0, -1.5, 2.0], [1.0, 2.0, 0.25]])
POINTWISE = ("mse_loss", "l1_loss", "smooth_l1_loss", "huber_loss")


_with = builder(X, Y)


ROWS = []
for name in POINTWISE:
    ROWS += [
        EdgeRow(name, "nan-input", _with(x_at=((0, 1), np.nan)), "nan"),
        EdgeRow(name, "nan-input-none", _with(x_at=((0, 1), np.nan), reduction="none"), "nan"),
        EdgeRow(name, "nan-input-sum", _with(x_at=((1, 2), np.nan), reduction="sum"), "nan"),
        EdgeRow(name, "inf-minus-inf", _with(x_at=((0, 0), np.inf), y_at=((0, 0), np.inf)), "nan"),
        EdgeRow(name, "nan-target", _with(y_at=((1, 0), np.nan)), "nan"),
        EdgeRow(name, "empty-mean", _with(x=np.zeros((0, 3)), y=np.zeros((0, 3))), "finite"),
        EdgeRow(name, "all-zero-weight", _with(weight=np.zeros(3)), "finite"),
        EdgeRow(name, "zero-sum-weight", _with(weight=np.array([1.0, -1.0, 0.0])), "finite"),
        EdgeRow(name, "nan-weight", _with(weight=np.array([1.0, np.nan, 1.0])), "nan"),
        EdgeRow(name, "weight-too-big", _with(weight=np.ones((3, 3))), ValueError, ("weight",)),
        EdgeRow(name, "target-shape", _with(y=np.zeros((2, 1))), ValueError, ("target",)),
        EdgeRow(name, "integer-input", _with(x=np.ones((2, 3), dtype=np.int64)), TypeError, ("input",), grad=False),
        EdgeRow(name, "bad-reduction", _with(reduction="avg"), ValueError, ("reduction",)),
        EdgeRow(name, "uint8-target", _with(y=np.array([[0, 1, 2], [3, 4, 5]], dtype=np.uint8)), "finite"),
    ]
ROWS += [
    EdgeRow("smooth_l1_loss", "beta-below-subnormal", _with(beta=1e-46), "finite"),
    EdgeRow("smooth_l1_loss", "beta-zero", _with(beta=0.0), "finite"),
    EdgeRow("smooth_l1_loss", "beta-inf", _with(beta=float("inf")), "finite"),
    EdgeRow("smooth_l1_loss", "beta-nan", _with(beta=float("nan")), ValueError, ("beta",)),
    EdgeRow("smooth_l1_loss", "beta-negative", _with(beta=-1.0), ValueError, ("beta",)),
    EdgeRow("huber_loss", "delta-zero", _with(delta=0.0), ValueError, ("delta",)),
    EdgeRow("huber_loss", "delta-inf", _with(delta=float("inf")), "finite"),
    EdgeRow("huber_loss", "delta-tiny", _with(delta=1e-46), "finite"),
    EdgeRow("huber_loss", "delta-huge", _with(delta=1e300), "finite"),
]
