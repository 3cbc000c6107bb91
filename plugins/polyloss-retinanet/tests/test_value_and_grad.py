"""What the recipe base class gives a third-party recipe that declares its loss stage: ``value_and_grad`` in
closed form (against torch autograd, on every backend) and the shared edge rules."""

from __future__ import annotations

import math

import numpy as np
import pytest
from polyloss_retinanet import RetinaNetLoss
from test_retinanet import BOX_LOSSES
from test_retinanet import NUM_CLASSES
from test_retinanet import make_batch
from test_retinanet import pad

import polyloss as pl

torch = pytest.importorskip("torch")

PREDICTIONS = ("box_deltas", "class_logits")


def _batch() -> dict[str, np.ndarray]:
    deltas, logits, anchors, gt_boxes, gt_labels = make_batch()
    boxes, labels = pad(gt_boxes, gt_labels)
    return {"box_deltas": deltas, "class_logits": logits, "anchors": anchors, "gt_boxes": boxes, "gt_labels": labels}


def _autograd(recipe: RetinaNetLoss, data: dict[str, np.ndarray]) -> tuple[dict[str, float], dict[str, np.ndarray]]:
    t = {k: torch.tensor(v, requires_grad=k in PREDICTIONS) for k, v in data.items()}
    result = recipe(**t)
    result.total.backward()
    return ({k: float(v.detach()) for k, v in result.components.items()},
            {k: t[k].grad.numpy() for k in PREDICTIONS})


@pytest.mark.parametrize("normalize", ["image", "batch"])
@pytest.mark.parametrize("box_loss", BOX_LOSSES)
def test_value_and_grad_matches_torch_autograd(xp, box_loss, normalize):
    recipe = pl.get_recipe("retinanet", num_classes=NUM_CLASSES, box_loss=box_loss, normalize=normalize,
                           weights={"box_regression": 2.0})
    data = _batch()
    want_values, want_grads = _autograd(recipe, data)
    result, grads = recipe.value_and_grad(**{k: xp.asarray(v) for k, v in data.items()})
    assert set(grads) == set(PREDICTIONS)
    tol = 1e-9 if xp.dtype_name == "float64" else 2e-4
    for name, value in want_values.items():
        assert float(xp.to_numpy(result.components[name])) == pytest.approx(value, rel=tol, abs=1e-12), name
    for name, want in want_grads.items():
        assert tuple(grads[name].shape) == want.shape
        np.testing.assert_allclose(xp.to_numpy(grads[name]), want, rtol=tol, atol=tol * 1e-2 * np.abs(want).max(),
                                   err_msg=name)
    assert np.any(want_grads["box_deltas"] != 0)


def test_a_custom_box_part_has_no_closed_form_gradient():
    def my_box_loss(box_deltas, anchors, matched_boxes, box_coder):
        return pl.l1_loss(box_deltas, box_coder.encode(matched_boxes, anchors), reduction="none")

    recipe = RetinaNetLoss(NUM_CLASSES, regression_loss=my_box_loss)
    data = _batch()
    expected = RetinaNetLoss(NUM_CLASSES)(**data)
    assert float(recipe(**data).total) == pytest.approx(float(expected.total), rel=1e-12)
    with pytest.raises(TypeError, match="regression_loss"):
        recipe.value_and_grad(**data)


# -- the shared edge rules ----------------------------------------------------------------------------
def test_swapped_thresholds_are_named():
    with pytest.raises(ValueError, match=r"bg_iou_threshold=0\.6 must be <= fg_iou_threshold=0\.5"):
        RetinaNetLoss(NUM_CLASSES, bg_iou_threshold=0.6)


def test_padding_holding_nan_or_inf_changes_nothing(xp):
    data = _batch()
    recipe = RetinaNetLoss(NUM_CLASSES)
    clean = recipe.value_and_grad(**{k: xp.asarray(v) for k, v in data.items()})
    garbage = dict(data, gt_boxes=data["gt_boxes"].copy())
    padding = np.argwhere(data["gt_labels"] < 0)
    assert len(padding) >= 2
    garbage["gt_boxes"][tuple(padding[0])] = math.nan
    garbage["gt_boxes"][tuple(padding[1])] = [math.inf, -math.inf, math.nan, 0.0]
    got = recipe.value_and_grad(**{k: xp.asarray(v) for k, v in garbage.items()})
    for name in ("classification", "box_regression"):
        assert float(xp.to_numpy(got[0].components[name])) == float(xp.to_numpy(clean[0].components[name]))
    for name in PREDICTIONS:
        np.testing.assert_array_equal(xp.to_numpy(got[1][name]), xp.to_numpy(clean[1][name]))


def test_a_non_finite_real_box_is_named_or_nan(xp):
    data = _batch()
    data["gt_boxes"][1, 0, 3] = math.nan
    recipe = RetinaNetLoss(NUM_CLASSES)
    with pytest.raises(ValueError, match=r"box 0 of image 1.*not finite"):
        recipe(**{k: xp.asarray(v) for k, v in data.items()})
    unchecked = RetinaNetLoss(NUM_CLASSES, validate=False)(**{k: xp.asarray(v) for k, v in data.items()})
    assert all(math.isnan(float(xp.to_numpy(v))) for v in unchecked.components.values())


def test_nan_in_an_ignored_or_negative_prediction_is_not_hidden(xp):
    data = _batch()
    recipe = RetinaNetLoss(NUM_CLASSES)
    targets = recipe.assign(data["anchors"], data["gt_boxes"], data["gt_labels"])
    ignored = np.argwhere(~targets.valid)[0]
    negative = np.argwhere(~targets.positive)[0]
    logits, deltas = data["class_logits"].copy(), data["box_deltas"].copy()
    logits[tuple(ignored)] = math.nan  # an ignored anchor: no term sums it
    deltas[tuple(negative)] = math.nan  # a negative anchor: the box term leaves it out
    result, grads = recipe.value_and_grad(**{k: xp.asarray(v) for k, v in dict(data, class_logits=logits,
                                                                                box_deltas=deltas).items()})
    assert math.isnan(float(xp.to_numpy(result.components["classification"])))
    assert math.isnan(float(xp.to_numpy(result.components["box_regression"])))
    # elsewhere the gradient is the clean one
    clean = recipe.value_and_grad(**{k: xp.asarray(v) for k, v in data.items()})[1]
    g, c = xp.to_numpy(grads["box_deltas"]), xp.to_numpy(clean["box_deltas"])
    keep = np.ones(g.shape[:2], dtype=bool)
    keep[tuple(negative)] = False
    np.testing.assert_allclose(g[keep], c[keep], rtol=1e-6, atol=1e-12)


def test_empty_batch_as_lists(xp):
    data = _batch()
    empty = {"box_deltas": xp.asarray(data["box_deltas"][:0]), "class_logits": xp.asarray(data["class_logits"][:0]),
             "anchors": xp.asarray(data["anchors"]), "gt_boxes": [], "gt_labels": []}
    result, grads = RetinaNetLoss(NUM_CLASSES).value_and_grad(**empty)
    assert {k: float(xp.to_numpy(v)) for k, v in result.components.items()} == {"classification": 0.0,
                                                                              "box_regression": 0.0}
    assert tuple(grads["class_logits"].shape) == (0, *data["class_logits"].shape[1:])
