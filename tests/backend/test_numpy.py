"""NumPy backend fast paths against float64 closed forms, on both sides of their switches."""

import numpy as np
import pytest

import polyloss as pl


def _reference_cross_entropy(x: np.ndarray, t: np.ndarray) -> np.ndarray:
    x = x.astype(np.float64)
    m = x.max(axis=1, keepdims=True)
    return (np.log(np.exp(x - m).sum(axis=1)) + m[:, 0]) - x[np.arange(len(t)), t]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("scale", [1.0, 60.0, 84.0, 90.0, 1e4])  # unshifted logsumexp up to ~85 in float32
@pytest.mark.parametrize("reduction", ["none", "mean", "sum"])
def test_cross_entropy_row_logsumexp_with_and_without_shift(dtype, scale, reduction):
    rng = np.random.default_rng(int(scale))
    x = (scale * rng.uniform(-1, 1, (300, 21))).astype(dtype)
    x[0] = -scale  # a row far below zero
    t = rng.integers(0, 21, 300)
    got = pl.cross_entropy(x, t, reduction=reduction)
    expected = _reference_cross_entropy(x, t)
    expected = {"none": expected, "mean": expected.mean(), "sum": expected.sum()}[reduction]
    assert got.dtype == dtype and np.all(np.isfinite(got))
    rtol = 1e-5 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(got, expected, rtol=rtol, atol=rtol * scale)


def test_cross_entropy_none_gives_zero_at_ignored_rows():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((6, 4))
    t = np.array([0, -100, 3, 2, -100, 1])
    got = pl.cross_entropy(x, t, reduction="none")
    expected = _reference_cross_entropy(x, np.where(t < 0, 0, t))
    np.testing.assert_allclose(got, np.where(t < 0, 0.0, expected), rtol=1e-12)
    np.testing.assert_allclose(pl.cross_entropy(x, t, reduction="sum"), expected[t >= 0].sum(), rtol=1e-12)
