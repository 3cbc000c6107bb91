"""NumPy's scaled linear-space CTC kernel (``ctc_loss.posterior``) against the log-space recursions (fast paths
off) and ``torch.nn.functional.ctc_loss``, on random data and on inputs built to make it fall back to log space.

Tolerances: float64 values rtol 1e-12, gradients atol 1e-11 (they are O(1)) against the generic path and PyTorch;
float32 (computed in float64, then rounded) within 1e-6 of the float64 computation, PyTorch's float32 values within
rtol 2e-6 and gradients within atol 2e-5 * logit scale (PyTorch's own float32 rounding: 1e-4 at scale 10), the
generic float32 steps within rtol 1e-5 / atol 5e-5; a sample that falls back gives the log-space numbers to the last
bit.
"""

from __future__ import annotations

import numpy as np
import pytest
from _support import F
from _support import torch

import polyloss as pl
from polyloss.backend import numpy as numpy_backend
from polyloss.functional import ctc

VALUE_RTOL, GRAD_ATOL = 1e-12, 1e-11


def _random(rng, t=40, n=6, c=8, s=10, scale=1.0, dtype="float64"):
    x = rng.normal(size=(t, n, c)) * scale
    log_probs = (x - np.log(np.exp(x).sum(-1, keepdims=True))).astype(dtype)
    targets = rng.integers(1, c, size=(n, s))
    targets[0, 1:4] = targets[0, 0]  # repeated labels need blanks between
    input_lengths = rng.integers(max(1, t // 2), t + 1, size=n)
    input_lengths[1:2] = t
    target_lengths = rng.integers(1, s + 1, size=n)
    target_lengths[2:3] = 0  # an empty target
    return log_probs, targets, input_lengths, target_lengths


def _scaled(log_probs, targets, input_lengths, target_lengths, blank=0):
    """The kernel alone: ``(nll, occupancy, exact)``, before any fallback."""
    lt = ctc._lattice(log_probs, targets, input_lengths, target_lengths, blank, "none", False)
    return numpy_backend._ctc_scaled(lt.lp, lt.labels, lt.skip, lt.in_len, lt.ext_len)


def _fast_and_generic(*args, **options):
    out = []
    for fast in (True, False):
        with pl.fast_paths(fast), np.errstate(all="ignore"):
            out.append(pl.value_and_grad("ctc_loss", *args, **options))
    return out


def _torch(log_probs, targets, input_lengths, target_lengths, **options):
    lp = torch.tensor(log_probs, requires_grad=True)
    out = F.ctc_loss(lp, torch.tensor(targets), torch.tensor(input_lengths), torch.tensor(target_lengths), **options)
    out.sum().backward()
    return out.detach().numpy(), lp.grad.numpy()


@pytest.mark.parametrize("scale", [0.3, 1.0, 3.0, 10.0])
@pytest.mark.parametrize("reduction", ["none", "mean"])
def test_scaled_kernel_matches_the_log_space_path_and_torch(scale, reduction):
    rng = np.random.default_rng(int(scale * 10))
    args = _random(rng, scale=scale)
    assert _scaled(*args)[2].all()  # no sample fell back: the linear-space numbers are compared
    (value, grad), (ref_value, ref_grad) = _fast_and_generic(*args, reduction=reduction)
    np.testing.assert_allclose(value, ref_value, rtol=VALUE_RTOL)
    np.testing.assert_allclose(grad, ref_grad, rtol=0, atol=GRAD_ATOL)
    torch_value, torch_grad = _torch(*args, reduction=reduction)
    np.testing.assert_allclose(value, torch_value, rtol=VALUE_RTOL)
    np.testing.assert_allclose(grad, torch_grad, rtol=0, atol=GRAD_ATOL)


def test_scaled_kernel_at_the_benchmark_size():
    rng = np.random.default_rng(0)
    args = _random(rng, t=200, n=16, c=30, s=40)
    assert _scaled(*args)[2].all()
    (value, grad), (ref_value, ref_grad) = _fast_and_generic(*args, reduction="none")
    np.testing.assert_allclose(value, ref_value, rtol=VALUE_RTOL)
    np.testing.assert_allclose(grad, ref_grad, rtol=0, atol=GRAD_ATOL)


@pytest.mark.parametrize("scale", [1.0, 10.0])
def test_float32_is_computed_in_float64_then_rounded(scale):
    """float32 in, float32 out, within 1e-6 of the float64 computation on the same inputs (the float32 log-space
    steps, PyTorch's and the generic ones, are 100x further off at scale 10); PyTorch float32 within its rounding."""
    rng = np.random.default_rng(3)
    args = _random(rng, scale=scale, dtype="float32")
    value, grad = pl.value_and_grad("ctc_loss", *args, reduction="none")
    assert value.dtype == grad.dtype == np.float32
    with pl.fast_paths(False):
        truth, true_grad = pl.value_and_grad("ctc_loss", args[0].astype(np.float64), *args[1:], reduction="none")
    np.testing.assert_allclose(value, truth, rtol=1e-6)
    np.testing.assert_allclose(grad, true_grad, rtol=0, atol=1e-6)
    torch_value, torch_grad = _torch(*args, reduction="none")
    np.testing.assert_allclose(value, torch_value, rtol=2e-6)
    np.testing.assert_allclose(grad, torch_grad, rtol=0, atol=2e-5 * scale)


def _dead_end(k, s=20, t=25):
    """Blank at probability ~1 everywhere, every label at e^-k: the all-blank alignments dominate the forward
    recursion but cannot finish the s labels in t frames; the live alignments' share of the forward mass falls
    below float64's range for k >= ~37 (e^-k per label already emitted): the linear-space recursion loses them."""
    x = np.full((t, 1, s + 1), -float(k))
    x[:, :, 0] = 0.0
    log_probs = x - np.log(np.exp(x).sum(-1, keepdims=True))
    return log_probs, np.arange(1, s + 1)[None, :], np.array([t]), np.array([s])


@pytest.mark.parametrize(("k", "linear_alone"), [(30.0, "exact"), (37.7, "finite but wrong"), (45.0, "infinite")])
def test_a_dominant_path_that_dies_falls_back_to_log_space(k, linear_alone):
    args = _dead_end(k)
    nll, _, exact = _scaled(*args)
    (value, grad), (ref_value, ref_grad) = _fast_and_generic(*args, reduction="none")
    assert np.isfinite(ref_value).all() and ref_value[0] > 19 * k  # ~ s * k: finite in log space
    if linear_alone == "exact":
        assert exact[0]
        np.testing.assert_allclose(value, ref_value, rtol=VALUE_RTOL)
        np.testing.assert_allclose(grad, ref_grad, rtol=0, atol=GRAD_ATOL)
        return
    assert not exact[0]  # the underflow bound flags the sample ...
    if linear_alone == "infinite":
        assert nll[0] == np.inf
    else:  # ... where the linear-space numbers alone would be silently wrong
        assert np.isfinite(nll[0]) and abs(nll[0] - ref_value[0]) > 1e-3
    np.testing.assert_array_equal(value, ref_value)  # the log-space numbers, to the last bit
    np.testing.assert_array_equal(grad, ref_grad)
    torch_value, torch_grad = _torch(*args, reduction="none")
    np.testing.assert_allclose(value, torch_value, rtol=VALUE_RTOL)
    np.testing.assert_allclose(grad, torch_grad, rtol=0, atol=GRAD_ATOL)


def _mp_posterior(lp, labels, blank):
    """``(nll, occupancy (T, L))`` of one sample in 50-digit arithmetic (mpmath): the unscaled recursions."""
    mp = pytest.importorskip("mpmath")
    with mp.workdps(50):
        t_max, ell = lp.shape[0], len(labels)
        y = [[mp.exp(mp.mpf(float(lp[t, k]))) for k in labels] for t in range(t_max)]
        skip = [s >= 2 and labels[s] != blank and labels[s] != labels[s - 2] for s in range(ell)]
        alpha = [[mp.mpf(0)] * ell for _ in range(t_max)]
        beta = [[mp.mpf(0)] * ell for _ in range(t_max)]
        alpha[0][: min(2, ell)] = y[0][: min(2, ell)]
        beta[-1][max(0, ell - 2):] = [mp.mpf(1)] * min(2, ell)
        for t in range(1, t_max):
            for s in range(ell):
                alpha[t][s] = y[t][s] * sum(alpha[t - 1][r] for r in (s, s - 1, s - 2 if skip[s] else -1) if r >= 0)
        for t in range(t_max - 2, -1, -1):
            for s in range(ell):
                beta[t][s] = sum(y[t + 1][r] * beta[t + 1][r] for r in (s, s + 1, s + 2) if r < ell
                                 and (r < s + 2 or skip[r]))
        p = alpha[-1][-1] + (alpha[-1][-2] if ell > 1 else 0)
        occupancy = [[float(alpha[t][s] * beta[t][s] / p) for s in range(ell)] for t in range(t_max)]
        return float(-mp.log(p)), np.array(occupancy)


@pytest.mark.parametrize("seed", [32, 60, 159])
def test_peaked_logits_whose_alpha_beta_products_leave_the_normal_range(seed):
    """Logits of scale 100: at some steps alpha and beta are each far inside float64's range but their products
    are not (their overlap is below 1e-300); alpha is rescaled before the products, and the bound counts their
    roundings (unscaled products once gave occupancies off by up to 2e-4 here). Against 50-digit arithmetic the
    kept samples are within 1e-15 (the log-space steps: 1e-12)."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(51, 4, 7)) * 100
    log_probs = x - x.max(-1, keepdims=True)
    log_probs -= np.log(np.exp(log_probs).sum(-1, keepdims=True))
    args = (log_probs, rng.integers(0, 6, size=(4, 13)), np.full(4, 51), np.full(4, 13))
    nll, occupancy, exact = _scaled(*args, blank=6)
    assert exact.any() and not exact.all()
    labels = ctc._lattice(*args, 6, "none", False).labels
    for i in np.flatnonzero(exact):
        true_nll, true_occupancy = _mp_posterior(log_probs[:, i], labels[i].tolist(), 6)
        assert abs(nll[i] - true_nll) <= 1e-15 * true_nll
        np.testing.assert_allclose(occupancy[:, i], true_occupancy, rtol=0, atol=1e-15)
    (value, grad), (ref_value, ref_grad) = _fast_and_generic(*args, blank=6, reduction="none")
    np.testing.assert_allclose(value, ref_value, rtol=VALUE_RTOL)
    np.testing.assert_allclose(grad, ref_grad, rtol=0, atol=GRAD_ATOL)


def _adversarial(dtype):
    """One sample per edge: (label, whether the linear-space kernel keeps it)."""
    rng = np.random.default_rng(5)
    t, c, s = 12, 6, 4
    log_probs, targets, input_lengths, target_lengths = _random(rng, t=t, n=11, c=c, s=s)
    rows = []
    rows.append(("random, repeated labels", True))
    rows.append(("random, full length", True))
    rows.append(("empty target", True))
    # 3: a one-hot model on one alignment (-1000 elsewhere): exp underflows to exactly 0, which is exact
    targets[3] = [1, 2, 3, 4]
    path = [0, 1, 1, 0, 2, 0, 3, 3, 0, 4, 0, 0]
    log_probs[:, 3] = -1000.0
    log_probs[np.arange(t), 3, path] = 0.0
    input_lengths[3], target_lengths[3] = t, s
    rows.append(("one-hot alignment, -1000 elsewhere", True))
    log_probs[:, 4, targets[4, 0]] = -np.inf  # 4: a label of probability 0: no alignment
    rows.append(("-inf label: impossible", False))
    log_probs[2, 5, 0] = np.nan  # 5: a NaN blank probability (the caller makes the sample NaN whatever the kernel)
    rows.append(("NaN", False))
    input_lengths[6], target_lengths[6] = 0, 0  # 6: no frames, empty target
    rows.append(("empty input, empty target", False))
    targets[7, :3] = [2, 2, 2]
    input_lengths[7], target_lengths[7] = 4, 3  # 7: repeats need 5 frames
    rows.append(("too short for its repeats", False))
    log_probs[:, 8, 0] = -np.inf  # 8: no blank at all, yet possible without repeats
    targets[8] = [1, 2, 3, 4]
    input_lengths[8], target_lengths[8] = 4, 4
    rows.append(("-inf blank, tight", True))
    log_probs[:, 9] -= 800.0  # 9: every probability below float64's range (not log-probabilities)
    rows.append(("all below e^-745", False))
    input_lengths[10], target_lengths[10] = 3, 1  # 10: short input, NaN beyond it (never read)
    log_probs[5:, 10] = np.nan
    rows.append(("NaN beyond the input length", True))
    return (log_probs.astype(dtype), targets, input_lengths, target_lengths), rows


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("zero_infinity", [False, True])
@pytest.mark.parametrize("reduction", ["none", "sum"])
def test_edge_samples_match_the_log_space_path(dtype, zero_infinity, reduction):
    args, rows = _adversarial(dtype)
    with np.errstate(all="ignore"):
        exact = _scaled(*args)[2]
    wrong = [name for (name, keep), e in zip(rows, exact, strict=True) if keep != e]
    assert not wrong, wrong
    (value, grad), (ref_value, ref_grad) = _fast_and_generic(*args, reduction=reduction, zero_infinity=zero_infinity)
    if dtype == "float64":
        np.testing.assert_allclose(value, ref_value, rtol=VALUE_RTOL)
        np.testing.assert_allclose(grad, ref_grad, rtol=0, atol=GRAD_ATOL)
    else:
        np.testing.assert_allclose(value, ref_value, rtol=1e-5)
        np.testing.assert_allclose(grad, ref_grad, rtol=0, atol=5e-5)
    np.testing.assert_array_equal(grad[:, ~exact], ref_grad[:, ~exact])  # the log-space numbers, to the last bit
    if reduction == "none":
        np.testing.assert_array_equal(value[~exact], ref_value[~exact])
        assert np.isnan(value[5]) and np.isfinite(value[[0, 1, 2, 3, 8, 10]]).all()
        assert (value[[4, 7]] == 0).all() if zero_infinity else (value[[4, 7]] == np.inf).all()


def test_only_the_flagged_samples_run_in_log_space():
    args, rows = _adversarial("float64")
    lt = ctc._lattice(*args, 0, "none", False)
    asked = []

    def log_space(rows):
        asked.append(rows.tolist())
        return ctc._log_posterior(ctc._rows(lt, rows))

    with np.errstate(all="ignore"):
        nll, occupancy = numpy_backend._ctc_posterior(lt.lp, lt.labels, lt.skip, lt.in_len, lt.ext_len, log_space)
        with pl.fast_paths(False):
            ref_nll, ref_occupancy = ctc._log_posterior(lt)
    assert asked == [[i for i, (_, keep) in enumerate(rows) if not keep]]
    np.testing.assert_array_equal(nll[asked[0]], ref_nll[asked[0]])
    np.testing.assert_array_equal(occupancy[:, asked[0]], ref_occupancy[:, asked[0]])
    np.testing.assert_allclose(occupancy, ref_occupancy, rtol=0, atol=GRAD_ATOL)


def test_random_peaks_and_lengths_match_whether_or_not_they_fall_back():
    """Logits from flat to extremely peaked (scale up to 150: many samples fall back), tight and loose lengths,
    any blank: the same numbers as the log-space path either way, and both ways taken."""
    rng = np.random.default_rng(100)
    kept = fell_back = 0
    for _ in range(40):
        t, n, c = int(rng.integers(1, 60)), int(rng.integers(1, 6)), int(rng.integers(2, 9))
        s = int(rng.integers(1, t // 2 + 2))
        scale = float(rng.choice([0.1, 1.0, 5.0, 20.0, 60.0, 150.0]))
        log_probs, targets, input_lengths, target_lengths = _random(rng, t=t, n=n, c=c, s=s, scale=scale)
        input_lengths = rng.integers(0, t + 1, size=n)
        target_lengths = np.minimum(target_lengths, rng.integers(0, s + 1, size=n))
        blank = int(rng.integers(0, c))
        targets = np.where(targets == blank, (blank + 1) % c, targets)
        args = (log_probs, targets, input_lengths, target_lengths)
        with np.errstate(all="ignore"):
            exact = _scaled(*args, blank=blank)[2]
        kept += int(exact.sum())
        fell_back += int((~exact & (input_lengths > 0)).sum())
        (value, grad), (ref_value, ref_grad) = _fast_and_generic(*args, blank=blank, reduction="none")
        np.testing.assert_allclose(value, ref_value, rtol=VALUE_RTOL)
        np.testing.assert_allclose(grad, ref_grad, rtol=0, atol=GRAD_ATOL)
    assert kept > 20 and fell_back > 5, (kept, fell_back)


def test_targets_of_width_zero():
    """Only blanks in the extended labels (L = 1): no transition to skip, forward or backward."""
    rng = np.random.default_rng(8)
    log_probs = np.log(rng.dirichlet(np.ones(4), size=(5, 3)))
    args = (log_probs, np.zeros((3, 0), dtype=np.int64), np.array([5, 3, 0]), np.zeros(3, dtype=np.int64))
    assert _scaled(*args)[2].tolist() == [True, True, False]
    (value, grad), (ref_value, ref_grad) = _fast_and_generic(*args, reduction="none")
    np.testing.assert_allclose(value, ref_value, rtol=VALUE_RTOL)
    np.testing.assert_allclose(grad, ref_grad, rtol=0, atol=GRAD_ATOL)
    expected = [-log_probs[:, 0, 0].sum(), -log_probs[:3, 1, 0].sum()]  # all blanks over the input length
    np.testing.assert_allclose(value[:2], expected, rtol=VALUE_RTOL)
