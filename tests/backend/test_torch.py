"""PyTorch backend: losses trace into one graph under torch.compile(fullgraph=True)."""

from __future__ import annotations

import pytest

import polyloss as pl
from polyloss import _namespace
from polyloss._samples import sample

torch = pytest.importorskip("torch")

NAMES = [name for name in pl.losses() if sample(name) is not None]


@pytest.mark.parametrize("fast", [True, False], ids=["fast", "generic"])
@pytest.mark.parametrize("name", NAMES)
def test_compiles_fullgraph_and_matches_eager(name, fast):
    (x, *rest), options = sample(name)
    options = {k: torch.tensor(v) if hasattr(v, "dtype") else v for k, v in options.items()}  # array options
    xt = torch.tensor(x, requires_grad=True)
    rest = [torch.tensor(a) for a in rest]
    loss = pl.get_loss(name)
    torch._dynamo.reset()
    _namespace.clear_cache()  # the first call, with its cache miss, is traced too
    with pl.fast_paths(fast):
        compiled = torch.compile(lambda a, *others: loss(a, *others, **options), fullgraph=True, backend="eager")
        out = compiled(xt, *rest)
        (grad,) = torch.autograd.grad(out, xt)
        expected = loss(xt, *rest, **options)
        (expected_grad,) = torch.autograd.grad(expected, xt)
    torch.testing.assert_close(out, expected)
    torch.testing.assert_close(grad, expected_grad)


def test_every_fused_loss_is_compiled_above():
    assert {"sigmoid_focal_loss", "iou_loss", "giou_loss", "diou_loss", "ciou_loss", "hinge_loss",
            "squared_hinge_loss"} <= set(NAMES)


# -- fused closed-form backward: same values and gradients as autograd through the generic code ---------------

def _fast_and_generic(loss, x, y, cotangent_seed=0, **options):
    """(value, grad) with fast paths on and off, for a random cotangent of the value's shape."""
    results = []
    for fast in (True, False):
        xg = x.clone().requires_grad_(True)
        with pl.fast_paths(fast):
            out = loss(xg, y, **options)
        c = torch.randn(out.shape, dtype=out.dtype, generator=torch.Generator().manual_seed(cotangent_seed))
        (g,) = torch.autograd.grad(out, xg, c)
        results.append((out.detach(), g))
    return results


def _boxes(rng, n):
    corner = rng.uniform(0.0, 10.0, (n, 2))
    return np.concatenate([corner, corner + rng.uniform(0.5, 5.0, (n, 2))], axis=1)


def _box_pairs(seed=0):
    rng = np.random.default_rng(seed)
    b1, b2 = _boxes(rng, 40), _boxes(rng, 40)
    b2[0] = b1[0]  # identical
    b2[1] = b1[1] + np.array([1.0, 0.0, 1.0, 0.0]) * (b1[1, 2] - b1[1, 0])  # touching edge
    b2[2, 0], b2[2, 3] = b1[2, 0], b1[2, 3]  # tied edges: PyTorch's half gradient
    b1[3] = [1.0, 1.0, 1.0, 1.0]  # point boxes
    b2[4] = [2.0, 2.0, 2.0, 2.0]
    b1[5], b2[5] = [0.0, 0.0, 1.0, 1.0], [5.0, 5.0, 6.0, 6.0]  # disjoint
    return torch.tensor(b1).reshape(5, 8, 4), torch.tensor(b2).reshape(5, 8, 4)


np = pytest.importorskip("numpy")
REDUCTIONS = ("none", "mean", "sum")


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("name", ["iou_loss", "giou_loss", "diou_loss", "ciou_loss"])
@pytest.mark.parametrize("eps", [1e-7, 0.5])
def test_fused_box_losses_equal_generic(name, reduction, eps):
    b1, b2 = _box_pairs()
    (v_fast, g_fast), (v_gen, g_gen) = _fast_and_generic(pl.get_loss(name), b1, b2, eps=eps, reduction=reduction)
    torch.testing.assert_close(v_fast, v_gen, rtol=1e-12, atol=0)
    # atol: the IoU terms cancel to ~1e-17 where eps meets identical boxes
    torch.testing.assert_close(g_fast, g_gen, rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("gamma", [0.0, 1.0, 2.0, 1.5, 3.0])
@pytest.mark.parametrize("alpha", [0.25, -1.0, 0.7])
@pytest.mark.parametrize("soft", [False, True], ids=["hard", "soft"])
def test_fused_sigmoid_focal_equals_generic(reduction, gamma, alpha, soft):
    rng = np.random.default_rng(1)
    x = torch.tensor(3.0 * rng.standard_normal((8, 5)))
    y = torch.tensor(rng.uniform(0, 1, (8, 5)) if soft else rng.integers(0, 2, (8, 5)).astype(float))
    (v_fast, g_fast), (v_gen, g_gen) = _fast_and_generic(
        pl.sigmoid_focal_loss, x, y, alpha=alpha, gamma=gamma, reduction=reduction)
    torch.testing.assert_close(v_fast, v_gen, rtol=1e-12, atol=0)
    torch.testing.assert_close(g_fast, g_gen, rtol=1e-12, atol=1e-300)


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("name", ["hinge_loss", "squared_hinge_loss"])
@pytest.mark.parametrize("labels", ["signed", "binary", "int", "bool"])
@pytest.mark.parametrize("margin", [1.0, 0.0, 2.5])
def test_fused_hinge_equals_generic_with_zero_kink_subgradient(name, reduction, labels, margin):
    rng = np.random.default_rng(2)
    x = torch.tensor(rng.standard_normal((10, 6)))
    y = torch.tensor(rng.integers(0, 2, (10, 6)))
    x[0, :3] = torch.tensor([margin, -margin, 0.0])  # on the kink for y = 1, 0 (-1) and 1
    y[0, :3] = torch.tensor([1, 0, 1])
    y = {"signed": (2 * y - 1).double(), "binary": y.double(), "int": y, "bool": y.bool()}[labels]
    (v_fast, g_fast), (v_gen, g_gen) = _fast_and_generic(pl.get_loss(name), x, y, margin=margin, reduction=reduction)
    torch.testing.assert_close(v_fast, v_gen, rtol=1e-12, atol=0)
    torch.testing.assert_close(g_fast, g_gen, rtol=1e-12, atol=0)
    if name == "hinge_loss" and reduction == "sum":
        assert g_fast[0, 0] == 0.0 and g_fast[0, 1] == 0.0  # the kink's subgradient is 0 (relu's rule)


@pytest.mark.parametrize("name, options", [
    ("sigmoid_focal_loss", {}), ("sigmoid_focal_loss", {"gamma": 1.5, "alpha": -1.0}),
    ("iou_loss", {}), ("giou_loss", {}), ("diou_loss", {}),
    ("hinge_loss", {"margin": 0.5}), ("squared_hinge_loss", {}),
])  # not CIoU: its alpha is a constant for the gradient by definition, finite differences do not see that
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_fused_gradcheck(name, options, reduction):
    loss = pl.get_loss(name)
    if name.endswith("iou_loss"):
        rng = np.random.default_rng(3)
        x, y = (torch.tensor(_boxes(rng, 6)) for _ in range(2))
    elif "hinge" in name:
        x = torch.tensor([[0.3, -1.2, 2.0], [0.1, 0.7, -0.4]], dtype=torch.float64)  # no kink
        y = torch.tensor([[1.0, -1.0, 1.0], [0.0, 1.0, 0.0]], dtype=torch.float64)
    else:
        x = torch.tensor([[0.3, -1.2, 2.0], [0.1, 0.7, -4.0]], dtype=torch.float64)
        y = torch.tensor([[1.0, 0.0, 1.0], [0.3, 1.0, 0.0]], dtype=torch.float64)
    x.requires_grad_(True)
    assert torch.autograd.gradcheck(lambda a: loss(a, y, reduction=reduction, **options), (x,))


def test_fused_backward_is_used_and_double_backward_raises():
    x = torch.tensor([[0.3, -1.2], [2.0, 0.1]], dtype=torch.float64, requires_grad=True)
    y = torch.tensor([[1.0, 0.0], [0.0, 1.0]], dtype=torch.float64)
    out = pl.sigmoid_focal_loss(x, y)
    assert type(out.grad_fn).__name__ == "_FusedBackward"
    with pytest.raises(RuntimeError, match=r"sigmoid_focal_loss.*no second derivative.*fast_paths"):
        torch.autograd.grad(out, x, create_graph=True)
    with pl.fast_paths(False):  # the generic code has a second derivative
        (g,) = torch.autograd.grad(pl.sigmoid_focal_loss(x, y), x, create_graph=True)
        assert torch.autograd.grad(g.sum(), x)[0].shape == x.shape


@pytest.mark.parametrize("name", ["sigmoid_focal_loss", "giou_loss", "hinge_loss"])
def test_fused_leaves_a_target_gradient_to_autograd(name):
    b1, b2 = _box_pairs()
    if name == "giou_loss":
        x, y = b1, b2.clone()
    else:
        x, y = b1[..., :2].contiguous(), torch.ones(5, 8, 2, dtype=torch.float64)
    loss = pl.get_loss(name)
    grads = []
    for fast in (True, False):
        xg, yg = x.clone().requires_grad_(True), y.clone().requires_grad_(True)
        with pl.fast_paths(fast):
            out = loss(xg, yg)
        assert type(out.grad_fn).__name__ != "_FusedBackward"
        grads.append(torch.autograd.grad(out, (xg, yg)))
    for fast_grad, generic_grad in zip(*grads, strict=True):
        torch.testing.assert_close(fast_grad, generic_grad, rtol=1e-12, atol=0)


def test_fused_forward_without_grad_and_in_half_precision():
    rng = np.random.default_rng(4)
    x = torch.tensor(rng.standard_normal((6, 5)))
    y = torch.tensor(rng.integers(0, 2, (6, 5)).astype(float))
    with torch.no_grad():
        value = pl.sigmoid_focal_loss(x, y, reduction="none")
    with pl.fast_paths(False):
        torch.testing.assert_close(value, pl.sigmoid_focal_loss(x, y, reduction="none"), rtol=1e-12, atol=0)
    half = pl.sigmoid_focal_loss(x.to(torch.bfloat16).requires_grad_(), y.to(torch.bfloat16))
    assert half.dtype == torch.bfloat16
    torch.testing.assert_close(half.float(), pl.sigmoid_focal_loss(x, y).float(), rtol=2e-2, atol=1e-3)


# -- the clip primitive --------------------------------------------------------------------------------------

def test_clip_primitive_matches_the_standard_clip_off_the_bounds():
    from polyloss.backend._base import Backend

    backend = pl.get_backend("torch")
    generic = Backend.clip.__get__(backend)  # the array-API fallback, on the same namespace
    x = torch.tensor([-3.0, -1.0, -0.5, 0.0, 0.5, 1.0, 2.0], dtype=torch.float64, requires_grad=True)
    for lo, hi in ((None, 1.0), (-1.0, None), (-1.0, 1.0), (None, None)):
        fast, ref = backend.clip(x, min=lo, max=hi), generic(x, min=lo, max=hi)
        torch.testing.assert_close(fast, ref, rtol=0, atol=0)
        (g_fast,) = torch.autograd.grad(fast.sum(), x)
        (g_ref,) = torch.autograd.grad(ref.sum(), x)
        off_bounds = torch.tensor([v not in (lo, hi) for v in x.tolist()])
        torch.testing.assert_close(g_fast[off_bounds], g_ref[off_bounds], rtol=0, atol=0)
    ints = torch.arange(-3, 4)
    assert torch.equal(backend.clip(ints, min=-1, max=1), torch.clamp(ints, -1, 1))


@pytest.mark.parametrize("name, key", [("huber_loss", "delta"), ("smooth_l1_loss", "beta")])
@pytest.mark.parametrize("threshold", [1.0, 0.5])
def test_generic_huber_gradient_at_the_kink(name, key, threshold):
    d = torch.tensor([-2.0, -1.0, -0.5, 0.0, 0.5, 1.0, 2.0], dtype=torch.float64)
    x = d.clone().requires_grad_(True)
    with pl.fast_paths(False):
        (g,) = torch.autograd.grad(pl.get_loss(name)(x, torch.zeros_like(d), reduction="sum", **{key: threshold}), x)
    # closed form: d for |d| <= threshold (the kink included), threshold * sign(d) beyond; smooth L1 over beta
    expected = torch.where(d.abs() <= threshold, d, threshold * d.sign())
    if name == "smooth_l1_loss":
        expected = expected / threshold
    torch.testing.assert_close(g, expected, rtol=0, atol=0)
