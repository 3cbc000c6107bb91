"""The gradient-descent demo (``polyloss._demo.run_demo``) built on ``value_and_grad``."""

from __future__ import annotations

import importlib.util
import io

import numpy as np
import pytest

from polyloss._demo import LOSSES
from polyloss._demo import make_blobs
from polyloss._demo import run_demo


def _quiet(**kwargs):
    return run_demo(out=io.StringIO(), progress=io.StringIO(), **kwargs)


@pytest.mark.parametrize("loss", ["cross_entropy", "hinge_loss"])
def test_same_seed_same_losses_on_numpy_and_torch(loss):
    pytest.importorskip("torch")
    a = _quiet(backend="numpy", steps=8, loss=loss, seed=3)
    b = _quiet(backend="torch", steps=8, loss=loss, seed=3)
    assert a.losses[0] == pytest.approx(b.losses[0], rel=1e-12)
    np.testing.assert_allclose(a.losses, b.losses, rtol=1e-10)
    c = _quiet(backend="numpy", steps=8, loss=loss, seed=4)
    assert c.losses[0] != a.losses[0]


def test_strict_backend_agrees():
    pytest.importorskip("array_api_strict")
    a = _quiet(backend="numpy", steps=5, seed=1)
    b = _quiet(backend="strict", steps=5, seed=1)
    np.testing.assert_allclose(a.losses, b.losses, rtol=1e-10)


@pytest.mark.parametrize("loss", LOSSES)
def test_training_lowers_the_loss(loss):
    result = _quiet(steps=60, loss=loss)
    assert len(result.losses) == 60
    assert result.losses[-1] < 0.6 * result.losses[0]
    assert result.accuracy > 0.9


def test_first_loss_is_log_of_class_count_at_near_zero_weights():
    # weights start at 0.01 scale: softmax is nearly uniform
    result = _quiet(steps=1, classes=4)
    assert result.losses[0] == pytest.approx(np.log(4), rel=1e-2)


def test_progress_on_stderr_and_curve_on_stdout(capsys):
    run_demo(steps=12)
    captured = capsys.readouterr()
    assert "12/12" in captured.err and "[" + "#" * 30 + "]" in captured.err
    assert "step      loss" in captured.out and "training accuracy" in captured.out
    assert "12/12" not in captured.out


def test_plot_needs_matplotlib(tmp_path, capsys):
    path = tmp_path / "curve.png"
    result = run_demo(steps=3, plot=str(path), out=io.StringIO(), progress=io.StringIO())
    if importlib.util.find_spec("matplotlib") is None:
        assert result.plot is None and not path.exists()
        assert "matplotlib" in capsys.readouterr().err
    else:
        assert result.plot == str(path) and path.read_bytes().startswith(b"\x89PNG")


def test_bad_arguments():
    with pytest.raises(ValueError, match="model"):
        run_demo(model="yolov1")
    with pytest.raises(ValueError, match="loss"):
        run_demo(loss="kl_div")
    with pytest.raises(ValueError, match="backend"):
        run_demo(backend="jax")
    with pytest.raises(ValueError, match="steps"):
        run_demo(steps=0)


def test_blobs_are_reproducible_and_standardised():
    a, la = make_blobs(200, 3, 7)
    b, lb = make_blobs(200, 3, 7)
    assert np.array_equal(a, b) and np.array_equal(la, lb)
    np.testing.assert_allclose(a.mean(axis=0), 0, atol=1e-12)
    np.testing.assert_allclose(a.std(axis=0), 1)
    assert set(la.tolist()) == {0, 1, 2}
