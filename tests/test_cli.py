"""The command line: list and check."""

from __future__ import annotations

import subprocess
import sys

import pytest

from polyloss._tools.cli import main


def test_check_prints_agreeing_table(capsys):
    assert main(["check", "--backend", "numpy", "--backend", "array_api_strict"]) == 0
    out = capsys.readouterr().out
    assert "cross_entropy" in out and "strict-strictest" in out
    assert "all backends agree" in out


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
