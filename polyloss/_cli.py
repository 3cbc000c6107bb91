"""``python -m polyloss``: list what is registered, check that backends agree."""

from __future__ import annotations

import argparse
import importlib.util
import io
import sys
from collections.abc import Sequence
from typing import Any

import numpy as np

EXIT_OK = 0
EXIT_DISAGREE = 1
EXIT_USAGE = 2

_CHECK_LIBRARIES = ("numpy", "array_api_strict", "torch", "cupy")


def _installed_cases() -> list[Any]:
    from polyloss.testing.cases import available_cases

    return [case for case, reason in available_cases() if reason is None]


def cmd_list(args: argparse.Namespace) -> int:
    import polyloss as pl
    from polyloss._registry import registry

    print("backends:")
    for name in pl.backends():
        backend = pl.get_backend(name)
        plugin, dist = registry.provider("backend", name)
        if backend.available():
            importlib.import_module(backend.module_name or name)
            state = f"{backend.module_name} {backend.version()}"
        else:
            state = "not installed"
        print(f"  {name:<12} {state:<28} from {dist or plugin}")
    print("losses:")
    for name in pl.losses():
        plugin, dist = registry.provider("loss", name)
        print(f"  {name:<34} from {dist or plugin}")
    print("recipes:")
    for name in pl.recipes():
        plugin, dist = registry.provider("recipe", name)
        print(f"  {name:<34} from {dist or plugin}")
    if registry.failures:
        print("plugins that failed to load:")
        for failure in registry.failures:
            print(f"  {failure.plugin} ({failure.distribution}): {failure.error}")
    return EXIT_OK


def _relative_difference(a: np.ndarray, b: np.ndarray) -> float:
    scale = max(float(np.max(np.abs(b))) if b.size else 0.0, 1e-300)
    return float(np.max(np.abs(a - b))) / scale if a.size else 0.0


def _agreement_row(label: str, cases: list[Any], compute: Any, reference: np.ndarray) -> tuple[str, bool]:
    """One table row: the relative difference of ``compute(case)`` from ``reference`` per case."""
    row = f"{label:<34}"
    all_ok = True
    for case in cases:
        with case.active():
            try:
                value = np.asarray(compute(case), dtype=float)
                diff = _relative_difference(value, reference)
                ok = diff <= max(case.rtol, 1e-12) * 10
                cell = f"{diff:.1e} {'ok' if ok else 'FAIL'}"
            except Exception as exc:
                ok = False
                cell = f"error {type(exc).__name__}"
        all_ok = all_ok and ok
        row += f"{cell:>18}"
    return row, all_ok


def _recipe_values(result: Any, to_numpy: Any) -> np.ndarray:
    parts = [result.total, *result.components.values()]
    return np.array([float(to_numpy(p)) for p in parts])


def cmd_check(args: argparse.Namespace) -> int:
    import polyloss as pl
    from polyloss._samples import recipe_sample
    from polyloss._samples import sample

    cases = [c for c in _installed_cases() if args.backend is None or c.library in args.backend]
    names = args.losses or pl.losses()
    recipe_names = [n for n in pl.recipes() if not args.losses or n in args.losses]
    names = [n for n in names if n in pl.losses()]
    header = f"{'loss / recipe':<34}" + "".join(f"{c.name:>18}" for c in cases)
    print("relative difference from float64 NumPy; ok when below each dtype's tolerance")
    print(header)
    print("-" * len(header))
    progress = Progress(len(names) + len(recipe_names), enabled=False if args.quiet else None)
    agree = True
    for name in names:
        progress(name)
        data = sample(name)
        if data is None:
            print(f"{name:<34}" + "no built-in sample".rjust(18))
            continue
        x, y, options = data
        loss = pl.get_loss(name)
        reference = np.asarray(loss(x, y, **options), dtype=float)
        row, ok = _agreement_row(
            name, cases, lambda case: case.to_numpy(loss(case.asarray(x), case.asarray(y), **{
                k: case.asarray(v) if isinstance(v, np.ndarray) else v for k, v in options.items()})), reference
        )
        agree = agree and ok
        print(row)
    for name in recipe_names:
        progress(name)
        made = recipe_sample(name)
        if made is None:
            print(f"{'recipe ' + name:<34}" + "no built-in sample".rjust(18))
            continue
        config, run = made
        reference = _recipe_values(run(pl.get_recipe(name, **config), np.asarray), np.asarray)
        row, ok = _agreement_row(
            f"recipe {name}", cases,
            lambda case: _recipe_values(run(pl.get_recipe(name, **config), case.asarray), case.to_numpy), reference,
        )
        agree = agree and ok
        print(row)
    progress.close()
    print("all backends agree" if agree else "some backends DISAGREE")
    return EXIT_OK if agree else EXIT_DISAGREE


class Progress:
    """A one-line progress indicator on stderr (silent when stderr is not a terminal unless forced)."""

    def __init__(self, total: int | None = None, *, enabled: bool | None = None) -> None:
        self.total = total
        self.count = 0
        self.enabled = sys.stderr.isatty() if enabled is None else enabled

    def __call__(self, message: str) -> None:
        self.count += 1
        if not self.enabled:
            return
        done = f"[{self.count}/{self.total}]" if self.total else f"[{self.count}]"
        sys.stderr.write(f"\r\033[K{done} {message}")
        sys.stderr.flush()

    def close(self) -> None:
        if self.enabled:
            sys.stderr.write("\r\033[K")
            sys.stderr.flush()


def cmd_bench(args: argparse.Namespace) -> int:
    from polyloss import _bench

    progress = Progress(enabled=False if args.quiet else None)
    result = _bench.run(full=args.full, tiny_only=args.tiny, backends=args.backend, names=args.losses or None,
                        repeat=args.repeat, json_path=args.json, progress=progress, system_malloc=args.system_malloc)
    progress.close()
    print("ratio = polyloss / reference (median of repeats; < 1 is faster); generic = fast paths off / reference")
    print(result["table"])
    if result["recipe_table"]:
        print()
        print("detector recipes: median ms per call; vs torchvision = polyloss / torchvision; "
              "numpy/torch(1), numpy/torch(best) = numpy forward / torch forward single-threaded, fastest")
        print(result["recipe_table"])
    elif not args.tiny:
        print("torchvision comparison unavailable"
              + ("" if result["torchvision"] else ": torchvision is not installed (or cannot be imported)"))
    if result["memory_table"]:
        print()
        print(result["memory_table"])
    print(f"allocator: {result['machine']['allocator']}")
    imp = result["import"]
    print(f"import polyloss on top of numpy: {imp['polyloss_over_numpy_ms']:.1f} ms")
    if args.json:
        print(f"wrote {args.json}")
    return EXIT_OK


def cmd_demo(args: argparse.Namespace) -> int:
    from polyloss._demo import run_demo

    try:
        result = run_demo(args.backend, args.steps, args.model, args.loss, args.seed, args.plot,
                          lr=args.lr, progress=io.StringIO() if args.quiet else sys.stderr)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    print(f"first-step loss {result.losses[0]:.6f}, last {result.losses[-1]:.6f}, "
          f"training accuracy {result.accuracy:.3f}")
    return EXIT_OK


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m polyloss", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    p_list = sub.add_parser("list", help="list backends (with versions), losses, recipes and failed plugins")
    p_list.set_defaults(func=cmd_list)
    p_check = sub.add_parser("check", help="run every loss and recipe on every installed backend on sample data")
    p_check.add_argument("losses", nargs="*", help="loss or recipe names (default: all registered)")
    p_check.add_argument("--quiet", action="store_true", help="no progress line")
    p_check.add_argument("--backend", action="append", choices=_CHECK_LIBRARIES,
                         help="restrict to these libraries (repeatable)")
    p_check.set_defaults(func=cmd_check)
    p_bench = sub.add_parser("bench", help="speed ratios against torch.nn.functional and hand-written NumPy")
    p_bench.add_argument("losses", nargs="*", help="loss names (default: every loss with a reference)")
    p_bench.add_argument("--backend", action="append", choices=("numpy", "torch"), help="repeatable")
    p_bench.add_argument("--full", action="store_true", help="also cross-entropy at 65536 x 1000")
    p_bench.add_argument("--tiny", action="store_true",
                         help="only the per-call overhead size (quick; no recipes, no memory)")
    p_bench.add_argument("--repeat", type=int, default=7, help="timing repeats (median is reported)")
    p_bench.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    p_bench.add_argument("--quiet", action="store_true", help="no progress line")
    p_bench.add_argument("--system-malloc", action="store_true",
                         help="keep glibc's default thresholds (by default freed memory stays in the heap)")
    p_bench.set_defaults(func=cmd_bench)
    p_demo = sub.add_parser("demo", help="train a small model with closed-form gradients (no autograd)")
    p_demo.add_argument("--backend", default="numpy", choices=("numpy", "torch", "strict"))
    p_demo.add_argument("--model", default="linear", choices=("linear", "yolov1"))
    p_demo.add_argument("--loss", default="cross_entropy", help="loss of the linear model")
    p_demo.add_argument("--steps", type=int, default=100)
    p_demo.add_argument("--lr", type=float, default=0.5)
    p_demo.add_argument("--seed", type=int, default=0)
    p_demo.add_argument("--plot", metavar="FILE.png", help="save the loss curve (needs matplotlib)")
    p_demo.add_argument("--quiet", action="store_true", help="no progress bar")
    p_demo.set_defaults(func=cmd_demo)
    from polyloss import _plot

    p_plot = sub.add_parser("plot", help="draw losses against their input, with their gradients (needs matplotlib)")
    _plot.add_arguments(p_plot)
    p_plot.set_defaults(func=_plot.cmd_plot)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
