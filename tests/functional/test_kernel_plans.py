"""Kernel plans (``polyloss.functional._common.planned``): the native kernel call a loss caches per call signature.

The edge rules on the plans' path run in ``tests/functional/test_edge_rules.py`` (its ``planned`` paths); here:
which calls get a plan, that a plan gives PyTorch's numbers, and where none may run.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

import polyloss as pl
from polyloss._namespace import resolve
from polyloss.functional import _common

torch = pytest.importorskip("torch")
F = torch.nn.functional


def _arrays() -> dict[str, object]:
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(6, 5, generator=gen, dtype=torch.float64)
    return {
        "x": x,
        "y": torch.randn(6, 5, generator=gen, dtype=torch.float64),
        "t": torch.randint(0, 5, (6,), generator=gen),
        "p": torch.rand(6, 5, generator=gen, dtype=torch.float64),
        "b": (torch.rand(6, 5, generator=gen) > 0.5).double(),
        "lp": torch.log_softmax(x, 1),
        "s": torch.randint(0, 2, (6, 5), generator=gen).double() * 2 - 1,
        "s6": torch.randint(0, 2, (6,), generator=gen) * 2 - 1,
        "z": torch.randn(6, 5, generator=gen, dtype=torch.float64),
        "k": torch.poisson(torch.full((6, 5), 2.0, dtype=torch.float64), generator=gen),
    }


# loss name -> (polyloss call, torch.nn.functional call) on the arrays above
CALLS = {
    "cross_entropy": (lambda a: pl.cross_entropy(a["x"], a["t"]), lambda a: F.cross_entropy(a["x"], a["t"])),
    "nll_loss": (lambda a: pl.nll_loss(a["lp"], a["t"]), lambda a: F.nll_loss(a["lp"], a["t"])),
    "mse_loss": (lambda a: pl.mse_loss(a["x"], a["y"]), lambda a: F.mse_loss(a["x"], a["y"])),
    "l1_loss": (lambda a: pl.l1_loss(a["x"], a["y"], reduction="sum"),
                lambda a: F.l1_loss(a["x"], a["y"], reduction="sum")),
    "huber_loss": (lambda a: pl.huber_loss(a["x"], a["y"], delta=0.5),
                   lambda a: F.huber_loss(a["x"], a["y"], delta=0.5)),
    "smooth_l1_loss": (lambda a: pl.smooth_l1_loss(a["x"], a["y"], beta=0.0),
                       lambda a: F.smooth_l1_loss(a["x"], a["y"], beta=0.0)),
    "kl_div": (lambda a: pl.kl_div(a["lp"], a["p"], reduction="batchmean"),
               lambda a: F.kl_div(a["lp"], a["p"], reduction="batchmean")),
    "binary_cross_entropy": (lambda a: pl.binary_cross_entropy(a["p"], a["b"]),
                             lambda a: F.binary_cross_entropy(a["p"], a["b"])),
    "binary_cross_entropy_with_logits": (lambda a: pl.binary_cross_entropy_with_logits(a["x"], a["p"]),
                                         lambda a: F.binary_cross_entropy_with_logits(a["x"], a["p"])),
    "multi_margin_loss": (lambda a: pl.multi_margin_loss(a["x"], a["t"], margin=0.5),
                          lambda a: F.multi_margin_loss(a["x"], a["t"], margin=0.5)),
    # the second set: three arrays, labels 1 or -1 (integer ones included) or in [0, 1] read by the plan's guard
    "poisson_nll_loss": (lambda a: pl.poisson_nll_loss(a["x"], a["k"], full=True),
                         lambda a: F.poisson_nll_loss(a["x"], a["k"], full=True)),
    "cosine_embedding_loss": (lambda a: pl.cosine_embedding_loss(a["x"], a["y"], a["s6"], margin=0.2),
                              lambda a: F.cosine_embedding_loss(a["x"], a["y"], a["s6"], margin=0.2)),
    "margin_ranking_loss": (lambda a: pl.margin_ranking_loss(a["x"], a["y"], a["s"], margin=0.1, reduction="sum"),
                            lambda a: F.margin_ranking_loss(a["x"], a["y"], a["s"], margin=0.1, reduction="sum")),
    "triplet_margin_loss": (lambda a: pl.triplet_margin_loss(a["x"], a["y"], a["z"], p=1.0),
                            lambda a: F.triplet_margin_loss(a["x"], a["y"], a["z"], p=1.0)),
    "hinge_embedding_loss": (lambda a: pl.hinge_embedding_loss(a["x"], a["s"], reduction="none"),
                             lambda a: F.hinge_embedding_loss(a["x"], a["s"], reduction="none")),
    "multilabel_soft_margin_loss": (lambda a: pl.multilabel_soft_margin_loss(a["x"], a["b"]),
                                    lambda a: F.multilabel_soft_margin_loss(a["x"], a["b"])),
    "soft_margin_loss": (lambda a: pl.soft_margin_loss(a["x"], a["s"], reduction="sum"),
                         lambda a: F.soft_margin_loss(a["x"], a["s"], reduction="sum")),
}


def _plans_of(name: str) -> int:
    return sum(key[0] == name for key in _common._PLANS)


@pytest.mark.parametrize("name", sorted(CALLS))
def test_second_call_runs_the_cached_plan_with_pytorchs_numbers(name: str) -> None:
    ours, theirs = CALLS[name]
    a = _arrays()
    _common._PLANS.clear()
    first = ours(a)
    assert _plans_of(name) == 1
    second = ours(a)
    assert _plans_of(name) == 1
    input_name = {"nll_loss": "lp", "kl_div": "lp", "binary_cross_entropy": "p"}.get(name, "x")
    leaf = a[input_name] = a[input_name].detach().requires_grad_(True)
    third = ours(a)  # requires grad: the same plan, and autograd through the kernel
    assert _plans_of(name) == 1
    expected = theirs(a)
    for value in (first, second, third):
        np.testing.assert_allclose(value.detach().numpy(), expected.detach().numpy(), rtol=1e-12)
    (grad,) = torch.autograd.grad(third.sum(), leaf)
    (expected_grad,) = torch.autograd.grad(expected.sum(), leaf)
    np.testing.assert_allclose(grad.numpy(), expected_grad.numpy(), rtol=1e-10, atol=1e-14)


def test_plans_are_per_signature() -> None:
    a = _arrays()
    _common._PLANS.clear()
    pl.cross_entropy(a["x"], a["t"])
    pl.cross_entropy(a["x"][:3], a["t"][:3])
    pl.cross_entropy(a["x"].float(), a["t"])
    pl.cross_entropy(a["x"], a["t"], ignore_index=2)
    assert _plans_of("cross_entropy") == 4


def test_an_option_of_another_type_is_another_signature() -> None:
    """``log_target=0`` equals ``False`` as a key, but only a bool is allowed: the plan must not answer it."""
    a = _arrays()
    pl.kl_div(a["lp"], a["p"])
    with pytest.raises(TypeError, match="log_target"):
        pl.kl_div(a["lp"], a["p"], log_target=0)


def test_a_plan_declines_values_its_kernel_would_get_wrong() -> None:
    a = _arrays()
    pl.binary_cross_entropy_with_logits(a["x"], a["p"])
    with pytest.raises(ValueError, match="target"):
        pl.binary_cross_entropy_with_logits(a["x"], a["p"] + 1.0)
    pl.multi_margin_loss(a["x"], a["t"])
    nan = a["x"].clone()
    nan[0, 1] = float("nan")
    assert torch.isnan(pl.multi_margin_loss(nan, a["t"]))  # ATen's kernel would skip the NaN term
    bad = a["t"].clone()
    bad[0] = 7
    with pytest.raises(ValueError, match="target"):
        pl.multi_margin_loss(a["x"], bad)
    pl.cross_entropy(a["x"], a["t"])
    ignored = torch.full_like(a["t"], -100)
    assert pl.cross_entropy(a["x"], ignored).item() == 0.0  # polyloss's rule where ATen's mean is NaN


def test_no_plan_while_tracing_or_with_the_fast_paths_off() -> None:
    a = _arrays()
    backend = resolve(a["x"])
    options = (-1, -100, 0.0, "mean")
    pl.cross_entropy(a["x"], a["t"])
    assert backend.plan_key("cross_entropy", (a["x"], a["t"]), options) is not None
    with pl.fast_paths(False):
        assert backend.plan_key("cross_entropy", (a["x"], a["t"]), options) is None
    keys = []

    def traced(x: object) -> object:
        keys.append(backend.plan_key("cross_entropy", (x, a["t"]), options))
        return pl.cross_entropy(x, a["t"])

    grad = torch.func.grad(traced)(a["x"])
    assert keys == [None]
    x = a["x"].clone().requires_grad_(True)
    (expected,) = torch.autograd.grad(F.cross_entropy(x, a["t"]), x)
    np.testing.assert_allclose(grad.numpy(), expected.numpy(), rtol=1e-12)
    per_sample = torch.func.vmap(lambda x, t: pl.cross_entropy(x[None], t[None]))(a["x"], a["t"])
    np.testing.assert_allclose(per_sample.numpy(), F.cross_entropy(a["x"], a["t"], reduction="none").numpy(),
                               rtol=1e-12)


def test_array_options_are_not_cached() -> None:
    a = _arrays()
    _common._PLANS.clear()
    pl.cross_entropy(a["x"], a["t"], weight=torch.ones(5, dtype=torch.float64))
    pl.binary_cross_entropy_with_logits(a["x"], a["p"], pos_weight=torch.ones(5, dtype=torch.float64))
    assert not _common._PLANS
    weight = torch.linspace(0.5, 2.0, 5, dtype=torch.float64)
    np.testing.assert_allclose(pl.cross_entropy(a["x"], a["t"], weight=weight).numpy(),
                               F.cross_entropy(a["x"], a["t"], weight=weight).numpy(), rtol=1e-12)


def test_the_cache_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_common, "_MAX_PLANS", 3)
    _common._PLANS.clear()
    for n in range(1, 6):
        pl.mse_loss(torch.ones(n), torch.zeros(n))
    assert 1 <= len(_common._PLANS) <= 3


def test_plans_of_three_arrays_are_per_signature_of_each() -> None:
    a = _arrays()
    _common._PLANS.clear()
    pl.triplet_margin_loss(a["x"], a["y"], a["z"])
    pl.triplet_margin_loss(a["x"], a["y"], a["z"].float().double())  # the same signature
    assert _plans_of("triplet_margin_loss") == 1
    pl.triplet_margin_loss(a["x"][:3], a["y"][:3], a["z"][:3])
    pl.triplet_margin_loss(a["x"], a["y"], a["z"], swap=True)
    assert _plans_of("triplet_margin_loss") == 3
    with pytest.raises(ValueError, match="negative"):
        pl.triplet_margin_loss(a["x"], a["y"], a["z"][:3])
    with pytest.raises(TypeError, match="positive"):
        pl.triplet_margin_loss(a["x"], a["y"].numpy(), a["z"])
    with pytest.raises(TypeError, match="anchor"):
        pl.triplet_margin_loss(a["x"].numpy().tolist(), a["y"], a["z"])


@pytest.mark.parametrize("name", ["margin_ranking_loss", "hinge_embedding_loss", "cosine_embedding_loss",
                                  "soft_margin_loss"])
def test_a_cached_plan_reads_the_labels(name: str) -> None:
    """Labels other than 1 and -1, NaN included, meet the plan's guard: the loss's ``ValueError`` names them."""
    a = _arrays()
    ours, _ = CALLS[name]
    ours(a)
    label = "s6" if name == "cosine_embedding_loss" else "s"
    ours({**a, label: a[label].double()})  # the float64 labels' plan
    for bad in (0.5, 0.0, 2.0, float("nan")):
        labels = a[label].double().clone()
        labels.view(-1)[1] = bad
        with pytest.raises(ValueError, match="labels 1 or -1"):
            ours({**a, label: labels})
    labels = a[label].clone()
    labels.view(-1)[-1] = 0
    with pytest.raises(ValueError, match="labels 1 or -1"):
        ours({**a, label: labels})


def test_a_cached_plan_keeps_nan_and_declines_what_the_kernel_differs_on() -> None:
    a = _arrays()
    pl.margin_ranking_loss(a["x"], a["y"], a["s"])
    nan = a["x"].clone()
    nan[2, 3] = float("nan")
    assert torch.isnan(pl.margin_ranking_loss(nan, a["y"], a["s"]))
    pl.multilabel_soft_margin_loss(a["x"], a["b"])
    with pytest.raises(ValueError, match="target"):
        pl.multilabel_soft_margin_loss(a["x"], a["b"] + 1.0)
    empty = torch.zeros(0, 5, dtype=torch.float64)
    assert pl.poisson_nll_loss(empty, empty).item() == 0.0  # polyloss's rule where ATen's mean is NaN
    assert pl.poisson_nll_loss(empty, empty).item() == 0.0


@pytest.mark.parametrize("dtype, bound", [(torch.float32, 80.0), (torch.float64, 700.0)])
def test_soft_margin_plan_runs_aten_only_where_its_exp_cannot_overflow(dtype, bound) -> None:
    """A small input takes ATen's kernel (PyTorch's graph, its numbers) while every score stays below the bound;
    a larger score, inf or NaN takes the family's fused node: finite where ATen's value is inf and its gradient
    NaN, NaN kept."""
    gen = torch.Generator().manual_seed(3)
    x = torch.randn(6, 5, generator=gen, dtype=dtype)
    y = torch.randint(0, 2, (6, 5), generator=gen).to(dtype) * 2 - 1
    y[0, 0], y[0, 1] = -1.0, 1.0
    _common._PLANS.clear()
    for _ in range(2):  # the full path, then the cached plan
        leaf = x.clone().requires_grad_(True)
        value = pl.soft_margin_loss(leaf, y)
        assert type(value.grad_fn).__name__ == "SoftMarginLossBackward0"
        expected = F.soft_margin_loss(leaf, y)
        assert torch.equal(value, expected)
        (grad,), (expected_grad,) = torch.autograd.grad(value, leaf), torch.autograd.grad(expected, leaf)
        assert torch.equal(grad, expected_grad)
    assert _plans_of("soft_margin_loss") == 1
    for score in (bound, -bound, 2.0 * bound, float("inf"), float("nan")):
        big = x.clone()
        big[0, 0] = score  # label -1: the margin -y x is the score itself
        leaf = big.requires_grad_(True)
        value = pl.soft_margin_loss(leaf, y, reduction="none")
        assert type(value.grad_fn).__name__ == "_FusedBackward"
        (grad,) = torch.autograd.grad(value.sum(), leaf)
        assert _plans_of("soft_margin_loss") == 2  # the "none" signature's
        if score != score:
            assert torch.isnan(value[0, 0]) and torch.isnan(grad[0, 0])
        else:  # log(1 + e^m) and its derivative sigmoid(m) at m = score, in closed form
            expected_value = score + math.log1p(math.exp(-score)) if score > 0 else math.log1p(math.exp(score))
            expected_slope = 1.0 / (1.0 + math.exp(-score)) if score > 0 else math.exp(score) / (1.0 + math.exp(score))
            np.testing.assert_allclose(value[0, 0].item(), expected_value, rtol=1e-6)
            np.testing.assert_allclose(grad[0, 0].item(), expected_slope, rtol=1e-6)
            assert torch.isfinite(grad).all()
        np.testing.assert_allclose(value[1:].detach().numpy(), F.soft_margin_loss(big[1:], y[1:], reduction="none")
                                   .detach().numpy(), rtol=1e-6 if dtype == torch.float32 else 1e-12)
