"""polyloss under a type checker: what mypy --strict and pyright infer for NumPy and torch calls.

Every ``assert_type`` below is checked by both checkers in CI (``tests/test_typing.py``)::

    mypy docs/examples/typed_usage.py      # strict, configured in pyproject.toml
    pyright docs/examples/typed_usage.py   # strict for this file (the comments below)

and the script also runs (``python docs/examples/typed_usage.py``): ``assert_type``
does nothing at run time, so each line is an ordinary call.
"""

# pyright: strict
# pyright: reportUnknownMemberType=false
# (torch leaves a few parameters unannotated: Tensor.backward, torch.from_numpy)

from __future__ import annotations

import sys

import numpy as np
import numpy.typing as npt
import torch

import polyloss as pl
from polyloss.detection.ssd import SSDLoss
from polyloss.typing import Array
from polyloss.typing import ArrayT
from polyloss.typing import Recipe
from polyloss.typing import Reduction

if sys.version_info >= (3, 11):
    from typing import assert_type
else:  # pragma: no cover - Python 3.10
    from typing_extensions import assert_type


def numpy_calls() -> float:
    """A NumPy call is typed as returning a NumPy array of the input's dtype."""
    x: npt.NDArray[np.float64] = np.array([0.5, -1.0, 2.0])
    y: npt.NDArray[np.float64] = np.zeros(3)
    assert_type(pl.mse_loss(x, y), npt.NDArray[np.float64])
    assert_type(pl.huber_loss(x, y, delta=0.5, reduction="none"), npt.NDArray[np.float64])

    # class indices of another dtype do not change the result's type: it is the input's
    logits: npt.NDArray[np.float32] = np.zeros((4, 3), dtype=np.float32)
    labels: npt.NDArray[np.int64] = np.array([0, 1, 2, 0])
    assert_type(pl.cross_entropy(logits, labels, label_smoothing=0.1), npt.NDArray[np.float32])

    # a reduction held in a variable is typed Reduction (a plain str would not type-check)
    reduction: Reduction = "sum"
    assert_type(pl.l1_loss(x, y, reduction=reduction), npt.NDArray[np.float64])
    # kl_div alone also takes "batchmean" (polyloss.KLDivReduction)
    log_p: npt.NDArray[np.float64] = np.log(np.full((2, 3), 1 / 3))
    assert_type(pl.kl_div(log_p, np.full((2, 3), 1 / 3), reduction="batchmean"), npt.NDArray[np.float64])

    # value_and_grad: value and gradient of input's type, by function or by registered name
    value, grad = pl.value_and_grad(pl.mse_loss, x, y)
    assert_type(value, npt.NDArray[np.float64])
    assert_type(grad, npt.NDArray[np.float64])
    named_value, _ = pl.value_and_grad("cross_entropy", logits, labels)
    assert_type(named_value, npt.NDArray[np.float32])

    # the backend of an array (or of a name) is a polyloss.Backend
    assert_type(pl.get_backend(x), pl.Backend)
    return float(value) + float(named_value)


def torch_calls() -> float:
    """A torch call is typed as returning a tensor, so autograd type-checks too."""
    logits = torch.randn(4, 3, requires_grad=True)
    labels = torch.tensor([0, 1, 2, 0])
    loss = pl.cross_entropy(logits, labels)
    assert_type(loss, torch.Tensor)
    loss.backward()
    assert logits.grad is not None

    value, grad = pl.value_and_grad(pl.sigmoid_focal_loss, logits.detach(), torch.ones(4, 3))
    assert_type(value, torch.Tensor)
    assert_type(grad, torch.Tensor)
    return float(loss.item()) + float(value.item())


def box_loss(pred: ArrayT, target: Array, *, reduction: Reduction = "mean") -> ArrayT:
    """A function of one's own, generic over the array library as the losses are."""
    return pl.giou_loss(pred, target, reduction=reduction)


def generic_calls() -> None:
    boxes: npt.NDArray[np.float64] = np.array([[0.0, 0.0, 2.0, 2.0]])
    assert_type(box_loss(boxes, boxes), npt.NDArray[np.float64])
    assert_type(box_loss(torch.from_numpy(boxes), torch.from_numpy(boxes)), torch.Tensor)


def recipes(name: str) -> float:
    """A built-in recipe name gives its class; its call a RecipeResult of the input's array type."""
    ssd = pl.get_recipe("ssd", num_classes=3)
    assert_type(ssd, SSDLoss)
    priors = torch.tensor([[0.0, 0.0, 0.5, 0.5], [0.5, 0.5, 1.0, 1.0]], dtype=torch.float64)
    box_deltas = torch.zeros(1, 2, 4, dtype=torch.float64, requires_grad=True)
    class_logits = torch.zeros(1, 2, 3, dtype=torch.float64, requires_grad=True)
    gt_boxes = torch.tensor([[[0.0, 0.0, 0.5, 0.5]]], dtype=torch.float64)
    gt_labels = torch.tensor([[1]])
    result = ssd(box_deltas, class_logits, priors, gt_boxes, gt_labels)
    assert_type(result, pl.RecipeResult[torch.Tensor])
    assert_type(result.total, torch.Tensor)
    assert_type(result.components["loc"], torch.Tensor)
    result.total.backward()

    # any other name (a plugin's recipe) is a polyloss.typing.Recipe: a callable returning a RecipeResult
    other = pl.get_recipe(name, num_classes=3)
    assert_type(other, Recipe)
    return float(result.total.item())


def main() -> None:
    numpy_calls()
    torch_calls()
    generic_calls()
    print(f"ok: ssd total {recipes('ssd'):.4f}")


if __name__ == "__main__":
    main()
