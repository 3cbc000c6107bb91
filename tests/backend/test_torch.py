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
    x, y, options = sample(name)
    xt = torch.tensor(x, requires_grad=True)
    yt = torch.tensor(y)
    loss = pl.get_loss(name)
    torch._dynamo.reset()
    _namespace.clear_cache()  # the first call, with its cache miss, is traced too
    with pl.fast_paths(fast):
        compiled = torch.compile(lambda a, b: loss(a, b, **options), fullgraph=True, backend="eager")
        out = compiled(xt, yt)
        (grad,) = torch.autograd.grad(out, xt)
        expected = loss(xt, yt, **options)
        (expected_grad,) = torch.autograd.grad(expected, xt)
    torch.testing.assert_close(out, expected)
    torch.testing.assert_close(grad, expected_grad)
