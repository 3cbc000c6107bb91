"""Edge rows of the soft margin and multi-label losses."""

from __future__ import annotations

import numpy as np
from _edge import EdgeRow
from functional._second_set_rows import builder

X = np.array([[0.5, -1.0, 2.0, 0.0], [0.0, 1.5, -0.25, 3.0], [1.0, 1.0, 0.0, -2.0]])
SIGNS = np.array([[1.0, -1.0, 1.0, 1.0], [-1.0, -1.0, 1.0, -1.0], [1.0, 1.0, -1.0, 1.0]])
MULTI_HOT = (SIGNS > 0).astype(np.float64)
LISTS = np.array([[2, 0, -1, 3], [1, -1, -1, -1], [-1, 0, 1, 2]])
EMPTY = np.zeros((0, 4))

soft = builder(X, SIGNS)
multi = builder(X, MULTI_HOT)
lists = builder(X, LISTS)

ROWS = [
    EdgeRow("soft_margin_loss", "nan-input", soft(at0=((0, 1), np.nan)), "nan"),
    EdgeRow("soft_margin_loss", "nan-input-none", soft(at0=((0, 1), np.nan), reduction="none"), "nan"),
    EdgeRow("soft_margin_loss", "nan-input-sum", soft(at0=((2, 3), np.nan), reduction="sum"), "nan"),
    EdgeRow("soft_margin_loss", "inf-input-right-side", soft(at0=((0, 0), np.inf)), "finite"),
    EdgeRow("soft_margin_loss", "huge-margin-violation", soft(at0=((0, 0), -1e30)), "finite"),
    # around the scores PyTorch's kernel takes on the plan's path (|x| < 80 in float32, < 700 in float64)
    *[EdgeRow("soft_margin_loss", f"margin-violation-{int(-x)}", soft(at0=((0, 0), x), reduction=r), "finite")
      for x in (-79.0, -100.0, -750.0) for r in ("mean", "none")],
    EdgeRow("soft_margin_loss", "nan-label", soft(at1=((0, 0), np.nan)), ValueError, ("target",)),
    EdgeRow("soft_margin_loss", "label-zero", soft(at1=((0, 0), 0.0)), ValueError, ("target",)),
    EdgeRow("soft_margin_loss", "int8-labels", soft(a1=SIGNS.astype(np.int8)), "finite"),
    EdgeRow("soft_margin_loss", "uint8-labels-all-one", soft(a1=np.ones((3, 4), dtype=np.uint8)), "finite"),
    EdgeRow("soft_margin_loss", "bool-labels", soft(a1=SIGNS > 0), TypeError, ("target",)),
    *[EdgeRow("soft_margin_loss", f"empty-{r}", soft(a0=EMPTY, a1=EMPTY, reduction=r), "finite")
      for r in ("mean", "sum", "none")],
    EdgeRow("soft_margin_loss", "target-shape", soft(a1=np.ones(4)), ValueError, ("target",)),
    EdgeRow("soft_margin_loss", "integer-input", soft(a0=np.ones((3, 4), dtype=np.int64)), TypeError, ("input",),
            grad=False),
    EdgeRow("soft_margin_loss", "bad-reduction", soft(reduction="avg"), ValueError, ("reduction",)),
    # -- multi-label soft margin
    EdgeRow("multilabel_soft_margin_loss", "nan-input", multi(at0=((0, 1), np.nan)), "nan"),
    EdgeRow("multilabel_soft_margin_loss", "nan-input-none", multi(at0=((0, 1), np.nan), reduction="none"), "nan"),
    # an infinite logit on the label's side is 0 * inf in PyTorch's formula: NaN, its number (on the other
    # side inf, the limit)
    EdgeRow("multilabel_soft_margin_loss", "inf-input-label-side", multi(at0=((1, 3), -np.inf)), "nan"),
    EdgeRow("multilabel_soft_margin_loss", "large-logits", multi(a0=X * 1e30), "finite"),
    EdgeRow("multilabel_soft_margin_loss", "nan-label", multi(at1=((0, 0), np.nan)), ValueError, ("target",)),
    EdgeRow("multilabel_soft_margin_loss", "label-two", multi(at1=((0, 0), 2.0)), ValueError, ("target",)),
    EdgeRow("multilabel_soft_margin_loss", "label-negative", multi(at1=((2, 1), -1.0)), ValueError, ("target",)),
    EdgeRow("multilabel_soft_margin_loss", "soft-labels", multi(a1=np.full((3, 4), 0.25)), "finite"),
    EdgeRow("multilabel_soft_margin_loss", "bool-labels", multi(a1=SIGNS > 0), "finite"),
    EdgeRow("multilabel_soft_margin_loss", "uint8-labels", multi(a1=MULTI_HOT.astype(np.uint8)), "finite"),
    EdgeRow("multilabel_soft_margin_loss", "all-zero-weight", multi(weight=np.zeros(4)), "finite"),
    EdgeRow("multilabel_soft_margin_loss", "zero-sum-weight", multi(weight=np.array([1.0, -1.0, 0.5, -0.5])),
            "finite"),
    EdgeRow("multilabel_soft_margin_loss", "nan-weight", multi(weight=np.array([1.0, np.nan, 1.0, 1.0])), "nan"),
    EdgeRow("multilabel_soft_margin_loss", "per-element-weight", multi(weight=np.ones((3, 4))), "finite"),
    EdgeRow("multilabel_soft_margin_loss", "weight-too-big", multi(weight=np.ones((2, 3, 4))), ValueError,
            ("weight",)),
    EdgeRow("multilabel_soft_margin_loss", "weight-number", multi(weight=2.0), TypeError, ("weight",)),
    *[EdgeRow("multilabel_soft_margin_loss", f"empty-{r}", multi(a0=EMPTY, a1=EMPTY, reduction=r), "finite")
      for r in ("mean", "sum", "none")],
    EdgeRow("multilabel_soft_margin_loss", "no-classes", multi(a0=np.zeros((3, 0)), a1=np.zeros((3, 0))),
            ValueError, ("class",)),
    EdgeRow("multilabel_soft_margin_loss", "zero-d", multi(a0=np.array(1.0), a1=np.array(1.0)), ValueError,
            ("class axis",)),
    EdgeRow("multilabel_soft_margin_loss", "target-shape", multi(a1=np.ones(4)), ValueError, ("target",)),
    EdgeRow("multilabel_soft_margin_loss", "integer-input", multi(a0=np.ones((3, 4), dtype=np.int64)), TypeError,
            ("input",), grad=False),
    EdgeRow("multilabel_soft_margin_loss", "bad-reduction", multi(reduction="avg"), ValueError, ("reduction",)),
    # -- multi-label margin
    EdgeRow("multilabel_margin_loss", "nan-input", lists(at0=((0, 1), np.nan)), "nan"),
    EdgeRow("multilabel_margin_loss", "nan-input-none", lists(at0=((0, 1), np.nan), reduction="none"), "nan"),
    EdgeRow("multilabel_margin_loss", "nan-input-sum", lists(at0=((2, 3), np.nan), reduction="sum"), "nan"),
    EdgeRow("multilabel_margin_loss", "inf-target-class-score", lists(at0=((0, 2), np.inf)), "finite"),
    EdgeRow("multilabel_margin_loss", "no-labels", lists(a1=np.full((3, 4), -1)), "finite"),
    EdgeRow("multilabel_margin_loss", "all-labels", lists(a1=np.array([[0, 1, 2, 3]] * 3)), "finite"),
    EdgeRow("multilabel_margin_loss", "repeated-labels", lists(a1=np.array([[1, 1, -1, 0]] * 3)), "finite"),
    EdgeRow("multilabel_margin_loss", "index-too-large", lists(at1=((1, 0), 4)), ValueError, ("target",)),
    EdgeRow("multilabel_margin_loss", "index-too-large-after-end", lists(at1=((1, 3), 9)), ValueError, ("target",)),
    EdgeRow("multilabel_margin_loss", "index-below-minus-one", lists(at1=((2, 0), -2)), ValueError, ("target",)),
    EdgeRow("multilabel_margin_loss", "float-target", lists(a1=LISTS.astype(np.float64)), TypeError, ("target",)),
    EdgeRow("multilabel_margin_loss", "bool-target", lists(a1=LISTS > 0), TypeError, ("target",)),
    *[EdgeRow("multilabel_margin_loss", f"{dtype.__name__}-target", lists(a1=LISTS.astype(dtype)), "finite")
      for dtype in (np.int8, np.int16, np.int32)],
    EdgeRow("multilabel_margin_loss", "uint8-target", lists(a1=np.array([[2, 0, 1, 3]] * 3, dtype=np.uint8)),
            "finite"),
    *[EdgeRow("multilabel_margin_loss", f"empty-{r}",
              lists(a0=EMPTY, a1=np.zeros((0, 4), dtype=np.int64), reduction=r), "finite")
      for r in ("mean", "sum", "none")],
    EdgeRow("multilabel_margin_loss", "single-sample", lists(a0=X[0], a1=LISTS[0], reduction="none"), "finite"),
    EdgeRow("multilabel_margin_loss", "no-classes", lists(a0=np.zeros((3, 0)), a1=np.zeros((3, 0), dtype=np.int64)),
            ValueError, ("class",)),
    EdgeRow("multilabel_margin_loss", "target-shape", lists(a1=LISTS[:, :2]), ValueError, ("target",)),
    EdgeRow("multilabel_margin_loss", "integer-input", lists(a0=np.ones((3, 4), dtype=np.int64)), TypeError,
            ("input",), grad=False),
    EdgeRow("multilabel_margin_loss", "bad-reduction", lists(reduction="avg"), ValueError, ("reduction",)),
]
