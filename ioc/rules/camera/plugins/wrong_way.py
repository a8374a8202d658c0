"""Lines with a `direction` in the camera registry: a track crossing the other way, seen
`hold_frames` times past the line, is wrong-way traffic. The line's episode opens at the first
one, is updated by each later one (the count and the clearest view) and resolves after
`clear_s` with none."""

from __future__ import annotations

from pydantic import Field

from ioc.models.incidents import IncidentKind
from ioc.rules.camera.base import (
    CameraRule,
    Episode,
    IncidentRuleConfig,
    Reporter,
    Seen,
    Stage,
    Transition,
    better,
    evidence_of,
)
from ioc.rules.camera.crossings import LineTracks, crossed


class WrongWayConfig(IncidentRuleConfig):
    min_score: float = Field(ge=0, le=1, description="Detections below are not counted.")
    hold_frames: int = Field(ge=1, description="Sightings past the line before it counts.")
    clear_s: float = Field(gt=0)


class WrongWayState(Episode, LineTracks):
    count: int = Field(0, description="Wrong-way crossings in this episode.")


class WrongWay(CameraRule[WrongWayConfig, WrongWayState]):
    name = "wrong_way"
    kind = IncidentKind.WRONG_WAY
    stage = Stage.ZONES
    zone_kind = "line"
    config = WrongWayConfig
    state = WrongWayState

    def on_frame(
        self, config: WrongWayConfig, state: WrongWayState, seen: Seen, out: Reporter
    ) -> list[Transition]:
        zone = seen.in_zone()
        if zone.direction is None:
            return []
        wrong = [
            c
            for c in crossed(state, seen, config.min_score, config.hold_frames)
            if c.direction != zone.direction
        ]
        action = state.held(bool(wrong), seen.at, 0, config.clear_s)
        if wrong:
            state.count += len(wrong)
            top = max(wrong, key=lambda c: c.detection.score)
            sighting = evidence_of(seen.frame, [c.detection for c in wrong], top.detection.score)
            who = f"{seen.rules.label(top.detection.class_name)} #{top.track_id}"
            title = f"{who} đi ngược chiều qua {zone.name} ({state.count} lượt)"
            if state.incident_id is None:
                out.open(state, seen.at, zone.name)
                state.best = sighting
                return [out.report(state, "open", title, sighting, line=zone.name, count=1)]
            state.best = better(state.best, sighting)
            return [out.report(state, "update", title, sighting, line=zone.name, count=state.count)]
        if action == "resolve" and state.best is not None:
            title = f"hết xe đi ngược chiều qua {zone.name} ({state.count} lượt)"
            done = out.report(
                state, "resolve", title, state.best, line=zone.name, count=state.count
            )
            tracks = state.tracks
            state.reset()
            state.tracks = tracks
            return [done]
        return []
