"""The camera rule engine: rules as data (`camera_rules.toml`), evaluated by pure functions over a
small per-camera state that a Faust table can keep (a JSON-serialisable pydantic model).

`evaluate(state, frame, camera, rules)` handles one frame's detections; `evaluate_timer(state,
camera, rules, now)` is the clock for the offline check. Both update the state in place and
return the incident transitions (open / update / resolve); `evaluate` also returns the line
crossings the frame completed.

Rules are judged in the frames' event time. Each incident is one episode: it opens once its
condition has held (fire: seen in N of the last M frames), is updated when a better frame shows
it (a higher `score`: the evidence the annotated snapshot is drawn from), and resolves once the
condition has been absent for its clear time. Its id derives from the camera, the rule, the zone
or track and the episode's start, so a replay of the same frames gives the same ids.

Zones are in fractions of the frame. A detection is in a zone when its anchor, the bottom centre
of its box (where a person or a vehicle stands), is inside the polygon or on one side of the
line; a tracked vehicle is staying while its box centre keeps within `move_tolerance` of where it
stopped. Only pydantic and the standard library are used: the light streams install runs this.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, model_validator

from ioc.models.base import deterministic_id
from ioc.models.events import BoundingBox, Detection, FrameDetections, FrameStats
from ioc.models.incidents import IncidentKind, IncidentSource, Severity
from ioc.models.registry import CameraSpec, Point, Zone
from ioc.rulefiles import deep_merge, read_layered
from ioc.rules.hysteresis import Hysteresis

RULES_PATH = Path(__file__).resolve().parent / "camera_rules.toml"
MAX_WINDOW = 60  # frames the fire rule may look back over; bounds the state
SIGNATURE_BITS = 64

Action = Literal["open", "update", "resolve"]
Rule = Literal["fire", "crowd", "stopped_vehicle", "offline", "frozen", "blackout", "tamper"]
Direction = Literal["left_to_right", "right_to_left"]
KIND_OF_RULE: dict[Rule, IncidentKind] = {
    "fire": IncidentKind.FIRE,
    "crowd": IncidentKind.CROWDING,
    "stopped_vehicle": IncidentKind.STOPPED_VEHICLE,
    "offline": IncidentKind.CAMERA_OFFLINE,
    "frozen": IncidentKind.CAMERA_FROZEN,
    "blackout": IncidentKind.CAMERA_BLACKOUT,
    "tamper": IncidentKind.CAMERA_TAMPER,
}


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# --- Rules as configured -------------------------------------------------------------------


class FireRule(_Strict):
    enabled: bool = True
    classes: tuple[str, ...] = Field(min_length=1)
    min_score: float = Field(ge=0, le=1, description="Detections below are not counted.")
    frames: int = Field(ge=1, description="Raised when seen in this many frames ...")
    window: int = Field(ge=1, le=MAX_WINDOW, description="... of the last this many.")
    clear_s: float = Field(gt=0)
    severity: Severity

    @model_validator(mode="after")
    def _frames_in_window(self) -> FireRule:
        if self.frames > self.window:
            raise ValueError("fire: frames must not exceed window")
        return self


class CrowdRule(_Strict):
    enabled: bool = True
    min_score: float = Field(ge=0, le=1, description="Detections below are not counted.")
    hold_s: float = Field(gt=0, description="Default for zones without their own hold_s.")
    clear_s: float = Field(gt=0)
    severity: Severity


class StoppedVehicleRule(_Strict):
    enabled: bool = True
    min_score: float = Field(ge=0, le=1, description="Detections below are not counted.")
    dwell_s: float = Field(gt=0, description="Default for zones without their own dwell_s.")
    move_tolerance: float = Field(gt=0, le=1, description="Box centre movement, frame fractions.")
    severity: Severity


class LineRule(_Strict):
    enabled: bool = True
    min_score: float = Field(ge=0, le=1, description="Detections below are not counted.")


class OfflineRule(_Strict):
    enabled: bool = True
    after_s: float = Field(gt=0)
    severity: Severity


class FrozenRule(_Strict):
    enabled: bool = True
    frames: int = Field(ge=2, description="Identical frames in a row ...")
    min_s: float = Field(ge=0, description="... spanning at least this long.")
    severity: Severity


class BlackoutRule(_Strict):
    enabled: bool = True
    max_luma_std: float = Field(gt=0, description="Luma spread below: a near-uniform frame.")
    hold_s: float = Field(gt=0)
    clear_s: float = Field(gt=0)
    severity: Severity


class TamperRule(_Strict):
    enabled: bool = True
    learn_frames: int = Field(ge=1, description="Frames the reference view is learnt from.")
    max_bits: int = Field(ge=1, lt=SIGNATURE_BITS, description="More differing bits: changed.")
    hold_s: float = Field(gt=0)
    clear_s: float = Field(gt=0)
    accept_after_s: float | None = Field(
        None, gt=0, description="A view changed this long becomes the reference; unset: never."
    )
    severity: Severity


class CameraRules(_Strict):
    """Every rule for one camera, every value given."""

    track_lost_s: float = Field(gt=0, description="A track unseen this long has gone.")
    labels: dict[str, str] = Field(default_factory=dict, description="Class names in titles.")
    fire: FireRule
    crowd: CrowdRule
    stopped_vehicle: StoppedVehicleRule
    line: LineRule
    offline: OfflineRule
    frozen: FrozenRule
    blackout: BlackoutRule
    tamper: TamperRule

    def label(self, class_name: str) -> str:
        return self.labels.get(class_name, class_name)


class CameraOverride(_Strict):
    """Partial rules for one camera; merged into the defaults and validated when loaded."""

    track_lost_s: float | None = None
    labels: dict[str, str] | None = None
    fire: dict[str, Any] | None = None
    crowd: dict[str, Any] | None = None
    stopped_vehicle: dict[str, Any] | None = None
    line: dict[str, Any] | None = None
    offline: dict[str, Any] | None = None
    frozen: dict[str, Any] | None = None
    blackout: dict[str, Any] | None = None
    tamper: dict[str, Any] | None = None


class CameraRuleSet(CameraRules):
    """`camera_rules.toml`: the defaults, and per-camera overrides."""

    version: Literal[1]
    extends_bundled: bool = Field(
        False,
        description="Layer this file over the bundled camera_rules.toml: a site file then holds "
        "only what differs.",
    )
    cameras: dict[str, CameraOverride] = Field(default_factory=dict)
    _defaults: CameraRules | None = PrivateAttr(None)
    _merged: dict[str, CameraRules] = PrivateAttr(default_factory=dict)

    @model_validator(mode="after")
    def _merge_overrides(self) -> CameraRuleSet:
        base = self.model_dump(include=set(CameraRules.model_fields))
        self._defaults = CameraRules.model_validate(base)
        for camera_id, override in self.cameras.items():
            try:
                self._merged[camera_id] = CameraRules.model_validate(
                    deep_merge(base, override.model_dump(exclude_unset=True))
                )
            except ValueError as error:
                raise ValueError(f"cameras.{camera_id}: {error}") from None
        return self

    @classmethod
    def load(cls, path: Path | None = None) -> CameraRuleSet:
        return cls.model_validate(read_layered(path, RULES_PATH))

    def for_camera(self, camera_id: str) -> CameraRules:
        merged = self._merged.get(camera_id, self._defaults)
        assert merged is not None
        return merged


# --- State ---------------------------------------------------------------------------------


class _State(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class FrameRef(_State):
    """Where the frame's JPEG is: its place in the frames topic, and its camera sequence."""

    partition: int
    offset: int
    seq: int


class Box(_State):
    class_name: str = Field(alias="class")
    score: float
    box: BoundingBox
    track_id: int | None = None


class Evidence(_State):
    """A frame that shows an incident, the boxes that explain it and its score: a better frame
    (higher score) replaces it. Health incidents keep the latest frame, score 0."""

    at: datetime
    frame: FrameRef
    boxes: list[Box] = Field(default_factory=list)
    score: float = 0.0


class Episode(_State):
    """One condition's hysteresis and the incident it opened."""

    since: datetime | None = Field(None, description="Condition met since (event time).")
    clear_since: datetime | None = Field(None, description="Unmet since, while open.")
    incident_id: str | None = None
    start: datetime | None = None
    best: Evidence | None = None


class Stay(Episode):
    """A tracked vehicle in a no-stopping zone; `since` is when it stopped where it is."""

    since: datetime
    class_name: str
    x: float
    y: float
    seen: datetime


class LineTrack(_State):
    side: int = Field(description="-1 left of the line (first point to second), 1 right, 0 on.")
    x: float
    y: float
    seen: datetime
    counted: bool = False


class FrozenEpisode(Episode):
    digest: str | None = None
    repeats: int = 0
    digest_since: datetime | None = None


class TamperEpisode(Episode):
    reference: list[float] = Field(default_factory=list, description="Share of 1s per bit.")
    learnt: int = Field(0, description="Frames the reference has learnt from, up to the rule's.")


class CameraState(_State):
    """What the engine keeps per camera between frames (a changelog-backed table value)."""

    camera_id: str
    watching_since: datetime | None = Field(None, description="Offline clock before a frame.")
    last_arrival: datetime | None = Field(None, description="Kafka time of the latest frame.")
    source_offset: int | None = Field(
        None, description="Offset of the last message applied (its camera is on one partition)."
    )
    latest: Evidence | None = None
    fire_window: list[Evidence | None] = Field(
        default_factory=list, description="The last frames: what they showed of fire, or None."
    )
    fire: Episode = Field(default_factory=Episode)
    crowd: dict[str, Episode] = Field(default_factory=dict)
    stays: dict[str, dict[int, Stay]] = Field(default_factory=dict)
    lines: dict[str, dict[int, LineTrack]] = Field(default_factory=dict)
    line_counts: dict[str, dict[str, dict[Direction, int]]] = Field(
        default_factory=dict, description="Crossings so far: line -> class -> direction -> n."
    )
    offline: Episode = Field(default_factory=Episode)
    frozen: FrozenEpisode = Field(default_factory=FrozenEpisode)
    blackout: Episode = Field(default_factory=Episode)
    tamper: TamperEpisode = Field(default_factory=TamperEpisode)

    @classmethod
    def start(cls, camera_id: str, now: datetime) -> CameraState:
        """A camera that is expected to send frames from `now` on (so it can be offline)."""
        return cls(camera_id=camera_id, watching_since=now.astimezone(UTC))


class Transition(_Strict):
    """What happened to one incident: the agent turns it into an `Incident` upsert."""

    camera_id: str
    rule: Rule
    action: Action
    incident_id: str
    kind: IncidentKind
    severity: Severity
    title: str
    episode_start: datetime
    event_time: datetime
    evidence: Evidence | None = Field(description="None: no frame seen yet (offline).")
    details: dict[str, str | int | float | None] = Field(default_factory=dict)


class Crossing(_Strict):
    camera_id: str
    line: str
    class_name: str
    direction: Direction
    track_id: int
    event_time: datetime
    total: int = Field(description="This line's crossings of the class in this direction.")


# --- Geometry (fractions of the frame) -----------------------------------------------------


def _anchor(box: BoundingBox, width: int, height: int) -> Point:
    return (box.x1 + box.x2) / 2 / max(width, 1), box.y2 / max(height, 1)


def _centre(box: BoundingBox, width: int, height: int) -> Point:
    return (box.x1 + box.x2) / 2 / max(width, 1), (box.y1 + box.y2) / 2 / max(height, 1)


def _inside(point: Point, polygon: tuple[Point, ...]) -> bool:
    """Ray casting: a horizontal ray from the point crosses the edges an odd number of times."""
    x, y = point
    inside = False
    for (x1, y1), (x2, y2) in zip(polygon, polygon[1:] + polygon[:1], strict=True):
        if (y1 > y) != (y2 > y) and x < x1 + (y - y1) * (x2 - x1) / (y2 - y1):
            inside = not inside
    return inside


def _side(a: Point, b: Point, p: Point) -> float:
    """Positive when `p` is right of a→b as seen in the image (y grows downwards)."""
    return (b[0] - a[0]) * (p[1] - a[1]) - (b[1] - a[1]) * (p[0] - a[0])


def _crosses(p: Point, q: Point, a: Point, b: Point) -> bool:
    """The move p→q crosses the segment a–b (not merely its extension)."""
    return _side(a, b, p) * _side(a, b, q) < 0 and _side(p, q, a) * _side(p, q, b) <= 0


# --- Evaluation ----------------------------------------------------------------------------


def _evidence(frame: FrameDetections, detections: list[Detection], score: float) -> Evidence:
    return Evidence(
        at=frame.event_time.astimezone(UTC),
        frame=FrameRef(partition=frame.frame_partition, offset=frame.frame_offset, seq=frame.seq),
        boxes=[
            Box(class_name=d.class_name, score=d.score, box=d.box, track_id=d.track_id)
            for d in detections
        ],
        score=score,
    )


def _better(best: Evidence | None, seen: Evidence) -> Evidence:
    """The earlier frame wins a tie, so the evidence does not churn on equal frames."""
    return seen if best is None or seen.score > best.score else best


def _held(ep: Episode, met: bool, at: datetime, hold_s: float, clear_s: float) -> Action | None:
    """The episode's hysteresis step (`ioc.rules.hysteresis`); the caller opens or resets it."""
    rule = Hysteresis(timedelta(seconds=hold_s), timedelta(seconds=clear_s))
    step = rule.step(ep.incident_id is not None, met, at, ep.since, ep.clear_since)
    ep.since, ep.clear_since = step.since, step.clear_since
    return step.action


class _Reporter:
    """Builds the transitions of one camera's evaluation."""

    def __init__(self, camera: CameraSpec, rules: CameraRules, at: datetime) -> None:
        self.camera, self.rules, self.at = camera, rules, at

    def open(self, ep: Episode, rule: Rule, start: datetime, *slot: object) -> None:
        ep.incident_id = deterministic_id(
            "inc", IncidentSource.VISION, self.camera.id, rule, *slot, start.isoformat()
        )
        ep.start = start

    def report(
        self,
        ep: Episode,
        rule: Rule,
        action: Action,
        title: str,
        evidence: Evidence | None,
        **details: str | int | float | None,
    ) -> Transition:
        assert ep.incident_id is not None and ep.start is not None
        return Transition(
            camera_id=self.camera.id,
            rule=rule,
            action=action,
            incident_id=ep.incident_id,
            kind=KIND_OF_RULE[rule],
            severity=getattr(self.rules, rule).severity,
            title=f"Camera {self.camera.name}: {title}",
            episode_start=ep.start,
            event_time=self.at,
            evidence=evidence,
            details=details,
        )


def _fire(state: CameraState, frame: FrameDetections, out: _Reporter) -> list[Transition]:
    rule = out.rules.fire
    hits = [
        d for d in frame.detections if d.class_name in rule.classes and d.score >= rule.min_score
    ]
    seen = _evidence(frame, hits, max(d.score for d in hits)) if hits else None
    state.fire_window = [*state.fire_window, seen][-rule.window :]
    ep = state.fire

    def title(best: Evidence) -> str:
        top = max(best.boxes, key=lambda box: box.score)
        return f"phát hiện {out.rules.label(top.class_name)} ({top.score:.0%})"

    if ep.incident_id is None:
        shown = [e for e in state.fire_window if e is not None]
        if len(shown) < rule.frames:
            return []
        out.open(ep, "fire", shown[0].at)
        for evidence in shown:
            ep.best = _better(ep.best, evidence)
        assert ep.best is not None
        return [out.report(ep, "fire", "open", title(ep.best), ep.best, frames=len(shown))]
    assert ep.best is not None
    action = _held(ep, seen is not None, out.at, 0, rule.clear_s)
    if seen is not None and seen.score > ep.best.score:
        ep.best = seen
        return [out.report(ep, "fire", "update", title(seen), seen)]
    if action != "resolve":
        return []
    names = "/".join(out.rules.label(name) for name in rule.classes)
    title_done = f"không còn thấy {names} sau {rule.clear_s:g} s (cao nhất {ep.best.score:.0%})"
    done = out.report(ep, "fire", "resolve", title_done, ep.best)
    state.fire, state.fire_window = Episode(), []  # old sightings must not reopen it
    return [done]


def _in_zone(d: Detection, zone: Zone, min_score: float, frame: FrameDetections) -> bool:
    return (
        d.class_name in zone.counted_classes
        and d.score >= min_score
        and _inside(_anchor(d.box, frame.width, frame.height), zone.points)
    )


def _crowd(
    state: CameraState, frame: FrameDetections, zone: Zone, out: _Reporter
) -> list[Transition]:
    rule, limit = out.rules.crowd, zone.limit
    assert limit is not None
    inside = [d for d in frame.detections if _in_zone(d, zone, rule.min_score, frame)]
    count = len(inside)
    seen = _evidence(frame, inside, count)
    ep = state.crowd.setdefault(zone.name, Episode())
    action = _held(ep, count > limit, out.at, zone.hold_s or rule.hold_s, rule.clear_s)
    what = "/".join(out.rules.label(name) for name in zone.counted_classes)

    def report(action: Action, title: str, evidence: Evidence) -> list[Transition]:
        return [
            out.report(
                ep, "crowd", action, title, evidence, zone=zone.name, count=count, limit=limit
            )
        ]

    if ep.incident_id is None:
        ep.best = _better(ep.best, seen) if ep.since is not None else None  # best while held
        if action != "open":
            return []
        assert ep.since is not None and ep.best is not None
        out.open(ep, "crowd", ep.since, zone.name)
        return report("open", f"đông {what} tại {zone.name} ({count} > {limit})", ep.best)
    assert ep.best is not None
    if action == "resolve":
        done = report(
            "resolve", f"hết đông {what} tại {zone.name} (cao nhất {ep.best.score:g})", ep.best
        )
        state.crowd[zone.name] = Episode()
        return done
    if seen.score > ep.best.score:
        ep.best = seen
        return report("update", f"đông {what} tại {zone.name} ({count} > {limit})", seen)
    return []


def _stopped(
    state: CameraState, frame: FrameDetections, zone: Zone, out: _Reporter
) -> list[Transition]:
    rule, at = out.rules.stopped_vehicle, out.at
    dwell_limit = zone.dwell_s or rule.dwell_s
    stays = state.stays.setdefault(zone.name, {})
    tracked = {d.track_id: d for d in frame.detections if d.track_id is not None}
    transitions: list[Transition] = []

    def report(stay: Stay, track_id: int, action: Action, title: str, evidence: Evidence) -> None:
        transitions.append(
            out.report(
                stay,
                "stopped_vehicle",
                action,
                f"{out.rules.label(stay.class_name)} #{track_id} {title}",
                evidence,
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
        if not _in_zone(d, zone, rule.min_score, frame):
            if track_id in stays:
                leave(track_id)
            continue
        x, y = _centre(d.box, frame.width, frame.height)
        stay = stays.get(track_id)
        if stay is not None and math.dist((x, y), (stay.x, stay.y)) > rule.move_tolerance:
            leave(track_id)  # moving again: a later stop is a new episode
            stay = None
        if stay is None:
            stay = stays[track_id] = Stay(since=at, class_name=d.class_name, x=x, y=y, seen=at)
        stay.seen = at
        seen = _evidence(frame, [d], d.score)
        if stay.incident_id is None:
            stay.best = _better(stay.best, seen)
            if at - stay.since >= timedelta(seconds=dwell_limit):
                out.open(stay, "stopped_vehicle", stay.since, zone.name, track_id)
                report(stay, track_id, "open", f"dừng tại {zone.name}", stay.best)
        elif stay.best is not None and seen.score > stay.best.score:
            stay.best = seen
            report(stay, track_id, "update", f"dừng tại {zone.name}", seen)
    lost = timedelta(seconds=out.rules.track_lost_s)
    for track_id in [t for t, s in stays.items() if t not in tracked and at - s.seen >= lost]:
        leave(track_id)
    return transitions


def _line(state: CameraState, frame: FrameDetections, zone: Zone, out: _Reporter) -> list[Crossing]:
    """Tracks whose anchor moved across the line since their previous sighting, each counted
    once per line."""
    rule, at = out.rules.line, out.at
    a, b = zone.points
    tracks = state.lines.setdefault(zone.name, {})
    counts = state.line_counts.setdefault(zone.name, {})
    crossings = []
    seen = sorted(
        (d.track_id, d)
        for d in frame.detections
        if d.track_id is not None
        and d.class_name in zone.counted_classes
        and d.score >= rule.min_score
    )
    for track_id, d in seen:
        p = _anchor(d.box, frame.width, frame.height)
        side = (_side(a, b, p) > 0) - (_side(a, b, p) < 0)
        track = tracks.get(track_id)
        if track is None:
            tracks[track_id] = LineTrack(side=side, x=p[0], y=p[1], seen=at)
            continue
        if not track.counted and side * track.side < 0 and _crosses((track.x, track.y), p, a, b):
            direction: Direction = "left_to_right" if side > 0 else "right_to_left"
            per_class = counts.setdefault(d.class_name, {})
            per_class[direction] = per_class.get(direction, 0) + 1
            track.counted = True
            crossings.append(
                Crossing(
                    camera_id=out.camera.id,
                    line=zone.name,
                    class_name=d.class_name,
                    direction=direction,
                    track_id=track_id,
                    event_time=at,
                    total=per_class[direction],
                )
            )
        track.x, track.y, track.seen = p[0], p[1], at
        track.side = side or track.side
    lost = timedelta(seconds=out.rules.track_lost_s)
    for track_id in [t for t, track in tracks.items() if at - track.seen >= lost]:
        del tracks[track_id]
    return crossings


def _frozen(
    state: CameraState, stats: FrameStats, latest: Evidence, out: _Reporter
) -> list[Transition]:
    rule, ep, at = out.rules.frozen, state.frozen, out.at
    if stats.digest == ep.digest:
        ep.repeats += 1
    else:
        ep.digest, ep.repeats, ep.digest_since = stats.digest, 1, at
    assert ep.digest_since is not None
    span = at - ep.digest_since
    met = ep.repeats >= rule.frames and span >= timedelta(seconds=rule.min_s)
    if ep.incident_id is None and met:
        out.open(ep, "frozen", ep.digest_since)
        title = (
            f"hình bị đứng ({ep.repeats} khung hình giống hệt trong {span.total_seconds():.0f} s)"
        )
        return [out.report(ep, "frozen", "open", title, latest, frames=ep.repeats)]
    if ep.incident_id is not None and not met:
        done = out.report(ep, "frozen", "resolve", "hình chuyển động trở lại", latest)
        state.frozen = FrozenEpisode(digest=stats.digest, repeats=1, digest_since=at)
        return [done]
    return []


def _blackout(
    state: CameraState, stats: FrameStats, latest: Evidence, out: _Reporter
) -> list[Transition]:
    rule, ep = out.rules.blackout, state.blackout
    action = _held(ep, stats.luma_std < rule.max_luma_std, out.at, rule.hold_s, rule.clear_s)
    if action == "open":
        assert ep.since is not None
        out.open(ep, "blackout", ep.since)
        title = f"hình tối đen, chói trắng hoặc bị che (độ tương phản {stats.luma_std:.1f})"
        return [out.report(ep, "blackout", "open", title, latest, luma_std=stats.luma_std)]
    if action == "resolve":
        title = "hình bình thường trở lại"
        done = out.report(ep, "blackout", "resolve", title, latest, luma_std=stats.luma_std)
        state.blackout = Episode()
        return [done]
    return []


def _learn(ep: TamperEpisode, bits: list[int], weight: float) -> None:
    reference = ep.reference or [0.0] * SIGNATURE_BITS
    ep.reference = [
        round(p + (bit - p) * weight, 4) for p, bit in zip(reference, bits, strict=True)
    ]


def _tamper(
    state: CameraState, stats: FrameStats, latest: Evidence, out: _Reporter
) -> list[Transition]:
    """The view against a reference learnt from the camera's first frames: each bit of the
    reference is the running share of frames with that signature bit set, and frames that match
    keep it moving with slow changes (light, seasons)."""
    rule, ep, at = out.rules.tamper, state.tamper, out.at
    value = int(stats.signature, 16)
    bits = [(value >> i) & 1 for i in range(SIGNATURE_BITS)]
    if ep.learnt < rule.learn_frames:
        _learn(ep, bits, 1 / (ep.learnt + 1))
        ep.learnt += 1
        return []
    distance = sum(bit != (p >= 0.5) for bit, p in zip(bits, ep.reference, strict=True))
    changed = distance > rule.max_bits
    if not changed and ep.incident_id is None:
        _learn(ep, bits, 1 / rule.learn_frames)
    action = _held(ep, changed, at, rule.hold_s, rule.clear_s)
    if action == "open":
        assert ep.since is not None
        out.open(ep, "tamper", ep.since)
        title = f"góc quay thay đổi đột ngột ({distance}/{SIGNATURE_BITS} bit khác)"
        return [out.report(ep, "tamper", "open", title, latest, bits=distance)]
    if action == "resolve":
        done = out.report(ep, "tamper", "resolve", "góc quay trở lại như cũ", latest, bits=distance)
        state.tamper = TamperEpisode(reference=ep.reference, learnt=ep.learnt)
        return [done]
    accept = rule.accept_after_s
    if ep.start is not None and accept is not None and at - ep.start >= timedelta(seconds=accept):
        title = f"góc quay mới được lấy làm chuẩn sau {accept:g} s"
        done = out.report(ep, "tamper", "resolve", title, latest, bits=distance)
        state.tamper = TamperEpisode()  # learns the new view from the next frames
        return [done]
    return []


Outcome = tuple[list[Transition], list[Crossing]]


def evaluate(
    state: CameraState, frame: FrameDetections, camera: CameraSpec, rules: CameraRules
) -> Outcome:
    """One frame's detections, judged at its event time; its Kafka time is the offline clock."""
    at = frame.event_time.astimezone(UTC)
    out = _Reporter(camera, rules, at)
    arrived = datetime.fromtimestamp(frame.ingested_at_ms / 1000, UTC)
    state.last_arrival = arrived if state.last_arrival is None else max(state.last_arrival, arrived)
    latest = _evidence(frame, [], 0.0)
    transitions: list[Transition] = []
    if state.offline.incident_id is not None and state.offline.start is not None:
        silent = (arrived - state.offline.start).total_seconds()
        title = f"có hình trở lại (mất tín hiệu khoảng {silent:.0f} s)"
        transitions.append(
            out.report(state.offline, "offline", "resolve", title, latest, silent_s=round(silent))
        )
        state.offline = Episode()
    zone_names = {zone.name for zone in camera.zones}
    for by_zone in (state.crowd, state.stays, state.lines, state.line_counts):
        for name in [name for name in by_zone if name not in zone_names]:
            del by_zone[name]  # a zone taken out of the registry
    if rules.fire.enabled:
        transitions += _fire(state, frame, out)
    crossings: list[Crossing] = []
    for zone in camera.zones:
        if zone.kind == "crowd" and rules.crowd.enabled:
            transitions += _crowd(state, frame, zone, out)
        elif zone.kind == "no_stopping" and rules.stopped_vehicle.enabled:
            transitions += _stopped(state, frame, zone, out)
        elif zone.kind == "line" and rules.line.enabled:
            crossings += _line(state, frame, zone, out)
    if frame.stats is not None:  # health needs the frame's statistics
        if rules.frozen.enabled:
            transitions += _frozen(state, frame.stats, latest, out)
        if rules.blackout.enabled:
            transitions += _blackout(state, frame.stats, latest, out)
        # A near-uniform frame's signature is noise: tamper neither judges nor learns from it.
        if rules.tamper.enabled and frame.stats.luma_std >= rules.blackout.max_luma_std:
            transitions += _tamper(state, frame.stats, latest, out)
    state.latest = latest
    return transitions, crossings


def evaluate_timer(
    state: CameraState, camera: CameraSpec, rules: CameraRules, now: datetime
) -> list[Transition]:
    """A wall-clock tick: the camera is offline once no frame arrived for `after_s`."""
    now = now.astimezone(UTC)
    rule, ep = rules.offline, state.offline
    base = state.last_arrival or state.watching_since
    if not rule.enabled or base is None or ep.incident_id is not None:
        return []
    silent = (now - base).total_seconds()
    if silent < rule.after_s:
        return []
    out = _Reporter(camera, rules, now)
    out.open(ep, "offline", base)
    title = f"mất tín hiệu ({silent:.0f} s không có hình, giới hạn {rule.after_s:g} s)"
    return [out.report(ep, "offline", "open", title, state.latest, silent_s=round(silent))]


__all__ = [
    "RULES_PATH",
    "CameraRuleSet",
    "CameraRules",
    "CameraState",
    "Crossing",
    "Evidence",
    "Outcome",
    "Transition",
    "evaluate",
    "evaluate_timer",
]
