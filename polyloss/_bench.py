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

    @property
    def ratio(self) -> float:
        return self.polyloss_s / self.reference_s

    @property
    def generic_ratio(self) -> float | None:
        return None if self.generic_s is None else self.generic_s / self.reference_s


def _logsumexp(x: np.ndarray) -> np.ndarray:
    m = x.max(-1, keepdims=True)
    return np.log(np.exp(x - m).sum(-1)) + m[..., 0]


def _softplus(x: np.ndarray) -> np.ndarray:
    return np.maximum(x, 0) + np.log1p(np.exp(-np.abs(x)))


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

    table: dict[str, Callable[..., Any]] = {
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
    return table.get(name)


def _data(name: str, rows: int, cols: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
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


def _median_time(fn: Callable[[], Any], repeat: int, min_time: float = 0.05) -> float:
    number = 1
    while True:
        t = timeit.timeit(fn, number=number)
        if t >= min_time or number >= 1 << 16:
            break
        number *= 4
    times = timeit.repeat(fn, number=number, repeat=repeat)
    return statistics.median(times) / number


def _polyloss_kwargs(name: str) -> dict[str, Any]:
    return {"reduction": "batchmean"} if name == "kl_div" else {}


def bench_torch(names: list[str], sizes: dict[str, tuple[int, int]], *, repeat: int, threads: list[int | None],
                progress: Callable[[str], None]) -> list[Row]:
    import torch

    rows: list[Row] = []
    default_threads = torch.get_num_threads()
    rng = np.random.default_rng(0)
    for n_threads in threads:
        torch.set_num_threads(n_threads or default_threads)
        label = "1" if n_threads == 1 else f"default({default_threads})"
        for size, (r, c) in sizes.items():
            for name in names:
                ref = _torch_reference(name)
                if ref is None:
                    continue
                x_np, y_np = _data(name, r, c, rng)
                x = torch.from_numpy(x_np)
                y = torch.from_numpy(y_np)
                loss = pl.get_loss(name)
                kw = _polyloss_kwargs(name)
                for mode in ("forward", "forward+backward"):
                    progress(f"torch {name} {size} {mode} threads={label}")
                    xg = x.clone().requires_grad_(mode != "forward")

                    def run(f: Callable[[], Any], backward: bool = mode != "forward",
                            xg: Any = xg) -> Callable[[], Any]:
                        def go() -> None:
                            out = f()
                            if backward:
                                torch.autograd.grad(out, xg)
                        return go

                    t_ref = _median_time(run(lambda: ref(xg, y)), repeat)
                    t_pl = _median_time(run(lambda: loss(xg, y, **kw)), repeat)
                    with pl.fast_paths(False):
                        t_gen = _median_time(run(lambda: loss(xg, y, **kw)), repeat)
                    rows.append(Row(name, "torch", size, mode, label, t_pl, t_ref, t_gen))
    torch.set_num_threads(default_threads)
    return rows


def bench_numpy(names: list[str], sizes: dict[str, tuple[int, int]], *, repeat: int,
                progress: Callable[[str], None]) -> list[Row]:
    rows: list[Row] = []
    rng = np.random.default_rng(1)
    for size, (r, c) in sizes.items():
        for name in names:
            ref = _np_reference(name)
            if ref is None:
                continue
            x, y = _data(name, r, c, rng)
            loss = pl.get_loss(name)
            kw = _polyloss_kwargs(name)
            progress(f"numpy {name} {size}")
            t_ref = _median_time(lambda: ref(x, y), repeat)
            t_pl = _median_time(lambda: loss(x, y, **kw), repeat)
            rows.append(Row(name, "numpy", size, "forward", "default", t_pl, t_ref, None))
    return rows


def import_time(repeat: int = 5) -> dict[str, float]:
    """Median wall time of ``import numpy`` and ``import polyloss`` in fresh interpreters."""
    def median(code: str) -> float:
        times = []
        for _ in range(repeat):
            out = subprocess.run(
                [sys.executable, "-c", f"import time; t = time.perf_counter(); {code}; "
                 "print(time.perf_counter() - t)"],
                capture_output=True, text=True, check=True,
            )
            times.append(float(out.stdout))
        return statistics.median(times)

    numpy_s = median("import numpy")
    polyloss_s = median("import numpy, polyloss")
    return {"numpy_s": numpy_s, "polyloss_s": polyloss_s, "polyloss_over_numpy_ms": 1e3 * (polyloss_s - numpy_s)}


def format_table(rows: list[Row]) -> str:
    lines = [f"{'loss':<34}{'backend':<8}{'size':<7}{'mode':<18}{'threads':<12}{'ratio':>8}{'generic':>9}"
             f"{'overhead us':>13}"]
    for row in rows:
        generic = "" if row.generic_ratio is None else f"{row.generic_ratio:.2f}"
        overhead = 1e6 * (row.polyloss_s - row.reference_s)
        lines.append(f"{row.loss:<34}{row.backend:<8}{row.size:<7}{row.mode:<18}{row.threads:<12}"
                     f"{row.ratio:>8.2f}{generic:>9}{overhead:>13.2f}")
    return "\n".join(lines)


def run(*, full: bool = False, tiny_only: bool = False, backends: list[str] | None = None, names: list[str] | None = None,
        repeat: int = 7, json_path: str | None = None, progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Run the benchmark; returns the results dict (also written as JSON to ``json_path``)."""
    names = names or [n for n in pl.losses() if _np_reference(n) or n in ("multi_margin_loss", "sigmoid_focal_loss")]
    sizes = {"tiny": (8, 5)} if tiny_only else {"tiny": (8, 5), "large": (1024, 1024)}
    report = progress or (lambda message: None)
    backends = backends or ["numpy", "torch"]
    rows: list[Row] = []
    if "numpy" in backends:
        rows += bench_numpy(names, sizes, repeat=repeat, progress=report)
    if "torch" in backends:
        try:
            import torch  # noqa: F401
        except ImportError:
            report("torch is not installed: skipped")
        else:
            rows += bench_torch(names, sizes, repeat=repeat, threads=[1, None], progress=report)
            if full:
                rows += bench_torch(["cross_entropy"], {"65536x1000": (65536, 1000)}, repeat=3, threads=[None],
                                    progress=report)
    result = {"rows": [asdict(r) | {"ratio": r.ratio, "generic_ratio": r.generic_ratio} for r in rows],
              "import": import_time(repeat=1 if tiny_only else 5), "table": format_table(rows)}
    if json_path:
        with open(json_path, "w") as fh:
            json.dump({k: v for k, v in result.items() if k != "table"}, fh, indent=1)
    return result
