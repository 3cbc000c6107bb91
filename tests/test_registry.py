"""Loading behaviour of the plugin registry, with real (throw-away) installed distributions.

Built-ins first, then entry points (sorted by name), lazily and once; broken
plugins skipped with a warning naming the distribution; name clashes naming
both sides unless one overrides; the environment variables; run-time
registration invalidating the caches; thread-safe first use.
"""

from __future__ import annotations

import subprocess
import sys
import threading
import types
import warnings
from pathlib import Path

import numpy as np
import pytest
from _dists import LOSS_PLUGIN
from _dists import make_dist

import polyloss as pl
from polyloss import _namespace
from polyloss._registry import BUILTIN_PLUGINS
from polyloss._registry import PluginConflictError
from polyloss._registry import PluginWarning
from polyloss._registry import registry


def _load() -> list[str]:
    """Build the registry now; return the plugin names in registration order."""
    registry.tables  # noqa: B018
    return [name for name, _ in registry.plugin_manager.list_name_plugin()]


BROKEN_IMPORT = "import polyloss_no_such_module_anywhere\n"
RAISING_HOOK = '''
import polyloss as pl
from polyloss.backend.numpy import NumpyBackend


class Shadow(NumpyBackend):
    name = "shadow_backend"


@pl.hookimpl
def polyloss_register_backends():
    return [Shadow()]


@pl.hookimpl
def polyloss_register_losses():
    raise RuntimeError("boom in the hook")
'''


def _loss_module(loss_name: str, *, override: bool = False) -> str:
    value = "pl.override(fn)" if override else "fn"
    return f'''
import polyloss as pl


def fn(input, target, *, reduction="mean"):
    return pl.l1_loss(input, target, reduction=reduction)


fn.__name__ = {loss_name!r}


@pl.hookimpl
def polyloss_register_losses():
    return {{{loss_name!r}: {value}}}
'''


# -- order, laziness, once --------------------------------------------------------------


def test_builtins_first_then_entry_points_sorted_by_name(site):
    make_dist(site, "zz-dist", {"zz_plugin": "zz_mod"}, {"zz_mod": _loss_module("zz_loss")})
    make_dist(site, "aa-dist", {"aa_plugin": "aa_mod"}, {"aa_mod": _loss_module("aa_loss")})
    order = _load()
    assert order[: len(BUILTIN_PLUGINS)] == list(BUILTIN_PLUGINS)
    ours = [name for name in order if name in ("aa_plugin", "zz_plugin")]
    assert ours == ["aa_plugin", "zz_plugin"]
    assert registry.provider("loss", "aa_loss") == ("aa_plugin", "aa-dist")
    assert registry.distribution("polyloss.functional") == "polyloss"


def test_entry_points_are_loaded_lazily_and_hooks_called_once(site):
    make_dist(site, "lazy-dist", {"lazy": "lazy_mod"}, {"lazy_mod": LOSS_PLUGIN})
    registry.reload()
    assert "lazy_mod" not in sys.modules  # nothing happens before the registry is needed
    assert "cubic_loss" in pl.losses()
    module = sys.modules["lazy_mod"]
    assert module.CALLS == ["losses"]
    pl.losses(), pl.get_loss("cubic_loss"), pl.backends()
    x = np.array([0.5, -1.0])
    assert float(pl.get_loss("cubic_loss")(x, np.zeros(2))) == pytest.approx((0.125 + 1.0) / 2)
    pl.mse_loss(x, x)
    assert module.CALLS == ["losses"]  # answers are cached: no hook call per query or per loss call


# -- broken plugins ----------------------------------------------------------------------


def test_plugin_that_fails_to_import_is_skipped_with_a_warning_naming_its_distribution(site):
    make_dist(site, "broken-import-dist", {"broken_import": "broken_import_mod"}, {"broken_import_mod": BROKEN_IMPORT})
    make_dist(site, "good-dist", {"good": "good_mod"}, {"good_mod": _loss_module("good_loss")})
    with pytest.warns(PluginWarning, match=r"'broken_import' \(distribution 'broken-import-dist'\) failed to import"
                      r".*ModuleNotFoundError.*polyloss_no_such_module_anywhere"):
        names = pl.losses()
    assert "good_loss" in names and "mse_loss" in names
    assert [(f.plugin, f.distribution) for f in registry.failures] == [("broken_import", "broken-import-dist")]
    assert float(pl.get_loss("good_loss")(np.array([1.0]), np.array([3.0]))) == 2.0


def test_plugin_whose_hook_raises_is_skipped_as_a_whole(site):
    make_dist(site, "raising-dist", {"raising": "raising_mod"}, {"raising_mod": RAISING_HOOK})
    make_dist(site, "good-dist", {"good": "good_mod2"}, {"good_mod2": _loss_module("good_loss2")})
    with pytest.warns(PluginWarning, match=r"'raising' \(distribution 'raising-dist'\) raised in "
                      r"polyloss_register_losses.*RuntimeError: boom in the hook"):
        backends = pl.backends()
    # its backend hook did not raise, but the plugin contributes nothing
    assert "shadow_backend" not in backends and "numpy" in backends
    assert "raising" not in registry.plugin_names()
    assert "good_loss2" in pl.losses()
    # skipped once: rebuilding the tables (after a run-time change) neither calls it nor warns again
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        name = pl.register_plugin(types.ModuleType("rt_empty"), name="rt-empty")
        pl.unregister_plugin(name)
        pl.losses()


def test_unknown_hook_name_is_reported(site):
    source = "import polyloss as pl\n\n@pl.hookimpl\ndef polyloss_register_loss():\n    return {}\n"
    make_dist(site, "typo-dist", {"typo": "typo_mod"}, {"typo_mod": source})
    with pytest.warns(PluginWarning, match=r"'typo' \(distribution 'typo-dist'\).*'polyloss_register_loss'.*not a "
                      r"polyloss hook"):
        pl.losses()
    assert "typo" not in registry.plugin_names()


def test_hook_returning_the_wrong_type_is_reported(site):
    source = "import polyloss as pl\n\n@pl.hookimpl\ndef polyloss_register_losses():\n    return ['x']\n"
    make_dist(site, "wrong-dist", {"wrong": "wrong_mod"}, {"wrong_mod": source})
    with pytest.warns(PluginWarning, match=r"'wrong-dist'.*TypeError: a loss hook must return a mapping"):
        assert "mse_loss" in pl.losses()


# -- name clashes and override -------------------------------------------------------------


def test_duplicate_name_between_two_distributions_names_both_and_keeps_the_first(site):
    make_dist(site, "first-dist", {"a_first": "first_mod"}, {"first_mod": _loss_module("shared_loss")})
    make_dist(site, "second-dist", {"b_second": "second_mod"}, {"second_mod": _loss_module("shared_loss")
                                                                 + _extra_loss("second_only")})
    with pytest.warns(PluginWarning) as record:
        names = pl.losses()
    (message,) = [str(w.message) for w in record]
    for part in ("loss 'shared_loss'", "'a_first'", "'first-dist'", "'b_second'", "'second-dist'", "override"):
        assert part in message
    assert registry.provider("loss", "shared_loss") == ("a_first", "first-dist")
    assert "second_only" not in names  # the clashing plugin is skipped as a whole
    assert "mse_loss" in names


def _extra_loss(name: str) -> str:
    return f'''

def _extra(input, target, *, reduction="mean"):
    return pl.mse_loss(input, target, reduction=reduction)


@pl.hookimpl
def polyloss_register_losses():
    return {{{name!r}: _extra, "shared_loss": fn}}
'''


def test_clash_with_a_builtin_names_polyloss(site):
    make_dist(site, "clash-dist", {"clash": "clash_mod"}, {"clash_mod": _loss_module("mse_loss")})
    with pytest.warns(PluginWarning, match=r"'mse_loss'.*'polyloss.functional' \(distribution 'polyloss'\).*'clash' "
                      r"\(distribution 'clash-dist'\)"):
        assert pl.get_loss("mse_loss") is pl.mse_loss


def test_override_replaces_a_builtin(site):
    make_dist(site, "over-dist", {"over": "over_mod"}, {"over_mod": _loss_module("mse_loss", override=True)})
    replaced = pl.get_loss("mse_loss")
    assert replaced is sys.modules["over_mod"].fn
    assert registry.provider("loss", "mse_loss") == ("over", "over-dist")
    assert float(replaced(np.array([1.0]), np.array([3.0]))) == 2.0  # l1, not mse
    assert pl.mse_loss is not replaced  # the function itself is untouched


def test_override_wins_whichever_loads_first(site):
    make_dist(site, "a-dist", {"a_over": "a_over_mod"}, {"a_over_mod": _loss_module("ordered_loss", override=True)})
    make_dist(site, "b-dist", {"b_plain": "b_plain_mod"}, {"b_plain_mod": _loss_module("ordered_loss")})
    assert registry.provider("loss", "ordered_loss") == ("a_over", "a-dist")
    assert "b_plain" in registry.plugin_names()  # no clash: the later plain one defers to the override


def test_two_overrides_of_one_name_clash(site):
    make_dist(site, "o1-dist", {"o1": "o1_mod"}, {"o1_mod": _loss_module("mse_loss", override=True)})
    make_dist(site, "o2-dist", {"o2": "o2_mod"}, {"o2_mod": _loss_module("mse_loss", override=True)})
    with pytest.warns(PluginWarning, match=r"'o1-dist'.*'o2-dist'.*both ask to override"):
        assert registry.provider("loss", "mse_loss") == ("o1", "o1-dist")


def test_same_entry_point_name_in_two_distributions(site):
    make_dist(site, "twin-a", {"twin": "twin_a_mod"}, {"twin_a_mod": _loss_module("twin_a_loss")})
    make_dist(site, "twin-b", {"twin": "twin_b_mod"}, {"twin_b_mod": _loss_module("twin_b_loss")})
    with pytest.warns(PluginWarning, match=r"entry point name 'twin' is already used by distribution 'twin-"):
        names = pl.losses()
    assert ("twin_a_loss" in names) != ("twin_b_loss" in names)


# -- run-time registration -------------------------------------------------------------------


def _runtime_plugin(loss_name: str, *, override: bool = False, raises: bool = False) -> object:
    class Plugin:
        @pl.hookimpl
        def polyloss_register_losses(self):
            if raises:
                raise RuntimeError("runtime boom")

            def fn(input, target, *, reduction="mean"):
                return pl.l1_loss(input, target, reduction=reduction)

            return {loss_name: pl.override(fn) if override else fn}

    return Plugin()


def test_runtime_clash_raises_naming_both_and_changes_nothing(site):
    before = pl.losses()
    with pytest.raises(PluginConflictError, match=r"'cross_entropy'.*'polyloss.functional'.*'polyloss'.*'mine'"):
        pl.register_plugin(_runtime_plugin("cross_entropy"), name="mine")
    assert "mine" not in registry.plugin_names()
    assert pl.losses() == before and pl.get_loss("cross_entropy") is pl.cross_entropy
    with pytest.raises(RuntimeError, match="runtime boom"):
        pl.register_plugin(_runtime_plugin("x", raises=True), name="mine")
    assert "mine" not in registry.plugin_names()


def test_runtime_register_override_and_unregister(site):
    name = pl.register_plugin(_runtime_plugin("cross_entropy", override=True), name="mine")
    assert name == "mine"
    assert pl.get_loss("cross_entropy") is not pl.cross_entropy
    assert registry.provider("loss", "cross_entropy") == ("mine", None)
    with pytest.raises(ValueError, match="already registered"):
        pl.register_plugin(_runtime_plugin("other"), name="mine")
    pl.unregister_plugin("mine")
    assert pl.get_loss("cross_entropy") is pl.cross_entropy
    with pytest.raises(ValueError, match="no polyloss plugin named 'mine'"):
        pl.unregister_plugin("mine")


def test_runtime_backend_change_invalidates_the_type_cache(site):
    from polyloss.backend.numpy import NumpyBackend

    class Tagged(NumpyBackend):
        """The NumPy backend, tagged, replacing the built-in one."""

    class Plugin:
        @pl.hookimpl
        def polyloss_register_backends(self):
            return [pl.override(Tagged())]

    x = np.ones(3)
    assert type(_namespace.backend_of(x)) is NumpyBackend  # now cached per type
    pl.register_plugin(Plugin(), name="tagged")
    assert type(_namespace.backend_of(x)) is Tagged
    assert float(pl.mse_loss(x, x)) == 0.0
    pl.unregister_plugin("tagged")
    assert type(_namespace.backend_of(x)) is NumpyBackend


def test_generation_is_bumped_by_every_change(site):
    start = registry.generation
    pl.losses()  # building the tables lazily is not a change
    assert registry.generation == start
    name = pl.register_plugin(_runtime_plugin("generation_loss"), name="generation")
    assert registry.generation == start + 1
    assert "generation_loss" in registry.tables.losses  # the new generation's tables are in place
    pl.unregister_plugin(name)
    assert registry.generation == start + 2
    registry.reload()
    assert registry.generation == start + 3
    with pytest.raises(ValueError):
        pl.unregister_plugin(name)  # a failed change bumps nothing
    assert registry.generation == start + 3


# -- environment -------------------------------------------------------------------------------


def _two_dists(site: Path) -> None:
    make_dist(site, "Env-One", {"env_one": "env_one_mod"}, {"env_one_mod": _loss_module("env_one_loss")})
    make_dist(site, "env-two", {"env_two": "env_two_mod"}, {"env_two_mod": _loss_module("env_two_loss")})


def test_disable_autoload(site, monkeypatch):
    _two_dists(site)
    monkeypatch.setenv("POLYLOSS_DISABLE_PLUGIN_AUTOLOAD", "1")
    registry.reload()
    names = pl.losses()
    assert "env_one_loss" not in names and "env_two_loss" not in names and "mse_loss" in names
    assert "env_one_mod" not in sys.modules
    monkeypatch.setenv("POLYLOSS_DISABLE_PLUGIN_AUTOLOAD", "0")
    registry.reload()
    assert {"env_one_loss", "env_two_loss"} <= set(pl.losses())


def test_plugins_env_selects_by_entry_point_or_distribution_name(site, monkeypatch):
    _two_dists(site)
    monkeypatch.setenv("POLYLOSS_PLUGINS", "env_two")
    registry.reload()
    names = pl.losses()
    assert "env_two_loss" in names and "env_one_loss" not in names
    monkeypatch.setenv("POLYLOSS_PLUGINS", " env-one , ")  # distribution name, normalised
    registry.reload()
    names = pl.losses()
    assert "env_one_loss" in names and "env_two_loss" not in names
    # an explicit list still loads what it names when autoload is disabled
    monkeypatch.setenv("POLYLOSS_DISABLE_PLUGIN_AUTOLOAD", "1")
    monkeypatch.setenv("POLYLOSS_PLUGINS", "env_one,env_two")
    registry.reload()
    assert {"env_one_loss", "env_two_loss"} <= set(pl.losses())


def test_plugins_env_warns_about_names_not_installed(site, monkeypatch):
    _two_dists(site)
    monkeypatch.setenv("POLYLOSS_PLUGINS", "env_one,not_installed_anywhere")
    registry.reload()
    with pytest.warns(PluginWarning, match="POLYLOSS_PLUGINS names 'not_installed_anywhere'"):
        assert "env_one_loss" in pl.losses()


# -- threads -------------------------------------------------------------------------------------


def test_first_use_from_many_threads_loads_once(site):
    make_dist(site, "thread-dist", {"threaded": "threaded_mod"}, {"threaded_mod": LOSS_PLUGIN})
    registry.reload()
    threads_n = 16
    barrier = threading.Barrier(threads_n)
    seen: list[object] = [None] * threads_n
    errors: list[BaseException] = []
    x = np.linspace(-1.0, 1.0, 5)

    def first_use(i: int) -> None:
        try:
            barrier.wait()
            loss = pl.get_loss("cubic_loss")  # cold registry and cold type cache, all at once
            value = float(loss(x, np.zeros(5)))
            assert value == pytest.approx(float(np.mean(np.abs(x) ** 3)))
            assert type(_namespace.backend_of(x)).__name__ == "NumpyBackend"
            seen[i] = registry.tables
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=first_use, args=(i,)) for i in range(threads_n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    if errors:
        raise errors[0]
    assert len({id(t) for t in seen}) == 1  # one set of tables ...
    assert sys.modules["threaded_mod"].CALLS == ["losses"]  # ... from one call of the hook


# -- imports -------------------------------------------------------------------------------------


def test_import_and_registry_import_no_array_framework():
    code = (
        "import sys, numpy as np, polyloss as pl\n"
        "pl.backends(), pl.losses(), pl.recipes(), pl.cross_entropy(np.zeros((2, 3)), np.array([0, 1]))\n"
        "print(sorted(m for m in ('torch', 'cupy', 'jax', 'array_api_strict') if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=str(Path(__file__).resolve().parents[1]))
    assert out.stdout.strip() == "[]", out.stderr
