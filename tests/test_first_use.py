"""First use of polyloss from ``torch.compile(fullgraph=True)``, ``torch.func`` and threads, in fresh processes.

A loss compiled with ``fullgraph=True`` must trace when it is the process's
first polyloss call (cold registry, cold type -> backend cache: the registry's
lock and the pluggy hook calls must stay out of the trace), give the eager
value, and not be compiled again on its second call (the trace must not guard
on a cache that its own first call fills).

Each loss is compiled before it is ever called eagerly. The losses run in two
processes (started together, one per core) whose first polyloss call is the
compiled call of the first loss of the list; every later loss is compiled as
its own first call in the same process. The dynamo backend is ``"eager"``:
what is tested (tracing, guards, recompilation) is dynamo's; inductor would
only add minutes of code generation. Four more processes check a first call
under ``torch.func.grad``, under ``torch.vmap``, and from 8 threads at once
(eager, and a shared compiled function).
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.skipif(importlib.util.find_spec("torch") is None, reason="torch is not installed")

ROOT = Path(__file__).resolve().parents[1]

LOSSES = [
    "mse_loss", "l1_loss", "smooth_l1_loss", "huber_loss", "binary_cross_entropy",
    "binary_cross_entropy_with_logits", "cross_entropy", "nll_loss", "kl_div", "hinge_loss",
    "squared_hinge_loss", "multi_margin_loss", "sigmoid_focal_loss", "softmax_focal_loss",
    "iou_loss", "giou_loss", "diou_loss", "ciou_loss",
]
# each process's first polyloss call is the compiled call of its first loss
CHUNKS = (LOSSES[0::2], LOSSES[1::2])

COMPILE_CHILD = r"""
import json, sys
import torch
import polyloss as pl
from polyloss import _namespace
from polyloss._samples import sample

torch._dynamo.config.error_on_recompile = True
assert not _namespace._slots, "a polyloss lookup ran before the first compiled call"


def tensor(value):
    return torch.tensor(value) if hasattr(value, "shape") else value


results = {}
for name in sys.argv[1].split(","):
    arrays, options = sample(name)
    arrays = [tensor(a) for a in arrays]
    options = {key: tensor(value) for key, value in options.items()}
    loss = getattr(pl, name)
    compiled = torch.compile(loss, fullgraph=True, backend="eager")
    result = results[name] = {}
    try:
        first = compiled(*arrays, **options)
    except Exception as exc:
        result["error"] = f"{type(exc).__name__}: {exc}"[:4000]
        continue
    try:
        compiled(*arrays, **options)
    except Exception as exc:  # RecompileError names the guard that failed
        result["recompiled"] = f"{type(exc).__name__}: {exc}"[:4000]
    expected = loss(*arrays, **options)
    result["value"] = float(first)
    result["expected"] = float(expected)
print(json.dumps(results))
"""

OTHER_CHILD = r"""
import json, sys, threading
import torch
import polyloss as pl
from polyloss import _namespace

assert not _namespace._slots, "a polyloss lookup ran before the first call"
mode = sys.argv[1]
gen = torch.Generator().manual_seed(0)
x = torch.randn(6, 4, dtype=torch.float64, generator=gen)
y = torch.randn(6, 4, dtype=torch.float64, generator=gen)
logits = torch.randn(6, 5, dtype=torch.float64, generator=gen)
labels = torch.randint(0, 5, (6,), generator=gen)
F = torch.nn.functional
if mode == "grad":
    got = torch.func.grad(lambda a: pl.cross_entropy(a, labels))(logits)
    leaf = logits.clone().requires_grad_(True)
    (want,) = torch.autograd.grad(F.cross_entropy(leaf, labels), leaf)
elif mode == "vmap":
    got = torch.vmap(pl.mse_loss)(x, y)
    want = ((x - y) ** 2).mean(-1)
elif mode in ("threads", "compiled_threads"):
    if mode == "compiled_threads":
        torch._dynamo.config.error_on_recompile = True
        mse = torch.compile(pl.mse_loss, fullgraph=True, backend="eager")
        ce = torch.compile(pl.cross_entropy, fullgraph=True, backend="eager")
    else:
        mse, ce = pl.mse_loss, pl.cross_entropy
    n = 8
    barrier = threading.Barrier(n)
    out = [None] * n
    errors = []

    def work(i):
        try:
            barrier.wait()  # all eight hit the cold registry and cache at once
            out[i] = ce(logits, labels) if i % 2 else mse(x, y)
        except BaseException as exc:
            errors.append(f"{type(exc).__name__}: {exc}"[:2000])

    threads = [threading.Thread(target=work, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        print(json.dumps({"error": errors[0]}))
        sys.exit(0)
    got = torch.stack(out)
    want = torch.stack([F.cross_entropy(logits, labels) if i % 2 else F.mse_loss(x, y) for i in range(n)])
print(json.dumps({"max_error": float((got - want).abs().max())}))
"""

OTHER_MODES = ("grad", "vmap", "threads", "compiled_threads")


def _start(code: str, arg: str) -> subprocess.Popen[str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))  # this checkout's polyloss
    env.pop("POLYLOSS_PLUGINS", None)
    return subprocess.Popen([sys.executable, "-c", code, arg], cwd=ROOT, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def _finish(process: subprocess.Popen[str]) -> dict:
    try:
        out, err = process.communicate(timeout=600)
    except subprocess.TimeoutExpired:
        process.kill()
        out, err = process.communicate()
    assert process.returncode == 0, f"child failed ({process.returncode}):\n{err[-4000:]}"
    return json.loads(out.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def runs() -> dict[str, dict]:
    """Every child process, started at once; ``{loss or mode: result}``."""
    processes = {",".join(chunk): _start(COMPILE_CHILD, ",".join(chunk)) for chunk in CHUNKS}
    others = {mode: _start(OTHER_CHILD, mode) for mode in OTHER_MODES}
    results: dict[str, dict] = {}
    for process in processes.values():
        results.update(_finish(process))
    for mode, process in others.items():
        results[mode] = _finish(process)
    return results


@pytest.mark.parametrize("name", LOSSES)
def test_first_call_compiles_fullgraph_and_matches_eager(runs, name):
    result = runs[name]
    assert "error" not in result, f"{name} did not compile with fullgraph=True as its first call:\n{result['error']}"
    assert result["value"] == pytest.approx(result["expected"], rel=1e-9, abs=1e-12)


@pytest.mark.parametrize("name", LOSSES)
def test_second_call_does_not_recompile(runs, name):
    result = runs[name]
    assert "error" not in result, result["error"]
    assert "recompiled" not in result, f"{name} was compiled again on its second call:\n{result['recompiled']}"


@pytest.mark.parametrize("mode", OTHER_MODES)
def test_first_call_under_transforms_and_threads(runs, mode):
    result = runs[mode]
    assert "error" not in result, f"first call ({mode}) failed:\n{result['error']}"
    assert result["max_error"] < 1e-12
