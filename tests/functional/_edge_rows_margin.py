"""Edge rows of the margin losses (hinge, squared hinge, multi-class margin); the rules are in each loss's
docstring."""

from __future__ import annotations

import numpy as np
from _edge import EdgeRow
from functional._edge_rows_focal import builder
from functional._edge_rows_focal import index_dtype_rows

INF, NAN = float("inf"), float("nan")

# -- hinge_loss, squared_hinge_loss ---------------------------------------------------------------

X = np.array([[0.5, -1.0, 2.0], [0.0, 3.0, -0.25]])
Y = np.array([[1.0, -1.0, 1.0], [-1.0, 1.0, -1.0]])
BINARY = (Y > 0).astype(float)


_hinge = builder(X, Y)


ROWS = []
for name in ("hinge_loss", "squared_hinge_loss"):
    ROWS += [
        EdgeRow(name, "nan-input", _hinge(x_at=((0, 1), NAN)), "nan"),
        EdgeRow(name, "nan-input-none", _hinge(x_at=((0, 1), NAN), reduction="none"), "nan"),
        EdgeRow(name, "nan-input-sum", _hinge(x_at=((1, 2), NAN), reduction="sum"), "nan"),
        EdgeRow(name, "nan-input-beyond-margin", _hinge(x_at=((0, 2), NAN)), "nan"),
        EdgeRow(name, "inf-input-right-side", _hinge(x_at=((0, 0), INF)), "finite"),  # m - inf: loss 0
        EdgeRow(name, "at-the-kink", _hinge(x=np.array([[1.0, 1.0, 0.5], [-1.0, 1.0, 1.0]])), "finite"),
        EdgeRow(name, "nan-target", _hinge(y_at=((1, 0), NAN)), ValueError, ("target",)),
        EdgeRow(name, "label-two", _hinge(y_at=((1, 0), 2.0)), ValueError, ("target",)),
        EdgeRow(name, "label-half", _hinge(y_at=((0, 0), 0.5)), ValueError, ("target",)),
        EdgeRow(name, "int-label-minus-two", _hinge(y=np.array([[1, -2, 1], [0, 1, 0]], dtype=np.int8)),
                ValueError, ("target",)),
        EdgeRow(name, "labels-01", _hinge(y=BINARY), "finite"),
        EdgeRow(name, "labels-mixed-101", _hinge(y=np.array([[1.0, 0.0, -1.0], [0.0, 1.0, -1.0]])), "finite"),
        EdgeRow(name, "bool-labels", _hinge(y=BINARY.astype(bool)), "finite"),
        EdgeRow(name, "uint8-labels", _hinge(y=BINARY.astype(np.uint8)), "finite"),
        EdgeRow(name, "int8-labels", _hinge(y=Y.astype(np.int8)), "finite"),
        EdgeRow(name, "uint64-labels", _hinge(y=BINARY.astype(np.uint64)), "finite"),
        EdgeRow(name, "empty-mean", _hinge(x=np.zeros((0, 3)), y=np.zeros((0, 3))), "finite"),
        EdgeRow(name, "empty-sum", _hinge(x=np.zeros((0, 3)), y=np.zeros((0, 3)), reduction="sum"), "finite"),
        EdgeRow(name, "empty-none", _hinge(x=np.zeros((0, 3)), y=np.zeros((0, 3)), reduction="none"), "finite"),
        EdgeRow(name, "margin-zero", _hinge(margin=0.0), "finite"),
        EdgeRow(name, "margin-large", _hinge(margin=1e10), "finite"),
        EdgeRow(name, "margin-inf", _hinge(margin=INF), ValueError, ("margin",)),
        EdgeRow(name, "margin-nan", _hinge(margin=NAN), ValueError, ("margin",)),
        EdgeRow(name, "margin-negative", _hinge(margin=-1.0), ValueError, ("margin",)),
        EdgeRow(name, "target-shape", _hinge(y=np.ones((2, 1))), ValueError, ("target",)),
        EdgeRow(name, "integer-input", _hinge(x=np.ones((2, 3), dtype=np.int64)), TypeError, ("input",),
                grad=False),
        EdgeRow(name, "bad-reduction", _hinge(reduction="avg"), ValueError, ("reduction",)),
    ]
ROWS.append(EdgeRow("hinge_loss", "margin-1e30", _hinge(margin=1e30), "finite"))

# -- multi_margin_loss ----------------------------------------------------------------------------

S = np.array([[0.5, -1.0, 2.0], [0.0, 3.0, -0.25], [1.5, 0.5, -2.0], [-0.5, 0.25, 1.0]])
T = np.array([0, 2, 1, 0])


_multi = builder(S, T)


M = "multi_margin_loss"
for p in (1, 2):
    ROWS += [
        EdgeRow(M, f"p{p}-nan-input", _multi(p=p, x_at=((1, 1), NAN)), "nan"),
        EdgeRow(M, f"p{p}-nan-input-none", _multi(p=p, x_at=((1, 1), NAN), reduction="none"), "nan"),
        EdgeRow(M, f"p{p}-nan-input-sum", _multi(p=p, x_at=((3, 2), NAN), reduction="sum"), "nan"),
        EdgeRow(M, f"p{p}-nan-on-target-class", _multi(p=p, x_at=((0, 0), NAN)), "nan"),
        EdgeRow(M, f"p{p}-nan-far-below", _multi(p=p, x_at=((0, 1), NAN), margin=0.0), "nan"),
        EdgeRow(M, f"p{p}-plus-inf-on-target-class", _multi(p=p, x_at=((0, 0), INF)), "finite"),
        EdgeRow(M, f"p{p}-minus-inf-on-other-class", _multi(p=p, x_at=((0, 1), -INF)), "finite"),
        EdgeRow(M, f"p{p}-plus-inf-on-two-classes", _multi(p=p, x=np.array([[INF, INF, 0.0], [0.0, 1.0, 2.0]]),
                                                           y=np.array([0, 1])), "nan"),
        EdgeRow(M, f"p{p}-weight-zeros", _multi(p=p, weight=np.zeros(3)), "finite"),
        EdgeRow(M, f"p{p}-weight-zero-sum", _multi(p=p, weight=np.array([1.0, -1.0, 0.0])), "finite"),
        EdgeRow(M, f"p{p}-weight-nan", _multi(p=p, weight=np.array([NAN, 1.0, 1.0])), "nan"),
        EdgeRow(M, f"p{p}-weight-nan-unused-class", _multi(p=p, weight=np.array([1.0, 1.0, NAN]),
                                                            y=np.array([0, 1, 1, 0])), "finite"),
        EdgeRow(M, f"p{p}-margin-zero", _multi(p=p, margin=0.0), "finite"),
    ]
ROWS += [
    EdgeRow(M, "margin-1e10", _multi(margin=1e10), "finite"),
    EdgeRow(M, "margin-inf", _multi(margin=INF), ValueError, ("margin",)),
    EdgeRow(M, "margin-nan", _multi(margin=NAN), ValueError, ("margin",)),
    EdgeRow(M, "margin-negative", _multi(margin=-1.0), ValueError, ("margin",)),
    EdgeRow(M, "p-three", _multi(p=3), ValueError, ("p ",)),
    EdgeRow(M, "p-zero", _multi(p=0), ValueError, ("p ",)),
    EdgeRow(M, "p-one-and-a-half", _multi(p=1.5), TypeError, ("p ",)),
    EdgeRow(M, "p-float-two", _multi(p=2.0), TypeError, ("p ",)),
    EdgeRow(M, "p-string", _multi(p="1"), TypeError, ("p ",)),
    EdgeRow(M, "p-bool", _multi(p=True), TypeError, ("p ",)),
    EdgeRow(M, "weight-shape", _multi(weight=np.ones(4)), ValueError, ("weight",)),
    EdgeRow(M, "weight-integer", _multi(weight=np.array([1, 2, 3])), "finite"),
    EdgeRow(M, "target-out-of-range", _multi(y_at=(2, 3)), ValueError, ("target",)),
    EdgeRow(M, "target-negative", _multi(y_at=(2, -1)), ValueError, ("target",)),
    EdgeRow(M, "target-minus-100", _multi(y_at=(2, -100)), ValueError, ("target",)),
    *index_dtype_rows(M, _multi, T),
    EdgeRow(M, "empty-mean", _multi(x=np.zeros((0, 3)), y=np.zeros(0, dtype=np.int64)), "finite"),
    EdgeRow(M, "empty-sum", _multi(x=np.zeros((0, 3)), y=np.zeros(0, dtype=np.int64), reduction="sum"), "finite"),
    EdgeRow(M, "empty-none", _multi(x=np.zeros((0, 3)), y=np.zeros(0, dtype=np.int64), reduction="none"),
            "finite"),
    EdgeRow(M, "one-sample-1d", _multi(x=np.array([0.5, -1.0, 2.0]), y=np.array(2)), "finite"),
    EdgeRow(M, "class-axis-first", _multi(x=S.T.copy(), axis=0), "finite"),
    EdgeRow(M, "float-target", _multi(y=T.astype(float)), TypeError, ("target",)),
    EdgeRow(M, "target-shape", _multi(y=np.zeros((4, 1), dtype=np.int64)), ValueError, ("target",)),
    EdgeRow(M, "bad-reduction", _multi(reduction="avg"), ValueError, ("reduction",)),
]
