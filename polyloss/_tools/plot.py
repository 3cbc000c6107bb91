"""Plots of each loss against its input, next to its gradient (``python -m polyloss plot``).

:func:`curve_data` computes what is drawn (NumPy, float64): the per-element
loss as a function of one scalar input with the other inputs held fixed, and
its derivative, from :func:`polyloss.value_and_grad` (closed form) where a
gradient is registered, else from central finite differences.
:func:`plot_losses` draws one figure (loss left, gradient right) and
:func:`plot_gallery` several such rows. Matplotlib is imported only when a
figure is drawn, with the non-interactive Agg canvas (no display needed, no
global pyplot state).

A loss is named by its registered name, optionally with options:
``"huber_loss:delta=2"``, ``"sigmoid_focal_loss:gamma=0.5,alpha=-1"``.
What varies along the x axis depends on the loss:

- regression losses (``mse_loss``, ``l1_loss``, ``smooth_l1_loss``,
  ``huber_loss``): the residual :math:`x - y` (target 0);
- ``binary_cross_entropy_with_logits``, ``sigmoid_focal_loss``: the logit of
  an element whose target is 1;
- ``hinge_loss``, ``squared_hinge_loss``: the score of an element whose target is +1;
- ``cross_entropy``, ``softmax_focal_loss``, ``multi_margin_loss``: the logit
  of the true class, the other ``num_classes - 1`` logits being 0
  (``num_classes`` is a plot option, default 3);
- ``binary_cross_entropy``: the predicted probability of an element whose target is 1.
"""

from __future__ import annotations

import argparse
import ast
import math
import os
from collections.abc import Callable
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from polyloss._tools._args import finite_float
from polyloss._tools._args import int_at_least
from polyloss._tools._args import output_file

__all__ = [
    "GALLERY",
    "Curve",
    "PLOTTABLE",
    "add_arguments",
    "cmd_plot",
    "curve_data",
    "main_plot",
    "parse_spec",
    "plot_gallery",
    "plot_losses",
]

EXIT_OK = 0
EXIT_USAGE = 2
EXIT_MISSING_DEPENDENCY = 3
_PROG = "python -m polyloss plot"

_Inputs = tuple[np.ndarray, np.ndarray]

#: the documentation's gallery (and ``docs/images/losses.png``): (file stem, title, loss specs)
GALLERY: list[tuple[str, str, list[str]]] = [
    ("regression", "MSE, L1, smooth L1, Huber", ["mse_loss", "l1_loss", "smooth_l1_loss:beta=2", "huber_loss:delta=2"]),
    ("classification", "Logistic and softmax cross-entropy", ["binary_cross_entropy_with_logits", "cross_entropy"]),
    ("margin", "Hinge and squared hinge", ["hinge_loss", "squared_hinge_loss"]),
    ("focal", "Sigmoid focal (alpha off)", [f"sigmoid_focal_loss:gamma={g},alpha=-1" for g in (0, 0.5, 1, 2, 5)]),
]


def _pointwise(target: float) -> Callable[[np.ndarray, int], _Inputs]:
    def build(xs: np.ndarray, num_classes: int) -> _Inputs:
        return xs.copy(), np.full_like(xs, target)

    return build


def _true_class(xs: np.ndarray, num_classes: int) -> _Inputs:
    logits = np.zeros((xs.shape[0], num_classes), dtype=np.float64)
    logits[:, 0] = xs
    return logits, np.zeros(xs.shape[0], dtype=np.int64)


@dataclass(frozen=True)
class _Kind:
    x_label: str
    x_range: tuple[float, float]
    domain: str  # "real" or "probability": curves of one figure share their x axis
    build: Callable[[np.ndarray, int], _Inputs]
    class_axis: bool = False


_RESIDUAL = _Kind("residual x - y", (-3.0, 3.0), "real", _pointwise(0.0))
_LOGIT = _Kind("logit x (binary target 1)", (-5.0, 5.0), "real", _pointwise(1.0))
_SCORE = _Kind("score f (target +1)", (-2.0, 3.0), "real", _pointwise(1.0))
_CLASS = _Kind("x = true-class logit (others 0)", (-5.0, 5.0), "real", _true_class, class_axis=True)
_PROBABILITY = _Kind("probability p (target 1)", (0.01, 0.99), "probability", _pointwise(1.0))

#: loss name -> (short label, what varies along x)
PLOTTABLE: dict[str, tuple[str, _Kind]] = {
    "mse_loss": ("MSE", _RESIDUAL),
    "l1_loss": ("L1", _RESIDUAL),
    "smooth_l1_loss": ("smooth L1", _RESIDUAL),
    "huber_loss": ("Huber", _RESIDUAL),
    "binary_cross_entropy_with_logits": ("logistic (BCE with logits)", _LOGIT),
    "sigmoid_focal_loss": ("sigmoid focal", _LOGIT),
    "hinge_loss": ("hinge", _SCORE),
    "squared_hinge_loss": ("squared hinge", _SCORE),
    "cross_entropy": ("softmax cross-entropy", _CLASS),
    "softmax_focal_loss": ("softmax focal", _CLASS),
    "multi_margin_loss": ("multi-margin", _CLASS),
    "binary_cross_entropy": ("BCE on probabilities", _PROBABILITY),
}


@dataclass(frozen=True)
class Curve:
    """One plotted curve: ``loss[i]`` and ``grad[i]`` (d loss / d x) at ``x[i]``, float64."""

    name: str
    label: str
    x_label: str
    x: np.ndarray
    loss: np.ndarray
    grad: np.ndarray
    grad_method: str  # "closed form" or "finite differences"


def parse_spec(spec: str) -> tuple[str, dict[str, Any]]:
    """``"huber_loss:delta=2,reduction=..."`` -> ``("huber_loss", {"delta": 2})``.

    Values are Python literals (numbers, ``True``, ``None``, quoted strings);
    anything else is kept as a string.
    """
    name, _, rest = spec.partition(":")
    name = name.strip()
    options: dict[str, Any] = {}
    for item in filter(None, (p.strip() for p in rest.split(","))):
        key, eq, raw = item.partition("=")
        if not eq or not key.strip().isidentifier():
            raise ValueError(f"bad option {item!r} in {spec!r}: expected key=value")
        try:
            value = ast.literal_eval(raw.strip())
        except (ValueError, SyntaxError):
            value = raw.strip()
        options[key.strip()] = value
    return name, options


def _lookup(name: str) -> tuple[str, _Kind]:
    if name not in PLOTTABLE:
        raise ValueError(f"cannot plot {name!r}; plottable losses: {', '.join(sorted(PLOTTABLE))}")
    return PLOTTABLE[name]


def _label(name: str, options: dict[str, Any], extra: Sequence[str] = ()) -> str:
    short, _ = _lookup(name)
    parts = [f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in options.items()]
    shown = ", ".join([*parts, *extra])
    return f"{short} ({shown})" if shown else short


def _check_xs(xs: Any) -> np.ndarray:
    arr = np.asarray(xs, dtype=np.float64)
    if arr.ndim != 1 or arr.size == 0:
        raise ValueError(f"xs must be a non-empty 1-D array, got shape {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise ValueError("xs must be finite")
    return arr


def _has_closed_form(loss: Callable[..., Any]) -> bool:
    try:
        from polyloss.gradients import gradient_of
    except ImportError:
        return False
    try:
        gradient_of(loss)
    except (TypeError, KeyError, ValueError):
        return False
    return True


def curve_data(name: str, xs: Any, *, grad_method: str = "auto", h: float = 1e-6, **options: Any) -> Curve:
    """The loss of ``name`` and its derivative along ``xs`` (see the module docstring for what x is).

    Args:
        name: a plottable loss name (:data:`PLOTTABLE`); options may be given
            here or in the name (``"huber_loss:delta=2"``).
        xs: 1-D finite sample points.
        grad_method: ``"auto"`` (closed form if :func:`polyloss.value_and_grad`
            has this loss, else finite differences), ``"closed"`` or ``"fd"``
            (central differences with step ``h``).
        h: finite-difference step.
        **options: the loss's keyword options (``reduction`` is always
            ``"none"``), plus ``num_classes`` (default 3) for class-axis losses.

    Returns:
        A :class:`Curve` with float64 ``x``, ``loss`` and ``grad`` of ``xs``'s length.

    Example:
        >>> import numpy as np
        >>> from polyloss._tools.plot import curve_data
        >>> c = curve_data("smooth_l1_loss", np.array([0.5, 2.0]), beta=1.0)
        >>> c.loss.tolist(), c.grad.tolist()
        ([0.125, 1.5], [0.5, 1.0])
    """
    import polyloss as pl

    base, spec_options = parse_spec(name)
    options = {**spec_options, **options}
    _, kind = _lookup(base)
    if grad_method not in ("auto", "closed", "fd"):
        raise ValueError(f"grad_method must be 'auto', 'closed' or 'fd', got {grad_method!r}")
    if "reduction" in options:
        raise ValueError("reduction is fixed to 'none' for plotting")
    num_classes = options.pop("num_classes", 3)
    if not kind.class_axis and num_classes != 3:
        raise ValueError(f"num_classes applies to class-axis losses only, not {base!r}")
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 2:
        raise ValueError(f"num_classes must be an int >= 2, got {num_classes!r}")
    x = _check_xs(xs)
    loss_fn = pl.get_loss(base)
    inputs, target = kind.build(x, num_classes)

    def per_element(inp: np.ndarray) -> np.ndarray:
        return np.asarray(loss_fn(inp, target, reduction="none", **options), dtype=np.float64)

    value = per_element(inputs)
    use_closed = grad_method == "closed" or (grad_method == "auto" and _has_closed_form(loss_fn))
    if use_closed:
        _, g = pl.value_and_grad(loss_fn, inputs, target, reduction="none", **options)
        grad = np.asarray(g, dtype=np.float64)
        grad = grad[:, 0] if kind.class_axis else grad
        method = "closed form"
    else:
        # elements are independent, so one shifted evaluation per side gives every derivative
        shift = np.zeros_like(inputs)
        if kind.class_axis:
            shift[:, 0] = h
        else:
            shift[...] = h
        grad = (per_element(inputs + shift) - per_element(inputs - shift)) / (2.0 * h)
        method = "finite differences"
    label = _label(base, options, extra=[f"{num_classes} classes"] if kind.class_axis else [])
    return Curve(
        name=base,
        label=label,
        x_label=kind.x_label,
        x=x,
        loss=value.reshape(x.shape),
        grad=np.asarray(grad).reshape(x.shape),
        grad_method=method,
    )


def _curves(
    names: Sequence[str], xs: Any, x_range: tuple[float, float] | None, points: int, grad_method: str
) -> list[Curve]:
    if isinstance(names, str) or not names:
        raise ValueError("names must be a non-empty list of loss names")
    kinds = [_lookup(parse_spec(n)[0])[1] for n in names]
    domains = {k.domain for k in kinds}
    if len(domains) > 1:
        raise ValueError(
            "binary_cross_entropy (probability input) cannot share an x axis with losses of logits or "
            f"residuals; plot it separately (got {', '.join(names)})"
        )
    if xs is None:
        lo, hi = x_range or (min(k.x_range[0] for k in kinds), max(k.x_range[1] for k in kinds))
        if not (math.isfinite(lo) and math.isfinite(hi) and lo < hi):
            raise ValueError(f"x range must be two finite numbers, low < high, got ({lo}, {hi})")
        if points < 2:
            raise ValueError(f"points must be >= 2, got {points}")
        xs = np.linspace(lo, hi, points)
    return [curve_data(n, xs, grad_method=grad_method) for n in names]


def _draw_row(axes: Sequence[Any], curves: Sequence[Curve], title: str | None) -> None:
    x_labels = {c.x_label for c in curves}
    x_label = "; ".join(sorted(x_labels))
    ax_loss, ax_grad = axes
    for c in curves:
        ax_loss.plot(c.x, c.loss, label=c.label, linewidth=1.8)
        ax_grad.plot(c.x, c.grad, label=c.label, linewidth=1.8)
    for ax, what in ((ax_loss, "loss"), (ax_grad, "d loss / d x")):
        ax.axhline(0.0, color="0.6", linewidth=0.8)
        ax.axvline(0.0, color="0.6", linewidth=0.8)
        ax.set_xlabel(x_label)
        ax.set_ylabel(what)
        ax.grid(True, alpha=0.3)
    ax_loss.legend(fontsize="small", loc="best")
    if title:
        ax_loss.set_title(f"{title}: loss", fontsize="medium")
        ax_grad.set_title(f"{title}: gradient", fontsize="medium")
    else:
        ax_loss.set_title("loss", fontsize="medium")
        methods = sorted({c.grad_method for c in curves})
        ax_grad.set_title(f"gradient ({', '.join(methods)})", fontsize="medium")


def _save(fig: Any, path: str | os.PathLike[str], dpi: int) -> str:
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(fig)
    out = os.fspath(path)
    directory = os.path.dirname(out)
    if directory:
        os.makedirs(directory, exist_ok=True)
    fig.savefig(out, dpi=dpi)
    return out


def plot_losses(
    names: Sequence[str],
    path: str | os.PathLike[str],
    *,
    xs: Any = None,
    x_range: tuple[float, float] | None = None,
    points: int = 401,
    title: str | None = None,
    grad_method: str = "auto",
    dpi: int = 110,
) -> str:
    """Draw each loss against its input (left) and its gradient (right); write a PNG.

    Args:
        names: loss names, each optionally with options (``"huber_loss:delta=2"``).
        path: the image file to write (format from the suffix; PNG for ``.png``).
        xs: sample points; default ``points`` evenly spaced over ``x_range``.
        x_range: default: the union of the losses' natural ranges.
        points: number of sample points when ``xs`` is None.
        title: figure title (prefixed to both panels).
        grad_method: as :func:`curve_data`.
        dpi: resolution of the image.

    Returns:
        ``path`` as a string.
    """
    from matplotlib.figure import Figure

    curves = _curves(names, xs, x_range, points, grad_method)
    fig = Figure(figsize=(10.0, 3.8), layout="constrained")
    _draw_row(fig.subplots(1, 2), curves, title)
    return _save(fig, path, dpi)


def plot_gallery(
    path: str | os.PathLike[str],
    groups: Sequence[tuple[str, Sequence[str]]],
    *,
    points: int = 401,
    grad_method: str = "auto",
    dpi: int = 100,
) -> str:
    """Several :func:`plot_losses` rows in one image: ``groups`` is ``[(title, names), ...]``."""
    from matplotlib.figure import Figure

    if not groups:
        raise ValueError("groups must not be empty")
    fig = Figure(figsize=(10.0, 3.2 * len(groups)), layout="constrained")
    rows = fig.subplots(len(groups), 2, squeeze=False)
    for axes, (title, names) in zip(rows, groups, strict=True):
        _draw_row(axes, _curves(names, None, None, points, grad_method), title)
    return _save(fig, path, dpi)


# -- command line ------------------------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``python -m polyloss plot`` (for a subparser)."""
    parser.add_argument(
        "losses",
        nargs="+",
        metavar="NAME",
        help="loss names, each optionally with options: huber_loss:delta=2 sigmoid_focal_loss:gamma=0.5,alpha=-1 "
        f"(plottable: {', '.join(sorted(PLOTTABLE))})",
    )
    parser.add_argument("-o", "--output", required=True, metavar="FILE.png", type=output_file,
                        help="image file to write")
    parser.add_argument("--xmin", type=finite_float, default=None, help="left end of the x axis")
    parser.add_argument("--xmax", type=finite_float, default=None, help="right end of the x axis")
    parser.add_argument("--points", type=int_at_least(2), default=401, help="sample points (default 401)")
    parser.add_argument("--title", default=None, help="figure title")
    parser.add_argument(
        "--grad",
        choices=("auto", "closed", "fd"),
        default="auto",
        help="gradient: closed form (polyloss.value_and_grad), finite differences, or auto (closed where available)",
    )


def cmd_plot(args: argparse.Namespace) -> int:
    """Run ``plot`` for parsed ``args``: 0 written, 2 bad names/options, 3 matplotlib missing."""
    import importlib.util
    import sys

    prog = getattr(args, "prog", _PROG)
    if importlib.util.find_spec("matplotlib") is None:
        print(f"{prog}: error: plot needs matplotlib: pip install matplotlib", file=sys.stderr)
        return EXIT_MISSING_DEPENDENCY
    x_range = None
    if args.xmin is not None or args.xmax is not None:
        names = [parse_spec(n)[0] for n in args.losses]
        try:
            kinds = [_lookup(n)[1] for n in names]
        except ValueError as exc:
            print(f"{prog}: error: {exc}", file=sys.stderr)
            return EXIT_USAGE
        lo = args.xmin if args.xmin is not None else min(k.x_range[0] for k in kinds)
        hi = args.xmax if args.xmax is not None else max(k.x_range[1] for k in kinds)
        x_range = (lo, hi)
    try:
        out = plot_losses(
            args.losses, args.output, x_range=x_range, points=args.points, title=args.title, grad_method=args.grad
        )
    except (ValueError, TypeError) as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    print(f"wrote {out}")
    return EXIT_OK


def main_plot(argv: Sequence[str] | None = None) -> int:
    """Stand-alone entry: ``main_plot(["huber_loss", "-o", "huber.png"])``."""
    parser = argparse.ArgumentParser(
        prog=_PROG, description="Plot losses against their input, with their gradients."
    )
    add_arguments(parser)
    return cmd_plot(parser.parse_args(argv))
