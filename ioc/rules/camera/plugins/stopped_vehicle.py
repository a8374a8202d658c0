"""Zones of kind "no_stopping": a vehicle that stays where it stopped for the zone's `dwell_s`
(default here). A stop is kept by position, not by tracker id: a detection continues a stop when
its box overlaps the box the vehicle stopped in by at least `min_overlap` (intersection over
union), whatever its track id. So a track lost and found again, or a worker restart (track ids
start afresh), does not open a second incident for the same parked car. Only a tracked vehicle
starts a stop (a detection that cannot be followed could be any passing car); a tracked vehicle
whose box leaves its stop's has moved on. Resolves when it moves on, leaves the zone or is unseen
for `track_lost_s`. Score: its clearest detection (the dwell is in the evidence)."""

from __future__ import annotations

from datetime import datetime, timedelta

from pydantic import Field

from ioc.models.events import Detection, FrameDetections
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
from ioc.rules.camera.geometry import Rect, in_zone, overlap, rect_of


class StoppedVehicleConfig(IncidentRuleConfig):
    min_score: float = Field(ge=0, le=1, description="Detections below are not counted.")
    dwell_s: float = Field(gt=0, description="Default for zones without their own dwell_s.")
    min_overlap: float = Field(
        gt=0, le=1, description="Box overlap (IoU) with where it stopped: still the same stop."
    )


class Stay(Episode):
    """A vehicle stopped in the zone; `since` is when it stopped, `box` where (frame fractions)."""

    since: datetime
    class_name: str
    box: Rect
    seen: datetime
    track_id: int | None = None


class Stays(RuleState):
    stays: list[Stay] = Field(default_factory=list)


def _matches(
    stays: list[Stay], detections: list[Detection], frame: FrameDetections, min_overlap: float
) -> dict[int, int]:
    """Stay index -> detection index, one to one, the largest overlaps first."""
    boxes = [rect_of(d.box, frame.width, frame.height) for d in detections]
    pairs = sorted(
        (
            (overlap(stay.box, box), s, k)
            for s, stay in enumerate(stays)
            for k, box in enumerate(boxes)
        ),
        reverse=True,
    )
    matched: dict[int, int] = {}
    for score, s, k in pairs:
        if score >= min_overlap and s not in matched and k not in matched.values():
            matched[s] = k
    return matched


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
        frame, zone, at = seen.frame, seen.in_zone(), seen.at
        dwell_limit = zone.dwell_s or config.dwell_s
        vehicles = [d for d in frame.detections if in_zone(d, zone, config.min_score, frame)]
        matched = _matches(state.stays, vehicles, frame, config.min_overlap)
        transitions: list[Transition] = []

        def report(stay: Stay, action: Action, title: str, shown: Evidence) -> None:
            who = seen.rules.label(stay.class_name)
            if stay.track_id is not None:
                who += f" #{stay.track_id}"
            transitions.append(
                out.report(
                    stay,
                    action,
                    f"{who} {title}",
                    shown,
                    zone=zone.name,
                    track_id=stay.track_id,
                    dwell_s=round((stay.seen - stay.since).total_seconds(), 1),
                    limit_s=dwell_limit,
                )
            )

        continuing = {id(vehicles[k]) for k in matched.values()}
        elsewhere = {  # tracks seen this frame away from their stop: they moved on
            d.track_id
            for d in frame.detections
            if d.track_id is not None and id(d) not in continuing
        }
        lost = timedelta(seconds=seen.rules.track_lost_s)
        kept: list[Stay] = []
        for index, stay in enumerate(state.stays):
            if index in matched:
                d = vehicles[matched[index]]
                stay.seen = at
                stay.track_id = d.track_id if d.track_id is not None else stay.track_id
                sighting = evidence_of(frame, [d], d.score)
                if stay.incident_id is None:
                    stay.best = better(stay.best, sighting)
                elif stay.best is not None and sighting.score > stay.best.score:
                    stay.best = sighting
                    report(stay, "update", f"dừng tại {zone.name}", sighting)
                kept.append(stay)
            elif stay.track_id in elsewhere or at - stay.seen >= lost:
                if stay.incident_id is not None and stay.best is not None:
                    report(stay, "resolve", f"không còn dừng tại {zone.name}", stay.best)
            else:
                kept.append(stay)
        for d in vehicles:
            if id(d) not in continuing and d.track_id is not None:
                kept.append(
                    Stay(
                        since=at,
                        class_name=d.class_name,
                        box=rect_of(d.box, frame.width, frame.height),
                        seen=at,
                        track_id=d.track_id,
                        best=evidence_of(frame, [d], d.score),
                    )
                )
        for stay in kept:
            if stay.incident_id is None and at - stay.since >= timedelta(seconds=dwell_limit):
                assert stay.best is not None
                x1, y1, x2, y2 = stay.box
                out.open(stay, stay.since, zone.name, f"{(x1 + x2) / 2:.3f},{(y1 + y2) / 2:.3f}")
                report(stay, "open", f"dừng tại {zone.name}", stay.best)
        state.stays = kept
        return transitions
