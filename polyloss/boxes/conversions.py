"""Box formats and areas, and the argument checks every box function shares.

Boxes are ``(..., 4)`` arrays; ``xyxy`` (x1, y1, x2, y2) is the format of
every other function of :mod:`polyloss.boxes`.
"""

from __future__ import annotations

from typing import Any

from polyloss._namespace import resolve
from polyloss.backend._base import Backend

__all__ = ["box_area", "box_convert"]

#: The coordinates ``(x1, y1, x2, y2)`` of broadcastable boxes, one array each.
Coords = tuple[Any, Any, Any, Any]

FORMATS = ("xyxy", "xywh", "cxcywh")


def boxes_backend(boxes: Any, name: str = "boxes") -> Backend:
    """The backend of ``boxes``, checked to have shape ``(..., 4)`` (a ValueError naming ``name`` if not)."""
    backend = resolve(boxes, input_name=name)
    if boxes.ndim < 1 or boxes.shape[-1] != 4:
        raise ValueError(f"{name} must have shape (..., 4), got {tuple(boxes.shape)}")
    return backend


def corners(boxes: Any) -> Coords:
    """The four coordinate arrays ``boxes[..., 0]`` ... ``boxes[..., 3]`` of ``(..., 4)`` boxes."""
    return boxes[..., 0], boxes[..., 1], boxes[..., 2], boxes[..., 3]


def box_convert(boxes: Any, in_fmt: str, out_fmt: str) -> Any:
    """Convert ``(..., 4)`` boxes between ``"xyxy"``, ``"xywh"`` and ``"cxcywh"``.

    ``xyxy`` is (x1, y1, x2, y2); ``xywh`` is (x1, y1, width, height);
    ``cxcywh`` is (centre x, centre y, width, height). As
    ``torchvision.ops.box_convert``, any leading axes.
    """
    for fmt, name in ((in_fmt, "in_fmt"), (out_fmt, "out_fmt")):
        if fmt not in FORMATS:
            raise ValueError(f"{name} must be one of {', '.join(map(repr, FORMATS))}, got {fmt!r}")
    backend = boxes_backend(boxes)
    if in_fmt == out_fmt:
        return boxes
    a, b, c, d = corners(boxes)
    if in_fmt == "xywh":
        x1, y1, x2, y2 = a, b, a + c, b + d
    elif in_fmt == "cxcywh":
        x1, y1, x2, y2 = a - c / 2, b - d / 2, a + c / 2, b + d / 2
    else:
        x1, y1, x2, y2 = a, b, c, d
    if out_fmt == "xyxy":
        out = (x1, y1, x2, y2)
    elif out_fmt == "xywh":
        out = (x1, y1, x2 - x1, y2 - y1)
    else:
        out = ((x1 + x2) / 2, (y1 + y2) / 2, x2 - x1, y2 - y1)
    return backend.xp.stack(out, axis=-1)


def area(c: Coords) -> Any:
    """``(x2 - x1) (y2 - y1)`` of coordinate arrays (signed: an inverted box has a negative width)."""
    return (c[2] - c[0]) * (c[3] - c[1])


def box_area(boxes: Any) -> Any:
    """Area ``(x2 - x1) (y2 - y1)`` of ``(..., 4)`` xyxy boxes, shape ``(...)``."""
    boxes_backend(boxes)
    return area(corners(boxes))
