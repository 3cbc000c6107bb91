"""Row builders shared by the edge tables of the second set (losses of two or three positional arrays)."""

from __future__ import annotations

from typing import Any

import numpy as np


def builder(*base: np.ndarray):
    """``with_(...)`` builds ``make()`` for an ``EdgeRow`` from copies of ``base``.

    Keyword changes: ``a0=..``/``a1=..``/``a2=..`` replace an array (or a Python number) whole;
    ``at0=(index, value)`` (and ``at1``, ``at2``) set one element; anything else is an option.
    """

    def with_(**changes: Any):
        def make():
            arrays: list[Any] = [b.copy() if isinstance(b, np.ndarray) else b for b in base]
            options = {}
            for key, value in changes.items():
                if key[:2] == "at" and key[2:].isdigit():
                    arrays[int(key[2:])][value[0]] = value[1]
                elif key[:1] == "a" and key[1:].isdigit():
                    arrays[int(key[1:])] = value.copy() if isinstance(value, np.ndarray) else value
                else:
                    options[key] = value
            return tuple(arrays), options

        return make

    return with_


#: the second set of losses written here: their values and gradients are checked against their references
#: (torch.nn.functional, optax) in ``tests/functional/test_{likelihood,embedding,multilabel,robust,poly}.py``
#: rather than in the two-array grids of ``tests/test_gradients.py`` and ``tests/test_properties.py``
SECOND_SET_LOSSES = (
    "poisson_nll_loss",
    "gaussian_nll_loss",
    "cosine_embedding_loss",
    "margin_ranking_loss",
    "triplet_margin_loss",
    "hinge_embedding_loss",
    "soft_margin_loss",
    "multilabel_soft_margin_loss",
    "multilabel_margin_loss",
    "log_cosh_loss",
    "poly1_cross_entropy",
)
