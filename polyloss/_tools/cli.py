"""``python -m polyloss``: list what is registered, check that backends agree, bench, demo, plot.

Every argument is checked before any work starts. Exit status:

- 0: done (``check``: every backend agrees);
- 1: ``check`` found a disagreement, or had nothing to check;
- 2: usage error (unknown command, loss, recipe or backend; a bad option value;
  an output file that cannot be written), one line on stderr;
- 3: a named backend is registered but cannot run here (its library is not
  installed, or it has no usable device), or matplotlib is missing for a plot;
- 141: stdout was closed early (``python -m polyloss list | head -1``), quietly.

Backends are named as in ``pl.backends()`` (plugins included), plus
``array_api_strict`` (the array API's reference library, run through the
generic backend); ``strict`` is accepted as an alias of ``array_api_strict``.
"""

from __future__ import annotations

import argparse
import difflib
import importlib
import importlib.util
import io
import os
import sys
from collections.abc import Sequence
from typing import Any

import numpy as np

from polyloss._tools._args import int_at_least
from polyloss._tools._args import output_file
from polyloss._tools._args import positive_float

EXIT_OK = 0
EXIT_DISAGREE = 1
EXIT_USAGE = 2
EXIT_UNAVAILABLE = 3
EXIT_BROKEN_PIPE = 141  # 128 + SIGPIPE, what a tool killed by a closed pipe reports

#: the array API's reference library: no backend plugin, the generic backend runs it
STRICT = "array_api_strict"
#: other spellings accepted on the command line
ALIASES = {"strict": STRICT}


#: the exit statuses and backend names of the module docstring, under ``--help``
_EPILOG = (__doc__ or "").partition("\n\n")[2].replace("``", "")


class UsageError(Exception):
    """A bad command line: one line on stderr, exit status 2."""

    exit_code = EXIT_USAGE

    def __init__(self, message: str, prog: str | None = None) -> None:
        super().__init__(message)
        self.prog = prog


class Unavailable(UsageError):
    """Something the command line names cannot run here: exit status 3."""

    exit_code = EXIT_UNAVAILABLE


class _Parser(argparse.ArgumentParser):
    """``argparse`` whose errors are :class:`UsageError` (one line, no usage dump, no exit inside ``main``)."""

    def error(self, message: str) -> Any:  # argparse's signature says NoReturn
        raise UsageError(message, self.prog)


# -- backends ----------------------------------------------------------------------------------------


def backend_names() -> list[str]:
    """Every backend name the tools accept: the registry's (plugins included) and ``array_api_strict``."""
    import polyloss as pl

    return sorted({*pl.backends(), STRICT})


def _backend_name(value: str) -> str:
    return ALIASES.get(value, value)


def backend_unavailable(name: str) -> str | None:
    """Why backend ``name`` cannot run here (its library is missing), or None when it can."""
    import polyloss as pl

    if name == STRICT:
        return None if importlib.util.find_spec(STRICT) is not None else f"{STRICT} is not installed"
    backend = pl.get_backend(name)
    if not backend.available():
        return f"{backend.module_name or name} is not installed"
    return None


def _require_backend(name: str) -> None:
    reason = backend_unavailable(name)
    if reason is not None:
        raise Unavailable(f"backend {name!r} is registered but cannot run here: {reason}")


def _unique(items: Sequence[str] | None) -> list[str]:
    return list(dict.fromkeys(items or ()))


# -- list --------------------------------------------------------------------------------------------


def _library_state(module_name: str, version: Any) -> str:
    try:
        importlib.import_module(module_name)
    except Exception as exc:  # installed but broken (e.g. a GPU library without its driver)
        return f"import fails: {type(exc).__name__}"
    return f"{module_name} {version()}"


def cmd_list(args: argparse.Namespace) -> int:
    import polyloss as pl
    from polyloss._registry import registry

    print("backends:")
    for name in pl.backends():
        backend = pl.get_backend(name)
        plugin, dist = registry.provider("backend", name)
        module = backend.module_name or name
        state = _library_state(module, backend.version) if backend.available() else "not installed"
        print(f"  {name:<16} {state:<28} from {dist or plugin}")
    if STRICT not in pl.backends():
        state = "not installed"
        if importlib.util.find_spec(STRICT) is not None:
            state = _library_state(STRICT, lambda: getattr(sys.modules[STRICT], "__version__", "unknown"))
        print(f"  {STRICT:<16} {state:<28} generic array-API backend")
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


# -- check -------------------------------------------------------------------------------------------


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


def _case_backend(case: Any, by_module: dict[str, str]) -> str:
    """The backend name a test case's arrays belong to."""
    top: str = case.library.split(".")[0]
    return STRICT if top == STRICT else by_module.get(top, top)


def _plugin_case(name: str) -> Any:
    """A float32 case for a backend with no case of its own (a plugin's library such as JAX)."""
    import polyloss as pl
    from polyloss.testing.cases import Case

    return Case(f"{name}-f32", pl.get_backend(name).xp.__name__, "float32", rtol=2e-5, atol=1e-6)


def check_cases(backends: Sequence[str] | None) -> tuple[list[Any], list[str]]:
    """``(cases to run, notes on cases skipped)`` for the named backends (None: every one installed).

    Raises :class:`Unavailable` when a named backend cannot run at all here.
    """
    import polyloss as pl
    from polyloss.testing.cases import available_cases

    by_module: dict[str, str] = {}
    for name in pl.backends():
        by_module.setdefault(pl.get_backend(name).module_name or name, name)
    known = available_cases()
    selected = list(backends or backend_names())
    notes: list[str] = []
    for name in selected:
        reason = backend_unavailable(name)
        if reason is not None:
            if backends:
                raise Unavailable(f"backend {name!r} is registered but cannot run here: {reason}")
            notes.append(f"{name} ({reason})")
    ready = [name for name in selected if backend_unavailable(name) is None]
    # (backend, case, reason skipped or None) in the order of available_cases(): numpy first
    mine = [(owner, case, why) for case, why in known if (owner := _case_backend(case, by_module)) in ready]
    # a plugin's backend with no case of its own (see polyloss.testing.register_case) gets a float32 one
    covered = {owner for owner, _, _ in mine}
    mine += [(name, _plugin_case(name), None) for name in ready if name not in covered]
    if backends:
        for name in ready:
            whys = [why for owner, _, why in mine if owner == name]
            if all(whys):
                reasons = "; ".join(dict.fromkeys(str(why) for why in whys))
                raise Unavailable(f"backend {name!r} is registered but cannot run here: {reasons}")
    cases = [case for _, case, why in mine if why is None]
    notes += [f"{case.name} ({why})" for _, case, why in mine if why is not None]
    return cases, notes


def _count(n: int, one: str, many: str) -> str:
    return f"{n} {one if n == 1 else many}"


def _check_names(names: Sequence[str]) -> None:
    import polyloss as pl

    known = [*pl.losses(), *pl.recipes()]
    for name in names:
        if name not in known:
            close = difflib.get_close_matches(name, known, n=1, cutoff=0.8)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise UsageError(f"unknown loss or recipe {name!r}{hint}; 'python -m polyloss list' shows every name")


def cmd_check(args: argparse.Namespace) -> int:
    import polyloss as pl
    from polyloss._samples import recipe_sample
    from polyloss._samples import sample

    requested = _unique(args.losses)
    _check_names(requested)
    cases, skipped = check_cases(_unique(args.backend))
    names = [n for n in pl.losses() if not requested or n in requested]
    recipe_names = [n for n in pl.recipes() if not requested or n in requested]
    header = f"{'loss / recipe':<34}" + "".join(f"{c.name:>18}" for c in cases)
    print("relative difference from float64 NumPy; ok when below each dtype's tolerance")
    if skipped:
        print(f"skipped here: {', '.join(skipped)}")
    print(header)
    print("-" * len(header))
    progress = Progress(len(names) + len(recipe_names), enabled=False if args.quiet else None)
    agree = True
    checked = 0
    no_sample: list[str] = []
    no_dependency: list[str] = []
    for name in names:
        progress(name)
        data = sample(name)
        if data is None:
            no_sample.append(name)
            print(f"{name:<34}" + "no built-in sample".rjust(18))
            continue
        arrays, options = data
        loss = pl.get_loss(name)
        reference = np.asarray(loss(*arrays, **options), dtype=float)
        row, ok = _agreement_row(
            name, cases, lambda case: case.to_numpy(loss(*[case.asarray(a) for a in arrays], **{
                k: case.asarray(v) if isinstance(v, np.ndarray) else v for k, v in options.items()})), reference
        )
        agree, checked = agree and ok, checked + 1
        print(row)
    for name in recipe_names:
        progress(name)
        made = recipe_sample(name)
        if made is None:
            no_sample.append(name)
            print(f"{'recipe ' + name:<34}" + "no built-in sample".rjust(18))
            continue
        config, run = made
        try:
            reference = _recipe_values(run(pl.get_recipe(name, **config), np.asarray), np.asarray)
        except ImportError as err:  # an optional dependency of the recipe (SciPy for "detr")
            no_dependency.append(f"{name} ({err.name or 'a package'} is not installed)")
            print(f"{'recipe ' + name:<34}" + "needs a missing package".rjust(18))
            continue
        row, ok = _agreement_row(
            f"recipe {name}", cases,
            lambda case: _recipe_values(run(pl.get_recipe(name, **config), case.asarray), case.to_numpy), reference,
        )
        agree, checked = agree and ok, checked + 1
        print(row)
    progress.close()
    unchecked = f"; not checked (no built-in sample): {', '.join(no_sample)}" if no_sample else ""
    if no_dependency:
        unchecked += f"; not checked (missing dependency): {', '.join(no_dependency)}"
    if not checked:
        print(f"nothing checked: no built-in sample for {', '.join(no_sample)}", file=sys.stderr)
        return EXIT_DISAGREE
    if not agree:
        print(f"some backends DISAGREE{unchecked}")
        return EXIT_DISAGREE
    print(f"all backends agree: {_count(checked, 'loss or recipe', 'losses and recipes')} on "
          f"{_count(len(cases), 'backend case', 'backend cases')}{unchecked}")
    return EXIT_OK


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


# -- bench, demo --------------------------------------------------------------------------------------


def cmd_bench(args: argparse.Namespace) -> int:
    import polyloss as pl
    from polyloss._tools import bench as _bench

    requested = _unique(args.losses)
    for name in requested:
        if name not in pl.losses():
            _check_names([name])  # an unknown name
            raise UsageError(f"bench takes loss names; {name!r} is a recipe (recipes are timed unless --tiny)")
        if _bench._np_reference(name) is None and name not in _bench.TORCH_ONLY:
            raise UsageError(f"no benchmark reference for loss {name!r}")
    for name in _unique(args.backend):
        _require_backend(name)
    progress = Progress(enabled=False if args.quiet else None)
    result = _bench.run(full=args.full, tiny_only=args.tiny, backends=_unique(args.backend) or None,
                        names=requested or None, repeat=args.repeat, json_path=args.json, progress=progress,
                        system_malloc=args.system_malloc)
    progress.close()
    print("ratio = polyloss / reference (median of repeats; < 1 is faster); generic = fast paths off / reference")
    print(result["table"])
    if result.get("value_and_grad_table"):
        print()
        print("value_and_grad on NumPy against hand-written fused NumPy: ratio = time / time, memory = peak / peak")
        print(result["value_and_grad_table"])
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
    if result["second_table"]:
        print()
        print("second set: forward+backward, ratio = polyloss / reference; segmentation single-threaded with the "
              "peak memory of one step (polyloss / reference, fresh interpreters); CTC = NumPy value_and_grad")
        print(result["second_table"])
    print(f"allocator: {result['machine']['allocator']}")
    imp = result["import"]
    print(f"import polyloss on top of numpy: {imp['polyloss_over_numpy_ms']:.1f} ms")
    if args.json:
        print(f"wrote {args.json}")
    return EXIT_OK


def cmd_demo(args: argparse.Namespace) -> int:
    from polyloss._tools.demo import run_demo

    _require_backend(args.backend)
    if args.plot is not None and importlib.util.find_spec("matplotlib") is None:
        raise Unavailable(f"--plot needs matplotlib (pip install matplotlib): cannot write {args.plot!r}")
    result = run_demo(args.backend, args.steps, args.model, args.loss, args.seed, args.plot,
                      lr=args.lr, progress=io.StringIO() if args.quiet else None)
    print(f"first-step loss {result.losses[0]:.6f}, last {result.losses[-1]:.6f}, "
          f"training accuracy {result.accuracy:.3f}")
    return EXIT_OK


# -- parser and entry point --------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    import polyloss
    from polyloss._tools import plot as _plot
    from polyloss._tools.demo import LOSSES
    from polyloss._tools.demo import MODELS

    backends = backend_names()
    parser = _Parser(prog="python -m polyloss",
                     description="List what is registered, check that backends agree, bench, demo, plot.",
                     epilog=_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"polyloss {polyloss.__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    p_list = sub.add_parser("list", help="list backends (with versions), losses, recipes and failed plugins")
    p_list.set_defaults(func=cmd_list)
    p_check = sub.add_parser("check", help="run every loss and recipe on every installed backend on sample data")
    p_check.add_argument("losses", nargs="*", metavar="NAME", help="loss or recipe names (default: all registered)")
    p_check.add_argument("--quiet", action="store_true", help="no progress line")
    p_check.add_argument("--backend", action="append", type=_backend_name, choices=backends,
                         help="restrict to these backends (repeatable; default: every one installed)")
    p_check.set_defaults(func=cmd_check)
    p_bench = sub.add_parser("bench", help="speed ratios against torch.nn.functional and hand-written NumPy")
    p_bench.add_argument("losses", nargs="*", metavar="NAME",
                         help="loss names (default: every loss with a reference)")
    p_bench.add_argument("--backend", action="append", type=_backend_name, choices=("numpy", "torch"),
                         help="repeatable")
    p_bench.add_argument("--full", action="store_true", help="also cross-entropy at 65536 x 1000")
    p_bench.add_argument("--tiny", action="store_true",
                         help="only the per-call overhead size (quick; no recipes, no memory)")
    p_bench.add_argument("--repeat", type=int_at_least(1), default=7, help="timing repeats (median is reported)")
    p_bench.add_argument("--json", metavar="FILE", type=output_file, help="also write the results as JSON")
    p_bench.add_argument("--quiet", action="store_true", help="no progress line")
    p_bench.add_argument("--system-malloc", action="store_true",
                         help="keep glibc's default thresholds (by default freed memory stays in the heap)")
    p_bench.set_defaults(func=cmd_bench)
    p_demo = sub.add_parser("demo", help="train a small model with closed-form gradients (no autograd)")
    p_demo.add_argument("--backend", default="numpy", type=_backend_name, choices=backends)
    p_demo.add_argument("--model", default="linear", choices=MODELS)
    p_demo.add_argument("--loss", default="cross_entropy", choices=LOSSES, help="loss of the linear model")
    p_demo.add_argument("--steps", type=int_at_least(1), default=100)
    p_demo.add_argument("--lr", type=positive_float, default=0.5)
    p_demo.add_argument("--seed", type=int_at_least(0), default=0)
    p_demo.add_argument("--plot", metavar="FILE.png", type=output_file,
                        help="save the loss curve (needs matplotlib)")
    p_demo.add_argument("--quiet", action="store_true", help="no progress bar")
    p_demo.set_defaults(func=cmd_demo)
    p_plot = sub.add_parser("plot", help="draw losses against their input, with their gradients (needs matplotlib)")
    _plot.add_arguments(p_plot)
    p_plot.set_defaults(func=_plot.cmd_plot)
    for subparser in sub.choices.values():
        subparser.set_defaults(prog=subparser.prog)
    return parser


def _run(argv: Sequence[str] | None) -> int:
    parser = build_parser()
    prog = parser.prog
    try:
        args = parser.parse_args(argv)
        prog = args.prog
        code = int(args.func(args))
    except UsageError as exc:
        sys.stdout.flush()
        print(f"{exc.prog or prog}: error: {exc}", file=sys.stderr)
        return exc.exit_code
    sys.stdout.flush()  # a closed pipe shows here, inside the handler of main()
    return code


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status (``--help`` and ``--version`` return 0)."""
    try:
        return _run(argv)
    except SystemExit as exc:  # --help, --version
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else EXIT_USAGE)
    except BrokenPipeError:
        # the reader went away (``| head``): no traceback; point stdout at devnull so that the
        # interpreter's final flush does not fail again
        try:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
        except (OSError, ValueError, io.UnsupportedOperation):
            pass
        return EXIT_BROKEN_PIPE


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
