r"""Plots of each loss against its input, next to its gradient (``python -m polyloss plot``).

:func:`curve_data` computes what is drawn (NumPy, float64): the loss of one
element (or of one small fixed batch, for losses that reduce over the batch) as
a function of one scalar x along a 1-D slice of its inputs, the rest held fixed, and
its derivative, from :func:`polyloss.value_and_grad` (closed form) where a
gradient is registered, else from central finite differences.
:func:`plot_losses` draws one figure (loss left, gradient right) and
:func:`plot_gallery` several such rows. Matplotlib is imported only when a
figure is drawn, with the non-interactive Agg canvas (no display needed, no
global pyplot state).

A loss is named by its registered name, optionally with options:
``"huber_loss:delta=2"``, ``"sigmoid_focal_loss:gamma=0.5,alpha=-1"``. Besides
the loss's own keyword options, a spec may set the *plot options* of its slice
(what the other inputs are held at; defaults in brackets).
What varies along the x axis depends on the loss:

- regression losses (``mse_loss``, ``l1_loss``, ``smooth_l1_loss``,
  ``huber_loss``, ``log_cosh_loss``): the residual :math:`x - y` (target 0);
  ``gaussian_nll_loss`` too, with the variance ``var`` [1];
- ``poisson_nll_loss``: the log-rate, for the count ``count`` [2] (``log_input=True``);
- ``binary_cross_entropy_with_logits``, ``sigmoid_focal_loss``: the logit of
  an element whose target is 1;
- ``hinge_loss``, ``squared_hinge_loss``, ``soft_margin_loss``: the score of an
  element whose target is +1;
- ``cross_entropy``, ``poly1_cross_entropy``, ``softmax_focal_loss``,
  ``multi_margin_loss``: the logit of the true class, the other
  ``num_classes - 1`` logits being 0 (``num_classes`` [3]);
- ``multilabel_soft_margin_loss``, ``multilabel_margin_loss``: the score of a
  true label, the other ``num_classes - 1`` labels (not in the target) at 0;
- ``binary_cross_entropy``: the predicted probability of an element whose target is 1;
- ``margin_ranking_loss``: :math:`x_1 - x_2` for the target ``target`` [1];
- ``hinge_embedding_loss``: the distance :math:`x \ge 0` for the target ``target`` [-1];
- ``triplet_margin_loss``: :math:`d(a, p) - d(a, n)`, the anchor moving on the
  segment from the positive to the negative (4 apart);
- ``cosine_embedding_loss`` (``target`` [1]) and ``nt_xent_loss``: the angle
  between the two vectors of a pair (NT-Xent: the loss of the first view in a
  batch of two pairs, the other pair orthogonal to it);
- ``varifocal_loss``, ``quality_focal_loss``: the logit of an element whose
  IoU-aware target is ``iou`` [1] (quality focal: one class, the label's, with score ``iou``);
- ``distribution_focal_loss``: the centre of the predicted distribution over
  bins 0..4 (logits :math:`-(k - x)^2 / (2 \cdot 0.75^2)`), for the label ``label`` [2.5];
- ``dice_loss``, ``jaccard_loss``, ``tversky_loss``, ``lovasz_loss``: binary
  mode, the logit of one foreground pixel of a six-pixel image whose other five
  logits are fixed (one loss call per point);
- ``ctc_loss``: the log-probability :math:`x < 0` of the label at each of
  ``steps`` [4] frames (target: that one label; the rest of each frame on the blank).

The derivative along x is the chain rule through the slice:
``sum(grad * d input / d x)`` with ``grad`` from :func:`polyloss.value_and_grad`
(by the loss's first array).
"""

from __future__ import annotations

import argparse
import ast
import math
import os
from collections.abc import Callable
from collections.abc import Mapping
from collections.abc import Sequence
from dataclasses import dataclass
from dataclasses import field
from typing import Any

import numpy as np

from polyloss._tools._args import finite_float
from polyloss._tools._args import int_at_least
from polyloss._tools._args import output_file

__all__ = [
    "GALLERY",
    "Curve",
    "PLOTTABLE",
    "add_arguments",
    "cmd_plot",
    "curve_data",
    "main_plot",
    "parse_spec",
    "plot_gallery",
    "plot_losses",
]

EXIT_OK = 0
EXIT_USAGE = 2
EXIT_MISSING_DEPENDENCY = 3
_PROG = "python -m polyloss plot"

_Build = Callable[[np.ndarray, Mapping[str, Any]], "_Slice"]

#: the documentation's gallery (and ``docs/images/losses.png``): (file stem, title, loss specs)
GALLERY: list[tuple[str, str, list[str]]] = [
    ("regression", "MSE, L1, smooth L1, Huber", ["mse_loss", "l1_loss", "smooth_l1_loss:beta=2", "huber_loss:delta=2"]),
    ("classification", "Logistic and softmax cross-entropy", ["binary_cross_entropy_with_logits", "cross_entropy"]),
    ("margin", "Hinge and squared hinge", ["hinge_loss", "squared_hinge_loss"]),
    ("focal", "Sigmoid focal (alpha off)", [f"sigmoid_focal_loss:gamma={g},alpha=-1" for g in (0, 0.5, 1, 2, 5)]),
    (
        "robust",
        "Log-cosh, Huber, Gaussian NLL",
        ["huber_loss", "log_cosh_loss", *(f"gaussian_nll_loss:var={v}" for v in (0.5, 1, 2))],
    ),
    ("poisson", "Poisson NLL", [f"poisson_nll_loss:count={k}" for k in (0, 1, 4)]),
    ("poly1", "Poly-1 cross-entropy", ["cross_entropy", *(f"poly1_cross_entropy:epsilon={e}" for e in (-1, 1, 2, 4))]),
    (
        "soft_margin",
        "Soft margin and multi-label margins",
        ["hinge_loss", "soft_margin_loss", "multilabel_soft_margin_loss", "multilabel_margin_loss"],
    ),
    ("ranking", "Margin ranking, hinge embedding, triplet", ["margin_ranking_loss", "hinge_embedding_loss",
                                                              "triplet_margin_loss"]),
    (
        "cosine",
        "Cosine embedding and NT-Xent",
        [
            "cosine_embedding_loss:target=1",
            "cosine_embedding_loss:target=-1",
            "cosine_embedding_loss:margin=0.5,target=-1",
            "nt_xent_loss:temperature=0.5",
            "nt_xent_loss:temperature=1",
        ],
    ),
    (
        "quality",
        "Varifocal and quality focal",
        [f"{name}:iou={q}" for name in ("varifocal_loss", "quality_focal_loss") for q in (1, 0.5, 0)],
    ),
    ("dfl", "Distribution focal loss", [f"distribution_focal_loss:label={y}" for y in (1, 2.5, 3.2)]),
    (
        "segmentation",
        "Dice, Jaccard, Tversky, Lovasz (binary)",
        ["dice_loss", "jaccard_loss", "tversky_loss:alpha=0.3,beta=0.7", "lovasz_loss"],
    ),
    ("ctc", "CTC", [f"ctc_loss:steps={t}" for t in (1, 3, 10)]),
]


@dataclass(frozen=True)
class _Slice:
    """One loss call along the slice: ``loss(*arrays, **options, reduction="none")``.

    ``tangent`` is :math:`\\partial\\,\\mathrm{arrays}[0] / \\partial x` (``arrays[0]``'s
    shape), so that the derivative along x is ``sum(grad * tangent)`` by the chain rule.
    With ``axis`` an int, the points lie along that axis of ``arrays[0]`` and the
    ``"none"`` output holds one loss per point; with ``axis=None`` the call is one point,
    whose loss is ``sum(cotangent * out)`` over the ``"none"`` output (``cotangent``
    None: the plain sum).
    """

    arrays: tuple[np.ndarray, ...]
    tangent: np.ndarray
    options: Mapping[str, Any] = field(default_factory=dict)
    axis: int | None = 0
    cotangent: np.ndarray | None = None


def _real(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


@dataclass(frozen=True)
class _Param:
    """A plot option (not a loss option): what the slice holds fixed, e.g. a variance or a count."""

    default: Any
    accepts: Callable[[Any], bool]
    rule: str  # for the error message: "{name} must be {rule}"
    show: str = "{name}={value:g}"  # in the curve's label
    scope: str = ""  # for the error when given to a loss without it; default: the losses that have it


def _in_range(lo: float, hi: float, default: float) -> _Param:
    return _Param(default, lambda v: _real(v) and lo <= v <= hi, f"a number in [{lo:g}, {hi:g}]")


def _int_param(low: int, default: int, **kw: str) -> _Param:
    def accepts(v: Any) -> bool:
        return isinstance(v, int) and not isinstance(v, bool) and v >= low

    return _Param(default, accepts, f"an int >= {low}", **kw)


def _sign_param(default: int) -> _Param:
    return _Param(default, lambda v: _real(v) and v in (1, -1), "1 or -1")


_NUM_CLASSES = _int_param(2, 3, show="{value} classes", scope="class-axis losses")


@dataclass(frozen=True)
class _Kind:
    """What varies along x for a loss: ``build(xs, params)`` makes the loss call (:class:`_Slice`).

    ``params`` are the plot options of the slice and their defaults; ``per_point`` kinds
    (losses that reduce over the whole batch) are built and called once per point;
    ``defined`` masks the x where the slice exists (``defined_as`` says which).
    """

    x_label: str
    x_range: tuple[float, float]
    domain: str  # "real" or "probability": curves of one figure share their x axis
    build: _Build
    params: Mapping[str, _Param] = field(default_factory=dict)
    per_point: bool = False
    defined: Callable[[np.ndarray], np.ndarray] | None = None
    defined_as: str = ""


def _pointwise(target: float) -> _Build:
    def build(xs: np.ndarray, params: Mapping[str, Any]) -> _Slice:
        return _Slice((xs.copy(), np.full_like(xs, target)), np.ones_like(xs))

    return build


def _first_column(xs: np.ndarray, num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """Scores ``(len(xs), num_classes)`` with ``xs`` in column 0 and 0 elsewhere, and their tangent."""
    scores = np.zeros((xs.shape[0], num_classes), dtype=np.float64)
    scores[:, 0] = xs
    tangent = np.zeros_like(scores)
    tangent[:, 0] = 1.0
    return scores, tangent


def _true_class(xs: np.ndarray, params: Mapping[str, Any]) -> _Slice:
    logits, tangent = _first_column(xs, params["num_classes"])
    return _Slice((logits, np.zeros(xs.shape[0], dtype=np.int64)), tangent)


def _true_label(padded: bool) -> _Build:
    """Multi-label scores: label 0 (score x) is a target, the other labels (score 0) are not."""

    def build(xs: np.ndarray, params: Mapping[str, Any]) -> _Slice:
        scores, tangent = _first_column(xs, params["num_classes"])
        if padded:  # multilabel_margin_loss: the target's labels, padded with -1
            target = np.full(scores.shape, -1, dtype=np.int64)
            target[:, 0] = 0
        else:  # multilabel_soft_margin_loss: a 0/1 mask
            target = tangent.copy()
        return _Slice((scores, target), tangent)

    return build


def _gaussian(xs: np.ndarray, params: Mapping[str, Any]) -> _Slice:
    return _Slice((xs.copy(), np.zeros_like(xs), np.full_like(xs, params["var"])), np.ones_like(xs))


def _poisson(xs: np.ndarray, params: Mapping[str, Any]) -> _Slice:
    return _Slice((xs.copy(), np.full_like(xs, params["count"])), np.ones_like(xs), {"log_input": True})


def _ranking(xs: np.ndarray, params: Mapping[str, Any]) -> _Slice:
    arrays = (xs.copy(), np.zeros_like(xs), np.full_like(xs, params["target"]))
    return _Slice(arrays, np.ones_like(xs))


def _hinge_embedding(xs: np.ndarray, params: Mapping[str, Any]) -> _Slice:
    return _Slice((xs.copy(), np.full_like(xs, params["target"])), np.ones_like(xs))


#: the triplet slice: positive at 0, negative at this distance on the same line, the anchor between
_TRIPLET_SPAN = 4.0


def _triplet(xs: np.ndarray, params: Mapping[str, Any]) -> _Slice:
    # anchor at (t, 0): d(a, p) - d(a, n) = t - (S - t) = x  =>  t = (x + S) / 2
    anchor = np.zeros((xs.shape[0], 2))
    anchor[:, 0] = (xs + _TRIPLET_SPAN) / 2
    negative = np.zeros_like(anchor)
    negative[:, 0] = _TRIPLET_SPAN
    tangent = np.zeros_like(anchor)
    tangent[:, 0] = 0.5
    return _Slice((anchor, np.zeros_like(anchor), negative), tangent)


def _unit(theta: np.ndarray, dims: int) -> tuple[np.ndarray, np.ndarray]:
    """Unit vectors at angle ``theta`` from the first axis (in the first two of ``dims``), and d/dtheta."""
    vec = np.zeros((theta.shape[0], dims))
    vec[:, 0], vec[:, 1] = np.cos(theta), np.sin(theta)
    tangent = np.zeros_like(vec)
    tangent[:, 0], tangent[:, 1] = -np.sin(theta), np.cos(theta)
    return vec, tangent


def _cosine_embedding(xs: np.ndarray, params: Mapping[str, Any]) -> _Slice:
    first, tangent = _unit(xs, 2)
    second = np.zeros_like(first)
    second[:, 0] = 1.0
    return _Slice((first, second, np.full(xs.shape[0], float(params["target"]))), tangent)


def _nt_xent(xs: np.ndarray, params: Mapping[str, Any]) -> _Slice:
    # two pairs: view 0 at angle x from its partner (1, 0, 0); the other pair at (0, 0, 1),
    # orthogonal to both, as the negatives; the value plotted is view 0's loss
    first, tangent = _unit(xs, 3)
    other = np.array([[0.0, 0.0, 1.0]])
    z1 = np.concatenate([first, other])
    z2 = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
    cotangent = np.array([1.0, 0.0, 0.0, 0.0])
    return _Slice((z1, z2), np.concatenate([tangent, np.zeros_like(other)]), axis=None, cotangent=cotangent)


def _varifocal(xs: np.ndarray, params: Mapping[str, Any]) -> _Slice:
    return _Slice((xs.copy(), np.full_like(xs, params["iou"])), np.ones_like(xs))


def _quality_focal(xs: np.ndarray, params: Mapping[str, Any]) -> _Slice:
    n = xs.shape[0]
    arrays = (xs[:, None].copy(), np.zeros(n, dtype=np.int64), np.full(n, float(params["iou"])))
    return _Slice(arrays, np.ones((n, 1)))


#: the DFL slice: bins 0.._DFL_BINS, logits -(k - x)^2 / (2 s^2) with s = _DFL_WIDTH
_DFL_BINS = 4
_DFL_WIDTH = 0.75


def _distribution(xs: np.ndarray, params: Mapping[str, Any]) -> _Slice:
    offset = np.arange(_DFL_BINS + 1, dtype=np.float64)[None, :] - xs[:, None]
    logits = -(offset**2) / (2 * _DFL_WIDTH**2)
    return _Slice((logits, np.full_like(xs, params["label"])), offset / _DFL_WIDTH**2)


#: the segmentation slice: one image of six pixels, three of them foreground; x is pixel 0's logit
_SEG_TARGET = np.array([1.0, 1.0, 1.0, 0.0, 0.0, 0.0])
_SEG_LOGITS = np.array([0.0, 2.0, 0.5, -1.5, -0.5, 1.0])


def _segmentation(xs: np.ndarray, params: Mapping[str, Any]) -> _Slice:
    logits = _SEG_LOGITS.copy()
    logits[0] = xs[0]
    tangent = np.zeros_like(logits)
    tangent[0] = 1.0
    arrays = (logits.reshape(1, 1, -1), _SEG_TARGET.reshape(1, 1, -1))
    return _Slice(arrays, tangent.reshape(1, 1, -1), {"mode": "binary", "from_logits": True}, axis=None)


def _ctc(xs: np.ndarray, params: Mapping[str, Any]) -> _Slice:
    # two classes, blank 0 and the label 1; target "1"; at every step log p(1) = x, the rest on the blank
    steps, n = params["steps"], xs.shape[0]
    log_probs = np.empty((steps, n, 2))
    log_probs[:, :, 1] = xs
    log_probs[:, :, 0] = np.log(-np.expm1(xs))
    tangent = np.empty_like(log_probs)
    tangent[:, :, 1] = 1.0
    tangent[:, :, 0] = np.exp(xs) / np.expm1(xs)  # d/dx log(1 - e^x)
    lengths = np.full(n, steps, dtype=np.int64)
    arrays = (log_probs, np.ones((n, 1), dtype=np.int64), lengths, np.ones(n, dtype=np.int64))
    return _Slice(arrays, tangent, axis=1)


_RESIDUAL = _Kind("residual x - y", (-3.0, 3.0), "real", _pointwise(0.0))
_LOGIT = _Kind("logit x (binary target 1)", (-5.0, 5.0), "real", _pointwise(1.0))
_SCORE = _Kind("score f (target +1)", (-2.0, 3.0), "real", _pointwise(1.0))
_CLASS = _Kind(
    "x = true-class logit (others 0)", (-5.0, 5.0), "real", _true_class, params={"num_classes": _NUM_CLASSES}
)
_PROBABILITY = _Kind("probability p (target 1)", (0.01, 0.99), "probability", _pointwise(1.0))


def _label_kind(padded: bool) -> _Kind:
    return _Kind(
        "score of a true label (the other labels' scores 0)", (-2.0, 3.0), "real", _true_label(padded),
        params={"num_classes": _NUM_CLASSES},
    )


def _iou_kind(build: _Build) -> _Kind:
    return _Kind("logit x (IoU target q)", (-5.0, 5.0), "real", build, params={"iou": _in_range(0.0, 1.0, 1.0)})


#: loss name -> (short label, what varies along x)
PLOTTABLE: dict[str, tuple[str, _Kind]] = {
    "mse_loss": ("MSE", _RESIDUAL),
    "l1_loss": ("L1", _RESIDUAL),
    "smooth_l1_loss": ("smooth L1", _RESIDUAL),
    "huber_loss": ("Huber", _RESIDUAL),
    "log_cosh_loss": ("log-cosh", _RESIDUAL),
    "gaussian_nll_loss": (
        "Gaussian NLL",
        _Kind("residual x - y", (-3.0, 3.0), "real", _gaussian,
              params={"var": _Param(1.0, lambda v: _real(v) and v > 0, "a finite number > 0")}),
    ),
    "poisson_nll_loss": (
        "Poisson NLL",
        _Kind("log-rate x = log(rate) (count k)", (-3.0, 2.5), "real", _poisson,
              params={"count": _Param(2, lambda v: _real(v) and v >= 0, "a finite number >= 0")}),
    ),
    "binary_cross_entropy_with_logits": ("logistic (BCE with logits)", _LOGIT),
    "sigmoid_focal_loss": ("sigmoid focal", _LOGIT),
    "hinge_loss": ("hinge", _SCORE),
    "squared_hinge_loss": ("squared hinge", _SCORE),
    "soft_margin_loss": ("soft margin", _SCORE),
    "multilabel_soft_margin_loss": ("multi-label soft margin", _label_kind(padded=False)),
    "multilabel_margin_loss": ("multi-label margin", _label_kind(padded=True)),
    "cross_entropy": ("softmax cross-entropy", _CLASS),
    "poly1_cross_entropy": ("Poly-1", _CLASS),
    "softmax_focal_loss": ("softmax focal", _CLASS),
    "multi_margin_loss": ("multi-margin", _CLASS),
    "binary_cross_entropy": ("BCE on probabilities", _PROBABILITY),
    "margin_ranking_loss": (
        "margin ranking",
        _Kind("x1 - x2", (-3.0, 3.0), "real", _ranking, params={"target": _sign_param(1)}),
    ),
    "hinge_embedding_loss": (
        "hinge embedding",
        _Kind("distance x", (0.0, 3.0), "real", _hinge_embedding, params={"target": _sign_param(-1)},
              defined=lambda x: x >= 0, defined_as="x >= 0 (a distance)"),
    ),
    "triplet_margin_loss": (
        "triplet margin",
        _Kind("d(a, p) - d(a, n)", (-3.5, 3.5), "real", _triplet,
              defined=lambda x: np.abs(x) <= _TRIPLET_SPAN, defined_as=f"|x| <= {_TRIPLET_SPAN:g}"),
    ),
    "cosine_embedding_loss": (
        "cosine embedding",
        _Kind("angle between the pair (radians)", (0.0, math.pi), "real", _cosine_embedding,
              params={"target": _sign_param(1)}),
    ),
    "nt_xent_loss": (
        "NT-Xent",
        _Kind("angle between the pair (radians)", (0.0, math.pi), "real", _nt_xent, per_point=True),
    ),
    "varifocal_loss": ("varifocal", _iou_kind(_varifocal)),
    "quality_focal_loss": ("quality focal", _iou_kind(_quality_focal)),
    "distribution_focal_loss": (
        "DFL",
        _Kind("predicted bin position x", (0.0, float(_DFL_BINS)), "real", _distribution,
              params={"label": _in_range(0.0, float(_DFL_BINS), 2.5)}),
    ),
    **{
        name: (short, _Kind("logit of one foreground pixel (5 others fixed)", (-4.0, 4.0), "real",
                            _segmentation, per_point=True))
        for name, short in (("dice_loss", "Dice"), ("jaccard_loss", "Jaccard"), ("tversky_loss", "Tversky"),
                            ("lovasz_loss", "Lovasz hinge"))
    },
    "ctc_loss": (
        "CTC",
        _Kind("log-probability x of the label at every step", (-4.0, -0.02), "real", _ctc,
              params={"steps": _int_param(1, 4)}, defined=lambda x: x < 0, defined_as="x < 0 (a log-probability)"),
    ),
}

@dataclass(frozen=True)
class Curve:
    """One plotted curve: ``loss[i]`` and ``grad[i]`` (d loss / d x) at ``x[i]``, float64."""

    name: str
    label: str
    x_label: str
    x: np.ndarray
    loss: np.ndarray
    grad: np.ndarray
    grad_method: str  # "closed form" or "finite differences"


def parse_spec(spec: str) -> tuple[str, dict[str, Any]]:
    """``"huber_loss:delta=2,reduction=..."`` -> ``("huber_loss", {"delta": 2})``.

    Values are Python literals (numbers, ``True``, ``None``, quoted strings);
    anything else is kept as a string.
    """
    name, _, rest = spec.partition(":")
    name = name.strip()
    options: dict[str, Any] = {}
    for item in filter(None, (p.strip() for p in rest.split(","))):
        key, eq, raw = item.partition("=")
        if not eq or not key.strip().isidentifier():
            raise ValueError(f"bad option {item!r} in {spec!r}: expected key=value")
        try:
            value = ast.literal_eval(raw.strip())
        except (ValueError, SyntaxError):
            value = raw.strip()
        options[key.strip()] = value
    return name, options


def _lookup(name: str) -> tuple[str, _Kind]:
    if name not in PLOTTABLE:
        raise ValueError(f"cannot plot {name!r}; plottable losses: {', '.join(sorted(PLOTTABLE))}")
    return PLOTTABLE[name]


def _label(name: str, options: dict[str, Any], extra: Sequence[str] = ()) -> str:
    short, _ = _lookup(name)
    parts = [f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in options.items()]
    shown = ", ".join([*parts, *extra])
    return f"{short} ({shown})" if shown else short


def _check_xs(xs: Any) -> np.ndarray:
    arr = np.asarray(xs, dtype=np.float64)
    if arr.ndim != 1 or arr.size == 0:
        raise ValueError(f"xs must be a non-empty 1-D array, got shape {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise ValueError("xs must be finite")
    return arr


def _has_closed_form(loss: Callable[..., Any]) -> bool:
    try:
        from polyloss.gradients import gradient_of
    except ImportError:
        return False
    try:
        gradient_of(loss)
    except (TypeError, KeyError, ValueError):
        return False
    return True


def _plot_params(base: str, kind: _Kind, options: dict[str, Any]) -> dict[str, Any]:
    """Pop ``kind``'s plot options from ``options`` (defaults filled in, values checked)."""
    for key in sorted(options):
        users = sorted(n for n, (_, k) in PLOTTABLE.items() if key in k.params)
        if users and key not in kind.params:
            scope = next(k.params[key].scope for _, k in PLOTTABLE.values() if key in k.params) or ", ".join(users)
            raise ValueError(f"{key} applies to {scope} only, not {base!r}")
    params: dict[str, Any] = {}
    for key, spec in kind.params.items():
        value = options.pop(key, spec.default)
        if not spec.accepts(value):
            raise ValueError(f"{key} must be {spec.rule}, got {value!r}")
        params[key] = value
    return params


def _call_options(base: str, fixed: Mapping[str, Any], options: Mapping[str, Any]) -> dict[str, Any]:
    for key, value in fixed.items():
        if key in options and options[key] != value:
            raise ValueError(f"{key} is fixed to {value!r} for plotting {base!r}, got {options[key]!r}")
    return {**options, **fixed, "reduction": "none"}


def _per_point(out: Any, sl: _Slice) -> np.ndarray:
    """The ``"none"`` output of a loss call -> one value per point of ``sl``."""
    arr = np.asarray(out, dtype=np.float64)
    if sl.axis is None:
        return np.atleast_1d(np.sum(arr if sl.cotangent is None else sl.cotangent * arr))
    return arr.reshape(-1)


def _along_x(grad: Any, sl: _Slice) -> np.ndarray:
    """The gradient by ``arrays[0]`` -> d loss / d x per point (the chain rule through ``tangent``)."""
    product = np.asarray(grad, dtype=np.float64) * sl.tangent
    if sl.axis is None:
        return np.atleast_1d(product.sum())
    per_point: np.ndarray = np.moveaxis(product, sl.axis, 0).reshape(product.shape[sl.axis], -1).sum(axis=1)
    return per_point


def _evaluate(
    loss_fn: Callable[..., Any], sl: _Slice, options: Mapping[str, Any], closed: bool, h: float
) -> tuple[np.ndarray, np.ndarray]:
    """Loss and derivative at the points of one slice: closed form, or central differences along ``tangent``."""
    import polyloss as pl

    first, *rest = sl.arrays
    value = _per_point(loss_fn(first, *rest, **options), sl)
    if closed:
        _, g = pl.value_and_grad(loss_fn, first, *rest, cotangent=sl.cotangent, **options)
        return value, _along_x(g, sl)
    # the points are independent, so one shifted evaluation per side gives every derivative
    plus = _per_point(loss_fn(first + h * sl.tangent, *rest, **options), sl)
    minus = _per_point(loss_fn(first - h * sl.tangent, *rest, **options), sl)
    return value, (plus - minus) / (2.0 * h)


def curve_data(name: str, xs: Any, *, grad_method: str = "auto", h: float = 1e-6, **options: Any) -> Curve:
    """The loss of ``name`` and its derivative along ``xs`` (see the module docstring for what x is).

    Args:
        name: a plottable loss name (:data:`PLOTTABLE`); options may be given
            here or in the name (``"huber_loss:delta=2"``).
        xs: 1-D finite sample points.
        grad_method: ``"auto"`` (closed form if :func:`polyloss.value_and_grad`
            has this loss, else finite differences), ``"closed"`` or ``"fd"``
            (central differences with step ``h``).
        h: finite-difference step.
        **options: the loss's keyword options (``reduction`` is always
            ``"none"``), plus the plot options of the loss's slice (see the
            module docstring: ``num_classes``, ``var``, ``count``, ``target``,
            ``iou``, ``label``, ``steps``).

    Returns:
        A :class:`Curve` with float64 ``x``, ``loss`` and ``grad`` of ``xs``'s length.

    Example:
        >>> import numpy as np
        >>> from polyloss._tools.plot import curve_data
        >>> c = curve_data("smooth_l1_loss", np.array([0.5, 2.0]), beta=1.0)
        >>> c.loss.tolist(), c.grad.tolist()
        ([0.125, 1.5], [0.5, 1.0])
    """
    import polyloss as pl

    base, spec_options = parse_spec(name)
    options = {**spec_options, **options}
    _, kind = _lookup(base)
    if grad_method not in ("auto", "closed", "fd"):
        raise ValueError(f"grad_method must be 'auto', 'closed' or 'fd', got {grad_method!r}")
    if "reduction" in options:
        raise ValueError("reduction is fixed to 'none' for plotting")
    params = _plot_params(base, kind, options)
    x = _check_xs(xs)
    if kind.defined is not None and not np.all(kind.defined(x)):
        raise ValueError(f"xs must satisfy {kind.defined_as} for {base!r}")
    loss_fn = pl.get_loss(base)
    closed = grad_method == "closed" or (grad_method == "auto" and _has_closed_form(loss_fn))
    slices = [kind.build(x[i : i + 1], params) for i in range(x.size)] if kind.per_point else [kind.build(x, params)]
    values, grads = [], []
    for sl in slices:
        value, grad = _evaluate(loss_fn, sl, _call_options(base, sl.options, options), closed, h)
        values.append(value)
        grads.append(grad)
    shown = [spec.show.format(name=key, value=params[key]) for key, spec in kind.params.items()]
    return Curve(
        name=base,
        label=_label(base, options, extra=shown),
        x_label=kind.x_label,
        x=x,
        loss=np.concatenate(values).reshape(x.shape),
        grad=np.concatenate(grads).reshape(x.shape),
        grad_method="closed form" if closed else "finite differences",
    )


def _curves(
    names: Sequence[str], xs: Any, x_range: tuple[float, float] | None, points: int, grad_method: str
) -> list[Curve]:
    if isinstance(names, str) or not names:
        raise ValueError("names must be a non-empty list of loss names")
    kinds = [_lookup(parse_spec(n)[0])[1] for n in names]
    domains = {k.domain for k in kinds}
    if len(domains) > 1:
        raise ValueError(
            "binary_cross_entropy (probability input) cannot share an x axis with losses of logits or "
            f"residuals; plot it separately (got {', '.join(names)})"
        )
    if xs is not None:
        return [curve_data(n, xs, grad_method=grad_method) for n in names]
    lo, hi = x_range or (min(k.x_range[0] for k in kinds), max(k.x_range[1] for k in kinds))
    if not (math.isfinite(lo) and math.isfinite(hi) and lo < hi):
        raise ValueError(f"x range must be two finite numbers, low < high, got ({lo}, {hi})")
    if points < 2:
        raise ValueError(f"points must be >= 2, got {points}")
    grid = np.linspace(lo, hi, points)
    curves = []
    for name, kind in zip(names, kinds, strict=True):
        # each curve where its slice exists (a distance from 0 on, a log-probability below 0)
        kept = grid if kind.defined is None else grid[kind.defined(grid)]
        if kept.size < 2:
            raise ValueError(
                f"the x range ({lo:g}, {hi:g}) leaves no points where {name} is defined ({kind.defined_as})"
            )
        curves.append(curve_data(name, kept, grad_method=grad_method))
    return curves


def _draw_row(axes: Sequence[Any], curves: Sequence[Curve], title: str | None) -> None:
    x_labels = {c.x_label for c in curves}
    x_label = "; ".join(sorted(x_labels))
    ax_loss, ax_grad = axes
    for c in curves:
        ax_loss.plot(c.x, c.loss, label=c.label, linewidth=1.8)
        ax_grad.plot(c.x, c.grad, label=c.label, linewidth=1.8)
    for ax, what in ((ax_loss, "loss"), (ax_grad, "d loss / d x")):
        ax.axhline(0.0, color="0.6", linewidth=0.8)
        ax.axvline(0.0, color="0.6", linewidth=0.8)
        ax.set_xlabel(x_label)
        ax.set_ylabel(what)
        ax.grid(True, alpha=0.3)
    ax_loss.legend(fontsize="small", loc="best")
    if title:
        ax_loss.set_title(f"{title}: loss", fontsize="medium")
        ax_grad.set_title(f"{title}: gradient", fontsize="medium")
    else:
        ax_loss.set_title("loss", fontsize="medium")
        methods = sorted({c.grad_method for c in curves})
        ax_grad.set_title(f"gradient ({', '.join(methods)})", fontsize="medium")


def _save(fig: Any, path: str | os.PathLike[str], dpi: int) -> str:
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(fig)
    out = os.fspath(path)
    directory = os.path.dirname(out)
    if directory:
        os.makedirs(directory, exist_ok=True)
    fig.savefig(out, dpi=dpi)
    return out


def plot_losses(
    names: Sequence[str],
    path: str | os.PathLike[str],
    *,
    xs: Any = None,
    x_range: tuple[float, float] | None = None,
    points: int = 401,
    title: str | None = None,
    grad_method: str = "auto",
    dpi: int = 110,
) -> str:
    """Draw each loss against its input (left) and its gradient (right); write a PNG.

    Args:
        names: loss names, each optionally with options (``"huber_loss:delta=2"``).
        path: the image file to write (format from the suffix; PNG for ``.png``).
        xs: sample points; default ``points`` evenly spaced over ``x_range``.
        x_range: default: the union of the losses' natural ranges.
        points: number of sample points when ``xs`` is None.
        title: figure title (prefixed to both panels).
        grad_method: as :func:`curve_data`.
        dpi: resolution of the image.

    Returns:
        ``path`` as a string.
    """
    from matplotlib.figure import Figure

    curves = _curves(names, xs, x_range, points, grad_method)
    fig = Figure(figsize=(10.0, 3.8), layout="constrained")
    _draw_row(fig.subplots(1, 2), curves, title)
    return _save(fig, path, dpi)


def plot_gallery(
    path: str | os.PathLike[str],
    groups: Sequence[tuple[str, Sequence[str]]],
    *,
    points: int = 401,
    grad_method: str = "auto",
    dpi: int = 100,
) -> str:
    """Several :func:`plot_losses` rows in one image: ``groups`` is ``[(title, names), ...]``."""
    from matplotlib.figure import Figure

    if not groups:
        raise ValueError("groups must not be empty")
    fig = Figure(figsize=(10.0, 3.2 * len(groups)), layout="constrained")
    rows = fig.subplots(len(groups), 2, squeeze=False)
    for axes, (title, names) in zip(rows, groups, strict=True):
        _draw_row(axes, _curves(names, None, None, points, grad_method), title)
    return _save(fig, path, dpi)


# -- command line ------------------------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``python -m polyloss plot`` (for a subparser)."""
    parser.add_argument(
        "losses",
        nargs="+",
        metavar="NAME",
        help="loss names, each optionally with options: huber_loss:delta=2 sigmoid_focal_loss:gamma=0.5,alpha=-1 "
        f"(plottable: {', '.join(sorted(PLOTTABLE))})",
    )
    parser.add_argument("-o", "--output", required=True, metavar="FILE.png", type=output_file,
                        help="image file to write")
    parser.add_argument("--xmin", type=finite_float, default=None, help="left end of the x axis")
    parser.add_argument("--xmax", type=finite_float, default=None, help="right end of the x axis")
    parser.add_argument("--points", type=int_at_least(2), default=401, help="sample points (default 401)")
    parser.add_argument("--title", default=None, help="figure title")
    parser.add_argument(
        "--grad",
        choices=("auto", "closed", "fd"),
        default="auto",
        help="gradient: closed form (polyloss.value_and_grad), finite differences, or auto (closed where available)",
    )


def cmd_plot(args: argparse.Namespace) -> int:
    """Run ``plot`` for parsed ``args``: 0 written, 2 bad names/options, 3 matplotlib missing."""
    import importlib.util
    import sys

    prog = getattr(args, "prog", _PROG)
    if importlib.util.find_spec("matplotlib") is None:
        print(f"{prog}: error: plot needs matplotlib: pip install matplotlib", file=sys.stderr)
        return EXIT_MISSING_DEPENDENCY
    x_range = None
    if args.xmin is not None or args.xmax is not None:
        names = [parse_spec(n)[0] for n in args.losses]
        try:
            kinds = [_lookup(n)[1] for n in names]
        except ValueError as exc:
            print(f"{prog}: error: {exc}", file=sys.stderr)
            return EXIT_USAGE
        lo = args.xmin if args.xmin is not None else min(k.x_range[0] for k in kinds)
        hi = args.xmax if args.xmax is not None else max(k.x_range[1] for k in kinds)
        x_range = (lo, hi)
    try:
        out = plot_losses(
            args.losses, args.output, x_range=x_range, points=args.points, title=args.title, grad_method=args.grad
        )
    except (ValueError, TypeError) as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    print(f"wrote {out}")
    return EXIT_OK


def main_plot(argv: Sequence[str] | None = None) -> int:
    """Stand-alone entry: ``main_plot(["huber_loss", "-o", "huber.png"])``."""
    parser = argparse.ArgumentParser(
        prog=_PROG, description="Plot losses against their input, with their gradients."
    )
    add_arguments(parser)
    return cmd_plot(parser.parse_args(argv))
