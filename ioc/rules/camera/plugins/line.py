"""Zones of kind "line": tracks crossing it, counted once per track, by class and direction
(left_to_right: from the left of the line, walking from its first point to its second, to its
right). Counts, not incidents."""

from __future__ import annotations

from datetime import datetime, timedelta

from pydantic import Field

from ioc.rules.camera.base import (
    CameraRule,
    Crossing,
    Direction,
    Reporter,
    RuleConfig,
    RuleState,
    Seen,
    Stage,
)
from ioc.rules.camera.geometry import anchor, crosses, side


class LineConfig(RuleConfig):
    min_score: float = Field(ge=0, le=1, description="Detections below are not counted.")


class LineTrack(RuleState):
    side: int = Field(description="-1 left of the line (first point to second), 1 right, 0 on.")
    x: float
    y: float
    seen: datetime
    counted: bool = False


class LineState(RuleState):
    tracks: dict[int, LineTrack] = Field(default_factory=dict)
    counts: dict[str, dict[Direction, int]] = Field(
        default_factory=dict, description="Crossings so far: class -> direction -> n."
    )


class Line(CameraRule[LineConfig, LineState]):
    name = "line"
    kind = None
    stage = Stage.ZONES
    zone_kind = "line"
    config = LineConfig
    state = LineState

    def on_frame(
        self, config: LineConfig, state: LineState, seen: Seen, out: Reporter
    ) -> list[Crossing]:
        """Tracks whose anchor moved across the line since their previous sighting."""
        frame, zone, at = seen.frame, seen.in_zone(), seen.at
        a, b = zone.points
        crossings = []
        sightings = sorted(
            (d.track_id, d)
            for d in frame.detections
            if d.track_id is not None
            and d.class_name in zone.counted_classes
            and d.score >= config.min_score
        )
        for track_id, d in sightings:
            p = anchor(d.box, frame.width, frame.height)
            now_side = (side(a, b, p) > 0) - (side(a, b, p) < 0)
            track = state.tracks.get(track_id)
            if track is None:
                state.tracks[track_id] = LineTrack(side=now_side, x=p[0], y=p[1], seen=at)
                continue
            if (
                not track.counted
                and now_side * track.side < 0
                and crosses((track.x, track.y), p, a, b)
            ):
                direction: Direction = "left_to_right" if now_side > 0 else "right_to_left"
                per_class = state.counts.setdefault(d.class_name, {})
                per_class[direction] = per_class.get(direction, 0) + 1
                track.counted = True
                crossings.append(
                    Crossing(
                        camera_id=seen.camera.id,
                        line=zone.name,
                        class_name=d.class_name,
                        direction=direction,
                        track_id=track_id,
                        event_time=at,
                        total=per_class[direction],
                    )
                )
            track.x, track.y, track.seen = p[0], p[1], at
            track.side = now_side or track.side
        lost = timedelta(seconds=seen.rules.track_lost_s)
        for track_id in [t for t, track in state.tracks.items() if at - track.seen >= lost]:
            del state.tracks[track_id]
        return crossings
