"""polyloss.boxes.sampling: balanced sampling, hard negative mining, random keys."""

from __future__ import annotations

import math

import numpy as np
import pytest

from polyloss import boxes as B
from polyloss._namespace import resolve
from polyloss.boxes import sampling


def test_sample_balanced_counts_and_subsets(xp):
    rng = np.random.default_rng(8)
    labels = rng.choice([-1, 0, 0, 0, 1, 2], size=(4, 50))
    labels[3] = np.where(labels[3] > 0, 0, labels[3])  # an image without positives
    pos, neg = B.sample_balanced(xp.asarray(labels), batch_size_per_image=16, positive_fraction=0.25, seed=0)
    pos, neg = xp.to_numpy(pos), xp.to_numpy(neg)
    for i in range(4):
        n_pos, n_neg = int((labels[i] >= 1).sum()), int((labels[i] == 0).sum())
        want_pos = min(n_pos, 4)
        assert pos[i].sum() == want_pos
        assert neg[i].sum() == min(n_neg, 16 - want_pos)
        assert np.all(labels[i][pos[i]] >= 1) and np.all(labels[i][neg[i]] == 0)


def test_sample_balanced_takes_every_candidate_when_room(xp):
    labels = np.array([[1, 0, -1, 2, 0], [0, 0, 0, -1, -1]])
    pos, neg = B.sample_balanced(xp.asarray(labels), batch_size_per_image=100, positive_fraction=0.5, seed=None)
    np.testing.assert_array_equal(xp.to_numpy(pos), labels >= 1)
    np.testing.assert_array_equal(xp.to_numpy(neg), labels == 0)


def test_sample_balanced_seed(xp):
    labels = np.zeros((2, 200), dtype=np.int64)
    labels[:, ::3] = 1

    def draw(seed):
        pos, neg = B.sample_balanced(xp.asarray(labels), batch_size_per_image=20, positive_fraction=0.5, seed=seed)
        return xp.to_numpy(pos), xp.to_numpy(neg)

    a, b = draw(123), draw(123)
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    c = draw(124)
    assert not np.array_equal(a[1], c[1])
    fresh = [draw(None)[1] for _ in range(3)]
    assert not all(np.array_equal(fresh[0], f) for f in fresh[1:])
    # the two images get independent samples
    assert not np.array_equal(a[1][0], a[1][1])


def test_sample_balanced_is_uniform():
    labels = np.zeros((1, 10), dtype=np.int64)
    gen = np.random.default_rng(0)
    hits = np.zeros(10)
    for _ in range(2000):
        _, neg = B.sample_balanced(labels, batch_size_per_image=3, positive_fraction=0.5, seed=gen)
        hits += neg[0]
    np.testing.assert_allclose(hits / 2000, 0.3, atol=0.05)


# -- hard negative mining ----------------------------------------------------------------
def ref_mining(loss: np.ndarray, positive: np.ndarray, ratio: float) -> np.ndarray:
    out = np.zeros_like(positive)
    for i in range(loss.shape[0]):
        n_pos = int(positive[i].sum())
        k = 0 if n_pos == 0 else min(loss.shape[1], math.floor(min(ratio * n_pos, 1e9)))
        candidates = [j for j in np.argsort(-np.nan_to_num(loss[i], nan=np.inf), kind="stable") if not positive[i, j]]
        out[i, candidates[:k]] = True
    return out


@pytest.mark.parametrize("ratio", [0, 3, 2.5, 100, 24.5, 25, 1e18, 1e300, math.inf])
def test_hard_negative_mining_matches_reference(xp, ratio):
    rng = np.random.default_rng(9)
    loss = rng.uniform(size=(4, 25))
    positive = rng.uniform(size=(4, 25)) < 0.2
    positive[2] = False
    positive[3] = True  # nothing left to mine
    got = xp.to_numpy(B.hard_negative_mining(xp.asarray(loss), xp.asarray(positive), neg_pos_ratio=ratio))
    np.testing.assert_array_equal(got, ref_mining(loss, positive, ratio))
    assert not np.any(got & positive)
    assert not got[2].any() and not got[3].any()


@pytest.mark.parametrize("ratio", [1e18, math.inf])
def test_an_infinite_ratio_mines_every_negative(xp, ratio):
    positive = np.array([[True, False, False, False], [False, False, False, False], [True, True, False, True]])
    loss = np.array([[0.5, 0.1, 0.9, 0.3], [1.0, 2.0, 3.0, 4.0], [0.0, 0.0, 0.0, 0.0]])
    got = xp.to_numpy(B.hard_negative_mining(xp.asarray(loss), xp.asarray(positive), neg_pos_ratio=ratio))
    np.testing.assert_array_equal(got, [[False, True, True, True], [False] * 4, [False, False, True, False]])


def test_a_nan_loss_is_mined_first(xp):
    positive = np.array([[True, False, False, False, False], [False, True, False, False, False]])
    loss = np.array([[0.5, 0.1, np.nan, 0.3, 0.2], [np.nan, np.nan, 0.1, 0.2, 0.3]])
    got = xp.to_numpy(B.hard_negative_mining(xp.asarray(loss), xp.asarray(positive), neg_pos_ratio=2))
    np.testing.assert_array_equal(got, [[False, False, True, True, False], [True, False, False, False, True]])


@pytest.mark.parametrize("ratio", [-1.0, math.nan])
def test_hard_negative_mining_rejects_a_bad_ratio(ratio):
    with pytest.raises(ValueError, match="neg_pos_ratio"):
        B.hard_negative_mining(np.zeros((1, 3)), np.zeros((1, 3), dtype=bool), neg_pos_ratio=ratio)


def test_random_keys_of_an_int_seed_are_the_same_on_every_backend(xp):
    backend = resolve(xp.asarray(np.zeros(1)), input_name="x")
    numpy_backend = resolve(np.zeros(1), input_name="x")
    for seed in (0, 7, [7, 1], (2**62, 3)):
        expected = B.random_keys(numpy_backend, (3, 50), seed=seed, device=None)
        got = B.random_keys(backend, (3, 50), seed=seed, device=backend.device(xp.asarray(np.zeros(1))))
        np.testing.assert_array_equal(xp.to_numpy(got), expected, err_msg=f"seed {seed}")
    with pytest.raises(ValueError, match="seed"):
        B.random_keys(backend, (2, 3), seed=-1, device=None)
    with pytest.raises(ValueError, match="seed"):
        B.random_keys(backend, (2, 3), seed=[1, "a"], device=None)


def test_random_keys_of_an_array_seed_equal_those_of_the_int(xp):
    backend = resolve(xp.asarray(np.zeros(1)), input_name="x")
    device = backend.device(xp.asarray(np.zeros(1)))
    numpy_backend = resolve(np.zeros(1), input_name="x")
    for seed in (0, 12345, 2**40 + 3, 2**63 - 1):
        array_seed = xp.asarray(np.asarray(seed, dtype=np.int64), dtype=xp.ns.int64)
        expected = B.random_keys(numpy_backend, (2, 40), seed=[seed, 1], device=None)
        got = B.random_keys(backend, (2, 40), seed=[array_seed, 1], device=device)
        np.testing.assert_array_equal(xp.to_numpy(got), expected, err_msg=f"seed {seed}")
    assert not np.array_equal(B.random_keys(numpy_backend, (2, 40), seed=np.int64(4), device=None),
                              B.random_keys(numpy_backend, (2, 40), seed=5, device=None))
    with pytest.raises(ValueError, match="seed"):
        B.random_keys(backend, (2, 3), seed=xp.asarray(np.array([1, 2]), dtype=xp.ns.int64), device=device)
    negative = xp.asarray(np.asarray(-3, dtype=np.int64), dtype=xp.ns.int64)
    if backend.is_host_array(negative):  # values on a device are not read back
        with pytest.raises(ValueError, match="seed"):
            B.random_keys(backend, (2, 3), seed=negative, device=device)


def test_seed_words_of_int64_arrays_equal_those_of_python_ints():
    # the words of a traced (device, compiled) seed and of a host int are the same numbers
    for seed in (0, 1, 2**31 - 1, 2**31, 2**62 + 5, 2**63 - 1):
        words = sampling._seed_words([seed, 3])
        from_arrays = sampling._seed_words([np.asarray(seed, dtype=np.int64), np.asarray(3, dtype=np.int64)])
        assert [int(w) for w in from_arrays] == list(words), seed
        assert all(0 <= w < 2**31 for w in words)


def test_random_keys_of_neighbouring_seeds_are_independent():
    # the first place of a row of 6 for seeds s and s + 1: uniform over the 36 pairs
    backend = resolve(np.zeros(1), input_name="x")
    first = np.array([int(np.argmin(B.random_keys(backend, (1, 6), seed=s, device=None))) for s in range(3601)])
    counts = np.bincount(first[:-1] * 6 + first[1:], minlength=36)
    chi2 = float(((counts - 100.0) ** 2 / 100.0).sum())
    assert chi2 < 70.0, counts  # 35 degrees of freedom: P(chi2 > 70) < 1e-3


def test_random_keys_are_distinct_seeded_and_uniformly_ordered(xp):
    backend = resolve(xp.asarray(np.zeros(1)), input_name="x")
    keys = xp.to_numpy(B.random_keys(backend, (4000, 6), seed=3, device=None))
    assert keys.dtype == np.int64 and keys.min() >= 0 and keys.max() < 2**B.KEY_BITS
    assert all(len(set(row)) == 6 for row in keys)
    np.testing.assert_array_equal(keys, xp.to_numpy(B.random_keys(backend, (4000, 6), seed=3, device=None)))
    assert not np.array_equal(keys, xp.to_numpy(B.random_keys(backend, (4000, 6), seed=[3, 1], device=None)))
    # the smallest key's position is uniform over the row: 4000 rows, 6 places, about 667 each
    counts = np.bincount(keys.argmin(axis=1), minlength=6)
    assert counts.min() > 560 and counts.max() < 780, counts
