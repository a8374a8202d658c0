"""Tracks crossing a line zone, shared by the rules that watch lines. A track's anchor must move
across the segment itself (not merely its extension) and then be seen on the far side in
`hold_frames` sightings in a row before the crossing counts, so a box jittering on the line
counts nothing; each track counts once per line."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from pydantic import Field

from ioc.models.events import Detection
from ioc.models.registry import Direction
from ioc.rules.camera.base import RuleState, Seen
from ioc.rules.camera.geometry import anchor, crosses, side


class LineTrack(RuleState):
    side: int = Field(description="-1 left of the line (first point to second), 1 right, 0 on.")
    x: float
    y: float
    seen: datetime
    counted: bool = False
    pending: int = Field(0, description="Sightings on the far side since it crossed.")


class LineTracks(RuleState):
    tracks: dict[int, LineTrack] = Field(default_factory=dict)


@dataclass(frozen=True)
class Crossed:
    track_id: int
    direction: Direction
    detection: Detection


def crossed(lines: LineTracks, seen: Seen, min_score: float, hold_frames: int) -> list[Crossed]:
    """The crossings of the zone's line that this frame completes."""
    frame, zone, at = seen.frame, seen.in_zone(), seen.at
    a, b = zone.points
    found = []
    sightings = sorted(
        (d.track_id, d)
        for d in frame.detections
        if d.track_id is not None and d.class_name in zone.counted_classes and d.score >= min_score
    )
    for track_id, d in sightings:
        p = anchor(d.box, frame.width, frame.height)
        now_side = (side(a, b, p) > 0) - (side(a, b, p) < 0)
        track = lines.tracks.get(track_id)
        if track is None:
            lines.tracks[track_id] = LineTrack(side=now_side, x=p[0], y=p[1], seen=at)
            continue
        if track.counted or now_side * track.side >= 0:
            track.pending = 0  # back on its side, on the line, or done
            track.side = track.side if track.counted else (now_side or track.side)
        elif track.pending or crosses((track.x, track.y), p, a, b):
            track.pending += 1
            if track.pending >= hold_frames:
                direction: Direction = "left_to_right" if now_side > 0 else "right_to_left"
                found.append(Crossed(track_id, direction, d))
                track.counted, track.side, track.pending = True, now_side, 0
        else:
            track.side = now_side  # round the end of the line: not a crossing
        track.x, track.y, track.seen = p[0], p[1], at
    lost = timedelta(seconds=seen.rules.track_lost_s)
    for track_id in [t for t, track in lines.tracks.items() if at - track.seen >= lost]:
        del lines.tracks[track_id]
    return found


__all__ = ["Crossed", "LineTrack", "LineTracks", "crossed"]
