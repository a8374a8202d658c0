"""Zones of kind "loitering": a person (or the zone's classes) staying in the zone for its
`dwell_s` (default here). The zone's episode opens at the first such person, is updated when more
loiter at once (score: how many) and resolves after `clear_s` with none. Presence is followed by
track; a new track whose box overlaps (`min_overlap`, IoU) the last box of a person unseen in
this frame takes over that person's time, so a tracker's id switch or a worker restart does not
start the count again."""

from __future__ import annotations

from datetime import datetime, timedelta

from pydantic import Field

from ioc.models.incidents import IncidentKind
from ioc.rules.camera.base import (
    CameraRule,
    Episode,
    IncidentRuleConfig,
    Reporter,
    RuleState,
    Seen,
    Stage,
    Transition,
    evidence_of,
)
from ioc.rules.camera.geometry import Rect, in_zone, overlap, rect_of


class LoiteringConfig(IncidentRuleConfig):
    min_score: float = Field(ge=0, le=1, description="Detections below are not counted.")
    dwell_s: float = Field(gt=0, description="Default for zones without their own dwell_s.")
    clear_s: float = Field(gt=0)
    min_overlap: float = Field(
        gt=0, le=1, description="Box overlap (IoU) for a new track to take over an unseen one."
    )


class Presence(RuleState):
    since: datetime
    seen: datetime
    box: Rect


class LoiteringState(Episode):
    present: dict[int, Presence] = Field(default_factory=dict, description="By track id.")


class Loitering(CameraRule[LoiteringConfig, LoiteringState]):
    name = "loitering"
    kind = IncidentKind.LOITERING
    stage = Stage.ZONES
    zone_kind = "loitering"
    config = LoiteringConfig
    state = LoiteringState

    def on_frame(
        self, config: LoiteringConfig, state: LoiteringState, seen: Seen, out: Reporter
    ) -> list[Transition]:
        frame, zone, at = seen.frame, seen.in_zone(), seen.at
        inside = {
            d.track_id: d
            for d in frame.detections
            if d.track_id is not None and in_zone(d, zone, config.min_score, frame)
        }
        unseen = {t: p for t, p in state.present.items() if t not in inside}
        for track_id, d in sorted(inside.items()):
            box = rect_of(d.box, frame.width, frame.height)
            presence = state.present.get(track_id)
            if presence is None:
                since = at
                heir = max(unseen, key=lambda t: overlap(unseen[t].box, box), default=None)
                if heir is not None and overlap(unseen[heir].box, box) >= config.min_overlap:
                    since = state.present.pop(heir).since  # the same person, named anew
                    del unseen[heir]
                presence = state.present[track_id] = Presence(since=since, seen=at, box=box)
            presence.seen, presence.box = at, box
        lost = timedelta(seconds=seen.rules.track_lost_s)
        for track_id in [t for t, p in state.present.items() if at - p.seen >= lost]:
            del state.present[track_id]
        dwell = timedelta(seconds=zone.dwell_s or config.dwell_s)
        loitering = [
            inside[t] for t, p in state.present.items() if t in inside and at - p.since >= dwell
        ]
        action = state.held(bool(loitering), at, 0, config.clear_s)
        what = "/".join(seen.rules.label(name) for name in zone.counted_classes)
        if loitering:
            sighting = evidence_of(frame, loitering, len(loitering))
            title = (
                f"{len(loitering)} {what} lảng vảng tại {zone.name} quá {dwell.total_seconds():g} s"
            )
            if state.incident_id is None:
                out.open(state, at, zone.name)
                state.best = sighting
                return [
                    out.report(state, "open", title, sighting, zone=zone.name, count=len(loitering))
                ]
            if state.best is not None and sighting.score > state.best.score:
                state.best = sighting
                return [
                    out.report(
                        state, "update", title, sighting, zone=zone.name, count=len(loitering)
                    )
                ]
            return []
        if action == "resolve" and state.best is not None:
            title = f"không còn {what} lảng vảng tại {zone.name}"
            done = out.report(state, "resolve", title, state.best, zone=zone.name, count=0)
            present = state.present
            state.reset()
            state.present = present
            return [done]
        return []
