"""PyTorch fast paths under torch.func transforms: vmap and grad give what a loop and autograd give."""

from __future__ import annotations

import pytest

import polyloss as pl

torch = pytest.importorskip("torch")


def _cases():
    g = torch.Generator().manual_seed(0)
    labels = torch.randint(0, 2, (4, 5), generator=g).double()
    classes = torch.tensor([0, 1, -100, 3])
    boxes = torch.tensor([[0.0, 0.0, 2.0, 2.0], [1.0, 1.0, 3.0, 4.0]], dtype=torch.float64)
    return {
        "hinge_loss": (lambda a: pl.hinge_loss(a, labels), (3, 4, 5)),
        "squared_hinge_loss": (lambda a: pl.squared_hinge_loss(a, labels), (3, 4, 5)),
        "sigmoid_focal_loss": (lambda a: pl.sigmoid_focal_loss(a, labels), (3, 4, 5)),
        "cross_entropy": (lambda a: pl.cross_entropy(a, classes, axis=1), (3, 4, 5)),
        "nll_loss": (lambda a: pl.nll_loss(a, classes, axis=1), (3, 4, 5)),
        "giou_loss": (lambda a: pl.giou_loss(a, boxes), None),
    }


def _batch(name, shape):
    if shape is not None:
        return torch.randn(*shape, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    corner = torch.rand(3, 2, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    return torch.cat([corner, corner + 1.0 + corner.flip(-1)], dim=-1)


@pytest.mark.parametrize("name", list(_cases()))
def test_vmap_grad_and_per_sample_grad(name):
    loss, shape = _cases()[name]
    x = _batch(name, shape)
    torch.testing.assert_close(torch.func.vmap(loss)(x), torch.stack([loss(a) for a in x]), rtol=1e-12, atol=0)
    expected = []
    for a in x:
        a = a.clone().requires_grad_(True)
        expected.append(torch.autograd.grad(loss(a), a)[0])
    torch.testing.assert_close(torch.func.grad(loss)(x[0]), expected[0], rtol=1e-12, atol=0)
    torch.testing.assert_close(torch.func.vmap(torch.func.grad(loss))(x), torch.stack(expected), rtol=1e-12, atol=0)
