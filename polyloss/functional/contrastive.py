"""Contrastive (metric-learning) losses: SimCLR's NT-Xent, with its closed-form gradient.

Each loss is declared with ``@loss`` and its gradient, next to it, with ``@gradient(...)``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from polyloss import _checks as v
from polyloss._namespace import resolve
from polyloss.backend._base import Backend
from polyloss.functional._common import compute_dtype
from polyloss.functional._common import finish
from polyloss.functional._define import gradient
from polyloss.functional._define import loss
from polyloss.functional._reductions import reduce
from polyloss.functional._reductions import sample_upstream
from polyloss.typing import Array
from polyloss.typing import ArrayT
from polyloss.typing import Reduction

__all__ = ["nt_xent_loss", "nt_xent_loss_grad"]

#: lower bound of a view's norm before normalising (``torch.nn.functional.normalize``'s eps)
NORM_EPS = 1e-12


@dataclass
class _Views:
    backend: Backend
    x: Any  # z1 in the compute dtype (the differentiated array)
    u: Any  # (2N, D) unit views: z1 then z2
    norm: Any  # (2N, 1) their norms, at least NORM_EPS
    big: Any  # (2N, 1) bool: the norm was not raised to NORM_EPS
    logits: Any  # (2N, 2N) cosine similarities / temperature, -inf on the diagonal
    positive: Any  # (2N,) the logit of each view's partner
    scale: float  # 1 / temperature


def _views(z1: Any, z2: Any, temperature: Any, reduction: str) -> _Views:
    """Checks (shared by the loss and its gradient), then the normalised views and their logits."""
    backend = resolve(z1, z2)
    v.check_reduction(reduction)
    v.check_floating(backend, z1, "z1")
    v.check_floating(backend, z2, "z2")
    if z1.ndim != 2:
        raise ValueError(f"z1 must be a (N, D) batch of embeddings, got shape {tuple(z1.shape)}")
    if tuple(z2.shape) != tuple(z1.shape):
        raise ValueError(f"z2 shape {tuple(z2.shape)} must equal z1 shape {tuple(z1.shape)} (two views per sample)")
    temperature = v.check_number(temperature, "temperature", strict=True)
    if not math.isfinite(temperature):
        raise ValueError(f"temperature must be finite, got {temperature!r}")
    a, b = compute_dtype(backend, z1, z2)
    xp = backend.xp
    scale = 1.0 / temperature
    if scale > float(xp.finfo(a.dtype).max):
        raise ValueError(f"temperature={temperature!r} is so small that 1/temperature overflows {a.dtype}")
    z = xp.concat([a, b], axis=0)
    n2 = z.shape[0]
    squared = xp.sum(z * z, axis=1, keepdims=True)
    big = squared > NORM_EPS * NORM_EPS
    # the square root is taken of at least eps^2, so its derivative stays finite at a zero view
    norm = xp.sqrt(xp.where(big, squared, NORM_EPS * NORM_EPS))
    u = z / norm
    similarity = xp.matmul(u, xp.matrix_transpose(u)) * scale
    index = xp.arange(n2, device=backend.device(z))
    diagonal = xp.expand_dims(index, axis=1) == xp.expand_dims(index, axis=0)
    logits = xp.where(diagonal, -math.inf, similarity)
    half = n2 // 2
    pair = xp.sum(u[:half, ...] * u[half:, ...], axis=1) * scale
    positive = xp.concat([pair, pair], axis=0)
    return _Views(backend, a, u, norm, big, logits, positive, scale)


def _per_view(views: _Views) -> tuple[Any, Any]:
    """``(per-view losses (2N,), row log-sum-exps (2N,))``."""
    if views.logits.shape[0] == 0:
        empty = views.positive
        return empty, empty
    lse = views.backend.logsumexp(views.logits, 1)
    return lse - views.positive, lse


@loss
def nt_xent_loss(z1: ArrayT, z2: Array, *, temperature: float = 0.5, reduction: Reduction = "mean") -> ArrayT:
    r"""NT-Xent, the normalised temperature-scaled cross-entropy of SimCLR (Chen et al., *A Simple
    Framework for Contrastive Learning of Visual Representations*, ICML 2020).

    The ``2N`` views :math:`z = [z_1; z_2]` are compared by cosine similarity
    :math:`s_{ik} = u_i \cdot u_k / \tau` (:math:`u = z / \max(\lVert z\rVert, 10^{-12})`, as
    ``torch.nn.functional.normalize``); each view's positive is its partner view
    :math:`\pi(i) = i \pm N`, every other view a negative, itself excluded:

    .. math::
        \ell_i = -s_{i\pi(i)} + \log \sum_{k \ne i} e^{s_{ik}}

    Args:
        z1: ``(N, D)`` embeddings of the first view (the array ``value_and_grad`` differentiates).
        z2: ``(N, D)`` embeddings of the second view of the same samples.
        temperature: :math:`\tau > 0`, default 0.5.
        reduction: ``"mean"`` (default: over the ``2N`` views, SimCLR's loss), ``"sum"``
            or ``"none"`` (the ``2N`` per-view losses, ``z1``'s rows first).

    Edge rules: NaN in a view gives NaN for every view (each one is a negative of the
    others); a zero view has similarity 0 to every other (finite loss and gradient);
    ``N = 0`` gives 0 (``"none"``: an empty vector), ``N = 1`` gives 0 (the partner is
    the only other view); a temperature that is NaN, not positive, infinite, or so small
    that its inverse overflows the dtype is a ``ValueError``; ``z1``/``z2`` of other
    shapes, or not 2-D, are a ``ValueError`` naming them, integer ones a ``TypeError``.

    Reference: the SimCLR loss as ``torch.nn.functional.cross_entropy`` over the
    masked similarity matrix with the partner views as targets.
    """
    views = _views(z1, z2, temperature, reduction)
    losses, _ = _per_view(views)
    return finish(views.backend, reduce(views.backend, losses, reduction), z1)


@gradient(nt_xent_loss)
def nt_xent_loss_grad(
    z1: Any, z2: Any, *, temperature: float = 0.5, reduction: Reduction = "mean", cotangent: Any = None
) -> Any:
    r"""Gradient of :func:`polyloss.nt_xent_loss` with respect to ``z1``.

    With :math:`G_{ik} = c_i (\operatorname{softmax}_{k \ne i}(s_i)_k - [k = \pi(i)])` (``c``
    the upstream factor of view ``i``): :math:`\partial/\partial u = (G + G^\top) u / \tau`,
    then through the normalisation, :math:`(g - u (u \cdot g)) / \lVert z\rVert`
    (:math:`g / 10^{-12}` for a view whose norm is below :math:`10^{-12}`); the first ``N`` rows.
    """
    views = _views(z1, z2, temperature, reduction)
    backend, xp = views.backend, views.backend.xp
    n2 = views.u.shape[0]
    if n2 == 0:
        return finish(backend, xp.zeros_like(views.x), z1)
    _, lse = _per_view(views)
    up = sample_upstream(backend, cotangent, (n2,), reduction, views.x)
    weights = xp.exp(views.logits - xp.expand_dims(lse, axis=1))  # 0 on the diagonal
    index = xp.arange(n2, device=backend.device(views.x))
    partner = (index + n2 // 2) % n2
    hot = xp.astype(xp.expand_dims(partner, axis=1) == xp.expand_dims(index, axis=0), weights.dtype)
    g = weights - hot
    g = g * (up if isinstance(up, float) else xp.expand_dims(up, axis=1))
    du = xp.matmul(g + xp.matrix_transpose(g), views.u) * views.scale
    radial = views.u * xp.sum(views.u * du, axis=1, keepdims=True)
    dz = (du - xp.where(views.big, radial, 0.0)) / views.norm
    return finish(backend, dz[: n2 // 2, ...], z1)
