"""Third-party plugins end to end: an installed distribution's loss and recipe, every hook spec
documented and exercised, and the conformance kit (it passes good plugins and catches broken ones)."""

from __future__ import annotations

import importlib.util
import inspect
import os
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from _dists import LOSS_PLUGIN
from _dists import RECIPE_PLUGIN
from _dists import make_dist

import polyloss as pl
from polyloss import hookspecs
from polyloss._namespace import backend_of
from polyloss._registry import registry
from polyloss.testing import conformance
from polyloss.testing.cases import Case
from polyloss.testing.cases import available_cases
from polyloss.testing.cases import register_case
from polyloss.testing.cases import unregister_case

ROOT = Path(__file__).resolve().parents[1]
HOOK_SPECS = sorted(name for name, fn in inspect.getmembers(hookspecs, inspect.isfunction)
                    if name.startswith("polyloss_"))


@pytest.fixture
def toy_dist(site: Path) -> Path:
    make_dist(site, "polyloss-toy", {"toy_losses": "toy_losses", "toy_recipes": "toy_recipes"},
              {"toy_losses": LOSS_PLUGIN, "toy_recipes": RECIPE_PLUGIN})
    registry.reload()
    return site


# -- a throw-away installed distribution ----------------------------------------------------------


def test_distribution_loss_and_recipe_are_listed_after_reload(site):
    assert "cubic_loss" not in pl.losses()
    make_dist(site, "polyloss-toy", {"toy_losses": "toy_losses", "toy_recipes": "toy_recipes"},
              {"toy_losses": LOSS_PLUGIN, "toy_recipes": RECIPE_PLUGIN})
    assert "cubic_loss" not in pl.losses()  # cached until reloaded
    registry.reload()
    assert "cubic_loss" in pl.losses() and "paired_boxes" in pl.recipes()
    assert registry.provider("loss", "cubic_loss") == ("toy_losses", "polyloss-toy")
    assert registry.provider("recipe", "paired_boxes") == ("toy_recipes", "polyloss-toy")


def test_distribution_loss_runs_on_every_backend(toy_dist, xp):
    x = np.array([[0.5, -2.0, 1.0], [0.0, 3.0, -0.25]])
    y = np.array([[0.0, -1.0, 1.5], [1.0, 3.0, 0.0]])
    loss = pl.get_loss("cubic_loss")
    for reduction, expected in (("none", np.abs(x - y) ** 3), ("sum", np.sum(np.abs(x - y) ** 3)),
                                ("mean", np.mean(np.abs(x - y) ** 3))):
        out = loss(xp.asarray(x), xp.asarray(y), reduction=reduction)
        np.testing.assert_allclose(xp.to_numpy(out), expected, rtol=xp.rtol, atol=xp.atol)
    if xp.is_torch:
        xt = xp.asarray(x, requires_grad=True)
        loss(xt, xp.asarray(y), reduction="sum").backward()
        np.testing.assert_allclose(xp.to_numpy(xt.grad), 3 * (x - y) * np.abs(x - y), rtol=xp.rtol, atol=xp.atol)


def _paired_inputs(rng: np.random.Generator) -> tuple[Any, ...]:
    gt = np.array([[[0.0, 0.0, 2.0, 2.0], [1.0, 1.0, 3.0, 4.0]], [[2.0, 1.0, 5.0, 3.0], [0.0, 0.0, 0.0, 0.0]]])
    pred = gt + rng.uniform(-0.3, 0.3, size=gt.shape)
    return pred, gt, np.array([[1, 0], [2, -1]])


def _paired_empty(rng: np.random.Generator) -> tuple[Any, ...]:
    pred, gt, labels = _paired_inputs(rng)
    return pred, gt, np.full_like(labels, -1)


def _paired_reference(pred: np.ndarray, gt: np.ndarray, labels: np.ndarray) -> tuple[float, float]:
    """Independent float64 reference of the toy recipe: box (smooth L1, beta 1) and 2 x (1 - GIoU)."""
    valid = labels >= 0
    d = np.abs(pred - gt)
    l1 = np.where(d < 1, 0.5 * d * d, d - 0.5).sum(-1)
    lt, rb = np.maximum(pred[..., :2], gt[..., :2]), np.minimum(pred[..., 2:], gt[..., 2:])
    inter = np.prod(np.clip(rb - lt, 0, None), -1)
    area = np.prod(pred[..., 2:] - pred[..., :2], -1) + np.prod(gt[..., 2:] - gt[..., :2], -1)
    union = area - inter
    hull = np.prod(np.maximum(pred[..., 2:], gt[..., 2:]) - np.minimum(pred[..., :2], gt[..., :2]), -1)
    giou = inter / union - (hull - union) / hull
    n = max(valid.sum(), 1)
    return float((l1 * valid).sum() / n), float(2 * ((1 - giou) * valid).sum() / n)


def test_distribution_recipe_runs_on_numpy_and_torch_and_passes_the_kit(toy_dist):
    pred, gt, labels = _paired_inputs(np.random.default_rng(0))
    box, giou = _paired_reference(pred, gt, labels)
    result = pl.get_recipe("paired_boxes")(pred, gt, labels)
    assert float(result.components["box"]) == pytest.approx(box, rel=1e-12)
    assert float(result.components["giou"]) == pytest.approx(giou, rel=1e-6)  # giou_loss adds eps=1e-7
    torch = pytest.importorskip("torch")
    pt = torch.tensor(pred, requires_grad=True)
    out = pl.get_recipe("paired_boxes", giou_weight=0.0)(pt, torch.tensor(gt), torch.tensor(labels))
    out.total.backward()
    assert float(out.total.detach()) == pytest.approx(box, rel=1e-12) and pt.grad is not None
    report = conformance.check_recipe("paired_boxes", _paired_inputs, make_empty_inputs=_paired_empty)
    assert report.components == ["box", "giou"]
    assert {"numpy", "strict", "torch-f64", "torch-f32"} <= set(report.cases)


@pytest.mark.skipif(importlib.util.find_spec("setuptools") is None, reason="needs setuptools to build")
def test_pip_installed_distribution_is_found(tmp_path):
    """``pip install`` a real project (pyproject entry point) into a target folder, then use it in a fresh process."""
    project = tmp_path / "project"
    (project / "polyloss_pipdemo").mkdir(parents=True)
    (project / "polyloss_pipdemo" / "__init__.py").write_text(textwrap.dedent(LOSS_PLUGIN))
    (project / "pyproject.toml").write_text(textwrap.dedent("""\
        [build-system]
        requires = ["setuptools>=61"]
        build-backend = "setuptools.build_meta"

        [project]
        name = "polyloss-pipdemo"
        version = "0.1"

        [project.entry-points.polyloss]
        pipdemo = "polyloss_pipdemo"
        """))
    target = tmp_path / "target"
    pip = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation",
                          "--no-index", "--target", str(target), str(project)], capture_output=True, text=True)
    if pip.returncode != 0:
        pytest.skip(f"pip cannot build here: {pip.stderr[-500:]}")
    code = ("import numpy as np, polyloss as pl\nfrom polyloss._registry import registry\n"
            "print(registry.provider('loss', 'cubic_loss'), float(pl.get_loss('cubic_loss')(np.ones(2), np.zeros(2))))")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(target), str(ROOT)])}
    env.pop("POLYLOSS_DISABLE_PLUGIN_AUTOLOAD", None)
    env.pop("POLYLOSS_PLUGINS", None)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    assert out.stdout.strip() == "('pipdemo', 'polyloss-pipdemo') 1.0", out.stderr


# -- every hook spec: documented, and exercised here --------------------------------------------------


class _StrictBackend(pl.Backend):
    """A plugin backend for array-api-strict arrays (which otherwise get the generic backend)."""

    name = "strict_plugin"
    module_name = "array_api_strict"
    host = True

    def matches(self, x: object) -> bool:
        return isinstance(x, sys.modules["array_api_strict"]._array_object.Array)

    def load_namespace(self) -> Any:
        import array_api_strict

        return array_api_strict

    def device(self, x: Any) -> Any:
        return x.device


def _exercise_backends() -> None:
    s = pytest.importorskip("array_api_strict")

    class Plugin:
        @pl.hookimpl
        def polyloss_register_backends(self) -> list[pl.Backend]:
            return [_StrictBackend()]

    pl.register_plugin(Plugin(), name="hook-backends")
    try:
        x = s.asarray([[2.0, 0.5, -1.0], [0.1, 0.2, 3.0]])
        assert isinstance(backend_of(x), _StrictBackend)
        assert "strict_plugin" in pl.backends()
        out = pl.cross_entropy(x, s.asarray([0, 2]))
        logp = np.array([[2.0, 0.5, -1.0], [0.1, 0.2, 3.0]])
        logp = logp - np.log(np.exp(logp).sum(-1, keepdims=True))
        assert float(out) == pytest.approx(-(logp[0, 0] + logp[1, 2]) / 2, rel=1e-12)
    finally:
        pl.unregister_plugin("hook-backends")
    assert not isinstance(backend_of(s.asarray([1.0])), _StrictBackend)


def _exercise_losses() -> None:
    class Plugin:
        @pl.hookimpl
        def polyloss_register_losses(self) -> dict[str, Callable[..., Any]]:
            return {"hook_double_mse": lambda x, y, *, reduction="mean": 2 * pl.mse_loss(x, y, reduction=reduction)}

    pl.register_plugin(Plugin(), name="hook-losses")
    try:
        assert float(pl.get_loss("hook_double_mse")(np.array([1.0, 2.0]), np.zeros(2))) == 5.0
        # registered losses work with value_and_grad by name
        _, grad = pl.value_and_grad("mse_loss", np.array([1.0, 2.0]), np.zeros(2))
        np.testing.assert_allclose(grad, [1.0, 2.0])
    finally:
        pl.unregister_plugin("hook-losses")
    assert "hook_double_mse" not in pl.losses()


def _exercise_recipes() -> None:
    class Plugin:
        @pl.hookimpl
        def polyloss_register_recipes(self) -> dict[str, Callable[..., Any]]:
            def factory(*, scale: float = 1.0) -> Callable[..., Any]:
                return lambda x: pl.RecipeResult.from_components({"a": scale * pl.mse_loss(x, 0 * x)})

            return {"hook_recipe": factory}

    pl.register_plugin(Plugin(), name="hook-recipes")
    try:
        assert "hook_recipe" in pl.recipes()
        result = pl.get_recipe("hook_recipe", scale=3.0)(np.array([1.0, 3.0]))
        assert float(result.total) == 15.0 and set(result.components) == {"a"}
    finally:
        pl.unregister_plugin("hook-recipes")


HOOK_EXERCISERS = {
    "polyloss_register_backends": _exercise_backends,
    "polyloss_register_losses": _exercise_losses,
    "polyloss_register_recipes": _exercise_recipes,
}


def test_every_hook_spec_has_an_exerciser():
    assert sorted(HOOK_EXERCISERS) == HOOK_SPECS


@pytest.mark.parametrize("hook", HOOK_SPECS)
def test_hook_spec_is_documented(hook):
    doc = inspect.getdoc(getattr(hookspecs, hook))
    assert doc and "Returns" in doc and "Called" in doc, f"{hook} needs a docstring with Returns and Called"
    pages = [ROOT / "docs" / "hooks" / f"{hook}.{ext}" for ext in ("md", "rst")]
    page = next((p for p in pages if p.exists()), None)
    assert page is not None, f"no docs page docs/hooks/{hook}.md"
    text = page.read_text()
    assert hook in text and "hookimpl" in text, f"{page} must show an implementation of {hook}"
    assert hook in (ROOT / "docs" / "plugins.md").read_text()


@pytest.mark.parametrize("hook", HOOK_SPECS)
def test_hook_spec_is_exercised(hook):
    HOOK_EXERCISERS[hook]()


# -- the conformance kit itself ------------------------------------------------------------------------


def test_check_backend_passes_numpy_and_torch():
    report = conformance.check_backend("numpy")
    assert len(report) == len(conformance.loss_grid()) and max(report.values()) == 0.0
    torch = pytest.importorskip("torch")
    report = conformance.check_backend(
        "torch", asarray=lambda a: torch.as_tensor(a, dtype=torch.float32 if a.dtype.kind == "f" else None),
        rtol=2e-5, atol=1e-6,
    )
    assert 0.0 < max(report.values()) < 1e-4  # float32 differs a little from float64 NumPy


def test_loss_grid_covers_every_builtin_loss_with_variants():
    grid = conformance.loss_grid()
    from polyloss.functional import BUILTIN_LOSSES

    assert {case.loss for case in grid} == set(BUILTIN_LOSSES)
    assert len({case.id for case in grid}) == len(grid)
    assert all(len([c for c in grid if c.loss == name]) >= 3 for name in BUILTIN_LOSSES)
    assert any(case.extra for case in grid)  # three-array losses carry their third array


def test_check_backend_catches_a_wrong_primitive_and_wrong_loss(site):
    pytest.importorskip("array_api_strict")

    class Wrong(_StrictBackend):
        def sigmoid(self, x: Any) -> Any:
            return super().sigmoid(x) + 1e-6  # a small, systematic error

        def logsumexp(self, x: Any, axis: int, keepdims: bool = False) -> Any:
            return self.xp.max(x, axis=axis, keepdims=keepdims)  # the maximum alone: a crude approximation

        def log_softmax(self, x: Any, axis: int) -> Any:
            return x - self.logsumexp(x, axis, keepdims=True)  # built on the broken logsumexp

    class Plugin:
        @pl.hookimpl
        def polyloss_register_backends(self) -> list[pl.Backend]:
            return [Wrong()]

    pl.register_plugin(Plugin(), name="wrong-strict")
    try:
        conformance.check_backend("strict_plugin", losses=["mse_loss"], primitives=False)  # untouched: passes
        with pytest.raises(AssertionError) as info:
            conformance.check_backend("strict_plugin", losses=["cross_entropy", "mse_loss"])
    finally:
        pl.unregister_plugin("wrong-strict")
    message = str(info.value)
    assert "cross_entropy[default]" in message and "largest difference from float64 NumPy" in message
    assert "primitives" in message and "sigmoid" in message and "logsumexp" in message
    assert "mse_loss" not in message  # the losses that do not use the broken primitives pass


def test_check_backend_catches_arrays_resolving_elsewhere():
    case = conformance.loss_grid(["mse_loss"])[0]
    with pytest.raises(AssertionError, match="resolve to backend 'numpy'"):
        conformance.check_loss_case(case, asarray=np.asarray, backend="jax")


def _recipe(make: Callable[..., dict[str, Any]], total: Callable[..., Any] | None = None) -> Callable[..., Any]:
    def factory() -> Callable[..., Any]:
        def call(pred: Any, gt: Any, labels: Any) -> Any:
            components = make(pred, gt, labels)
            if total is None:
                return pl.RecipeResult.from_components(components)
            return pl.RecipeResult(total=total(components), components=components)

        return call

    return factory


def test_check_recipe_catches_a_total_that_is_not_the_sum():
    factory = _recipe(lambda p, g, lab: {"a": pl.l1_loss(p, g), "b": pl.mse_loss(p, g)},
                      total=lambda c: c["a"] + 0.5 * c["b"])
    with pytest.raises(AssertionError, match="!= sum of components"):
        conformance.check_recipe(factory, _paired_inputs)


def test_check_recipe_catches_nan_without_ground_truth():
    def make(pred: Any, gt: Any, labels: Any) -> dict[str, Any]:
        import array_api_compat

        xp = array_api_compat.array_namespace(pred)
        valid = xp.astype(labels >= 0, pred.dtype)
        per_box = xp.sum(xp.abs(pred - gt), axis=-1)
        return {"box": xp.sum(valid * per_box) / xp.sum(valid)}  # 0 / 0 with no ground truth

    report = conformance.check_recipe(_recipe(make), _paired_inputs)  # fine with ground truth
    assert report.components == ["box"]
    with pytest.raises(AssertionError, match=r"no ground truth.*not finite"), np.errstate(invalid="ignore"):
        conformance.check_recipe(_recipe(make), _paired_inputs, make_empty_inputs=_paired_empty)


def test_check_recipe_catches_a_wrong_return_type_and_detached_total():
    def bad_factory() -> Callable[..., Any]:
        return lambda pred, gt, labels: {"box": pl.l1_loss(pred, gt)}

    with pytest.raises(AssertionError, match=r"not polyloss\.RecipeResult"):
        conformance.check_recipe(bad_factory, _paired_inputs)
    pytest.importorskip("torch")

    def detached(pred: Any, gt: Any, labels: Any) -> dict[str, Any]:
        out = pl.l1_loss(pred, gt)
        return {"box": out.detach() if hasattr(out, "detach") else out}

    with pytest.raises(AssertionError, match=r"torch-f64.*no input received a gradient"):
        conformance.check_recipe(_recipe(detached), _paired_inputs)


def _yolo_sample(rng: np.random.Generator) -> tuple[Any, ...]:
    boxes = np.array([[[0.1, 0.1, 0.4, 0.5], [0.52, 0.55, 0.9, 0.8]], [[0.2, 0.3, 0.6, 0.7], [0, 0, 0, 0]]])
    return rng.normal(size=(2, 7, 7, 30)) * 0.3, boxes, np.array([[1, 3], [5, -1]])


def test_check_recipe_on_builtin_yolov1():
    def empty(rng: np.random.Generator) -> tuple[Any, ...]:
        pred, boxes, labels = _yolo_sample(rng)
        return pred, boxes, np.full_like(labels, -1)

    report = conformance.check_recipe("yolov1", _yolo_sample, make_empty_inputs=empty)
    assert report.components == ["coord", "obj", "noobj", "class"]
    assert report.reference["total"] > 0


def test_register_case_adds_a_case_to_the_xp_fixture():
    case = Case("numpy-again", "numpy")
    register_case(case)
    try:
        assert (case, None) in available_cases()
        register_case(Case("missing", "no_such_array_library"))
        assert ("missing", "no_such_array_library is not installed") in [(c.name, r) for c, r in available_cases()]
    finally:
        unregister_case("numpy-again")
        unregister_case("missing")
    assert "numpy-again" not in [c.name for c, _ in available_cases()]


class TestBackendConformanceOnNumpy(conformance.BackendConformance):
    """The base class a backend plugin subclasses, run on the built-in NumPy backend."""

    backend = "numpy"


def test_reload_plugins_is_public_and_finds_a_new_distribution(site):
    assert "cubic_loss" not in pl.losses()
    make_dist(site, "polyloss-toy", {"toy_losses": "toy_losses", "toy_recipes": "toy_recipes"},
              {"toy_losses": LOSS_PLUGIN, "toy_recipes": RECIPE_PLUGIN})
    assert "cubic_loss" not in pl.losses()
    assert pl.reload_plugins() == []
    assert "cubic_loss" in pl.losses()


def test_available_cases_and_installed_cases_both_feed_the_conformance_kit():
    from polyloss.testing.cases import installed_cases
    from polyloss.testing.cases import runnable

    pairs = available_cases()
    names = [case.name for case in installed_cases()]
    assert [case.name for case in runnable(pairs)] == names
    assert [case.name for case, reason in pairs if reason is None] == names
    assert [case.name for case in runnable(installed_cases())] == names
    with pytest.raises(TypeError, match="Case"):
        runnable(["numpy"])
    numpy_only = [pair for pair in pairs if pair[0].name == "numpy"]
    report = conformance.check_recipe("yolov1", _yolo_sample, cases=numpy_only)
    assert report.cases == ["numpy"]
