"""Bad input: a clear ValueError/TypeError naming the argument, never a silent broadcast."""

from __future__ import annotations

import numpy as np
import pytest

import polyloss as pl

X = np.ones((4, 3))
T = np.array([0, 1, 2, 0])
POINTWISE = ["mse_loss", "l1_loss", "smooth_l1_loss", "huber_loss", "binary_cross_entropy",
             "binary_cross_entropy_with_logits", "sigmoid_focal_loss", "hinge_loss", "squared_hinge_loss", "kl_div"]
CLASS_AXIS = ["cross_entropy", "nll_loss", "multi_margin_loss", "softmax_focal_loss"]


@pytest.mark.parametrize("name", POINTWISE)
def test_pointwise_shape_mismatch(xp, name):
    with pytest.raises(ValueError, match=r"target shape \(4, 1\) must equal input shape \(4, 3\)"):
        pl.get_loss(name)(xp.asarray(X * 0.5), xp.asarray(np.ones((4, 1))))


@pytest.mark.parametrize("name", POINTWISE + CLASS_AXIS)
def test_integer_input_is_type_error(xp, name):
    target = T if name in CLASS_AXIS else np.ones((4, 3))
    with pytest.raises(TypeError, match="input must have a real floating dtype"):
        pl.get_loss(name)(xp.asarray(np.ones((4, 3), dtype=np.int64)), xp.asarray(target))


@pytest.mark.parametrize("name", POINTWISE + CLASS_AXIS)
def test_unknown_reduction(xp, name):
    target = T if name in CLASS_AXIS else X * 0.5
    with pytest.raises(ValueError, match=r"reduction must be one of .* got 'average'"):
        pl.get_loss(name)(xp.asarray(X * 0.5), xp.asarray(target), reduction="average")


@pytest.mark.parametrize("name", CLASS_AXIS)
def test_class_target_shape_mismatch(xp, name):
    with pytest.raises(ValueError, match=r"target shape \(3,\) must equal input shape \(4, 3\)"):
        pl.get_loss(name)(xp.asarray(X), xp.asarray(np.array([0, 1, 2])))


@pytest.mark.parametrize("name", ["nll_loss", "multi_margin_loss", "softmax_focal_loss"])
def test_floating_target_where_indices_are_needed(xp, name):
    with pytest.raises(TypeError, match="target must hold integer class indices"):
        pl.get_loss(name)(xp.asarray(X), xp.asarray(np.array([0.0, 1.0, 2.0, 0.0])))


def test_floating_indices_for_cross_entropy(xp):
    with pytest.raises(TypeError, match="class indices must be integers"):
        pl.cross_entropy(xp.asarray(X), xp.asarray(np.array([0.0, 1.0, 2.0, 0.0])))


@pytest.mark.parametrize("name", ["cross_entropy", "nll_loss", "multi_margin_loss"])
def test_class_weight_of_wrong_length(xp, name):
    with pytest.raises(ValueError, match=r"weight must have shape \(3,\) \(one per class\), got \(4,\)"):
        pl.get_loss(name)(xp.asarray(X), xp.asarray(T), weight=xp.asarray(np.ones(4)))


def test_alpha_of_wrong_length(xp):
    with pytest.raises(ValueError, match=r"alpha must have shape \(3,\)"):
        pl.softmax_focal_loss(xp.asarray(X), xp.asarray(T), alpha=xp.asarray(np.ones(2)))


@pytest.mark.parametrize("name", ["mse_loss", "binary_cross_entropy_with_logits"])
def test_weight_that_does_not_broadcast(xp, name):
    with pytest.raises(ValueError, match=r"weight shape \(2,\) does not broadcast to input shape \(4, 3\)"):
        pl.get_loss(name)(xp.asarray(X * 0.5), xp.asarray(X * 0.5), weight=xp.asarray(np.ones(2)))


def test_pos_weight_that_does_not_broadcast(xp):
    with pytest.raises(ValueError, match=r"pos_weight shape \(4,\) does not broadcast"):
        pl.binary_cross_entropy_with_logits(xp.asarray(X), xp.asarray(X), pos_weight=xp.asarray(np.ones(4)))


@pytest.mark.parametrize("name,option,value,match", [
    ("smooth_l1_loss", "beta", -1.0, "beta must be >= 0"),
    ("huber_loss", "delta", 0.0, "delta must be > 0"),
    ("huber_loss", "delta", -2.0, "delta must be > 0"),
    ("hinge_loss", "margin", -0.5, "margin must be >= 0"),
    ("squared_hinge_loss", "margin", -0.5, "margin must be >= 0"),
    ("sigmoid_focal_loss", "gamma", -1.0, "gamma must be >= 0"),
    ("sigmoid_focal_loss", "alpha", 1.5, "alpha must be <= 1"),
])
def test_bad_scalar_options(xp, name, option, value, match):
    with pytest.raises(ValueError, match=match):
        pl.get_loss(name)(xp.asarray(X * 0.5), xp.asarray(X * 0.5), **{option: value})


@pytest.mark.parametrize("smoothing", [-0.1, 1.5])
def test_label_smoothing_outside_unit_interval(xp, smoothing):
    with pytest.raises(ValueError, match="label_smoothing must be"):
        pl.cross_entropy(xp.asarray(X), xp.asarray(T), label_smoothing=smoothing)


def test_multi_margin_p_and_margin(xp):
    with pytest.raises(ValueError, match="p must be 1 or 2, got 3"):
        pl.multi_margin_loss(xp.asarray(X), xp.asarray(T), p=3)
    with pytest.raises(ValueError, match="margin must be >= 0"):
        pl.multi_margin_loss(xp.asarray(X), xp.asarray(T), margin=-1.0)


def test_option_type_errors(xp):
    with pytest.raises(TypeError, match="beta must be a Python number"):
        pl.smooth_l1_loss(xp.asarray(X), xp.asarray(X), beta="1")
    with pytest.raises(TypeError, match="axis must be an int"):
        pl.cross_entropy(xp.asarray(X), xp.asarray(T), axis=1.0)
    with pytest.raises(ValueError, match="axis=2 is out of range"):
        pl.cross_entropy(xp.asarray(X), xp.asarray(T), axis=2)
    with pytest.raises(TypeError, match="log_target must be a bool"):
        pl.kl_div(xp.asarray(X), xp.asarray(X), log_target=1)


@pytest.mark.parametrize("name", ["cross_entropy", "nll_loss", "multi_margin_loss", "softmax_focal_loss"])
@pytest.mark.parametrize("bad", [3, -1, 7])
def test_class_index_out_of_range_on_host(name, bad):
    import array_api_strict as s

    for asarray in (np.asarray, s.asarray):
        target = asarray(np.array([0, 1, bad, 0]))
        with pytest.raises(ValueError, match=rf"target holds class index {bad} outside \[0, 3\)"):
            pl.get_loss(name)(asarray(X), target)


def test_ignore_index_is_not_out_of_range():
    assert np.isfinite(pl.cross_entropy(X, np.array([0, -100, 2, 0])))
    assert np.isfinite(pl.cross_entropy(X, np.array([0, 7, 2, 0]), ignore_index=7))


def test_hinge_labels_outside_set_on_host():
    with pytest.raises(ValueError, match=r"labels in \{-1, 1\} or \{0, 1\}"):
        pl.hinge_loss(np.zeros(3), np.array([1.0, 2.0, -1.0]))


def test_zero_dim_input_for_class_axis():
    with pytest.raises(ValueError, match="input must have a class axis"):
        pl.cross_entropy(np.asarray(1.0), np.asarray(0))


def test_python_number_weight_is_type_error():
    with pytest.raises(TypeError, match="weight must be an array"):
        pl.mse_loss(np.zeros(3), np.zeros(3), weight=2.0)
    with pytest.raises(TypeError, match=r"weight must be an array of shape \(3,\)"):
        pl.cross_entropy(X, T, weight=2.0)


@pytest.mark.parametrize("name", ["cross_entropy", "nll_loss", "softmax_focal_loss"])
def test_ignore_index_type(xp, name):
    with pytest.raises(TypeError, match="ignore_index must be an int or None, got float"):
        pl.get_loss(name)(xp.asarray(X), xp.asarray(T), ignore_index=1.5)


@pytest.mark.parametrize("name", ["cross_entropy", "nll_loss", "softmax_focal_loss"])
def test_ignore_index_none_ignores_nothing(xp, name):
    x = np.random.default_rng(0).normal(size=(4, 3))
    none = xp.to_numpy(pl.get_loss(name)(xp.asarray(x), xp.asarray(T), ignore_index=None))
    default = xp.to_numpy(pl.get_loss(name)(xp.asarray(x), xp.asarray(T)))
    np.testing.assert_allclose(none, default, rtol=xp.rtol)
