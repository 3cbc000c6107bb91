"""Hypothesis strategies describing valid inputs of every built-in loss (shared by the property tests).

``valid_case(name)`` draws ``(x, y, options)`` as float64 / int64 NumPy data whose
floats are exactly representable in float32 (so a float32 backend sees the same
numbers), and ``perfect_case(name)`` draws inputs where the loss is zero by its
math. ``mean_count(name, x, y, options, none_output)`` is the number polyloss
divides by under ``reduction="mean"`` (from the docstrings / API.md).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

REGRESSION = ("mse_loss", "l1_loss", "smooth_l1_loss", "huber_loss")
BINARY_LOGITS = ("binary_cross_entropy_with_logits", "sigmoid_focal_loss")
CLASS_INDEX = ("cross_entropy", "nll_loss", "softmax_focal_loss", "multi_margin_loss")
HINGE = ("hinge_loss", "squared_hinge_loss")
BOX = ("iou_loss", "giou_loss", "diou_loss", "ciou_loss")
QUALITY = ("varifocal_loss", "quality_focal_loss", "distribution_focal_loss")
OVERLAP = ("dice_loss", "jaccard_loss", "tversky_loss", "lovasz_loss")
KNOWN = (*REGRESSION, "binary_cross_entropy", *BINARY_LOGITS, *CLASS_INDEX, "kl_div", *HINGE, *BOX, *QUALITY,
         *OVERLAP, "nt_xent_loss", "ctc_loss")

# value bound of the float inputs: logit losses get extreme logits, others moderate values
BOUND = {"binary_cross_entropy_with_logits": 1e4, "sigmoid_focal_loss": 1e4, "cross_entropy": 1e4,
         "softmax_focal_loss": 1e4, "multi_margin_loss": 1e4, "hinge_loss": 1e3, "squared_hinge_loss": 1e3}
# the loss grows like |input| ** POWER: float32 rounding error is relative to that scale
POWER = {"mse_loss": 2, "squared_hinge_loss": 2, "multi_margin_loss": 2, "kl_div": 2}


def f32(lo: float, hi: float) -> st.SearchStrategy[float]:
    return st.floats(lo, hi, width=32, allow_subnormal=False).map(float)


def float_array(shape: tuple[int, ...], lo: float, hi: float) -> st.SearchStrategy[np.ndarray]:
    return hnp.arrays(np.float64, shape, elements=f32(lo, hi))


shapes = hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=4)
class_shapes = hnp.array_shapes(min_dims=1, max_dims=3, min_side=0, max_side=4)


@st.composite
def broadcast_weight(draw: Any, shape: tuple[int, ...], lo: float = 0.0, hi: float = 10.0) -> np.ndarray:
    """A non-negative array broadcastable to ``shape`` (a suffix of it, possibly with 1s)."""
    k = draw(st.integers(0, len(shape)))
    wshape = tuple(draw(st.sampled_from([1, s])) for s in shape[len(shape) - k:])
    return draw(float_array(wshape, lo, hi))


def _log_softmax(x: np.ndarray, axis: int) -> np.ndarray:
    m = np.max(x, axis=axis, keepdims=True) if x.size else x
    z = x - m
    with np.errstate(divide="ignore"):  # an empty class axis
        return z - np.log(np.sum(np.exp(z), axis=axis, keepdims=True))


def _to_f32(a: np.ndarray) -> np.ndarray:
    return a.astype(np.float32).astype(np.float64)


@st.composite
def _class_layout(draw: Any) -> tuple[tuple[int, ...], int, int]:
    shape = draw(class_shapes)
    axis = draw(st.integers(-len(shape), len(shape) - 1))
    if shape[axis] == 0:  # at least one class
        shape = tuple(1 if i == axis % len(shape) else s for i, s in enumerate(shape))
    return shape, axis, shape[axis]


def _index_target(draw: Any, shape: tuple[int, ...], axis: int, c: int, ignore: bool) -> np.ndarray:
    tshape = tuple(s for i, s in enumerate(shape) if i != axis % len(shape))
    values = st.integers(0, c - 1) | st.just(-100) if ignore else st.integers(0, c - 1)
    return draw(hnp.arrays(np.int64, tshape, elements=values))


def _onehot(t: np.ndarray, c: int, axis: int) -> np.ndarray:
    safe = np.where(t < 0, 0, t)
    oh = (safe[..., None] == np.arange(c)).astype(np.float64) * (t[..., None] >= 0)
    return np.moveaxis(oh, -1, axis)


@st.composite
def valid_case(draw: Any, name: str) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    bound = BOUND.get(name, 1e3)
    if name in REGRESSION:
        shape = draw(shapes)
        x, y = draw(float_array(shape, -bound, bound)), draw(float_array(shape, -bound, bound))
        opts: dict[str, Any] = {}
        if draw(st.booleans()):
            opts["weight"] = draw(broadcast_weight(shape))
        if name == "smooth_l1_loss":
            opts["beta"] = draw(f32(0.0, 5.0))
        if name == "huber_loss":
            opts["delta"] = draw(f32(2.0**-10, 5.0))
        return x, y, opts
    if name == "binary_cross_entropy":
        shape = draw(shapes)
        x, y = draw(float_array(shape, 0.0, 1.0)), draw(float_array(shape, 0.0, 1.0))
        opts = {"weight": draw(broadcast_weight(shape))} if draw(st.booleans()) else {}
        return x, y, opts
    if name in BINARY_LOGITS:
        shape = draw(shapes)
        x, y = draw(float_array(shape, -bound, bound)), draw(float_array(shape, 0.0, 1.0))
        if name == "sigmoid_focal_loss":
            opts = {"gamma": draw(f32(0.0, 5.0)), "alpha": draw(f32(0.0, 1.0) | st.just(-1.0))}
        else:
            opts = {}
            if draw(st.booleans()):
                opts["weight"] = draw(broadcast_weight(shape))
            if draw(st.booleans()):
                opts["pos_weight"] = draw(broadcast_weight(shape))
        return x, y, opts
    if name in CLASS_INDEX:
        shape, axis, c = draw(_class_layout())
        x = draw(float_array(shape, -bound, bound))
        opts = {"axis": axis} if axis != -1 or draw(st.booleans()) else {}
        if name == "nll_loss":
            x = _to_f32(np.minimum(_log_softmax(x / 100, axis), 0.0))
        probabilities = name == "cross_entropy" and draw(st.booleans())
        if probabilities:
            raw = draw(float_array(shape, 0.0, 1.0)) + 1e-3
            y = _to_f32(raw / np.sum(raw, axis=axis, keepdims=True))
        else:
            y = _index_target(draw, shape, axis, c, ignore=name != "multi_margin_loss")
        if name in ("cross_entropy", "nll_loss", "multi_margin_loss") and draw(st.booleans()):
            opts["weight"] = draw(float_array((c,), 0.0, 10.0))
        if name == "cross_entropy" and draw(st.booleans()):
            opts["label_smoothing"] = draw(f32(0.0, 1.0))
        if name == "multi_margin_loss":
            opts["p"] = draw(st.sampled_from([1, 2]))
            opts["margin"] = draw(f32(0.0, 5.0))
        if name == "softmax_focal_loss":
            opts["gamma"] = draw(f32(0.0, 5.0))
            opts["alpha"] = draw(st.none() | f32(0.0, 1.0) | float_array((c,), 0.0, 1.0))
        return x, y, opts
    if name == "kl_div":
        shape = draw(class_shapes)
        x = _to_f32(_log_softmax(draw(float_array(shape, -20, 20)), -1))
        raw = draw(float_array(shape, 0.0, 1.0))
        total = np.sum(raw, axis=-1, keepdims=True)
        y = _to_f32(np.where(total > 0, raw / np.where(total > 0, total, 1.0), 1.0 / max(1, shape[-1])))
        opts = {"reduction": draw(st.sampled_from(["mean", "sum", "batchmean"]))}
        if draw(st.booleans()):
            opts["log_target"] = True
            y = _to_f32(np.log(np.maximum(y, 1e-30)))
        return x, y, opts
    if name in HINGE:
        shape = draw(shapes)
        x = draw(float_array(shape, -bound, bound))
        labels = draw(st.sampled_from(["pm1", "01", "bool", "int"]))
        y = draw(hnp.arrays(np.int64, shape, elements=st.integers(0, 1)))
        y = {"pm1": (2.0 * y - 1.0), "01": y.astype(np.float64), "bool": y.astype(bool), "int": 2 * y - 1}[labels]
        return x, y, {"margin": draw(f32(0.0, 5.0))}
    if name in BOX:
        n = draw(hnp.array_shapes(min_dims=1, max_dims=2, min_side=0, max_side=4))
        return draw(_boxes(n)), draw(_boxes(n)), {}
    if name == "ctc_loss":
        return draw(_ctc_case())
    if name in QUALITY or name in OVERLAP or name == "nt_xent_loss":
        return draw(_second_set_case(name, bound))
    raise KeyError(name)


@st.composite
def _ctc_case(draw: Any) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """Feasible alignments (T >= 2S + 1); one target length for the whole batch, so that "mean" is "sum"
    over N times that length (at least 1)."""
    n, c, s = draw(st.integers(0, 3)), draw(st.integers(2, 4)), draw(st.integers(0, 3))
    t = 2 * s + 1 + draw(st.integers(0, 2))
    log_probs = _to_f32(_log_softmax(draw(float_array((t, n, c), -20.0, 20.0)), -1))
    targets = draw(hnp.arrays(np.int64, (n, s), elements=st.integers(1, c - 1)))
    length = draw(st.integers(0, s))
    return log_probs, targets, {"input_lengths": np.full(n, t), "target_lengths": np.full(n, length)}


@st.composite
def _second_set_case(draw: Any, name: str, bound: float) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    n, c = draw(st.integers(0, 4)), draw(st.integers(2, 4))
    x = draw(float_array((n, c), -bound, bound))
    if name == "varifocal_loss":
        y = draw(float_array((n, c), 0.0, 1.0))
        return x, y, {"alpha": draw(f32(0.0, 1.0)), "gamma": draw(f32(0.0, 5.0)), "iou_weighted": draw(st.booleans())}
    if name == "quality_focal_loss":
        label = draw(hnp.arrays(np.int64, (n,), elements=st.integers(0, c)))
        return x, label, {"score": draw(float_array((n,), 0.0, 1.0)), "beta": draw(f32(0.0, 5.0))}
    if name == "distribution_focal_loss":
        return x, draw(float_array((n,), 0.0, c - 1.0)), {}
    if name == "nt_xent_loss":
        return x, draw(float_array((n, c), -bound, bound)), {"temperature": draw(f32(0.0625, 5.0))}
    # segmentation: (N, C, S) logits, one of the three modes
    x = draw(float_array((n, c, 3), -bound, bound))
    mode = draw(st.sampled_from(["multiclass", "multilabel", "binary"]))
    opts: dict[str, Any] = {"mode": mode}
    if name == "lovasz_loss":
        opts["per_image"] = draw(st.booleans())
    else:
        opts["smooth"] = draw(f32(0.0, 2.0))
    if name == "tversky_loss":
        opts.update(alpha=draw(f32(0.0, 1.0)), beta=draw(f32(0.0, 1.0)))
    if mode == "multiclass":
        ignore = draw(st.booleans())
        y = draw(hnp.arrays(np.int64, (n, 3), elements=st.integers(0, c - 1) | st.just(-100) if ignore
                            else st.integers(0, c - 1)))
        if ignore:
            opts["ignore_index"] = -100
        return x, y, opts
    if mode == "binary":
        x = x[:, :1]
    return x, draw(hnp.arrays(np.float64, x.shape, elements=st.sampled_from([0.0, 1.0]))), opts


@st.composite
def _boxes(draw: Any, lead: tuple[int, ...]) -> np.ndarray:
    xy = draw(float_array((*lead, 2), -100.0, 100.0))
    wh = draw(float_array((*lead, 2), 0.5, 100.0))
    return _to_f32(np.concatenate([xy, xy + wh], axis=-1))


@st.composite
def perfect_case(draw: Any, name: str) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """Inputs at which the loss is 0 (to rounding) by its definition."""
    x, y, opts = draw(valid_case(name))
    if name in REGRESSION:
        return x, x.copy(), opts
    if name == "binary_cross_entropy":
        y = (y > 0.5).astype(np.float64)
        return y.copy(), y, opts
    if name in BINARY_LOGITS:
        y = (y > 0.5).astype(np.float64)
        big = draw(f32(60.0, 1e4))
        return (2 * y - 1) * big, y, opts
    if name in CLASS_INDEX:
        axis = opts.get("axis", -1)
        opts.pop("label_smoothing", None)
        c = x.shape[axis]
        if y.dtype.kind == "f":  # one-hot probabilities
            t = np.argmax(y, axis=axis)
            y = _onehot(t, c, axis)
        else:
            t = y
        oh = _onehot(t, c, axis)
        if name == "nll_loss":
            return np.where(oh > 0, 0.0, x), y, opts
        if name == "multi_margin_loss":
            others = np.max(np.where(oh > 0, -np.inf, x), axis=axis, keepdims=True)
            others = np.where(np.isfinite(others), others, 0.0)
            lift = others + opts["margin"] + draw(f32(0.0, 10.0)) + 1.0
            return _to_f32(np.where(oh > 0, lift, x)), y, opts
        big = draw(f32(60.0, 1e4))
        return _to_f32(oh * big), y, opts
    if name == "kl_div":
        if opts.get("log_target"):
            return y.copy(), y, opts
        return np.log(np.maximum(y, 1e-30)), y, opts
    if name in HINGE:
        sign = np.where(np.asarray(y, dtype=np.float64) > 0, 1.0, -1.0)
        extra = draw(float_array(x.shape, 0.0, 100.0))
        return _to_f32(sign * (opts["margin"] + extra + 1e-3)), y, opts
    if name in BOX:
        return x, x.copy(), opts
    if name == "ctc_loss":  # empty targets, the blank certain at every frame
        log_probs = np.where(np.arange(x.shape[-1]) == 0, 0.0, -1e4) + np.zeros_like(x)
        return log_probs, y, {**opts, "target_lengths": np.zeros_like(opts["target_lengths"])}
    big = draw(f32(60.0, 1e3))
    if name == "varifocal_loss":
        y = (y > 0.5).astype(np.float64)
        return (2 * y - 1) * big, y, opts
    if name == "quality_focal_loss":
        hot = np.arange(x.shape[-1]) == y[:, None]
        return np.where(hot, big, -big), y, {**opts, "score": np.ones(y.shape)}
    if name == "distribution_focal_loss":
        y = np.round(y)
        return (np.arange(x.shape[-1]) == y[:, None]) * big, y, opts
    if name == "nt_xent_loss":  # orthogonal views, each equal to its partner, at a low temperature
        z = np.eye(x.shape[1])[: x.shape[0]] * 2.0  # at most as many views as dimensions
        return z, z.copy(), {"temperature": 0.0078125}
    if opts["mode"] == "multiclass":
        hot = (np.arange(x.shape[1])[None, :, None] == y[:, None, :])
        return np.where(hot, big, -big), y, opts
    return (2 * y - 1) * big, y, opts


def mean_count(name: str, x: np.ndarray, y: np.ndarray, opts: dict[str, Any], none_out: np.ndarray) -> float:
    """What ``reduction="mean"`` divides ``reduction="sum"`` by (per API.md and the docstrings)."""
    weight = opts.get("weight")
    if name in ("mse_loss", "l1_loss") and weight is not None:
        return float(np.sum(np.broadcast_to(weight, x.shape)))
    if name in ("cross_entropy", "nll_loss") and y.dtype.kind == "i":
        valid = y != -100
        if weight is None:
            return float(np.sum(valid))
        return float(np.sum(np.where(valid, weight[np.where(valid, y, 0)], 0.0)))
    if name == "softmax_focal_loss":
        return float(np.sum(y != -100))
    if name == "ctc_loss":  # each loss over its target length (one for the batch here), then the batch mean
        return float(x.shape[1] * max(1, int(opts["target_lengths"][0]) if x.shape[1] else 1))
    if name == "lovasz_loss" and not opts.get("per_image"):  # multiclass: over the classes present
        return float(len(np.unique(y[y >= 0]))) if opts["mode"] == "multiclass" else 1.0
    if name == "kl_div" and opts.get("reduction") == "batchmean":
        return float(x.shape[0]) if x.ndim else 1.0
    return float(np.asarray(none_out).size)


def none_shape(name: str, x: np.ndarray, y: np.ndarray, opts: dict[str, Any]) -> tuple[int, ...] | None:
    """The shape of ``reduction="none"`` of the second-set losses (None: another loss)."""
    if name in ("quality_focal_loss", "distribution_focal_loss"):
        return x.shape[:-1]
    if name == "lovasz_loss":  # per image, else per class (multiclass) or the one hinge loss
        return (x.shape[0],) if opts.get("per_image") else (x.shape[1] if opts["mode"] == "multiclass" else 1,)
    if name in OVERLAP:
        return (x.shape[1],)
    if name == "nt_xent_loss":
        return (2 * x.shape[0],)
    if name == "ctc_loss":
        return (x.shape[1],)
    return None


def nonnegative_elementwise(name: str) -> bool:
    """Whether every element of ``reduction="none"`` is >= 0 for valid inputs (KL only sums to >= 0)."""
    return name != "kl_div"
