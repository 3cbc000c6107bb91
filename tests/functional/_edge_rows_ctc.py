"""Edge rows of the CTC loss."""

from __future__ import annotations

import numpy as np
from _edge import EdgeRow
from _edge import builder

_RAW = np.random.default_rng(0).normal(size=(6, 2, 4))
LP = _RAW - np.log(np.exp(_RAW).sum(-1, keepdims=True))  # (T=6, N=2, C=4) log-probabilities
TARGETS = np.array([[1, 2, 2], [3, 1, 0]])  # padded (N, S=3)
INPUT_LENGTHS = np.array([6, 4])
TARGET_LENGTHS = np.array([3, 2])


_base = builder(LP, TARGETS)


def _with(**changes):
    """``builder``'s rows (x: log_probs, y: targets) with the lengths as default options."""
    return _base(**{"input_lengths": INPUT_LENGTHS, "target_lengths": TARGET_LENGTHS, **changes})


def _empty(**options):
    return _with(x=np.zeros((6, 0, 4)), y=np.zeros((0, 3), dtype=np.int64), input_lengths=np.zeros(0, dtype=np.int64),
                 target_lengths=np.zeros(0, dtype=np.int64), **options)


N = "ctc_loss"
ROWS = [
    EdgeRow(N, "nan-input", _with(x_at=((1, 0, 2), np.nan)), "nan"),
    EdgeRow(N, "nan-input-none", _with(x_at=((0, 1, 1), np.nan), reduction="none"), "nan"),
    EdgeRow(N, "nan-input-sum", _with(x_at=((3, 1, 0), np.nan), reduction="sum"), "nan"),
    EdgeRow(N, "nan-beyond-input-length", _with(x_at=((5, 1, 0), np.nan)), "finite"),
    EdgeRow(N, "impossible-zero-infinity", _with(input_lengths=np.array([3, 4]), zero_infinity=True), "finite"),
    EdgeRow(N, "impossible-zero-infinity-none", _with(input_lengths=np.array([3, 4]), zero_infinity=True,
                                                      reduction="none"), "finite"),
    EdgeRow(N, "empty-targets", _with(target_lengths=np.array([0, 0])), "finite"),
    EdgeRow(N, "zero-input-length-empty-target", _with(input_lengths=np.array([0, 4]),
                                                       target_lengths=np.array([0, 2])), "finite"),
    EdgeRow(N, "empty-batch-mean", _empty(), "finite"),
    EdgeRow(N, "empty-batch-sum", _empty(reduction="sum"), "finite"),
    EdgeRow(N, "empty-batch-none", _empty(reduction="none"), "finite"),
    EdgeRow(N, "label-out-of-range", _with(y=np.array([[1, 4, 2], [3, 1, 0]])), ValueError, ("targets",)),
    EdgeRow(N, "negative-label", _with(y=np.array([[1, -1, 2], [3, 1, 0]])), ValueError, ("targets",)),
    EdgeRow(N, "blank-label", _with(y=np.array([[1, 0, 2], [3, 1, 0]])), ValueError, ("targets", "blank")),
    EdgeRow(N, "garbage-padding-is-not-read", _with(y=np.array([[1, 2, 2], [3, 1, 99]])), "finite"),
    EdgeRow(N, "input-length-above-t", _with(input_lengths=np.array([7, 4])), ValueError, ("input_lengths",)),
    EdgeRow(N, "negative-input-length", _with(input_lengths=np.array([6, -1])), ValueError, ("input_lengths",)),
    EdgeRow(N, "target-length-above-s", _with(target_lengths=np.array([4, 2])), ValueError, ("target_lengths",)),
    EdgeRow(N, "lengths-shape", _with(target_lengths=np.array([3, 2, 1])), ValueError, ("target_lengths",)),
    EdgeRow(N, "float-lengths", _with(input_lengths=np.array([6.0, 4.0])), TypeError, ("input_lengths",)),
    EdgeRow(N, "blank-out-of-range", _with(blank=4), ValueError, ("blank",)),
    EdgeRow(N, "blank-not-int", _with(blank=1.0), TypeError, ("blank",)),
    EdgeRow(N, "blank-last", _with(blank=3, y=np.array([[1, 2, 2], [0, 1, 0]])), "finite"),
    EdgeRow(N, "uint8-targets", _with(y=TARGETS.astype(np.uint8)), "finite"),
    EdgeRow(N, "int8-targets", _with(y=TARGETS.astype(np.int8)), "finite"),
    EdgeRow(N, "int16-targets", _with(y=TARGETS.astype(np.int16)), "finite"),
    EdgeRow(N, "int32-targets-and-lengths", _with(y=TARGETS.astype(np.int32), input_lengths=INPUT_LENGTHS.astype(
        np.int32), target_lengths=TARGET_LENGTHS.astype(np.int32)), "finite"),
    EdgeRow(N, "float-targets", _with(y=TARGETS.astype(np.float64)), TypeError, ("targets",)),
    EdgeRow(N, "targets-not-padded", _with(y=TARGETS.reshape(-1)), ValueError, ("targets",)),
    EdgeRow(N, "log-probs-2d", _with(x=LP[:, 0]), ValueError, ("log_probs",)),
    EdgeRow(N, "integer-log-probs", _with(x=np.zeros((6, 2, 4), dtype=np.int64)), TypeError, ("log_probs",),
            grad=False),
    EdgeRow(N, "zero-infinity-not-bool", _with(zero_infinity=1), TypeError, ("zero_infinity",)),
    EdgeRow(N, "bad-reduction", _with(reduction="avg"), ValueError, ("reduction",)),
]
