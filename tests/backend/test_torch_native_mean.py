"""PyTorch cross-entropy and NLL of class indices, reduction "mean", on CPU: ATen's own mean where it is a
number, polyloss's sum over the total weight where ATen's is NaN (every target ignored)."""

from __future__ import annotations

import numpy as np
import pytest

import polyloss as pl
from polyloss import _namespace

torch = pytest.importorskip("torch")
F = torch.nn.functional

LOSSES = ("cross_entropy", "nll_loss")


def _sum_over_total_weight(name, x, t, weight, ignore_index):
    """The "mean" polyloss documents: the sum over the total weight of the non-ignored targets (0 if that is 0)."""
    logp = torch.log_softmax(x, 1) if name == "cross_entropy" else x
    total, total_weight = torch.ops.aten.nll_loss_forward(logp, t, weight, 2, ignore_index)  # 2: "sum"
    return total / torch.where(total_weight == 0, 1, total_weight)


def _inputs(ignored, ignore_index, dtype=torch.float64, weighted=False, rows=12, classes=5, seed=0):
    rng = np.random.default_rng(seed)
    x = torch.tensor(3.0 * rng.standard_normal((rows, classes)), dtype=dtype)
    t = torch.tensor(rng.integers(0, classes, rows))
    if ignored == "some":
        t[::3] = ignore_index
    elif ignored == "all":
        t[:] = ignore_index
    weight = torch.tensor(rng.uniform(0.2, 2.0, classes), dtype=dtype) if weighted else None
    return x, t, weight


@pytest.mark.parametrize("name", LOSSES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("weighted", [False, True], ids=["unweighted", "weighted"])
@pytest.mark.parametrize("ignored", ["none", "some", "all"])
@pytest.mark.parametrize("ignore_index", [-100, 2])
def test_value_and_gradient_are_the_sum_over_the_total_weight(name, dtype, weighted, ignored, ignore_index):
    x, t, weight = _inputs(ignored, ignore_index, dtype, weighted)
    if name == "nll_loss":
        x = torch.log_softmax(x, 1)
    loss = pl.get_loss(name)
    xg, xr = x.clone().requires_grad_(True), x.clone().requires_grad_(True)
    out = loss(xg, t, axis=1, weight=weight, ignore_index=ignore_index)
    expected = _sum_over_total_weight(name, xr, t, weight, ignore_index)
    torch.testing.assert_close(out, expected, rtol=0, atol=0)
    (grad,) = torch.autograd.grad(out, xg)
    (expected_grad,) = torch.autograd.grad(expected, xr)
    torch.testing.assert_close(grad, expected_grad, rtol=1e-6 if dtype == torch.float32 else 1e-14, atol=0)
    if ignored == "all":
        assert out.item() == 0.0 and not grad.any()


@pytest.mark.parametrize("name", LOSSES)
def test_aten_graph_where_its_mean_is_a_number_and_the_fallback_where_it_is_nan(name):
    loss = pl.get_loss(name)
    x, t, _ = _inputs("some", -100)
    out = loss(x.clone().requires_grad_(True), t, axis=1)
    assert type(out.grad_fn).__name__ == "NllLossBackward0"  # ATen's own graph, no division node
    x, t, _ = _inputs("all", -100)
    out = loss(x.clone().requires_grad_(True), t, axis=1)
    assert out.item() == 0.0
    assert type(out.grad_fn).__name__ != "NllLossBackward0"


@pytest.mark.parametrize("name", LOSSES)
@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_non_finite_input_gives_what_the_generic_code_gives(name, bad):
    x, t, _ = _inputs("some", -100, torch.float32)
    x[1, int(t[1])] = bad
    loss = pl.get_loss(name)
    with pl.fast_paths(False):
        expected = loss(x, t, axis=1)
    out = loss(x, t, axis=1)
    torch.testing.assert_close(out, expected, equal_nan=True)


@pytest.mark.parametrize("name", LOSSES)
@pytest.mark.parametrize("weighted", [False, True], ids=["unweighted", "weighted"])
def test_gradcheck(name, weighted):
    x, t, weight = _inputs("some", -100, weighted=weighted, rows=6, classes=4, seed=1)
    loss = pl.get_loss(name)
    x.requires_grad_(True)
    assert torch.autograd.gradcheck(lambda a: loss(a, t, axis=1, weight=weight), (x,))


@pytest.mark.parametrize("name", LOSSES)
def test_without_grad_and_in_inference_mode(name):
    x, t, weight = _inputs("some", -100, weighted=True)
    loss = pl.get_loss(name)
    expected = _sum_over_total_weight(name, x, t, weight, -100)
    with torch.no_grad():
        torch.testing.assert_close(loss(x, t, axis=1, weight=weight), expected, rtol=0, atol=0)
    with torch.inference_mode():
        torch.testing.assert_close(loss(x, t, axis=1, weight=weight), expected, rtol=0, atol=0)


@pytest.mark.parametrize("name", LOSSES)
@pytest.mark.parametrize("ignored", ["some", "all"])
@pytest.mark.parametrize("weighted", [False, True], ids=["unweighted", "weighted"])
def test_compiles_fullgraph_and_matches_eager(name, ignored, weighted):
    x, t, weight = _inputs(ignored, -100, weighted=weighted)
    loss = pl.get_loss(name)
    torch._dynamo.reset()
    _namespace.clear_cache()
    compiled = torch.compile(lambda a, b: loss(a, b, axis=1, weight=weight), fullgraph=True, backend="eager")
    xc, xe = x.clone().requires_grad_(True), x.clone().requires_grad_(True)
    out, expected = compiled(xc, t), loss(xe, t, axis=1, weight=weight)
    torch.testing.assert_close(out, expected, rtol=1e-14, atol=0)
    torch.testing.assert_close(torch.autograd.grad(out, xc)[0], torch.autograd.grad(expected, xe)[0],
                               rtol=1e-14, atol=0)


@pytest.mark.parametrize("name", LOSSES)
def test_fake_tensors_are_never_read(name):
    from torch._subclasses.fake_tensor import FakeTensorMode

    with FakeTensorMode():
        x = torch.randn(8, 5, requires_grad=True)
        out = pl.get_loss(name)(x, torch.randint(0, 5, (8,)), axis=1)
        assert out.shape == () and out.requires_grad


@pytest.mark.parametrize("name", LOSSES)
@pytest.mark.parametrize("fast", [True, False], ids=["fast", "generic"])
def test_class_weights_summing_to_zero_give_zero_with_zero_gradient(name, fast):
    # ATen divides by the total weight: inf (or the weighted sum after a clamp) where polyloss's rule gives 0
    x, _, _ = _inputs("none", -100)
    t = torch.tensor([0, 1] * 6)
    weight = torch.tensor([1.0, -1.0, 0.0, 2.0, 3.0], dtype=x.dtype)
    xg = x.clone().requires_grad_(True)
    with pl.fast_paths(fast):
        out = pl.get_loss(name)(xg, t, axis=1, weight=weight)
    (grad,) = torch.autograd.grad(out, xg)
    assert out.item() == 0.0 and not grad.any()


def test_nothing_to_ignore_and_no_weights_needs_no_read():
    from polyloss.backend.torch import _native_mean_exact

    # a NaN mean there can only come from a NaN input: it is the answer, known without reading it
    assert _native_mean_exact(torch.zeros(3, dtype=torch.int64), None, None)
    assert not _native_mean_exact(torch.zeros(3, dtype=torch.int64), None, -100)
    assert not _native_mean_exact(torch.zeros(0, dtype=torch.int64), None, None)  # empty: ATen's 0 / 0
    assert not _native_mean_exact(torch.zeros(3, dtype=torch.int64), torch.ones(2), None)


@pytest.mark.parametrize("name", LOSSES)
@pytest.mark.parametrize("dtype", [torch.uint8, torch.int8, torch.int16, torch.int32, torch.uint16, torch.uint32,
                                   torch.uint64])
def test_every_integer_dtype_runs_aten_graph_as_int64(name, dtype):
    x, t, _ = _inputs("none", -100)
    loss = pl.get_loss(name)
    expected = loss(x, t, axis=1, reduction="none")
    out = loss(x.clone().requires_grad_(True), t.to(dtype), axis=1)
    assert type(out.grad_fn).__name__ == "NllLossBackward0"
    torch.testing.assert_close(out, expected.mean(), rtol=1e-14, atol=0)
    torch.testing.assert_close(loss(x, t.to(dtype), axis=1, reduction="none"), expected, rtol=0, atol=0)


@pytest.mark.parametrize("name", LOSSES)
def test_ignore_index_none_runs_aten_graph(name):
    x, t, _ = _inputs("none", -100)
    out = pl.get_loss(name)(x.clone().requires_grad_(True), t, axis=1, ignore_index=None)
    assert type(out.grad_fn).__name__ == "NllLossBackward0"
    with pl.fast_paths(False):
        torch.testing.assert_close(out, pl.get_loss(name)(x, t, axis=1, ignore_index=None), rtol=1e-14, atol=0)
    with pytest.raises(ValueError, match="class index -100 outside"):
        pl.get_loss(name)(x, torch.full_like(t, -100), axis=1, ignore_index=None)
