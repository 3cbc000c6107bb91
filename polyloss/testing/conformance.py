"""Conformance kit: checks a plugin author runs in their own test suite.

Backend plugins::

    from polyloss.testing.conformance import BackendConformance

    class TestMyBackend(BackendConformance):
        backend = "mylib"            # the registered backend name
        rtol, atol = 1e-10, 1e-12    # float64

gives parametrised tests that run polyloss's built-in loss grid (every
built-in loss on the sample data of :mod:`polyloss._samples`, with several
option variants) on the backend and compare with polyloss on float64 NumPy,
check the backend's primitives against closed forms, and check that its arrays
resolve to it. The same checks are plain functions: :func:`check_backend`,
:func:`check_loss_case`, :func:`check_primitives`.

Recipe plugins::

    from polyloss.testing.conformance import check_recipe

    def test_my_recipe():
        check_recipe("my_recipe", make_inputs, config={"num_classes": 3},
                     make_empty_inputs=make_inputs_without_ground_truth)

checks the :class:`polyloss.RecipeResult` contract (scalar total equal to the
sum of the named scalar components, in the input's namespace and dtype), the
same numbers on every installed backend case (NumPy, array-api-strict with its
strictest flags and on a second device, PyTorch float64/float32, and cases
added with :func:`polyloss.testing.cases.register_case`), finite PyTorch
gradients, and a finite result (no NaN) when no image has ground truth.

Every check raises :class:`AssertionError` with a message naming the loss or
recipe, the variant or backend case and the numbers; it returns a small
report (the largest differences seen) on success.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from collections.abc import Mapping
from collections.abc import Sequence
from dataclasses import dataclass
from dataclasses import field
from typing import Any
from typing import ClassVar

import numpy as np
import pytest

import polyloss as pl
from polyloss._namespace import backend_of
from polyloss._samples import SAMPLES
from polyloss._samples import sample
from polyloss.testing.cases import Case
from polyloss.testing.cases import installed_cases
from polyloss.testing.cases import runnable

__all__ = [
    "BackendConformance",
    "GridCase",
    "RecipeReport",
    "VARIANTS",
    "check_backend",
    "check_loss_case",
    "check_primitives",
    "check_recipe",
    "loss_grid",
]

Options = Callable[[np.random.Generator, np.ndarray, np.ndarray], dict[str, Any]]


def _fixed(**options: Any) -> Options:
    return lambda rng, x, y: dict(options)


def _weight_last(**options: Any) -> Options:
    """A positive weight over the last axis (the class axis of class losses)."""
    return lambda rng, x, y: {"weight": rng.uniform(0.5, 2.0, size=x.shape[-1]), **options}


def _weight_full(**options: Any) -> Options:
    return lambda rng, x, y: {"weight": rng.uniform(0.5, 2.0, size=x.shape), **options}


_REDUCTIONS = (("sum", _fixed(reduction="sum")), ("none", _fixed(reduction="none")))

VARIANTS: dict[str, tuple[tuple[str, Options], ...]] = {
    "mse_loss": (*_REDUCTIONS, ("weight", _weight_last())),
    "l1_loss": (*_REDUCTIONS, ("weight", _weight_full())),
    "smooth_l1_loss": (("beta=0.5", _fixed(beta=0.5)), ("beta=0", _fixed(beta=0.0)), ("none", _fixed(reduction="none")),
                       ("weight", _weight_last())),
    "huber_loss": (("delta=0.5", _fixed(delta=0.5)), ("sum", _fixed(reduction="sum")), ("weight", _weight_full())),
    "binary_cross_entropy": (("none", _fixed(reduction="none")), ("weight", _weight_last())),
    "binary_cross_entropy_with_logits": (
        ("sum", _fixed(reduction="sum")),
        ("weight", _weight_full()),
        ("pos_weight", lambda rng, x, y: {"pos_weight": rng.uniform(0.5, 3.0, size=x.shape[-1])}),
    ),
    "sigmoid_focal_loss": (("gamma=0", _fixed(gamma=0.0)), ("alpha=-1", _fixed(alpha=-1.0)),
                           ("none", _fixed(reduction="none"))),
    "cross_entropy": (
        *_REDUCTIONS,
        ("label_smoothing", _fixed(label_smoothing=0.1)),
        ("weight", _weight_last()),
        ("ignore_index", lambda rng, x, y: {"ignore_index": int(y[0])}),
        ("weight+smoothing+sum", _weight_last(label_smoothing=0.2, reduction="sum")),
    ),
    "softmax_focal_loss": (
        ("gamma=0", _fixed(gamma=0.0)),
        ("alpha", lambda rng, x, y: {"alpha": rng.uniform(0.1, 0.9, size=x.shape[-1])}),
        ("ignore_index", lambda rng, x, y: {"ignore_index": int(y[0])}),
        ("none", _fixed(reduction="none")),
    ),
    "multi_margin_loss": (("p=2", _fixed(p=2)), ("margin=0.5", _fixed(margin=0.5)), ("weight", _weight_last()),
                          ("sum", _fixed(reduction="sum"))),
    "nll_loss": (*_REDUCTIONS, ("weight", _weight_last()),
                 ("ignore_index", lambda rng, x, y: {"ignore_index": int(y[0])})),
    "kl_div": (("mean", _fixed(reduction="mean")), ("sum", _fixed(reduction="sum")),
               ("none", _fixed(reduction="none"))),
    "hinge_loss": (("margin=0.5", _fixed(margin=0.5)), ("none", _fixed(reduction="none"))),
    "squared_hinge_loss": (("margin=2", _fixed(margin=2.0)), ("sum", _fixed(reduction="sum"))),
    "iou_loss": _REDUCTIONS,
    "giou_loss": _REDUCTIONS,
    "diou_loss": _REDUCTIONS,
    "ciou_loss": (*_REDUCTIONS, ("eps", _fixed(eps=1e-5))),
    "varifocal_loss": (*_REDUCTIONS, ("gamma=1.5,alpha=0.25", _fixed(gamma=1.5, alpha=0.25)),
                       ("iou_weighted=False", _fixed(iou_weighted=False))),
    "quality_focal_loss": (*_REDUCTIONS, ("beta=1", _fixed(beta=1.0))),
    "distribution_focal_loss": _REDUCTIONS,
    "dice_loss": (*_REDUCTIONS, ("ignore_index", lambda rng, x, y: {"ignore_index": int(y.flat[0])}),
                  ("smooth", _fixed(smooth=1.0))),
    "jaccard_loss": (*_REDUCTIONS, ("ignore_index", lambda rng, x, y: {"ignore_index": int(y.flat[0])})),
    "tversky_loss": (*_REDUCTIONS, ("alpha=0.3,beta=0.7,gamma=0.75", _fixed(alpha=0.3, beta=0.7, gamma=0.75))),
    "lovasz_loss": (*_REDUCTIONS, ("per_image", _fixed(per_image=True)),
                    ("ignore_index", lambda rng, x, y: {"ignore_index": int(y.flat[0])})),
    "ctc_loss": (*_REDUCTIONS, ("blank=4,zero_infinity", _fixed(blank=4, zero_infinity=True))),
    "nt_xent_loss": (*_REDUCTIONS, ("temperature=0.1", _fixed(temperature=0.1))),
    "log_cosh_loss": _REDUCTIONS,
    "poly1_cross_entropy": (*_REDUCTIONS, ("epsilon=-1", _fixed(epsilon=-1.0))),
    "poisson_nll_loss": (*_REDUCTIONS, ("full=False", _fixed(full=False))),
    "gaussian_nll_loss": (*_REDUCTIONS, ("full", _fixed(full=True))),
    "cosine_embedding_loss": (*_REDUCTIONS, ("margin=-0.5", _fixed(margin=-0.5))),
    "margin_ranking_loss": (*_REDUCTIONS, ("margin=0", _fixed(margin=0.0))),
    "triplet_margin_loss": (*_REDUCTIONS, ("p=1,swap", _fixed(p=1.0, swap=True))),
    "hinge_embedding_loss": (*_REDUCTIONS, ("margin=0.5", _fixed(margin=0.5))),
    "soft_margin_loss": _REDUCTIONS,
    "multilabel_soft_margin_loss": (*_REDUCTIONS, ("weight", _weight_last())),
    "multilabel_margin_loss": _REDUCTIONS,
}
"""Option variants per built-in loss, on top of the sample's own options (the ``"default"`` variant)."""


@dataclass(frozen=True)
class GridCase:
    """One loss, one option variant, float64/int64 NumPy data."""

    loss: str
    variant: str
    input: np.ndarray
    target: np.ndarray
    options: Mapping[str, Any]
    #: positional arrays after ``input`` and ``target`` (e.g. ``triplet_margin_loss``'s negatives)
    extra: tuple[np.ndarray, ...] = ()

    @property
    def arrays(self) -> tuple[np.ndarray, ...]:
        """Every positional array of the call, in order."""
        return (self.input, self.target, *self.extra)

    @property
    def id(self) -> str:
        return f"{self.loss}[{self.variant}]"

    def __str__(self) -> str:
        return self.id


def loss_grid(losses: Sequence[str] | None = None, *, seed: int = 0) -> list[GridCase]:
    """The built-in loss grid: every loss with a sample, default options then each :data:`VARIANTS` entry.

    Needs no registry (safe to call while tests are collected); the loss
    function is looked up by name when the case runs.
    """
    grid = []
    for name in losses if losses is not None else sorted(SAMPLES):
        data = sample(name, seed)
        if data is None:
            raise ValueError(f"loss {name!r} has no built-in sample; known: {', '.join(sorted(SAMPLES))}")
        (x, y, *extra), options = data
        grid.append(GridCase(name, "default", x, y, dict(options), tuple(extra)))
        rng = np.random.default_rng(seed + 1)
        for variant, make in VARIANTS.get(name, ()):
            grid.append(GridCase(name, variant, x, y, {**options, **make(rng, x, y)}, tuple(extra)))
    return grid


# -- conversions --------------------------------------------------------------


def _namespace_asarray(backend: Any) -> Callable[[np.ndarray], Any]:
    def asarray(a: np.ndarray) -> Any:
        xp = backend.xp
        a = np.asarray(a)
        dtype = {"f": xp.float64, "i": xp.int64, "u": xp.int64, "b": xp.bool}.get(a.dtype.kind)
        return xp.asarray(a, dtype=dtype)

    return asarray


def _to_numpy(a: Any) -> np.ndarray:
    """Best effort: NumPy, jax, array-api-strict (default device), torch (detached), cupy."""
    if hasattr(a, "detach"):
        return np.asarray(a.detach().cpu())
    if hasattr(a, "get") and type(a).__module__.startswith("cupy"):
        return np.asarray(a.get())
    return np.asarray(a)


def _convert(obj: Any, asarray: Callable[[np.ndarray], Any]) -> Any:
    if isinstance(obj, np.ndarray):
        return asarray(obj)
    if isinstance(obj, list):
        return [_convert(o, asarray) for o in obj]
    if isinstance(obj, tuple):
        return tuple(_convert(o, asarray) for o in obj)
    if isinstance(obj, dict):
        return {k: _convert(v, asarray) for k, v in obj.items()}
    return obj


def _max_difference(actual: np.ndarray, expected: np.ndarray) -> float:
    if actual.size == 0:
        return 0.0
    with np.errstate(invalid="ignore"):
        diff = np.abs(actual - expected)
    both_inf = np.isinf(actual) & np.isinf(expected) & (np.sign(actual) == np.sign(expected))
    return float(np.max(np.where(both_inf, 0.0, np.where(np.isnan(diff), np.inf, diff))))


# -- losses on a backend ------------------------------------------------------


def check_loss_case(
    case: GridCase,
    *,
    asarray: Callable[[np.ndarray], Any],
    to_numpy: Callable[[Any], np.ndarray] = _to_numpy,
    transform: Callable[[Callable[..., Any]], Callable[..., Any]] | None = None,
    backend: str | None = None,
    rtol: float = 1e-10,
    atol: float = 1e-12,
) -> float:
    """Run one grid case on a backend and compare with polyloss on float64 NumPy.

    Args:
        case: from :func:`loss_grid`.
        asarray: NumPy data -> the backend's array (floats in the dtype under
            test, integers as int64); applied to the input, the target, the
            further positional arrays and array options (``weight``,
            ``pos_weight``, ``alpha``).
        to_numpy: the backend's array -> NumPy.
        transform: wraps ``f(input, target)`` before the call, e.g.
            ``jax.jit``; further positional arrays and array options are
            closed over.
        backend: the registered name the arrays must resolve to (checks that
            the plugin, not the generic fallback, handles them).
        rtol, atol: tolerance against the float64 NumPy value.

    Returns:
        The largest absolute difference.
    """
    loss = pl.get_loss(case.loss)
    reference = np.asarray(loss(*case.arrays, **case.options), dtype=np.float64)
    x, y = asarray(case.input), asarray(case.target)
    extra = tuple(asarray(a) for a in case.extra)
    options = {k: _convert(v, asarray) for k, v in case.options.items()}
    where = f"{case.id} on {backend or type(x).__module__}"
    if backend is not None:
        resolved = backend_of(x).name
        assert resolved == backend, f"{where}: arrays of type {type(x).__qualname__} resolve to backend {resolved!r}"

    def call(a: Any, b: Any) -> Any:
        return loss(a, b, *extra, **options)

    out = (transform(call) if transform is not None else call)(x, y)
    if transform is None:
        assert out.dtype == x.dtype, f"{where}: result dtype {out.dtype} differs from the input dtype {x.dtype}"
        if backend is not None:
            assert backend_of(out).name == backend, f"{where}: the result is a {type(out).__qualname__}"
    value = np.asarray(to_numpy(out), dtype=np.float64)
    assert value.shape == reference.shape, f"{where}: shape {value.shape}, expected {reference.shape}"
    diff = _max_difference(value, reference)
    bound = atol + rtol * (float(np.max(np.abs(reference))) if reference.size else 0.0)
    assert diff <= bound, (
        f"{where}: largest difference from float64 NumPy {diff:.3g} > {bound:.3g}\n"
        f"got      {np.array2string(value.ravel()[:8], precision=12)}\n"
        f"expected {np.array2string(reference.ravel()[:8], precision=12)}"
    )
    return diff


def check_backend(
    backend: str,
    *,
    asarray: Callable[[np.ndarray], Any] | None = None,
    to_numpy: Callable[[Any], np.ndarray] = _to_numpy,
    transform: Callable[[Callable[..., Any]], Callable[..., Any]] | None = None,
    losses: Sequence[str] | None = None,
    rtol: float = 1e-10,
    atol: float = 1e-12,
    primitives: bool = True,
) -> dict[str, float]:
    """Run the whole built-in loss grid (and the primitive checks) on a registered backend.

    Args:
        backend: the registered backend name (``pl.backends()``); its library
            is imported.
        asarray: NumPy data -> the backend's array; default
            ``xp.asarray(a, dtype=float64 / int64)`` of the backend's namespace.
        to_numpy, transform, rtol, atol: as :func:`check_loss_case`.
        losses: restrict to these losses (default: every loss with a sample).
        primitives: also run :func:`check_primitives`.

    Returns:
        ``{case id: largest difference}``. Every failure is collected and
        reported together in one :class:`AssertionError`.
    """
    obj = _import_backend(backend)
    asarray = asarray or _namespace_asarray(obj)
    report: dict[str, float] = {}
    failures: list[str] = []
    for case in loss_grid(losses):
        try:
            report[case.id] = check_loss_case(case, asarray=asarray, to_numpy=to_numpy, transform=transform,
                                              backend=backend, rtol=rtol, atol=atol)
        except Exception as exc:
            failures.append(f"{case.id}: {type(exc).__name__}: {exc}")
    if primitives:
        try:
            check_primitives(backend, asarray=asarray, to_numpy=to_numpy, rtol=rtol, atol=atol)
        except AssertionError as exc:
            failures.append(f"primitives: {exc}")
    if failures:
        raise AssertionError(f"backend {backend!r} fails {len(failures)} checks:\n" + "\n".join(failures))
    return report


def _import_backend(name: str) -> Any:
    import importlib

    obj = pl.get_backend(name)
    if obj.module_name is not None:
        importlib.import_module(obj.module_name)
    return obj


def _sigmoid(x: np.ndarray) -> np.ndarray:
    # 1 / (1 + exp(-x)); exp overflows to inf for x << 0, which gives the right limit 0
    with np.errstate(over="ignore"):
        return np.asarray(1.0 / (1.0 + np.exp(-x)))


def check_primitives(
    backend: str,
    *,
    asarray: Callable[[np.ndarray], Any] | None = None,
    to_numpy: Callable[[Any], np.ndarray] = _to_numpy,
    rtol: float = 1e-10,
    atol: float = 1e-12,
) -> None:
    """The backend's primitives against float64 closed forms, at ordinary and extreme values.

    ``sigmoid``, ``log_sigmoid`` (finite at -1000), ``logsumexp`` (rows of
    +-1000 and a row of -inf), ``log_softmax``, ``xlogy`` (``0 log 0 = 0``),
    ``relu`` and ``stop_gradient`` (the value is unchanged).
    """
    obj = _import_backend(backend)
    asarray = asarray or _namespace_asarray(obj)
    x = np.array([-1000.0, -30.0, -1.5, -0.0, 0.0, 0.25, 2.0, 30.0, 1000.0])
    rows = np.array([[1.0, 2.0, 3.0], [1000.0, 999.0, -1000.0], [-1000.0, -1001.0, -999.0]])
    with np.errstate(over="ignore"):
        expected_lse = np.array([3.0 + math.log(1 + math.exp(-1) + math.exp(-2)),
                                 1000.0 + math.log1p(math.exp(-1.0)),
                                 -999.0 + math.log(1 + math.exp(-1) + math.exp(-2))])
    checks: list[tuple[str, Any, np.ndarray]] = [
        ("sigmoid", obj.sigmoid(asarray(x)), _sigmoid(x)),
        ("log_sigmoid", obj.log_sigmoid(asarray(x)), -np.logaddexp(0.0, -x)),
        ("relu", obj.relu(asarray(x)), np.where(x > 0, x, 0.0)),
        ("stop_gradient", obj.stop_gradient(asarray(x)), x),
        ("logsumexp", obj.logsumexp(asarray(rows), axis=-1), expected_lse),
        ("logsumexp(keepdims)", obj.logsumexp(asarray(rows), axis=1, keepdims=True), expected_lse[:, None]),
        ("log_softmax", obj.log_softmax(asarray(rows), axis=-1), rows - expected_lse[:, None]),
        ("xlogy", obj.xlogy(asarray(np.array([0.0, 0.0, 1.0, 2.0])), asarray(np.array([0.0, 1.0, 2.0, 0.5]))),
         np.array([0.0, 0.0, math.log(2.0), 2.0 * math.log(0.5)])),
    ]
    all_inf = np.full((1, 3), -np.inf)
    with np.errstate(divide="ignore"):  # log(0) on NumPy is the right answer here
        checks.append(("logsumexp(all -inf)", obj.logsumexp(asarray(all_inf), axis=-1), np.array([-np.inf])))
    problems = []
    for name, out, expected in checks:
        value = np.asarray(to_numpy(out), dtype=np.float64)
        if value.shape != expected.shape:
            problems.append(f"{name}: shape {value.shape}, expected {expected.shape}")
            continue
        diff = _max_difference(value, expected)
        finite = expected[np.isfinite(expected)]
        bound = atol + rtol * (float(np.max(np.abs(finite))) if finite.size else 0.0)
        if diff > bound:
            problems.append(f"{name}: got {value.ravel().tolist()}, expected {expected.ravel().tolist()}")
    assert not problems, f"backend {backend!r} primitives differ from the closed forms:\n" + "\n".join(problems)


class BackendConformance:
    """pytest base class: subclass it as ``TestSomething`` and set :attr:`backend`.

    Override :meth:`asarray` / :meth:`to_numpy` when the namespace's
    ``asarray`` is not the way to make arrays, :meth:`transform` to run the grid
    compiled (e.g. ``return jax.jit(fn)``), and ``rtol``/``atol`` for a
    lower-precision dtype.
    """

    backend: ClassVar[str] = ""
    rtol: ClassVar[float] = 1e-10
    atol: ClassVar[float] = 1e-12

    def asarray(self, a: np.ndarray) -> Any:
        return _namespace_asarray(_import_backend(self.backend))(a)

    def to_numpy(self, a: Any) -> np.ndarray:
        return _to_numpy(a)

    def transform(self, fn: Callable[..., Any]) -> Callable[..., Any]:
        return fn

    def _transform(self) -> Callable[[Callable[..., Any]], Callable[..., Any]] | None:
        if type(self).transform is BackendConformance.transform:
            return None
        return self.transform

    def test_backend_is_registered(self) -> None:
        assert self.backend, "set the class attribute `backend` to the registered backend name"
        assert self.backend in pl.backends(), f"backend {self.backend!r} is not registered: {pl.backends()}"
        obj = _import_backend(self.backend)
        assert isinstance(obj, pl.Backend)
        x = self.asarray(np.array([1.0, 2.0]))
        assert backend_of(x) is obj, f"arrays of type {type(x).__qualname__} resolve to {backend_of(x)!r}"

    def test_primitives(self) -> None:
        check_primitives(self.backend, asarray=self.asarray, to_numpy=self.to_numpy, rtol=self.rtol, atol=self.atol)

    @pytest.mark.parametrize("grid_case", loss_grid(), ids=str)
    def test_loss_grid(self, grid_case: GridCase) -> None:
        check_loss_case(grid_case, asarray=self.asarray, to_numpy=self.to_numpy, transform=self._transform(),
                        backend=self.backend, rtol=self.rtol, atol=self.atol)


# -- recipes ------------------------------------------------------------------


@dataclass
class RecipeReport:
    """What :func:`check_recipe` measured: component names, the NumPy values, the largest differences."""

    components: list[str]
    reference: dict[str, float]
    differences: dict[str, float] = field(default_factory=dict)
    cases: list[str] = field(default_factory=list)


def _recipe_factory(recipe: str | Callable[..., Any]) -> tuple[Callable[..., Any], str]:
    if isinstance(recipe, str):
        return (lambda **config: pl.get_recipe(recipe, **config)), recipe
    if callable(recipe):
        return recipe, getattr(recipe, "__name__", repr(recipe))
    raise TypeError(f"recipe must be a registered name or a factory, got {type(recipe).__name__}")


def _float_leaves(args: Any) -> list[Any]:
    return [a for a in args if hasattr(a, "requires_grad") and a.dtype.is_floating_point]


def _scalar(case: Case, value: Any, where: str) -> float:
    shape = tuple(value.shape)
    assert shape == (), f"{where} must be a scalar array (shape ()), got shape {shape}"
    return float(np.asarray(case.to_numpy(value), dtype=np.float64))


def _run_recipe(
    case: Case, build: Callable[[], Any], inputs: Any, kwargs: Mapping[str, Any], name: str, grad: bool
) -> dict[str, float]:
    """Call the recipe on one case; check the RecipeResult contract; return {"total": .., component: ..}."""

    def asarray(a: np.ndarray) -> Any:
        return case.asarray(a, requires_grad=grad and case.is_torch and a.dtype.kind == "f")

    args = _convert(tuple(inputs), asarray)
    result = build()(*args, **kwargs)
    where = f"recipe {name!r} on {case.name}"
    assert isinstance(result, pl.RecipeResult), f"{where} returned {type(result).__name__}, not polyloss.RecipeResult"
    components = result.components
    assert isinstance(components, Mapping) and components, f"{where}: components must be a non-empty mapping"
    first = next(a for a in _flatten(args) if hasattr(a, "dtype") and backend_of(a).dtype_kind(a.dtype) == "f")
    values = {"total": _scalar(case, result.total, f"{where}: total")}
    ref_backend = backend_of(first)
    assert backend_of(result.total) is ref_backend, f"{where}: total is a {type(result.total).__qualname__}"
    assert result.total.dtype == first.dtype, f"{where}: total dtype {result.total.dtype}, inputs {first.dtype}"
    for key, value in components.items():
        assert isinstance(key, str), f"{where}: component names must be str, got {key!r}"
        values[key] = _scalar(case, value, f"{where}: component {key!r}")
    bad = {k: v for k, v in values.items() if not math.isfinite(v)}
    assert not bad, f"{where}: not finite: {bad}"
    parts = math.fsum(v for k, v in values.items() if k != "total")
    tol = case.atol * 10 + case.rtol * 10 * max(abs(parts), *(abs(v) for v in values.values()))
    assert abs(values["total"] - parts) <= tol, (
        f"{where}: total {values['total']!r} != sum of components {parts!r} ({values})"
    )
    if grad and case.is_torch:
        leaves = _float_leaves(_flatten(args))
        assert result.total.requires_grad, f"{where}: no input received a gradient (total is detached)"
        result.total.backward()
        grads = [leaf.grad for leaf in leaves if leaf.grad is not None]
        assert grads, f"{where}: no input received a gradient (is total detached?)"
        for g in grads:
            assert bool(g.isfinite().all()), f"{where}: gradient has non-finite values"
    return values


def _flatten(obj: Any) -> list[Any]:
    if isinstance(obj, (list, tuple)):
        return [leaf for o in obj for leaf in _flatten(o)]
    if isinstance(obj, dict):
        return [leaf for o in obj.values() for leaf in _flatten(o)]
    return [obj]


def check_recipe(
    recipe: str | Callable[..., Any],
    make_inputs: Callable[[np.random.Generator], Sequence[Any]],
    *,
    config: Mapping[str, Any] | None = None,
    call_kwargs: Mapping[str, Any] | None = None,
    make_empty_inputs: Callable[[np.random.Generator], Sequence[Any]] | None = None,
    cases: Sequence[Case] | None = None,
    seed: int = 0,
    grad: bool = True,
    same_on_every_backend: bool = True,
    tol_scale: float = 10.0,
) -> RecipeReport:
    """Check a detector recipe against the :class:`polyloss.RecipeResult` contract on every backend.

    Args:
        recipe: a registered recipe name, or a factory (``factory(**config)``
            returns the callable recipe; a recipe class is a factory).
        make_inputs: ``make_inputs(rng)`` returns the positional arguments of
            the recipe call as float64 / int64 NumPy arrays (lists and tuples
            of arrays, e.g. per-image ground truth, are converted too). Keep
            them away from ties (IoU exactly at a threshold) so float32 makes
            the same decisions.
        config: the recipe's configuration.
        call_kwargs: extra keyword arguments of the call (Python values).
        make_empty_inputs: like ``make_inputs``, for a batch in which no image
            has ground truth: the result must be finite (no NaN) everywhere,
            gradients too.
        cases: backend cases (default: every installed one,
            :func:`polyloss.testing.cases.installed_cases`; the
            ``(case, reason)`` pairs of ``available_cases()`` are accepted too).
        seed: seed of the ``numpy.random.Generator`` handed to the makers.
        grad: check finite PyTorch gradients of ``total``.
        same_on_every_backend: compare each case with NumPy float64 (set
            False for a recipe whose sampling differs between libraries).
        tol_scale: multiplies each case's ``rtol``/``atol``.

    Checked on each case: the result is a ``RecipeResult``; ``total`` and each
    component are scalar arrays of the inputs' namespace (total in the input
    dtype), all finite; ``total`` equals the sum of the components; the same
    component names and (within tolerance) the same numbers as float64 NumPy;
    finite torch gradients reaching at least one input.
    """
    factory, name = _recipe_factory(recipe)
    config = dict(config or {})
    kwargs = dict(call_kwargs or {})

    def build() -> Any:
        return factory(**config)

    if cases is None:
        cases = installed_cases()
    cases = runnable(cases)
    inputs = make_inputs(np.random.default_rng(seed))
    numpy_case = Case("numpy", "numpy")
    reference = _run_recipe(numpy_case, build, inputs, kwargs, name, grad=False)
    report = RecipeReport(components=[k for k in reference if k != "total"], reference=reference)
    failures = []
    for case in cases:
        try:
            with case.active():
                values = _run_recipe(case, build, inputs, kwargs, name, grad)
                if make_empty_inputs is not None:
                    _run_recipe(case, build, make_empty_inputs(np.random.default_rng(seed)), kwargs,
                                f"{name} (no ground truth)", grad)
        except Exception as exc:
            failures.append(f"{case.name}: {type(exc).__name__}: {exc}")
            continue
        report.cases.append(case.name)
        if set(values) != set(reference):
            failures.append(f"{case.name}: components {sorted(values)}, NumPy gives {sorted(reference)}")
            continue
        if not same_on_every_backend:
            continue
        worst = 0.0
        for key, ref in reference.items():
            diff = abs(values[key] - ref)
            bound = case.atol * tol_scale + case.rtol * tol_scale * abs(ref)
            if diff > bound:
                failures.append(f"{case.name}: {key} = {values[key]!r}, NumPy float64 gives {ref!r}")
            worst = max(worst, diff)
        report.differences[case.name] = worst
    assert not failures, f"recipe {name!r} fails on:\n" + "\n".join(failures)
    return report
