"""Benchmark rows of the second set of losses (``python -m polyloss bench``, unless ``--tiny``).

Three tables, each a ratio polyloss / reference measured in one run:

- PyTorch's losses on torch CPU tensors, forward+backward at a large size,
  against ``torch.nn.functional`` (the native kernel);
- the segmentation losses at ``(8, 21, 256, 256)``, forward+backward, against
  segmentation_models_pytorch's ``DiceLoss``/``JaccardLoss``/``TverskyLoss``/
  ``LovaszLoss``, with the peak memory of one step (each measured in a fresh
  interpreter);
- CTC: ``pl.value_and_grad`` on NumPy (T=200, N=16, C=30, S=40) against
  torch's CPU ``ctc_loss`` forward+backward.
"""

from __future__ import annotations

import functools
import importlib.util
import json
import subprocess
import sys
from collections.abc import Callable
from dataclasses import asdict
from dataclasses import dataclass
from typing import Any

import numpy as np

import polyloss as pl
from polyloss._torchvision import import_torchvision

__all__ = ["SEGMENTATION_SHAPE", "SecondRow", "format_second_table", "run_second"]

#: ``(N, C, H, W)`` of the segmentation rows (issue 14's size)
SEGMENTATION_SHAPE = (8, 21, 256, 256)
#: ``(T, N, C, S)`` of the CTC row
CTC_SHAPE = (200, 16, 30, 40)
SEGMENTATION_LOSSES = ("dice_loss", "jaccard_loss", "tversky_loss", "lovasz_loss")


@dataclass
class SecondRow:
    table: str
    loss: str
    size: str
    reference: str
    polyloss_s: float
    reference_s: float
    polyloss_peak_mib: float | None = None
    reference_peak_mib: float | None = None

    @property
    def ratio(self) -> float:
        return self.polyloss_s / self.reference_s

    @property
    def memory_ratio(self) -> float | None:
        if self.polyloss_peak_mib is None or not self.reference_peak_mib:
            return None
        return self.polyloss_peak_mib / self.reference_peak_mib


def _torch_cases(rng: np.random.Generator, *, tiny: bool = False
                 ) -> dict[str, tuple[str, tuple[np.ndarray, ...], dict[str, Any]]]:
    """name -> (size label, arrays, options) at the large size (or the per-call overhead size, 32x10, with
    ``tiny``); the first array is differentiated."""
    rows, cols, pairs, dim, n_lists = (32, 10, 32, 10, 32) if tiny else (1024, 1024, 4096, 256, 1024)
    x, y = rng.normal(size=(rows, cols)), rng.normal(size=(rows, cols))
    signs = rng.choice([-1.0, 1.0], size=(rows, cols))
    classes = min(cols, 64)
    lists = np.full((n_lists, classes), -1)
    lists[:, :3] = np.stack([rng.permutation(classes)[:3] for _ in range(n_lists)])
    e1, e2, e3 = (rng.normal(size=(pairs, dim)) for _ in range(3))
    grid, flat, embedded = f"{rows}x{cols}", str(rows * cols), f"{pairs}x{dim}"
    return {
        "poisson_nll_loss": (grid, (x, rng.poisson(2.0, size=x.shape).astype(float)), {}),
        "gaussian_nll_loss": (grid, (x, y, rng.uniform(0.5, 2.0, size=x.shape)), {}),
        "cosine_embedding_loss": (embedded, (e1, e2, rng.choice([-1.0, 1.0], size=pairs)), {"margin": 0.1}),
        "margin_ranking_loss": (flat, (x.ravel(), y.ravel(), signs.ravel()), {"margin": 0.1}),
        "triplet_margin_loss": (embedded, (e1, e2, e3), {}),
        "hinge_embedding_loss": (grid, (np.abs(x), signs), {}),
        "soft_margin_loss": (grid, (x, signs), {}),
        "multilabel_soft_margin_loss": (grid, (x, (signs > 0).astype(float)), {}),
        "multilabel_margin_loss": (f"{n_lists}x{classes}", (x[:n_lists, :classes].copy(), lists), {}),
    }


def bench_torch_second(*, repeat: int, progress: Callable[[str], None], tiny: bool = False) -> list[SecondRow]:
    """PyTorch's losses of the second set: polyloss on torch CPU vs ``torch.nn.functional``, fwd+bwd at the
    large size; with ``tiny``, forward and fwd+bwd at 32x10 (the per-call overhead), one thread."""
    import torch
    import torch.nn.functional as F

    from polyloss._tools.bench import _interleaved

    rows = []
    threads = torch.get_num_threads()
    if tiny:
        torch.set_num_threads(1)
    modes = ("forward", "forward+backward") if tiny else ("forward+backward",)
    for name, (size, arrays, options) in _torch_cases(np.random.default_rng(0), tiny=tiny).items():
        native, ours = getattr(F, name), pl.get_loss(name)
        for mode in modes:
            progress(f"torch {name} {size} {mode}")
            backward = mode != "forward"
            first = torch.from_numpy(arrays[0]).requires_grad_(backward)
            rest = [torch.from_numpy(a) for a in arrays[1:]]

            def step(f: Callable[..., Any], first: Any = first, rest: Any = rest, options: Any = options,
                     backward: bool = backward) -> Callable[[], None]:
                def go() -> None:
                    out = f(first, *rest, **options)
                    if backward:
                        torch.autograd.grad(out, first)

                return go

            (t_ref, _), (t_pl, _) = _interleaved([step(native), step(ours)], repeat, 0.01 if tiny else 0.05)
            label = f"{size} {'fwd' if mode == 'forward' else 'fwd+bwd'}" if tiny else size
            rows.append(SecondRow("torch", name, label, "torch.nn.functional", t_pl, t_ref))
    torch.set_num_threads(threads)
    return rows


# -- segmentation: timing in this process, peak memory in fresh interpreters ---------------------------------


def smp_available() -> bool:
    return importlib.util.find_spec("segmentation_models_pytorch") is not None


def _segmentation_inputs(shape: tuple[int, ...] = SEGMENTATION_SHAPE) -> tuple[Any, Any]:
    import torch

    gen = torch.Generator().manual_seed(0)
    n, c, h, w = shape
    logits = torch.randn(n, c, h, w, generator=gen)
    target = torch.randint(0, c, (n, h, w), generator=gen)
    return logits, target


def _segmentation_step(impl: str, name: str) -> Callable[[Any, Any], Any]:
    """One forward+backward of ``name`` by ``impl`` (``"polyloss"`` or ``"smp"``) in multiclass mode."""
    import torch

    if impl == "polyloss":
        loss = pl.get_loss(name)

        def ours(logits: Any, target: Any) -> Any:
            return torch.autograd.grad(loss(logits, target, mode="multiclass"), logits)

        return ours
    import_torchvision()  # segmentation_models_pytorch imports torchvision
    from segmentation_models_pytorch import losses as smp_losses

    make = {"dice_loss": smp_losses.DiceLoss, "jaccard_loss": smp_losses.JaccardLoss,
            "tversky_loss": smp_losses.TverskyLoss, "lovasz_loss": smp_losses.LovaszLoss}[name]
    module = make(mode="multiclass")

    def theirs(logits: Any, target: Any) -> Any:
        return torch.autograd.grad(module(logits, target), logits)

    return theirs


def _peak_child(impl: str, name: str) -> None:  # runs in a fresh interpreter
    import torch

    from polyloss._tools.bench import _rss_bytes
    from polyloss._tools.bench import peak_rss_bytes
    from polyloss._tools.bench import reset_peak_rss

    torch.set_num_threads(1)
    logits, target = _segmentation_inputs()
    step = _segmentation_step(impl, name)
    logits.requires_grad_(True)
    before = _rss_bytes()  # resident now: the libraries and the inputs
    reset_peak_rss()  # the imports' own peak (smp's lies above polyloss's) is not the step's
    step(logits, target)
    print(json.dumps({"peak_mib": (peak_rss_bytes() - before) / 2**20}))


def peak_mib(impl: str, name: str) -> float | None:
    """Peak resident memory one step adds, in MiB (a fresh interpreter; Linux ``ru_maxrss``)."""
    if sys.platform != "linux":
        return None
    code = f"from polyloss._tools.bench_second import _peak_child; _peak_child({impl!r}, {name!r})"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        return None
    return float(json.loads(done.stdout.strip().splitlines()[-1])["peak_mib"])


def bench_segmentation(*, repeat: int, progress: Callable[[str], None], memory: bool = True,
                       shape: tuple[int, int, int, int] = SEGMENTATION_SHAPE) -> list[SecondRow]:
    """The four segmentation losses on torch CPU vs segmentation_models_pytorch, fwd+bwd, single-threaded."""
    if not smp_available():
        return []
    import torch

    from polyloss._tools.bench import _interleaved

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    logits, target = _segmentation_inputs(shape)
    logits.requires_grad_(True)
    size = "x".join(str(s) for s in shape)
    rows = []
    try:
        for name in SEGMENTATION_LOSSES:
            progress(f"torch {name} {size} forward+backward")
            ours, theirs = _segmentation_step("polyloss", name), _segmentation_step("smp", name)
            (t_ref, _), (t_pl, _) = _interleaved([functools.partial(theirs, logits, target),
                                                  functools.partial(ours, logits, target)], repeat, min_time=0.0)
            rows.append(SecondRow("segmentation", name, size, "segmentation_models_pytorch", t_pl, t_ref,
                                  peak_mib("polyloss", name) if memory else None,
                                  peak_mib("smp", name) if memory else None))
    finally:
        torch.set_num_threads(threads)
    return rows


def bench_ctc(*, repeat: int, progress: Callable[[str], None]) -> list[SecondRow]:
    """``pl.value_and_grad`` of CTC on NumPy vs torch's CPU ``ctc_loss`` forward+backward, both on one thread."""
    import torch
    import torch.nn.functional as F

    from polyloss._tools.bench import _interleaved

    t, n, c, s = CTC_SHAPE
    rng = np.random.default_rng(0)
    x = rng.normal(size=(t, n, c))
    log_probs = x - np.log(np.exp(x).sum(-1, keepdims=True))
    targets = rng.integers(1, c, size=(n, s))
    input_lengths = rng.integers(t // 2, t + 1, size=n)
    target_lengths = rng.integers(s // 2, s + 1, size=n)
    lp = torch.from_numpy(log_probs).requires_grad_(True)
    tt, il, tl = (torch.from_numpy(a) for a in (targets, input_lengths, target_lengths))
    progress(f"numpy ctc_loss value_and_grad {t}x{n}x{c}, S={s}")

    def theirs() -> None:
        torch.autograd.grad(F.ctc_loss(lp, tt, il, tl), lp)

    def ours() -> None:
        pl.value_and_grad("ctc_loss", log_probs, targets, input_lengths, target_lengths)

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # NumPy's recursion runs on one core
    try:
        (t_ref, _), (t_pl, _) = _interleaved([theirs, ours], repeat)
    finally:
        torch.set_num_threads(threads)
    return [SecondRow("ctc", "ctc_loss", f"T={t},N={n},C={c},S={s}", "torch ctc_loss (CPU, 1 thread)", t_pl, t_ref)]


def run_second(*, repeat: int, progress: Callable[[str], None], memory: bool = True) -> list[SecondRow]:
    """Every second-set row this machine can run (torch needed; smp for the segmentation rows)."""
    if importlib.util.find_spec("torch") is None:
        return []
    # at least 7 repeats: a row takes well under a second, and its ratio is read against a 1.10 target
    rows = bench_torch_second(repeat=max(repeat, 7), progress=progress)
    rows += bench_torch_second(repeat=max(repeat, 7), progress=progress, tiny=True)
    rows += bench_segmentation(repeat=max(3, repeat // 2), progress=progress, memory=memory)
    rows += bench_ctc(repeat=repeat, progress=progress)
    return rows


def format_second_table(rows: list[SecondRow]) -> str:
    """The rows as a text table: ratio polyloss / reference, and peak-memory ratio where measured."""
    if not rows:
        return ""
    lines = [f"{'loss':<30}{'size':>20}  {'reference':<30}{'ms':>10}{'ratio':>8}{'overhead us':>13}"
             f"{'peak MiB':>18}{'mem ratio':>10}"]
    for r in rows:
        peak = "" if r.polyloss_peak_mib is None else f"{r.polyloss_peak_mib:.0f} / {r.reference_peak_mib or 0:.0f}"
        mem = "" if r.memory_ratio is None else f"{r.memory_ratio:.2f}"
        overhead = 1e6 * (r.polyloss_s - r.reference_s)
        lines.append(f"{r.loss:<30}{r.size:>20}  {r.reference:<30}{1e3 * r.polyloss_s:>10.3f}{r.ratio:>8.2f}"
                     f"{overhead:>13.1f}{peak:>18}{mem:>10}")
    return "\n".join(lines)


def as_json(rows: list[SecondRow]) -> list[dict[str, Any]]:
    return [asdict(r) | {"ratio": r.ratio, "memory_ratio": r.memory_ratio} for r in rows]
