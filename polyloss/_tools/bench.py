"""``python -m polyloss bench``: speed ratios against each framework's own code.

Every figure is a ratio polyloss / reference measured in the same run (median
of repeats, ``timeit``), so it means the same on any machine. Absolute times
are printed only for GPU runs. References: ``torch.nn.functional`` on torch;
a hand-written idiomatic NumPy version on NumPy; on torch also the generic
array-API path (fast paths off) against native.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import timeit
from collections.abc import Callable
from dataclasses import asdict
from dataclasses import dataclass
from typing import Any

import numpy as np

import polyloss as pl
from polyloss._tools.bench_second import SecondRow
from polyloss._tools.bench_second import as_json
from polyloss._tools.bench_second import format_second_table
from polyloss._tools.bench_second import run_second
from polyloss._torchvision import import_torchvision


@dataclass
class Row:
    loss: str
    backend: str
    size: str
    mode: str
    threads: str
    polyloss_s: float
    reference_s: float
    generic_s: float | None
    #: the largest spread of the repeats of the timings the ratio divides (see :func:`_median_and_spread`)
    spread: float = 0.0

    @property
    def ratio(self) -> float:
        return self.polyloss_s / self.reference_s

    @property
    def generic_ratio(self) -> float | None:
        return None if self.generic_s is None else self.generic_s / self.reference_s


def _logsumexp(x: np.ndarray) -> np.ndarray:
    m = x.max(-1, keepdims=True)
    return np.asarray(np.log(np.exp(x - m).sum(-1)) + m[..., 0])


def _softplus(x: np.ndarray) -> np.ndarray:
    return np.asarray(np.maximum(x, 0) + np.log1p(np.exp(-np.abs(x))))


def _np_multi_margin(x: np.ndarray, t: np.ndarray, margin: float = 1.0) -> Any:
    rows = np.arange(x.shape[0])
    h = x - x[rows, t][:, None]
    h += margin
    h[rows, t] = 0.0
    return np.maximum(h, 0.0, out=h).sum() / x.size


def _ref_sigmoid_focal_value(x: np.ndarray, y: np.ndarray, alpha: float = 0.25, gamma: float = 2.0) -> Any:
    """torchvision's ``sigmoid_focal_loss`` ("mean") in NumPy."""
    p = 1 / (1 + np.exp(-x))
    ce = np.logaddexp(0, -x) + (1 - y) * x
    p_t = p * y + (1 - p) * (1 - y)
    return np.mean((alpha * y + (1 - alpha) * (1 - y)) * ce * (1 - p_t) ** gamma)


def _np_softmax_focal(x: np.ndarray, t: np.ndarray, gamma: float = 2.0) -> Any:
    logp_y = np.take_along_axis(x, t[:, None], -1)[:, 0] - _logsumexp(x)
    return np.mean(-((1 - np.exp(logp_y)) ** gamma) * logp_y)


def _np_reference(name: str) -> Callable[[np.ndarray, np.ndarray], Any] | None:
    """Idiomatic NumPy for the default options of each loss."""
    table: dict[str, Callable[[np.ndarray, np.ndarray], Any]] = {
        "mse_loss": lambda x, y: np.mean((x - y) ** 2),
        "l1_loss": lambda x, y: np.mean(np.abs(x - y)),
        "smooth_l1_loss": lambda x, y: np.mean(
            np.where(np.abs(x - y) < 1, 0.5 * (x - y) ** 2, np.abs(x - y) - 0.5)
        ),
        "huber_loss": lambda x, y: np.mean(np.where(np.abs(x - y) < 1, 0.5 * (x - y) ** 2, np.abs(x - y) - 0.5)),
        "binary_cross_entropy": lambda x, y: -np.mean(
            y * np.maximum(np.log(x), -100) + (1 - y) * np.maximum(np.log1p(-x), -100)
        ),
        "binary_cross_entropy_with_logits": lambda x, y: np.mean((1 - y) * x + _softplus(-x)),
        "cross_entropy": lambda x, t: np.mean(
            _logsumexp(x) - np.take_along_axis(x, t[:, None], -1)[:, 0]
        ),
        "nll_loss": lambda x, t: -np.mean(np.take_along_axis(x, t[:, None], -1)),
        "kl_div": lambda x, y: np.sum(np.where(y > 0, y * np.log(np.where(y > 0, y, 1)), 0) - y * x) / x.shape[0],
        "hinge_loss": lambda x, y: np.mean(np.maximum(0, 1 - y * x)),
        "multi_margin_loss": _np_multi_margin,
        "sigmoid_focal_loss": lambda x, y: _ref_sigmoid_focal_value(x, y),
        "softmax_focal_loss": _np_softmax_focal,
        "squared_hinge_loss": lambda x, y: np.mean(np.maximum(0, 1 - y * x) ** 2),
    }
    return table.get(name)


def _torch_reference(name: str) -> Callable[..., Any] | None:
    import torch
    import torch.nn.functional as F

    def hinge(x: Any, y: Any) -> Any:
        return torch.clamp(1 - y * x, min=0).mean()

    def sigmoid_focal(x: Any, y: Any) -> Any:  # torchvision.ops.sigmoid_focal_loss, reduction "mean"
        p = torch.sigmoid(x)
        ce = F.binary_cross_entropy_with_logits(x, y, reduction="none")
        p_t = p * y + (1 - p) * (1 - y)
        loss = ce * (1 - p_t) ** 2
        return ((0.25 * y + 0.75 * (1 - y)) * loss).mean()

    def inter_union(b1: Any, b2: Any) -> tuple[Any, Any]:
        # torchvision.ops' _loss_inter_union: the intersection filled in through a boolean mask
        x1, y1, x2, y2 = b1.unbind(dim=-1)
        x1g, y1g, x2g, y2g = b2.unbind(dim=-1)
        xi1, yi1 = torch.max(x1, x1g), torch.max(y1, y1g)
        xi2, yi2 = torch.min(x2, x2g), torch.min(y2, y2g)
        inter = torch.zeros_like(x1)
        hit = (yi2 > yi1) & (xi2 > xi1)
        inter[hit] = (xi2[hit] - xi1[hit]) * (yi2[hit] - yi1[hit])
        return inter, (x2 - x1) * (y2 - y1) + (x2g - x1g) * (y2g - y1g) - inter

    def enclosing(b1: Any, b2: Any) -> tuple[Any, Any]:
        x1, y1, x2, y2 = b1.unbind(dim=-1)
        x1g, y1g, x2g, y2g = b2.unbind(dim=-1)
        return torch.max(x2, x2g) - torch.min(x1, x1g), torch.max(y2, y2g) - torch.min(y1, y1g)

    def giou(b1: Any, b2: Any, eps: float = 1e-7) -> Any:  # torchvision.ops.generalized_box_iou_loss, "mean"
        inter, union = inter_union(b1, b2)
        iou = inter / (union + eps)
        ew, eh = enclosing(b1, b2)
        area_c = ew * eh
        return (1 - (iou - (area_c - union) / (area_c + eps))).mean()

    def diou_and_iou(b1: Any, b2: Any, eps: float = 1e-7) -> tuple[Any, Any]:
        inter, union = inter_union(b1, b2)
        iou = inter / (union + eps)
        ew, eh = enclosing(b1, b2)
        diag = ew**2 + eh**2 + eps
        x1, y1, x2, y2 = b1.unbind(dim=-1)
        x1g, y1g, x2g, y2g = b2.unbind(dim=-1)
        rho = ((x2 + x1) / 2 - (x1g + x2g) / 2) ** 2 + ((y2 + y1) / 2 - (y1g + y2g) / 2) ** 2
        return 1 - iou + rho / diag, iou

    def diou(b1: Any, b2: Any) -> Any:  # torchvision.ops.distance_box_iou_loss, "mean"
        return diou_and_iou(b1, b2)[0].mean()

    def ciou(b1: Any, b2: Any, eps: float = 1e-7) -> Any:  # torchvision.ops.complete_box_iou_loss, "mean"
        loss, iou = diou_and_iou(b1, b2, eps)
        x1, y1, x2, y2 = b1.unbind(dim=-1)
        x1g, y1g, x2g, y2g = b2.unbind(dim=-1)
        v = (4 / torch.pi**2) * torch.pow(torch.atan((x2g - x1g) / (y2g - y1g)) - torch.atan((x2 - x1) / (y2 - y1)), 2)
        with torch.no_grad():
            alpha = v / (1 - iou + v + eps)
        return (loss + alpha * v).mean()

    table: dict[str, Callable[..., Any]] = {
        "giou_loss": giou,
        "diou_loss": diou,
        "ciou_loss": ciou,
        "mse_loss": F.mse_loss,
        "l1_loss": F.l1_loss,
        "smooth_l1_loss": F.smooth_l1_loss,
        "huber_loss": F.huber_loss,
        "binary_cross_entropy": F.binary_cross_entropy,
        "binary_cross_entropy_with_logits": F.binary_cross_entropy_with_logits,
        "cross_entropy": F.cross_entropy,
        "nll_loss": F.nll_loss,
        "kl_div": lambda x, y: F.kl_div(x, y, reduction="batchmean"),
        "multi_margin_loss": F.multi_margin_loss,
        "hinge_loss": hinge,
        "squared_hinge_loss": lambda x, y: torch.clamp(1 - y * x, min=0).pow(2).mean(),
        "sigmoid_focal_loss": sigmoid_focal,
    }
    torchvision = import_torchvision()
    if torchvision is not None:  # the real thing where it is installed
        ops = torchvision.ops
        table |= {
            "sigmoid_focal_loss": lambda x, y: ops.sigmoid_focal_loss(x, y, reduction="mean"),
            "giou_loss": lambda b1, b2: ops.generalized_box_iou_loss(b1, b2, reduction="mean"),
            "diou_loss": lambda b1, b2: ops.distance_box_iou_loss(b1, b2, reduction="mean"),
            "ciou_loss": lambda b1, b2: ops.complete_box_iou_loss(b1, b2, reduction="mean"),
        }
    return table.get(name)


BOX_LOSSES = ("giou_loss", "diou_loss", "ciou_loss")


def _data(name: str, rows: int, cols: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    if name.endswith("iou_loss"):  # rows * cols / 4 pairs of overlapping and disjoint xyxy boxes
        n = max(1, rows * cols // 4)
        return _random_boxes(rng, n), _random_boxes(rng, n)
    x = rng.standard_normal((rows, cols), dtype=np.float32)
    if name in ("cross_entropy", "nll_loss", "multi_margin_loss", "softmax_focal_loss"):
        if name == "nll_loss":
            x = x - _logsumexp(x)[:, None]
        return x, rng.integers(0, cols, rows)
    if name == "binary_cross_entropy":
        return 1 / (1 + np.exp(-x)), rng.integers(0, 2, (rows, cols)).astype(np.float32)
    if name in ("binary_cross_entropy_with_logits", "sigmoid_focal_loss"):
        return x, rng.integers(0, 2, (rows, cols)).astype(np.float32)
    if name in ("hinge_loss", "squared_hinge_loss"):
        return x, rng.choice(np.array([-1.0, 1.0], dtype=np.float32), (rows, cols))
    if name == "kl_div":
        y = np.exp(x - _logsumexp(x)[:, None])
        return x - _logsumexp(x)[:, None], y
    return x, rng.standard_normal((rows, cols), dtype=np.float32)


#: the per-call overhead size (rows x classes)
TINY = (32, 10)

#: losses with a PyTorch reference only (torch.nn.functional or torchvision's formula)
TORCH_ONLY = ("multi_margin_loss", "sigmoid_focal_loss", *BOX_LOSSES)


#: a ratio is flagged unreliable where the spread of its repeats (see :func:`_median_and_spread`) exceeds this
SPREAD_WARN = 0.10


def _loop_size(fn: Callable[[], Any], min_time: float) -> int:
    """Calls per timed loop: the first power of 4 whose loop takes ``min_time`` (one call at least)."""
    number = 1
    while timeit.timeit(fn, number=number) < min_time and number < 1 << 16:
        number *= 4
    return number


def _median_spread(times: list[float]) -> tuple[float, float]:
    """The median of per-call times and their spread: the interquartile range over the median (the range
    over the median for fewer than 4 repeats; 0 for one)."""
    median = statistics.median(times)
    if len(times) >= 4:
        q1, _, q3 = statistics.quantiles(times, n=4)
        return median, (q3 - q1) / median
    return median, (max(times) - min(times)) / median


def _median_and_spread(fn: Callable[[], Any], repeat: int, min_time: float = 0.05) -> tuple[float, float]:
    """Median time of one call over ``repeat`` timed loops, and their spread (:func:`_median_spread`)."""
    number = _loop_size(fn, min_time)
    return _median_spread([t / number for t in timeit.repeat(fn, number=number, repeat=repeat)])


def _median_time(fn: Callable[[], Any], repeat: int, min_time: float = 0.05) -> float:
    return _median_and_spread(fn, repeat, min_time)[0]


def _interleaved(fns: list[Callable[[], Any]], repeat: int, min_time: float = 0.05) -> list[tuple[float, float]]:
    """:func:`_median_and_spread` of each of ``fns``, their timed loops taken in turn (``a b c a b c ...``)
    after one warm-up loop each, so that a machine that slows down or speeds up during the run moves
    every timing of a ratio alike."""
    numbers = [_loop_size(fn, min_time) for fn in fns]
    for fn, number in zip(fns, numbers, strict=True):
        timeit.timeit(fn, number=number)
    times: list[list[float]] = [[] for _ in fns]
    for _ in range(repeat):
        for fn, number, out in zip(fns, numbers, times, strict=True):
            out.append(timeit.timeit(fn, number=number) / number)
    return [_median_spread(out) for out in times]


def _polyloss_kwargs(name: str) -> dict[str, Any]:
    return {"reduction": "batchmean"} if name == "kl_div" else {}


def _synchronized(fn: Callable[[], Any], sync: Callable[[], Any] | None) -> Callable[[], Any]:
    """``fn`` followed by ``sync()`` (a GPU stream synchronisation), so that the time includes the kernels."""
    if sync is None:
        return fn

    def call() -> Any:
        out = fn()
        sync()
        return out

    return call


def bench_torch(names: list[str], sizes: dict[str, tuple[int, int]], *, repeat: int, threads: list[int | None],
                progress: Callable[[str], None], device: str = "cpu", min_time: float = 0.05) -> list[Row]:
    """Every loss on torch tensors on ``device`` against its PyTorch reference (``"torch-cuda"`` rows on a GPU)."""
    import torch

    label_backend = "torch" if device == "cpu" else f"torch-{device}"
    sync = torch.cuda.synchronize if device.startswith("cuda") else None

    rows: list[Row] = []
    default_threads = torch.get_num_threads()
    rng = np.random.default_rng(0)
    for n_threads in threads:
        torch.set_num_threads(n_threads or default_threads)
        label = "1" if n_threads == 1 else f"default({default_threads})"
        for size, (r, c) in sizes.items():
            for name in names:
                found = _torch_reference(name)
                if found is None:
                    continue
                ref: Callable[..., Any] = found  # declared so, for the closures below
                x_np, y_np = _data(name, r, c, rng)
                x = torch.from_numpy(x_np).to(device)
                y = torch.from_numpy(y_np).to(device)
                loss = pl.get_loss(name)
                kw = _polyloss_kwargs(name)
                for mode in ("forward", "forward+backward"):
                    progress(f"{label_backend} {name} {size} {mode} threads={label}")
                    xg = x.clone().requires_grad_(mode != "forward")

                    def run(f: Callable[[], Any], backward: bool = mode != "forward",
                            xg: Any = xg) -> Callable[[], Any]:
                        def go() -> None:
                            out = f()
                            if backward:
                                torch.autograd.grad(out, xg)
                        return _synchronized(go, sync)

                    (t_ref, s_ref), (t_pl, s_pl) = _interleaved(
                        [run(lambda: ref(xg, y)), run(lambda: loss(xg, y, **kw))], repeat, min_time)
                    with pl.fast_paths(False):
                        t_gen = _median_time(run(lambda: loss(xg, y, **kw)), repeat, min_time)
                    rows.append(Row(name, label_backend, size, mode, label, t_pl, t_ref, t_gen, max(s_ref, s_pl)))
    torch.set_num_threads(default_threads)
    return rows


def bench_numpy(names: list[str], sizes: dict[str, tuple[int, int]], *, repeat: int,
                progress: Callable[[str], None], backend: str = "numpy", min_time: float = 0.05) -> list[Row]:
    """Every loss on NumPy arrays (or on CuPy arrays, ``backend="cupy"``) against the hand-written NumPy version.

    On CuPy the same NumPy code runs on the device arrays through NumPy's
    ``__array_function__`` dispatch, and each timing ends with a device synchronisation.
    """
    rows: list[Row] = []
    rng = np.random.default_rng(1)
    to_device: Callable[[Any], Any] = lambda a: a  # noqa: E731
    sync = None
    if backend == "cupy":
        import cupy  # pyright: ignore[reportMissingImports] (only where a GPU is)

        to_device, sync = cupy.asarray, cupy.cuda.Device().synchronize
    for size, (r, c) in sizes.items():
        for name in names:
            found_np = _np_reference(name)
            if found_np is None:
                continue
            ref_np: Callable[[Any, Any], Any] = found_np  # declared so, for the closures below
            x, y = (to_device(a) for a in _data(name, r, c, rng))
            loss = pl.get_loss(name)
            kw = _polyloss_kwargs(name)
            progress(f"{backend} {name} {size}")
            t_ref, s_ref = _median_and_spread(_synchronized(lambda: ref_np(x, y), sync), repeat, min_time)
            t_pl, s_pl = _median_and_spread(_synchronized(lambda: loss(x, y, **kw), sync), repeat, min_time)
            rows.append(Row(name, backend, size, "forward", "default", t_pl, t_ref, None, max(s_ref, s_pl)))
    return rows


def gpu_backends() -> list[str]:
    """``"torch-cuda"`` and ``"cupy"`` where a GPU and the library are there."""
    found = []
    try:
        import torch

        if torch.cuda.is_available():
            found.append("torch-cuda")
    except ImportError:
        pass
    try:
        import cupy  # pyright: ignore[reportMissingImports] (only where a GPU is)

        if cupy.cuda.runtime.getDeviceCount() > 0:
            found.append("cupy")
    except Exception:  # no cupy, or no driver: no GPU rows
        pass
    return found


def import_time(repeat: int = 5) -> dict[str, float]:
    """Median wall time of ``import numpy`` and ``import polyloss`` in fresh interpreters.

    As a user's imports run: from cached bytecode. The interpreters may write it
    (``PYTHONDONTWRITEBYTECODE`` unset for them) and one untimed import of each
    comes first, else every module would be compiled from source on every run.
    """
    import os

    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}

    def run(code: str) -> float:
        out = subprocess.run(
            [sys.executable, "-c", f"import time; t = time.perf_counter(); {code}; print(time.perf_counter() - t)"],
            capture_output=True, text=True, check=True, env=env,
        )
        return float(out.stdout)

    def median(code: str) -> float:
        run(code)  # writes the bytecode
        return statistics.median(run(code) for _ in range(repeat))

    numpy_s = median("import numpy")
    polyloss_s = median("import numpy, polyloss")
    return {"numpy_s": numpy_s, "polyloss_s": polyloss_s, "polyloss_over_numpy_ms": 1e3 * (polyloss_s - numpy_s)}


def spread_note(spreads: list[float]) -> str:
    """The warning line under a table whose flagged rows (``*``) had repeats too spread for a reliable ratio."""
    flagged = sum(s > SPREAD_WARN for s in spreads)
    if not flagged:
        return ""
    return (f"* {flagged} of {len(spreads)} rows: the repeats spread by more than {SPREAD_WARN:.0%} (interquartile "
            "range over the median): the ratio is unreliable (a busy machine?); rerun with more --repeat")


def _flag(spread: float) -> str:
    return " *" if spread > SPREAD_WARN else ""


def format_table(rows: list[Row]) -> str:
    size_width = max([len("size"), *(len(row.size) for row in rows)]) + 1
    lines = [f"{'loss':<34}{'backend':<8}{'size':<{size_width}}{'mode':<18}{'threads':<12}{'ratio':>8}{'generic':>9}"
             f"{'overhead us':>13}"]
    for row in rows:
        generic = "" if row.generic_ratio is None else f"{row.generic_ratio:.2f}"
        overhead = 1e6 * (row.polyloss_s - row.reference_s)
        lines.append(f"{row.loss:<34}{row.backend:<8}{row.size:<{size_width}}{row.mode:<18}{row.threads:<12}"
                     f"{row.ratio:>8.2f}{generic:>9}{overhead:>13.2f}{_flag(row.spread)}")
    note = spread_note([row.spread for row in rows])
    return "\n".join(lines + ([note] if note else []))


def keep_freed_memory() -> bool:
    """Let glibc keep freed memory in the heap for this process (mmap threshold 64 MiB, trim threshold 128 MiB).

    With glibc's defaults a loop of array ops on megabyte-sized temporaries
    can return pages to the system after every call and fault them in again
    on the next (NumPy's SSD recipe: 50 ms instead of 35 ms in a fresh
    process). Every implementation timed runs under the same setting. False
    where this is not glibc (nothing changed).
    """
    import ctypes
    import ctypes.util

    name = ctypes.util.find_library("c")
    if sys.platform != "linux" or not name:
        return False
    try:
        libc = ctypes.CDLL(name)
        m_trim_threshold, m_mmap_threshold = -1, -3
        return bool(libc.mallopt(m_mmap_threshold, 64 << 20)) and bool(libc.mallopt(m_trim_threshold, 128 << 20))
    except (OSError, AttributeError):
        return False


def run(*, full: bool = False, tiny_only: bool = False, backends: list[str] | None = None,
        names: list[str] | None = None, repeat: int = 7, json_path: str | None = None,
        progress: Callable[[str], None] | None = None, system_malloc: bool = False,
        compiled: bool | None = None) -> dict[str, Any]:
    """Run the benchmark; returns the results dict (also written as JSON to ``json_path``).

    ``tiny_only`` times the per-call overhead size only (no large size, recipes
    or memory); ``full`` adds cross-entropy at 65536 x 1000; unless
    ``system_malloc``, :func:`keep_freed_memory` first. ``compiled``: the
    recipes under ``torch.compile`` too (default: with ``full``; a cold compile
    per recipe takes minutes on a small CPU).
    """
    allocator = "glibc defaults" if system_malloc or not keep_freed_memory() else "glibc, freed memory kept"
    names = names or [n for n in pl.losses() if _np_reference(n) or n in TORCH_ONLY]
    sizes: dict[str, tuple[int, int]] = {"tiny": TINY} if tiny_only else {"tiny": TINY, "large": (1024, 1024)}
    report = progress or (lambda message: None)
    backends = backends or ["numpy", "torch"]
    if "torch" in backends:
        try:
            import torch  # noqa: F401
        except ImportError:
            report("torch is not installed: skipped")
            backends = [b for b in backends if b != "torch"]
    rows: list[Row] = []
    recipe_rows: list[RecipeRow] = []
    second_rows: list[SecondRow] = []
    scaling_rows: list[ScalingRow] = []
    compile_rows: list[CompileRow] = []
    mem: dict[str, Any] | None = None
    # --tiny is the quick per-call overhead check: single-threaded torch, shorter timed loops
    min_time = 0.005 if tiny_only else 0.05
    threads: list[int | None] = [1] if tiny_only else [1, None]
    grad_rows: list[GradRow] = []
    if "numpy" in backends:
        rows += bench_numpy(names, sizes, repeat=repeat, progress=report, min_time=min_time)
        if not tiny_only:
            grad_rows = bench_value_and_grad(repeat=max(3, repeat // 2), progress=report)
    if "torch" in backends:
        rows += bench_torch(names, sizes, repeat=repeat, threads=threads, progress=report, min_time=min_time)
        if full:
            rows += bench_torch(["cross_entropy"], {"65536x1000": CE_LARGE}, repeat=3, threads=[None],
                                progress=report)
    gpus = gpu_backends()
    if "torch-cuda" in gpus and "torch" in backends:
        rows += bench_torch(names, sizes, repeat=repeat, threads=[None], progress=report, device="cuda")
        if full:
            rows += bench_torch(["cross_entropy"], {"65536x1000": CE_LARGE}, repeat=3, threads=[None],
                                progress=report, device="cuda")
    if "cupy" in gpus and "numpy" in backends:
        rows += bench_numpy(names, sizes, repeat=repeat, progress=report, backend="cupy")
    if not tiny_only:
        devices = ("cpu", "cuda") if "torch-cuda" in gpus else ("cpu",)
        recipe_rows = bench_recipes(backends, repeat=max(3, repeat // 2), threads=[1, None], progress=report,
                                    devices=devices)
        if "torch" in backends:
            scaling_rows = bench_recipe_scaling(repeat=max(3, repeat // 2), progress=report)
            if full if compiled is None else compiled:
                compile_rows = bench_compiled(repeat=max(3, repeat // 2), progress=report)
        report("peak memory of the large cross-entropy")
        mem = memory(backends)
        if "torch" in backends:
            second_rows = run_second(repeat=max(3, repeat // 2), progress=report)
    result: dict[str, Any] = {
        "rows": [asdict(r) | {"ratio": r.ratio, "generic_ratio": r.generic_ratio} for r in rows],
        "value_and_grad": [asdict(r) | {"ratio": r.ratio, "memory_ratio": r.memory_ratio} for r in grad_rows],
        "value_and_grad_table": format_grad_table(grad_rows) if grad_rows else "",
        "recipes": [asdict(r) | {"vs_torchvision": r.vs_torchvision} for r in recipe_rows],
        "torchvision": torchvision_available(),
        "memory": mem,
        "import": import_time(repeat=3 if tiny_only else 7),
        "machine": machine() | {"allocator": allocator},
        "table": format_table(rows),
        "recipe_scaling": [asdict(r) | {"ratio": r.ratio} for r in scaling_rows],
        "recipe_compiled": [asdict(r) | {"ratio": r.ratio} for r in compile_rows],
        "recipe_table": _recipe_tables(recipe_rows, scaling_rows, compile_rows),
        "memory_table": format_memory(mem) if mem else "",
        "second_set": as_json(second_rows),
        "second_table": format_second_table(second_rows),
    }
    if json_path:
        with open(json_path, "w") as fh:
            json.dump(result, fh, indent=1)
    return result


def _recipe_tables(recipe_rows: list[RecipeRow], scaling_rows: list[ScalingRow],
                   compile_rows: list[CompileRow]) -> str:
    """The recipe tables as one text: per backend, across batch sizes (one thread), compiled."""
    parts = [format_recipe_table(recipe_rows)] if recipe_rows else []
    if scaling_rows:
        parts.append("across batch sizes, torch CPU, one thread (thread CPU time, median); ratio = polyloss / "
                     "reference; peak mem = polyloss / reference, forward + backward\n"
                     + format_scaling_table(scaling_rows))
    if compile_rows:
        parts.append("torch.compile(fullgraph=True), forward + backward, one thread; recompiles = graphs compiled "
                     "after the first call\n" + format_compile_table(compile_rows))
    return "\n\n".join(parts)


def machine() -> dict[str, Any]:
    """Where the numbers come from: CPU count, library versions, torch threads."""
    import os
    import platform

    info: dict[str, Any] = {"cpus": os.cpu_count(), "python": platform.python_version(), "numpy": np.__version__,
                            "polyloss": pl.__version__, "platform": platform.platform()}
    if "torch" in sys.modules:
        torch = sys.modules["torch"]
        info |= {"torch": torch.__version__, "torch_threads": torch.get_num_threads(),
                 "cuda": bool(torch.cuda.is_available())}
    if "torchvision" in sys.modules:
        info["torchvision"] = sys.modules["torchvision"].__version__
    return info


# -- detector recipes -----------------------------------------------------------------------------------------------

SSD_SHAPE = {"batch": 32, "priors": 8732, "classes": 21, "max_boxes": 10}
RPN_SHAPE = {"batch": 8, "anchors": 20000, "max_boxes": 10}


@dataclass
class RecipeRow:
    recipe: str
    backend: str
    mode: str
    threads: str
    polyloss_s: float
    generic_s: float | None
    torchvision_s: float | None
    #: the largest spread of the repeats of polyloss's and torchvision's timings (see :func:`_median_and_spread`)
    spread: float = 0.0
    reference: str = "torchvision"  # the library timed in torchvision_s (transformers for "detr")

    @property
    def vs_torchvision(self) -> float | None:
        return None if self.torchvision_s is None else self.polyloss_s / self.torchvision_s


def _random_boxes(rng: np.random.Generator, n: int, scale: float = 1.0) -> np.ndarray:
    """``n`` xyxy boxes inside ``[0, scale]^2`` with sides between 5% and 60% of it."""
    centre = rng.uniform(0.1, 0.9, (n, 2))
    size = rng.uniform(0.05, 0.6, (n, 2))
    lo = np.clip(centre - size / 2, 0.0, 1.0)
    hi = np.clip(centre + size / 2, 0.0, 1.0)
    return (np.concatenate([lo, np.maximum(hi, lo + 0.01)], axis=1) * scale).astype(np.float32)


def _ground_truth(rng: np.random.Generator, batch: int, max_boxes: int, num_classes: int,
                  scale: float) -> tuple[np.ndarray, np.ndarray, list[int]]:
    """Padded ``(N, G, 4)`` boxes and ``(N, G)`` labels (-1 padding); 1 to ``max_boxes`` real boxes per image."""
    counts = [int(c) for c in rng.integers(1, max_boxes + 1, batch)]
    boxes = np.zeros((batch, max_boxes, 4), np.float32)
    labels = np.full((batch, max_boxes), -1, np.int64)
    for i, c in enumerate(counts):
        boxes[i, :c] = _random_boxes(rng, c, scale)
        labels[i, :c] = rng.integers(1, num_classes, c)
    return boxes, labels, counts


def ssd_inputs(seed: int = 0, batch: int | None = None) -> dict[str, Any]:
    """SSD300-sized NumPy inputs: 8732 priors, 21 classes, batch 32 (or ``batch``), up to 10 boxes per image."""
    rng = np.random.default_rng(seed)
    s = SSD_SHAPE
    n = s["batch"] if batch is None else batch
    boxes, labels, counts = _ground_truth(rng, n, s["max_boxes"], s["classes"], 300.0)
    return {
        "priors": _random_boxes(rng, s["priors"], 300.0),
        "gt_boxes": boxes, "gt_labels": labels, "counts": counts,
        "class_logits": rng.standard_normal((n, s["priors"], s["classes"]), dtype=np.float32),
        "box_deltas": 0.5 * rng.standard_normal((n, s["priors"], 4), dtype=np.float32),
    }


def rpn_inputs(seed: int = 0) -> dict[str, Any]:
    """Faster R-CNN RPN inputs: batch 8, 20000 anchors, up to 10 boxes per image."""
    rng = np.random.default_rng(seed)
    s = RPN_SHAPE
    boxes, labels, counts = _ground_truth(rng, s["batch"], s["max_boxes"], 2, 800.0)
    return {
        "anchors": _random_boxes(rng, s["anchors"], 800.0),
        "gt_boxes": boxes, "gt_labels": np.where(labels >= 0, 0, -1), "counts": counts,
        "objectness": rng.standard_normal((s["batch"], s["anchors"]), dtype=np.float32),
        "rpn_deltas": 0.5 * rng.standard_normal((s["batch"], s["anchors"], 4), dtype=np.float32),
    }


def torchvision_available() -> bool:
    return import_torchvision() is not None


def _torchvision_ssd(data: dict[str, Any], device: str = "cpu") -> Callable[[Any, Any], Any]:
    """torchvision's SSD matching (``SSDMatcher`` on ``box_iou``) and ``SSD.compute_loss`` on the same inputs."""
    import types

    import torch
    from torchvision.models.detection import _utils as det_utils
    from torchvision.models.detection.ssd import SSD
    from torchvision.ops import boxes as box_ops

    priors = torch.from_numpy(data["priors"]).to(device)
    targets = [{"boxes": torch.from_numpy(data["gt_boxes"][i, :c]).to(device),
                "labels": torch.from_numpy(data["gt_labels"][i, :c]).to(device)} for i, c in enumerate(data["counts"])]
    model: Any = types.SimpleNamespace(box_coder=det_utils.BoxCoder(weights=(10.0, 10.0, 5.0, 5.0)), neg_to_pos_ratio=3,
                                  proposal_matcher=det_utils.SSDMatcher(0.5))
    anchors = [priors] * len(targets)

    def loss(box_deltas: Any, class_logits: Any) -> Any:
        matched = [model.proposal_matcher(box_ops.box_iou(t["boxes"], priors)) for t in targets]
        out = SSD.compute_loss(model, targets, {"bbox_regression": box_deltas, "cls_logits": class_logits},
                               anchors, matched)
        return out["bbox_regression"] + out["classification"]

    return loss


def _torchvision_rpn(data: dict[str, Any], device: str = "cpu") -> Callable[[Any, Any], Any]:
    """torchvision's ``RegionProposalNetwork.assign_targets_to_anchors`` + encoding + ``compute_loss``."""
    import types

    import torch
    from torchvision.models.detection import _utils as det_utils
    from torchvision.models.detection.rpn import RegionProposalNetwork
    from torchvision.ops import boxes as box_ops

    anchors = torch.from_numpy(data["anchors"]).to(device)
    targets = [{"boxes": torch.from_numpy(data["gt_boxes"][i, :c]).to(device)} for i, c in enumerate(data["counts"])]
    model: Any = types.SimpleNamespace(
        box_similarity=box_ops.box_iou,
        proposal_matcher=det_utils.Matcher(0.7, 0.3, allow_low_quality_matches=True),
        fg_bg_sampler=det_utils.BalancedPositiveNegativeSampler(256, 0.5),
        box_coder=det_utils.BoxCoder(weights=(1.0, 1.0, 1.0, 1.0)),
    )
    per_image = [anchors] * len(targets)

    def loss(objectness: Any, rpn_deltas: Any) -> Any:
        labels, matched_gt = RegionProposalNetwork.assign_targets_to_anchors(model, per_image, targets)
        regression_targets = model.box_coder.encode(matched_gt, per_image)
        obj, box = RegionProposalNetwork.compute_loss(
            model, objectness.reshape(-1, 1), rpn_deltas.reshape(-1, 4), labels, regression_targets)
        return obj + box

    return loss


FCOS_SHAPE: dict[str, Any] = {"batch": 8, "image": 800, "strides": (8, 16, 32, 64, 128), "classes": 91, "max_boxes": 10}


def fcos_callables(backend: str, device: str = "cpu") -> tuple[Callable[..., Any], tuple[Any, ...], Any]:
    """FCOS at batch 8, 800 x 800, five levels (13343 anchors), 91 classes, up to 10 boxes per image:
    (polyloss's total of the predictions, the float32 predictions, torchvision's ``FCOS.compute_loss`` +
    ``FCOSHead.compute_loss`` total or None)."""
    import types

    from polyloss.detection.fcos import fcos_anchors

    s = FCOS_SHAPE
    rng = np.random.default_rng(0)
    anchors, counts = fcos_anchors(s["image"], s["strides"])
    anchors = anchors.astype(np.float32)
    boxes, labels, per_image = _ground_truth(rng, s["batch"], s["max_boxes"], s["classes"], float(s["image"]))
    a = anchors.shape[0]
    preds = (rng.standard_normal((s["batch"], a, s["classes"]), dtype=np.float32),
             rng.uniform(0.1, 4.0, (s["batch"], a, 4)).astype(np.float32),
             rng.standard_normal((s["batch"], a), dtype=np.float32))

    def convert(x: np.ndarray) -> Any:
        return sys.modules["torch"].from_numpy(x).to(device) if backend == "torch" else x

    if backend == "torch":
        import torch  # noqa: F401
    recipe = pl.get_recipe("fcos", num_classes=s["classes"])
    fixed = (convert(anchors), convert(boxes), convert(labels))

    def loss(class_logits: Any, box_regression: Any, centerness: Any) -> Any:
        return recipe(class_logits, box_regression, centerness, fixed[0], counts, fixed[1], fixed[2]).total

    if backend != "torch" or not torchvision_available():
        return loss, tuple(convert(p) for p in preds), None
    from torchvision.models.detection import _utils as det_utils
    from torchvision.models.detection.fcos import FCOS
    from torchvision.models.detection.fcos import FCOSHead

    head: Any = types.SimpleNamespace(box_coder=det_utils.BoxLinearCoder(normalize_by_size=True))
    model: Any = types.SimpleNamespace(center_sampling_radius=1.5, head=types.SimpleNamespace(
        compute_loss=lambda *args: FCOSHead.compute_loss(head, *args)))
    targets = [{"boxes": fixed[1][i, :c], "labels": fixed[2][i, :c]} for i, c in enumerate(per_image)]

    def reference(class_logits: Any, box_regression: Any, centerness: Any) -> Any:
        out = FCOS.compute_loss(model, targets, {"cls_logits": class_logits, "bbox_regression": box_regression,
                                                 "bbox_ctrness": centerness[..., None]},
                                [fixed[0]] * len(targets), counts)
        return sum(out.values())

    return loss, tuple(convert(p) for p in preds), reference


def _recipe_callables(recipe: str, backend: str,
                      device: str = "cpu") -> tuple[Callable[..., Any], tuple[Any, ...], Any]:
    """(loss of the prediction arrays, prediction arrays, torchvision's loss or None) for one recipe."""
    if recipe == "fcos":
        return fcos_callables(backend, device)
    if recipe == "yolov8":  # its reference is ultralytics'
        return _yolov8_callables(backend, device)
    data = ssd_inputs() if recipe == "ssd" else rpn_inputs()

    def convert(a: np.ndarray) -> Any:
        if backend == "torch":
            return sys.modules["torch"].from_numpy(a).to(device)
        return a

    if backend == "torch":
        import torch  # noqa: F401
    if recipe == "ssd":
        ssd = pl.get_recipe("ssd", num_classes=SSD_SHAPE["classes"])
        priors, boxes, labels = (convert(data[k]) for k in ("priors", "gt_boxes", "gt_labels"))

        def ssd_loss(box_deltas: Any, class_logits: Any) -> Any:
            return ssd(box_deltas, class_logits, priors, boxes, labels).total

        preds = (convert(data["box_deltas"]), convert(data["class_logits"]))
        reference = _torchvision_ssd(data, device) if backend == "torch" and torchvision_available() else None
        return ssd_loss, preds, reference
    frcnn = pl.get_recipe("faster_rcnn", num_classes=2)  # seed None: fresh samples each call, as torchvision
    anchors, boxes, labels = (convert(data[k]) for k in ("anchors", "gt_boxes", "gt_labels"))

    def rpn_loss(objectness: Any, rpn_deltas: Any) -> Any:
        return frcnn.rpn_loss(anchors, objectness, rpn_deltas, boxes, labels).total

    preds = (convert(data["objectness"]), convert(data["rpn_deltas"]))
    reference = _torchvision_rpn(data, device) if backend == "torch" and torchvision_available() else None
    return rpn_loss, preds, reference


#: the "yolov8" row: batch 16, 80 classes, 640 x 640 (8400 anchors at strides 8, 16, 32), up to 30 boxes per image
YOLOV8_SHAPE = {"batch": 16, "classes": 80, "image": 640, "reg_max": 16, "max_boxes": 30}


def yolov8_inputs(seed: int = 0) -> dict[str, Any]:
    """YOLOv8 inputs at :data:`YOLOV8_SHAPE`, float32; the ground truth both padded (pixel xyxy, label -1)
    and as ultralytics' batch (image index, class, normalised cxcywh)."""
    from polyloss.detection.yolov8 import make_anchor_points

    rng = np.random.default_rng(seed)
    s = YOLOV8_SHAPE
    size = s["image"]
    points, strides = make_anchor_points(size, size)
    boxes, labels, counts = _ground_truth(rng, s["batch"], s["max_boxes"], s["classes"] + 1, float(size))
    labels = np.where(labels >= 0, labels - 1, -1)  # classes in [0, C)
    real = labels >= 0
    xyxy = boxes[real] / size
    return {
        "anchor_points": points.astype(np.float32), "strides": strides.astype(np.float32),
        "gt_boxes": boxes, "gt_labels": labels, "counts": counts,
        "batch_idx": np.nonzero(real)[0].astype(np.float32), "cls": labels[real].astype(np.float32),
        "bboxes": np.concatenate([(xyxy[:, :2] + xyxy[:, 2:]) / 2, xyxy[:, 2:] - xyxy[:, :2]], 1).astype(np.float32),
        "pred_distri": rng.standard_normal((s["batch"], len(points), 4 * s["reg_max"]), dtype=np.float32),
        "pred_scores": rng.standard_normal((s["batch"], len(points), s["classes"]), dtype=np.float32) - 3.0,
    }


def _ultralytics_yolov8(data: dict[str, Any], device: str = "cpu") -> Callable[[Any, Any], Any] | None:
    """ultralytics' ``v8DetectionLoss`` (on a stand-in model) as ``loss(pred_distri, pred_scores)``, or None."""
    import types

    import torch

    import_torchvision()  # ultralytics imports torchvision
    try:
        from ultralytics.utils.loss import v8DetectionLoss
    except ImportError:
        return None
    s = YOLOV8_SHAPE
    head = types.SimpleNamespace(stride=torch.tensor([8.0, 16.0, 32.0]), nc=s["classes"], reg_max=s["reg_max"])

    class Model(torch.nn.Module):  # what v8DetectionLoss reads: a parameter (the device), args, model[-1]
        def __init__(self) -> None:
            super().__init__()
            self.weight = torch.nn.Parameter(torch.zeros(1, device=device))
            self.args = types.SimpleNamespace(box=7.5, cls=0.5, dfl=1.5)
            self.model = [head]

    criterion = v8DetectionLoss(Model())
    feats = [torch.zeros(s["batch"], 1, s["image"] // k, s["image"] // k, device=device) for k in (8, 16, 32)]
    batch = {k: torch.from_numpy(data[k]).to(device) for k in ("batch_idx", "cls", "bboxes")}
    batch["cls"] = batch["cls"].reshape(-1, 1)

    def loss(pred_distri: Any, pred_scores: Any) -> Any:
        preds = {"boxes": pred_distri.permute(0, 2, 1), "scores": pred_scores.permute(0, 2, 1), "feats": feats}
        return criterion(preds, batch)[0].sum()

    return loss


def _yolov8_callables(backend: str, device: str = "cpu") -> tuple[Callable[..., Any], tuple[Any, ...], Any]:
    """(the "yolov8" recipe's total of the prediction arrays, the arrays, ultralytics' loss or None)."""
    data = yolov8_inputs()

    def convert(a: np.ndarray) -> Any:
        return sys.modules["torch"].from_numpy(a).to(device) if backend == "torch" else a

    if backend == "torch":
        import torch  # noqa: F401
    recipe = pl.get_recipe("yolov8", num_classes=YOLOV8_SHAPE["classes"])
    fixed = tuple(convert(data[k]) for k in ("anchor_points", "strides", "gt_boxes", "gt_labels"))

    def yolov8_loss(pred_distri: Any, pred_scores: Any) -> Any:
        return recipe(pred_distri, pred_scores, *fixed).total

    reference = _ultralytics_yolov8(data, device) if backend == "torch" else None
    return yolov8_loss, (convert(data["pred_distri"]), convert(data["pred_scores"])), reference


def bench_recipes(backends: list[str], *, repeat: int, threads: list[int | None],
                  progress: Callable[[str], None], devices: tuple[str, ...] = ("cpu",)) -> list[RecipeRow]:
    """SSD and Faster R-CNN RPN (matching, encoding, sampling or mining, and loss) per backend and torch device."""
    rows: list[RecipeRow] = []
    for recipe in ("ssd", "rpn", "fcos", "yolov8"):
        if "numpy" in backends:
            loss, preds, _ = _recipe_callables(recipe, "numpy")
            progress(f"numpy {recipe} recipe")
            t = _median_time(lambda: loss(*preds), repeat, min_time=0.2)
            rows.append(RecipeRow(recipe, "numpy", "forward", "default", t, None, None))
        if "torch" in backends:
            for device in devices:
                rows += _bench_torch_recipe(recipe, device, repeat=repeat,
                                            threads=threads if device == "cpu" else [None], progress=progress)
    if "torch" in backends:
        rows += bench_detr(repeat=repeat, threads=threads, progress=progress)
    return rows


def _bench_torch_recipe(recipe: str, device: str, *, repeat: int, threads: list[int | None],
                        progress: Callable[[str], None]) -> list[RecipeRow]:
    import torch

    backend = "torch" if device == "cpu" else f"torch-{device}"
    sync = torch.cuda.synchronize if device.startswith("cuda") else None
    loss, preds, reference = _recipe_callables(recipe, "torch", device)
    return _torch_recipe_rows(recipe, backend, loss, preds, reference, repeat=repeat, threads=threads,
                              progress=progress, sync=sync)


def _torch_recipe_rows(recipe: str, backend: str, loss: Callable[..., Any], preds: tuple[Any, ...],
                       reference: Callable[..., Any] | None, *, repeat: int, threads: list[int | None],
                       progress: Callable[[str], None], sync: Callable[[], Any] | None = None,
                       reference_name: str = "torchvision") -> list[RecipeRow]:
    """Forward and forward+backward rows of ``loss(*preds)`` (fast paths on and off) and ``reference(*preds)``
    per thread count."""
    import torch

    rows: list[RecipeRow] = []
    default_threads = torch.get_num_threads()
    for n_threads in threads:
        torch.set_num_threads(n_threads or default_threads)
        label = "1" if n_threads == 1 else f"default({default_threads})"
        for mode in ("forward", "forward+backward"):
            progress(f"{backend} {recipe} recipe {mode} threads={label}")
            args = tuple(p.clone().requires_grad_(mode != "forward") for p in preds)

            def go(f: Callable[..., Any], args: tuple[Any, ...] = args, backward: bool = mode != "forward"
                   ) -> Callable[[], None]:
                def call() -> None:
                    out = f(*args)
                    if backward:
                        torch.autograd.grad(out, args)
                return _synchronized(call, sync)

            # polyloss and the reference in turn; the generic path apart, after them (its temporaries, many
            # times the others', would change the heap each of them finds)
            fns = [go(loss)] + ([] if reference is None else [go(reference)])
            (t_pl, s_pl), *theirs = _interleaved(fns, repeat, min_time=0.2)
            t_tv, s_tv = theirs[0] if theirs else (None, 0.0)
            with pl.fast_paths(False):
                t_gen = _median_time(go(loss), repeat, min_time=0.2)
            rows.append(RecipeRow(recipe, backend, mode, label, t_pl, t_gen, t_tv, max(s_pl, s_tv),
                                  reference=reference_name))
    torch.set_num_threads(default_threads)
    return rows


def format_recipe_table(rows: list[RecipeRow]) -> str:
    """The recipe rows; NumPy's forward is also given over PyTorch's single-threaded and fastest forwards."""
    torch_forward = {(r.recipe, r.threads): r.polyloss_s for r in rows if r.backend == "torch" and r.mode == "forward"}
    lines = [f"{'recipe':<8}{'backend':<8}{'mode':<18}{'threads':<12}{'ms':>9}{'generic ms':>12}"
             f"{'vs torchvision':>16}{'numpy/torch(1)':>16}{'numpy/torch(best)':>19}"]
    for r in rows:
        generic = "" if r.generic_s is None else f"{1e3 * r.generic_s:.1f}"
        tv = "n/a" if r.vs_torchvision is None else f"{r.vs_torchvision:.2f}"
        single = best = ""
        times = [t for (name, _), t in torch_forward.items() if name == r.recipe]
        if r.backend == "numpy" and times:
            best = f"{r.polyloss_s / min(times):.2f}"
            if (r.recipe, "1") in torch_forward:
                single = f"{r.polyloss_s / torch_forward[(r.recipe, '1')]:.2f}"
        lines.append(f"{r.recipe:<8}{r.backend:<8}{r.mode:<18}{r.threads:<12}{1e3 * r.polyloss_s:>9.1f}{generic:>12}"
                     f"{tv:>16}{single:>16}{best:>19}{_flag(r.spread)}")
    for reference in sorted({r.reference for r in rows} - {"torchvision"}):
        names = ", ".join(sorted({r.recipe for r in rows if r.reference == reference}))
        lines.append(f"{names}: the 'vs torchvision' column is against {reference}")
    note = spread_note([r.spread for r in rows])
    if note:
        lines.append(note)
    if not torchvision_available():
        lines.append("torchvision comparison unavailable: torchvision is not importable here "
                     "(the 'vs torchvision' column is n/a)")
    return "\n".join(lines)


DETR_SHAPE = {"batch": 8, "queries": 100, "classes": 92, "boxes": 20}


def detr_inputs(seed: int = 0) -> dict[str, Any]:
    """DETR-sized float32 NumPy inputs: batch 8, 100 queries, 91 classes + "no object", 15 to 25 boxes per image."""
    rng = np.random.default_rng(seed)
    s = DETR_SHAPE
    n, q, k = s["batch"], s["queries"], s["classes"]
    counts = [int(c) for c in rng.integers(s["boxes"] - 5, s["boxes"] + 6, n)]
    g = max(counts)
    boxes = np.zeros((n, g, 4), np.float32)
    labels = np.full((n, g), -1, np.int64)
    for i, c in enumerate(counts):
        boxes[i, :c, :2] = rng.uniform(0.2, 0.8, (c, 2))
        boxes[i, :c, 2:] = rng.uniform(0.05, 0.4, (c, 2))
        labels[i, :c] = rng.integers(0, k - 1, c)
    return {"gt_boxes": boxes, "gt_labels": labels, "counts": counts,
            "class_logits": rng.standard_normal((n, q, k), dtype=np.float32),
            "pred_boxes": (1.0 / (1.0 + np.exp(-rng.standard_normal((n, q, 4))))).astype(np.float32)}


def _transformers_detr(data: dict[str, Any]) -> Callable[[Any, Any], Any] | None:
    """transformers' ``ForObjectDetectionLoss`` (DETR's matcher and criterion) on the same inputs, or None."""
    import types

    import torch

    if not torchvision_available():  # transformers' detection loss imports torchvision
        return None
    import importlib

    try:
        module = importlib.import_module("transformers.loss.loss_for_object_detection")
    except ImportError:
        return None
    targets = [{"class_labels": torch.from_numpy(data["gt_labels"][i, :c]),
                "boxes": torch.from_numpy(data["gt_boxes"][i, :c])} for i, c in enumerate(data["counts"])]
    config = types.SimpleNamespace(class_cost=1, bbox_cost=5, giou_cost=2, num_labels=DETR_SHAPE["classes"] - 1,
                                   eos_coefficient=0.1, auxiliary_loss=False, bbox_loss_coefficient=5,
                                   giou_loss_coefficient=2)

    def loss(class_logits: Any, pred_boxes: Any) -> Any:
        return module.ForObjectDetectionLoss(class_logits, targets, "cpu", pred_boxes, config)[0]

    return loss


# -- recipes across batch sizes (torch CPU, one thread), YOLOv1, compiled --------------------------------------

#: batch sizes of the SSD and Faster R-CNN rows against torchvision
RECIPE_BATCHES = (2, 8, 32)
#: Faster R-CNN (RPN + box head): 20000 anchors, 2000 proposals and 512 sampled per image, COCO's 91 classes
FRCNN_SHAPE = {"anchors": 20000, "proposals": 2000, "roi_batch": 512, "classes": 91, "max_boxes": 10}
#: YOLOv1 on the paper's 7 x 7 grid, 2 boxes per cell, 20 classes, batch 64
YOLO_SHAPE = {"batch": 64, "grid": 7, "boxes_per_cell": 2, "classes": 20, "max_boxes": 10}


def faster_rcnn_inputs(batch: int, seed: int = 0) -> dict[str, Any]:
    """RPN and box-head inputs: ``batch`` images, 20000 anchors, 2000 proposals, 1 to 10 boxes, 91 classes."""
    rng = np.random.default_rng(seed)
    s = FRCNN_SHAPE
    boxes, labels, counts = _ground_truth(rng, batch, s["max_boxes"], s["classes"], 800.0)
    r, c = s["roi_batch"], s["classes"]
    return {
        "anchors": _random_boxes(rng, s["anchors"], 800.0),
        "proposals": np.stack([_random_boxes(rng, s["proposals"], 800.0) for _ in range(batch)]),
        "gt_boxes": boxes, "gt_labels": labels, "counts": counts,
        "objectness": rng.standard_normal((batch, s["anchors"]), dtype=np.float32),
        "rpn_deltas": 0.5 * rng.standard_normal((batch, s["anchors"], 4), dtype=np.float32),
        "class_logits": rng.standard_normal((batch, r, c), dtype=np.float32),
        "box_deltas": 0.5 * rng.standard_normal((batch, r, 4 * c), dtype=np.float32),
    }


def yolov1_inputs(batch: int | None = None, seed: int = 0) -> dict[str, Any]:
    """YOLOv1 inputs: ``(N, 7, 7, 30)`` predictions in [0, 1], image-normalised boxes (1 to 10 per image)."""
    rng = np.random.default_rng(seed)
    s = YOLO_SHAPE
    n = s["batch"] if batch is None else batch
    boxes, labels, _ = _ground_truth(rng, n, s["max_boxes"], s["classes"] + 1, 1.0)
    labels = np.where(labels >= 0, labels - 1, -1)  # classes 0..C-1
    d = s["boxes_per_cell"] * 5 + s["classes"]
    return {"pred": rng.uniform(0.0, 1.0, (n, s["grid"], s["grid"], d)).astype(np.float32),
            "gt_boxes": boxes, "gt_labels": labels}


def _torchvision_faster_rcnn(data: dict[str, Any], device: str = "cpu") -> Callable[..., Any]:
    """torchvision's RPN (as :func:`_torchvision_rpn`) + ``RoIHeads.select_training_samples`` + ``fastrcnn_loss``."""
    import torch
    from torchvision.models.detection import roi_heads

    rpn = _torchvision_rpn(data, device)
    c = FRCNN_SHAPE["classes"]
    heads = roi_heads.RoIHeads(None, None, None, fg_iou_thresh=0.5, bg_iou_thresh=0.5,
                               batch_size_per_image=FRCNN_SHAPE["roi_batch"], positive_fraction=0.25,
                               bbox_reg_weights=None, score_thresh=0.05, nms_thresh=0.5, detections_per_img=100)
    proposals = [torch.from_numpy(p).to(device) for p in data["proposals"]]
    targets = [{"boxes": torch.from_numpy(data["gt_boxes"][i, :k]).to(device),
                "labels": torch.from_numpy(data["gt_labels"][i, :k]).to(device)} for i, k in enumerate(data["counts"])]

    def loss(objectness: Any, rpn_deltas: Any, class_logits: Any, box_deltas: Any) -> Any:
        _, _, labels, regression_targets = heads.select_training_samples(proposals, targets)
        cls, box = roi_heads.fastrcnn_loss(class_logits.reshape(-1, c), box_deltas.reshape(-1, 4 * c), labels,
                                           regression_targets)
        return rpn(objectness, rpn_deltas) + cls + box

    return loss


def bench_detr(*, repeat: int, threads: list[int | None], progress: Callable[[str], None]) -> list[RecipeRow]:
    """The ``"detr"`` recipe (Hungarian matching with SciPy, and the set loss) against transformers'
    ``ForObjectDetectionLoss`` at :data:`DETR_SHAPE`, torch CPU, forward and forward+backward."""
    import torch

    data = detr_inputs()
    recipe = pl.get_recipe("detr")
    gt_boxes, gt_labels = torch.from_numpy(data["gt_boxes"]), torch.from_numpy(data["gt_labels"])
    preds = (torch.from_numpy(data["class_logits"]), torch.from_numpy(data["pred_boxes"]))
    reference = _transformers_detr(data)

    def loss(class_logits: Any, pred_boxes: Any) -> Any:
        return recipe(class_logits, pred_boxes, gt_boxes, gt_labels).total

    return _torch_recipe_rows("detr", "torch", loss, preds, reference, repeat=repeat, threads=threads,
                              progress=progress, reference_name="transformers")


def torch_yolov1(grid: int, boxes_per_cell: int, num_classes: int, *, lambda_coord: float = 5.0,
                 lambda_noobj: float = 0.5) -> Callable[[Any, Any, Any], Any]:
    """A hand-vectorised PyTorch YOLOv1 loss (the reference of the YOLOv1 rows): the ``"yolov1"`` recipe's
    numbers (first object of a cell owns it, IoU confidence target, responsible predictor by IoU) with a
    ``scatter_reduce`` for the cell owners and one-hot products, written directly against torch."""
    import torch
    import torch.nn.functional as F

    s, b, c = grid, boxes_per_cell, num_classes

    def sqrt(v: Any) -> Any:
        return v.clamp(min=1e-12).sqrt()

    def loss(pred: Any, boxes: Any, labels: Any) -> Any:
        n, g = labels.shape
        valid = labels >= 0
        x1, y1, x2, y2 = boxes.unbind(-1)
        cx, cy = (x1 + x2) * 0.5, (y1 + y2) * 0.5
        col, row = (cx * s).floor().clamp(0, s - 1), (cy * s).floor().clamp(0, s - 1)
        cell = torch.where(valid, (row * s + col).long(), s * s)
        first = torch.full((n, s * s + 1), g, dtype=torch.long, device=pred.device).scatter_reduce(
            1, cell, torch.arange(g, device=pred.device).expand(n, g), "amin")[:, : s * s]
        obj = (first < g).view(n, s, s).to(pred.dtype)
        owner = first.clamp(max=g - 1)
        fields = torch.stack([cx * s - col, cy * s - row, x2 - x1, y2 - y1, x1, y1, x2, y2], -1)
        t = torch.gather(fields, 1, owner[..., None].expand(n, s * s, 8)).view(n, s, s, 1, 8)
        cls = torch.gather(labels, 1, owner).view(n, s, s).clamp(min=0)
        p = pred[..., : 5 * b].reshape(n, s, s, b, 5)
        with torch.no_grad():
            offsets = torch.arange(s, dtype=pred.dtype, device=pred.device)
            pcx = (offsets.view(1, 1, s, 1) + p[..., 0]) / s
            pcy = (offsets.view(1, s, 1, 1) + p[..., 1]) / s
            hw, hh = p[..., 2].clamp(min=0) * 0.5, p[..., 3].clamp(min=0) * 0.5
            iw = (torch.minimum(pcx + hw, t[..., 6]) - torch.maximum(pcx - hw, t[..., 4])).clamp(min=0)
            ih = (torch.minimum(pcy + hh, t[..., 7]) - torch.maximum(pcy - hh, t[..., 5])).clamp(min=0)
            inter = iw * ih
            union = 4 * hw * hh + (t[..., 6] - t[..., 4]) * (t[..., 7] - t[..., 5]) - inter
            iou = torch.where(union > 0, inter / union, 0.0) * obj[..., None]
            responsible = F.one_hot(iou.argmax(-1), b).to(pred.dtype) * obj[..., None]
        coord = ((p[..., 0] - t[..., 0]) ** 2 + (p[..., 1] - t[..., 1]) ** 2
                 + (sqrt(p[..., 2]) - sqrt(t[..., 2])) ** 2 + (sqrt(p[..., 3]) - sqrt(t[..., 3])) ** 2)
        conf = p[..., 4]
        total = (lambda_coord * (responsible * coord).sum() + (responsible * (conf - iou) ** 2).sum()
                 + lambda_noobj * ((1 - responsible) * conf**2).sum()
                 + (obj[..., None] * (pred[..., 5 * b:] - F.one_hot(cls, c).to(pred.dtype)) ** 2).sum())
        return total / max(n, 1)

    return loss


def recipe_case(recipe: str, batch: int, *, validate: bool = True,
                device: str = "cpu") -> tuple[Callable[..., Any], tuple[Any, ...], Callable[..., Any] | None, str]:
    """``(polyloss loss of the prediction tensors, prediction tensors, reference or None, reference name)``.

    ``recipe``: ``"ssd"`` and ``"faster_rcnn"`` (RPN + box head, fresh samples every call, as torchvision;
    reference torchvision's code) or ``"yolov1"`` (reference :func:`torch_yolov1`).
    """
    import torch

    def tensor(a: np.ndarray) -> Any:
        return torch.from_numpy(np.ascontiguousarray(a)).to(device)

    has_tv = torchvision_available()
    if recipe == "ssd":
        data = ssd_inputs(batch=batch)
        ssd = pl.get_recipe("ssd", num_classes=SSD_SHAPE["classes"], validate=validate)
        priors, boxes, labels = (tensor(data[k]) for k in ("priors", "gt_boxes", "gt_labels"))

        def ssd_loss(box_deltas: Any, class_logits: Any) -> Any:
            return ssd(box_deltas, class_logits, priors, boxes, labels).total

        return (ssd_loss, (tensor(data["box_deltas"]), tensor(data["class_logits"])),
                _torchvision_ssd(data, device) if has_tv else None, "torchvision")
    if recipe == "faster_rcnn":
        data = faster_rcnn_inputs(batch)
        frcnn = pl.get_recipe("faster_rcnn", num_classes=FRCNN_SHAPE["classes"], validate=validate)
        anchors, proposals, boxes, labels = (tensor(data[k]) for k in ("anchors", "proposals", "gt_boxes",
                                                                       "gt_labels"))

        def frcnn_loss(objectness: Any, rpn_deltas: Any, class_logits: Any, box_deltas: Any) -> Any:
            sampled = frcnn.sample_proposals(proposals, boxes, labels)
            return frcnn(anchors, objectness, rpn_deltas, boxes, labels, class_logits, box_deltas, sampled).total

        preds = tuple(tensor(data[k]) for k in ("objectness", "rpn_deltas", "class_logits", "box_deltas"))
        return frcnn_loss, preds, _torchvision_faster_rcnn(data, device) if has_tv else None, "torchvision"
    if recipe != "yolov1":
        raise ValueError(f"unknown recipe {recipe!r}")
    s = YOLO_SHAPE
    data = yolov1_inputs(batch)
    yolo = pl.get_recipe("yolov1", grid=s["grid"], boxes_per_cell=s["boxes_per_cell"], num_classes=s["classes"],
                         validate=validate)
    reference = torch_yolov1(s["grid"], s["boxes_per_cell"], s["classes"])
    boxes, labels = tensor(data["gt_boxes"]), tensor(data["gt_labels"])
    return ((lambda pred: yolo(pred, boxes, labels).total), (tensor(data["pred"]),),
            (lambda pred: reference(pred, boxes, labels)), "hand-vectorised torch")


def _thread_time(fn: Callable[[], Any], repeat: int, min_time: float = 0.2) -> float:
    """Median CPU time of the calling thread per call (single-threaded rows: on a shared machine the time
    spent waiting for a core does not count)."""
    import time

    fn()
    number = 1
    while True:
        start = time.thread_time()
        for _ in range(number):
            fn()
        if time.thread_time() - start >= min_time / 4 or number >= 1 << 12:
            break
        number *= 2
    times = []
    for _ in range(repeat):
        start = time.thread_time()
        for _ in range(number):
            fn()
        times.append((time.thread_time() - start) / number)
    return statistics.median(times)


@dataclass
class ScalingRow:
    recipe: str
    batch: int
    mode: str
    polyloss_s: float
    reference_s: float | None
    reference: str
    peak_ratio: float | None = None  #: peak memory (fwd+bwd) polyloss / reference, fresh interpreters

    @property
    def ratio(self) -> float | None:
        return None if self.reference_s is None else self.polyloss_s / self.reference_s


def _peak_child(recipe: str, batch: int, impl: str) -> None:  # runs in a fresh interpreter
    """Print the peak RSS above the inputs of one forward + backward (after a warm-up call).

    Allocations above 128 KiB are mapped and unmapped one by one (``mallopt``), so that the resident set
    follows the live buffers; the peak is reset (``/proc/self/clear_refs``) before the measured call.
    """
    import ctypes
    import ctypes.util
    import os

    libc = ctypes.CDLL(ctypes.util.find_library("c"))
    libc.mallopt(-3, 128 << 10)  # M_MMAP_THRESHOLD
    libc.mallopt(-1, 128 << 10)  # M_TRIM_THRESHOLD
    import torch

    torch.set_num_threads(1)
    loss, preds, reference, _ = recipe_case(recipe, batch)
    fn = loss if impl == "polyloss" else reference
    assert fn is not None
    args = tuple(p.clone().requires_grad_(True) for p in preds)
    torch.autograd.grad(fn(*args), args)
    with open("/proc/self/statm") as fh:
        base = int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    with open("/proc/self/clear_refs", "w") as fh:
        fh.write("5")
    torch.autograd.grad(fn(*args), args)
    with open("/proc/self/status") as fh:
        peak = next(int(line.split()[1]) * 1024 for line in fh if line.startswith("VmHWM"))
    print(json.dumps({"peak_above_inputs_bytes": peak - base}))


def recipe_peak_ratio(recipe: str, batch: int) -> float | None:
    """Peak memory of polyloss's forward + backward over the reference's (each in a fresh interpreter, Linux)."""
    if sys.platform != "linux":
        return None
    peaks = []
    for impl in ("polyloss", "reference"):
        proc = subprocess.run([sys.executable, "-c", "from polyloss._tools.bench import _peak_child; "
                               f"_peak_child({recipe!r}, {batch}, {impl!r})"], capture_output=True, text=True)
        if proc.returncode != 0:
            return None
        peaks.append(json.loads(proc.stdout.strip().splitlines()[-1])["peak_above_inputs_bytes"])
    return peaks[0] / peaks[1] if peaks[1] > 0 else None


def bench_recipe_scaling(*, repeat: int, progress: Callable[[str], None], memory: bool = True,
                         cases: tuple[tuple[str, tuple[int, ...]], ...] | None = None) -> list[ScalingRow]:
    """SSD and Faster R-CNN at batch 2, 8, 32 against torchvision and YOLOv1 against :func:`torch_yolov1`:
    torch CPU, one thread, forward and forward + backward (thread CPU time), peak memory of fwd+bwd."""
    import torch

    cases = cases or (("ssd", RECIPE_BATCHES), ("faster_rcnn", RECIPE_BATCHES), ("yolov1", (YOLO_SHAPE["batch"],)))
    rows: list[ScalingRow] = []
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        for recipe, batches in cases:
            for batch in batches:
                loss, preds, reference, name = recipe_case(recipe, batch)
                for mode in ("forward", "forward+backward"):
                    progress(f"torch {recipe} batch {batch} {mode} (one thread)")
                    args = tuple(p.clone().requires_grad_(mode != "forward") for p in preds)

                    def go(f: Callable[..., Any], args: tuple[Any, ...] = args,
                           backward: bool = mode != "forward") -> Callable[[], None]:
                        def call() -> None:
                            out = f(*args)
                            if backward:
                                torch.autograd.grad(out, args)
                        return call

                    t_pl = _thread_time(go(loss), repeat)
                    t_ref = None if reference is None else _thread_time(go(reference), repeat)
                    peak = (recipe_peak_ratio(recipe, batch) if memory and reference is not None
                            and mode != "forward" else None)
                    rows.append(ScalingRow(recipe, batch, mode, t_pl, t_ref, name, peak))
    finally:
        torch.set_num_threads(threads)
    return rows


def format_scaling_table(rows: list[ScalingRow]) -> str:
    lines = [f"{'recipe':<13}{'batch':>6}  {'mode':<18}{'ms':>9}{'reference ms':>14}{'ratio':>8}{'peak mem':>10}"
             "  reference"]
    for r in rows:
        ref = "" if r.reference_s is None else f"{1e3 * r.reference_s:.2f}"
        ratio = "n/a" if r.ratio is None else f"{r.ratio:.2f}"
        peak = "" if r.peak_ratio is None else f"{r.peak_ratio:.2f}"
        lines.append(f"{r.recipe:<13}{r.batch:>6}  {r.mode:<18}{1e3 * r.polyloss_s:>9.2f}{ref:>14}{ratio:>8}"
                     f"{peak:>10}  {r.reference}")
    return "\n".join(lines)


@dataclass
class CompileRow:
    recipe: str
    batch: int
    eager_s: float
    compiled_s: float
    cold_s: float  #: wall time of the first compiled call (tracing and code generation, forward + backward)
    recompiles: int  #: graphs compiled after the first call (0: no recompilation)

    @property
    def ratio(self) -> float:
        return self.compiled_s / self.eager_s


#: (recipe, batch) of the compiled rows
COMPILE_CASES = (("ssd", 8), ("faster_rcnn", 2), ("yolov1", 64))


def bench_compiled(*, repeat: int, progress: Callable[[str], None],
                   cases: tuple[tuple[str, int], ...] = COMPILE_CASES) -> list[CompileRow]:
    """Each recipe's forward + backward under ``torch.compile(fullgraph=True)`` against the eager recipe
    (both ``validate=False``: host-side checks would break the graph), one thread; the cold compile time
    and the number of graphs compiled after the first call."""
    import time

    import torch
    from torch._dynamo.utils import counters

    rows: list[CompileRow] = []
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        for recipe, batch in cases:
            loss, preds, _, _ = recipe_case(recipe, batch, validate=False)
            args = tuple(p.clone().requires_grad_(True) for p in preds)
            torch._dynamo.reset()
            compiled = torch.compile(loss, fullgraph=True)

            def go(f: Callable[..., Any], args: tuple[Any, ...] = args) -> Callable[[], Any]:
                return lambda: torch.autograd.grad(f(*args), args)

            progress(f"torch.compile {recipe} batch {batch}: cold compile")
            start = time.perf_counter()
            go(compiled)()
            cold = time.perf_counter() - start
            graphs = counters["stats"]["unique_graphs"]
            progress(f"torch.compile {recipe} batch {batch}: timing")
            t_compiled = _thread_time(go(compiled), repeat)
            recompiles = counters["stats"]["unique_graphs"] - graphs
            t_eager = _thread_time(go(loss), repeat)
            rows.append(CompileRow(recipe, batch, t_eager, t_compiled, cold, recompiles))
    finally:
        torch.set_num_threads(threads)
        torch._dynamo.reset()
    return rows


def format_compile_table(rows: list[CompileRow]) -> str:
    lines = [f"{'recipe':<13}{'batch':>6}{'eager ms':>10}{'compiled ms':>13}{'compiled/eager':>16}"
             f"{'cold compile s':>16}{'recompiles':>12}"]
    for r in rows:
        lines.append(f"{r.recipe:<13}{r.batch:>6}{1e3 * r.eager_s:>10.2f}{1e3 * r.compiled_s:>13.2f}"
                     f"{r.ratio:>16.2f}{r.cold_s:>16.1f}{r.recompiles:>12d}")
    return "\n".join(lines)


# -- memory of the large cross-entropy ----------------------------------------------------------------------

CE_LARGE = (65536, 1000)


def _rss_bytes() -> int:
    import os

    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def reset_peak_rss() -> bool:
    """Reset this process's peak resident size to its current size (Linux ``/proc/self/clear_refs``), so that
    :func:`peak_rss_bytes` after a step is that step's peak, not an import's; False where it cannot."""
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
    except OSError:
        return False
    return True


def peak_rss_bytes() -> int:
    """The peak resident size (``VmHWM``) since the start or the last :func:`reset_peak_rss`."""
    import resource

    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def logits_sized_outputs(fn: Callable[[], Any], shape: tuple[int, ...]) -> list[tuple[str, str]]:
    """(op, dtype) of every new torch buffer with ``shape``'s element count while ``fn()`` runs (backward too).

    A one-hot encoding of the targets would appear here as an integer, bool or
    extra float output of the logits' size.
    """
    import math

    from torch.utils._python_dispatch import TorchDispatchMode

    size = math.prod(shape)
    seen: list[tuple[str, str]] = []

    class Record(TorchDispatchMode):
        def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
            out = func(*args, **(kwargs or {}))
            shared = {a.untyped_storage().data_ptr() for a in (*args, *(kwargs or {}).values()) if hasattr(a, "numel")}
            for o in out if isinstance(out, (tuple, list)) else (out,):
                # new buffers only: views and detached aliases share an input's storage
                if hasattr(o, "numel") and o.numel() == size and o.untyped_storage().data_ptr() not in shared:
                    seen.append((str(func), str(o.dtype)))
            return out

    with Record():  # type: ignore[no-untyped-call]
        fn()
    return seen


def _memory_child(impl: str, rows: int, cols: int) -> None:  # runs in a fresh interpreter
    import resource

    if impl.startswith("numpy"):
        import tracemalloc

        rng = np.random.default_rng(0)
        x = rng.standard_normal((rows, cols), dtype=np.float32)
        t = rng.integers(0, cols, rows)
        ref = _np_reference("cross_entropy")
        assert ref is not None
        fn: Callable[[], Any] = (lambda: pl.cross_entropy(x, t)) if impl == "numpy-polyloss" else (lambda: ref(x, t))
        tracemalloc.start()
        fn()
        _, peak = tracemalloc.get_traced_memory()
        print(json.dumps({"impl": impl, "peak_above_inputs_bytes": peak, "logits_bytes": x.nbytes}))
        return
    import torch
    import torch.nn.functional as F

    torch.manual_seed(0)
    logits = torch.randn(rows, cols, requires_grad=True)
    labels = torch.randint(0, cols, (rows,))

    def step() -> None:
        if impl == "torch-native":
            out = F.cross_entropy(logits, labels)
        elif impl == "torch-generic":
            with pl.fast_paths(False):
                out = pl.cross_entropy(logits, labels)
        else:
            out = pl.cross_entropy(logits, labels)
        torch.autograd.grad(out, logits)

    base = _rss_bytes()
    step()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    outputs = logits_sized_outputs(step, (rows, cols))
    print(json.dumps({"impl": impl, "peak_above_inputs_bytes": peak - base, "logits_bytes": logits.numel() * 4,
                      "logits_sized_outputs": outputs}))


def memory(backends: list[str], shape: tuple[int, int] = CE_LARGE) -> dict[str, Any]:
    """Peak memory of cross-entropy (forward + backward on torch, forward on NumPy) above its inputs.

    Each implementation runs in a fresh interpreter: peak RSS above the RSS with
    the inputs allocated on torch (plus a record of every op output of the
    logits' size), ``tracemalloc``'s peak on NumPy. Raises ``AssertionError`` if
    polyloss materialises a one-hot (an integer or bool array of the logits' size)
    or needs a logits-sized buffer more than the native code.
    """
    impls = []
    if "numpy" in backends:
        impls += ["numpy-reference", "numpy-polyloss"]
    if "torch" in backends:
        impls += ["torch-native", "torch-polyloss", "torch-generic"]
    out: dict[str, Any] = {"shape": list(shape)}
    for impl in impls:
        proc = subprocess.run(
            [sys.executable, "-c", "from polyloss._tools.bench import _memory_child; "
             f"_memory_child({impl!r}, {shape[0]}, {shape[1]})"], capture_output=True, text=True)
        if proc.returncode != 0:
            out[impl] = {"error": proc.stderr.strip().splitlines()[-1:]}
            continue
        out[impl] = json.loads(proc.stdout.strip().splitlines()[-1])
    logits = 4 * shape[0] * shape[1]
    for impl in ("torch-polyloss", "torch-generic"):
        seen = out.get(impl, {}).get("logits_sized_outputs")
        if seen is None:
            continue
        one_hot = [s for s in seen if "float" not in s[1]]
        assert not one_hot, f"{impl} materialises a one-hot of the logits' size: {one_hot}"
    native = out.get("torch-native", {}).get("peak_above_inputs_bytes")
    mine = out.get("torch-polyloss", {}).get("peak_above_inputs_bytes")
    if native is not None and mine is not None:
        assert mine <= native + logits // 2, f"cross_entropy peak {mine} B vs native {native} B: an extra buffer"
    np_ref = out.get("numpy-reference", {}).get("peak_above_inputs_bytes")
    np_mine = out.get("numpy-polyloss", {}).get("peak_above_inputs_bytes")
    if np_ref is not None and np_mine is not None:
        assert np_mine <= np_ref + logits // 2, f"numpy cross_entropy peak {np_mine} B vs reference {np_ref} B"
    return out


def format_memory(mem: dict[str, Any]) -> str:
    rows, cols = mem["shape"]
    logits = 4 * rows * cols
    lines = [f"cross_entropy {rows}x{cols} float32 (logits {logits / 2**20:.0f} MiB): peak memory above the inputs"]
    for impl, value in mem.items():
        if impl == "shape":
            continue
        if "error" in value:
            lines.append(f"  {impl:<17} failed: {value['error']}")
            continue
        peak = value["peak_above_inputs_bytes"]
        what = "forward" if impl.startswith("numpy") else "forward+backward"
        extra = ""
        if "logits_sized_outputs" in value:
            extra = f", {len(value['logits_sized_outputs'])} logits-sized buffers, all float: no one-hot"
        lines.append(f"  {impl:<17}{peak / 2**20:>8.0f} MiB = {peak / logits:.2f} x logits ({what}{extra})")
    return "\n".join(lines)


# -- NumPy value and gradient against hand-written fused NumPy ----------------------------------------------------
#
# Each reference computes the loss ("mean" reduction) and its gradient by the logits the way one writes it by hand
# in NumPy: the shared terms once, the gradient built in place in the one array the value needed anyway.

VG_SIZES = {"4096x100": (4096, 100), "16384x1000": (16384, 1000)}


def _exp_shifted(x: np.ndarray, t: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``(rows, g, z_y, s)``: ``g = exp(x - max)`` in a new array, ``z_y`` the shifted target logits picked
    before the exponential, ``s`` the row sums of ``g``."""
    rows = np.arange(x.shape[0])
    g = x - x.max(1, keepdims=True)
    zy = g[rows, t]
    np.exp(g, out=g)
    return rows, g, zy, g.sum(1)


def _ref_ce(x: np.ndarray, t: np.ndarray) -> tuple[Any, np.ndarray]:
    n = x.shape[0]
    rows, g, zy, s = _exp_shifted(x, t)
    value = np.mean(np.log(s) - zy)
    g *= (1.0 / (n * s))[:, None]
    g[rows, t] -= 1.0 / n
    return value, g


def _ref_ce_smoothing(x: np.ndarray, t: np.ndarray, eps: float = 0.1) -> tuple[Any, np.ndarray]:
    n, c = x.shape
    rows = np.arange(n)
    g = x - x.max(1, keepdims=True)
    zy, zsum = g[rows, t], g.sum(1)
    np.exp(g, out=g)
    s = g.sum(1)
    value = np.mean(np.log(s) - (1 - eps) * zy - (eps / c) * zsum)
    g *= (1.0 / (n * s))[:, None]
    g[rows, t] -= (1 - eps) / n
    g -= eps / (c * n)
    return value, g


def _ref_ce_weight(x: np.ndarray, t: np.ndarray, w: np.ndarray) -> tuple[Any, np.ndarray]:
    rows, g, zy, s = _exp_shifted(x, t)
    wy = w[t]
    total = wy.sum()
    value = np.dot(wy, np.log(s) - zy) / total
    g *= (wy / (total * s))[:, None]
    g[rows, t] -= wy / total
    return value, g


def _ref_ce_ignore(x: np.ndarray, t: np.ndarray, ignore_index: int = -100) -> tuple[Any, np.ndarray]:
    valid = t != ignore_index
    safe = np.where(valid, t, 0)
    count = valid.sum()
    rows, g, zy, s = _exp_shifted(x, safe)
    value = np.sum(np.log(s) - zy, where=valid) / count
    scale = valid / count
    g *= (scale / s)[:, None]
    g[rows, safe] -= scale
    return value, g


def _ref_ce_probabilities(x: np.ndarray, q: np.ndarray) -> tuple[Any, np.ndarray]:
    n = x.shape[0]
    g = x - x.max(1, keepdims=True)
    qz = np.einsum("ij,ij->i", q, g)
    qs = q.sum(1)
    np.exp(g, out=g)
    s = g.sum(1)
    value = np.mean(np.log(s) * qs - qz)
    g *= (qs / s)[:, None]
    g -= q
    g /= n
    return value, g


def _ref_bce_logits(x: np.ndarray, y: np.ndarray) -> tuple[Any, np.ndarray]:
    n = x.size
    e = np.exp(-np.abs(x))
    loss = np.log1p(e)
    loss += np.maximum(x, 0)
    loss -= x * y
    g = np.where(x >= 0, 1.0, e).astype(x.dtype)
    e += 1
    g /= e
    g -= y
    g /= n
    return np.mean(loss), g


def _ref_sigmoid_focal(x: np.ndarray, y: np.ndarray, alpha: float = 0.25, gamma: float = 2.0) -> tuple[Any, np.ndarray]:
    n = x.size
    p = 1 / (1 + np.exp(-x))
    ce = np.logaddexp(0, -x) + (1 - y) * x  # -y log p - (1 - y) log(1 - p)
    u = p + y - 2 * p * y  # 1 - p_t
    a_t = alpha * y + (1 - alpha) * (1 - y)
    value = np.mean(a_t * u**gamma * ce)
    g = a_t * (u**gamma * (p - y) + gamma * u ** (gamma - 1) * (1 - 2 * y) * p * (1 - p) * ce) / n
    return value, g


def _ref_softmax_focal(x: np.ndarray, t: np.ndarray, gamma: float = 2.0) -> tuple[Any, np.ndarray]:
    n = x.shape[0]
    rows, g, zy, s = _exp_shifted(x, t)
    logp_y = zy - np.log(s)
    p_y = np.exp(logp_y)
    u = 1 - p_y
    value = np.mean(-(u**gamma) * logp_y)
    coef = (gamma * u ** (gamma - 1) * p_y * logp_y - u**gamma) / n  # d loss / d log p_y
    g *= (-coef / s)[:, None]
    g[rows, t] += coef
    return value, g


def _ref_multi_margin(x: np.ndarray, t: np.ndarray, margin: float = 1.0) -> tuple[Any, np.ndarray]:
    n, c = x.shape
    rows = np.arange(n)
    h = x - x[rows, t][:, None]
    h += margin
    h[rows, t] = 0.0
    np.maximum(h, 0.0, out=h)
    value = h.sum() / (n * c)
    g = (h > 0).astype(x.dtype)
    g[rows, t] = -g.sum(1)
    g /= n * c
    return value, g


def _ref_mse(x: np.ndarray, y: np.ndarray) -> tuple[Any, np.ndarray]:
    d = x - y
    value = np.vdot(d, d) / d.size
    d *= 2.0 / d.size
    return value, d


def _ref_l1(x: np.ndarray, y: np.ndarray) -> tuple[Any, np.ndarray]:
    d = x - y
    g = np.sign(d)
    np.abs(d, out=d)
    g /= d.size
    return d.mean(), g


def _ref_smooth_l1(x: np.ndarray, y: np.ndarray, beta: float = 1.0) -> tuple[Any, np.ndarray]:
    d = x - y
    a = np.abs(d)
    small = a < beta
    value = np.mean(np.where(small, 0.5 * d * d / beta, a - 0.5 * beta))
    g = np.where(small, d / beta, np.sign(d))
    g /= d.size
    return value, g


def _ref_huber(x: np.ndarray, y: np.ndarray, delta: float = 1.0) -> tuple[Any, np.ndarray]:
    d = x - y
    a = np.abs(d)
    small = a < delta
    value = np.mean(np.where(small, 0.5 * d * d, delta * (a - 0.5 * delta)))
    g = np.clip(d, -delta, delta)
    g /= d.size
    return value, g


def _vg_cases(rows: int, cols: int, rng: np.random.Generator) -> dict[str, tuple[str, tuple[Any, ...], dict[str, Any],
                                                                                  Callable[..., Any], tuple[Any, ...]]]:
    """name -> (loss, polyloss's arrays, its options, the hand-written reference, the reference's arguments)."""
    x = rng.standard_normal((rows, cols), dtype=np.float32)
    t = rng.integers(0, cols, rows)
    ignored = np.where(rng.random(rows) < 0.1, -100, t)
    w = rng.uniform(0.5, 2.0, cols).astype(np.float32)
    q = rng.random((rows, cols), dtype=np.float32)
    q /= q.sum(1, keepdims=True)
    b = rng.integers(0, 2, (rows, cols)).astype(np.float32)
    y = rng.standard_normal((rows, cols), dtype=np.float32)
    return {
        "cross_entropy": ("cross_entropy", (x, t), {}, _ref_ce, (x, t)),
        "cross_entropy smoothing=0.1": ("cross_entropy", (x, t), {"label_smoothing": 0.1}, _ref_ce_smoothing, (x, t)),
        "cross_entropy weight": ("cross_entropy", (x, t), {"weight": w}, _ref_ce_weight, (x, t, w)),
        "cross_entropy ignore_index": ("cross_entropy", (x, ignored), {}, _ref_ce_ignore, (x, ignored)),
        "cross_entropy probabilities": ("cross_entropy", (x, q), {}, _ref_ce_probabilities, (x, q)),
        "binary_cross_entropy_with_logits": ("binary_cross_entropy_with_logits", (x, b), {}, _ref_bce_logits, (x, b)),
        "sigmoid_focal_loss": ("sigmoid_focal_loss", (x, b), {}, _ref_sigmoid_focal, (x, b)),
        "softmax_focal_loss": ("softmax_focal_loss", (x, t), {}, _ref_softmax_focal, (x, t)),
        "multi_margin_loss": ("multi_margin_loss", (x, t), {}, _ref_multi_margin, (x, t)),
        "mse_loss": ("mse_loss", (x, y), {}, _ref_mse, (x, y)),
        "l1_loss": ("l1_loss", (x, y), {}, _ref_l1, (x, y)),
        "smooth_l1_loss": ("smooth_l1_loss", (x, y), {}, _ref_smooth_l1, (x, y)),
        "huber_loss": ("huber_loss", (x, y), {}, _ref_huber, (x, y)),
    }


def _peak_bytes(fn: Callable[[], Any]) -> int:
    """``tracemalloc``'s peak above what was allocated before ``fn()`` (NumPy reports its buffers to it)."""
    import tracemalloc

    fn()  # warm caches first
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        start, _ = tracemalloc.get_traced_memory()
        out = fn()
        _, peak = tracemalloc.get_traced_memory()
        del out
    finally:
        tracemalloc.stop()
    return peak - start


@dataclass
class GradRow:
    case: str
    size: str
    polyloss_s: float
    reference_s: float
    polyloss_peak: int
    reference_peak: int
    spread: float

    @property
    def ratio(self) -> float:
        return self.polyloss_s / self.reference_s

    @property
    def memory_ratio(self) -> float:
        return self.polyloss_peak / max(self.reference_peak, 1)


def bench_value_and_grad(sizes: dict[str, tuple[int, int]] | None = None, *, repeat: int,
                         progress: Callable[[str], None], cases: list[str] | None = None) -> list[GradRow]:
    """``polyloss.value_and_grad`` on NumPy against the hand-written fused references above: time and peak memory."""
    rows: list[GradRow] = []
    rng = np.random.default_rng(2)
    for size, (r, c) in (sizes or VG_SIZES).items():
        for case, (name, arrays, options, reference, ref_args) in _vg_cases(r, c, rng).items():
            if cases and case not in cases and name not in cases:
                continue
            progress(f"numpy value_and_grad {case} {size}")
            loss = pl.get_loss(name)

            def mine(loss: Any = loss, arrays: tuple[Any, ...] = arrays, options: dict[str, Any] = options) -> Any:
                return pl.value_and_grad(loss, *arrays, **options)

            def theirs(reference: Any = reference, ref_args: tuple[Any, ...] = ref_args) -> Any:
                return reference(*ref_args)

            t_ref, s_ref = _median_and_spread(theirs, repeat)
            t_pl, s_pl = _median_and_spread(mine, repeat)
            rows.append(GradRow(case, size, t_pl, t_ref, _peak_bytes(mine), _peak_bytes(theirs), max(s_ref, s_pl)))
    return rows


def format_grad_table(rows: list[GradRow]) -> str:
    """``ratio``: polyloss's ``value_and_grad`` time over the hand-written fused one's; ``memory``: peak over peak."""
    lines = [f"{'value_and_grad (numpy)':<34}{'size':<12}{'ratio':>8}{'memory':>8}{'ms':>9}{'ref ms':>9}"]
    for r in rows:
        lines.append(f"{r.case:<34}{r.size:<12}{r.ratio:>8.2f}{r.memory_ratio:>8.2f}{1e3 * r.polyloss_s:>9.2f}"
                     f"{1e3 * r.reference_s:>9.2f}{_flag(r.spread)}")
    note = spread_note([r.spread for r in rows])
    return "\n".join(lines + ([note] if note else []))
