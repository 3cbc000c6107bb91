"""The backend object: an array namespace plus what the standard lacks.

A backend binds one array-API namespace (``xp``) and adds the primitives the
standard does not have (``logsumexp``, ``sigmoid``, ``stop_gradient``, ...),
each with a portable fallback written in array-API code, and optionally a
mapping of *fast paths*: native whole-loss kernels keyed by loss name.

Backends are found once per array type and then cached (see
:mod:`polyloss._namespace`); nothing here runs a pluggy hook.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Callable
from collections.abc import Mapping
from types import MappingProxyType
from types import ModuleType
from typing import Any

__all__ = ["Backend", "GenericBackend"]

_NO_FAST_PATHS: Mapping[str, Callable[..., Any]] = MappingProxyType({})


class Backend:
    """Base class of every backend; subclass it in a backend plugin.

    Class attributes a subclass sets:

    ``name``
        Registered name (``"numpy"``, ``"torch"``, ...).
    ``module_name``
        Top-level module of the array library. The backend is only asked about
        an array once this module is in :data:`sys.modules`, so registering a
        backend never imports its library.
    ``host``
        True when array values can be read without a device synchronisation
        (NumPy). Enables value checks such as class indices out of range.

    Methods a subclass overrides: :meth:`matches`, :meth:`load_namespace`, and
    any primitive it has natively. :attr:`fast_paths` maps a loss name to a
    callable with the loss's signature returning the loss or
    ``NotImplemented`` when the options are not ones it covers exactly.
    :attr:`kernel_plans` maps a loss name to a plan builder (see :meth:`plan_key`).
    """

    name: str = "generic"
    module_name: str | None = None
    host: bool = False

    def __init__(self) -> None:
        self._xp: ModuleType | None = None
        self._kinds: dict[Any, str] = {}
        self.fast_paths: Mapping[str, Callable[..., Any]] = _NO_FAST_PATHS
        #: loss name -> ``builder(*arrays, **options)``: the kernel call ``run(*arrays)`` that the fast path makes
        #: for arrays of this signature and these checked options, or None. ``run`` returns
        #: ``NotImplemented`` where a value it reads (a guard) is not one it covers; the loss then takes its
        #: full path. Built once per call signature (:meth:`plan_key`), after the loss's checks passed.
        self.kernel_plans: Mapping[str, Callable[..., Any]] = _NO_FAST_PATHS

    def plan_key(self, name: str, arrays: tuple[Any, ...], options: tuple[Any, ...]) -> tuple[Any, ...] | None:
        """The key of a call's signature under which its kernel plan is cached, or None where no plan may be
        used now (the default: none). It must hold everything the loss's checks other than value reads depend
        on: the arrays' types, dtypes, shapes and devices and the options with their types."""
        return None

    # -- identification -------------------------------------------------
    def matches(self, x: object) -> bool:
        """Whether ``x`` is an array of this backend's library."""
        return False

    def load_namespace(self) -> ModuleType:
        """Import and return the array-API namespace (called once, lazily)."""
        raise NotImplementedError

    @property
    def xp(self) -> ModuleType:
        if self._xp is None:
            self._xp = self.load_namespace()
        return self._xp

    def available(self) -> bool:
        """Whether the library can be imported here (used by listings, not per call)."""
        if self.module_name is None:
            return True
        if self.module_name in sys.modules:
            return True
        import importlib.util

        return importlib.util.find_spec(self.module_name) is not None

    def version(self) -> str:
        module = sys.modules.get(self.module_name or "")
        return str(getattr(module, "__version__", "unknown"))

    def is_host_array(self, x: Any) -> bool:
        """Whether the values of ``x`` can be read without a device sync."""
        return self.host

    def device(self, x: Any) -> Any:
        import array_api_compat

        return array_api_compat.device(x)

    def dtype_kind(self, dtype: Any) -> str:
        """``"f"`` real floating, ``"i"`` integer, ``"b"`` bool, ``"c"`` complex, ``"?"`` other (cached)."""
        kind = self._kinds.get(dtype)
        if kind is None:
            xp = self.xp
            if xp.isdtype(dtype, "real floating"):
                kind = "f"
            elif xp.isdtype(dtype, "integral"):
                kind = "i"
            elif xp.isdtype(dtype, "bool"):
                kind = "b"
            elif xp.isdtype(dtype, "complex floating"):
                kind = "c"
            else:
                kind = "?"
            self._kinds[dtype] = kind
        return kind

    def as_array(self, value: Any) -> Any:
        """A reduction's result as an array of this namespace (NumPy returns scalars)."""
        return value

    def __repr__(self) -> str:
        return f"<polyloss backend {self.name!r}>"

    # -- primitives the standard lacks (portable fallbacks) -------------
    def stop_gradient(self, x: Any) -> Any:
        """``x`` with no gradient flowing back (identity where there is no autograd)."""
        return x

    def logsumexp(self, x: Any, axis: int, keepdims: bool = False) -> Any:
        """``log(sum(exp(x), axis))``, shifted by the maximum for stability."""
        xp = self.xp
        m = xp.max(x, axis=axis, keepdims=True)
        # an all -inf slice would give inf - inf = nan; shift by 0 there
        m = xp.where(xp.isfinite(m), m, 0.0)
        m = self.stop_gradient(m)
        out = xp.log(xp.sum(xp.exp(x - m), axis=axis, keepdims=True)) + m
        return out if keepdims else xp.squeeze(out, axis=axis)

    def log_softmax(self, x: Any, axis: int) -> Any:
        """``x - logsumexp(x, axis)``, as ``(x - m) - log(sum(exp(x - m)))`` with ``m`` the slice's maximum.

        A slice holding +inf gives NaN throughout (inf - inf), as ``torch.log_softmax``
        (the limit depends on which class is infinite); an all -inf slice is shifted by 0.
        """
        xp = self.xp
        m = xp.max(x, axis=axis, keepdims=True)
        m = self.stop_gradient(xp.where(m == -math.inf, 0.0, m))
        shifted = x - m
        return shifted - xp.log(xp.sum(xp.exp(shifted), axis=axis, keepdims=True))

    def softmax(self, x: Any, axis: int) -> Any:
        """``exp(log_softmax(x, axis))``: the probabilities along ``axis`` (a backend with a fused kernel
        computes them in one pass)."""
        return self.xp.exp(self.log_softmax(x, axis))

    def relu(self, x: Any) -> Any:
        """``max(x, 0)`` with the subgradient 0 at 0 (as ``torch.relu``); NaN stays NaN (a select on
        ``x > 0`` would turn it into 0 and hide it)."""
        return self.xp.where(x <= 0, 0.0, x)

    def clip(self, x: Any, min: float | None = None, max: float | None = None) -> Any:
        """``x`` clipped to ``[min, max]`` (Python-float bounds; None: unbounded).

        The gradient is 1 strictly inside the bounds and 0 strictly outside;
        at a bound itself it is backend-defined (1 for this fallback, the
        standard ``clip`` under autograd; 0 on PyTorch, ``hardtanh``'s rule), so
        loss code uses it only where the result's gradient does not depend on
        it (as the Huber loss, whose kink term is multiplied by ``|d| - q = 0``).
        """
        return self.xp.clip(x, min=min, max=max)

    def sigmoid(self, x: Any) -> Any:
        """Logistic sigmoid, written so neither branch overflows."""
        xp = self.xp
        e = xp.exp(-xp.abs(x))
        return xp.where(x >= 0, 1.0 / (1.0 + e), e / (1.0 + e))

    def log_sigmoid(self, x: Any) -> Any:
        """``log(sigmoid(x)) = min(x, 0) - log1p(exp(-|x|))``, finite for any x."""
        xp = self.xp
        return xp.minimum(x, 0.0) - xp.log1p(xp.exp(-xp.abs(x)))

    def softplus(self, x: Any) -> Any:
        """``log(1 + exp(x)) = -log_sigmoid(-x)``, finite for finite x."""
        return -self.log_sigmoid(-x)

    def one_hot_bce_sum(self, x: Any, labels: Any, weight: Any) -> Any:
        """``sum_c BCE_with_logits(x[..., c], t[..., c])`` over the last axis, for the target ``t`` that holds
        ``weight`` at class ``labels`` and 0 elsewhere: ``sum_c softplus(x_c) - x_label * weight``.

        ``x`` ``(..., C)`` finite logits (the caller checks), ``labels`` int ``(...)`` in ``[0, C)``,
        ``weight`` ``(...)``; no gradient flows to ``labels`` or ``weight``. No target array is formed.
        """
        xp = self.xp
        at = xp.squeeze(self.take_along_axis(x, xp.expand_dims(labels, axis=-1), axis=-1), axis=-1)
        return xp.sum(self.softplus(x), axis=-1) - at * self.stop_gradient(weight)

    def xlogy(self, x: Any, y: Any) -> Any:
        """``x * log(y)`` with ``0 * log(0) = 0``."""
        xp = self.xp
        zero = x == 0
        return xp.where(zero, 0.0, x * xp.log(xp.where(zero, 1.0, y)))

    def min_max(self, x: Any) -> tuple[Any, Any]:
        """The smallest and largest value of a non-empty real (not bool) array as Python numbers (NaN where it
        holds NaN). It reads values: only for arrays where :meth:`is_host_array` holds (argument checks)."""
        xp = self.xp
        number = int if self.dtype_kind(x.dtype) == "i" else float
        return number(xp.min(x)), number(xp.max(x))

    # -- collectives (data-parallel training) ----------------------------
    def take_along_axis(self, x: Any, indices: Any, axis: int) -> Any:
        """``xp.take_along_axis`` for ``indices`` in ``[0, n)`` of ``x``'s rank (no negative indices)."""
        return self.xp.take_along_axis(x, indices, axis=axis)

    def first_index(self, ids: Any, size: int) -> Any:
        """Per row of ``ids``, the first position at which each id occurs: a scatter-min of the positions.

        ``ids``: integer ``(N, G)`` in ``[0, size]``, ``size`` marking an entry
        that belongs to no id. Returns int64 ``(N, size)``: at ``[i, k]`` the
        least ``j`` with ``ids[i, j] == k``, or ``G`` where ``k`` does not occur
        in row ``i``. The generic version compares every entry with every id
        (an ``(N, G, size)`` array and one reduction over ``G``); backends with
        a scatter-min override it.
        """
        xp = self.xp
        device = self.device(ids)
        g = int(ids.shape[1])
        # int32: PyTorch's int64 reduction over a middle axis is 40x slower
        hit = xp.astype(xp.expand_dims(ids, axis=-1) == xp.arange(size, dtype=ids.dtype, device=device), xp.int32)
        positions = xp.reshape(xp.arange(g, dtype=xp.int32, device=device), (g, 1))
        return xp.astype(xp.min(g - hit * (g - positions), axis=1), xp.int64)  # G - (G - j) = j at a hit, else G

    def kth_value(self, keys: Any, position: Any, *, descending: bool = False) -> Any:
        """Per row, the value at ``position`` (1-based) of ``sort(keys, axis=-1, descending=descending)``.

        ``keys``: ``(..., n)`` real or integer, no NaN; ``position``: int
        ``(..., 1)`` in ``[1, n]``; returns ``(..., 1)``. The generic version
        sorts whole rows; backends with a selection algorithm override it.
        """
        ordered = self.xp.sort(keys, axis=-1, descending=descending)
        return self.take_along_axis(ordered, position - 1, axis=-1)

    def random_bits(self, shape: tuple[int, ...], bits: int, *, rng: Any = None, device: Any = None) -> Any:
        """Fresh uniformly random int64 in ``[0, 2**bits)`` of ``shape`` on ``device``.

        Drawn with NumPy on the host (from ``rng``, a ``numpy.random.Generator``,
        or a fresh one) and moved to ``device``; a backend with its own
        generator may use it where ``rng`` is None.
        """
        import numpy as np

        generator = rng if rng is not None else np.random.default_rng()
        values = generator.integers(0, 1 << bits, shape, dtype=np.int64)
        return self.xp.asarray(values, dtype=self.xp.int64, device=device)

    def nonzero_positions(self, mask: Any) -> Any:
        """Flat indices (int64, increasing) of the True entries of ``mask`` where a data-dependent shape is
        cheap (eager host arrays with the fast paths on), else None: the caller keeps its static shapes."""
        return None

    def scatter_rows(self, values: Any, positions: Any, size: int) -> Any:
        """``(size, *values.shape[1:])`` zeros holding ``values[k]`` at row ``positions[k]``.

        ``positions``: increasing distinct int64 indices in ``[0, size)`` (as from
        :meth:`nonzero_positions`). The generic version finds each row's
        value with one ``searchsorted``; host backends write them directly.
        """
        xp = self.xp
        device = self.device(values)
        k = int(positions.shape[0])
        out_shape = (size, *values.shape[1:])
        if k == 0:
            return xp.zeros(out_shape, dtype=values.dtype, device=device)
        rows = xp.arange(size, dtype=positions.dtype, device=device)
        slot = xp.clip(xp.searchsorted(positions, rows), 0, k - 1)
        hit = xp.reshape(xp.take(positions, slot) == rows, (size,) + (1,) * (values.ndim - 1))
        return xp.where(hit, xp.take(values, slot, axis=0), xp.zeros((), dtype=values.dtype, device=device))

    def world_size(self) -> int:
        """Number of processes :meth:`all_reduce_sum` sums over (1: a single process)."""
        return 1

    def all_reduce_sum(self, x: Any) -> Any:
        """``x`` summed element-wise over every process of the data-parallel job.

        Used for counts (normalisers), which carry no gradient: a backend with
        collectives returns a new array without gradient and leaves ``x``
        untouched. Every process must call it, in the same order, with arrays
        of the same shape and dtype. The default is the identity: a single
        process (:meth:`world_size` 1), where the sum is ``x`` itself.
        """
        return x


def class_rows(input: Any, target: Any, axis: int) -> tuple[Any, Any] | None:
    """``(input (rows, C), target (rows,))`` for a K-D input whose class axis is the last, with class
    indices: the layout row-wise kernels are fastest on (class axis contiguous). None otherwise."""
    if input.ndim > 2 and axis == input.ndim - 1 and tuple(target.shape) == tuple(input.shape[:-1]):
        return input.reshape(-1, input.shape[-1]), target.reshape(-1)
    return None


class GenericBackend(Backend):
    """The backend for any namespace array-api-compat understands, with no plugin."""

    host = False

    def __init__(self, xp: ModuleType, *, host: bool = False) -> None:
        super().__init__()
        self._xp = xp
        self.name = getattr(xp, "__name__", "generic")
        self.host = host

    def load_namespace(self) -> ModuleType:  # pragma: no cover - set in __init__
        assert self._xp is not None
        return self._xp

    def version(self) -> str:
        return str(getattr(self._xp, "__version__", "unknown"))
