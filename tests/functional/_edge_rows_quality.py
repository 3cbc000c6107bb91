"""Edge rows of the detection quality losses (varifocal, quality focal, distribution focal)."""

from __future__ import annotations

import numpy as np
from _edge import EdgeRow

X = np.array([[0.5, -1.0, 2.0], [0.0, 3.0, -0.25]])
T = np.array([[0.0, 0.7, 0.0], [0.0, 0.0, 0.0]])  # one positive (IoU 0.7)
LABEL = np.array([1, 3])  # 3 = background
SCORE = np.array([0.7, 0.0])
DFL_LABEL = np.array([0.5, 2.0])  # bins 0..2; 2 is the last bin exactly


def _make(arrays, **changes):
    """``arrays``: the default positional arrays; ``changes``: ``x_at``/``a1_at`` (index, value),
    ``x``/``a1`` replacements, anything else an option."""

    def make():
        xs = [a.copy() for a in arrays]
        options = {}
        for key, value in changes.items():
            if key.endswith("_at"):
                slot = 0 if key == "x_at" else int(key[1])
                xs[slot] = xs[slot].astype(float) if np.isnan(value[1]) else xs[slot]
                xs[slot][value[0]] = value[1]
            elif key == "x":
                xs[0] = value
            elif key in ("a1", "a2"):
                xs[int(key[1])] = value
            else:
                options[key] = value
        return tuple(xs), options

    return make


def _vf(**changes):
    return _make([X, T], **changes)


def _qfl(**changes):
    score = changes.pop("score", SCORE)
    return _make([X, LABEL], score=score, **changes)


def _dfl(**changes):
    return _make([X, DFL_LABEL], **changes)


ROWS = [
    EdgeRow("varifocal_loss", "nan-input", _vf(x_at=((0, 1), np.nan)), "nan"),
    EdgeRow("varifocal_loss", "nan-input-none", _vf(x_at=((1, 1), np.nan), reduction="none"), "nan"),
    EdgeRow("varifocal_loss", "nan-input-sum", _vf(x_at=((1, 2), np.nan), reduction="sum"), "nan"),
    EdgeRow("varifocal_loss", "inf-input-agreeing", _vf(x=np.array([[-np.inf, 1.0, -np.inf], [0.0, 1.0, 2.0]]),
                                                         a1=np.array([[0.0, 0.7, 0.0], [0.0, 1.0, 0.0]])), "finite"),
    EdgeRow("varifocal_loss", "nan-target", _vf(a1_at=((1, 0), np.nan)), ValueError, ("target",)),
    EdgeRow("varifocal_loss", "target-above-one", _vf(a1_at=((1, 0), 1.5)), ValueError, ("target",)),
    EdgeRow("varifocal_loss", "target-negative", _vf(a1_at=((1, 0), -0.2)), ValueError, ("target",)),
    EdgeRow("varifocal_loss", "empty-mean", _vf(x=np.zeros((0, 3)), a1=np.zeros((0, 3))), "finite"),
    EdgeRow("varifocal_loss", "empty-sum", _vf(x=np.zeros((0, 3)), a1=np.zeros((0, 3)), reduction="sum"), "finite"),
    EdgeRow("varifocal_loss", "empty-none", _vf(x=np.zeros((0, 3)), a1=np.zeros((0, 3)), reduction="none"),
            "finite"),
    EdgeRow("varifocal_loss", "uint8-target", _vf(a1=np.array([[0, 1, 0], [1, 0, 0]], dtype=np.uint8)), "finite"),
    EdgeRow("varifocal_loss", "bool-target", _vf(a1=np.array([[False, True, False], [True, False, False]])),
            "finite"),
    EdgeRow("varifocal_loss", "alpha-zero", _vf(alpha=0.0), "finite"),
    EdgeRow("varifocal_loss", "alpha-nan", _vf(alpha=float("nan")), ValueError, ("alpha",)),
    EdgeRow("varifocal_loss", "alpha-negative", _vf(alpha=-0.5), ValueError, ("alpha",)),
    EdgeRow("varifocal_loss", "alpha-inf", _vf(alpha=float("inf")), ValueError, ("alpha",)),
    EdgeRow("varifocal_loss", "gamma-zero", _vf(gamma=0.0), "finite"),
    EdgeRow("varifocal_loss", "gamma-tiny", _vf(gamma=1e-320), "finite"),
    EdgeRow("varifocal_loss", "gamma-huge", _vf(gamma=1e30), "finite"),
    EdgeRow("varifocal_loss", "alpha-huge", _vf(alpha=1e30), "finite"),
    EdgeRow("varifocal_loss", "gamma-inf", _vf(gamma=float("inf")), ValueError, ("gamma",)),
    EdgeRow("varifocal_loss", "gamma-nan", _vf(gamma=float("nan")), ValueError, ("gamma",)),
    EdgeRow("varifocal_loss", "iou-weighted-not-bool", _vf(iou_weighted=1), TypeError, ("iou_weighted",)),
    EdgeRow("varifocal_loss", "target-shape", _vf(a1=np.zeros((2, 1))), ValueError, ("target",)),
    EdgeRow("varifocal_loss", "integer-input", _vf(x=np.ones((2, 3), dtype=np.int64)), TypeError, ("input",),
            grad=False),
    EdgeRow("varifocal_loss", "bad-reduction", _vf(reduction="avg"), ValueError, ("reduction",)),
    # quality focal: label (N,) with background C, score (N,) by keyword
    EdgeRow("quality_focal_loss", "nan-input", _qfl(x_at=((0, 1), np.nan)), "nan"),
    EdgeRow("quality_focal_loss", "nan-input-background-none", _qfl(x_at=((1, 1), np.nan), reduction="none"),
            "nan"),
    EdgeRow("quality_focal_loss", "nan-input-sum", _qfl(x_at=((1, 2), np.nan), reduction="sum"), "nan"),
    EdgeRow("quality_focal_loss", "inf-input-agreeing",
            _qfl(x=np.array([[-np.inf, 50.0, -np.inf], [-np.inf, -np.inf, -np.inf]]), score=np.array([1.0, 0.0])),
            "finite"),
    EdgeRow("quality_focal_loss", "nan-score", _qfl(score=np.array([np.nan, 0.0])), ValueError, ("score",)),
    EdgeRow("quality_focal_loss", "score-above-one", _qfl(score=np.array([1.5, 0.0])), ValueError, ("score",)),
    EdgeRow("quality_focal_loss", "label-above-background", _qfl(a1=np.array([1, 4])), ValueError, ("label",)),
    EdgeRow("quality_focal_loss", "label-negative", _qfl(a1=np.array([-1, 3])), ValueError, ("label",)),
    EdgeRow("quality_focal_loss", "float-label", _qfl(a1=np.array([1.0, 3.0])), TypeError, ("label",)),
    EdgeRow("quality_focal_loss", "empty-mean", _qfl(x=np.zeros((0, 3)), a1=np.zeros(0, dtype=np.int64),
                                                     score=np.zeros(0)), "finite"),
    EdgeRow("quality_focal_loss", "empty-sum", _qfl(x=np.zeros((0, 3)), a1=np.zeros(0, dtype=np.int64),
                                                    score=np.zeros(0), reduction="sum"), "finite"),
    EdgeRow("quality_focal_loss", "empty-none", _qfl(x=np.zeros((0, 3)), a1=np.zeros(0, dtype=np.int64),
                                                     score=np.zeros(0), reduction="none"), "finite"),
    EdgeRow("quality_focal_loss", "beta-tiny", _qfl(beta=1e-320), "finite"),
    EdgeRow("quality_focal_loss", "beta-huge", _qfl(beta=1e30), "finite"),
    EdgeRow("quality_focal_loss", "beta-inf", _qfl(beta=float("inf")), ValueError, ("beta",)),
    EdgeRow("quality_focal_loss", "beta-nan", _qfl(beta=float("nan")), ValueError, ("beta",)),
    EdgeRow("quality_focal_loss", "beta-negative", _qfl(beta=-1.0), ValueError, ("beta",)),
    EdgeRow("quality_focal_loss", "label-shape", _qfl(a1=np.array([1, 3, 0])), ValueError, ("label",)),
    EdgeRow("quality_focal_loss", "score-shape", _qfl(score=np.zeros(3)), ValueError, ("score",)),
    EdgeRow("quality_focal_loss", "integer-input", _qfl(x=np.ones((2, 3), dtype=np.int64)), TypeError, ("input",),
            grad=False),
    EdgeRow("quality_focal_loss", "bad-reduction", _qfl(reduction="avg"), ValueError, ("reduction",)),
    # distribution focal: label a float in [0, n]
    EdgeRow("distribution_focal_loss", "nan-input", _dfl(x_at=((0, 1), np.nan)), "nan"),
    EdgeRow("distribution_focal_loss", "nan-input-none", _dfl(x_at=((1, 0), np.nan), reduction="none"), "nan"),
    EdgeRow("distribution_focal_loss", "nan-input-sum", _dfl(x_at=((1, 2), np.nan), reduction="sum"), "nan"),
    EdgeRow("distribution_focal_loss", "inf-input-at-label", _dfl(x=np.array([[0.0, np.inf, 0.0], [0.0, 0.0, 1.0]]),
                                                                  a1=np.array([1.0, 2.0])), "nan"),
    EdgeRow("distribution_focal_loss", "nan-label", _dfl(a1_at=(0, np.nan)), ValueError, ("label",)),
    EdgeRow("distribution_focal_loss", "label-above-n", _dfl(a1_at=(1, 2.5)), ValueError, ("label",)),
    EdgeRow("distribution_focal_loss", "label-negative", _dfl(a1_at=(1, -0.5)), ValueError, ("label",)),
    EdgeRow("distribution_focal_loss", "label-zero", _dfl(a1=np.array([0.0, 0.0])), "finite"),
    EdgeRow("distribution_focal_loss", "int64-label", _dfl(a1=np.array([0, 2])), "finite"),
    EdgeRow("distribution_focal_loss", "uint8-label", _dfl(a1=np.array([0, 2], dtype=np.uint8)), "finite"),
    EdgeRow("distribution_focal_loss", "int16-label", _dfl(a1=np.array([1, 2], dtype=np.int16)), "finite"),
    EdgeRow("distribution_focal_loss", "bool-label", _dfl(a1=np.array([True, False])), TypeError, ("label",)),
    EdgeRow("distribution_focal_loss", "empty-mean", _dfl(x=np.zeros((0, 3)), a1=np.zeros(0)), "finite"),
    EdgeRow("distribution_focal_loss", "empty-sum", _dfl(x=np.zeros((0, 3)), a1=np.zeros(0), reduction="sum"),
            "finite"),
    EdgeRow("distribution_focal_loss", "empty-none", _dfl(x=np.zeros((0, 3)), a1=np.zeros(0), reduction="none"),
            "finite"),
    EdgeRow("distribution_focal_loss", "one-bin", _dfl(x=np.zeros((2, 1)), a1=np.zeros(2)), ValueError, ("bins",)),
    EdgeRow("distribution_focal_loss", "label-shape", _dfl(a1=np.zeros(3)), ValueError, ("label",)),
    EdgeRow("distribution_focal_loss", "integer-input", _dfl(x=np.ones((2, 3), dtype=np.int64)), TypeError,
            ("input",), grad=False),
    EdgeRow("distribution_focal_loss", "bad-reduction", _dfl(reduction="avg"), ValueError, ("reduction",)),
]
