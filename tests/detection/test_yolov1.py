"""The "yolov1" recipe against a cell-by-cell float64 reference of the paper's formula."""

from __future__ import annotations

import math
import time

import numpy as np
import pytest
from _detection import yolo_pred

import polyloss as pl
from polyloss.detection.yolov1 import YOLOv1Loss

SQRT_EPS = 1e-12


# -- independent reference: plain Python loops, float64 ------------------------------


def _iou(a, b):
    iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = iw * ih
    area_a = max(0.0, a[2] - a[0]) * max(0.0, a[3] - a[1])
    area_b = max(0.0, b[2] - b[0]) * max(0.0, b[3] - b[1])
    union = area_a + area_b - inter
    return inter / union if union > 0 else 0.0


def _sqrt(v):
    return math.sqrt(max(v, SQRT_EPS))


def reference(pred, boxes, labels, *, S, B, C, lambda_coord=5.0, lambda_noobj=0.5, conf_target="iou",
              normalize="batch", iou_pred=None):
    """YOLOv1 loss, Redmon et al. 2016, eq. (3), one cell and one predictor at a time.

    ``boxes``/``labels``: per-image lists (label -1 entries are skipped). ``iou_pred``:
    predictions used for the IoU and the choice of the responsible predictor (the
    IoU is a constant of the loss); defaults to ``pred``.
    """
    pred = np.asarray(pred, dtype=np.float64)
    iou_pred = pred if iou_pred is None else np.asarray(iou_pred, dtype=np.float64)
    n_images = pred.shape[0]
    coord = obj = noobj = cls = 0.0
    for n in range(n_images):
        owner = {}
        for box, lab in zip(boxes[n], labels[n], strict=True):
            if lab < 0:
                continue
            x1, y1, x2, y2 = (float(v) for v in box)
            cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
            col = min(max(math.floor(cx * S), 0), S - 1)
            row = min(max(math.floor(cy * S), 0), S - 1)
            if (row, col) not in owner:
                owner[(row, col)] = ((x1, y1, x2, y2), int(lab), cx * S - col, cy * S - row)
        for row in range(S):
            for col in range(S):
                cell = pred[n, row, col]
                if (row, col) not in owner:
                    for b in range(B):
                        noobj += cell[5 * b + 4] ** 2
                    continue
                gt, lab, tx, ty = owner[(row, col)]
                tw, th = gt[2] - gt[0], gt[3] - gt[1]
                ious = []
                for b in range(B):
                    x, y, w, h = iou_pred[n, row, col, 5 * b : 5 * b + 4]
                    pcx, pcy = (col + x) / S, (row + y) / S
                    pw, ph = max(w, 0.0), max(h, 0.0)
                    ious.append(_iou((pcx - pw / 2, pcy - ph / 2, pcx + pw / 2, pcy + ph / 2), gt))
                best = 0
                for b in range(1, B):
                    if ious[b] > ious[best]:
                        best = b
                for b in range(B):
                    x, y, w, h, c = cell[5 * b : 5 * b + 5]
                    if b == best:
                        coord += (x - tx) ** 2 + (y - ty) ** 2
                        coord += (_sqrt(w) - _sqrt(tw)) ** 2 + (_sqrt(h) - _sqrt(th)) ** 2
                        target = ious[b] if conf_target == "iou" else 1.0
                        obj += (c - target) ** 2
                    else:
                        noobj += c**2
                for k in range(C):
                    cls += (cell[5 * B + k] - (1.0 if k == lab else 0.0)) ** 2
    scale = 1.0 / max(n_images, 1) if normalize == "batch" else 1.0
    return {
        "coord": lambda_coord * coord * scale,
        "obj": obj * scale,
        "noobj": lambda_noobj * noobj * scale,
        "class": cls * scale,
    }


# -- data -----------------------------------------------------------------------------


def _random_box(rng, cell=None, S=4):
    """A random xyxy box; with ``cell=(row, col)`` its centre lies in that cell."""
    w, h = rng.uniform(0.08, 0.6, size=2)
    if cell is None:
        cx, cy = rng.uniform(0.1, 0.9, size=2)
    else:
        row, col = cell
        cx = (col + rng.uniform(0.1, 0.9)) / S
        cy = (row + rng.uniform(0.1, 0.9)) / S
    return [max(cx - w / 2, 0.0), max(cy - h / 2, 0.0), min(cx + w / 2, 1.0), min(cy + h / 2, 1.0)]


def _pred(rng, N, S, B, C, *, negative_sizes=True):
    pred = yolo_pred(rng, N, S, B, C)
    if negative_sizes:
        pred[0, 0, 0, 2] = -0.3  # negative width: clamped at 0 for the IoU, sqrt(eps) in the loss
        pred[0, 1, 1, 5 * (B - 1) + 3] = -0.1
    return pred


def _scene(seed=0, S=4, B=2, C=3):
    """A batch of 4: several objects in one cell, an empty image, a centre on a cell edge."""
    rng = np.random.default_rng(seed)
    boxes = [
        [_random_box(rng, (1, 2), S), _random_box(rng, (1, 2), S), _random_box(rng, (3, 0), S), _random_box(rng)],
        [],
        [[0.25, 0.25, 0.75, 0.75], _random_box(rng, (0, 3), S), _random_box(rng, (0, 3), S),
         _random_box(rng, (0, 3), S)],
        [_random_box(rng) for _ in range(5)],
    ]
    labels = [list(rng.integers(0, C, size=len(b))) for b in boxes]
    labels[0][1] = (labels[0][0] + 1) % C  # the two objects sharing a cell have different classes
    return _pred(rng, len(boxes), S, B, C), boxes, labels


def _padded(boxes, labels, *, fill=0.0):
    G = max(len(b) for b in boxes)
    out_b = np.full((len(boxes), G, 4), fill)
    out_l = np.full((len(boxes), G), -1, dtype=np.int64)
    for n, (b, lab) in enumerate(zip(boxes, labels, strict=True)):
        if b:
            out_b[n, : len(b)] = b
            out_l[n, : len(lab)] = lab
    return out_b, out_l


def _components(xp, result):
    out = {k: float(xp.to_numpy(v)) for k, v in result.components.items()}
    assert list(out) == ["coord", "obj", "noobj", "class"]
    return out


def _assert_matches(xp, result, expected):
    got = _components(xp, result)
    for key, value in expected.items():
        np.testing.assert_allclose(got[key], value, rtol=xp.rtol, atol=xp.atol, err_msg=key)
    np.testing.assert_allclose(float(xp.to_numpy(result.total)), sum(expected.values()), rtol=xp.rtol,
                               atol=xp.atol)


# -- values on every backend -----------------------------------------------------------


@pytest.mark.parametrize("conf_target", ["iou", "one"])
@pytest.mark.parametrize("normalize", ["batch", "sum"])
def test_matches_reference(xp, conf_target, normalize):
    S, B, C = 4, 2, 3
    pred, boxes, labels = _scene(1, S, B, C)
    config = dict(grid=S, boxes_per_cell=B, num_classes=C, conf_target=conf_target, normalize=normalize)
    recipe = pl.get_recipe("yolov1", **config)
    gb, gl = _padded(boxes, labels)
    result = recipe(xp.asarray(pred), xp.asarray(gb), xp.asarray(gl))
    expected = reference(pred, boxes, labels, S=S, B=B, C=C, conf_target=conf_target, normalize=normalize)
    assert all(v > 0 for v in expected.values())
    _assert_matches(xp, result, expected)
    total = result.total
    assert tuple(total.shape) == ()
    if xp.library != "numpy":
        assert type(total) is type(xp.asarray(pred))


def test_default_config_and_weights(xp):
    rng = np.random.default_rng(5)
    S, B, C = 7, 2, 20
    boxes = [[_random_box(rng, S=S) for _ in range(6)], [_random_box(rng, S=S) for _ in range(2)]]
    labels = [list(rng.integers(0, C, size=len(b))) for b in boxes]
    pred = _pred(rng, 2, S, B, C)
    gb, gl = _padded(boxes, labels)
    recipe = pl.get_recipe("yolov1")
    assert (recipe.grid, recipe.boxes_per_cell, recipe.num_classes) == (7, 2, 20)
    assert (recipe.lambda_coord, recipe.lambda_noobj) == (5.0, 0.5)
    assert (recipe.conf_target, recipe.normalize) == ("iou", "batch")
    _assert_matches(xp, recipe(xp.asarray(pred), xp.asarray(gb), xp.asarray(gl)),
                    reference(pred, boxes, labels, S=S, B=B, C=C))
    weighted = pl.get_recipe("yolov1", lambda_coord=2.0, lambda_noobj=0.0)
    _assert_matches(xp, weighted(xp.asarray(pred), xp.asarray(gb), xp.asarray(gl)),
                    reference(pred, boxes, labels, S=S, B=B, C=C, lambda_coord=2.0, lambda_noobj=0.0))


def test_sequences_equal_padded(xp):
    S, B, C = 4, 2, 3
    pred, boxes, labels = _scene(2, S, B, C)
    recipe = pl.get_recipe("yolov1", grid=S, boxes_per_cell=B, num_classes=C)
    gb, gl = _padded(boxes, labels)
    padded = _components(xp, recipe(xp.asarray(pred), xp.asarray(gb), xp.asarray(gl)))
    seq_b = [xp.asarray(np.asarray(b, dtype=np.float64).reshape(-1, 4)) for b in boxes]
    seq_l = [xp.asarray(np.asarray(lab, dtype=np.int64).reshape(-1)) for lab in labels]
    sequence = _components(xp, recipe(xp.asarray(pred), seq_b, seq_l))
    tuple_form = _components(xp, recipe(xp.asarray(pred), tuple(seq_b), tuple(seq_l)))
    for key in padded:
        np.testing.assert_allclose(sequence[key], padded[key], rtol=xp.rtol, atol=xp.atol)
        np.testing.assert_allclose(tuple_form[key], padded[key], rtol=xp.rtol, atol=xp.atol)


def test_padding_values_are_ignored(xp):
    """Padded entries (label -1) may hold anything, even NaN or degenerate boxes."""
    S, B, C = 4, 2, 3
    pred, boxes, labels = _scene(3, S, B, C)
    recipe = pl.get_recipe("yolov1", grid=S, boxes_per_cell=B, num_classes=C)
    gb, gl = _padded(boxes, labels, fill=np.nan)
    extra_b = np.concatenate([gb, np.tile([[[0.9, 0.9, 0.1, 0.1]]], (gb.shape[0], 1, 1))], axis=1)
    extra_l = np.concatenate([gl, -np.ones((gl.shape[0], 1), dtype=np.int64)], axis=1)
    result = recipe(xp.asarray(pred), xp.asarray(extra_b), xp.asarray(extra_l))
    _assert_matches(xp, result, reference(pred, boxes, labels, S=S, B=B, C=C))


def test_empty_ground_truth_gives_only_noobj(xp):
    S, B, C = 3, 2, 2
    rng = np.random.default_rng(4)
    pred = _pred(rng, 2, S, B, C)
    recipe = pl.get_recipe("yolov1", grid=S, boxes_per_cell=B, num_classes=C)
    expected_noobj = 0.5 * sum(float(np.sum(pred[..., 5 * b + 4] ** 2)) for b in range(B)) / 2
    for gb, gl in [
        (np.zeros((2, 0, 4)), np.zeros((2, 0), dtype=np.int64)),
        (np.zeros((2, 3, 4)), -np.ones((2, 3), dtype=np.int64)),
    ]:
        got = _components(xp, recipe(xp.asarray(pred), xp.asarray(gb), xp.asarray(gl)))
        assert got["coord"] == 0.0 and got["obj"] == 0.0 and got["class"] == 0.0
        np.testing.assert_allclose(got["noobj"], expected_noobj, rtol=xp.rtol, atol=xp.atol)
    empty = [xp.asarray(np.zeros((0, 4))), xp.asarray(np.zeros((0, 4)))]
    empty_labels = [xp.asarray(np.zeros((0,), dtype=np.int64))] * 2
    got = _components(xp, recipe(xp.asarray(pred), empty, empty_labels))
    np.testing.assert_allclose(got["noobj"], expected_noobj, rtol=xp.rtol, atol=xp.atol)
    assert all(math.isfinite(v) for v in got.values())


def test_empty_batch_is_zero(xp):
    recipe = pl.get_recipe("yolov1", grid=2, boxes_per_cell=1, num_classes=2)
    pred = xp.asarray(np.zeros((0, 2, 2, 7)))
    for gt in [(xp.asarray(np.zeros((0, 0, 4))), xp.asarray(np.zeros((0, 0), dtype=np.int64))), ([], [])]:
        got = _components(xp, recipe(pred, *gt))
        assert got == {"coord": 0.0, "obj": 0.0, "noobj": 0.0, "class": 0.0}


def test_assignment_axes_cells_and_ties(xp):
    """Axis 1 is the row (y), axis 2 the column (x); first object wins a cell; ties go to predictor 0."""
    S, B, C = 3, 2, 4
    recipe = pl.get_recipe("yolov1", grid=S, boxes_per_cell=B, num_classes=C)
    pred = np.zeros((1, S, S, 5 * B + C))
    # object A: centre (x=0.8, y=0.5) -> row 1, column 2; predictor 1 of that cell fits it exactly
    pred[0, 1, 2, 5:9] = [0.4, 0.5, 0.2, 0.4]
    pred[0, 1, 2, 0:4] = [0.5, 0.5, 0.05, 0.05]
    # object B shares the cell with A and comes later: ignored
    # object C: centre (0.15, 0.85) -> row 2, column 0; both predictors identical -> tie -> predictor 0
    pred[0, 2, 0, 0:4] = [0.45, 0.55, 0.3, 0.3]
    pred[0, 2, 0, 5:9] = [0.45, 0.55, 0.3, 0.3]
    boxes = np.array([[[0.7, 0.3, 0.9, 0.7], [0.68, 0.4, 0.9, 0.6], [0.05, 0.75, 0.25, 0.95]]])
    labels = np.array([[3, 1, 2]])
    targets = recipe.assign_targets(xp.asarray(pred), xp.asarray(boxes), xp.asarray(labels))
    cells = targets.cells
    obj = xp.to_numpy(cells.obj)
    expected_obj = np.zeros((1, S, S))
    expected_obj[0, 1, 2] = expected_obj[0, 2, 0] = 1.0
    np.testing.assert_array_equal(obj, expected_obj)
    classes = xp.to_numpy(cells.classes)
    np.testing.assert_array_equal(classes[0, 1, 2], [0, 0, 0, 1])  # A's label, not B's
    np.testing.assert_array_equal(classes[0, 2, 0], [0, 0, 1, 0])
    assert classes.sum() == 2
    coords = xp.to_numpy(cells.coords)
    np.testing.assert_allclose(coords[0, 1, 2], [0.4, 0.5, 0.2, 0.4], rtol=xp.rtol, atol=1e-6)
    np.testing.assert_allclose(xp.to_numpy(cells.boxes)[0, 1, 2], boxes[0, 0], rtol=xp.rtol, atol=1e-6)
    responsible = xp.to_numpy(targets.responsible)
    expected_resp = np.zeros((1, S, S, B))
    expected_resp[0, 1, 2, 1] = 1.0
    expected_resp[0, 2, 0, 0] = 1.0
    np.testing.assert_array_equal(responsible, expected_resp)
    iou = xp.to_numpy(targets.iou)
    np.testing.assert_allclose(iou[0, 1, 2, 1], 1.0, rtol=1e-5)
    assert 0.0 < iou[0, 1, 2, 0] < 0.1
    decoded = xp.to_numpy(recipe.decode_boxes(xp.asarray(pred)))
    np.testing.assert_allclose(decoded[0, 1, 2, 1], boxes[0, 0], rtol=xp.rtol, atol=1e-6)
    negative = pred.copy()
    negative[0, 0, 1, 0:4] = [0.5, 0.25, -0.2, 0.3]  # a negative width is clamped at 0
    decoded = xp.to_numpy(recipe.decode_boxes(xp.asarray(negative)))
    np.testing.assert_allclose(decoded[0, 0, 1, 0], [0.5, 1 / 12 - 0.15, 0.5, 1 / 12 + 0.15], rtol=xp.rtol, atol=1e-6)
    # the stages compose to the call
    staged = _components(xp, recipe.loss_from_targets(xp.asarray(pred), targets))
    direct = _components(xp, recipe(xp.asarray(pred), xp.asarray(boxes), xp.asarray(labels)))
    assert staged == direct


def test_degenerate_ground_truth_raises(xp):
    recipe = pl.get_recipe("yolov1", grid=2, boxes_per_cell=1, num_classes=2)
    pred = xp.asarray(np.full((2, 2, 2, 7), 0.3))
    boxes = np.array([[[0.1, 0.1, 0.5, 0.5], [0.0, 0.0, 0.0, 0.0]],
                      [[0.2, 0.2, 0.6, 0.6], [0.5, 0.1, 0.4, 0.3]]])
    labels = np.array([[0, -1], [1, 0]])
    with pytest.raises(ValueError, match=r"box 1 of image 1"):
        recipe(pred, xp.asarray(boxes), xp.asarray(labels))
    flat = boxes.copy()
    flat[1, 1] = [0.2, 0.3, 0.4, 0.3]  # zero height
    with pytest.raises(ValueError, match=r"box 1 of image 1"):
        recipe(pred, [xp.asarray(b) for b in flat], [xp.asarray(lab) for lab in labels])
    bad_label = labels.copy()
    bad_label[0, 1] = 2
    with pytest.raises(ValueError, match=r"gt_labels\[0\]\[1\] = 2 is outside \[0, num_classes=2\)"):
        recipe(pred, xp.asarray(np.array([[[0.1, 0.1, 0.5, 0.5], [0.2, 0.2, 0.3, 0.3]]] * 2)),
               xp.asarray(bad_label))
    unchecked = pl.get_recipe("yolov1", grid=2, boxes_per_cell=1, num_classes=2, validate=False)
    got = _components(xp, unchecked(pred, xp.asarray(boxes), xp.asarray(labels)))
    assert all(math.isfinite(v) for v in got.values())


# -- configuration and shapes -------------------------------------------------------------


@pytest.mark.parametrize(
    ("option", "value", "error"),
    [
        ("grid", 0, ValueError),
        ("grid", 7.0, TypeError),
        ("grid", True, TypeError),
        ("boxes_per_cell", 0, ValueError),
        ("num_classes", -3, ValueError),
        ("lambda_coord", -1.0, ValueError),
        ("lambda_noobj", float("nan"), ValueError),
        ("lambda_noobj", "0.5", TypeError),
        ("conf_target", "ones", ValueError),
        ("normalize", "mean", ValueError),
        ("validate", "yes", TypeError),
        ("coord_error", 3, TypeError),
    ],
)
def test_bad_config(option, value, error):
    with pytest.raises(error, match=option):
        pl.get_recipe("yolov1", **{option: value})


def test_unknown_config_key():
    with pytest.raises(TypeError, match="grid_size"):
        pl.get_recipe("yolov1", grid_size=7)


def test_bad_shapes_and_types(xp):
    recipe = pl.get_recipe("yolov1", grid=2, boxes_per_cell=1, num_classes=2)
    pred = xp.asarray(np.zeros((2, 2, 2, 7)))
    gb = xp.asarray(np.array([[[0.1, 0.1, 0.5, 0.5]], [[0.2, 0.2, 0.6, 0.6]]]))
    gl = xp.asarray(np.array([[0], [1]]))
    with pytest.raises(ValueError, match=r"pred must have shape \(N, 2, 2, 7\).*\(2, 2, 2, 8\)"):
        recipe(xp.asarray(np.zeros((2, 2, 2, 8))), gb, gl)
    with pytest.raises(ValueError, match="pred must have shape"):
        recipe(xp.asarray(np.zeros((2, 3, 3, 7))), gb, gl)
    with pytest.raises(ValueError, match="pred must have shape"):
        recipe(xp.asarray(np.zeros((2, 4, 7))), gb, gl)
    with pytest.raises(TypeError, match="pred"):
        recipe(xp.asarray(np.zeros((2, 2, 2, 7), dtype=np.int64)), gb, gl)
    with pytest.raises(ValueError, match=r"gt_boxes must have shape \(N, G, 4\)"):
        recipe(pred, xp.asarray(np.zeros((2, 1, 5))), gl)
    with pytest.raises(ValueError, match=r"gt_boxes must have shape \(N, G, 4\) = \(2, \?, 4\), got \(3, 1, 4\)"):
        recipe(pred, xp.asarray(np.zeros((3, 1, 4))), xp.asarray(np.zeros((3, 1), dtype=np.int64)))
    with pytest.raises(ValueError, match=r"gt_labels shape \(2, 2\)"):
        recipe(pred, gb, xp.asarray(np.zeros((2, 2), dtype=np.int64)))
    with pytest.raises(TypeError, match="gt_labels must have an integer dtype"):
        recipe(pred, gb, xp.asarray(np.zeros((2, 1))))
    with pytest.raises(TypeError, match="gt_boxes must have a real floating dtype"):
        recipe(pred, xp.asarray(np.zeros((2, 1, 4), dtype=np.int64)), gl)
    with pytest.raises(ValueError, match="holds 1 image\\(s\\) but the predictions have batch size 2"):
        recipe(pred, [gb[0, ...]], [gl[0, ...]])
    with pytest.raises(ValueError, match=r"gt_labels\[1\] shape"):
        recipe(pred, [gb[0, ...], gb[1, ...]], [gl[0, ...], xp.asarray(np.array([1, 0]))])
    with pytest.raises(ValueError, match=r"gt_boxes\[0\] must have shape \(G_i, 4\)"):
        recipe(pred, [xp.asarray(np.zeros((1, 3))), gb[1, ...]], [gl[0, ...], gl[1, ...]])
    with pytest.raises(TypeError, match="gt_labels must be one too"):
        recipe(pred, [gb[0, ...], gb[1, ...]], gl)


def test_mixed_namespaces_raise():
    torch = pytest.importorskip("torch")
    recipe = pl.get_recipe("yolov1", grid=2, boxes_per_cell=1, num_classes=2)
    with pytest.raises(TypeError, match="gt_boxes"):
        recipe(torch.zeros((1, 2, 2, 7), dtype=torch.float64), np.array([[[0.1, 0.1, 0.5, 0.5]]]),
               torch.tensor([[0]]))


# -- registry and replaceable parts ---------------------------------------------------------


def test_registered_and_parts_replaceable(xp):
    assert "yolov1" in pl.recipes()
    assert isinstance(pl.get_recipe("yolov1"), YOLOv1Loss)
    S, B, C = 4, 2, 3
    pred, boxes, labels = _scene(6, S, B, C)
    gb, gl = _padded(boxes, labels)
    args = (xp.asarray(pred), xp.asarray(gb), xp.asarray(gl))
    config = dict(grid=S, boxes_per_cell=B, num_classes=C)
    base = _components(xp, pl.get_recipe("yolov1", **config)(*args))

    def l1_error(backend, input, target):
        return backend.xp.sum(backend.xp.abs(input - target), axis=-1)

    swapped = _components(xp, pl.get_recipe("yolov1", class_error=l1_error, **config)(*args))
    assert swapped["coord"] == base["coord"] and swapped["noobj"] == base["noobj"]
    expected_cls = 0.0
    ref_cells = {}
    for n in range(len(boxes)):
        for box, lab in zip(boxes[n], labels[n], strict=True):
            cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
            key = (n, min(int(cy * S), S - 1), min(int(cx * S), S - 1))
            ref_cells.setdefault(key, lab)
    for (n, r, c), lab in ref_cells.items():
        expected_cls += float(np.sum(np.abs(pred[n, r, c, 5 * B :] - np.eye(C)[lab])))
    np.testing.assert_allclose(swapped["class"], expected_cls / len(boxes), rtol=xp.rtol, atol=xp.atol)

    class LastPredictorWins(YOLOv1Loss):
        """A variant: always make the last predictor responsible (a constant IoU ramp)."""

        def box_iou(self, backend, boxes1, boxes2):
            xp_ = backend.xp
            ramp = xp_.astype(xp_.arange(boxes1.shape[-2], device=backend.device(boxes1)), boxes1.dtype)
            return xp_.zeros_like(boxes1[..., 0]) + ramp

    variant = LastPredictorWins(conf_target="one", **config)
    targets = variant.assign_targets(*args)
    resp = xp.to_numpy(targets.responsible)
    obj = xp.to_numpy(targets.cells.obj)
    np.testing.assert_array_equal(resp[..., B - 1], obj)
    assert resp[..., : B - 1].sum() == 0


# -- gradients (torch autograd) ---------------------------------------------------------------


def _fd_reference_grad(pred, boxes, labels, step=1e-6, **kw):
    grad = np.zeros_like(pred)
    it = np.nditer(pred, flags=["multi_index"])
    for _ in it:
        idx = it.multi_index
        hi, lo = pred.copy(), pred.copy()
        hi[idx] += step
        lo[idx] -= step
        f_hi = sum(reference(hi, boxes, labels, iou_pred=pred, **kw).values())
        f_lo = sum(reference(lo, boxes, labels, iou_pred=pred, **kw).values())
        grad[idx] = (f_hi - f_lo) / (2 * step)
    return grad


@pytest.mark.parametrize("conf_target", ["iou", "one"])
def test_autograd_matches_finite_differences(conf_target):
    torch = pytest.importorskip("torch")
    S, B, C = 2, 2, 2
    rng = np.random.default_rng(7)
    boxes = [[_random_box(rng, (0, 1), S), _random_box(rng, (0, 1), S), _random_box(rng, (1, 0), S)],
             [_random_box(rng, (1, 1), S)]]
    labels = [[1, 0, 1], [0]]
    pred = _pred(rng, 2, S, B, C, negative_sizes=False)
    pred[0, 1, 0, 2] = 0.0  # w = 0 on a predictor ...
    pred[0, 1, 0, 8] = 0.0  # ... and h = 0 on the other one of the same object cell
    pred[1, 0, 0, 2] = 0.0  # w = 0 in an empty cell
    gb, gl = _padded(boxes, labels)
    recipe = pl.get_recipe("yolov1", grid=S, boxes_per_cell=B, num_classes=C, conf_target=conf_target)
    x = torch.tensor(pred, dtype=torch.float64, requires_grad=True)
    result = recipe(x, torch.tensor(gb), torch.tensor(gl))
    result.total.backward()
    grad = x.grad.numpy()
    assert np.all(np.isfinite(grad))
    kw = dict(S=S, B=B, C=C, conf_target=conf_target)
    expected = reference(pred, boxes, labels, **kw)
    for key, value in expected.items():
        np.testing.assert_allclose(float(result.components[key].detach()), value, rtol=1e-12, err_msg=key)
    fd = _fd_reference_grad(pred, boxes, labels, **kw)
    smooth = np.ones(pred.shape, dtype=bool)
    for b in range(B):  # sqrt(max(w, eps)) has a kink at w = eps: compare elsewhere
        smooth[..., 5 * b + 2 : 5 * b + 4] &= pred[..., 5 * b + 2 : 5 * b + 4] > 1e-3
    np.testing.assert_allclose(grad[smooth], fd[smooth], rtol=1e-6, atol=1e-7)
    assert grad[0, 1, 0, 2] == 0.0 and grad[0, 1, 0, 8] == 0.0


def test_autograd_finite_float32_with_zero_sizes():
    torch = pytest.importorskip("torch")
    S, B, C = 3, 2, 2
    rng = np.random.default_rng(8)
    boxes = [[_random_box(rng, (r, c), S) for r in range(S) for c in range(S)]]
    labels = [[int(v) for v in rng.integers(0, C, size=S * S)]]
    pred = _pred(rng, 1, S, B, C)
    pred[..., 2:4] = 0.0  # every predictor 0 has w = h = 0
    pred[..., 7:9] = 1e-30
    gb, gl = _padded(boxes, labels)
    x = torch.tensor(pred, dtype=torch.float32, requires_grad=True)
    recipe = pl.get_recipe("yolov1", grid=S, boxes_per_cell=B, num_classes=C)
    result = recipe(x, torch.tensor(gb, dtype=torch.float32), torch.tensor(gl))
    result.total.backward()
    assert torch.isfinite(result.total) and torch.isfinite(x.grad).all()


# -- training -----------------------------------------------------------------------------------


def test_tiny_training_run_loss_falls():
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    S, B, C, N = 4, 2, 3, 8
    rng = np.random.default_rng(9)
    boxes = [[_random_box(rng, S=S) for _ in range(int(rng.integers(1, 4)))] for _ in range(N)]
    labels = [[int(v) for v in rng.integers(0, C, size=len(b))] for b in boxes]
    gb, gl = _padded(boxes, labels)
    gb_t, gl_t = torch.tensor(gb, dtype=torch.float32), torch.tensor(gl)
    features = torch.randn(N, 16)
    model = torch.nn.Sequential(torch.nn.Linear(16, 64), torch.nn.ReLU(), torch.nn.Linear(64, S * S * (5 * B + C)))
    with torch.no_grad():  # start with positive sizes: sqrt(max(w, eps)) gives no gradient to w < eps
        bias = model[-1].bias.view(S, S, 5 * B + C)
        for b in range(B):
            bias[..., 5 * b + 2 : 5 * b + 4] = 0.3
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    recipe = pl.get_recipe("yolov1", grid=S, boxes_per_cell=B, num_classes=C)
    start = time.perf_counter()
    history = []  # the whole run takes about 1 s here (budget: well under 10 s)
    for _ in range(200):
        pred = model(features).reshape(N, S, S, 5 * B + C)
        result = recipe(pred, gb_t, gl_t)
        optimizer.zero_grad()
        result.total.backward()
        optimizer.step()
        history.append({k: float(v.detach()) for k, v in result.components.items()})
    elapsed = time.perf_counter() - start
    first, last = history[0], history[-1]
    assert all(math.isfinite(v) for h in history for v in h.values())
    assert sum(last.values()) < 0.05 * sum(first.values()), (first, last)
    for key in ("coord", "class", "noobj"):
        assert last[key] < 0.1 * first[key], key
    print(f"200 steps in {elapsed:.2f} s: {first} -> {last}")
