"""CTC loss against ``torch.nn.functional.ctc_loss`` (float64): values and gradients on every backend."""

from __future__ import annotations

import numpy as np
import pytest
from _support import F
from _support import torch

import polyloss as pl

REDUCTIONS = ["none", "mean", "sum"]
# a recursion over T steps is a graph of thousands of tasks on dask: tests/backend/test_dask.py runs CTC there once
pytestmark = pytest.mark.xp_exclude("dask")


def _data(rng, t=12, n=5, c=6, s=4, blank=0):
    x = rng.normal(size=(t, n, c))
    log_probs = x - np.log(np.exp(x).sum(-1, keepdims=True))
    labels = [k for k in range(c) if k != blank]
    targets = rng.choice(labels, size=(n, s))
    targets[1, 1] = targets[1, 0]  # a repeated label needs a blank between
    input_lengths = np.array([t, t - 2, 3, 0, t][:n])
    target_lengths = np.array([s, s - 1, 2, 0, 0][:n])
    return log_probs, targets, input_lengths, target_lengths


def _torch_reference(log_probs, targets, input_lengths, target_lengths, **options):
    lp = torch.tensor(log_probs, requires_grad=True)
    out = F.ctc_loss(lp, torch.tensor(targets), torch.tensor(input_lengths), torch.tensor(target_lengths), **options)
    out.sum().backward()
    return out.detach().numpy(), lp.grad.numpy()


def _check(xp, log_probs, targets, input_lengths, target_lengths, options):
    expected, ref_grad = _torch_reference(log_probs, targets, input_lengths, target_lengths, **options)
    args = (xp.asarray(log_probs), xp.asarray(targets))
    lengths = {"input_lengths": xp.asarray(input_lengths), "target_lengths": xp.asarray(target_lengths)}
    scale = 10 * xp.rtol
    for fast in (True, False):
        with pl.fast_paths(fast):
            value = pl.ctc_loss(*args, **lengths, **options)
            np.testing.assert_allclose(xp.to_numpy(value), expected, rtol=scale, atol=10 * xp.atol)
            v2, grad = pl.value_and_grad(pl.ctc_loss, *args, **lengths, **options)
            np.testing.assert_allclose(xp.to_numpy(v2), xp.to_numpy(value), rtol=scale, atol=10 * xp.atol)
            np.testing.assert_allclose(xp.to_numpy(grad), ref_grad, rtol=scale, atol=10 * xp.atol)
            if xp.is_torch:
                lp = xp.asarray(log_probs, requires_grad=True)
                pl.ctc_loss(lp, args[1], **lengths, **options).sum().backward()
                np.testing.assert_allclose(xp.to_numpy(lp.grad), ref_grad, rtol=scale, atol=10 * xp.atol)


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("blank", [0, 3])
def test_ctc_matches_torch(xp, reduction, blank):
    log_probs, targets, input_lengths, target_lengths = _data(np.random.default_rng(blank), blank=blank)
    _check(xp, log_probs, targets, input_lengths, target_lengths, {"blank": blank, "reduction": reduction})


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("zero_infinity", [False, True])
def test_ctc_impossible_alignments(xp, reduction, zero_infinity):
    """A target longer than its input allows (repeats need a blank between) is inf, or 0 with zero_infinity."""
    log_probs, targets, _, _ = _data(np.random.default_rng(2), n=3)
    targets[0] = [1, 1, 1, 1]  # needs 7 frames
    input_lengths, target_lengths = np.array([6, 12, 2]), np.array([4, 4, 3])
    _check(xp, log_probs, targets, input_lengths, target_lengths,
           {"reduction": reduction, "zero_infinity": zero_infinity})


def test_ctc_lengths_as_sequences_and_narrow_targets(xp):
    log_probs, targets, input_lengths, target_lengths = _data(np.random.default_rng(4))
    expected, _ = _torch_reference(log_probs, targets, input_lengths, target_lengths)
    out = pl.ctc_loss(xp.asarray(log_probs), xp.asarray(targets, dtype=xp.ns.int32), list(map(int, input_lengths)),
                      tuple(map(int, target_lengths)))
    np.testing.assert_allclose(xp.to_numpy(out), expected, rtol=10 * xp.rtol)


def test_ctc_gradient_through_log_softmax_is_the_true_gradient():
    """PyTorch's convention (e^lp - gamma) differs from d/d lp by e^lp, which the log_softmax cancels."""
    rng = np.random.default_rng(5)
    log_probs, targets, input_lengths, target_lengths = _data(rng)
    _, grad = pl.value_and_grad(pl.ctc_loss, log_probs, targets, input_lengths=input_lengths,
                                target_lengths=target_lengths, reduction="sum")
    logits_grad = grad - np.exp(log_probs) * grad.sum(-1, keepdims=True)  # back through log_softmax
    h, numeric = 1e-6, np.zeros_like(log_probs)
    for i in range(log_probs.size):
        e = np.zeros_like(log_probs)
        e.flat[i] = h

        def at(z):
            lp = z - np.log(np.exp(z).sum(-1, keepdims=True))
            return float(pl.ctc_loss(lp, targets, input_lengths, target_lengths, reduction="sum"))

        numeric.flat[i] = (at(log_probs + e) - at(log_probs - e)) / (2 * h)
    np.testing.assert_allclose(logits_grad, numeric, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_numpy_in_place_recursions_equal_the_generic_steps(dtype, monkeypatch):
    """NumPy runs both log-space recursions in preallocated buffers (the backend's kernels, which the scaled
    ``ctc_loss.posterior`` kernel falls back to, set aside here); with fast paths off the generic steps run:
    the same values and gradients to the last bit, edge samples included (an empty input, an empty target, a
    target too long for its input, a label of probability 0, a NaN frame)."""
    from polyloss.backend import numpy as numpy_backend

    monkeypatch.delitem(numpy_backend.FAST_PATHS, "ctc_loss.posterior")
    rng = np.random.default_rng(11)
    log_probs, targets, input_lengths, target_lengths = _data(rng, t=9, n=5, c=6, s=4)
    input_lengths[2], target_lengths[2] = 2, 2  # needs 3 frames: impossible
    log_probs[:, 0, targets[0, 1]] = -np.inf
    log_probs[3, 1, 2] = np.nan
    log_probs = log_probs.astype(dtype)
    for reduction in REDUCTIONS:
        outs = []
        for fast in (True, False):
            with pl.fast_paths(fast):
                outs.append(pl.value_and_grad("ctc_loss", log_probs, targets, input_lengths, target_lengths,
                                              reduction=reduction, zero_infinity=reduction == "sum"))
        (v_fast, g_fast), (v_slow, g_slow) = outs
        np.testing.assert_array_equal(v_fast, v_slow)
        np.testing.assert_array_equal(g_fast, g_slow)
