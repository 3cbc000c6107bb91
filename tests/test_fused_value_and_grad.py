"""Fused value-and-gradient (``@value_and_gradient``): the same value and gradient as the loss and its gradient run
apart, on every backend, through the NumPy kernels and the generic code, for every option the kernels cover."""

import itertools

import numpy as np
import pytest

import polyloss as pl
from polyloss.functional import _define
from polyloss.gradients import gradient_of

RNG = np.random.default_rng(7)


def _apart(name, arrays, options, cotangent):
    fn = pl.get_loss(name)
    value = fn(*arrays, **options)
    return value, gradient_of(fn)(*arrays, cotangent=cotangent, **options)


def _cases():
    x = RNG.standard_normal((6, 5)) * 3
    x3 = RNG.standard_normal((2, 3, 5)) * 3
    t = RNG.integers(0, 5, 6)
    t3 = RNG.integers(0, 5, (2, 3))
    ignored = np.where(np.arange(6) % 3 == 0, -100, t)
    w = RNG.uniform(0.0, 2.0, 5)
    q = RNG.random((6, 5))
    b = RNG.integers(0, 2, (6, 5)).astype(float)
    y = RNG.standard_normal((6, 5))
    for reduction, eps, weight, target in itertools.product(("mean", "sum", "none"), (0.0, 0.3, 1.0), (None, w),
                                                            (t, ignored, q)):
        yield "cross_entropy", (x, target), {"reduction": reduction, "label_smoothing": eps, "weight": weight}
    yield "cross_entropy", (x3, t3), {"weight": w, "label_smoothing": 0.1}
    yield "cross_entropy", (x3, t3), {"reduction": "none"}
    yield "cross_entropy", (x * 1e30, t), {"label_smoothing": 0.1}
    yield "cross_entropy", (x * 1e30, q), {}
    for reduction, alpha, gamma, target in itertools.product(("mean", "sum", "none"), (None, 0.5, w), (0.0, 0.5, 2.0),
                                                             (t, ignored)):
        yield "softmax_focal_loss", (x, target), {"reduction": reduction, "alpha": alpha, "gamma": gamma}
    for reduction, p, weight in itertools.product(("mean", "sum", "none"), (1, 2), (None, w)):
        yield "multi_margin_loss", (x, t), {"reduction": reduction, "p": p, "weight": weight}
        yield "multi_margin_loss", (x3, t3), {"reduction": reduction, "p": p, "weight": weight}
    for reduction, weight in itertools.product(("mean", "sum", "none"), (None, y[0] ** 2)):
        yield "binary_cross_entropy_with_logits", (x, b), {"reduction": reduction, "weight": weight}
        yield "sigmoid_focal_loss", (x, b), {"reduction": reduction}
        for name in ("mse_loss", "l1_loss"):
            yield name, (x, y), {"reduction": reduction, "weight": weight}
        yield "smooth_l1_loss", (x, y), {"reduction": reduction, "weight": weight, "beta": 0.5}
        yield "smooth_l1_loss", (x, y), {"reduction": reduction, "beta": 0.0}
        yield "huber_loss", (x, y), {"reduction": reduction, "weight": weight, "delta": 0.7}
    # CTC: the loss from the gradient's own forward recursion; impossible and poisoned samples included
    z = RNG.standard_normal((7, 4, 5))
    log_probs = z - np.log(np.exp(z).sum(-1, keepdims=True))
    poisoned = log_probs.copy()
    poisoned[2, 1, 4] = np.nan
    labels = RNG.integers(1, 5, (4, 3))
    for reduction, zero_infinity, lp in itertools.product(("mean", "sum", "none"), (False, True),
                                                         (log_probs, poisoned)):
        yield "ctc_loss", (lp, labels, np.array([7, 5, 2, 0]), np.array([3, 2, 3, 0])), {
            "reduction": reduction, "zero_infinity": zero_infinity}


CASES = list(_cases())


@pytest.mark.parametrize("fast", [True, False], ids=["fast", "generic"])
@pytest.mark.parametrize(("name", "arrays", "options"), CASES, ids=[f"{c[0]}-{i}" for i, c in enumerate(CASES)])
def test_fused_equals_the_loss_and_its_gradient_apart(xp, name, arrays, options, fast):
    arrays = tuple(xp.asarray(a) for a in arrays)
    options = {k: xp.asarray(v) if isinstance(v, np.ndarray) else v for k, v in options.items()}
    value_shape = tuple(pl.get_loss(name)(*arrays, **options).shape)
    cotangents = [None, 2.5]
    if value_shape:
        cotangents.append(xp.asarray(RNG.standard_normal(value_shape)))
    for cotangent in cotangents:
        with pl.fast_paths(fast):
            value, grad = pl.value_and_grad(name, *arrays, cotangent=cotangent, **options)
            ref_value, ref_grad = _apart(name, arrays, options, cotangent)
        np.testing.assert_allclose(xp.to_numpy(value), xp.to_numpy(ref_value), rtol=max(xp.rtol, 1e-6), atol=xp.atol)
        np.testing.assert_allclose(xp.to_numpy(grad), xp.to_numpy(ref_grad), rtol=max(xp.rtol, 1e-6), atol=xp.atol)
        assert grad.dtype == arrays[0].dtype and tuple(grad.shape) == tuple(arrays[0].shape)


def test_the_inputs_are_left_untouched():
    x, t = RNG.standard_normal((4, 3)), np.array([0, 2, 1, 2])
    for name, target in (("cross_entropy", t), ("multi_margin_loss", t), ("softmax_focal_loss", t),
                         ("mse_loss", x[::-1].copy()), ("huber_loss", x[::-1].copy())):
        before = x.copy(), target.copy()
        pl.value_and_grad(name, x, target)
        assert np.array_equal(x, before[0]) and np.array_equal(target, before[1]), name


def test_the_value_is_the_forward_fast_path_to_the_last_bit():
    x, t = np.linspace(-1, 1, 6).reshape(2, 3), np.array([0, 2])
    assert float(pl.value_and_grad("cross_entropy", x, t)[0]) == float(pl.cross_entropy(x, t))


def test_a_replaced_gradient_is_used_instead_of_the_fused_one():
    def doubled(input, target, *, weight=None, reduction="mean", cotangent=None):
        return 2 * pl.functional.mse_loss_grad(input, target, weight=weight, reduction=reduction, cotangent=cotangent)

    x, y = np.array([1.0, 2.0]), np.zeros(2)
    pl.gradients.register_gradient(pl.mse_loss, doubled, replace=True)
    try:
        _, grad = pl.value_and_grad(pl.mse_loss, x, y)
    finally:
        pl.gradients.register_gradient(pl.mse_loss, pl.functional.mse_loss_grad, replace=True)
    np.testing.assert_allclose(grad, [2.0, 4.0])
    assert pl.mse_loss in _define.VALUE_AND_GRADS


def test_nan_is_never_hidden_by_the_fused_kernels():
    x, t = RNG.standard_normal((3, 4)), np.array([0, 1, 3])
    x[1, 2] = np.nan
    with np.errstate(all="ignore"):
        for name in ("cross_entropy", "multi_margin_loss", "softmax_focal_loss"):
            value, grad = pl.value_and_grad(name, x, t, reduction="none")
            assert np.isnan(value[1]) and np.isnan(grad[1]).any() and np.isfinite(value[[0, 2]]).all(), name
