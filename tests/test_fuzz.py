"""Bad-input fuzzing of every public loss (hypothesis).

Random shapes (incl. empty and 0-d), dtypes (bool, int, float16/32/64, complex),
NaN/inf values, targets of related or unrelated shapes, weights of the wrong
length, random option values (negative, NaN, huge, wrong types, unknown
reductions) on NumPy, array-api-strict and torch: every call either returns an
array of the input's namespace or raises ``ValueError`` / ``TypeError``, never
another exception. Regression tests for each crash the fuzzing found are at the end.
"""

from __future__ import annotations

import inspect
import math
from typing import Any

import numpy as np
import pytest
from _support import to_library
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import polyloss as pl

torch = pytest.importorskip("torch")
strict = pytest.importorskip("array_api_strict")

LIBRARIES = ("numpy", "strict", "torch")
DTYPES = ("bool", "int32", "int64", "uint8", "float16", "float32", "float64", "complex128")
ODD_VALUES = [None, 0, 1, -1, 2, 3, 0.5, -0.5, 1e300, -1e300, math.nan, math.inf, -math.inf, True, False,
              "mean", "sum", "none", "batchmean", "bogus", "", [1, 2], (0.1, 0.2), {"a": 1}, object()]
REDUCTIONS = ["none", "mean", "sum", "batchmean", "MEAN", "bogus", None, 0, 1.5]


def _keyword_options(name: str) -> list[str]:
    params = inspect.signature(pl.get_loss(name)).parameters.values()
    return [p.name for p in params if p.kind is inspect.Parameter.KEYWORD_ONLY and p.name != "reduction"]


@st.composite
def raw_array(draw: Any, shape: tuple[int, ...] | None = None) -> np.ndarray:
    if shape is None:
        shape = draw(hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=4))
    dtype = draw(st.sampled_from(DTYPES))
    if dtype == "bool":
        return draw(hnp.arrays(np.bool_, shape))
    if dtype.startswith(("int", "uint")):
        return draw(hnp.arrays(np.dtype(dtype), shape, elements=st.integers(-150, 150) if dtype[0] == "i"
                               else st.integers(0, 150)))
    special = st.sampled_from([math.nan, math.inf, -math.inf, 0.0, -0.0, 1e4, -1e4])
    values = st.floats(-1e4, 1e4, width=16 if dtype == "float16" else 32) | special
    if dtype == "complex128":
        return draw(hnp.arrays(np.complex128, shape, elements=st.complex_numbers(max_magnitude=1e3)))
    return draw(hnp.arrays(np.dtype(dtype), shape, elements=values))


@st.composite
def related_array(draw: Any, x: np.ndarray) -> np.ndarray:
    """A target/weight: same shape, shape without an axis, a suffix, or anything."""
    choices = [x.shape, x.shape[:-1], x.shape[1:], x.shape[-1:], (), (x.shape[0] + 1,) if x.ndim else (2,)]
    shape = draw(st.sampled_from(choices) | hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=4))
    return draw(raw_array(tuple(shape)))


def _namespace_ok(library: str, out: Any) -> bool:
    if library == "torch":
        return isinstance(out, torch.Tensor)
    if library == "strict":
        return isinstance(out, strict._array_object.Array)
    return isinstance(out, (np.ndarray, np.generic))


def _call_all(name: str, x: np.ndarray, y: np.ndarray, opts: dict[str, Any]) -> None:
    fn = pl.get_loss(name)
    for library in LIBRARIES:
        args = (to_library(library, x), to_library(library, y))
        options = {k: to_library(library, v) for k, v in opts.items()}
        for fast in (True, False) if library == "torch" else (True,):
            try:
                with pl.fast_paths(fast), np.errstate(all="ignore"):
                    out = fn(*args, **options)
            except (ValueError, TypeError):
                continue
            except Exception as exc:  # pragma: no cover - the failure report
                raise AssertionError(
                    f"{name} on {library} (fast={fast}) raised {type(exc).__name__}: {exc}\n"
                    f"input {x.dtype}{x.shape}, target {y.dtype}{y.shape}, options "
                    f"{ {k: (f'{v.dtype}{v.shape}' if isinstance(v, np.ndarray) else v) for k, v in opts.items()} }"
                ) from exc
            assert _namespace_ok(library, out), (name, library, type(out))


@pytest.mark.parametrize("name", pl.losses())
@given(data=st.data())
def test_bad_input_raises_value_or_type_error_only(name, data):
    x = data.draw(raw_array(), label="input")
    y = data.draw(related_array(x), label="target")
    opts: dict[str, Any] = {}
    for option in _keyword_options(name):
        kind = data.draw(st.sampled_from(["skip", "skip", "odd", "array"]), label=option)
        if kind == "odd":
            opts[option] = data.draw(st.sampled_from(ODD_VALUES), label=option)
        elif kind == "array":
            opts[option] = data.draw(related_array(x), label=option)
    if data.draw(st.booleans(), label="set reduction"):
        opts["reduction"] = data.draw(st.sampled_from(REDUCTIONS), label="reduction")
    _call_all(name, x, y, opts)


@pytest.mark.parametrize("name", pl.losses())
@given(data=st.data())
def test_nan_in_targets_and_wrong_length_weights(name, data):
    """Plausible inputs with one thing wrong: NaN targets, a weight one too long, a class index out of range."""
    n, c = data.draw(st.integers(0, 4)), data.draw(st.integers(1, 4))
    x = data.draw(hnp.arrays(np.float64, (n, c), elements=st.floats(-10, 10)))
    opts_names = _keyword_options(name)
    index_target = "ignore_index" in opts_names or name == "multi_margin_loss"
    if index_target:
        y = data.draw(hnp.arrays(np.int64, (n,), elements=st.integers(-101, c)))
    else:
        y = data.draw(hnp.arrays(np.float64, (n, c), elements=st.floats(0, 1) | st.just(math.nan)))
    opts: dict[str, Any] = {}
    for option in ("weight", "pos_weight", "alpha"):
        if option in opts_names and data.draw(st.booleans()):
            length = data.draw(st.sampled_from([c, c + 1, max(c - 1, 0)]))
            opts[option] = data.draw(hnp.arrays(np.float64, (length,), elements=st.floats(-1, 2) | st.just(math.nan)))
    _call_all(name, x, y, opts)


# -- regressions found by the fuzzing ------------------------------------------------------------


@pytest.mark.parametrize("fast", [True, False], ids=["fast", "generic"])
@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("name", ["cross_entropy", "nll_loss", "softmax_focal_loss", "multi_margin_loss"])
@pytest.mark.parametrize("bad", [3, -1, -101])
def test_torch_class_index_out_of_range_is_a_value_error(name, bad, weighted, fast):
    # torch raised IndexError / RuntimeError ("Target 3 is out of bounds", "index out of range in self")
    x = torch.randn(4, 3, dtype=torch.float64)
    t = torch.tensor([0, 1, bad, 2])
    opts = {} if not weighted else {"alpha" if name == "softmax_focal_loss" else "weight": torch.ones(3, dtype=x.dtype)}
    with pl.fast_paths(fast):
        if bad == -1:  # a generic gather may read -1 from the end (no value checks off host): never a crash
            try:
                pl.get_loss(name)(x, t, **opts)
            except ValueError as exc:
                assert "target holds class index -1" in str(exc)
            return
        with pytest.raises(ValueError, match=f"target holds class index {bad} outside"):
            pl.get_loss(name)(x, t, **opts)


def test_torch_zero_classes_is_a_value_error():
    for fast in (True, False):
        with pl.fast_paths(fast), pytest.raises(ValueError, match=r"target .*outside \[0, 0\)"):
            pl.multi_margin_loss(torch.zeros(3, 0), torch.zeros(3, dtype=torch.int64))


@pytest.mark.parametrize("arg", ["input", "target"])
@pytest.mark.parametrize("bad", [math.nan, 1.5, -0.5])
def test_torch_bce_outside_unit_interval_is_a_value_error(arg, bad):
    # torch's kernel raised RuntimeError("all elements of target should be between 0 and 1"); NaN gives NaN
    x, y = torch.full((2, 3), 0.5, dtype=torch.float64), torch.ones(2, 3, dtype=torch.float64)
    (x if arg == "input" else y)[1, 2] = bad
    if math.isnan(bad):
        assert pl.binary_cross_entropy(x, y).isnan()
        return
    with pytest.raises(ValueError, match=f"{arg} of binary_cross_entropy"):
        pl.binary_cross_entropy(x, y)


@pytest.mark.parametrize("p", [torch.tensor([1, 2]), "1", 1.0, None])
def test_multi_margin_p_of_a_wrong_type_is_a_type_error(p):
    # a tensor p raised RuntimeError("Boolean value of Tensor with more than one value is ambiguous")
    with pytest.raises(TypeError, match="p must be"):
        pl.multi_margin_loss(torch.zeros(2, 3), torch.zeros(2, dtype=torch.int64), p=p)


@pytest.mark.parametrize("fast", [True, False], ids=["fast", "generic"])
@pytest.mark.parametrize("name", ["mse_loss", "l1_loss", "smooth_l1_loss", "huber_loss", "multi_margin_loss"])
@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_torch_empty_batch_is_zero(name, reduction, fast):
    # found by test_properties: native kernels gave NaN (mean of empty) or uninitialised memory (multi_margin sum)
    x = torch.zeros(0, 3, dtype=torch.float32)
    y = torch.zeros(0, dtype=torch.int64) if name == "multi_margin_loss" else torch.zeros(0, 3)
    with pl.fast_paths(fast):
        assert pl.get_loss(name)(x, y, reduction=reduction).item() == 0.0


@pytest.mark.parametrize("gamma", [0.1, 0.5, 0.99])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_focal_gradient_finite_at_saturation_with_gamma_below_one(gamma, dtype):
    # found by test_properties: d/dm m**gamma is infinite at m = 1 - p_t = 0, autograd gave inf * 0 = nan
    x = torch.tensor([[-89.0, 1e4, 0.0], [1e4, -1e4, 3.0]], dtype=dtype, requires_grad=True)
    pl.sigmoid_focal_loss(x, (x > 0).to(dtype), gamma=gamma).backward()
    assert torch.isfinite(x.grad).all()
    x.grad = None
    pl.softmax_focal_loss(x, torch.tensor([1, 0]), gamma=gamma).backward()
    assert torch.isfinite(x.grad).all()
    value = pl.softmax_focal_loss(torch.tensor([[0.0, 1.0]], dtype=dtype), torch.tensor([1]), gamma=gamma)
    p = 1 / (1 + math.exp(-1.0))
    assert value.item() == pytest.approx(-((1 - p) ** gamma) * math.log(p), rel=1e-5)


@pytest.mark.parametrize("name,option", [("huber_loss", "delta"), ("smooth_l1_loss", "beta")])
def test_threshold_beyond_float32_range(name, option):
    # torch.clamp raised RuntimeError("value cannot be converted to type float without overflow")
    x = torch.tensor([0.0, 2.0, -3.0])
    for fast in (True, False):
        with pl.fast_paths(fast):
            out = pl.get_loss(name)(x, torch.zeros(3), reduction="none", **{option: 1e300})
        expected = 0.5 * x * x if name == "huber_loss" else torch.zeros(3)
        torch.testing.assert_close(out, expected)


@pytest.mark.parametrize("name", ["cross_entropy", "nll_loss", "softmax_focal_loss", "multi_margin_loss"])
def test_int32_class_indices_on_the_generic_torch_path(name):
    # torch.take_along_dim raised RuntimeError("dtype of indices should be Long but got Int")
    x = torch.randn(4, 3, dtype=torch.float64)
    t = torch.tensor([0, 2, 1, 2])
    with pl.fast_paths(False):
        torch.testing.assert_close(pl.get_loss(name)(x, t.to(torch.int32)), pl.get_loss(name)(x, t))


def test_complex_target_of_a_pointwise_loss_is_a_type_error():
    # torch's BCE kernel raised RuntimeError / NotImplementedError; other backends cast silently with a warning
    for x, y in ((np.full(3, 0.5), np.ones(3, dtype=np.complex128)),
                 (torch.full((3,), 0.5), torch.ones(3, dtype=torch.complex128))):
        for name in ("binary_cross_entropy", "mse_loss", "sigmoid_focal_loss"):
            with pytest.raises(TypeError, match="target must have a real"):
                pl.get_loss(name)(x, y)


@pytest.mark.parametrize("name", ["cross_entropy", "nll_loss", "softmax_focal_loss"])
def test_unsigned_targets_with_the_default_ignore_index(name):
    # array-api-strict raised OverflowError comparing a uint8 target with ignore_index=-100
    x = np.log(np.full((3, 4), 0.25))
    t = np.array([0, 3, 1])
    expected = float(pl.get_loss(name)(x, t))
    for library in LIBRARIES:
        got = pl.get_loss(name)(to_library(library, x), to_library(library, t.astype(np.uint8)))
        assert float(np.asarray(got)) == pytest.approx(expected, rel=1e-12)


# -- detector recipes ------------------------------------------------------------------------------

RECIPE_CONFIG_KEYS = {
    "ssd": ["num_classes", "iou_threshold", "neg_pos_ratio", "alpha", "box_weights", "beta"],
    "faster_rcnn": ["num_classes", "rpn_fg_iou", "rpn_bg_iou", "rpn_batch_size", "rpn_positive_fraction",
                    "roi_fg_iou", "roi_bg_iou", "roi_batch_size", "roi_positive_fraction", "rpn_box_weights",
                    "roi_box_weights", "beta", "seed"],
    "yolov1": ["grid", "boxes_per_cell", "num_classes", "lambda_coord", "lambda_noobj", "conf_target", "normalize"],
}
ODD_CONFIG = [*ODD_VALUES, (1.0, 1.0, 1.0), (1.0, 1.0, 1.0, 1.0, 1.0), (0.0, 0.0, 0.0, 0.0), (1, 2, 3, math.nan),
              "iou", "one", "batch"]
RECIPES = [name for name in ("ssd", "faster_rcnn", "yolov1") if name in pl.recipes()]


def _recipe_call(recipe: Any, name: str, arrays: dict[str, np.ndarray], library: str) -> Any:
    a = {k: to_library(library, v) for k, v in arrays.items()}
    if name == "ssd":
        return recipe(a["deltas"], a["logits"], a["priors"], a["gt_boxes"], a["gt_labels"])
    if name == "faster_rcnn":
        return recipe.rpn_loss(a["anchors"], a["objectness"], a["deltas"], a["gt_boxes"], a["gt_labels"], seed=0)
    return recipe(a["pred"], a["gt_boxes"], a["gt_labels"])


@st.composite
def _boxes_xyxy(draw: Any, shape: tuple[int, ...], scale: float) -> np.ndarray:
    xy = draw(hnp.arrays(np.float64, (*shape, 2), elements=st.floats(0, scale / 2)))
    wh = draw(hnp.arrays(np.float64, (*shape, 2), elements=st.floats(0, scale / 2)))
    return np.concatenate([xy, xy + wh], -1)


@st.composite
def recipe_inputs(draw: Any, name: str, num_classes: int) -> dict[str, np.ndarray]:
    n, g, p = draw(st.integers(0, 2)), draw(st.integers(0, 3)), draw(st.integers(0, 5))
    scale = 1.0 if name == "yolov1" else 100.0
    out = {"gt_boxes": draw(_boxes_xyxy((n, g), scale)),
           "gt_labels": draw(hnp.arrays(np.int64, (n, g), elements=st.integers(-1, num_classes - 1)))}
    floats = st.floats(-5, 5)
    if name == "ssd":
        out |= {"deltas": draw(hnp.arrays(np.float64, (n, p, 4), elements=floats)),
                "logits": draw(hnp.arrays(np.float64, (n, p, num_classes), elements=floats)),
                "priors": draw(_boxes_xyxy((p,), scale))}
    elif name == "faster_rcnn":
        out |= {"anchors": draw(_boxes_xyxy((p,), scale)),
                "objectness": draw(hnp.arrays(np.float64, (n, p), elements=floats)),
                "deltas": draw(hnp.arrays(np.float64, (n, p, 4), elements=floats))}
    else:
        out["pred"] = draw(hnp.arrays(np.float64, (n, 2, 2, 2 * 5 + num_classes), elements=st.floats(0, 1)))
    # one thing wrong (or nothing): a NaN, an int dtype, a shape off by one, an empty or 1-d array
    victim = draw(st.sampled_from(sorted(out)))
    how = draw(st.sampled_from(["none", "nan", "int", "grow", "drop_axis", "empty", "label_too_big"]))
    a = out[victim]
    if how == "nan" and a.dtype.kind == "f" and a.size:
        a = a.copy()
        a.flat[draw(st.integers(0, a.size - 1))] = math.nan
    elif how == "int":
        a = a.astype(np.int64) if a.dtype.kind == "f" else a.astype(np.float64)
    elif how == "grow" and a.ndim:
        a = np.concatenate([a, a[..., :1]], axis=-1)
    elif how == "drop_axis" and a.ndim and a.shape[-1]:
        a = a[..., 0]
    elif how == "empty":
        a = a[:0]
    elif how == "label_too_big":
        out["gt_labels"] = out["gt_labels"] + num_classes
        return out
    out[victim] = a
    return out


def _expect_result_or_value_type_error(call: Any, what: str) -> Any:
    try:
        with np.errstate(all="ignore"):
            return call()
    except (ValueError, TypeError):
        return None
    except Exception as exc:  # pragma: no cover - the failure report
        raise AssertionError(f"{what} raised {type(exc).__name__}: {exc}") from exc


@pytest.mark.parametrize("name", RECIPES)
@given(data=st.data())
def test_recipe_bad_config_raises_value_or_type_error_only(name, data):
    config: dict[str, Any] = {"num_classes": 3}
    for key in RECIPE_CONFIG_KEYS[name]:
        if data.draw(st.integers(0, 3), label=f"change {key}") == 0:
            config[key] = data.draw(st.sampled_from(ODD_CONFIG), label=key)
    recipe = _expect_result_or_value_type_error(lambda: pl.get_recipe(name, **config), f"{name} config {config}")
    if recipe is None:
        return
    arrays = data.draw(recipe_inputs(name, 3 if config.get("num_classes") == 3 else 2))
    for library in ("numpy", "torch"):
        _expect_result_or_value_type_error(lambda library=library: _recipe_call(recipe, name, arrays, library),
                                           f"{name} {library} config {config}")


@pytest.mark.parametrize("name", RECIPES)
@given(data=st.data())
def test_recipe_bad_inputs_raise_value_or_type_error_only(name, data):
    num_classes = 3
    recipe = pl.get_recipe(name, num_classes=num_classes, **({"grid": 2} if name == "yolov1" else {}))
    arrays = data.draw(recipe_inputs(name, num_classes))
    for library in ("numpy", "torch"):
        shapes = {k: f"{v.dtype}{v.shape}" for k, v in arrays.items()}
        out = _expect_result_or_value_type_error(lambda library=library: _recipe_call(recipe, name, arrays, library),
                                                 f"{name} on {library} with {shapes}")
        if out is not None:
            assert set(out.components) and out.total.shape == ()


@pytest.mark.parametrize("name", [n for n in ("ssd", "faster_rcnn") if n in RECIPES])
def test_recipe_with_no_priors_on_torch(name):
    # torch's argmax/amax over an empty axis raised IndexError (fixed in the recipes)
    recipe = pl.get_recipe(name, num_classes=3)
    arrays = {"gt_boxes": np.array([[[0.0, 0.0, 10.0, 10.0]]]), "gt_labels": np.array([[1]]),
              "deltas": np.zeros((1, 0, 4)), "logits": np.zeros((1, 0, 3)), "priors": np.zeros((0, 4)),
              "anchors": np.zeros((0, 4)), "objectness": np.zeros((1, 0))}
    _expect_result_or_value_type_error(lambda: _recipe_call(recipe, name, arrays, "torch"), f"{name} no priors")


@pytest.mark.parametrize("library", LIBRARIES)
def test_unsigned_target_out_of_range_is_a_value_error(library):
    # array-api-strict raised OverflowError building the message (-1 as a uint8 fill value)
    x, t = to_library(library, np.zeros((2, 3))), to_library(library, np.array([1, 7], dtype=np.uint8))
    for name in ("nll_loss", "softmax_focal_loss", "cross_entropy"):
        with pytest.raises(ValueError, match="class index 7 outside"):
            pl.get_loss(name)(x, t)
