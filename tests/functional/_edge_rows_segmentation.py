"""Edge rows of the segmentation overlap losses (Dice, Jaccard, Tversky) in their three modes."""

from __future__ import annotations

import numpy as np
from _edge import EdgeRow
from _edge import builder

# multiclass: (N=2, C=3, 4) logits, (2, 4) class indices (class 2 absent from the second image)
X = np.array([[[0.5, -1.0, 2.0, 0.0], [1.0, 0.5, -0.5, 0.3], [0.0, 2.0, 1.0, -1.0]],
              [[-0.3, 0.2, 0.1, 1.5], [0.7, -2.0, 0.4, 0.0], [1.1, 0.0, -0.6, 0.9]]])
Y = np.array([[0, 1, 2, 0], [1, 0, 0, 1]])
# multilabel: masks of X's shape
M = (np.arange(24).reshape(2, 3, 4) % 3 == 0).astype(np.float64)
LOSSES = ("dice_loss", "jaccard_loss", "tversky_loss")


_with = builder(X, Y)


def _ignored_first_pixel(value):
    y = Y.copy()
    y[0, 0] = value
    return y


ROWS = []
for name in LOSSES:
    ROWS += [
        EdgeRow(name, "nan-input", _with(x_at=((0, 1, 1), np.nan)), "nan"),
        EdgeRow(name, "nan-input-none", _with(x_at=((1, 2, 3), np.nan), reduction="none"), "nan"),
        EdgeRow(name, "nan-input-sum", _with(x_at=((1, 0, 0), np.nan), reduction="sum"), "nan"),
        EdgeRow(name, "nan-input-at-ignored-pixel", _with(x_at=((0, 1, 0), np.nan), y=_ignored_first_pixel(-1),
                                                          ignore_index=-1), "finite"),
        EdgeRow(name, "inf-logit-multiclass", _with(x_at=((0, 1, 1), np.inf)), "nan"),
        EdgeRow(name, "inf-logit-multilabel", _with(x_at=((0, 0, 0), np.inf), y=M, mode="multilabel"), "finite"),
        EdgeRow(name, "index-out-of-range", _with(y_at=((0, 0), 3)), ValueError, ("target",)),
        EdgeRow(name, "negative-index-not-ignored", _with(y_at=((0, 0), -1)), ValueError, ("target",)),
        EdgeRow(name, "float-target-multiclass", _with(y=Y.astype(np.float64)), TypeError, ("target",)),
        EdgeRow(name, "multilabel-target-above-one", _with(y=M * 2.0, mode="multilabel"), ValueError, ("target",)),
        EdgeRow(name, "multilabel-nan-target", _with(y=np.where(M > 0, np.nan, 0.0), mode="multilabel"),
                ValueError, ("target",)),
        EdgeRow(name, "multilabel-ignored", _with(y=np.where(np.arange(24).reshape(2, 3, 4) % 5 == 0, -1.0, M),
                                                  mode="multilabel", ignore_index=-1), "finite"),
        EdgeRow(name, "binary-squeezed-target", _with(x=X[:, :1], y=(Y > 0).astype(np.float64), mode="binary"),
                "finite"),
        EdgeRow(name, "binary-two-classes", _with(x=X[:, :2], y=(Y > 0).astype(np.float64), mode="binary"),
                ValueError, ("input",)),
        EdgeRow(name, "binary-bool-target", _with(x=X[:, :1], y=Y[:, None] > 0, mode="binary"), "finite"),
        EdgeRow(name, "probabilities-out-of-range", _with(x=np.abs(X), from_logits=False), ValueError, ("input",)),
        EdgeRow(name, "probabilities", _with(x=1 / (1 + np.exp(-X)), from_logits=False, mode="multilabel", y=M),
                "finite"),
        EdgeRow(name, "empty-mean", _with(x=np.zeros((0, 3, 4)), y=np.zeros((0, 4), dtype=np.int64)), "finite"),
        EdgeRow(name, "empty-sum", _with(x=np.zeros((0, 3, 4)), y=np.zeros((0, 4), dtype=np.int64), reduction="sum"),
                "finite"),
        EdgeRow(name, "empty-none", _with(x=np.zeros((0, 3, 4)), y=np.zeros((0, 4), dtype=np.int64),
                                          reduction="none"), "finite"),
        EdgeRow(name, "all-ignored", _with(y=np.full((2, 4), 255), ignore_index=255), "finite"),
        EdgeRow(name, "uint8-target-ignore-255", _with(y=_ignored_first_pixel(255).astype(np.uint8),
                                                       ignore_index=255), "finite"),
        EdgeRow(name, "uint8-target-ignore-minus-100", _with(y=Y.astype(np.uint8), ignore_index=-100), "finite"),
        EdgeRow(name, "int8-target", _with(y=Y.astype(np.int8)), "finite"),
        EdgeRow(name, "int16-target", _with(y=Y.astype(np.int16)), "finite"),
        EdgeRow(name, "int32-target", _with(y=Y.astype(np.int32)), "finite"),
        EdgeRow(name, "eps-zero", _with(eps=0.0), ValueError, ("eps",)),
        EdgeRow(name, "eps-below-normal", _with(eps=1e-320), ValueError, ("eps",)),
        EdgeRow(name, "eps-inf", _with(eps=float("inf")), ValueError, ("eps",)),
        EdgeRow(name, "eps-huge", _with(eps=1e30), "finite"),
        EdgeRow(name, "smooth-huge", _with(smooth=1e30), "finite"),
        EdgeRow(name, "smooth-nan", _with(smooth=float("nan")), ValueError, ("smooth",)),
        EdgeRow(name, "smooth-negative", _with(smooth=-1.0), ValueError, ("smooth",)),
        EdgeRow(name, "bad-mode", _with(mode="multi"), ValueError, ("mode",)),
        EdgeRow(name, "axis-out-of-range", _with(axis=3), ValueError, ("axis",)),
        EdgeRow(name, "target-shape", _with(y=np.zeros((2, 3), dtype=np.int64)), ValueError, ("target",)),
        EdgeRow(name, "multilabel-target-shape", _with(y=M[:, :2], mode="multilabel"), ValueError, ("target",)),
        EdgeRow(name, "integer-input", _with(x=np.ones((2, 3, 4), dtype=np.int64)), TypeError, ("input",),
                grad=False),
        EdgeRow(name, "from-logits-not-bool", _with(from_logits=1), TypeError, ("from_logits",)),
        EdgeRow(name, "bad-reduction", _with(reduction="avg"), ValueError, ("reduction",)),
    ]
ROWS += [
    EdgeRow("tversky_loss", "alpha-nan", _with(alpha=float("nan")), ValueError, ("alpha",)),
    EdgeRow("tversky_loss", "beta-negative", _with(beta=-0.5), ValueError, ("beta",)),
    EdgeRow("tversky_loss", "alpha-huge", _with(alpha=1e30), "finite"),
    EdgeRow("tversky_loss", "gamma-zero", _with(gamma=0.0), ValueError, ("gamma",)),
    EdgeRow("tversky_loss", "gamma-inf", _with(gamma=float("inf")), ValueError, ("gamma",)),
    EdgeRow("tversky_loss", "gamma-below-one", _with(gamma=0.5), "finite"),
    EdgeRow("tversky_loss", "gamma-below-one-none", _with(gamma=0.5, reduction="none"), "finite"),
    EdgeRow("tversky_loss", "gamma-two-sum", _with(gamma=2.0, reduction="sum"), "finite"),
]
# Lovasz: the same inputs, its own options (per_image, no smooth/eps)
LOVASZ = "lovasz_loss"
ROWS += [
    EdgeRow(LOVASZ, "nan-input", _with(x_at=((0, 1, 1), np.nan)), "nan"),
    EdgeRow(LOVASZ, "nan-input-none", _with(x_at=((1, 2, 3), np.nan), reduction="none"), "nan"),
    EdgeRow(LOVASZ, "nan-input-per-image", _with(x_at=((1, 0, 0), np.nan), per_image=True, reduction="sum"), "nan"),
    EdgeRow(LOVASZ, "nan-input-hinge", _with(x_at=((0, 0, 0), np.nan), y=M, mode="multilabel"), "nan"),
    EdgeRow(LOVASZ, "nan-input-at-ignored-pixel", _with(x_at=((0, 1, 0), np.nan), y=_ignored_first_pixel(-1),
                                                        ignore_index=-1), "finite"),
    EdgeRow(LOVASZ, "inf-logit-hinge", _with(x_at=((0, 0, 0), np.inf), y=M, mode="multilabel"), "finite"),
    EdgeRow(LOVASZ, "index-out-of-range", _with(y_at=((0, 0), 3)), ValueError, ("target",)),
    EdgeRow(LOVASZ, "negative-index-not-ignored", _with(y_at=((0, 0), -1)), ValueError, ("target",)),
    EdgeRow(LOVASZ, "float-target-multiclass", _with(y=Y.astype(np.float64)), TypeError, ("target",)),
    EdgeRow(LOVASZ, "multilabel-target-above-one", _with(y=M * 2.0, mode="multilabel"), ValueError, ("target",)),
    EdgeRow(LOVASZ, "multilabel-ignored", _with(y=np.where(np.arange(24).reshape(2, 3, 4) % 5 == 0, -1.0, M),
                                                mode="multilabel", ignore_index=-1, per_image=True), "finite"),
    EdgeRow(LOVASZ, "binary-squeezed-target", _with(x=X[:, :1], y=(Y > 0).astype(np.float64), mode="binary"),
            "finite"),
    EdgeRow(LOVASZ, "binary-from-probabilities", _with(x=X[:, :1], y=(Y > 0).astype(np.float64), mode="binary",
                                                       from_logits=False), ValueError, ("from_logits",)),
    EdgeRow(LOVASZ, "probabilities-out-of-range", _with(x=np.abs(X), from_logits=False), ValueError, ("input",)),
    EdgeRow(LOVASZ, "empty-mean", _with(x=np.zeros((0, 3, 4)), y=np.zeros((0, 4), dtype=np.int64)), "finite"),
    EdgeRow(LOVASZ, "empty-sum-per-image", _with(x=np.zeros((0, 3, 4)), y=np.zeros((0, 4), dtype=np.int64),
                                                 per_image=True, reduction="sum"), "finite"),
    EdgeRow(LOVASZ, "empty-none", _with(x=np.zeros((0, 3, 4)), y=np.zeros((0, 4), dtype=np.int64),
                                        reduction="none"), "finite"),
    EdgeRow(LOVASZ, "all-ignored", _with(y=np.full((2, 4), 255), ignore_index=255), "finite"),
    EdgeRow(LOVASZ, "all-ignored-per-image", _with(y=np.full((2, 4), 255), ignore_index=255, per_image=True),
            "finite"),
    EdgeRow(LOVASZ, "uint8-target-ignore-255", _with(y=_ignored_first_pixel(255).astype(np.uint8),
                                                     ignore_index=255), "finite"),
    EdgeRow(LOVASZ, "int8-target", _with(y=Y.astype(np.int8)), "finite"),
    EdgeRow(LOVASZ, "int16-target", _with(y=Y.astype(np.int16)), "finite"),
    EdgeRow(LOVASZ, "int32-target", _with(y=Y.astype(np.int32), per_image=True), "finite"),
    EdgeRow(LOVASZ, "per-image-not-bool", _with(per_image=1), TypeError, ("per_image",)),
    EdgeRow(LOVASZ, "no-batch-axis", _with(x=X[0, :, 0], y=Y[0, :1]), ValueError, ("target", "input")),
    EdgeRow(LOVASZ, "bad-mode", _with(mode="multi"), ValueError, ("mode",)),
    EdgeRow(LOVASZ, "axis-out-of-range", _with(axis=3), ValueError, ("axis",)),
    EdgeRow(LOVASZ, "target-shape", _with(y=np.zeros((2, 3), dtype=np.int64)), ValueError, ("target",)),
    EdgeRow(LOVASZ, "integer-input", _with(x=np.ones((2, 3, 4), dtype=np.int64)), TypeError, ("input",),
            grad=False),
    EdgeRow(LOVASZ, "bad-reduction", _with(reduction="avg"), ValueError, ("reduction",)),
]
