"""Closed-form (sub)gradients of the margin losses (see :mod:`polyloss.functional.margin`)."""

from __future__ import annotations

from typing import Any

from polyloss._namespace import resolve
from polyloss.autodiff._common import apply_sample_seed
from polyloss.autodiff._common import one_hot
from polyloss.autodiff._common import pointwise_scale
from polyloss.autodiff._common import sample_upstream
from polyloss.backend._base import Backend
from polyloss.functional._common import compute_dtype
from polyloss.functional._common import finish
from polyloss.functional.classification import class_axis_inputs
from polyloss.functional.classification import pick
from polyloss.functional.classification import take_per_class
from polyloss.functional.margin import _signed_target

__all__ = ["hinge_loss_grad", "multi_margin_loss_grad", "squared_hinge_loss_grad"]


def _hinge_grad(backend: Backend, input: Any, target: Any, margin: float, reduction: str, cotangent: Any,
                squared: bool) -> Any:
    xp = backend.xp
    (x,) = compute_dtype(backend, input)
    s = _signed_target(backend, x, target)  # {0, 1} labels read as {-1, 1}, as the loss does
    z = float(margin) - s * x
    # strict inequality, as the loss's forward: the subgradient at the kink z = 0 is 0
    g = xp.where(z > 0, -2.0 * z * s if squared else -s, 0.0)
    up = pointwise_scale(backend, x, None, reduction, cotangent, normalize_by_weight=False)
    return finish(backend, g * up, input)


def hinge_loss_grad(
    input: Any, target: Any, *, margin: float = 1.0, reduction: str = "mean", cotangent: Any = None
) -> Any:
    r"""Subgradient of :func:`polyloss.hinge_loss`: :math:`-y` where :math:`m - y f > 0`, else 0 (0 at the kink)."""
    backend = resolve(input, target)
    return _hinge_grad(backend, input, target, margin, reduction, cotangent, squared=False)


def squared_hinge_loss_grad(
    input: Any, target: Any, *, margin: float = 1.0, reduction: str = "mean", cotangent: Any = None
) -> Any:
    r"""Gradient of :func:`polyloss.squared_hinge_loss`: :math:`-2 y \max(0, m - y f)`."""
    backend = resolve(input, target)
    return _hinge_grad(backend, input, target, margin, reduction, cotangent, squared=True)


def multi_margin_loss_grad(
    input: Any,
    target: Any,
    *,
    p: int = 1,
    margin: float = 1.0,
    weight: Any = None,
    axis: int = -1,
    reduction: str = "mean",
    cotangent: Any = None,
) -> Any:
    r"""Subgradient of :func:`polyloss.multi_margin_loss`.

    With :math:`z_j = m - x_y + x_j` and :math:`h'_j = [z_j > 0]` (``p=1``) or
    :math:`2 z_j [z_j > 0]` (``p=2``) for :math:`j \ne y`:
    :math:`\partial\ell/\partial x_j = w_y h'_j / C` and
    :math:`\partial\ell/\partial x_y = -\sum_{j \ne y} w_y h'_j / C`
    (0 at the kink :math:`z_j = 0`, as PyTorch's backward).
    """
    backend = resolve(input, target)
    xp = backend.xp
    axis, _ = class_axis_inputs(backend, input, target, axis, allow_probabilities=False)
    x, w = compute_dtype(backend, input, weight)
    num_classes = x.shape[axis]
    z = float(margin) - xp.expand_dims(pick(backend, x, target, axis), axis=axis) + x
    hot = one_hot(backend, target, num_classes, axis, x.ndim)
    active = (z > 0) & ~hot
    dh = xp.where(active, 2.0 * z, 0.0) if p == 2 else xp.astype(active, x.dtype)
    g = dh - xp.astype(hot, x.dtype) * xp.sum(dh, axis=axis, keepdims=True)
    up = sample_upstream(backend, cotangent, tuple(target.shape), reduction, x) / num_classes
    if w is not None:
        up = up * take_per_class(backend, w, target)
    return finish(backend, apply_sample_seed(backend, g, up, axis), input)
