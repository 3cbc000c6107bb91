"""Edge rows of the focal losses (sigmoid and softmax); the rules are in each loss's docstring."""

from __future__ import annotations

import numpy as np
from _edge import EdgeRow
from _edge import builder

INF, NAN = float("inf"), float("nan")

# -- sigmoid_focal_loss ---------------------------------------------------------------------------

X = np.array([[0.5, -1.0, 2.0], [0.0, 3.0, -0.25]])
Y = np.array([[0.0, 1.0, 1.0], [1.0, 0.0, 0.0]])


_sigmoid = builder(X, Y)
SATURATED = np.array([[800.0, -800.0, 40.0], [-40.0, 100.0, -100.0]])  # p_t = 1 (or nearly) everywhere
SATURATED_Y = np.array([[1.0, 0.0, 1.0], [0.0, 1.0, 0.0]])

S = "sigmoid_focal_loss"
ROWS = [
    EdgeRow(S, "nan-input", _sigmoid(x_at=((0, 1), NAN)), "nan"),
    EdgeRow(S, "nan-input-none", _sigmoid(x_at=((0, 1), NAN), reduction="none"), "nan"),
    EdgeRow(S, "nan-input-sum", _sigmoid(x_at=((1, 2), NAN), reduction="sum"), "nan"),
    EdgeRow(S, "plus-inf-logit-positive", _sigmoid(x_at=((0, 1), INF)), "nan"),  # 0 * inf, as torchvision
    EdgeRow(S, "minus-inf-logit", _sigmoid(x_at=((0, 0), -INF)), "nan"),
    EdgeRow(S, "huge-finite-logits", _sigmoid(x=np.array([[1e30, -1e30, 1e4], [-1e4, 1e30, -1e30]])), "finite"),
    EdgeRow(S, "nan-target", _sigmoid(y_at=((1, 0), NAN)), "nan"),
    EdgeRow(S, "target-above-one", _sigmoid(y_at=((1, 0), 1.5)), ValueError, ("target",)),
    EdgeRow(S, "target-negative", _sigmoid(y_at=((0, 0), -0.5)), ValueError, ("target",)),
    EdgeRow(S, "target-nan-and-out-of-range", _sigmoid(y=np.array([[NAN, 1.0, 2.0], [1.0, 0.0, 0.0]])),
            ValueError, ("target",)),
    EdgeRow(S, "soft-targets", _sigmoid(y=np.array([[0.3, 0.7, 1.0], [0.0, 0.5, 0.9]])), "finite"),
    EdgeRow(S, "integer-target-two", _sigmoid(y=np.array([[0, 1, 2], [1, 0, 0]], dtype=np.int64)),
            ValueError, ("target",)),
    EdgeRow(S, "uint8-target", _sigmoid(y=Y.astype(np.uint8)), "finite"),
    EdgeRow(S, "int8-target", _sigmoid(y=Y.astype(np.int8)), "finite"),
    EdgeRow(S, "uint64-target", _sigmoid(y=Y.astype(np.uint64)), "finite"),
    EdgeRow(S, "bool-target", _sigmoid(y=Y.astype(bool)), "finite"),
    EdgeRow(S, "empty-mean", _sigmoid(x=np.zeros((0, 3)), y=np.zeros((0, 3))), "finite"),
    EdgeRow(S, "empty-sum", _sigmoid(x=np.zeros((0, 3)), y=np.zeros((0, 3)), reduction="sum"), "finite"),
    EdgeRow(S, "empty-none", _sigmoid(x=np.zeros((0, 3)), y=np.zeros((0, 3)), reduction="none"), "finite"),
    EdgeRow(S, "alpha-negative-disables", _sigmoid(alpha=-1.0), "finite"),
    EdgeRow(S, "alpha-minus-inf-disables", _sigmoid(alpha=-INF), "finite"),
    EdgeRow(S, "alpha-zero", _sigmoid(alpha=0.0), "finite"),
    EdgeRow(S, "alpha-one", _sigmoid(alpha=1.0), "finite"),
    EdgeRow(S, "alpha-above-one", _sigmoid(alpha=1.5), ValueError, ("alpha",)),
    EdgeRow(S, "alpha-nan", _sigmoid(alpha=NAN), ValueError, ("alpha",)),
    EdgeRow(S, "gamma-zero", _sigmoid(gamma=0.0), "finite"),
    EdgeRow(S, "gamma-half", _sigmoid(gamma=0.5), "finite"),
    EdgeRow(S, "gamma-one", _sigmoid(gamma=1.0), "finite"),
    EdgeRow(S, "gamma-half-saturated", _sigmoid(x=SATURATED, y=SATURATED_Y, gamma=0.5), "finite"),
    EdgeRow(S, "gamma-tiny-saturated", _sigmoid(x=SATURATED, y=SATURATED_Y, gamma=1e-3), "finite"),
    EdgeRow(S, "gamma-large", _sigmoid(gamma=50.0), "finite"),
    EdgeRow(S, "gamma-1e30", _sigmoid(gamma=1e30), "finite"),
    EdgeRow(S, "gamma-1e300", _sigmoid(gamma=1e300), ValueError, ("gamma",)),
    EdgeRow(S, "gamma-inf", _sigmoid(gamma=INF), ValueError, ("gamma",)),
    EdgeRow(S, "gamma-nan", _sigmoid(gamma=NAN), ValueError, ("gamma",)),
    EdgeRow(S, "gamma-negative", _sigmoid(gamma=-1.0), ValueError, ("gamma",)),
    EdgeRow(S, "target-shape", _sigmoid(y=np.zeros((2, 1))), ValueError, ("target",)),
    EdgeRow(S, "integer-input", _sigmoid(x=np.ones((2, 3), dtype=np.int64)), TypeError, ("input",), grad=False),
    EdgeRow(S, "bad-reduction", _sigmoid(reduction="avg"), ValueError, ("reduction",)),
]

# -- softmax_focal_loss ---------------------------------------------------------------------------

L = np.array([[0.5, -1.0, 2.0], [0.0, 3.0, -0.25], [1.5, 0.5, -2.0], [-0.5, 0.25, 1.0]])
T = np.array([0, 2, 1, 0])


_softmax = builder(L, T)


def index_dtype_rows(loss: str, with_, target: np.ndarray) -> list[EdgeRow]:
    """Class indices of every narrow and unsigned integer dtype work as int64; 200 in uint8 is out of range."""
    rows = [EdgeRow(loss, f"{dtype.__name__}-target", with_(y=target.astype(dtype)), "finite")
            for dtype in (np.uint8, np.int8, np.int16, np.int32, np.uint64)]
    bad = target.astype(np.uint8)
    bad[-1] = 200
    return [*rows, EdgeRow(loss, "uint8-target-out-of-range", with_(y=bad), ValueError, ("target",))]

SM = "softmax_focal_loss"
CONFIDENT = np.array([[800.0, 0.0, 0.0], [0.0, -INF, -INF], [60.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
ROWS += [
    EdgeRow(SM, "nan-input", _softmax(x_at=((1, 1), NAN)), "nan"),
    EdgeRow(SM, "nan-input-none", _softmax(x_at=((1, 1), NAN), reduction="none"), "nan"),
    EdgeRow(SM, "nan-input-sum", _softmax(x_at=((3, 0), NAN), reduction="sum"), "nan"),
    EdgeRow(SM, "nan-input-in-ignored-sample", _softmax(x_at=((1, 1), NAN), y_at=(1, -100)), "finite"),
    EdgeRow(SM, "plus-inf-on-target", _softmax(x_at=((0, 0), INF)), "nan"),  # inf - inf in the log-softmax
    EdgeRow(SM, "minus-inf-on-other-class", _softmax(x_at=((0, 1), -INF)), "finite"),
    EdgeRow(SM, "plus-inf-on-other-class", _softmax(x_at=((0, 1), INF)), "nan"),  # the whole log-softmax row
    EdgeRow(SM, "plus-inf-on-other-class-none", _softmax(x_at=((0, 1), INF), reduction="none"), "nan"),
    EdgeRow(SM, "all-minus-inf-row", _softmax(x=np.vstack([np.full((1, 3), -INF), L[1:]])), "nan"),
    EdgeRow(SM, "target-out-of-range", _softmax(y_at=(2, 3)), ValueError, ("target",)),
    EdgeRow(SM, "target-negative", _softmax(y_at=(2, -1)), ValueError, ("target",)),
    EdgeRow(SM, "ignored-target", _softmax(y_at=(2, -100)), "finite"),
    EdgeRow(SM, "ignore-index-a-class", _softmax(ignore_index=1), "finite"),
    EdgeRow(SM, "all-ignored-mean", _softmax(y=np.full(4, -100)), "finite"),
    EdgeRow(SM, "all-ignored-sum", _softmax(y=np.full(4, -100), reduction="sum"), "finite"),
    EdgeRow(SM, "all-ignored-none", _softmax(y=np.full(4, -100), reduction="none"), "finite"),
    EdgeRow(SM, "ignore-index-none", _softmax(ignore_index=None), "finite"),
    EdgeRow(SM, "empty-mean", _softmax(x=np.zeros((0, 3)), y=np.zeros(0, dtype=np.int64)), "finite"),
    EdgeRow(SM, "empty-sum", _softmax(x=np.zeros((0, 3)), y=np.zeros(0, dtype=np.int64), reduction="sum"), "finite"),
    EdgeRow(SM, "empty-none", _softmax(x=np.zeros((0, 3)), y=np.zeros(0, dtype=np.int64), reduction="none"),
            "finite"),
    EdgeRow(SM, "alpha-array", _softmax(alpha=np.array([0.25, 0.5, 1.0])), "finite"),
    EdgeRow(SM, "alpha-array-zeros", _softmax(alpha=np.zeros(3)), "finite"),
    EdgeRow(SM, "alpha-array-zero-sum", _softmax(alpha=np.array([1.0, -1.0, 0.0])), "finite"),
    EdgeRow(SM, "alpha-array-nan", _softmax(alpha=np.array([1.0, NAN, 1.0])), "nan"),
    EdgeRow(SM, "alpha-array-nan-ignored-class", _softmax(alpha=np.array([1.0, NAN, 1.0]), y_at=(2, -100)),
            "finite"),
    EdgeRow(SM, "alpha-array-integer", _softmax(alpha=np.array([1, 2, 3])), "finite"),
    EdgeRow(SM, "alpha-array-shape", _softmax(alpha=np.ones(4)), ValueError, ("alpha",)),
    EdgeRow(SM, "alpha-number", _softmax(alpha=0.25), "finite"),
    EdgeRow(SM, "alpha-negative", _softmax(alpha=-1.0), ValueError, ("alpha",)),
    EdgeRow(SM, "alpha-inf", _softmax(alpha=INF), ValueError, ("alpha",)),
    EdgeRow(SM, "gamma-zero", _softmax(gamma=0.0), "finite"),
    EdgeRow(SM, "gamma-half", _softmax(gamma=0.5), "finite"),
    EdgeRow(SM, "gamma-half-confident", _softmax(x=CONFIDENT, y=np.array([0, 0, 0, 2]), gamma=0.5), "finite"),
    EdgeRow(SM, "gamma-tiny-confident", _softmax(x=CONFIDENT, y=np.array([0, 0, 0, 2]), gamma=1e-3), "finite"),
    EdgeRow(SM, "gamma-large", _softmax(gamma=50.0), "finite"),
    EdgeRow(SM, "gamma-inf", _softmax(gamma=INF), ValueError, ("gamma",)),
    EdgeRow(SM, "gamma-negative", _softmax(gamma=-0.5), ValueError, ("gamma",)),
    *index_dtype_rows(SM, _softmax, T),
    EdgeRow(SM, "int8-target-ignored", _softmax(y=np.array([0, -100, 1, 0], dtype=np.int8)), "finite"),
    EdgeRow(SM, "float-target", _softmax(y=T.astype(float)), TypeError, ("target",)),
    EdgeRow(SM, "target-shape", _softmax(y=np.zeros((4, 1), dtype=np.int64)), ValueError, ("target",)),
    EdgeRow(SM, "axis-out-of-range", _softmax(axis=2), ValueError, ("axis",)),
    EdgeRow(SM, "bad-reduction", _softmax(reduction="avg"), ValueError, ("reduction",)),
]
