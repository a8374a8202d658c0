"""Where a detection is, in fractions of the frame, so zones survive a change of resolution.

A detection is in a zone when its anchor, the bottom centre of its box (where a person or a
vehicle stands), is inside the polygon or on one side of the line.
"""

from __future__ import annotations

from ioc.models.events import BoundingBox, Detection, FrameDetections
from ioc.models.registry import Point, Zone

Rect = tuple[float, float, float, float]  # x1, y1, x2, y2 in fractions of the frame


def anchor(box: BoundingBox, width: int, height: int) -> Point:
    return (box.x1 + box.x2) / 2 / max(width, 1), box.y2 / max(height, 1)


def rect_of(box: BoundingBox, width: int, height: int) -> Rect:
    w, h = max(width, 1), max(height, 1)
    return box.x1 / w, box.y1 / h, box.x2 / w, box.y2 / h


def overlap(a: Rect, b: Rect) -> float:
    """Intersection over union: 1 for the same box, 0 for boxes apart (or without area)."""
    width = min(a[2], b[2]) - max(a[0], b[0])
    height = min(a[3], b[3]) - max(a[1], b[1])
    if width <= 0 or height <= 0:
        return 0.0
    shared = width * height
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - shared
    return shared / union


def inside(point: Point, polygon: tuple[Point, ...]) -> bool:
    """Ray casting: a horizontal ray from the point crosses the edges an odd number of times."""
    x, y = point
    found = False
    for (x1, y1), (x2, y2) in zip(polygon, polygon[1:] + polygon[:1], strict=True):
        if (y1 > y) != (y2 > y) and x < x1 + (y - y1) * (x2 - x1) / (y2 - y1):
            found = not found
    return found


def side(a: Point, b: Point, p: Point) -> float:
    """Positive when `p` is right of a→b as seen in the image (y grows downwards)."""
    return (b[0] - a[0]) * (p[1] - a[1]) - (b[1] - a[1]) * (p[0] - a[0])


def crosses(p: Point, q: Point, a: Point, b: Point) -> bool:
    """The move p→q crosses the segment a–b (not merely its extension)."""
    return side(a, b, p) * side(a, b, q) < 0 and side(p, q, a) * side(p, q, b) <= 0


def in_zone(d: Detection, zone: Zone, min_score: float, frame: FrameDetections) -> bool:
    """A counted class, confident enough, standing inside the zone's polygon."""
    return (
        d.class_name in zone.counted_classes
        and d.score >= min_score
        and inside(anchor(d.box, frame.width, frame.height), zone.points)
    )


__all__ = ["Rect", "anchor", "crosses", "in_zone", "inside", "overlap", "rect_of", "side"]
