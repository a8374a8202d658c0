"""Zones of kind "no_stopping": a tracked vehicle whose box centre stays within
`move_tolerance` (fraction of the frame) of where it stopped, for the zone's `dwell_s` (default
here); resolves when it moves on, leaves the zone or is lost. Score: its detection's, the
clearest view of it (the dwell is in the evidence)."""

from __future__ import annotations

import math
from datetime import datetime, timedelta

from pydantic import Field

from ioc.models.incidents import IncidentKind
from ioc.rules.camera.base import (
    Action,
    CameraRule,
    Episode,
    Evidence,
    IncidentRuleConfig,
    Reporter,
    RuleState,
    Seen,
    Stage,
    Transition,
    better,
    evidence_of,
)
from ioc.rules.camera.geometry import centre, in_zone


class StoppedVehicleConfig(IncidentRuleConfig):
    min_score: float = Field(ge=0, le=1, description="Detections below are not counted.")
    dwell_s: float = Field(gt=0, description="Default for zones without their own dwell_s.")
    move_tolerance: float = Field(gt=0, le=1, description="Box centre movement, frame fractions.")


class Stay(Episode):
    """A tracked vehicle in the zone; `since` is when it stopped where it is."""

    since: datetime
    class_name: str
    x: float
    y: float
    seen: datetime


class Stays(RuleState):
    stays: dict[int, Stay] = Field(default_factory=dict, description="By track id.")


class StoppedVehicle(CameraRule[StoppedVehicleConfig, Stays]):
    name = "stopped_vehicle"
    kind = IncidentKind.STOPPED_VEHICLE
    stage = Stage.ZONES
    zone_kind = "no_stopping"
    config = StoppedVehicleConfig
    state = Stays

    def on_frame(
        self, config: StoppedVehicleConfig, state: Stays, seen: Seen, out: Reporter
    ) -> list[Transition]:
        frame, zone, at, stays = seen.frame, seen.in_zone(), seen.at, state.stays
        dwell_limit = zone.dwell_s or config.dwell_s
        tracked = {d.track_id: d for d in frame.detections if d.track_id is not None}
        transitions: list[Transition] = []

        def report(stay: Stay, track_id: int, action: Action, title: str, shown: Evidence) -> None:
            transitions.append(
                out.report(
                    stay,
                    action,
                    f"{seen.rules.label(stay.class_name)} #{track_id} {title}",
                    shown,
                    zone=zone.name,
                    track_id=track_id,
                    dwell_s=round((stay.seen - stay.since).total_seconds(), 1),
                    limit_s=dwell_limit,
                )
            )

        def leave(track_id: int) -> None:
            stay = stays.pop(track_id)
            if stay.incident_id is not None and stay.best is not None:
                report(stay, track_id, "resolve", f"không còn dừng tại {zone.name}", stay.best)

        for track_id, d in sorted(tracked.items()):
            if not in_zone(d, zone, config.min_score, frame):
                if track_id in stays:
                    leave(track_id)
                continue
            x, y = centre(d.box, frame.width, frame.height)
            stay = stays.get(track_id)
            if stay is not None and math.dist((x, y), (stay.x, stay.y)) > config.move_tolerance:
                leave(track_id)  # moving again: a later stop is a new episode
                stay = None
            if stay is None:
                stay = stays[track_id] = Stay(since=at, class_name=d.class_name, x=x, y=y, seen=at)
            stay.seen = at
            sighting = evidence_of(frame, [d], d.score)
            if stay.incident_id is None:
                stay.best = better(stay.best, sighting)
                if at - stay.since >= timedelta(seconds=dwell_limit):
                    out.open(stay, stay.since, zone.name, track_id)
                    report(stay, track_id, "open", f"dừng tại {zone.name}", stay.best)
            elif stay.best is not None and sighting.score > stay.best.score:
                stay.best = sighting
                report(stay, track_id, "update", f"dừng tại {zone.name}", sighting)
        lost = timedelta(seconds=seen.rules.track_lost_s)
        for track_id in [t for t, s in stays.items() if t not in tracked and at - s.seen >= lost]:
            leave(track_id)
        return transitions
