"""Zones of kind "line": tracks crossing it, counted once per track, by class and direction
(left_to_right: from the left of the line, walking from its first point to its second, to its
right) once seen `hold_frames` times on the far side. Counts, not incidents: each crossing, and
each minute's crossings by direction (a `Flow`, zeros included) once a frame of a later minute
arrives; minutes without a frame have no flow (no data is not no traffic)."""

from __future__ import annotations

from datetime import datetime, timedelta

from pydantic import Field

from ioc.rules.camera.base import (
    CameraRule,
    Crossing,
    Direction,
    Flow,
    Reporter,
    RuleConfig,
    Seen,
    Stage,
)
from ioc.rules.camera.crossings import LineTracks, crossed


class LineConfig(RuleConfig):
    min_score: float = Field(ge=0, le=1, description="Detections below are not counted.")
    hold_frames: int = Field(1, ge=1, description="Sightings on the far side before it counts.")


PERIOD = timedelta(minutes=1)


class LineState(LineTracks):
    counts: dict[str, dict[Direction, int]] = Field(
        default_factory=dict, description="Crossings so far: class -> direction -> n."
    )
    period: datetime | None = Field(None, description="Start of the minute being counted.")
    flow: dict[Direction, int] = Field(default_factory=dict, description="That minute's.")

    def flows(self, camera_id: str, line: str, at: datetime) -> list[Flow]:
        """The minute before `at`'s, once `at` is in a later one; then count `at`'s minute."""
        minute = at.replace(second=0, microsecond=0)
        if self.period is None or minute <= self.period:
            self.period = self.period or minute
            return []
        counts: dict[Direction, int] = {"left_to_right": 0, "right_to_left": 0} | self.flow
        closed = Flow(
            camera_id=camera_id,
            line=line,
            start=self.period,
            end=self.period + PERIOD,
            counts=counts,
        )
        self.period, self.flow = minute, {}
        return [closed]


class Line(CameraRule[LineConfig, LineState]):
    name = "line"
    kind = None
    stage = Stage.ZONES
    zone_kind = "line"
    config = LineConfig
    state = LineState

    def on_frame(
        self, config: LineConfig, state: LineState, seen: Seen, out: Reporter
    ) -> list[Crossing | Flow]:
        found: list[Crossing | Flow] = [*state.flows(seen.camera.id, seen.in_zone().name, seen.at)]
        for crossing in crossed(state, seen, config.min_score, config.hold_frames):
            name = crossing.detection.class_name
            per_class = state.counts.setdefault(name, {})
            per_class[crossing.direction] = per_class.get(crossing.direction, 0) + 1
            state.flow[crossing.direction] = state.flow.get(crossing.direction, 0) + 1
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
