"""The camera rules applied to one camera: each frame's detections through every enabled rule in
stage order (zone rules once per zone of their kind), and clock ticks through the camera-wide
rules. Both update the camera's state in place and return what the rules found.

Before any rule, a frame loses the detections no rule should see: those standing in a mask zone
and those whose box is not a size their class can have (`objects` in the rules file). A zone
outside its schedule is shown no detections, so its episodes end as they would on an empty
scene."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from typing import NamedTuple

from ioc.models.events import Detection, FrameDetections
from ioc.models.registry import CameraSpec
from ioc.rules.camera.base import (
    Crossing,
    Flow,
    IncidentRuleConfig,
    Reporter,
    RuleConfig,
    Seen,
    Stage,
    Tick,
    Transition,
    evidence_of,
)
from ioc.rules.camera.geometry import anchor, inside
from ioc.rules.camera.registry import RULES, AnyRule, CameraRules, CameraState


class Outcome(NamedTuple):
    transitions: list[Transition]
    crossings: list[Crossing]
    flows: list[Flow]


_IN_ORDER = sorted(RULES.values(), key=lambda rule: (rule.stage, rule.name))


def _reporter(rule: AnyRule, config: RuleConfig, camera: CameraSpec, at: datetime) -> Reporter:
    severity = config.severity if isinstance(config, IncidentRuleConfig) else None
    return Reporter(camera, rule.name, rule.kind, severity, at)


def _visible(frame: FrameDetections, camera: CameraSpec, rules: CameraRules) -> list[Detection]:
    masks = [
        zone for zone in camera.zones if zone.kind == "mask" and zone.watched(frame.event_time)
    ]
    area = max(frame.width, 1) * max(frame.height, 1)

    def shown(d: Detection) -> bool:
        size = rules.objects.get(d.class_name)
        if size is not None and not size.fits((d.box.x2 - d.box.x1) * (d.box.y2 - d.box.y1) / area):
            return False
        point = anchor(d.box, frame.width, frame.height)
        return not any(
            (not mask.classes or d.class_name in mask.classes) and inside(point, mask.points)
            for mask in masks
        )

    return [d for d in frame.detections if shown(d)]


def evaluate(
    state: CameraState, frame: FrameDetections, camera: CameraSpec, rules: CameraRules
) -> Outcome:
    """One frame's detections, judged at its event time; its Kafka time is the offline clock."""
    at = frame.event_time.astimezone(UTC)
    arrived = datetime.fromtimestamp(frame.ingested_at_ms / 1000, UTC)
    state.last_arrival = arrived if state.last_arrival is None else max(state.last_arrival, arrived)
    visible = frame.model_copy(update={"detections": _visible(frame, camera, rules)})
    unwatched = frame.model_copy(update={"detections": []})
    seen = Seen(visible, camera, rules, at, latest=evidence_of(frame, [], 0.0))
    zone_names = {zone.name for zone in camera.zones}
    outcome = Outcome([], [], [])
    for rule in _IN_ORDER:
        config = rules.of(rule)
        if rule.zone_kind is not None:
            by_zone = state.by_zone(rule)
            for name in [name for name in by_zone if name not in zone_names]:
                del by_zone[name]  # a zone taken out of the registry
        if not config.enabled or (rule.stage is Stage.HEALTH and frame.stats is None):
            continue
        out = _reporter(rule, config, camera, at)
        if rule.zone_kind is None:
            found = rule.on_frame(config, state.of(rule), seen, out)
        else:
            found = [
                finding
                for zone in camera.zones
                if zone.kind == rule.zone_kind
                for finding in rule.on_frame(
                    config,
                    by_zone.setdefault(zone.name, rule.state()),
                    replace(seen, zone=zone, frame=visible if zone.watched(at) else unwatched),
                    out,
                )
            ]
        for finding in found:
            if isinstance(finding, Transition):
                outcome.transitions.append(finding)
            elif isinstance(finding, Crossing):
                outcome.crossings.append(finding)
            else:
                outcome.flows.append(finding)
    state.latest = seen.latest
    return outcome


def evaluate_timer(
    state: CameraState, camera: CameraSpec, rules: CameraRules, now: datetime
) -> list[Transition]:
    """A wall-clock tick, for the camera-wide rules (a camera gone silent)."""
    now = now.astimezone(UTC)
    tick = Tick(camera, rules, now, state.last_arrival or state.watching_since, state.latest)
    transitions: list[Transition] = []
    for rule in _IN_ORDER:
        config = rules.of(rule)
        if rule.zone_kind is None and config.enabled:
            out = _reporter(rule, config, camera, now)
            transitions += rule.on_tick(config, state.of(rule), tick, out)
    return transitions


__all__ = ["Outcome", "evaluate", "evaluate_timer"]
