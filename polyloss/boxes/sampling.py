"""Sampling and mining: balanced random sampling with seeds, hard negative mining, random keys, top-k masks.

No data-dependent shape: every selection is a boolean mask of the input's shape.
"""

from __future__ import annotations

import math
import numbers
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from polyloss import _checks as v
from polyloss._namespace import resolve
from polyloss.backend._base import Backend

__all__ = [
    "KEY_BITS",
    "BalancedSampler",
    "hard_negative_mining",
    "is_generator",
    "random_keys",
    "rank",
    "sample_balanced",
    "top_k_mask",
]


def rank(backend: Backend, keys: Any, *, descending: bool = False) -> Any:
    """Position of each element of ``keys`` in its row's stable sort (last axis), int64.

    Two stable ``argsort`` calls (the standard has no top-k); ties are ranked
    by index.
    """
    xp = backend.xp
    order = xp.argsort(keys, axis=-1, descending=descending, stable=True)
    return xp.astype(xp.argsort(order, axis=-1, stable=True), xp.int64)


def top_k_mask(backend: Backend, keys: Any, k: Any, *, descending: bool = False, distinct: bool = False) -> Any:
    """``rank(backend, keys, descending=descending) < k`` with one selection instead of two argsorts.

    Per row, the ``k``-th key is the threshold: keys strictly before it are
    taken, and of the keys equal to it the first ones in index order (a
    cumulative count), so ties are broken exactly as :func:`rank` does.

    Args:
        keys: ``(..., P)`` real or integer keys (no NaN).
        k: int array ``(..., 1)`` (or a Python int): how many per row; 0 takes none.
        distinct: the keys of a row are known to be distinct (no tie to break).
    """
    xp = backend.xp
    n = keys.shape[-1]
    device = backend.device(keys)
    if n == 0:
        return xp.zeros(keys.shape, dtype=xp.bool, device=device)
    if isinstance(k, int):
        k = xp.full((*keys.shape[:-1], 1), k, dtype=xp.int64, device=device)
    threshold = backend.kth_value(keys, xp.clip(k, 1, n), descending=descending)
    if distinct:
        return (keys >= threshold if descending else keys <= threshold) & (k > 0)
    before = keys > threshold if descending else keys < threshold
    tie = keys == threshold
    room = k - xp.sum(xp.astype(before, xp.int64), axis=-1, keepdims=True)
    tie_rank = xp.cumulative_sum(xp.astype(tie, xp.int64), axis=-1)
    return (before | (tie & (tie_rank <= room))) & (k > 0)


#: :func:`random_keys` are below ``2**KEY_BITS``, so that three groups of them fit in an int64.
KEY_BITS = 60


def random_keys(backend: Backend, shape: tuple[int, ...], *, seed: Any, device: Any) -> Any:
    """Distinct random int64 keys in ``[0, 2**KEY_BITS)``, in uniformly random order along the last axis.

    Each key is random high bits above the element's index (so the keys of
    a row are distinct by construction), one draw per element: sorting a row
    by its keys is an independent random permutation (up to ties of the
    random bits, which have probability about ``n**2 / 2**(60 - log2 n)``).

    ``seed``:

    - an int, a 0-d integer array of the backend, or a sequence of them
      (each in ``[0, 2**63)``): the same keys on every call, and on every
      backend and device. The keys are a counter-based hash of the seed and
      each element's position, computed with array operations, so they also
      run inside ``torch.compile`` and ``jax.jit``; an array seed (a step
      counter, say) is traced, so that a compiled function draws a new sample
      for each value without being compiled again;
    - ``None``: fresh keys (:meth:`Backend.random_bits`: NumPy's generator
      for host arrays, the framework's own generator on a GPU or while
      compiling; under ``jax.jit`` a host draw is a constant of the compiled
      function, so pass an array seed there);
    - a ``numpy.random.Generator``: drawn from it on the host, advancing it.

    (Where the namespace's int64 is narrower, as JAX's without x64, a random
    permutation of ``0..n-1`` per row, drawn on the host.) A backend may
    provide ``random_keys(shape, seed=, device=)`` natively.
    """
    native = getattr(backend, "random_keys", None)
    if native is not None:
        return native(shape, seed=seed, device=device)
    parts = _seed_parts(backend, seed)
    n = shape[-1] if shape else 1
    xp = backend.xp
    if xp.iinfo(xp.asarray(0, dtype=xp.int64, device=device).dtype).bits < 64:  # JAX without x64: a permutation
        import numpy as np

        rng = seed if parts is None else np.random.default_rng([int(p) for p in parts])
        return xp.asarray(rng.permuted(np.broadcast_to(np.arange(n, dtype=np.int64), shape), axis=-1),
                          dtype=xp.int64, device=device)
    index_bits = max(1, (n - 1).bit_length())
    if index_bits > KEY_BITS - 20:
        raise ValueError(f"random_keys supports rows of at most 2**{KEY_BITS - 20} elements, got {n}")
    bits = KEY_BITS - index_bits
    if parts is None:
        high = backend.random_bits(shape, bits, rng=seed, device=device)
    elif all(isinstance(p, int) for p in parts) and backend.is_host_array(
            xp.empty((0,), dtype=xp.int64, device=device)):
        import numpy as np

        high = xp.asarray(_hashed_bits(np, shape, _seed_words(parts), bits, None), dtype=xp.int64, device=device)
    else:
        high = _hashed_bits(xp, shape, _seed_words(parts), bits, device)
    return (high << index_bits) | xp.arange(n, dtype=xp.int64, device=device)


_MASK31 = (1 << 31) - 1
_SEED_ERROR = ("seed must be a non-negative int, a 0-d integer array, a sequence of them, None or a "
               "numpy.random.Generator")


def _seed_parts(backend: Backend, seed: Any) -> list[Any] | None:
    """The ints and 0-d int64 arrays of a seed (host arrays read as ints); None for None or a Generator."""
    if seed is None or is_generator(seed):
        return None
    items = list(seed) if isinstance(seed, (list, tuple)) else [seed]
    if not items:
        raise ValueError(f"{_SEED_ERROR}, got {seed!r}")
    parts: list[Any] = []
    for item in items:
        if isinstance(item, numbers.Integral) and not isinstance(item, bool):
            item = int(item)
        elif not _is_int_scalar_array(backend, item):
            raise ValueError(f"{_SEED_ERROR}, got {item!r}")
        if not isinstance(item, int):
            if not backend.is_host_array(item):
                parts.append(backend.xp.astype(item, backend.xp.int64))
                continue
            item = int(item)
        if not 0 <= item < 2**63:
            raise ValueError(f"{_SEED_ERROR} (each in [0, 2**63)), got {item!r}")
        parts.append(item)
    return parts


def is_generator(seed: Any) -> bool:
    """Whether ``seed`` is a ``numpy.random.Generator`` (without importing NumPy)."""
    numpy = sys.modules.get("numpy")
    return numpy is not None and isinstance(seed, numpy.random.Generator)


def _is_int_scalar_array(backend: Backend, x: Any) -> bool:
    """Whether ``x`` is a 0-d integer array of ``backend``."""
    try:
        own = resolve(x, input_name="seed") is backend
    except TypeError:
        return False
    return own and x.ndim == 0 and backend.dtype_kind(x.dtype) == "i"


def _seed_words(parts: Sequence[Any]) -> tuple[Any, Any, Any]:
    """Three 31-bit hash words of the seed parts: the same numbers from Python ints and from int64 arrays."""
    state = 0x2545F491
    for part in parts:
        for limb in (part & _MASK31, (part >> 31) & _MASK31, part >> 62):
            state = _hash31(state ^ limb)
    first = _hash31(state ^ 0x68E31DA4)
    second = _hash31(first ^ 0x1B56C4E9)
    return first, second, _hash31(second ^ 0x3C6EF372)


def _hash31(h: Any) -> Any:
    """A 31-bit integer mixing function of ints (Python or int64 arrays) in ``[0, 2**31)``; every product stays
    below ``2**63``."""
    h = h ^ (h >> 16)
    h = (h * 0x7FEB352D) & _MASK31
    h = h ^ (h >> 15)
    h = (h * 0x846CA68B) & _MASK31
    return h ^ (h >> 16)


def _hashed_bits(xp: Any, shape: tuple[int, ...], words: tuple[int, int, int], bits: int, device: Any) -> Any:
    """``bits`` (at most 59) pseudo-random bits per element of ``shape``, a function of the seed words and the
    element's flat position."""
    size = math.prod(shape)
    position = xp.arange(size, dtype=xp.int64) if device is None else xp.arange(size, dtype=xp.int64, device=device)
    position = xp.reshape(position, shape)
    first = _hash31(_hash31((position & _MASK31) ^ words[0]) ^ (position >> 31) ^ words[1])
    second = _hash31(first ^ words[2])
    return ((first << 28) | (second >> 3)) >> (59 - bits)


def sample_balanced(
    labels: Any,
    *,
    batch_size_per_image: int,
    positive_fraction: float,
    seed: Any = None,
) -> tuple[Any, Any]:
    """Balanced random sampling of positives and negatives, per row (torchvision's sampler).

    Args:
        labels: int array ``(..., A)``: ``>= 1`` positive, ``0`` negative,
            negative values ignored (never sampled).
        batch_size_per_image: at most this many samples per row.
        positive_fraction: at most ``int(batch_size_per_image * positive_fraction)``
            positives per row; negatives fill the rest of the batch.
        seed: int (same sample every call), None (fresh) or a
            ``numpy.random.Generator``.

    Returns:
        Boolean masks ``(positive, negative)`` of ``labels``' shape. Each
        sample is uniformly random among the candidates of its row; when there
        are fewer candidates than places, every candidate is taken.
    """
    backend = resolve(labels, input_name="labels")
    if backend.dtype_kind(labels.dtype) != "i":
        raise TypeError(f"labels must have an integer dtype, got {labels.dtype}")
    if isinstance(batch_size_per_image, bool) or not isinstance(batch_size_per_image, int) or batch_size_per_image < 0:
        raise ValueError(f"batch_size_per_image must be a non-negative int, got {batch_size_per_image!r}")
    fraction = v.check_number(positive_fraction, "positive_fraction", maximum=1.0)
    xp = backend.xp
    if labels.ndim == 0:
        raise ValueError("labels must have at least one axis")
    keys = random_keys(backend, tuple(labels.shape), seed=seed, device=backend.device(labels))
    positive = labels >= 1
    negative = labels == 0
    cap = int(batch_size_per_image * fraction)
    n_pos = xp.sum(xp.astype(positive, xp.int64), axis=-1, keepdims=True)
    n_neg = xp.sum(xp.astype(negative, xp.int64), axis=-1, keepdims=True)
    num_pos = xp.where(n_pos < cap, n_pos, cap)
    room = batch_size_per_image - num_pos
    num_neg = xp.where(n_neg < room, n_neg, room)
    # one ranking: positives first, then negatives, then the ignored (keys below 2**KEY_BITS, offset by
    # that per group); a negative's rank minus the row's positive count is its rank among the negatives
    group = 2 - 2 * xp.astype(positive, xp.int64) - xp.astype(negative, xp.int64)
    ordered = keys + group * ((1 << KEY_BITS) if xp.iinfo(keys.dtype).bits == 64 else labels.shape[-1])
    return (positive & top_k_mask(backend, ordered, num_pos, distinct=True),
            negative & top_k_mask(backend, ordered, n_pos + num_neg, distinct=True))


@dataclass(frozen=True)
class BalancedSampler:
    """:func:`sample_balanced` with fixed sizes (a recipe part)."""

    batch_size_per_image: int
    positive_fraction: float

    def __call__(self, labels: Any, *, seed: Any = None) -> tuple[Any, Any]:
        return sample_balanced(
            labels,
            batch_size_per_image=self.batch_size_per_image,
            positive_fraction=self.positive_fraction,
            seed=seed,
        )


def hard_negative_mining(loss: Any, positive: Any, *, neg_pos_ratio: float = 3.0) -> Any:
    """Hard negatives per row: the highest-loss non-positives (Liu et al. 2016).

    Args:
        loss: ``(..., P)`` per-prediction loss used to rank (no gradient).
            A NaN loss ranks above every number (it is mined first, so that
            the NaN reaches the recipe's loss instead of being hidden).
        positive: boolean ``(..., P)``; positives are never selected.
        neg_pos_ratio: per row, at most ``floor(neg_pos_ratio * positives)``
            negatives (fewer when the row has fewer non-positives; a row with
            no positive selects none). Ties are taken in index order. Any
            ratio of at least ``P`` (``inf`` included) selects every
            non-positive of a row with a positive. NaN or negative: ValueError.

    Returns:
        Boolean mask ``(..., P)`` of the selected negatives, disjoint from
        ``positive`` (torchvision's SSD can select positives again when they
        exceed a quarter of the priors; this never does).
    """
    backend = resolve(loss, positive, input_name="loss", target_name="positive")
    ratio = v.check_number(neg_pos_ratio, "neg_pos_ratio")
    v.check_floating(backend, loss, "loss")
    v.check_same_shape(loss, positive, input_name="loss", target_name="positive")
    if backend.dtype_kind(positive.dtype) != "b":
        raise TypeError(f"positive must be a boolean array, got {positive.dtype}")
    xp = backend.xp
    n_pos = xp.sum(xp.astype(positive, xp.int64), axis=-1, keepdims=True)
    p = int(loss.shape[-1]) if loss.ndim else 1
    if ratio >= p:  # one positive already allows every prediction (no int64 overflow, inf included)
        k = xp.minimum(n_pos, 1) * p
    elif ratio.is_integer():
        k = n_pos * int(ratio)
    else:
        k = xp.astype(xp.floor(ratio * xp.astype(n_pos, loss.dtype)), xp.int64)
    ranked = backend.stop_gradient(loss)
    key = xp.where(positive, -math.inf, xp.where(ranked == ranked, ranked, math.inf))
    return top_k_mask(backend, key, k, descending=True) & ~positive
