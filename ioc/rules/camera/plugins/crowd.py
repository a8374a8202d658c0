"""Zones of kind "crowd": more than the zone's `limit` (persons, or the zone's classes) for the
zone's `hold_s` (default here); resolves at or below the limit for `clear_s`. Score: the count."""

from __future__ import annotations

from pydantic import Field

from ioc.models.incidents import IncidentKind
from ioc.rules.camera.base import (
    Action,
    CameraRule,
    Episode,
    Evidence,
    IncidentRuleConfig,
    Reporter,
    Seen,
    Stage,
    Transition,
    better,
    evidence_of,
)
from ioc.rules.camera.geometry import in_zone


class CrowdConfig(IncidentRuleConfig):
    min_score: float = Field(ge=0, le=1, description="Detections below are not counted.")
    hold_s: float = Field(gt=0, description="Default for zones without their own hold_s.")
    clear_s: float = Field(gt=0)


class Crowd(CameraRule[CrowdConfig, Episode]):
    name = "crowd"
    kind = IncidentKind.CROWDING
    stage = Stage.ZONES
    zone_kind = "crowd"
    config = CrowdConfig
    state = Episode

    def on_frame(
        self, config: CrowdConfig, state: Episode, seen: Seen, out: Reporter
    ) -> list[Transition]:
        frame, zone = seen.frame, seen.in_zone()
        limit = zone.limit
        assert limit is not None
        inside = [d for d in frame.detections if in_zone(d, zone, config.min_score, frame)]
        count = len(inside)
        sighting = evidence_of(frame, inside, count)
        action = state.held(count > limit, seen.at, zone.hold_s or config.hold_s, config.clear_s)
        what = "/".join(seen.rules.label(name) for name in zone.counted_classes)

        def report(action: Action, title: str, evidence: Evidence) -> list[Transition]:
            return [
                out.report(state, action, title, evidence, zone=zone.name, count=count, limit=limit)
            ]

        if state.incident_id is None:
            state.best = better(state.best, sighting) if state.since is not None else None
            if action != "open":
                return []
            assert state.since is not None and state.best is not None
            out.open(state, state.since, zone.name)
            return report("open", f"đông {what} tại {zone.name} ({count} > {limit})", state.best)
        assert state.best is not None
        if action == "resolve":
            title = f"hết đông {what} tại {zone.name} (cao nhất {state.best.score:g})"
            done = report("resolve", title, state.best)
            state.reset()
            return done
        if sighting.score > state.best.score:
            state.best = sighting
            return report("update", f"đông {what} tại {zone.name} ({count} > {limit})", sighting)
        return []
