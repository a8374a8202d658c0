"""Zones of kind "line": tracks crossing it, counted once per track, by class and direction
(left_to_right: from the left of the line, walking from its first point to its second, to its
right) once seen `hold_frames` times on the far side. Counts, not incidents."""

from __future__ import annotations

from pydantic import Field

from ioc.rules.camera.base import CameraRule, Crossing, Direction, Reporter, RuleConfig, Seen, Stage
from ioc.rules.camera.crossings import LineTracks, crossed


class LineConfig(RuleConfig):
    min_score: float = Field(ge=0, le=1, description="Detections below are not counted.")
    hold_frames: int = Field(1, ge=1, description="Sightings on the far side before it counts.")


class LineState(LineTracks):
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
        found = []
        for crossing in crossed(state, seen, config.min_score, config.hold_frames):
            name = crossing.detection.class_name
            per_class = state.counts.setdefault(name, {})
            per_class[crossing.direction] = per_class.get(crossing.direction, 0) + 1
            found.append(
                Crossing(
                    camera_id=seen.camera.id,
                    line=seen.in_zone().name,
                    class_name=name,
                    direction=crossing.direction,
                    track_id=crossing.track_id,
                    event_time=seen.at,
                    total=per_class[crossing.direction],
                )
            )
        return found
