"""Property tests (hypothesis) over every registered loss and every backend.

For valid inputs drawn by :mod:`_loss_specs` (including logits up to 1e4):

* every backend (numpy, array-api-strict incl. strictest flags and a second device,
  torch float64 / float32 with fast paths on and off) gives the NumPy float64 value
  within a dtype tolerance scaled by the size of the inputs;
* values are finite, and non-negative where the math says so;
* ``"sum"`` equals the sum of ``"none"``, and ``"mean" * count == "sum"`` with the
  count polyloss documents (elements, non-ignored samples, the weight sum; 0 when the count is 0);
* the loss is zero at a perfect prediction;
* torch gradients (float64 and float32, fast paths on and off) are finite.

Examples per test and loss: the hypothesis profile (``ci``: 30; ``HYPOTHESIS_PROFILE=long``: 1000).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from _loss_specs import KNOWN
from _loss_specs import POWER
from _loss_specs import mean_count
from _loss_specs import none_shape
from _loss_specs import nonnegative_elementwise
from _loss_specs import perfect_case
from _loss_specs import valid_case
from hypothesis import given
from hypothesis import strategies as st

import polyloss as pl
from polyloss.testing.cases import Case
from polyloss.testing.cases import available_cases
from polyloss.testing.plugin import LAZY_CASES

# lazy cases (dask) run with --xp-lazy in the xp-fixture tests; a hypothesis loop over them would take hours
CASES: list[Case] = [case for case, reason in available_cases() if reason is None and case.name not in LAZY_CASES]
TORCH_CASES = [case for case in CASES if case.is_torch]
LOSSES = [name for name in pl.losses() if name in KNOWN]
# float64 backends agree to ~1e-12 of the input scale; float32 to ~1e-5 (about 170 float32 ulps)
EPS = {"float64": 1e-11, "float32": 1e-5}


def test_every_registered_loss_has_a_strategy():
    from functional._second_set_rows import SECOND_SET_LOSSES  # checked against their references there

    missing = sorted(set(pl.losses()) - set(KNOWN) - set(SECOND_SET_LOSSES))
    assert not missing, f"add a strategy for {missing} to tests/_loss_specs.py"


def _reductions(name: str) -> list[str]:
    return ["none", "sum", "mean", "batchmean"] if name == "kl_div" else ["none", "sum", "mean"]


def _scale(name: str, x: np.ndarray, y: np.ndarray, opts: dict[str, Any]) -> float:
    """Size of the loss values (and so of their rounding errors) for these inputs."""
    m = 1.0 + max((float(np.max(np.abs(a), initial=0.0)) for a in (x, np.asarray(y, dtype=float))), default=0.0)
    w = 1.0
    for key in ("weight", "pos_weight", "alpha"):
        if isinstance(opts.get(key), np.ndarray):
            w *= 1.0 + float(np.max(np.abs(opts[key]), initial=0.0))
    return w * m ** POWER.get(name, 1) * max(1, x.size)


def _call(case: Case, name: str, x: np.ndarray, y: np.ndarray, opts: dict[str, Any], reduction: str,
          *, fast: bool = True, requires_grad: bool = False) -> tuple[Any, Any]:
    options = {k: case.asarray(v) if isinstance(v, np.ndarray) else v for k, v in opts.items()}
    options["reduction"] = reduction
    xin = case.asarray(x, requires_grad=requires_grad)
    with pl.fast_paths(fast):
        return pl.get_loss(name)(xin, case.asarray(y), **options), xin


def _values(case: Case, name: str, x: np.ndarray, y: np.ndarray, opts: dict[str, Any], *,
            fast: bool = True) -> dict[str, np.ndarray]:
    out = {}
    with case.active():
        for reduction in _reductions(name):
            value, _ = _call(case, name, x, y, opts, reduction, fast=fast)
            out[reduction] = case.to_numpy(value)
    return out


def _variants() -> list[tuple[Case, bool]]:
    return [(case, True) for case in CASES] + [(case, False) for case in TORCH_CASES]


@pytest.mark.parametrize("name", LOSSES)
@given(data=st.data())
def test_backends_agree_reductions_consistent_nonnegative(name, data):
    x, y, opts = data.draw(valid_case(name))
    opts.pop("reduction", None)
    scale = _scale(name, x, y, opts)
    with np.errstate(over="raise", invalid="raise", divide="raise"):
        ref = _values(CASES[0], name, x, y, opts)
    # float64 NumPy: finite, non-negative, and the reductions consistent with each other
    tiny = EPS["float64"] * scale
    for reduction, value in ref.items():
        assert np.all(np.isfinite(value)), (reduction, value)
        if reduction == "none" and not nonnegative_elementwise(name):
            continue
        assert np.all(value >= -tiny), (reduction, value)
    assert ref["none"].shape == _expected_none_shape(name, x, y, opts)
    np.testing.assert_allclose(ref["sum"], np.sum(ref["none"]), rtol=1e-12, atol=tiny)
    for reduction in ("mean", "batchmean") if name == "kl_div" else ("mean",):
        count = mean_count(name, x, y, {**opts, "reduction": reduction}, ref["none"])
        expected = ref["sum"] / count if count > 0 else 0.0
        np.testing.assert_allclose(ref[reduction], expected, rtol=1e-10, atol=tiny, err_msg=f"{reduction} x {count}")
    # every backend (and torch's generic path) gives the same numbers
    for case, fast in _variants():
        got = _values(case, name, x, y, opts, fast=fast)
        tol = EPS[case.dtype_name] * scale
        for reduction, value in got.items():
            assert value.shape == ref[reduction].shape, (case.name, reduction)
            assert np.all(np.isfinite(value)), (case.name, fast, reduction, value)
            np.testing.assert_allclose(value, ref[reduction], rtol=EPS[case.dtype_name] * 10, atol=tol,
                                       err_msg=f"{case.name} fast={fast} reduction={reduction}")


def _expected_none_shape(name: str, x: np.ndarray, y: np.ndarray, opts: dict[str, Any]) -> tuple[int, ...]:
    if none_shape(name, x, y, opts) is not None:
        return none_shape(name, x, y, opts)
    if name in ("cross_entropy", "nll_loss", "softmax_focal_loss", "multi_margin_loss"):
        axis = opts.get("axis", -1) % x.ndim
        return x.shape[:axis] + x.shape[axis + 1:]
    if name.endswith("iou_loss"):
        return x.shape[:-1]
    return x.shape


@pytest.mark.parametrize("name", LOSSES)
@given(data=st.data())
def test_zero_at_a_perfect_prediction(name, data):
    x, y, opts = data.draw(perfect_case(name))
    opts.pop("reduction", None)
    scale = _scale(name, x, y, opts)
    floor = 0.0
    if name.endswith("iou_loss") and x.size:
        # torchvision semantics: IoU = inter / (union + eps), so a perfect box pair leaves ~eps / area
        area = (x[..., 2] - x[..., 0]) * (x[..., 3] - x[..., 1])
        floor = 10 * 1e-7 / float(np.min(area)) * area.size
    for case, fast in _variants():
        got = _values(case, name, x, y, opts, fast=fast)
        for reduction, value in got.items():
            np.testing.assert_allclose(value, 0.0, atol=EPS[case.dtype_name] * scale + floor,
                                       err_msg=f"{case.name} fast={fast} reduction={reduction}")


@pytest.mark.parametrize("name", LOSSES)
@given(data=st.data(), perfect=st.booleans())
def test_torch_gradients_are_finite(name, data, perfect):
    torch = pytest.importorskip("torch")
    x, y, opts = data.draw(perfect_case(name) if perfect else valid_case(name))
    opts.pop("reduction", None)
    for case in TORCH_CASES:
        for fast in (True, False):
            for reduction in ("sum", "mean"):
                out, xin = _call(case, name, x, y, opts, reduction, fast=fast, requires_grad=True)
                out.backward()
                assert torch.isfinite(out), (case.name, fast, reduction, out)
                assert xin.grad is not None and bool(torch.isfinite(xin.grad).all()), (case.name, fast, reduction)
