"""Cross-entropy family against torch.nn.functional on every backend."""

from __future__ import annotations

import numpy as np
import pytest
from _support import F
from _support import assert_close
from _support import assert_fast_path_matches_generic
from _support import check_against
from _support import run_polyloss
from _support import t64

import polyloss as pl

REDUCTIONS = ["none", "mean", "sum"]


def _rng(seed=0):
    return np.random.default_rng(seed)


@pytest.mark.parametrize("shape", [(9,), (4, 5), (2, 3, 4)])
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("weighted", [False, True])
def test_binary_cross_entropy(xp, shape, reduction, weighted):
    rng = _rng()
    x = rng.uniform(0.01, 0.99, size=shape)
    y = rng.uniform(0, 1, size=shape)
    options = {"reduction": reduction}
    if weighted:
        options["weight"] = rng.uniform(0.2, 2, size=shape)
    check_against(xp, pl.binary_cross_entropy, F.binary_cross_entropy, x, y, options)


@pytest.mark.parametrize("shape", [(9,), (4, 5), (2, 3, 4)])
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("pos_weighted", [False, True])
def test_bce_with_logits(xp, shape, reduction, weighted, pos_weighted):
    rng = _rng(1)
    x = 4 * rng.normal(size=shape)
    y = rng.integers(0, 2, size=shape).astype(float)
    options = {"reduction": reduction}
    if weighted:
        options["weight"] = rng.uniform(0.2, 2, size=shape)
    if pos_weighted:
        options["pos_weight"] = rng.uniform(0.5, 3, size=shape[-1:])
    check_against(xp, pl.binary_cross_entropy_with_logits, F.binary_cross_entropy_with_logits, x, y, options)


def _torch_ce(axis):
    def ref(x, t, **kw):
        x = x.movedim(axis, 1) if x.ndim > 1 else x
        if t.dtype.is_floating_point and t.ndim > 1:
            t = t.movedim(axis, 1)
        return F.cross_entropy(x, t, **kw)
    return ref


def _torch_nll(axis):
    def ref(x, t, **kw):
        return F.nll_loss(x.movedim(axis, 1).contiguous() if x.ndim > 1 else x, t, **kw)
    return ref


CE_SHAPES = [((6, 5), -1), ((6, 5), 0), ((2, 5, 3), 1), ((2, 3, 4, 5), -1), ((5,), 0)]


def _class_data(shape, axis, seed=0, ignore=False):
    rng = _rng(seed)
    x = 3 * rng.normal(size=shape)
    c = shape[axis]
    tshape = tuple(s for i, s in enumerate(shape) if i != axis % len(shape))
    t = rng.integers(0, c, size=tshape)
    if ignore and t.size > 1:
        t = np.where(rng.uniform(size=tshape) < 0.3, -100, t)
        t.flat[0] = 1  # keep at least one target
    return x, t, c


@pytest.mark.parametrize("shape,axis", CE_SHAPES)
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("smoothing", [0.0, 0.2])
@pytest.mark.parametrize("ignore", [False, True])
def test_cross_entropy_indices(xp, shape, axis, reduction, weighted, smoothing, ignore):
    x, t, c = _class_data(shape, axis, ignore=ignore)
    options = {"reduction": reduction, "label_smoothing": smoothing}
    if weighted:
        options["weight"] = _rng(2).uniform(0.2, 2, size=c)
    ref_options = dict(options)
    check_against(xp, pl.cross_entropy, _torch_ce(axis), x, t, {**options, "axis": axis}, ref_options=ref_options)


@pytest.mark.parametrize("shape,axis", CE_SHAPES)
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("smoothing", [0.0, 0.3])
def test_cross_entropy_probabilities(xp, shape, axis, reduction, weighted, smoothing):
    rng = _rng(3)
    x = 2 * rng.normal(size=shape)
    q = rng.uniform(size=shape)
    q = q / q.sum(axis=axis, keepdims=True)
    options = {"reduction": reduction, "label_smoothing": smoothing}
    if weighted:
        options["weight"] = rng.uniform(0.2, 2, size=shape[axis])
    check_against(xp, pl.cross_entropy, _torch_ce(axis), x, q, {**options, "axis": axis}, ref_options=options)


def test_cross_entropy_custom_ignore_index(xp):
    x, t, _ = _class_data((8, 4), -1, seed=4)
    t[::3] = 2
    check_against(xp, pl.cross_entropy, F.cross_entropy, x, t, {"ignore_index": 2})


@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("smoothing", [0.0, 0.1])
def test_all_ignored_cross_entropy_is_zero_with_zero_gradient(xp, weighted, smoothing):
    x = _rng(5).normal(size=(4, 3))
    t = np.full(4, -100)
    options = {"label_smoothing": smoothing}
    if weighted:
        options["weight"] = np.array([1.0, 2.0, 3.0])
    value, grad = run_polyloss(xp, pl.cross_entropy, x, t, options)
    assert value == 0.0
    if grad is not None:
        assert np.all(grad == 0.0)
    value, grad = run_polyloss(xp, pl.nll_loss, x, t, {})
    assert value == 0.0


@pytest.mark.parametrize("shape,axis", CE_SHAPES)
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("ignore", [False, True])
def test_nll_loss(xp, shape, axis, reduction, weighted, ignore):
    x, t, c = _class_data(shape, axis, seed=6, ignore=ignore)
    logp = x - np.log(np.sum(np.exp(x), axis=axis, keepdims=True))
    options = {"reduction": reduction}
    if weighted:
        options["weight"] = _rng(7).uniform(0.2, 2, size=c)
    check_against(xp, pl.nll_loss, _torch_nll(axis), logp, t, {**options, "axis": axis}, ref_options=options)


@pytest.mark.filterwarnings("ignore:reduction. 'mean' divides:UserWarning")
@pytest.mark.parametrize("shape", [(5,), (4, 6), (2, 3, 4)])
@pytest.mark.parametrize("reduction", ["none", "mean", "sum", "batchmean"])
@pytest.mark.parametrize("log_target", [False, True])
def test_kl_div(xp, shape, reduction, log_target):
    rng = _rng(8)
    x = rng.normal(size=shape)
    x = x - np.log(np.sum(np.exp(x), axis=-1, keepdims=True))
    q = rng.uniform(size=shape)
    q = q / q.sum(-1, keepdims=True)
    q.flat[0] = 0.0  # 0 log 0 = 0
    y = np.log(q + 1e-3) if log_target else q
    options = {"reduction": reduction, "log_target": log_target}
    with np.errstate(divide="ignore"):
        check_against(xp, pl.kl_div, F.kl_div, x, y, options)


CASES = [
    ("binary_cross_entropy", lambda r: (r.uniform(0.05, 0.95, (5, 4)), r.uniform(size=(5, 4))),
     [{}, {"weight": "w"}]),
    ("binary_cross_entropy_with_logits", lambda r: (3 * r.normal(size=(5, 4)), r.uniform(size=(5, 4))),
     [{}, {"weight": "w"}, {"pos_weight": "pw"}]),
    ("cross_entropy", lambda r: (r.normal(size=(5, 4)), r.integers(0, 4, 5)),
     [{}, {"weight": "cw"}, {"label_smoothing": 0.2}, {"weight": "cw", "label_smoothing": 0.1, "ignore_index": 1}]),
    ("cross_entropy", lambda r: (r.normal(size=(5, 4)), r.dirichlet(np.ones(4), 5)),
     [{}, {"weight": "cw", "label_smoothing": 0.1}]),
    ("nll_loss", lambda r: (-r.uniform(0.1, 3, (5, 4)), r.integers(0, 4, 5)), [{}, {"weight": "cw"}]),
    ("kl_div", lambda r: (-r.uniform(0.1, 3, (5, 4)), r.uniform(size=(5, 4))), [{}, {"log_target": True}]),
    ("multi_margin_loss", lambda r: (r.normal(size=(5, 4)), r.integers(0, 4, 5)),
     [{}, {"p": 2, "margin": 0.5, "weight": "cw"}]),
]


@pytest.mark.parametrize("name,make,option_sets", CASES)
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_fast_path_equals_generic(name, make, option_sets, reduction):
    rng = _rng(9)
    x, y = make(rng)
    arrays = {"w": t64(rng.uniform(0.2, 2, (5, 4))), "pw": t64(rng.uniform(0.2, 2, 4)),
              "cw": t64(rng.uniform(0.2, 2, 4))}
    for options in option_sets:
        opts = {k: arrays[v] if isinstance(v, str) else v for k, v in options.items()}
        assert_fast_path_matches_generic(getattr(pl, name), x, y, reduction=reduction, **opts)


def test_cross_entropy_never_one_hot_and_int32_targets(xp):
    x, t, _ = _class_data((6, 5), -1, seed=10)
    value, _ = run_polyloss(xp, pl.cross_entropy, x, t, {}, grad=False)
    t32 = xp.asarray(t, dtype=xp.ns.int32)
    other = pl.cross_entropy(xp.asarray(x), t32)
    assert_close(xp.to_numpy(other), value, xp)


@pytest.mark.parametrize("reduction", ["none", "mean", "sum"])
@pytest.mark.parametrize("weighted", [False, True])
def test_cross_entropy_class_axis_last(xp, reduction, weighted):
    """K-D logits with the class axis last (detector logits): flattened to rows by the fast paths."""
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(7)
    logits = rng.normal(size=(3, 5, 4)) * 3
    target = rng.integers(0, 4, (3, 5))
    target[1, 2] = -100  # ignored
    weight = rng.uniform(0.5, 2.0, 4) if weighted else None
    expected = torch.nn.functional.cross_entropy(
        torch.tensor(logits).permute(0, 2, 1), torch.tensor(target),
        weight=None if weight is None else torch.tensor(weight), reduction=reduction).numpy()
    got = pl.cross_entropy(xp.asarray(logits), xp.asarray(target, dtype=xp.ns.int64), axis=-1,
                           weight=None if weight is None else xp.asarray(weight), reduction=reduction)
    assert tuple(got.shape) == expected.shape
    np.testing.assert_allclose(xp.to_numpy(got), expected, rtol=max(xp.rtol, 1e-12), atol=xp.atol)
