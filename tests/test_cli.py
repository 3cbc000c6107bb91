"""The command line: list, check, bench, demo, plot; exit codes and messages."""

from __future__ import annotations

import importlib.util
import io
import os
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

import polyloss
import polyloss as pl
from polyloss._tools.cli import main


def test_check_prints_agreeing_table(capsys):
    assert main(["check", "--backend", "numpy", "--backend", "array_api_strict"]) == 0
    out = capsys.readouterr().out
    assert "cross_entropy" in out and "strict-strictest" in out
    assert "all backends agree" in out
    assert "no built-in sample" not in out  # every built-in loss and recipe has sample data
    for name in (*pl.losses(), *pl.recipes()):
        assert name in out


def test_check_detects_disagreement(capsys, monkeypatch):
    import polyloss.functional.regression as regression

    original = regression.mse_loss

    def broken(input, target, **kw):
        out = original(input, target, **kw)
        return out * 1.5 if type(input).__module__.startswith("array_api_strict") else out

    from polyloss._registry import registry

    monkeypatch.setitem(registry.tables.losses, "mse_loss", broken)
    assert main(["check", "mse_loss", "--backend", "numpy", "--backend", "array_api_strict"]) == 1
    assert "DISAGREE" in capsys.readouterr().out


def test_list_names_backends_losses(capsys):
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    assert "numpy" in out and "cross_entropy" in out and "from polyloss" in out


def test_module_entry_point_and_usage_error():
    done = subprocess.run([sys.executable, "-m", "polyloss", "list"], capture_output=True, text=True)
    assert done.returncode == 0 and "losses:" in done.stdout
    bad = subprocess.run([sys.executable, "-m", "polyloss", "frobnicate"], capture_output=True, text=True)
    assert bad.returncode == 2


@pytest.mark.parametrize("command", ["list", "check"])
def test_help(command):
    done = subprocess.run([sys.executable, "-m", "polyloss", command, "--help"], capture_output=True, text=True)
    assert done.returncode == 0 and "usage" in done.stdout


def test_bench_writes_ratio_table_and_json(tmp_path, capsys):
    import json

    path = tmp_path / "bench.json"
    assert main(["bench", "mse_loss", "cross_entropy", "--tiny", "--repeat", "1", "--json", str(path), "--quiet",
                 "--system-malloc"]) == 0
    out = capsys.readouterr().out
    assert "ratio" in out and "mse_loss" in out and "import polyloss" in out
    assert "allocator: glibc defaults" in out
    data = json.loads(path.read_text())
    backends = {row["backend"] for row in data["rows"]}
    assert backends == {"numpy", "torch"}
    assert all(row["ratio"] > 0 for row in data["rows"])
    assert {"torch"} == {row["backend"] for row in data["rows"] if row["generic_ratio"] is not None}


def test_demo_same_first_step_on_numpy_and_torch(capsys):
    assert main(["demo", "--steps", "5", "--quiet"]) == 0
    numpy_line = capsys.readouterr().out.strip().splitlines()[-1]
    assert main(["demo", "--steps", "5", "--quiet", "--backend", "torch"]) == 0
    torch_line = capsys.readouterr().out.strip().splitlines()[-1]
    assert numpy_line.startswith("first-step loss 1.0985")
    assert numpy_line == torch_line


def test_demo_bad_loss_exit_code(capsys):
    assert main(["demo", "--loss", "no_such_loss", "--quiet"]) == 2


def test_check_covers_recipes(capsys):
    assert main(["check", "ssd", "yolov1", "faster_rcnn", "--backend", "numpy", "--backend", "torch", "--quiet"]) == 0
    out = capsys.readouterr().out
    for name in ("recipe ssd", "recipe yolov1", "recipe faster_rcnn"):
        assert name in out
    assert "FAIL" not in out and "all backends agree" in out


def test_bench_keeps_freed_memory_on_glibc():
    import platform

    code = "from polyloss._tools.bench import keep_freed_memory; print(keep_freed_memory())"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    expected = sys.platform == "linux" and platform.libc_ver()[0] == "glibc"
    assert done.stdout.strip() == str(expected)


# -- a command line a careful user can trust (issue 17) --------------------------------------------------

ROOT = Path(__file__).resolve().parent.parent


def _one_line_error(err: str, *parts: str) -> None:
    """A single line on stderr, no traceback, naming every part."""
    assert err.count("\n") == 1 and err.endswith("\n"), err
    assert "Traceback" not in err, err
    for part in parts:
        assert part in err, (part, err)


def test_version(capsys):
    assert main(["--version"]) == 0
    assert capsys.readouterr().out == f"polyloss {polyloss.__version__}\n"


@pytest.mark.parametrize(("name", "hint"), [("nosuch_loss", "python -m polyloss list"), ("mse_los", "'mse_loss'")])
def test_check_unknown_name_is_a_usage_error(capsys, name, hint):
    assert main(["check", name, "--backend", "numpy"]) == 2
    captured = capsys.readouterr()
    _one_line_error(captured.err, "python -m polyloss check: error:", f"unknown loss or recipe {name!r}", hint)
    assert "agree" not in captured.out


@pytest.mark.parametrize("command", ["check", "demo"])
def test_unknown_backend_is_a_usage_error(capsys, command):
    assert main([command, "--backend", "nosuch"]) == 2
    captured = capsys.readouterr()
    _one_line_error(captured.err, "argument --backend: invalid choice: 'nosuch'", "'numpy'", "'array_api_strict'")
    assert captured.out == ""


class _MissingBackend(pl.Backend):
    """A backend registered by a plugin whose library is not installed."""

    name = "ghost"
    module_name = "polyloss_no_such_library"


class _StrictPluginBackend(pl.Backend):
    """A plugin backend (as JAX's is) for array-api-strict arrays, with no test case of its own."""

    name = "strict_plugin"
    module_name = "array_api_strict"
    host = True

    def matches(self, x: object) -> bool:
        return isinstance(x, sys.modules["array_api_strict"]._array_object.Array)

    def load_namespace(self) -> Any:
        import array_api_strict

        return array_api_strict


@pytest.fixture
def plugin_backends():
    class Plugin:
        @pl.hookimpl
        def polyloss_register_backends(self) -> list[pl.Backend]:
            return [_MissingBackend(), _StrictPluginBackend()]

    pl.register_plugin(Plugin(), name="cli-backends")
    yield
    pl.unregister_plugin("cli-backends")


@pytest.mark.parametrize("command", [["check", "mse_loss"], ["demo", "--steps", "2"]])
def test_registered_backend_that_is_not_installed_is_an_error(capsys, plugin_backends, command):
    assert main([*command, "--backend", "ghost", "--quiet"]) == 3
    captured = capsys.readouterr()
    _one_line_error(captured.err, "backend 'ghost' is registered but cannot run here",
                    "polyloss_no_such_library is not installed")
    assert captured.out == ""


@pytest.mark.skipif(importlib.util.find_spec("cupy") is not None, reason="CuPy is installed here")
def test_check_cupy_without_cupy_is_an_error_not_agreement(capsys):
    assert main(["check", "--backend", "cupy", "--quiet"]) == 3
    captured = capsys.readouterr()
    _one_line_error(captured.err, "backend 'cupy' is registered but cannot run here: cupy is not installed")
    assert "agree" not in captured.out


def test_backend_choices_come_from_the_registry(capsys, plugin_backends):
    pytest.importorskip("array_api_strict")
    assert main(["check", "mse_loss", "cross_entropy", "--backend", "strict_plugin", "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "strict_plugin-f32" in out and "FAIL" not in out
    assert "all backends agree: 2 losses and recipes on 1 backend case" in out
    # without --backend the plugin's backend is checked too, and the one not installed is named as skipped
    assert main(["check", "mse_loss", "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "strict_plugin-f32" in out and "ghost (polyloss_no_such_library is not installed)" in out


def test_one_spelling_of_array_api_strict(capsys):
    pytest.importorskip("array_api_strict")
    assert main(["demo", "--backend", "array_api_strict", "--steps", "2", "--quiet"]) == 0
    assert "array_api_strict backend" in capsys.readouterr().out
    # the demo's old spelling is an alias, reported under the registry's name
    assert main(["demo", "--backend", "strict", "--steps", "2", "--quiet"]) == 0
    assert "array_api_strict backend" in capsys.readouterr().out
    assert main(["check", "mse_loss", "--backend", "strict", "--quiet"]) == 0
    assert "strict-strictest" in capsys.readouterr().out
    assert main(["list"]) == 0
    assert "array_api_strict" in capsys.readouterr().out


def test_check_with_nothing_to_check_is_not_agreement(capsys):
    class Plugin:
        @pl.hookimpl
        def polyloss_register_losses(self) -> dict[str, Any]:
            return {"cli_cubic_loss": lambda x, y, *, reduction="mean": pl.mse_loss(x, y, reduction=reduction)}

    pl.register_plugin(Plugin(), name="cli-losses")
    try:
        assert main(["check", "cli_cubic_loss", "--backend", "numpy", "--quiet"]) == 1
        captured = capsys.readouterr()
        _one_line_error(captured.err, "nothing checked: no built-in sample for cli_cubic_loss")
        assert "agree" not in captured.out
        assert main(["check", "cli_cubic_loss", "mse_loss", "--backend", "numpy", "--quiet"]) == 0
        assert "not checked (no built-in sample): cli_cubic_loss" in capsys.readouterr().out
    finally:
        pl.unregister_plugin("cli-losses")


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["demo", "--lr", "nan"], "argument --lr: must be a finite number above 0, got 'nan'"),
        (["demo", "--lr", "-1"], "argument --lr: must be a finite number above 0, got '-1'"),
        (["demo", "--lr", "fast"], "argument --lr: must be a number, got 'fast'"),
        (["demo", "--steps", "0"], "argument --steps: must be an integer >= 1, got '0'"),
        (["demo", "--seed", "-1"], "argument --seed: must be an integer >= 0, got '-1'"),
        (["demo", "--plot", "/missing/dir/x.png"],
         "argument --plot: cannot write '/missing/dir/x.png': directory '/missing/dir' does not exist"),
        (["demo", "--loss", "kl_div"], "argument --loss: invalid choice: 'kl_div'"),
        (["bench", "--repeat", "0"], "argument --repeat: must be an integer >= 1, got '0'"),
        (["bench", "--json", "/missing/dir/b.json"], "argument --json: cannot write '/missing/dir/b.json'"),
        (["bench", "no_such_loss"], "unknown loss or recipe 'no_such_loss'"),
        (["bench", "ssd"], "bench takes loss names; 'ssd' is a recipe"),
        (["plot", "mse_loss", "-o", "/missing/dir/p.png"], "argument -o/--output: cannot write '/missing/dir/p.png'"),
        (["plot", "mse_loss", "-o", "p.png", "--xmin", "nan"], "argument --xmin: must be a finite number, got 'nan'"),
        (["plot", "mse_loss", "-o", "p.png", "--points", "1"], "argument --points: must be an integer >= 2"),
    ],
)
def test_arguments_checked_before_any_work(capsys, argv, message):
    assert main(argv) == 2
    captured = capsys.readouterr()
    _one_line_error(captured.err, f"python -m polyloss {argv[0]}: error: {message}")
    assert captured.out == ""  # nothing ran


def test_help_and_version_return_zero_in_process(capsys):
    assert main(["check", "--help"]) == 0
    assert "--backend" in capsys.readouterr().out


def test_closed_pipe_exits_quietly():
    read, write = os.pipe()
    os.close(read)  # the reader is gone before anything is written: every write fails with EPIPE
    try:
        done = subprocess.run([sys.executable, "-m", "polyloss", "list"], stdout=write, stderr=subprocess.PIPE,
                              text=True, cwd=ROOT, timeout=120)
    finally:
        os.close(write)
    assert done.returncode == 141, done.stderr
    assert "Traceback" not in done.stderr and "BrokenPipe" not in done.stderr


def test_closed_pipe_from_a_shell():
    done = subprocess.run(f"{shlex.quote(sys.executable)} -m polyloss list | head -1", shell=True,
                          capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert done.stdout == "backends:\n" and done.stderr == ""


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_only_on_a_terminal(capsys, monkeypatch):
    assert main(["demo", "--steps", "3"]) == 0
    assert main(["check", "mse_loss", "--backend", "numpy"]) == 0
    assert capsys.readouterr().err == ""  # stderr is not a terminal: no bar
    terminal = _Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    assert main(["demo", "--steps", "3"]) == 0
    assert main(["check", "mse_loss", "--backend", "numpy"]) == 0
    assert "3/3" in terminal.getvalue() and "[1/1] mse_loss" in terminal.getvalue()


def test_progress_never_written_into_a_pipe():
    done = subprocess.run([sys.executable, "-m", "polyloss", "demo", "--steps", "5"], capture_output=True,
                          text=True, cwd=ROOT, timeout=120)
    assert done.returncode == 0 and done.stderr == ""
    assert "first-step loss" in done.stdout and "\r" not in done.stdout


def test_check_covers_a_plugin_recipe_through_its_sample_data(capsys):
    class PluginSSD(pl.detection.DetectionRecipe):
        """SSD under another name, with sample data of its own (a DetectionRecipe subclass's hook)."""

        def __init__(self, **config: Any) -> None:
            super().__init__()
            self.inner = pl.get_recipe("ssd", **config)

        def __call__(self, *args: Any) -> Any:
            return self.inner(*args)

        @classmethod
        def sample_data(cls, seed: int = 0) -> Any:
            return pl.detection.ssd.SSDLoss.sample_data(seed)

    def bare_factory(**config: Any) -> Any:
        return PluginSSD(**config)

    class Plugin:
        @pl.hookimpl
        def polyloss_register_recipes(self) -> dict[str, Any]:
            return {"cli_plugin_ssd": PluginSSD, "cli_bare_recipe": bare_factory}

    pl.register_plugin(Plugin(), name="cli-recipes")
    try:
        assert main(["check", "cli_plugin_ssd", "cli_bare_recipe", "--backend", "numpy", "--backend", "torch",
                     "--quiet"]) == 0
        out = capsys.readouterr().out
        assert "recipe cli_plugin_ssd" in out and "FAIL" not in out
        assert "not checked (no built-in sample): cli_bare_recipe" in out
    finally:
        pl.unregister_plugin("cli-recipes")


def test_check_without_an_optional_dependency_says_so_and_checks_the_rest(capsys, monkeypatch):
    # the README's main job installs polyloss without SciPy: "detr" cannot run, the rest is checked
    monkeypatch.setitem(sys.modules, "scipy", None)
    monkeypatch.setitem(sys.modules, "scipy.optimize", None)
    assert main(["check", "detr", "ssd", "--backend", "numpy", "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "recipe ssd" in out and "needs a missing package" in out
    assert "not checked (missing dependency): detr (scipy is not installed)" in out
