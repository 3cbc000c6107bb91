"""Edge rows of the embedding and ranking losses (cosine embedding, margin ranking, triplet margin, hinge
embedding)."""

from __future__ import annotations

import numpy as np
from _edge import EdgeRow
from functional._second_set_rows import builder

A = np.array([[0.5, -1.0, 2.0], [0.0, 1.5, -0.25], [1.0, 1.0, 0.0]])
B = np.array([[0.0, -1.5, 2.0], [1.0, 2.0, 0.25], [-1.0, 0.5, 0.5]])
N = np.array([[1.0, 0.0, 0.0], [0.5, 0.5, 0.5], [2.0, -1.0, 0.0]])
PAIR_LABELS = np.array([1.0, -1.0, -1.0])
LABELS = np.array([[1.0, -1.0, 1.0], [-1.0, -1.0, 1.0], [1.0, 1.0, -1.0]])
EMPTY = np.zeros((0, 3))

cosine = builder(A, B, PAIR_LABELS)
ranking = builder(A, B, LABELS)
triplet = builder(A, B, N)
hinge = builder(np.abs(A), LABELS)
# 32768 elements: PyTorch's margin ranking runs the family's closed form in one fused node from this size on
_rng = np.random.default_rng(0)
ranking_large = builder(_rng.normal(size=(256, 128)), _rng.normal(size=(256, 128)),
                        _rng.choice([-1.0, 1.0], size=(256, 128)))


def _common(name, with_, label_at, empty, labels_shape):
    """Rows every loss of {1, -1} labels shares."""
    return [
        EdgeRow(name, "nan-input", with_(at0=((0, 1), np.nan)), "nan"),
        EdgeRow(name, "nan-input-none", with_(at0=((0, 1), np.nan), reduction="none"), "nan"),
        EdgeRow(name, "nan-input-sum", with_(at0=((2, 2), np.nan), reduction="sum"), "nan"),
        EdgeRow(name, "nan-label", with_(**{label_at: (0, np.nan)}), ValueError, ("target",)),
        EdgeRow(name, "label-zero", with_(**{label_at: (0, 0.0)}), ValueError, ("target",)),
        EdgeRow(name, "label-two", with_(**{label_at: (0, 2.0)}), ValueError, ("target",)),
        EdgeRow(name, "int8-labels", with_(**{label_at[2:].join(("a", "")): LABELS_OF[name].astype(np.int8)}),
                "finite"),
        EdgeRow(name, "uint8-labels-all-one",
                with_(**{label_at[2:].join(("a", "")): np.ones(labels_shape, dtype=np.uint8)}), "finite"),
        EdgeRow(name, "bool-labels", with_(**{label_at[2:].join(("a", "")): np.ones(labels_shape, dtype=bool)}),
                TypeError, ("target",)),
        *[EdgeRow(name, f"empty-{r}", empty(reduction=r), "finite") for r in ("mean", "sum", "none")],
        EdgeRow(name, "margin-nan", with_(margin=float("nan")), ValueError, ("margin",)),
        EdgeRow(name, "margin-inf", with_(margin=float("inf")), ValueError, ("margin",)),
        EdgeRow(name, "integer-input", with_(a0=np.ones((3, 3), dtype=np.int64)), TypeError, ("input",), grad=False),
        EdgeRow(name, "bad-reduction", with_(reduction="avg"), ValueError, ("reduction",)),
    ]


LABELS_OF = {"cosine_embedding_loss": PAIR_LABELS, "margin_ranking_loss": LABELS, "hinge_embedding_loss": LABELS}

ROWS = [
    *_common("cosine_embedding_loss", cosine, "at2", lambda **o: cosine(a0=EMPTY, a1=EMPTY, a2=np.zeros(0), **o),
             (3,)),
    EdgeRow("cosine_embedding_loss", "nan-input2", cosine(at1=((1, 1), np.nan)), "nan"),
    EdgeRow("cosine_embedding_loss", "inf-input", cosine(at0=((0, 1), np.inf)), "nan"),
    EdgeRow("cosine_embedding_loss", "zero-vectors", cosine(a0=np.zeros((3, 3))), "finite"),
    EdgeRow("cosine_embedding_loss", "zero-width-embeddings",
            cosine(a0=np.zeros((3, 0)), a1=np.zeros((3, 0))), "finite"),
    EdgeRow("cosine_embedding_loss", "margin-minus-one", cosine(margin=-1.0), "finite"),
    EdgeRow("cosine_embedding_loss", "margin-one", cosine(margin=1.0), "finite"),
    EdgeRow("cosine_embedding_loss", "margin-above-one", cosine(margin=1.5), ValueError, ("margin",)),
    EdgeRow("cosine_embedding_loss", "input2-shape", cosine(a1=np.zeros((3, 2))), ValueError, ("input2",)),
    EdgeRow("cosine_embedding_loss", "target-shape", cosine(a2=np.ones((3, 3))), ValueError, ("target",)),
    EdgeRow("cosine_embedding_loss", "zero-d-input", cosine(a0=np.array(1.0), a1=np.array(1.0), a2=np.array(1.0)),
            ValueError, ("input1",)),
    *_common("margin_ranking_loss", ranking, "at2", lambda **o: ranking(a0=EMPTY, a1=EMPTY, a2=EMPTY, **o), (3, 3)),
    EdgeRow("margin_ranking_loss", "nan-input2", ranking(at1=((1, 1), np.nan)), "nan"),
    EdgeRow("margin_ranking_loss", "inf-input-ranked-above", ranking(at0=((0, 0), np.inf)), "finite"),
    EdgeRow("margin_ranking_loss", "margin-negative", ranking(margin=-3.0), "finite"),
    EdgeRow("margin_ranking_loss", "margin-huge", ranking(margin=1e30), "finite"),
    EdgeRow("margin_ranking_loss", "large-nan-input", ranking_large(at0=((3, 5), np.nan)), "nan"),
    EdgeRow("margin_ranking_loss", "large-nan-input-none", ranking_large(at0=((3, 5), np.nan), reduction="none"),
            "nan"),
    EdgeRow("margin_ranking_loss", "large-inf-input-ranked-above",
            ranking_large(at0=((0, 0), np.inf), at2=((0, 0), 1.0), reduction="sum"), "finite"),
    EdgeRow("margin_ranking_loss", "large-label-zero", ranking_large(at2=((7, 7), 0.0)), ValueError, ("target",)),
    EdgeRow("margin_ranking_loss", "large-nan-label", ranking_large(at2=((7, 7), np.nan)), ValueError, ("target",)),
    EdgeRow("margin_ranking_loss", "input2-shape", ranking(a1=np.zeros((3, 1))), ValueError, ("input2",)),
    EdgeRow("margin_ranking_loss", "target-shape", ranking(a2=np.ones(3)), ValueError, ("target",)),
    *_common("hinge_embedding_loss", hinge, "at1", lambda **o: hinge(a0=EMPTY, a1=EMPTY, **o), (3, 3)),
    EdgeRow("hinge_embedding_loss", "inf-distance-dissimilar", hinge(a0=np.full((3, 3), np.inf),
                                                                     a1=-np.ones((3, 3))), "finite"),
    EdgeRow("hinge_embedding_loss", "margin-negative", hinge(margin=-1.0), "finite"),
    EdgeRow("hinge_embedding_loss", "margin-zero", hinge(margin=0.0), "finite"),
    EdgeRow("hinge_embedding_loss", "target-shape", hinge(a1=np.ones(3)), ValueError, ("target",)),
    # -- triplet
    EdgeRow("triplet_margin_loss", "nan-anchor", triplet(at0=((0, 1), np.nan)), "nan"),
    EdgeRow("triplet_margin_loss", "nan-anchor-none", triplet(at0=((0, 1), np.nan), reduction="none"), "nan"),
    EdgeRow("triplet_margin_loss", "nan-positive", triplet(at1=((1, 1), np.nan), reduction="sum"), "nan"),
    EdgeRow("triplet_margin_loss", "nan-negative", triplet(at2=((2, 0), np.nan)), "nan"),
    EdgeRow("triplet_margin_loss", "nan-negative-swap", triplet(at2=((2, 0), np.nan), swap=True), "nan"),
    EdgeRow("triplet_margin_loss", "inf-anchor", triplet(at0=((0, 1), np.inf)), "nan"),
    *[EdgeRow("triplet_margin_loss", f"empty-{r}", triplet(a0=EMPTY, a1=EMPTY, a2=EMPTY, reduction=r), "finite")
      for r in ("mean", "sum", "none")],
    EdgeRow("triplet_margin_loss", "zero-width-embeddings",
            triplet(a0=np.zeros((3, 0)), a1=np.zeros((3, 0)), a2=np.zeros((3, 0))), "finite"),
    EdgeRow("triplet_margin_loss", "zero-differences-eps-zero", triplet(a1=A, a2=A, eps=0.0), "finite"),
    EdgeRow("triplet_margin_loss", "zero-differences-p-half", triplet(a1=A, a2=A, eps=0.0, p=0.5), "finite"),
    EdgeRow("triplet_margin_loss", "swap-tie", triplet(a1=np.zeros((3, 3)), a2=np.zeros((3, 3)), swap=True),
            "finite"),
    EdgeRow("triplet_margin_loss", "margin-zero", triplet(margin=0.0), ValueError, ("margin",)),
    EdgeRow("triplet_margin_loss", "margin-inf", triplet(margin=float("inf")), ValueError, ("margin",)),
    EdgeRow("triplet_margin_loss", "margin-nan", triplet(margin=float("nan")), ValueError, ("margin",)),
    EdgeRow("triplet_margin_loss", "margin-tiny", triplet(margin=1e-300), "finite"),
    EdgeRow("triplet_margin_loss", "p-zero", triplet(p=0.0), ValueError, ("p",)),
    EdgeRow("triplet_margin_loss", "p-inf", triplet(p=float("inf")), "finite"),
    EdgeRow("triplet_margin_loss", "p-inf-ties", triplet(a0=np.zeros((3, 3)), a1=np.ones((3, 3)), p=float("inf")),
            "finite"),
    EdgeRow("triplet_margin_loss", "p-nan", triplet(p=float("nan")), ValueError, ("p",)),
    EdgeRow("triplet_margin_loss", "p-one", triplet(p=1.0), "finite"),
    EdgeRow("triplet_margin_loss", "p-large", triplet(p=40.0), "finite"),
    EdgeRow("triplet_margin_loss", "eps-nan", triplet(eps=float("nan")), ValueError, ("eps",)),
    EdgeRow("triplet_margin_loss", "eps-negative", triplet(eps=-0.5), "finite"),
    EdgeRow("triplet_margin_loss", "swap-not-bool", triplet(swap=1), TypeError, ("swap",)),
    EdgeRow("triplet_margin_loss", "positive-shape", triplet(a1=np.zeros((3, 2))), ValueError, ("positive",)),
    EdgeRow("triplet_margin_loss", "negative-shape", triplet(a2=np.zeros((2, 3))), ValueError, ("negative",)),
    EdgeRow("triplet_margin_loss", "zero-d", triplet(a0=np.array(1.0), a1=np.array(1.0), a2=np.array(1.0)),
            ValueError, ("anchor",)),
    EdgeRow("triplet_margin_loss", "integer-anchor", triplet(a0=np.ones((3, 3), dtype=np.int64)), TypeError,
            ("anchor",), grad=False),
    EdgeRow("triplet_margin_loss", "bad-reduction", triplet(reduction="avg"), ValueError, ("reduction",)),
]
