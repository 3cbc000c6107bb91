"""Edge rows of the likelihood losses (Poisson and Gaussian NLL)."""

from __future__ import annotations

import numpy as np
from _edge import EdgeRow
from functional._second_set_rows import builder

X = np.array([[0.5, -1.0, 2.0], [0.0, 1.5, -0.25]])
COUNTS = np.array([[0.0, 1.0, 3.0], [2.0, 5.0, 1.0]])
VAR = np.array([[0.5, 1.0, 2.0], [0.1, 0.0, 3.0]])
EMPTY = np.zeros((0, 3))

poisson = builder(X, COUNTS)
gaussian = builder(X, COUNTS, VAR)

ROWS = [
    EdgeRow("poisson_nll_loss", "nan-input", poisson(at0=((0, 1), np.nan)), "nan"),
    EdgeRow("poisson_nll_loss", "nan-input-none", poisson(at0=((0, 1), np.nan), reduction="none"), "nan"),
    EdgeRow("poisson_nll_loss", "nan-input-sum", poisson(at0=((1, 2), np.nan), reduction="sum"), "nan"),
    # an infinite log-rate with a positive count is inf - inf: NaN, PyTorch's number
    EdgeRow("poisson_nll_loss", "inf-log-rate", poisson(at0=((0, 2), np.inf)), "nan"),
    EdgeRow("poisson_nll_loss", "nan-target", poisson(at1=((1, 0), np.nan)), "nan"),
    EdgeRow("poisson_nll_loss", "nan-target-full", poisson(at1=((1, 0), np.nan), full=True), "nan"),
    EdgeRow("poisson_nll_loss", "negative-count-unchecked", poisson(at1=((0, 0), -2.0), full=True), "finite"),
    EdgeRow("poisson_nll_loss", "negative-rate", poisson(log_input=False), "nan"),
    # 0 log 0 with eps=0 at a zero rate and count: NaN, PyTorch's number
    EdgeRow("poisson_nll_loss", "zero-rate-zero-count-eps-zero",
            poisson(a0=np.abs(X), at1=((1, 0), 0.0), log_input=False, eps=0.0), "nan"),
    EdgeRow("poisson_nll_loss", "positive-rate-eps-zero", poisson(a0=np.abs(X) + 0.5, log_input=False, eps=0.0),
            "finite"),
    EdgeRow("poisson_nll_loss", "empty-mean", poisson(a0=EMPTY, a1=EMPTY), "finite"),
    EdgeRow("poisson_nll_loss", "empty-sum", poisson(a0=EMPTY, a1=EMPTY, reduction="sum"), "finite"),
    EdgeRow("poisson_nll_loss", "empty-none", poisson(a0=EMPTY, a1=EMPTY, reduction="none", full=True), "finite"),
    EdgeRow("poisson_nll_loss", "eps-nan", poisson(eps=float("nan")), ValueError, ("eps",)),
    EdgeRow("poisson_nll_loss", "eps-negative", poisson(eps=-1e-8), ValueError, ("eps",)),
    EdgeRow("poisson_nll_loss", "eps-inf", poisson(eps=float("inf")), ValueError, ("eps",)),
    EdgeRow("poisson_nll_loss", "eps-huge", poisson(a0=np.abs(X), log_input=False, eps=1e30), "finite"),
    EdgeRow("poisson_nll_loss", "log-input-not-bool", poisson(log_input=1), TypeError, ("log_input",)),
    EdgeRow("poisson_nll_loss", "full-not-bool", poisson(full="yes"), TypeError, ("full",)),
    EdgeRow("poisson_nll_loss", "uint8-counts", poisson(a1=COUNTS.astype(np.uint8), full=True), "finite"),
    EdgeRow("poisson_nll_loss", "int16-counts", poisson(a1=COUNTS.astype(np.int16)), "finite"),
    EdgeRow("poisson_nll_loss", "target-shape", poisson(a1=np.zeros((3, 2))), ValueError, ("target",)),
    EdgeRow("poisson_nll_loss", "integer-input", poisson(a0=np.ones((2, 3), dtype=np.int64)), TypeError,
            ("input",), grad=False),
    EdgeRow("poisson_nll_loss", "bad-reduction", poisson(reduction="avg"), ValueError, ("reduction",)),
    # -- Gaussian
    EdgeRow("gaussian_nll_loss", "nan-input", gaussian(at0=((0, 1), np.nan)), "nan"),
    EdgeRow("gaussian_nll_loss", "nan-input-none", gaussian(at0=((0, 1), np.nan), reduction="none"), "nan"),
    EdgeRow("gaussian_nll_loss", "inf-minus-inf", gaussian(at0=((0, 0), np.inf), at1=((0, 0), np.inf)), "nan"),
    EdgeRow("gaussian_nll_loss", "nan-target", gaussian(at1=((1, 2), np.nan), reduction="sum"), "nan"),
    EdgeRow("gaussian_nll_loss", "nan-var", gaussian(at2=((1, 2), np.nan)), "nan"),
    EdgeRow("gaussian_nll_loss", "negative-var", gaussian(at2=((1, 1), -0.5)), ValueError, ("var",)),
    EdgeRow("gaussian_nll_loss", "negative-number-var", gaussian(a2=-1.0), ValueError, ("var",)),
    EdgeRow("gaussian_nll_loss", "zero-var-clamped", gaussian(a2=np.zeros((2, 3))), "finite"),
    EdgeRow("gaussian_nll_loss", "number-var", gaussian(a2=0.25, full=True), "finite"),
    EdgeRow("gaussian_nll_loss", "per-sample-var", gaussian(a2=np.array([0.5, 2.0])), "finite"),
    EdgeRow("gaussian_nll_loss", "var-one-axis-of-one", gaussian(a2=np.array([[0.5, 2.0, 1.0]])), "finite"),
    EdgeRow("gaussian_nll_loss", "integer-var", gaussian(a2=np.array([[1, 2, 3], [1, 1, 1]])), "finite"),
    EdgeRow("gaussian_nll_loss", "var-shape", gaussian(a2=np.ones((2, 2))), ValueError, ("var",)),
    EdgeRow("gaussian_nll_loss", "var-two-axes-of-one", gaussian(a2=np.ones((1, 1))), ValueError, ("var",)),
    EdgeRow("gaussian_nll_loss", "var-bool", gaussian(a2=True), TypeError, ("var",)),
    EdgeRow("gaussian_nll_loss", "empty-mean", gaussian(a0=EMPTY, a1=EMPTY, a2=EMPTY), "finite"),
    EdgeRow("gaussian_nll_loss", "empty-sum", gaussian(a0=EMPTY, a1=EMPTY, a2=EMPTY, reduction="sum"), "finite"),
    EdgeRow("gaussian_nll_loss", "empty-none", gaussian(a0=EMPTY, a1=EMPTY, a2=np.zeros(0), reduction="none"),
            "finite"),
    EdgeRow("gaussian_nll_loss", "eps-nan", gaussian(eps=float("nan")), ValueError, ("eps",)),
    EdgeRow("gaussian_nll_loss", "eps-negative", gaussian(eps=-1.0), ValueError, ("eps",)),
    EdgeRow("gaussian_nll_loss", "eps-inf", gaussian(eps=float("inf")), ValueError, ("eps",)),
    EdgeRow("gaussian_nll_loss", "eps-zero-positive-var", gaussian(a2=VAR + 0.5, eps=0.0), "finite"),
    EdgeRow("gaussian_nll_loss", "eps-huge", gaussian(eps=1e30), "finite"),
    EdgeRow("gaussian_nll_loss", "full-not-bool", gaussian(full=0), TypeError, ("full",)),
    EdgeRow("gaussian_nll_loss", "uint8-target", gaussian(a1=COUNTS.astype(np.uint8)), "finite"),
    EdgeRow("gaussian_nll_loss", "target-shape", gaussian(a1=np.zeros(3)), ValueError, ("target",)),
    EdgeRow("gaussian_nll_loss", "integer-input", gaussian(a0=np.ones((2, 3), dtype=np.int64)), TypeError,
            ("input",), grad=False),
    EdgeRow("gaussian_nll_loss", "bad-reduction", gaussian(reduction="avg"), ValueError, ("reduction",)),
]
