"""The loss plots: curve data against closed-form float64 formulas, and the images written."""

from __future__ import annotations

import numpy as np
import pytest

from polyloss._tools.plot import GALLERY
from polyloss._tools.plot import PLOTTABLE
from polyloss._tools.plot import curve_data
from polyloss._tools.plot import main_plot
from polyloss._tools.plot import parse_spec

# sample points that avoid every kink (0, +-beta, +-delta, the hinge margin 1)
XS = np.array([-3.7, -2.5, -1.3, -0.6, -0.2, 0.3, 0.7, 1.6, 2.4, 3.9])


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def _fd(f, x: np.ndarray, h: float = 1e-6) -> np.ndarray:
    return (f(x + h) - f(x - h)) / (2 * h)


def _smooth_l1(d: np.ndarray, beta: float) -> np.ndarray:
    return np.where(np.abs(d) < beta, 0.5 * d * d / beta, np.abs(d) - 0.5 * beta)


def _huber(d: np.ndarray, delta: float) -> np.ndarray:
    return np.where(np.abs(d) < delta, 0.5 * d * d, delta * (np.abs(d) - 0.5 * delta))


def _focal(x: np.ndarray, gamma: float, alpha: float) -> np.ndarray:
    p = _sigmoid(x)  # target 1: p_t = p
    a = 1.0 if alpha < 0 else alpha
    return -a * (1 - p) ** gamma * np.log(p)


FORMULAS = {
    # name, options: (loss(x), d loss / d x)
    ("mse_loss", ()): (lambda x: x**2, lambda x: 2 * x),
    ("l1_loss", ()): (np.abs, np.sign),
    ("smooth_l1_loss", ()): (lambda x: _smooth_l1(x, 1.0), lambda x: np.clip(x, -1, 1)),
    ("smooth_l1_loss", (("beta", 2.0),)): (lambda x: _smooth_l1(x, 2.0), lambda x: np.clip(x / 2, -1, 1)),
    ("huber_loss", ()): (lambda x: _huber(x, 1.0), lambda x: np.clip(x, -1, 1)),
    ("huber_loss", (("delta", 2.0),)): (lambda x: _huber(x, 2.0), lambda x: np.clip(x, -2, 2)),
    ("binary_cross_entropy_with_logits", ()): (lambda x: np.log1p(np.exp(-x)), lambda x: _sigmoid(x) - 1),
    ("cross_entropy", ()): (
        lambda x: np.log1p(2 * np.exp(-x)),
        lambda x: -2 * np.exp(-x) / (1 + 2 * np.exp(-x)),
    ),
    ("cross_entropy", (("num_classes", 5),)): (
        lambda x: np.log1p(4 * np.exp(-x)),
        lambda x: -4 * np.exp(-x) / (1 + 4 * np.exp(-x)),
    ),
    ("hinge_loss", ()): (lambda x: np.maximum(0, 1 - x), lambda x: np.where(x < 1, -1.0, 0.0)),
    ("hinge_loss", (("margin", 2.0),)): (lambda x: np.maximum(0, 2 - x), lambda x: np.where(x < 2, -1.0, 0.0)),
    ("squared_hinge_loss", ()): (lambda x: np.maximum(0, 1 - x) ** 2, lambda x: -2 * np.maximum(0, 1 - x)),
    # PyTorch's multi_margin_loss, 3 classes, the two others at 0: 2 max(0, 1 - x) / 3
    ("multi_margin_loss", ()): (lambda x: 2 * np.maximum(0, 1 - x) / 3, lambda x: np.where(x < 1, -2 / 3, 0.0)),
}
for _gamma in (0.0, 0.5, 2.0, 5.0):
    for _alpha in (-1.0, 0.25):
        FORMULAS[("sigmoid_focal_loss", (("gamma", _gamma), ("alpha", _alpha)))] = (
            lambda x, g=_gamma, a=_alpha: _focal(x, g, a),
            lambda x, g=_gamma, a=_alpha: _fd(lambda t: _focal(t, g, a), x),
        )


@pytest.mark.parametrize("grad_method", ["auto", "fd"])
@pytest.mark.parametrize(
    ("key", "formulas"), list(FORMULAS.items()), ids=lambda v: str(v) if isinstance(v, tuple) else ""
)
def test_curve_matches_formula(key, formulas, grad_method):
    name, options = key
    loss_f, grad_f = formulas
    curve = curve_data(name, XS, grad_method=grad_method, **dict(options))
    assert curve.x.dtype == np.float64 and curve.loss.shape == XS.shape and curve.grad.shape == XS.shape
    np.testing.assert_allclose(curve.loss, loss_f(XS), rtol=1e-12, atol=1e-12)
    tol = 1e-6 if grad_method == "fd" or name == "sigmoid_focal_loss" else 1e-12
    np.testing.assert_allclose(curve.grad, grad_f(XS), rtol=tol, atol=tol)


def test_auto_gradient_is_closed_form_where_registered():
    assert curve_data("huber_loss", XS).grad_method == "closed form"
    assert curve_data("huber_loss", XS, grad_method="fd").grad_method == "finite differences"


def test_smooth_l1_at_sample_points_and_kinks():
    # the example, including the points where the pieces meet
    xs = np.array([-2.0, -1.0, -0.5, 0.0, 0.5, 1.0, 2.0])
    curve = curve_data("smooth_l1_loss", xs, beta=1.0)
    assert curve.loss.tolist() == [1.5, 0.5, 0.125, 0.0, 0.125, 0.5, 1.5]
    # PyTorch's gradient: d/beta inside, sign(d) outside, continuous at |d| = beta, 0 at 0
    assert curve.grad.tolist() == [-1.0, -1.0, -0.5, 0.0, 0.5, 1.0, 1.0]


def test_binary_cross_entropy_on_probabilities():
    ps = np.array([0.05, 0.3, 0.5, 0.9])
    curve = curve_data("binary_cross_entropy", ps)
    np.testing.assert_allclose(curve.loss, -np.log(ps), rtol=1e-12)
    np.testing.assert_allclose(curve.grad, -1 / ps, rtol=1e-9)


def test_softmax_focal_gamma0_is_cross_entropy():
    a = curve_data("softmax_focal_loss:gamma=0", XS)
    b = curve_data("cross_entropy", XS)
    np.testing.assert_allclose(a.loss, b.loss, rtol=1e-12)
    np.testing.assert_allclose(a.grad, b.grad, rtol=1e-9, atol=1e-12)


def test_spec_options_and_labels():
    assert parse_spec("huber_loss:delta=2") == ("huber_loss", {"delta": 2})
    assert parse_spec("sigmoid_focal_loss: gamma=0.5, alpha=-1") == ("sigmoid_focal_loss", {"gamma": 0.5, "alpha": -1})
    assert parse_spec("mse_loss") == ("mse_loss", {})
    with pytest.raises(ValueError, match="key=value"):
        parse_spec("huber_loss:delta")
    from_spec = curve_data("huber_loss:delta=2", XS)
    from_kwargs = curve_data("huber_loss", XS, delta=2)
    np.testing.assert_array_equal(from_spec.loss, from_kwargs.loss)
    assert from_spec.label == "Huber (delta=2)"
    assert curve_data("cross_entropy", XS).label == "softmax cross-entropy (3 classes)"


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda: curve_data("kl_div", XS), "cannot plot 'kl_div'"),
        (lambda: curve_data("no_such_loss", XS), "plottable losses"),
        (lambda: curve_data("mse_loss", XS, reduction="sum"), "reduction"),
        (lambda: curve_data("mse_loss", XS, num_classes=4), "class-axis"),
        (lambda: curve_data("cross_entropy", XS, num_classes=1), "num_classes"),
        (lambda: curve_data("mse_loss", np.zeros((2, 2))), "1-D"),
        (lambda: curve_data("mse_loss", np.array([0.0, np.nan])), "finite"),
        (lambda: curve_data("mse_loss", XS, grad_method="torch"), "grad_method"),
    ],
)
def test_bad_arguments(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_every_plottable_loss_is_registered():
    import polyloss as pl

    assert set(PLOTTABLE) <= set(pl.losses())


# -- images ------------------------------------------------------------------------------------

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _png_size(path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == PNG_MAGIC
    return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")


def test_plot_losses_writes_png(tmp_path):
    pytest.importorskip("matplotlib")
    from polyloss._tools.plot import plot_losses

    out = tmp_path / "sub" / "regression.png"
    assert plot_losses(["mse_loss", "smooth_l1_loss", "huber_loss:delta=2"], out, dpi=50) == str(out)
    width, height = _png_size(out)
    assert width == 500 and height == 190  # 10 x 3.8 inches at 50 dpi


def test_plot_losses_rejects_mixed_domains(tmp_path):
    pytest.importorskip("matplotlib")
    from polyloss._tools.plot import plot_losses

    with pytest.raises(ValueError, match="binary_cross_entropy"):
        plot_losses(["binary_cross_entropy", "mse_loss"], tmp_path / "x.png")
    assert not (tmp_path / "x.png").exists()


def test_plot_gallery_writes_one_row_per_group(tmp_path):
    pytest.importorskip("matplotlib")
    from polyloss._tools.plot import plot_gallery

    out = tmp_path / "gallery.png"
    plot_gallery(out, [(title, names) for _, title, names in GALLERY], dpi=40, points=51)
    width, height = _png_size(out)
    assert width == 400 and height == round(3.2 * len(GALLERY) * 40)


def test_plot_command(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    out = tmp_path / "focal.png"
    code = main_plot(["sigmoid_focal_loss:gamma=0", "sigmoid_focal_loss:gamma=2", "-o", str(out), "--points", "41"])
    assert code == 0
    assert f"wrote {out}" in capsys.readouterr().out
    assert _png_size(out)[0] > 0


def test_plot_command_x_range(tmp_path):
    pytest.importorskip("matplotlib")
    assert main_plot(["hinge_loss", "-o", str(tmp_path / "h.png"), "--xmin", "-1", "--xmax", "2"]) == 0
    assert main_plot(["hinge_loss", "-o", str(tmp_path / "h.png"), "--xmin", "3", "--xmax", "2"]) == 2


def test_plot_command_unknown_loss_is_usage_error(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    assert main_plot(["kl_div", "-o", str(tmp_path / "k.png")]) == 2
    assert "cannot plot 'kl_div'" in capsys.readouterr().err
    assert not (tmp_path / "k.png").exists()


def test_plot_command_needs_output():
    with pytest.raises(SystemExit) as info:
        main_plot(["mse_loss"])
    assert info.value.code == 2


def test_plot_command_without_matplotlib(tmp_path, capsys, monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "matplotlib" else real(name, *a))
    assert main_plot(["mse_loss", "-o", str(tmp_path / "m.png")]) == 3
    assert "pip install matplotlib" in capsys.readouterr().err
