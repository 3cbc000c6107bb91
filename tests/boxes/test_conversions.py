"""polyloss.boxes.conversions: formats and areas."""

from __future__ import annotations

import numpy as np
import pytest
from boxes._refs import random_boxes

from polyloss import boxes as B


def test_box_convert_round_trips_and_formulas(xp):
    rng = np.random.default_rng(0)
    xyxy = random_boxes(rng, 3, 5)
    x = xp.asarray(xyxy)
    xywh = np.concatenate([xyxy[..., :2], xyxy[..., 2:] - xyxy[..., :2]], axis=-1)
    cxcywh = np.concatenate([(xyxy[..., :2] + xyxy[..., 2:]) / 2, xyxy[..., 2:] - xyxy[..., :2]], axis=-1)
    np.testing.assert_allclose(xp.to_numpy(B.box_convert(x, "xyxy", "xywh")), xywh, rtol=xp.rtol, atol=1e-5)
    np.testing.assert_allclose(xp.to_numpy(B.box_convert(x, "xyxy", "cxcywh")), cxcywh, rtol=xp.rtol, atol=1e-5)
    for fmt, data in (("xywh", xywh), ("cxcywh", cxcywh)):
        back = B.box_convert(xp.asarray(data), fmt, "xyxy")
        np.testing.assert_allclose(xp.to_numpy(back), xyxy, rtol=xp.rtol, atol=1e-5)
    np.testing.assert_allclose(xp.to_numpy(B.box_convert(xp.asarray(xywh), "xywh", "cxcywh")), cxcywh,
                               rtol=xp.rtol, atol=1e-5)
    area = (xyxy[..., 2] - xyxy[..., 0]) * (xyxy[..., 3] - xyxy[..., 1])
    np.testing.assert_allclose(xp.to_numpy(B.box_area(x)), area, rtol=max(xp.rtol, 1e-12))


def test_box_convert_bad_format_and_shape():
    with pytest.raises(ValueError, match="in_fmt"):
        B.box_convert(np.zeros((2, 4)), "xxyy", "xyxy")
    with pytest.raises(ValueError, match=r"\(\.\.\., 4\)"):
        B.box_area(np.zeros((2, 3)))
