"""Edge rows of the box losses (iou_loss, giou_loss, diou_loss, ciou_loss).

The rules (each loss's docstring states them): NaN in a coordinate of either
box gives NaN for that pair (every reduction); an infinite coordinate gives
the formulas' IEEE result (IoU loss 1 against a finite box, NaN for GIoU /
DIoU / CIoU, NaN where both boxes are infinite); zero-width, zero-height and
point boxes give a finite value and gradient (torchvision's where it is
finite, ``tests/functional/test_box.py``); inverted boxes (``x2 < x1``) are
computed as torchvision computes them (signed widths, no error); empty inputs
give 0 ("mean", "sum") or an empty array; ``eps`` must be a number > 0 (a
tiny one acts as the dtype's smallest normal number, an infinite one gives
the limit 1); integer ``boxes1`` is a TypeError, integer ``boxes2`` of any
width works like floats; shapes not ending in 4 or not equal are a
ValueError naming the argument.
"""

from __future__ import annotations

import numpy as np
from _edge import EdgeRow

BOX_LOSSES = ("iou_loss", "giou_loss", "diou_loss", "ciou_loss")

A = np.array([[0.0, 0.0, 2.0, 2.0], [1.0, 1.0, 3.0, 4.0], [0.0, 0.0, 1.0, 1.0]])
B = np.array([[1.0, 1.0, 3.0, 3.0], [1.0, 1.5, 3.0, 4.0], [5.0, 5.0, 6.0, 7.0]])
# zero width, zero height, a point inside a box, the same point twice, a point against a box it misses,
# and the same zero-width box twice
DEGENERATE_A = np.array([[1.0, 0.0, 1.0, 2.0], [0.0, 1.0, 2.0, 1.0], [2.0, 2.0, 2.0, 2.0], [1.0, 1.0, 1.0, 1.0],
                         [0.0, 0.0, 0.0, 0.0], [0.5, 0.5, 0.5, 3.0]])
DEGENERATE_B = np.array([[0.0, 0.0, 2.0, 2.0], [1.0, 0.0, 3.0, 3.0], [0.0, 0.0, 4.0, 4.0], [1.0, 1.0, 1.0, 1.0],
                         [1.0, 1.0, 2.0, 3.0], [0.5, 0.5, 0.5, 3.0]])
# x2 < x1, y2 < y1, both, a regular box against an inverted one, inverted boxes that cross
INVERTED_A = np.array([[2.0, 0.0, 0.0, 2.0], [0.0, 3.0, 2.0, 1.0], [3.0, 3.0, 1.0, 1.0], [0.0, 0.0, 1.0, 1.0],
                       [2.0, 0.5, 0.0, 2.5]])
INVERTED_B = np.array([[0.0, 0.0, 1.0, 1.0], [0.5, 0.5, 1.5, 2.5], [0.0, 0.0, 2.0, 2.0], [1.0, 1.0, 0.0, 0.0],
                       [0.5, 0.0, 1.5, 3.0]])


def _with(a=A, b=B, a_at=None, b_at=None, **options):
    def make():
        x, y = a.copy(), b.copy()
        if a_at is not None:
            x[a_at[0]] = a_at[1]
        if b_at is not None:
            y[b_at[0]] = b_at[1]
        return (x, y), dict(options)

    return make


def _integer_targets(dtype):
    return np.array([[1, 1, 3, 3], [1, 2, 3, 4], [5, 5, 6, 7]], dtype=dtype)


ROWS = []
for name in BOX_LOSSES:
    infinite = "finite" if name == "iou_loss" else "nan"  # 1 - 0 / inf, or inf / inf in the other terms
    ROWS += [
        EdgeRow(name, "nan-input", _with(a_at=((1, 0), np.nan)), "nan"),
        EdgeRow(name, "nan-input-none", _with(a_at=((1, 3), np.nan), reduction="none"), "nan"),
        EdgeRow(name, "nan-input-sum", _with(a_at=((2, 2), np.nan), reduction="sum"), "nan"),
        EdgeRow(name, "nan-input-degenerate", _with(DEGENERATE_A, DEGENERATE_B, a_at=((3, 0), np.nan)), "nan"),
        EdgeRow(name, "nan-target", _with(b_at=((0, 1), np.nan)), "nan"),
        EdgeRow(name, "nan-target-disjoint", _with(b_at=((2, 2), np.nan), reduction="none"), "nan"),
        # the value only: where a term is inf / inf, autograd's where-based max/min backward gives 0 to a branch
        # that the closed form multiplies by 0 (NaN); the gradient at an infinite coordinate is not specified
        EdgeRow(name, "inf-input", _with(a_at=((0, 2), np.inf)), infinite, grad=False),
        EdgeRow(name, "minus-inf-input", _with(a_at=((0, 0), -np.inf), reduction="none"), infinite, grad=False),
        EdgeRow(name, "inf-target", _with(b_at=((1, 3), np.inf)), infinite, grad=False),
        EdgeRow(name, "inf-both", _with(a_at=((0, 2), np.inf), b_at=((0, 2), np.inf)), "nan", grad=False),
        EdgeRow(name, "degenerate", _with(DEGENERATE_A, DEGENERATE_B, reduction="none"), "finite"),
        EdgeRow(name, "degenerate-swapped", _with(DEGENERATE_B, DEGENERATE_A, reduction="none"), "finite"),
        EdgeRow(name, "inverted", _with(INVERTED_A, INVERTED_B, reduction="none"), "finite"),
        EdgeRow(name, "inverted-swapped", _with(INVERTED_B, INVERTED_A, reduction="none"), "finite"),
        EdgeRow(name, "empty-mean", _with(np.zeros((0, 4)), np.zeros((0, 4))), "finite"),
        EdgeRow(name, "empty-sum", _with(np.zeros((0, 4)), np.zeros((0, 4)), reduction="sum"), "finite"),
        EdgeRow(name, "empty-none", _with(np.zeros((2, 0, 4)), np.zeros((2, 0, 4)), reduction="none"), "finite"),
        EdgeRow(name, "batched", _with(np.stack([A, B]), np.stack([B, A]), reduction="none"), "finite"),
        EdgeRow(name, "eps-zero", _with(eps=0.0), ValueError, ("eps",)),
        EdgeRow(name, "eps-negative", _with(eps=-1e-7), ValueError, ("eps",)),
        EdgeRow(name, "eps-nan", _with(eps=float("nan")), ValueError, ("eps",)),
        EdgeRow(name, "eps-string", _with(eps="1e-7"), TypeError, ("eps",)),
        EdgeRow(name, "eps-inf", _with(eps=float("inf")), "finite"),
        EdgeRow(name, "eps-huge", _with(eps=1e300), "finite"),
        EdgeRow(name, "eps-below-subnormal", _with(DEGENERATE_A, DEGENERATE_B, eps=1e-46), "finite"),
        EdgeRow(name, "eps-smallest-subnormal", _with(DEGENERATE_A, DEGENERATE_B, eps=5e-324), "finite"),
        EdgeRow(name, "boxes1-not-4", _with(np.zeros((3, 5)), np.zeros((3, 5))), ValueError, ("boxes1",)),
        EdgeRow(name, "boxes2-not-4", _with(b=np.zeros((3, 5))), ValueError, ("boxes2",)),
        EdgeRow(name, "boxes1-0d", _with(np.array(1.0), np.array(1.0)), ValueError, ("boxes1",)),
        EdgeRow(name, "shape-mismatch", _with(b=B[:2]), ValueError, ("boxes2",)),
        EdgeRow(name, "no-broadcast", _with(b=B[:1]), ValueError, ("boxes2",)),
        EdgeRow(name, "integer-boxes1", _with(A.astype(np.int64)), TypeError, ("boxes1",), grad=False),
        EdgeRow(name, "bool-boxes2", _with(b=B > 2), TypeError, ("boxes2",)),
        EdgeRow(name, "bad-reduction", _with(reduction="avg"), ValueError, ("reduction",)),
    ]
    for dtype in ("int64", "int32", "int16", "int8", "uint8", "uint64"):
        ROWS.append(EdgeRow(name, f"{dtype}-boxes2", _with(b=_integer_targets(dtype)), "finite",
                            ))
