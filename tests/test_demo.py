"""The gradient-descent demo (``polyloss._tools.demo.run_demo``) built on ``value_and_grad``."""

from __future__ import annotations

import importlib.util
import io
import sys

import numpy as np
import pytest

from polyloss._tools.demo import LOSSES
from polyloss._tools.demo import make_blobs
from polyloss._tools.demo import make_scenes
from polyloss._tools.demo import run_demo


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
    b = _quiet(backend="array_api_strict", steps=5, seed=1)
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
    run_demo(steps=12, progress=sys.stderr)
    captured = capsys.readouterr()
    assert "12/12" in captured.err and "[" + "#" * 30 + "]" in captured.err
    assert "step      loss" in captured.out and "training accuracy" in captured.out
    assert "12/12" not in captured.out


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_by_default_only_on_a_terminal(capsys, monkeypatch):
    run_demo(steps=4)
    assert capsys.readouterr().err == ""  # stderr captured: not a terminal, no bar
    terminal = _Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    run_demo(steps=4)
    assert "4/4" in terminal.getvalue()


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
        run_demo(model="resnet")
    with pytest.raises(ValueError, match="loss"):
        run_demo(loss="kl_div")
    with pytest.raises(ValueError, match="backend"):
        run_demo(backend="no_such_backend")
    with pytest.raises(ValueError, match="steps"):
        run_demo(steps=0)
    for lr in (float("nan"), -1.0, 0.0, float("inf")):
        with pytest.raises(ValueError, match="lr"):
            run_demo(lr=lr)


def test_backend_names_of_the_registry_and_the_old_alias():
    pytest.importorskip("array_api_strict")
    a = _quiet(backend="array_api_strict", steps=3, seed=1)
    b = _quiet(backend="strict", steps=3, seed=1)
    assert a.losses == b.losses


def test_blobs_are_reproducible_and_standardised():
    a, la = make_blobs(200, 3, 7)
    b, lb = make_blobs(200, 3, 7)
    assert np.array_equal(a, b) and np.array_equal(la, lb)
    np.testing.assert_allclose(a.mean(axis=0), 0, atol=1e-12)
    np.testing.assert_allclose(a.std(axis=0), 1)
    assert set(la.tolist()) == {0, 1, 2}


# -- the YOLOv1 grid detector ------------------------------------------------------------


def test_yolov1_same_first_step_loss_on_numpy_torch_and_strict():
    pytest.importorskip("torch")
    a = _quiet(model="yolov1", backend="numpy", steps=4, samples=40, seed=2)
    b = _quiet(model="yolov1", backend="torch", steps=4, samples=40, seed=2)
    assert a.losses[0] == pytest.approx(b.losses[0], rel=1e-12)
    np.testing.assert_allclose(a.losses, b.losses, rtol=1e-10)
    c = _quiet(model="yolov1", backend="strict", steps=4, samples=40, seed=2)
    np.testing.assert_allclose(a.losses, c.losses, rtol=1e-10)
    assert _quiet(model="yolov1", steps=1, samples=40, seed=3).losses[0] != a.losses[0]


def test_yolov1_training_lowers_the_loss_and_finds_the_objects():
    result = _quiet(model="yolov1", steps=40, samples=80)
    assert len(result.losses) == 40
    assert all(b < a for a, b in zip(result.losses, result.losses[1:], strict=False))  # plain descent, small lr
    assert result.losses[-1] < 0.3 * result.losses[0]
    assert result.accuracy > 0.8


def test_yolov1_first_loss_by_hand():
    # at the start every predictor sits at its cell centre with size 0.5 and confidence 0, and the class
    # scores are 0 (up to 0.01-scale weights):
    # the loss is close to the YOLOv1 formula evaluated for that constant prediction
    _, boxes, labels = make_scenes(50, 3, 0)
    result = _quiet(model="yolov1", steps=1, samples=50, classes=3, seed=0)
    s = 2
    total = 0.0
    for (x1, y1, x2, y2), label in zip(boxes[:, 0], labels[:, 0], strict=True):
        cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
        col, row = min(int(cx * s), s - 1), min(int(cy * s), s - 1)
        tx, ty = cx * s - col, cy * s - row
        coord = (0.5 - tx) ** 2 + (0.5 - ty) ** 2 + (np.sqrt(0.5) - np.sqrt(x2 - x1)) ** 2 \
            + (np.sqrt(0.5) - np.sqrt(y2 - y1)) ** 2
        # predicted box: centred in the cell, 0.5 x 0.5 of the image
        px, py = (col + 0.5) / s, (row + 0.5) / s
        iw = max(0.0, min(px + 0.25, x2) - max(px - 0.25, x1))
        ih = max(0.0, min(py + 0.25, y2) - max(py - 0.25, y1))
        iou = iw * ih / (0.25 + (x2 - x1) * (y2 - y1) - iw * ih)
        one_hot = np.eye(3)[label]
        total += 5.0 * coord + (0.0 - iou) ** 2 + 0.5 * (s * s - 1) * 0.0**2 + np.sum((0.0 - one_hot) ** 2)
    assert result.losses[0] == pytest.approx(total / 50, rel=0.02)


def test_scenes_are_reproducible_and_drawn_in_the_label_channel():
    images, boxes, labels = make_scenes(30, 3, 5)
    again = make_scenes(30, 3, 5)
    assert all(np.array_equal(x, y) for x, y in zip((images, boxes, labels), again, strict=True))
    assert images.shape == (30, 3, 8, 8) and boxes.shape == (30, 1, 4) and labels.shape == (30, 1)
    assert np.all((boxes >= 0) & (boxes <= 1)) and np.all(boxes[..., 2:] - boxes[..., :2] >= 0.3 - 1e-12)
    per_channel = images.sum(axis=(2, 3))
    assert np.all(per_channel[np.arange(30), labels[:, 0]] > 0)
    assert np.all(per_channel.sum(axis=1) == per_channel[np.arange(30), labels[:, 0]])


# -- the YOLOv8 anchor-free detector ------------------------------------------------------------


def test_yolov8_same_losses_on_numpy_torch_and_strict():
    pytest.importorskip("torch")
    a = _quiet(model="yolov8", backend="numpy", steps=4, samples=30, seed=2)
    b = _quiet(model="yolov8", backend="torch", steps=4, samples=30, seed=2)
    np.testing.assert_allclose(a.losses, b.losses, rtol=1e-10)
    c = _quiet(model="yolov8", backend="strict", steps=4, samples=30, seed=2)
    np.testing.assert_allclose(a.losses, c.losses, rtol=1e-10)
    assert _quiet(model="yolov8", steps=1, samples=30, seed=3).losses[0] != a.losses[0]


def test_yolov8_training_lowers_the_loss_and_finds_the_objects():
    result = _quiet(model="yolov8", steps=60, samples=80)
    assert len(result.losses) == 60
    assert result.losses[-1] < 0.3 * result.losses[0]
    assert result.accuracy > 0.6
