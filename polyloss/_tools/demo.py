"""Demo: train small models with closed-form gradients, no autograd.

``run_demo()`` fits a linear classifier to built-in synthetic data (Gaussian
blobs), or a tiny grid detector to built-in synthetic scenes with the
``"yolov1"`` recipe, or a tiny anchor-free detector with the ``"yolov8"``
recipe, by plain gradient descent: :func:`polyloss.value_and_grad`
(or the recipe's ``value_and_grad``) gives the gradient with respect to the
model's outputs and the chain rule is written out for the weights. The same
code runs on NumPy, PyTorch and array-api-strict; data and initial weights
come from one NumPy generator, so the same seed gives the same losses on
every backend.
"""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass
from dataclasses import field
from typing import Any
from typing import TextIO
from typing import cast

import numpy as np

__all__ = ["BACKENDS", "DemoResult", "LOSSES", "MODELS", "make_blobs", "make_scenes", "run_demo"]

#: losses taking one logit per class (integer class targets)
_CLASS_LOSSES = ("cross_entropy", "multi_margin_loss", "softmax_focal_loss")
#: losses taking one score per sample (binary targets in {0, 1})
_BINARY_LOSSES = ("hinge_loss", "squared_hinge_loss", "binary_cross_entropy_with_logits", "sigmoid_focal_loss")
LOSSES = _CLASS_LOSSES + _BINARY_LOSSES
#: the built-in choices; any backend registered in ``pl.backends()`` (plugins included) works too
BACKENDS = ("numpy", "torch", "array_api_strict")
#: other spellings of a backend name (``"strict"`` was the demo's name before 0.2)
_ALIASES = {"strict": "array_api_strict"}
MODELS = ("linear", "yolov1", "yolov8")
#: the grid detector: S x S cells, B boxes per cell, images of _IMAGE x _IMAGE pixels
_GRID, _BOXES_PER_CELL, _IMAGE = 2, 1, 8
#: the detector's input scale (features of norm 0.7 and a constant 0.7): stable up to lr ~ 1
_FEATURE_SCALE = 0.7
#: the anchor-free detector: images of _V8_IMAGE x _V8_IMAGE pixels, two levels, _V8_BINS bins per box side
_V8_IMAGE, _V8_STRIDES, _V8_BINS = 16, (4, 8), 6
#: the anchor-free detector's step is lr * _V8_STEP / N times the recipe's gradient (its loss is N times the
#: per-image loss, ultralytics' scale): converges at the default lr 0.5, stable up to lr ~ 1
_V8_STEP = 6.0
_BAR_WIDTH = 30


@dataclass
class DemoResult:
    """What :func:`run_demo` returns.

    Attributes:
        losses: the training loss before each step (``steps`` values).
        accuracy: training accuracy of the final model (for ``"yolov1"``: the
            fraction of images whose most confident predictor lies in the
            object's cell and predicts its class).
        plot: path of the PNG written, or None.
    """

    losses: list[float] = field(default_factory=list)
    accuracy: float = math.nan
    plot: str | None = None


def make_blobs(samples: int, classes: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``samples`` 2-D points in ``classes`` Gaussian blobs (float64 ``(N, 2)``, int64 labels ``(N,)``).

    Blob centres lie on a circle of radius 2.5; the features are standardised.
    """
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, classes, size=samples)
    angles = 2.0 * np.pi * np.arange(classes) / classes
    centres = 2.5 * np.stack([np.cos(angles), np.sin(angles)], axis=1)
    points = centres[labels] + rng.normal(size=(samples, 2))
    points = (points - points.mean(axis=0)) / points.std(axis=0)
    return points, labels.astype(np.int64)


def make_scenes(
    samples: int, classes: int, seed: int, *, size: int = _IMAGE
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``samples`` synthetic images holding one box each, for the grid detector.

    Each image has ``classes`` channels of ``size x size`` pixels; the box
    (width and height in [0.3, 0.6] of the image, inside it) is drawn as ones
    in the channel of its class. Returns ``(images (N, classes, size, size),
    boxes (N, 1, 4), labels (N, 1))``: float64 pixels, image-normalised xyxy
    float64 boxes and int64 labels in ``[0, classes)``.
    """
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, classes, size=samples)
    wh = rng.uniform(0.3, 0.6, size=(samples, 2))
    centre = rng.uniform(wh / 2, 1 - wh / 2)
    boxes = np.concatenate([centre - wh / 2, centre + wh / 2], axis=1)
    pixels = (np.arange(size) + 0.5) / size
    inside_x = (pixels >= boxes[:, 0:1]) & (pixels <= boxes[:, 2:3])
    inside_y = (pixels >= boxes[:, 1:2]) & (pixels <= boxes[:, 3:4])
    images = np.zeros((samples, classes, size, size))
    images[np.arange(samples), labels] = inside_y[:, :, None] & inside_x[:, None, :]
    return images, boxes[:, None, :], labels[:, None].astype(np.int64)


def _namespace(backend: str) -> tuple[Any, Any]:
    """(array namespace, function NumPy -> array) of a backend name (``pl.backends()`` or ``"array_api_strict"``)."""
    backend = _ALIASES.get(backend, backend)
    if backend == "numpy":
        import array_api_compat.numpy as numpy_namespace

        return numpy_namespace, np.asarray
    if backend == "torch":
        import array_api_compat.torch as torch_namespace
        import torch

        return torch_namespace, torch.as_tensor
    if backend == "array_api_strict":
        import array_api_strict

        return array_api_strict, array_api_strict.asarray
    from polyloss._api import backends
    from polyloss._api import get_backend

    if backend not in backends():
        known = sorted({*BACKENDS, *backends()})
        raise ValueError(f"backend must be one of {', '.join(map(repr, known))}, got {backend!r}")
    namespace = get_backend(backend).xp
    return namespace, namespace.asarray


def _progress(stream: TextIO | None, step: int, steps: int, loss: float) -> None:
    if stream is None or (step != steps and step % max(1, steps // _BAR_WIDTH)):
        return
    done = _BAR_WIDTH * step // max(steps, 1)
    stream.write(f"\r[{'#' * done}{'.' * (_BAR_WIDTH - done)}] {step:>{len(str(steps))}}/{steps} loss {loss:.4f}")
    if step == steps:
        stream.write("\n")
    stream.flush()


def _print_curve(out: TextIO, losses: list[float], rows: int = 10) -> None:
    if not losses:
        return
    top = max(losses)
    marks = sorted({round(i * (len(losses) - 1) / max(rows - 1, 1)) for i in range(rows)})
    out.write("step      loss\n")
    for i in marks:
        bar = "*" * max(1, round(40 * losses[i] / top)) if top > 0 else ""
        out.write(f"{i:>4}  {losses[i]:8.4f}  {bar}\n")


def _save_plot(path: str, losses: list[float], loss: str, backend: str, *, model: str = "linear classifier"
               ) -> str | None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        sys.stderr.write(f"matplotlib is not installed: no plot written to {path}\n")
        return None
    fig, ax = plt.subplots(figsize=(5, 3.2))
    ax.plot(range(len(losses)), losses)
    ax.set_xlabel("step")
    ax.set_ylabel(loss)
    ax.set_title(f"{model}, {backend}, closed-form gradients")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def run_demo(
    backend: str = "numpy",
    steps: int = 100,
    model: str = "linear",
    loss: str = "cross_entropy",
    seed: int = 0,
    plot: str | None = None,
    *,
    lr: float = 0.5,
    samples: int = 300,
    classes: int = 3,
    out: TextIO | None = None,
    progress: TextIO | None = None,
) -> DemoResult:
    """Train a small model by gradient descent with closed-form gradients (no autograd).

    Args:
        backend: ``"numpy"`` (default), ``"torch"`` (CPU, float64; autograd is
            not used), ``"array_api_strict"`` (``"strict"`` is an alias) or
            any other name in ``pl.backends()`` (a plugin's, e.g. ``"jax"``).
        steps: gradient-descent steps (default 100).
        model: ``"linear"`` (a linear classifier trained with
            :func:`polyloss.value_and_grad` of ``loss``), ``"yolov1"`` (a grid
            detector trained with the ``"yolov1"`` recipe's ``value_and_grad``)
            or ``"yolov8"`` (an anchor-free detector trained with the
            ``"yolov8"`` recipe's ``value_and_grad``); ``loss`` is not used by the detectors.
        loss: a class-axis loss (``"cross_entropy"``, ``"multi_margin_loss"``,
            ``"softmax_focal_loss"``: ``classes`` logits per point) or a binary
            one (``"hinge_loss"``, ``"squared_hinge_loss"``,
            ``"binary_cross_entropy_with_logits"``, ``"sigmoid_focal_loss"``:
            one score per point, two blobs).
        seed: seeds the data and the initial weights (same losses on every backend).
        plot: path of a PNG of the loss curve, written when matplotlib is installed.
        lr: learning rate (default 0.5).
        samples, classes: size of the synthetic data set (images and object
            classes for ``"yolov1"``).
        out: where the loss curve is printed (default ``sys.stdout``).
        progress: where the progress bar goes (default: ``sys.stderr`` when it
            is a terminal, else nowhere: a bar is never written into a pipe or file
            unless asked for).

    Returns:
        A :class:`DemoResult` with the loss before each step and the final accuracy.

    The linear model is ``logits = X @ W + b``; with ``G = d loss / d logits``
    from :func:`polyloss.value_and_grad`, ``dW = X^T G`` and ``db = sum(G, axis=0)``.

    The grid detector maps an image (its pixels scaled to norm 0.7, plus a
    constant input 0.7) linearly to the ``(N, S, S, B*5 + C)`` YOLOv1 output
    with ``S = 2``, ``B = 1``, ``C = classes``: ``pred = X @ W``,
    ``dW = X^T G`` with ``G`` the recipe's gradient with respect to ``pred``.

    The anchor-free detector maps the same features linearly to the
    ``(N, A, 4 * reg_max + C)`` outputs of a YOLOv8 head on 16 x 16 images
    (strides 4 and 8: ``A = 20`` anchors, ``reg_max = 6``): the distance
    logits and class logits the ``"yolov8"`` recipe takes, with the boxes in
    pixels. Its losses are reported per image (the recipe's total over ``N``).
    """
    if model not in MODELS:
        raise ValueError(f"model must be one of {', '.join(map(repr, MODELS))}, got {model!r}")
    if model == "linear" and loss not in LOSSES:
        raise ValueError(f"loss must be one of {', '.join(map(repr, LOSSES))}, got {loss!r}")
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps must be a positive int, got {steps!r}")
    if isinstance(lr, bool) or not isinstance(lr, (int, float)) or not (math.isfinite(lr) and lr > 0):
        raise ValueError(f"lr must be a finite number above 0, got {lr!r}")
    backend = _ALIASES.get(backend, backend)
    from polyloss.gradients import value_and_grad

    out = cast(TextIO, sys.stdout) if out is None else out  # typeshed: sys.stdout may be None (pythonw)
    if progress is None:
        progress = sys.stderr if _is_terminal(sys.stderr) else None
    xp, asarray = _namespace(backend)
    if model == "yolov1":
        return _run_yolov1(xp, asarray, backend, steps, seed, plot, lr=lr, samples=samples, classes=classes,
                           out=out, progress=progress)
    if model == "yolov8":
        return _run_yolov8(xp, asarray, backend, steps, seed, plot, lr=lr, samples=samples, classes=classes,
                           out=out, progress=progress)
    binary = loss in _BINARY_LOSSES
    points, labels = make_blobs(samples, 2 if binary else classes, seed)
    rng = np.random.default_rng(seed + 1)
    outputs = 1 if binary else classes
    X = asarray(points)
    W = asarray(0.01 * rng.normal(size=(2, outputs)))
    b = asarray(np.zeros(outputs))
    target = asarray(labels.astype(np.float64)) if binary else asarray(labels)
    result = DemoResult()
    for step in range(steps):
        logits = xp.matmul(X, W) + b
        scores = logits[:, 0] if binary else logits
        value, grad = value_and_grad(loss, scores, target)
        if binary:
            grad = xp.reshape(grad, (samples, 1))
        W = W - lr * xp.matmul(xp.matrix_transpose(X), grad)
        b = b - lr * xp.sum(grad, axis=0)
        result.losses.append(float(value))
        _progress(progress, step + 1, steps, result.losses[-1])
    logits = xp.matmul(X, W) + b
    if binary:
        predicted = np.asarray(_to_numpy(logits[:, 0])) > 0
    else:
        predicted = np.argmax(_to_numpy(logits), axis=1)
    result.accuracy = float(np.mean(predicted == labels))
    out.write(f"linear classifier, {loss}, {backend} backend, {steps} steps of gradient descent (lr={lr})\n")
    _print_curve(out, result.losses)
    out.write(f"final loss {result.losses[-1]:.4f}, training accuracy {result.accuracy:.3f}\n")
    if plot is not None:
        result.plot = _save_plot(plot, result.losses, loss, backend)
    return result


def _run_yolov1(xp: Any, asarray: Any, backend: str, steps: int, seed: int, plot: str | None, *, lr: float,
                samples: int, classes: int, out: TextIO, progress: TextIO | None) -> DemoResult:
    """The grid detector of :func:`run_demo` trained with the ``"yolov1"`` recipe's closed-form gradient."""
    from polyloss._api import get_recipe

    s, b = _GRID, _BOXES_PER_CELL
    channels = 5 * b + classes
    images, boxes, labels = make_scenes(samples, classes, seed)
    features = images.reshape(samples, -1)
    features = features / np.linalg.norm(features, axis=1, keepdims=True)
    features = _FEATURE_SCALE * np.concatenate([features, np.ones((samples, 1))], axis=1)
    rng = np.random.default_rng(seed + 1)
    weights = 0.01 * rng.normal(size=(features.shape[1], s * s * channels))
    # start every predictor at the cell centre with half the image as its size (the constant input's row)
    start = np.zeros((s, s, channels))
    for k in range(b):
        start[..., 5 * k: 5 * k + 4] = 0.5
    weights[-1] += start.reshape(-1) / _FEATURE_SCALE
    recipe = get_recipe("yolov1", grid=s, boxes_per_cell=b, num_classes=classes, validate=False)
    X, W = asarray(features), asarray(weights)
    gt_boxes, gt_labels = asarray(boxes), asarray(labels)
    result = DemoResult()
    for step in range(steps):
        pred = xp.reshape(xp.matmul(X, W), (samples, s, s, channels))
        value, grads = recipe.value_and_grad(pred, gt_boxes, gt_labels)
        W = W - lr * xp.matmul(xp.matrix_transpose(X), xp.reshape(grads["pred"], (samples, s * s * channels)))
        result.losses.append(float(value.total))
        _progress(progress, step + 1, steps, result.losses[-1])
    pred = _to_numpy(xp.reshape(xp.matmul(X, W), (samples, s, s, channels)))
    confidence = pred[..., 4: 5 * b: 5].reshape(samples, s * s * b)
    cell = np.argmax(confidence, axis=1) // b
    scores = pred[..., 5 * b:].reshape(samples, s * s, classes)[np.arange(samples), cell]
    centre = (boxes[:, 0, :2] + boxes[:, 0, 2:]) / 2
    col, row = np.minimum(np.floor(centre * s), s - 1).T
    result.accuracy = float(np.mean((cell == row * s + col) & (np.argmax(scores, axis=1) == labels[:, 0])))
    return _report(out, result, f"YOLOv1 grid detector (S={s}, B={b}, C={classes}, linear in the pixels), "
                   f"{backend} backend, {steps} steps of gradient descent (lr={lr})",
                   f"final loss {result.losses[-1]:.4f}, training accuracy {result.accuracy:.3f} "
                   "(most confident predictor in the object's cell, with its class)",
                   plot, "yolov1 loss", backend, "YOLOv1 grid detector")


def _report(out: TextIO, result: DemoResult, header: str, summary: str, plot: str | None, ylabel: str,
            backend: str, model: str) -> DemoResult:
    """Write a detector demo's header, loss curve and summary; save the plot when asked."""
    out.write(header + "\n")
    _print_curve(out, result.losses)
    out.write(summary + "\n")
    if plot is not None:
        result.plot = _save_plot(plot, result.losses, ylabel, backend, model=model)
    return result


def _run_yolov8(xp: Any, asarray: Any, backend: str, steps: int, seed: int, plot: str | None, *, lr: float,
                samples: int, classes: int, out: TextIO, progress: TextIO | None) -> DemoResult:
    """The anchor-free detector of :func:`run_demo` trained with the ``"yolov8"`` recipe's closed-form gradient."""
    from polyloss._api import get_recipe
    from polyloss.detection.yolov8 import make_anchor_points

    size, bins = _V8_IMAGE, _V8_BINS
    images, boxes, labels = make_scenes(samples, classes, seed, size=size)
    points, strides = make_anchor_points(size, size, _V8_STRIDES)
    anchors, channels = len(points), 4 * bins + classes
    features = images.reshape(samples, -1)
    features = features / np.linalg.norm(features, axis=1, keepdims=True)
    features = _FEATURE_SCALE * np.concatenate([features, np.ones((samples, 1))], axis=1)
    rng = np.random.default_rng(seed + 1)
    weights = 0.01 * rng.normal(size=(features.shape[1], anchors * channels))
    start = np.zeros((anchors, channels))
    start[:, 4 * bins:] = -2.0  # a low class prior, as detectors start with
    weights[-1] += start.reshape(-1) / _FEATURE_SCALE
    recipe = get_recipe("yolov8", num_classes=classes, reg_max=bins, validate=False)
    X, W = asarray(features), asarray(weights)
    fixed = [asarray(a) for a in (points, strides, boxes * size, labels)]
    result = DemoResult()
    for step in range(steps):
        pred = xp.reshape(xp.matmul(X, W), (samples, anchors, channels))
        value, grads = recipe.value_and_grad(pred[..., : 4 * bins], pred[..., 4 * bins:], *fixed)
        # the recipe's loss is the batch's times the batch size (ultralytics' scale): step per image
        g = xp.concat([grads["pred_distri"], grads["pred_scores"]], axis=-1) * (_V8_STEP / samples)
        W = W - lr * xp.matmul(xp.matrix_transpose(X), xp.reshape(g, (samples, anchors * channels)))
        result.losses.append(float(value.total) / samples)
        _progress(progress, step + 1, steps, result.losses[-1])
    pred = _to_numpy(xp.reshape(xp.matmul(X, W), (samples, anchors, channels)))
    decoded = _to_numpy(recipe.decode_boxes(asarray(pred[..., : 4 * bins]), fixed[0])) * strides[:, None]
    best = np.argmax(pred[..., 4 * bins:].max(axis=-1), axis=1)
    cls = np.argmax(pred[np.arange(samples), best, 4 * bins:], axis=1)
    box = decoded[np.arange(samples), best]
    gt = boxes[:, 0] * size
    iw = np.clip(np.minimum(box[:, 2], gt[:, 2]) - np.maximum(box[:, 0], gt[:, 0]), 0, None)
    ih = np.clip(np.minimum(box[:, 3], gt[:, 3]) - np.maximum(box[:, 1], gt[:, 1]), 0, None)
    union = np.prod(box[:, 2:] - box[:, :2], axis=1) + np.prod(gt[:, 2:] - gt[:, :2], axis=1) - iw * ih
    result.accuracy = float(np.mean((cls == labels[:, 0]) & (iw * ih / union > 0.5)))
    return _report(out, result, f"YOLOv8 anchor-free detector ({size}x{size} images, strides {_V8_STRIDES}, "
                   f"reg_max={bins}, C={classes}, linear in the pixels), {backend} backend, {steps} steps of "
                   f"gradient descent (lr={lr})",
                   f"final loss per image {result.losses[-1]:.4f}, training accuracy {result.accuracy:.3f} "
                   "(top-scoring anchor: the object's class and IoU > 0.5)",
                   plot, "yolov8 loss per image", backend, "YOLOv8 anchor-free detector")


def _to_numpy(a: Any) -> np.ndarray:
    if hasattr(a, "detach"):
        return np.asarray(a.detach().cpu().numpy())
    if type(a).__module__.split(".")[0] == "cupy":
        return np.asarray(a.get())
    return np.asarray(a)


def _is_terminal(stream: Any) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # no isatty, or a closed stream
        return False
