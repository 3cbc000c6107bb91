"""Backend primitives used by the recipes, against NumPy's sort and indexing on every backend."""

import numpy as np
import pytest

import polyloss as pl
from polyloss._namespace import resolve


def _backend(x):
    return resolve(x, input_name="keys")


@pytest.mark.parametrize("rows", [1, 7, 300])  # NumPy: row-by-row partition up to 256 rows, one sort above
@pytest.mark.parametrize("descending", [False, True])
def test_kth_value_is_the_sorted_value_at_each_rows_position(xp, rows, descending):
    rng = np.random.default_rng(rows)
    keys = rng.integers(0, 40, (rows, 53)).astype(np.float64)  # many ties
    keys[0, :5] = -np.inf
    position = rng.integers(1, 54, (rows, 1))
    ordered = -np.sort(-keys, axis=-1) if descending else np.sort(keys, axis=-1)
    expected = np.take_along_axis(ordered, position - 1, axis=-1)
    x = xp.asarray(keys)
    got = _backend(x).kth_value(x, xp.asarray(position, dtype=xp.ns.int64), descending=descending)
    np.testing.assert_array_equal(xp.to_numpy(got), expected.astype(xp.to_numpy(x).dtype))


def test_kth_value_on_torch_uses_topk_in_half_precision_and_leaves_no_graph():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(0)
    keys = rng.standard_normal((5, 64))
    position = rng.integers(1, 65, (5, 1))
    backend = pl.get_backend("torch")
    for dtype in (torch.float16, torch.float32):
        x = torch.tensor(keys, dtype=dtype, requires_grad=True)
        got = backend.kth_value(x, torch.from_numpy(position), descending=True)
        expected = np.take_along_axis(-np.sort(-x.detach().double().numpy(), axis=-1), position - 1, axis=-1)
        assert got.dtype == dtype and not got.requires_grad
        np.testing.assert_array_equal(got.double().numpy(), expected)


def test_kth_value_traces_under_torch_compile():
    torch = pytest.importorskip("torch")
    backend = pl.get_backend("torch")
    keys = torch.randn(4, 30)
    position = torch.tensor([[1], [5], [30], [12]])
    compiled = torch.compile(lambda k, p: backend.kth_value(k, p, descending=True), fullgraph=True, backend="eager")
    expected = torch.sort(keys, dim=-1, descending=True).values.gather(1, position - 1)
    assert torch.equal(compiled(keys, position), expected)


@pytest.mark.parametrize("dtype_name", ["float16", "float32", "float64", "int64"])
@pytest.mark.parametrize("descending", [False, True])
def test_kth_value_while_compiling_is_one_opaque_selection_without_a_sort(dtype_name, descending):
    """Under ``torch.compile`` on the CPU, ``kth_value`` is one ``polyloss::kth_value`` node running the eager
    selection: no sort in the graph, no graph break, NumPy's sorted value at each row's position."""
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(len(dtype_name))
    values = rng.integers(-6, 6, (5, 41)).astype(np.float64)  # ties
    values[0, :4] = -np.inf
    keys = torch.from_numpy(values).to(getattr(torch, dtype_name)) if dtype_name != "int64" else \
        torch.from_numpy(values[1:].astype(np.int64))
    position = torch.from_numpy(rng.integers(1, 42, (keys.shape[0], 1)))
    position[0] = 1
    backend = pl.get_backend("torch")
    targets = []

    def record(gm, example_inputs):
        targets.extend(str(node.target) for node in gm.graph.nodes)
        return gm

    torch._dynamo.reset()
    got = torch.compile(lambda k, p: backend.kth_value(k * 1, p, descending=descending), fullgraph=True,
                        backend=record)(keys, position)
    assert any("polyloss.kth_value" in t for t in targets)
    assert not any("sort" in t or "topk" in t for t in targets)
    ordered = np.sort(keys.double().numpy() if keys.is_floating_point() else keys.numpy(), axis=-1)
    expected = np.take_along_axis(ordered[..., ::-1] if descending else ordered, position.numpy() - 1, axis=-1)
    assert got.dtype == keys.dtype and got.shape == tuple(position.shape)
    np.testing.assert_array_equal(got.double().numpy() if got.is_floating_point() else got.numpy(), expected)


def test_kth_value_compiles_with_inductor_and_does_not_recompile():
    torch = pytest.importorskip("torch")
    from torch._dynamo.utils import counters

    backend = pl.get_backend("torch")
    torch._dynamo.reset()
    compiled = torch.compile(lambda k, p: backend.kth_value(k, p, descending=True), fullgraph=True)
    for seed in range(3):
        keys = torch.randn(3, 50, generator=torch.Generator().manual_seed(seed))
        position = torch.tensor([[3], [50], [1]])
        got = compiled(keys, position)
        assert torch.equal(got, torch.sort(keys, dim=-1, descending=True).values.gather(1, position - 1))
        if seed == 0:
            graphs = counters["stats"]["unique_graphs"]
    assert counters["stats"]["unique_graphs"] == graphs


def test_take_along_axis_gathers_like_numpy(xp):
    rng = np.random.default_rng(3)
    values = rng.standard_normal((3, 6, 4))
    index = rng.integers(0, 6, (3, 9, 4))
    x = xp.asarray(values)
    got = _backend(x).take_along_axis(x, xp.asarray(index, dtype=xp.ns.int64), axis=1)
    np.testing.assert_array_equal(xp.to_numpy(got), np.take_along_axis(xp.to_numpy(x), index, axis=1))


@pytest.mark.parametrize("along", ["trailing", "others"])
@pytest.mark.parametrize("axis", [0, 1, 2, -1])
def test_take_along_axis_with_indices_broadcast(xp, axis, along):
    rng = np.random.default_rng(4)
    x = xp.asarray(rng.standard_normal((3, 6, 5)))
    values = xp.to_numpy(x)
    shape = list(values.shape)
    shape[axis] = 7
    small = [1, 1, 1]
    if along == "trailing":  # constant along the axes after ``axis`` (whole rows)
        small[: axis % 3 + 1] = shape[: axis % 3 + 1]
    else:  # one index for every slice along ``axis``
        small[axis] = 7
    index = rng.integers(0, values.shape[axis], small)
    expected = np.take_along_axis(values, np.broadcast_to(index, shape), axis=axis)
    broadcast = xp.ns.broadcast_to(xp.asarray(index, dtype=xp.ns.int64), tuple(shape))
    got = _backend(x).take_along_axis(x, broadcast, axis=axis)
    np.testing.assert_array_equal(xp.to_numpy(got), expected)


@pytest.mark.parametrize("count", [0, 1, 9])
def test_scatter_rows_places_each_row_and_zeros_elsewhere(xp, count):
    rng = np.random.default_rng(count)
    positions = np.sort(rng.choice(12, count, replace=False))
    x = xp.asarray(rng.standard_normal((count, 3, 4)))
    expected = np.zeros((12, 3, 4))
    expected[positions] = xp.to_numpy(x)
    got = _backend(x).scatter_rows(x, xp.asarray(positions, dtype=xp.ns.int64), 12)
    assert tuple(got.shape) == (12, 3, 4) and got.dtype == x.dtype
    np.testing.assert_array_equal(xp.to_numpy(got), expected)


def test_scatter_rows_carries_the_gradient_of_its_values_on_torch():
    torch = pytest.importorskip("torch")
    values = torch.randn(3, 2, dtype=torch.float64, requires_grad=True)
    positions = torch.tensor([1, 4, 5])
    out = _backend(values).scatter_rows(values, positions, 6)
    (grad,) = torch.autograd.grad((out * torch.arange(12.0, dtype=torch.float64).reshape(6, 2)).sum(), values)
    np.testing.assert_array_equal(grad.numpy(), np.arange(12.0).reshape(6, 2)[[1, 4, 5]])


@pytest.mark.parametrize("axis", [0, -1])
def test_softmax_is_the_normalised_exponential_and_nan_stays_nan(xp, axis):
    rng = np.random.default_rng(3)
    values = rng.standard_normal((4, 5)) * 30.0
    values[1, 2] = np.nan
    shifted = values - np.nanmax(values, axis=axis, keepdims=True)
    expected = np.exp(shifted) / np.exp(shifted).sum(axis=axis, keepdims=True)  # NaN along the NaN's slice
    x = xp.asarray(values)
    got = _backend(x).softmax(x, axis)
    assert tuple(got.shape) == (4, 5) and got.dtype == x.dtype
    np.testing.assert_allclose(xp.to_numpy(got), expected, rtol=max(xp.rtol, 1e-13), atol=xp.atol * 1e-30)


def test_nonzero_positions_on_eager_host_arrays_with_fast_paths_only(xp):
    mask = np.zeros((3, 7), dtype=bool)
    mask[0, 2] = mask[2, 0] = mask[2, 6] = True
    x = xp.asarray(mask)
    backend = _backend(x)
    got = backend.nonzero_positions(x)
    if xp.name in ("numpy", "torch-f64", "torch-f32"):  # eager host arrays
        np.testing.assert_array_equal(xp.to_numpy(got), np.flatnonzero(mask))
        with pl.fast_paths(False):
            assert backend.nonzero_positions(x) is None
    else:  # a generic backend keeps static shapes
        assert got is None


def test_one_hot_bce_sum_is_bce_with_a_one_hot_target_and_its_gradient_is_torchs(xp):
    rng = np.random.default_rng(5)
    logits = rng.normal(size=(3, 7, 5)) * 4.0
    labels = rng.integers(0, 5, size=(3, 7))
    weight = rng.uniform(0.0, 1.0, size=(3, 7))
    target = np.zeros((3, 7, 5))
    np.put_along_axis(target, labels[..., None], weight[..., None], axis=-1)
    expected = (np.maximum(logits, 0) - logits * target + np.log1p(np.exp(-np.abs(logits)))).sum(-1)
    x = xp.asarray(logits)
    got = _backend(x).one_hot_bce_sum(x, xp.asarray(labels, dtype=xp.ns.int64), xp.asarray(weight))
    np.testing.assert_allclose(xp.to_numpy(got), expected, rtol=max(xp.rtol, 1e-13), atol=xp.atol)
    if xp.name.startswith("torch"):
        torch = pytest.importorskip("torch")
        for fast in (True, False):
            xg = x.clone().requires_grad_(True)
            with pl.fast_paths(fast):
                out = _backend(xg).one_hot_bce_sum(xg, xp.asarray(labels, dtype=xp.ns.int64), xp.asarray(weight))
            cotangent = torch.from_numpy(rng.normal(size=(3, 7))).to(xg.dtype)
            (grad,) = torch.autograd.grad(out, xg, cotangent)
            reference = torch.from_numpy(logits).to(xg.dtype).requires_grad_(True)
            bce = torch.nn.functional.binary_cross_entropy_with_logits(
                reference, torch.from_numpy(target).to(xg.dtype), reduction="none").sum(-1)
            (ref_grad,) = torch.autograd.grad(bce, reference, cotangent)
            np.testing.assert_allclose(grad.detach().numpy(), ref_grad.numpy(), rtol=max(xp.rtol, 1e-12),
                                       atol=xp.atol)


@pytest.mark.parametrize("g", [1, 6, 40])
def test_first_index_is_the_least_position_of_each_id_and_g_where_absent(xp, g):
    rng = np.random.default_rng(g)
    size = 9
    ids = rng.integers(0, size + 1, (4, g))  # size: an entry of no id
    ids[0] = size  # a row holding no id
    expected = np.full((4, size), g)
    for i in range(4):
        for j in reversed(range(g)):
            if ids[i, j] < size:
                expected[i, ids[i, j]] = j
    x = xp.asarray(ids, dtype=xp.ns.int64)
    got = _backend(x).first_index(x, size)
    assert tuple(got.shape) == (4, size) and got.dtype == xp.ns.int64
    np.testing.assert_array_equal(xp.to_numpy(got), expected)


def test_first_index_traces_under_torch_compile():
    torch = pytest.importorskip("torch")
    backend = pl.get_backend("torch")
    ids = torch.tensor([[2, 0, 2, 3], [3, 3, 1, 1]])
    compiled = torch.compile(lambda i: backend.first_index(i, 3), fullgraph=True, backend="eager")
    assert torch.equal(compiled(ids), torch.tensor([[1, 4, 0], [4, 2, 4]]))


@pytest.mark.parametrize("shape", [(0, 4, 3), (2, 0, 3), (2, 4, 0)])
def test_take_along_axis_with_empty_broadcast_indices(xp, shape):
    x = xp.asarray(np.zeros((shape[0], 5, shape[2])))
    index = xp.ns.broadcast_to(xp.asarray(np.zeros((1, shape[1], 1), dtype=np.int64)), shape)
    got = _backend(x).take_along_axis(x, index, axis=1)
    assert tuple(got.shape) == shape
