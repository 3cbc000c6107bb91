"""Edge rows of the contrastive losses (NT-Xent)."""

from __future__ import annotations

import numpy as np
from _edge import EdgeRow
from _edge import builder

Z1 = np.array([[0.5, -1.0, 2.0], [0.0, 3.0, -0.25], [1.0, 1.0, 1.0]])
Z2 = np.array([[0.4, -0.8, 2.5], [0.1, 2.0, 0.0], [-1.0, 0.5, 1.0]])


_with = builder(Z1, Z2)  # x: z1, y: z2


ROWS = [
    EdgeRow("nt_xent_loss", "nan-z1", _with(x_at=((0, 1), np.nan)), "nan"),
    EdgeRow("nt_xent_loss", "nan-z1-none", _with(x_at=((2, 0), np.nan), reduction="none"), "nan"),
    EdgeRow("nt_xent_loss", "nan-z2-sum", _with(y_at=((1, 2), np.nan), reduction="sum"), "nan"),
    EdgeRow("nt_xent_loss", "inf-z1", _with(x_at=((0, 0), np.inf)), "nan"),
    EdgeRow("nt_xent_loss", "zero-view", _with(x=np.zeros((3, 3))), "finite"),
    EdgeRow("nt_xent_loss", "tiny-view", _with(x_at=((1,), 1e-30)), "finite"),
    EdgeRow("nt_xent_loss", "one-pair", _with(x=Z1[:1], y=Z2[:1]), "finite"),
    EdgeRow("nt_xent_loss", "empty-mean", _with(x=np.zeros((0, 3)), y=np.zeros((0, 3))), "finite"),
    EdgeRow("nt_xent_loss", "empty-sum", _with(x=np.zeros((0, 3)), y=np.zeros((0, 3)), reduction="sum"),
            "finite"),
    EdgeRow("nt_xent_loss", "empty-none", _with(x=np.zeros((0, 3)), y=np.zeros((0, 3)), reduction="none"),
            "finite"),
    EdgeRow("nt_xent_loss", "temperature-zero", _with(temperature=0.0), ValueError, ("temperature",)),
    EdgeRow("nt_xent_loss", "temperature-negative", _with(temperature=-0.5), ValueError, ("temperature",)),
    EdgeRow("nt_xent_loss", "temperature-nan", _with(temperature=float("nan")), ValueError, ("temperature",)),
    EdgeRow("nt_xent_loss", "temperature-inf", _with(temperature=float("inf")), ValueError, ("temperature",)),
    EdgeRow("nt_xent_loss", "temperature-below-dtype", _with(temperature=1e-320), ValueError, ("temperature",)),
    EdgeRow("nt_xent_loss", "temperature-small", _with(temperature=1e-30), "finite"),
    EdgeRow("nt_xent_loss", "temperature-huge", _with(temperature=1e300), "finite"),
    EdgeRow("nt_xent_loss", "z2-shape", _with(y=Z2[:2]), ValueError, ("z2",)),
    EdgeRow("nt_xent_loss", "z1-not-2d", _with(x=Z1[0], y=Z2[0]), ValueError, ("z1",)),
    EdgeRow("nt_xent_loss", "integer-z1", _with(x=np.ones((3, 3), dtype=np.int64)), TypeError, ("z1",), grad=False),
    EdgeRow("nt_xent_loss", "integer-z2", _with(y=np.ones((3, 3), dtype=np.int64)), TypeError, ("z2",)),
    EdgeRow("nt_xent_loss", "temperature-not-number", _with(temperature="0.5"), TypeError, ("temperature",)),
    EdgeRow("nt_xent_loss", "bad-reduction", _with(reduction="avg"), ValueError, ("reduction",)),
]
