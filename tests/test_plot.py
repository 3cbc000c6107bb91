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


# -- the second set: slices with three positional arrays, plot options, per-point calls -------------

NEG = np.array([-3.7, -2.5, -1.3, -0.6, -0.2, -0.05])  # log-probabilities
DIST = np.array([0.05, 0.4, 0.7, 1.3, 1.9, 2.8])  # distances, away from the margin 1
ANGLES = np.array([0.1, 0.4, 0.9, 1.3, 1.8, 2.5, 3.0])  # away from the kinks at pi/2 and pi/3


def _softplus(x: np.ndarray) -> np.ndarray:
    return np.logaddexp(0.0, x)


def _class_ce(x: np.ndarray, classes: int = 3) -> np.ndarray:
    return np.log1p((classes - 1) * np.exp(-x))


def _dfl(x: np.ndarray, label: float) -> np.ndarray:
    # the slice: logits -(k - x)^2 / (2 * 0.75^2) over bins 0..4
    logits = -((np.arange(5)[None, :] - x[:, None]) ** 2) / (2 * 0.75**2)
    logp = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
    lo = min(int(np.floor(label)), 3)
    return -(lo + 1 - label) * logp[:, lo] - (label - lo) * logp[:, lo + 1]


#: the segmentation slice: six pixels, the first three foreground, x is pixel 0's logit
SEG_LOGITS = np.array([0.0, 2.0, 0.5, -1.5, -0.5, 1.0])
SEG_TARGET = np.array([1.0, 1.0, 1.0, 0.0, 0.0, 0.0])


def _seg(fn):
    def per_x(xs: np.ndarray) -> np.ndarray:
        out = []
        for x in xs:
            logits = SEG_LOGITS.copy()
            logits[0] = x
            out.append(fn(logits, SEG_TARGET))
        return np.array(out)

    return per_x


def _soft_counts(logits, t):
    p = _sigmoid(logits)
    return (p * t).sum(), (p * (1 - t)).sum(), ((1 - p) * t).sum()  # TP, FP, FN


def _dice(logits, t):
    tp, fp, fn = _soft_counts(logits, t)
    return 1 - 2 * tp / (2 * tp + fp + fn)


def _jaccard(logits, t):
    tp, fp, fn = _soft_counts(logits, t)
    return 1 - tp / (tp + fp + fn)


def _tversky(logits, t, alpha=0.3, beta=0.7):
    tp, fp, fn = _soft_counts(logits, t)
    return 1 - tp / (tp + alpha * fp + beta * fn)


def _lovasz_hinge(logits, t):
    # Berman et al.: the Lovasz extension of the Jaccard loss at the hinge errors, sorted decreasing
    errors = 1 - logits * (2 * t - 1)
    order = np.argsort(-errors, kind="stable")
    e, gt = errors[order], t[order]
    inter = gt.sum() - np.cumsum(gt)
    union = gt.sum() + np.cumsum(1 - gt)
    jac = 1 - inter / union
    grad = np.concatenate([jac[:1], np.diff(jac)])
    return np.maximum(e, 0) @ grad


def _ctc_one_label(x: np.ndarray, steps: int) -> np.ndarray:
    # alignments of the target "1" over `steps` frames: one contiguous run of 1s, blanks elsewhere
    p = np.exp(x)
    total = sum((steps - run + 1) * p**run * (1 - p) ** (steps - run) for run in range(1, steps + 1))
    return -np.log(total)


#: spec: (sample points, loss(x)) -- independent float64 formulas of each slice
SECOND_SET = {
    "log_cosh_loss": (XS, lambda x: np.abs(x) + np.log1p(np.exp(-2 * np.abs(x))) - np.log(2)),
    "gaussian_nll_loss": (XS, lambda x: 0.5 * x**2),
    "gaussian_nll_loss:var=0.5": (XS, lambda x: 0.5 * (np.log(0.5) + x**2 / 0.5)),
    "poisson_nll_loss": (XS, lambda x: np.exp(x) - 2 * x),
    "poisson_nll_loss:count=0": (XS, np.exp),
    "poly1_cross_entropy": (XS, lambda x: _class_ce(x) + 2 * (1 - 1 / (1 + 2 * np.exp(-x)))),
    "poly1_cross_entropy:epsilon=-1,num_classes=5": (XS, lambda x: _class_ce(x, 5) - (1 - 1 / (1 + 4 * np.exp(-x)))),
    "soft_margin_loss": (XS, lambda x: _softplus(-x)),
    "multilabel_soft_margin_loss": (XS, lambda x: (_softplus(-x) + 2 * np.log(2)) / 3),
    "multilabel_soft_margin_loss:num_classes=5": (XS, lambda x: (_softplus(-x) + 4 * np.log(2)) / 5),
    "multilabel_margin_loss": (XS, lambda x: 2 * np.maximum(0, 1 - x) / 3),
    "margin_ranking_loss": (XS, lambda x: np.maximum(0, -x)),
    "margin_ranking_loss:margin=0.5,target=-1": (XS, lambda x: np.maximum(0, x + 0.5)),
    "hinge_embedding_loss": (DIST, lambda x: np.maximum(0, 1 - x)),
    "hinge_embedding_loss:target=1": (DIST, lambda x: x),
    "triplet_margin_loss": (XS, lambda x: np.maximum(0, x + 1)),
    "triplet_margin_loss:margin=0.5,swap=True": (XS, lambda x: np.maximum(0, x + 0.5)),
    "cosine_embedding_loss": (ANGLES, lambda a: 1 - np.cos(a)),
    "cosine_embedding_loss:target=-1": (ANGLES, lambda a: np.maximum(0, np.cos(a))),
    "cosine_embedding_loss:margin=0.5,target=-1": (ANGLES, lambda a: np.maximum(0, np.cos(a) - 0.5)),
    # view 0's candidates: its partner (similarity cos a) and two orthogonal views (similarity 0)
    "nt_xent_loss": (ANGLES, lambda a: np.log1p(2 * np.exp(-np.cos(a) / 0.5))),
    "nt_xent_loss:temperature=0.2": (ANGLES, lambda a: np.log1p(2 * np.exp(-np.cos(a) / 0.2))),
    "varifocal_loss": (XS, lambda x: _softplus(-x)),
    "varifocal_loss:iou=0.5": (XS, lambda x: 0.5 * (_softplus(x) - 0.5 * x)),
    "varifocal_loss:iou=0.5,iou_weighted=False": (XS, lambda x: _softplus(x) - 0.5 * x),
    "varifocal_loss:iou=0": (XS, lambda x: 0.75 * _sigmoid(x) ** 2 * _softplus(x)),
    "quality_focal_loss": (XS, lambda x: _softplus(-x) * (1 - _sigmoid(x)) ** 2),
    "quality_focal_loss:iou=0.5,beta=1": (XS, lambda x: (_softplus(x) - 0.5 * x) * np.abs(_sigmoid(x) - 0.5)),
    "distribution_focal_loss": (XS + 2, lambda x: _dfl(x, 2.5)),
    "distribution_focal_loss:label=1": (XS + 2, lambda x: _dfl(x, 1.0)),
    "distribution_focal_loss:label=4": (XS + 2, lambda x: _dfl(x, 4.0)),
    "dice_loss": (XS, _seg(_dice)),
    "jaccard_loss": (XS, _seg(_jaccard)),
    "tversky_loss": (XS, _seg(_dice)),  # alpha = beta = 1/2 is Dice
    "tversky_loss:alpha=0.3,beta=0.7": (XS, _seg(_tversky)),
    "lovasz_loss": (XS, _seg(_lovasz_hinge)),
    "ctc_loss:steps=1": (NEG, lambda x: -x),
    "ctc_loss": (NEG, lambda x: _ctc_one_label(x, 4)),
    "ctc_loss:steps=10": (NEG, lambda x: _ctc_one_label(x, 10)),
}


@pytest.mark.parametrize("spec", list(SECOND_SET))
def test_second_set_curve_matches_formula(spec):
    xs, loss_f = SECOND_SET[spec]
    curve = curve_data(spec, xs)
    assert curve.grad_method == "closed form"
    assert curve.x.dtype == np.float64 and curve.loss.shape == xs.shape and curve.grad.shape == xs.shape
    # the triplet distances carry PyTorch's eps = 1e-6 inside the norm
    tol = 1e-5 if spec.startswith("triplet") else 1e-12
    np.testing.assert_allclose(curve.loss, loss_f(xs), rtol=tol, atol=tol)


@pytest.mark.parametrize("spec", list(SECOND_SET))
def test_second_set_closed_form_gradient_is_finite_differences_of_the_loss(spec):
    # the closed form (value_and_grad, chained through the slice's tangent) against central
    # differences of the loss itself, the slice rebuilt at x - h and x + h
    xs, _ = SECOND_SET[spec]
    h = 1e-6
    fd = (curve_data(spec, xs + h).loss - curve_data(spec, xs - h).loss) / (2 * h)
    np.testing.assert_allclose(curve_data(spec, xs).grad, fd, rtol=1e-6, atol=1e-7)
    # and grad_method="fd" (differences along the tangent) agrees with both
    np.testing.assert_allclose(curve_data(spec, xs, grad_method="fd").grad, fd, rtol=1e-6, atol=1e-7)


SECOND_SET_NAMES = [
    "poisson_nll_loss", "gaussian_nll_loss", "cosine_embedding_loss", "margin_ranking_loss", "triplet_margin_loss",
    "hinge_embedding_loss", "soft_margin_loss", "multilabel_soft_margin_loss", "multilabel_margin_loss", "ctc_loss",
    "log_cosh_loss", "poly1_cross_entropy", "dice_loss", "jaccard_loss", "tversky_loss", "lovasz_loss",
    "varifocal_loss", "quality_focal_loss", "distribution_focal_loss", "nt_xent_loss",
]


def test_every_second_set_loss_is_plottable_tested_and_in_the_gallery():
    in_gallery = {parse_spec(spec)[0] for _, _, specs in GALLERY for spec in specs}
    tested = {parse_spec(spec)[0] for spec in SECOND_SET}
    for name in SECOND_SET_NAMES:
        assert name in PLOTTABLE and name in in_gallery and name in tested, name
    stems = [stem for stem, _, _ in GALLERY]
    assert len(stems) == len(set(stems))


def test_plot_options_in_labels():
    assert curve_data("gaussian_nll_loss:var=0.5", XS).label == "Gaussian NLL (var=0.5)"
    assert curve_data("cosine_embedding_loss:margin=0.5,target=-1", ANGLES).label == (
        "cosine embedding (margin=0.5, target=-1)"
    )
    assert curve_data("poly1_cross_entropy:epsilon=1", XS).label == "Poly-1 (epsilon=1, 3 classes)"
    assert curve_data("ctc_loss", NEG).label == "CTC (steps=4)"
    assert curve_data("dice_loss", XS).label == "Dice"


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda: curve_data("gaussian_nll_loss", XS, var=0), "var must be a finite number > 0, got 0"),
        (lambda: curve_data("poisson_nll_loss", XS, count=-1), "count must be"),
        (lambda: curve_data("margin_ranking_loss", XS, target=0), "target must be 1 or -1, got 0"),
        (lambda: curve_data("varifocal_loss", XS, iou=1.5), r"iou must be a number in \[0, 1\]"),
        (lambda: curve_data("distribution_focal_loss", XS, label=5), "label must be"),
        (lambda: curve_data("ctc_loss", NEG, steps=0), "steps must be an int >= 1"),
        (lambda: curve_data("ctc_loss", NEG, steps=2.5), "steps must be an int"),
        (lambda: curve_data("mse_loss", XS, var=2.0), "var applies to gaussian_nll_loss only, not 'mse_loss'"),
        (lambda: curve_data("mse_loss", XS, target=1), "target applies to cosine_embedding_loss, hinge_emb"),
        (lambda: curve_data("dice_loss", XS, num_classes=4), "class-axis"),
        (lambda: curve_data("hinge_embedding_loss", XS), "x >= 0"),
        (lambda: curve_data("ctc_loss", np.array([-1.0, 0.0])), "x < 0"),
        (lambda: curve_data("triplet_margin_loss", np.array([4.5])), r"\|x\| <= 4"),
        (lambda: curve_data("dice_loss", XS, mode="multiclass"), "mode is fixed to 'binary'"),
        (lambda: curve_data("poisson_nll_loss", XS, log_input=False), "log_input is fixed to True"),
        (lambda: curve_data("nt_xent_loss", XS, reduction="mean"), "reduction"),
    ],
)
def test_second_set_bad_arguments(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_fixed_option_may_be_repeated():
    a = curve_data("dice_loss", XS, mode="binary")
    np.testing.assert_array_equal(a.loss, curve_data("dice_loss", XS).loss)


def test_mixed_figure_draws_each_curve_where_its_slice_exists():
    from polyloss._tools.plot import _curves

    ranking, hinge = _curves(["margin_ranking_loss", "hinge_embedding_loss"], None, None, 61, "auto")
    assert ranking.x[0] == -3.0 and ranking.x[-1] == 3.0 and ranking.x.size == 61
    assert hinge.x[0] == 0.0 and hinge.x[-1] == 3.0 and hinge.x.size == 31
    with pytest.raises(ValueError, match="leaves no points where ctc_loss is defined"):
        _curves(["ctc_loss"], None, (0.5, 1.0), 11, "auto")


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


@pytest.mark.parametrize("name", SECOND_SET_NAMES)
def test_plot_command_every_second_set_loss(tmp_path, name):
    pytest.importorskip("matplotlib")
    out = tmp_path / f"{name}.png"
    assert main_plot([name, "-o", str(out), "--points", "9"]) == 0
    assert _png_size(out)[0] > 0


def test_plot_command_clips_a_range_to_where_the_slice_exists(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    assert main_plot(["hinge_embedding_loss", "margin_ranking_loss", "-o", str(tmp_path / "h.png"),
                      "--xmin", "-1", "--xmax", "2", "--points", "7"]) == 0
    assert main_plot(["ctc_loss", "-o", str(tmp_path / "c.png"), "--xmin", "0.5", "--xmax", "1"]) == 2
    assert "leaves no points where ctc_loss is defined (x < 0 (a log-probability))" in capsys.readouterr().err
