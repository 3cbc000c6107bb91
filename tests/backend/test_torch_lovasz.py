"""The torch fast path of ``lovasz_loss`` (one row at a time, integer-key sort, custom backward) against the
generic array-API code (``pl.fast_paths(False)``): the same values and gradients, ties, ignored pixels and
NaN included; the generic code wherever the fast path must not run (tracing, a target needing a gradient)."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

import polyloss as pl

torch = pytest.importorskip("torch")

MODES = ("multiclass", "binary", "multilabel")


def _data(mode, seed, *, ignore=None, dtype=torch.float64, shape=(3, 4, 5, 6), ties=True):
    """Logits on a coarse grid (many tied errors; hinge errors of exactly 0), targets with an absent class."""
    gen = torch.Generator().manual_seed(seed)
    n, c, *space = shape
    c = 1 if mode == "binary" else c
    x = torch.randn(n, c, *space, generator=gen, dtype=torch.float64) * 2
    if ties:
        x = (x * 2).round() / 2
    if mode == "multiclass":
        t = torch.randint(0, c, (n, *space), generator=gen)
        t[t == c - 1] = 0  # an absent class
    else:
        t = (torch.rand(n, c, *space, generator=gen) < 0.4).to(dtype)
    if ignore is not None:
        t = torch.where(torch.rand(t.shape, generator=gen) < 0.2, torch.tensor(ignore, dtype=t.dtype), t)
    return x.to(dtype), t


def _graph(out):
    names, stack, seen = set(), [out.grad_fn], set()
    while stack:
        fn = stack.pop()
        if fn is None or fn in seen:
            continue
        seen.add(fn)
        names.add(type(fn).__name__)
        stack += [f for f, _ in fn.next_functions]
    return names


def _value_and_grad(x, t, cotangent=None, *, fast=True, **options):
    xin = x.clone().requires_grad_(True)
    with pl.fast_paths(fast):
        out = pl.lovasz_loss(xin, t, **options)
        assert ("_LovaszRowsBackward" in _graph(out)) == fast  # the fast path ran, or the generic code
        (grad,) = torch.autograd.grad(out, xin, torch.ones_like(out) if cotangent is None else cotangent)
    return out.detach(), grad


def _assert_same(a, b, dtype):
    tol = {"rtol": 1e-12, "atol": 1e-15} if dtype == torch.float64 else {"rtol": 1e-6, "atol": 1e-8}
    torch.testing.assert_close(a, b, equal_nan=True, **tol)


@pytest.mark.parametrize("chunk", [None, 1, 100], ids=["rows-together", "one-row-a-sort", "rows-in-chunks"])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["f64", "f32"])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("ignore", [None, -1])
@pytest.mark.parametrize("per_image", [False, True])
@pytest.mark.parametrize("mode", MODES)
def test_fast_path_matches_generic_code_with_ties(monkeypatch, mode, per_image, ignore, reduction, dtype, chunk):
    from polyloss.backend import _torch_lovasz

    if chunk is not None:  # short rows are sorted together: here each alone (as long rows are), or a few
        monkeypatch.setattr(_torch_lovasz, "ALONE", 1 if chunk == 1 else 10**9)
        monkeypatch.setattr(_torch_lovasz, "CHUNK", chunk)
    x, t = _data(mode, 7 + 3 * per_image, ignore=ignore, dtype=dtype)
    options = {"mode": mode, "per_image": per_image, "ignore_index": ignore, "reduction": reduction}
    value, grad = _value_and_grad(x, t, **options)
    shape = tuple(value.shape)
    cotangent = torch.randn(shape, generator=torch.Generator().manual_seed(1), dtype=dtype) if shape else None
    value, grad = _value_and_grad(x, t, cotangent, **options)
    ref_value, ref_grad = _value_and_grad(x, t, cotangent, fast=False, **options)
    _assert_same(value, ref_value, dtype)
    _assert_same(grad, ref_grad, dtype)
    # the tied errors' order is the generic stable sort's: the subgradient at ties is the same (not only close)
    assert torch.count_nonzero(grad).item() > 0


@pytest.mark.parametrize(("mode", "where"), [("multiclass", (0, 1, 1, 2)), ("multiclass", (1, 0, 0, 0)),
                                             ("multilabel", (0, 0, 0, 0)), ("binary", (2, 0, 4, 5))])
@pytest.mark.parametrize("per_image", [False, True])
@pytest.mark.parametrize("ignore", [None, -1])
def test_nan_input_is_never_hidden_and_matches(mode, where, per_image, ignore):
    x, t = _data(mode, 11, ignore=ignore)
    x[where] = float("nan")
    if ignore is not None:  # the NaN at a kept pixel (the next test puts one at an ignored pixel)
        t[(where[0], *where[2:]) if mode == "multiclass" else where] = 0
    options = {"mode": mode, "per_image": per_image, "ignore_index": ignore}
    value, grad = _value_and_grad(x, t, **options)
    ref_value, ref_grad = _value_and_grad(x, t, fast=False, **options)
    assert torch.isnan(value).all()
    _assert_same(value, ref_value, x.dtype)
    _assert_same(grad, ref_grad, x.dtype)


@pytest.mark.parametrize("payload", [0x7FF8000000000000, 0x7FF0000000000001, -0x0008000000000000])
def test_nan_payloads_and_ignored_nan(payload):
    """A NaN of any payload or sign sorts first (as a float sort's NaN); one at an ignored pixel drops out."""
    x, t = _data("multilabel", 12, ignore=-1)
    x[0, 1, 2, 3] = torch.tensor(payload, dtype=torch.int64).view(torch.float64)
    x[1, 0, 0, 0] = torch.tensor(0x7FF8000000000000, dtype=torch.int64).view(torch.float64)
    t[1, 0, 0, 0] = -1
    for per_image in (False, True):
        value, grad = _value_and_grad(x, t, mode="multilabel", per_image=per_image, ignore_index=-1)
        ref_value, ref_grad = _value_and_grad(x, t, fast=False, mode="multilabel", per_image=per_image,
                                              ignore_index=-1)
        _assert_same(value, ref_value, x.dtype)
        _assert_same(grad, ref_grad, x.dtype)


@pytest.mark.parametrize("rows", [1, 3])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_sort_key_orders_as_a_stable_float_sort(dtype, rows):
    """The integer keys order each row exactly as ``torch.sort(descending=True, stable=True)`` of the floats
    (one row alone, or rows sorted together: their order indexes the flattened rows)."""
    from polyloss.backend._torch_lovasz import _sort_descending

    v = torch.tensor([0.5, 0.0, float("inf"), 0.5, float("nan"), 1e-45, 0.25, 0.0, float("nan"), 3.0, 0.5,
                      1e-300, float(np.finfo(np.float32).max)], dtype=dtype)
    v = torch.stack([v.roll(i) for i in range(rows)])
    values, order = _sort_descending(v)
    ref_values, ref_order = torch.sort(v, dim=-1, descending=True, stable=True)
    ref_order = ref_order + torch.arange(rows).unsqueeze(-1) * v.shape[1]
    assert torch.equal(order, ref_order.view(-1))
    torch.testing.assert_close(values, ref_values, equal_nan=True, rtol=0, atol=0)


def test_empty_classes_all_ignored_and_empty_batch():
    x, t = _data("multiclass", 13)
    for target, options in [(torch.full_like(t, 255), {"ignore_index": 255}),
                            (torch.full_like(t, 255), {"ignore_index": 255, "per_image": True}),
                            (torch.zeros_like(t), {"reduction": "none"})]:
        value, grad = _value_and_grad(x, target, **options)
        ref_value, ref_grad = _value_and_grad(x, target, fast=False, **options)
        _assert_same(value, ref_value, x.dtype)
        _assert_same(grad, ref_grad, x.dtype)
    with pl.fast_paths(True):  # nothing to sort: the generic code
        empty = torch.zeros(0, 3, 4, dtype=torch.float64, requires_grad=True)
        out = pl.lovasz_loss(empty, torch.zeros(0, 4, dtype=torch.int64))
        assert out.item() == 0.0 and "_LovaszRowsBackward" not in _graph(out)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32])
def test_class_axis_last_probabilities_and_half_inputs(dtype):
    x, t = _data("multiclass", 14, ignore=-1, dtype=torch.float64)
    x = torch.moveaxis(x, 1, -1).contiguous()
    options = {"axis": -1, "per_image": True, "ignore_index": -1}
    value, grad = _value_and_grad(x.to(dtype), t, **options)
    ref_value, ref_grad = _value_and_grad(x.to(dtype), t, fast=False, **options)
    assert value.dtype == dtype and grad.dtype == dtype
    torch.testing.assert_close(value, ref_value, rtol=0, atol=0)
    torch.testing.assert_close(grad, ref_grad, rtol=0, atol=0)
    p = torch.softmax(x, dim=-1)
    value, grad = _value_and_grad(p, t, from_logits=False, **options)
    ref_value, ref_grad = _value_and_grad(p, t, fast=False, from_logits=False, **options)
    _assert_same(value, ref_value, p.dtype)
    _assert_same(grad, ref_grad, p.dtype)


def test_without_autograd_and_with_a_target_needing_a_gradient():
    for mode, per_image in itertools.product(MODES, (False, True)):
        x, t = _data(mode, 15)
        with pl.fast_paths(True):
            fast = pl.lovasz_loss(x, t, mode=mode, per_image=per_image)
        with pl.fast_paths(False):
            generic = pl.lovasz_loss(x, t, mode=mode, per_image=per_image)
        _assert_same(fast, generic, x.dtype)
    x, t = _data("multilabel", 16)
    t.requires_grad_(True)  # the fast path differentiates by the input only: the generic code runs
    out = pl.lovasz_loss(x.requires_grad_(True), t, mode="multilabel")
    assert "_LovaszRowsBackward" not in _graph(out)
    assert torch.autograd.grad(out, t)[0].abs().sum() > 0


def test_double_backward_raises_on_the_fast_path_only():
    x, t = _data("multiclass", 17)
    x.requires_grad_(True)
    with pytest.raises(RuntimeError, match=r"lovasz_loss.*no second derivative.*fast_paths"):
        torch.autograd.grad(pl.lovasz_loss(x, t), x, create_graph=True)
    with pl.fast_paths(False):
        (g,) = torch.autograd.grad(pl.lovasz_loss(x, t), x, create_graph=True)
        assert torch.autograd.grad(g.sum(), x)[0].shape == x.shape


def test_retained_graph_gives_the_same_gradient_twice():
    x, t = _data("multiclass", 18, ignore=-1)
    x.requires_grad_(True)
    out = pl.lovasz_loss(x, t, ignore_index=-1, reduction="none")
    c = torch.arange(1.0, 5.0, dtype=x.dtype)
    (first,) = torch.autograd.grad(out, x, c, retain_graph=True)
    (second,) = torch.autograd.grad(out, x, c)
    assert torch.equal(first, second)


@pytest.mark.parametrize("mode", MODES)
def test_compiled_fullgraph_runs_the_generic_code(mode):
    x, t = _data(mode, 19, ignore=-1)
    options = {"mode": mode, "per_image": mode != "multiclass", "ignore_index": -1}
    torch._dynamo.reset()
    with pl.fast_paths(True):
        compiled = torch.compile(lambda a, b: pl.lovasz_loss(a, b, **options), fullgraph=True, backend="eager")
        xin = x.clone().requires_grad_(True)
        out = compiled(xin, t)
        (grad,) = torch.autograd.grad(out, xin)
    value, ref_grad = _value_and_grad(x, t, **options)
    _assert_same(out.detach(), value, x.dtype)
    _assert_same(grad, ref_grad, x.dtype)


def test_torch_func_grad_runs_the_generic_code():
    x, t = _data("multiclass", 20, ignore=-1)
    grad = torch.func.grad(lambda a: pl.lovasz_loss(a, t, ignore_index=-1))(x)
    _, ref_grad = _value_and_grad(x, t, ignore_index=-1)
    _assert_same(grad, ref_grad, x.dtype)


def test_matches_float64_numpy_reference_at_a_larger_size():
    """Against the generic code on NumPy (an independent backend) where rows hold thousands of pixels."""
    x, t = _data("multiclass", 21, ignore=-1, shape=(2, 5, 40, 50), ties=False)
    value, grad = _value_and_grad(x, t, ignore_index=-1)
    ref_value, ref_grad = pl.value_and_grad(pl.lovasz_loss, x.numpy(), t.numpy(), ignore_index=-1)
    np.testing.assert_allclose(value.numpy(), ref_value, rtol=1e-12)
    np.testing.assert_allclose(grad.numpy(), ref_grad, rtol=1e-10, atol=1e-15)


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("ignore", [None, -1])
@pytest.mark.parametrize("per_image", [False, True])
@pytest.mark.parametrize("mode", MODES)
def test_closed_form_gradient_on_the_fast_path_matches_generic_code(monkeypatch, mode, per_image, ignore,
                                                                    reduction):
    """``pl.value_and_grad`` runs the kernel where the input needs no gradient (the sort order's weights with
    the sign folded in), else the generic code, whose gradient stays differentiable."""
    from polyloss.backend import _torch_lovasz

    x, t = _data(mode, 23 + per_image, ignore=ignore)
    options = {"mode": mode, "per_image": per_image, "ignore_index": ignore, "reduction": reduction}
    shape = tuple(pl.lovasz_loss(x, t, **options).shape)
    cotangent = torch.randn(shape, generator=torch.Generator().manual_seed(2), dtype=x.dtype) if shape else None
    calls = []
    forward = _torch_lovasz._forward
    monkeypatch.setattr(_torch_lovasz, "_forward", lambda *a: calls.append(a[-1]) or forward(*a))
    value, grad = pl.value_and_grad(pl.lovasz_loss, x, t, cotangent=cotangent, **options)
    assert sorted(calls) == [False, True]  # the value's rows, then the gradient's
    with pl.fast_paths(False):
        ref_value, ref_grad = pl.value_and_grad(pl.lovasz_loss, x, t, cotangent=cotangent, **options)
    _assert_same(value, ref_value, x.dtype)
    _assert_same(grad, ref_grad, x.dtype)
    _, autograd_grad = _value_and_grad(x, t, cotangent, **options)
    _assert_same(grad, autograd_grad, x.dtype)
    xin = x.clone().requires_grad_(True)
    _, grad = pl.value_and_grad(pl.lovasz_loss, xin, t, cotangent=cotangent, **options)
    _assert_same(grad.detach(), ref_grad, x.dtype)
    assert grad.requires_grad == (mode == "multiclass")  # built by autograd-traced operations (the softmax's)


@pytest.mark.parametrize("shape", [(2, 2), (3, 4, 1), (1, 3, 1, 1), (5, 1), (2, 3, 1, 7)])
@pytest.mark.parametrize("per_image", [False, True])
def test_degenerate_spatial_sizes(shape, per_image):
    """No space (``(N, C)``), one pixel, one image or one class: rows whose views have unusual strides."""
    gen = torch.Generator().manual_seed(sum(shape))
    x = torch.randn(shape, generator=gen, dtype=torch.float64)
    for mode in MODES:
        xm = x[:, :1] if mode == "binary" else x
        t = (torch.randint(0, shape[1], (shape[0], *shape[2:]), generator=gen) if mode == "multiclass"
             else (torch.rand(xm.shape, generator=gen) < 0.5).double())
        for dtype in (torch.float64, torch.float32):
            options = {"mode": mode, "per_image": per_image}
            value, grad = _value_and_grad(xm.to(dtype), t, **options)
            ref_value, ref_grad = _value_and_grad(xm.to(dtype), t, fast=False, **options)
            _assert_same(value, ref_value, dtype)
            _assert_same(grad, ref_grad, dtype)
