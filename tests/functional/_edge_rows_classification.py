"""Edge rows of the classification losses (binary cross-entropy on probabilities and logits, cross-entropy,
NLL, KL divergence). The rules are written in each loss's docstring."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
from _edge import EdgeRow
from _edge import builder

NAN, INF = float("nan"), float("inf")

P = np.array([[0.2, 0.7, 0.5], [0.9, 0.1, 0.4]])  # probabilities
SOFT = np.array([[0.0, 1.0, 0.3], [1.0, 0.0, 0.6]])  # soft binary targets
LOGITS = np.array([[0.5, -1.0, 2.0], [0.0, 3.0, -0.25], [1.5, 0.25, -2.0], [-0.5, 0.75, 1.0]])
CLASSES = np.array([0, 2, 1, 2])
LOG_P = LOGITS - np.log(np.exp(LOGITS).sum(-1, keepdims=True))
Q = np.exp(LOG_P[::-1].copy())  # class probabilities (rows sum to 1)
INT_DTYPES = (np.uint8, np.int8, np.int16, np.int32, np.uint16, np.uint32, np.uint64)


def _with(x0, y0, /, **changes):
    """A row's ``make`` from copies of ``(x0, y0)`` with ``changes`` (see :func:`_edge.builder`)."""
    return builder(x0, y0)(**changes)


def _common(name, x, y, *, nan_at=(0, 1), target_label="target"):
    """Rows every loss of the family has: NaN input in each reduction, shapes, dtypes, reductions."""
    return [
        EdgeRow(name, "nan-input", _with(x, y, x_at=(nan_at, NAN)), "nan"),
        EdgeRow(name, "nan-input-none", _with(x, y, x_at=(nan_at, NAN), reduction="none"), "nan"),
        EdgeRow(name, "nan-input-sum", _with(x, y, x_at=((1, 2), NAN), reduction="sum"), "nan"),
        EdgeRow(name, "integer-input", _with(x, y, x=np.ones(x.shape, dtype=np.int64)), TypeError, ("input",),
                grad=False),
        EdgeRow(name, "bad-reduction", _with(x, y, reduction="avg"), ValueError, ("reduction",)),
        EdgeRow(name, "target-shape", _with(x, y, y=np.zeros((1, *y.shape[1:]), dtype=y.dtype)), ValueError,
                (target_label,)),
    ]


def _empty(name, x, y, reductions=("mean", "sum", "none"), label="empty", **options):
    """An empty batch in each reduction: 0 (or an empty "none"), never NaN."""
    return [EdgeRow(name, f"{label}-{r}", _with(x, y, reduction=r, **options), "finite") for r in reductions]


def _elementwise(name, x, y):
    """Rows of the element-wise (binary) losses: NaN target, empty batch, element weights, integer targets."""
    return [
        EdgeRow(name, "nan-target", _with(x, y, y_at=((1, 0), NAN)), "nan"),
        EdgeRow(name, "nan-target-none", _with(x, y, y_at=((1, 0), NAN), reduction="none"), "nan"),
        *_empty(name, np.zeros((0, 3)), np.zeros((0, 3))),
        EdgeRow(name, "all-zero-weight", _with(x, y, weight=np.zeros(3)), "finite"),
        EdgeRow(name, "zero-sum-weight", _with(x, y, weight=np.array([1.0, -1.0, 0.0])), "finite"),
        EdgeRow(name, "nan-weight", _with(x, y, weight=np.array([1.0, NAN, 1.0])), "nan"),
        EdgeRow(name, "weight-too-big", _with(x, y, weight=np.ones((3, 3))), ValueError, ("weight",)),
        EdgeRow(name, "uint8-target", _with(x, y, y=np.array([[0, 1, 1], [1, 0, 0]], dtype=np.uint8)), "finite"),
        EdgeRow(name, "bool-target", _with(x, y, y=np.array([[False, True, True], [True, False, False]])),
                "finite"),
        EdgeRow(name, "uint8-target-two", _with(x, y, y=np.array([[0, 1, 2], [1, 0, 0]], dtype=np.uint8)),
                ValueError, ("target",)),
        EdgeRow(name, "target-above-one", _with(x, y, y_at=((0, 2), 1.5)), ValueError, ("target",)),
        EdgeRow(name, "target-negative-none", _with(x, y, y_at=((0, 2), -1.0), reduction="none"), ValueError,
                ("target",)),
    ]


ROWS: list[EdgeRow] = []

# -- binary_cross_entropy -----------------------------------------------------------------------------------------

name = "binary_cross_entropy"
ROWS += _common(name, P, SOFT) + _elementwise(name, P, SOFT)
ROWS += [
    EdgeRow(name, "input-above-one", _with(P, SOFT, x_at=((0, 2), 1.5)), ValueError, ("input",)),
    EdgeRow(name, "input-negative", _with(P, SOFT, x_at=((1, 1), -0.5)), ValueError, ("input",)),
    EdgeRow(name, "input-inf", _with(P, SOFT, x_at=((1, 1), INF)), ValueError, ("input",)),
    EdgeRow(name, "input-nan-and-above-one", _with(P, SOFT, x_at=((0, 2), 1.5), y_at=((0, 0), NAN)),
            ValueError, ("input",)),
    EdgeRow(name, "nan-input-target-above-one", _with(P, SOFT, x_at=((0, 0), NAN), y_at=((0, 2), 2.0)),
            ValueError, ("target",)),
    # probabilities 0 and 1 exactly: the logs clamp at -100; the gradient is PyTorch's backward formula, which
    # autograd through the generic code does not reproduce below 1e-12 (documented)
    EdgeRow(name, "input-zero-and-one", _with(P, SOFT, x=np.array([[0.0, 1.0, 0.0], [1.0, 0.0, 1.0]])),
            "finite", grad=False),
]

# -- binary_cross_entropy_with_logits -----------------------------------------------------------------------------

name = "binary_cross_entropy_with_logits"
X = np.array([[0.5, -1.0, 2.0], [0.0, 3.0, -0.25]])
ROWS += _common(name, X, SOFT) + _elementwise(name, X, SOFT)
ROWS += [
    # infinite logits as PyTorch evaluates them: +inf with target 1 is 0 * inf, -inf is inf - inf
    EdgeRow(name, "posinf-input-target-one", _with(X, SOFT, x_at=((0, 1), INF)), "nan"),
    EdgeRow(name, "neginf-input", _with(X, SOFT, x_at=((1, 0), -INF), reduction="none"), "nan"),
    EdgeRow(name, "huge-logits", _with(X, SOFT, x=np.array([[1e30, -1e30, 1e30], [-1e30, 1e30, -1e30]])),
            "finite"),
    EdgeRow(name, "huge-logits-pos-weight",
            _with(X, SOFT, x=np.array([[1e30, -1e30, 1e30], [-1e30, 1e30, -1e30]]), pos_weight=np.full(3, 2.0)),
            "finite"),
    EdgeRow(name, "target-negative", _with(X, SOFT, y_at=((0, 0), -0.5)), ValueError, ("target",)),
    EdgeRow(name, "zero-pos-weight", _with(X, SOFT, pos_weight=np.zeros(3)), "finite"),
    EdgeRow(name, "nan-pos-weight", _with(X, SOFT, pos_weight=np.array([1.0, NAN, 1.0])), "nan"),
    EdgeRow(name, "pos-weight-too-long", _with(X, SOFT, pos_weight=np.ones(4)), ValueError, ("pos_weight",)),
]

# -- cross_entropy and nll_loss -------------------------------------------------------------------------------------

for name, x in (("cross_entropy", LOGITS), ("nll_loss", LOG_P)):
    t = CLASSES
    # nll_loss reads the target class only: its NaN is put there (row 0's target is 0, row 2's is 1)
    ROWS += _common(name, x, t, nan_at=(0, 0))
    ROWS += [
        EdgeRow(name, "nan-input-kd-axis", _with(x, t, x=np.stack([x, x], -1), y=np.stack([t, t], -1), axis=1,
                                                 x_at=((2, 1, 1), NAN)), "nan"),
        # an ignored sample contributes nothing, whatever it holds
        EdgeRow(name, "nan-in-ignored-sample", _with(x, t, x_at=((1, 0), NAN), y_at=(1, -100)), "finite"),
        EdgeRow(name, "nan-in-ignored-sample-weighted",
                _with(x, t, x_at=((1, 0), NAN), y_at=(1, -100), weight=np.array([1.0, 2.0, 0.5])), "finite"),
        EdgeRow(name, "neginf-off-target", _with(x, t, x_at=((0, 1), -INF)), "finite"),
        EdgeRow(name, "huge-input", _with(x, t, x=1e30 * np.sign(x)), "finite"),
        EdgeRow(name, "index-equal-to-c", _with(x, t, y_at=(2, 3)), ValueError, ("target",)),
        EdgeRow(name, "index-minus-one", _with(x, t, y_at=(2, -1)), ValueError, ("target",)),
        EdgeRow(name, "index-out-of-range-none", _with(x, t, y_at=(2, 7), reduction="none"), ValueError,
                ("target",)),
        EdgeRow(name, "uint64-above-int64-max", _with(x, t, y=np.array([0, 2**63 + 1, 1, 2], dtype=np.uint64)),
                ValueError, ("target",)),
        EdgeRow(name, "uint64-wrapping-to-ignore-index",
                _with(x, t, y=np.array([0, 2**64 - 100, 1, 2], dtype=np.uint64)), ValueError, ("target",)),
        EdgeRow(name, "uint8-target-default-ignore-index", _with(x, t, y_dtype=np.uint8), "finite"),
        EdgeRow(name, "uint8-ignore-index-255", _with(x, t, y=np.array([0, 255, 1, 2], dtype=np.uint8),
                                                      ignore_index=255), "finite"),
        EdgeRow(name, "ignore-index-none", _with(x, t, ignore_index=None), "finite"),
        EdgeRow(name, "ignore-index-none-with-minus-100", _with(x, t, y_at=(0, -100), ignore_index=None),
                ValueError, ("target",)),
        EdgeRow(name, "ignore-index-a-class", _with(x, t, ignore_index=2), "finite"),
        EdgeRow(name, "ignore-index-huge", _with(x, t, ignore_index=2**70), "finite"),
        EdgeRow(name, "ignore-index-float", _with(x, t, ignore_index=1.0), TypeError, ("ignore_index",)),
        EdgeRow(name, "all-ignored-mean", _with(x, t, y=np.full(4, -100)), "finite"),
        EdgeRow(name, "all-ignored-sum", _with(x, t, y=np.full(4, -100), reduction="sum"), "finite"),
        EdgeRow(name, "all-ignored-weighted", _with(x, t, y=np.full(4, -100), weight=np.array([1.0, 2.0, 3.0])),
                "finite"),
        EdgeRow(name, "all-zero-weight", _with(x, t, weight=np.zeros(3)), "finite"),
        EdgeRow(name, "zero-sum-weight", _with(x, t, y=np.array([0, 1, 0, 1]), weight=np.array([1.0, -1.0, 0.0])),
                "finite"),
        EdgeRow(name, "zero-sum-weight-sum", _with(x, t, y=np.array([0, 1, 0, 1]), weight=np.array([1.0, -1.0, 0.0]),
                                                   reduction="sum"), "finite"),
        EdgeRow(name, "nan-weight", _with(x, t, weight=np.array([1.0, 1.0, NAN])), "nan"),
        EdgeRow(name, "nan-weight-of-no-target", _with(x, t, y=np.array([0, 2, 0, 2]),
                                                       weight=np.array([1.0, NAN, 1.0])), "finite"),
        EdgeRow(name, "weight-wrong-length", _with(x, t, weight=np.ones(4)), ValueError, ("weight",)),
        *_empty(name, np.zeros((0, 3)), np.zeros(0, dtype=np.int64)),
        EdgeRow(name, "empty-kd-axis", _with(x, t, x=np.zeros((0, 3, 4)), y=np.zeros((0, 4), dtype=np.int64),
                                             axis=1), "finite"),
        EdgeRow(name, "kd-axis", _with(x, t, x=np.stack([x, x], -1), y=np.stack([t, t[::-1]], -1), axis=1),
                "finite"),
        EdgeRow(name, "kd-axis-weighted-none",
                _with(x, t, x=np.stack([x, x], -1), y=np.stack([t, t[::-1]], -1), axis=1,
                      weight=np.array([0.5, 1.0, 2.0]), reduction="none"), "finite"),
        EdgeRow(name, "bad-axis", _with(x, t, axis=2), ValueError, ("axis",)),
        EdgeRow(name, "floating-indices", _with(x, t, y=t.astype(np.float64)), TypeError, ("target",)),
    ]
    ROWS += [EdgeRow(name, f"{np.dtype(d).name}-target", _with(x, t, y_dtype=d), "finite") for d in INT_DTYPES]

ROWS += [EdgeRow("nll_loss", "nan-off-target", _with(LOG_P, CLASSES, x_at=((0, 1), NAN)), "finite")]

name = "cross_entropy"
ROWS += [
    EdgeRow(name, "posinf-target-logit", _with(LOGITS, CLASSES, x_at=((0, 0), INF)), "nan"),
    EdgeRow(name, "posinf-logit", _with(LOGITS, CLASSES, x_at=((0, 1), INF)), "nan"),
    EdgeRow(name, "posinf-logit-none", _with(LOGITS, CLASSES, x_at=((0, 1), INF), reduction="none"), "nan"),
    EdgeRow(name, "huge-logits-smoothing", _with(LOGITS, CLASSES, x=1e30 * np.sign(LOGITS), label_smoothing=0.1),
            "finite"),
    EdgeRow(name, "smoothing-zero", _with(LOGITS, CLASSES, label_smoothing=0.0), "finite"),
    EdgeRow(name, "smoothing-one", _with(LOGITS, CLASSES, label_smoothing=1.0), "finite"),
    EdgeRow(name, "smoothing-one-weighted-ignored",
            _with(LOGITS, CLASSES, y_at=(0, -100), label_smoothing=1.0, weight=np.array([1.0, 2.0, 0.5])), "finite"),
    EdgeRow(name, "smoothing-int", _with(LOGITS, CLASSES, label_smoothing=1), "finite"),
    EdgeRow(name, "smoothing-above-one", _with(LOGITS, CLASSES, label_smoothing=1.5), ValueError,
            ("label_smoothing",)),
    EdgeRow(name, "smoothing-negative", _with(LOGITS, CLASSES, label_smoothing=-0.1), ValueError,
            ("label_smoothing",)),
    EdgeRow(name, "smoothing-nan", _with(LOGITS, CLASSES, label_smoothing=NAN), ValueError, ("label_smoothing",)),
    EdgeRow(name, "smoothing-inf", _with(LOGITS, CLASSES, label_smoothing=INF), ValueError, ("label_smoothing",)),
    EdgeRow(name, "smoothing-all-ignored", _with(LOGITS, CLASSES, y=np.full(4, -100), label_smoothing=0.2),
            "finite"),
    EdgeRow(name, "smoothing-zero-sum-weight",
            _with(LOGITS, CLASSES, y=np.array([0, 1, 0, 1]), weight=np.array([1.0, -1.0, 0.0]), label_smoothing=0.3),
            "finite"),
    # class probabilities
    EdgeRow(name, "probabilities", _with(LOGITS, Q, label_smoothing=0.1), "finite"),
    EdgeRow(name, "probabilities-not-summing-to-one", _with(LOGITS, Q, y=np.full((4, 3), 0.9)), "finite"),
    EdgeRow(name, "probabilities-nan", _with(LOGITS, Q, y_at=((1, 1), NAN)), "nan"),
    EdgeRow(name, "probabilities-nan-none", _with(LOGITS, Q, y_at=((1, 1), NAN), reduction="none"), "nan"),
    EdgeRow(name, "probabilities-negative", _with(LOGITS, Q, y_at=((1, 1), -0.1)), ValueError, ("target",)),
    EdgeRow(name, "probabilities-above-one", _with(LOGITS, Q, y_at=((1, 1), 2.0)), ValueError, ("target",)),
    EdgeRow(name, "probabilities-nan-input", _with(LOGITS, Q, x_at=((2, 0), NAN)), "nan"),
    EdgeRow(name, "probabilities-all-zero-weight", _with(LOGITS, Q, weight=np.zeros(3)), "finite"),
    EdgeRow(name, "probabilities-empty", _with(LOGITS, Q, x=np.zeros((0, 3)), y=np.zeros((0, 3))), "finite"),
    EdgeRow(name, "probabilities-kd-axis", _with(LOGITS, Q, x=np.stack([LOGITS, LOGITS], 1),
                                                 y=np.stack([Q, Q[::-1]], 1), axis=-1), "finite"),
    EdgeRow(name, "probabilities-wrong-shape", _with(LOGITS, Q, y=np.zeros((4, 2))), ValueError, ("target",)),
]

# -- kl_div ---------------------------------------------------------------------------------------------------------

name = "kl_div"
KX, KY = LOG_P, Q
ROWS += _common(name, KX, KY)
ROWS += [
    EdgeRow(name, "nan-target", _with(KX, KY, y_at=((2, 1), NAN)), "nan"),
    EdgeRow(name, "nan-target-batchmean", _with(KX, KY, y_at=((2, 1), NAN), reduction="batchmean"), "nan"),
    EdgeRow(name, "target-zero", _with(KX, KY, y_at=((0, 0), 0.0)), "finite"),  # 0 log 0 = 0
    EdgeRow(name, "target-zero-neginf-input", _with(KX, KY, y_at=((0, 0), 0.0), x_at=((0, 0), -INF)), "nan"),
    EdgeRow(name, "target-above-one", _with(KX, KY, y_at=((0, 0), 3.0)), "finite"),
    EdgeRow(name, "target-negative", _with(KX, KY, y_at=((0, 0), -0.25)), ValueError, ("target",)),
    EdgeRow(name, "target-negative-and-nan", _with(KX, KY, y_at=((0, 0), -0.25), x_at=((1, 1), NAN)), ValueError,
            ("target",)),
    EdgeRow(name, "log-target", _with(KX, KY, y=np.log(KY), log_target=True), "finite"),
    EdgeRow(name, "log-target-positive", _with(KX, KY, y=np.log(KY) + 2.0, log_target=True), "finite"),
    EdgeRow(name, "log-target-neginf", _with(KX, KY, y=np.log(KY), y_at=((0, 0), -INF), log_target=True), "nan"),
    EdgeRow(name, "log-target-nan", _with(KX, KY, y=np.log(KY), y_at=((0, 0), NAN), log_target=True), "nan"),
    EdgeRow(name, "log-target-not-bool", _with(KX, KY, log_target=1), TypeError, ("log_target",)),
    EdgeRow(name, "integer-target", _with(KX, KY, y=np.array([[0, 1, 0]] * 4, dtype=np.uint8)), "finite"),
    EdgeRow(name, "batchmean", _with(KX, KY, reduction="batchmean"), "finite"),
    *_empty(name, np.zeros((0, 3)), np.zeros((0, 3)), ("mean", "sum", "none", "batchmean")),
    *_empty(name, np.zeros((0, 3)), np.zeros((0, 3)), ("batchmean",), "empty-log-target", log_target=True),
]
del name

# Rows whose ValueError comes from reading values: where values cannot be read without a device sync (a GPU) the
# loss reads nothing (the docstrings say what happens there), so these rows do not apply to those cases.
UNREAD_CASES = ("torch-cuda-f32", "cupy")
VALUE_CHECKS = {
    "input-above-one", "input-negative", "input-inf", "input-nan-and-above-one", "nan-input-target-above-one",
    "uint8-target-two", "target-above-one", "target-negative", "target-negative-none", "target-negative-and-nan",
    "index-equal-to-c", "index-minus-one", "index-out-of-range-none", "uint64-above-int64-max",
    "uint64-wrapping-to-ignore-index", "ignore-index-none-with-minus-100", "probabilities-negative",
    "probabilities-above-one",
}
ROWS = [replace(row, skip=row.skip + UNREAD_CASES) if row.label in VALUE_CHECKS else row for row in ROWS]
