"""NumPy cross-entropy and NLL of class indices: the row pick on any memory layout, and ``ignore_index``
dropped only where no target equals it."""

from __future__ import annotations

import numpy as np
import pytest

import polyloss as pl
from polyloss.backend.numpy import NumpyBackend
from polyloss.functional.classification import class_indices

LOSSES = ("cross_entropy", "nll_loss")


def _log_probabilities(rng, rows, classes, dtype=np.float64):
    x = rng.standard_normal((rows, classes))
    return (x - np.log(np.exp(x).sum(axis=1, keepdims=True))).astype(dtype)


@pytest.mark.parametrize("name", LOSSES)
@pytest.mark.parametrize("layout", ["fortran", "column_slice", "row_step"])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_any_memory_layout_equals_the_contiguous_copy(name, layout, reduction):
    rng = np.random.default_rng(0)
    base = _log_probabilities(rng, 40, 14, np.float32)
    x = {"fortran": np.asfortranarray(base), "column_slice": base[:, 2:9], "row_step": base[::2]}[layout]
    t = rng.integers(0, x.shape[1], x.shape[0])
    t[::5] = -100
    loss = pl.get_loss(name)
    got = loss(x, t, reduction=reduction)
    expected = loss(np.ascontiguousarray(x), t, reduction=reduction)
    if name == "nll_loss":
        np.testing.assert_array_equal(got, expected)
    else:  # the row log-sum-exp may add in another order
        np.testing.assert_allclose(got, expected, rtol=1e-6)


@pytest.mark.parametrize("name", LOSSES)
@pytest.mark.parametrize("dtype", [np.int64, np.int32, np.uint8])
def test_ignore_index_no_target_equals_is_the_same_as_none(name, dtype):
    rng = np.random.default_rng(1)
    x = _log_probabilities(rng, 33, 6)
    t = rng.integers(0, 6, 33).astype(dtype)
    loss = pl.get_loss(name)
    for ignore_index in (-100, 6, 1000):
        np.testing.assert_array_equal(loss(x, t, ignore_index=ignore_index), loss(x, t, ignore_index=None))


@pytest.mark.parametrize("name", LOSSES)
@pytest.mark.parametrize("ignore_index", [-1, 0, 3, 5])
def test_targets_equal_to_ignore_index_are_left_out(name, ignore_index):
    rng = np.random.default_rng(2)
    x = _log_probabilities(rng, 30, 6)
    t = rng.integers(0, 6, 30)
    t[::4] = ignore_index
    kept = t != ignore_index
    loss = pl.get_loss(name)
    np.testing.assert_allclose(loss(x, t, ignore_index=ignore_index), loss(x[kept], t[kept], ignore_index=None),
                               rtol=1e-14)
    np.testing.assert_allclose(loss(x, t, ignore_index=ignore_index, reduction="sum"),
                               loss(x[kept], t[kept], reduction="sum"), rtol=1e-14)


def test_class_indices_returns_int64_and_the_ignore_index_left_to_apply():
    backend = NumpyBackend()

    def ignore(t, c, ignore_index):
        wide, left = class_indices(backend, t, c, ignore_index)
        assert wide.dtype == np.int64
        np.testing.assert_array_equal(wide, t.astype(np.int64))
        return left

    t = np.array([0, 2, 1])
    assert ignore(t, 3, -100) is None
    assert ignore(t, 3, 3) is None
    assert ignore(t, 3, 1) == 1  # a class: targets may equal it
    assert ignore(np.array([0, -100]), 3, -100) == -100
    assert ignore(np.zeros(0, dtype=np.int64), 3, -100) is None
    assert ignore(t.astype(np.uint8), 3, -100) is None  # uint8 cannot hold -100
    assert ignore(np.array([0, 255], dtype=np.uint8), 3, 255) == 255
    with pytest.raises(ValueError, match="class index 3 outside"):
        class_indices(backend, np.array([0, 3]), 3, -100)


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.uint32, np.uint64, np.int8, np.int16, np.int32])
@pytest.mark.parametrize("name", LOSSES)
def test_every_integer_dtype_equals_int64_on_the_fast_path(name, dtype):
    rng = np.random.default_rng(3)
    x = _log_probabilities(rng, 20, 5)
    t = rng.integers(0, 5, 20)
    loss = pl.get_loss(name)
    for reduction in ("mean", "sum", "none"):
        np.testing.assert_array_equal(loss(x, t.astype(dtype), reduction=reduction), loss(x, t, reduction=reduction))


def test_uint64_above_int64_max_is_out_of_range():
    x = np.zeros((2, 3))
    big = 2**63 + 5
    for name in LOSSES:
        for fast in (True, False):
            with pl.fast_paths(fast), pytest.raises(ValueError, match=f"class index {big} outside"):
                pl.get_loss(name)(x, np.array([0, big], dtype=np.uint64))
    # 2**64 - 100 wraps to -100 as int64: it is not the default ignore_index
    with pytest.raises(ValueError, match=f"class index {2**64 - 100} outside"):
        pl.cross_entropy(x, np.array([0, 2**64 - 100], dtype=np.uint64))
    # an ignore_index above int64's max, held by a uint64 target
    value = pl.cross_entropy(x, np.array([1, 2**64 - 1], dtype=np.uint64), ignore_index=2**64 - 1)
    np.testing.assert_allclose(value, np.log(3.0))
