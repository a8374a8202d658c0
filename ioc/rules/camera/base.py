"""What every camera rule is made of: its config and state models, the value objects it is handed
(`Seen` for a frame, `Tick` for the clock), the evidence it keeps, and the `CameraRule` base class
that each plugin in `ioc/rules/camera/plugins/` subclasses once.

Rules are judged in the frames' event time. Each incident is one episode: it opens once its
condition has held, is updated when a better frame shows it (a higher `score`: the evidence the
annotated snapshot is drawn from), and resolves once the condition has been absent for its clear
time. Its id derives from the camera, the rule, the zone or track and the episode's start, so a
replay of the same frames gives the same ids. Only pydantic and the standard library are used:
the light streams install runs the rules.
"""

from __future__ import annotations

from abc import ABC
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import IntEnum
from typing import TYPE_CHECKING, ClassVar, Generic, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field

from ioc.models.base import deterministic_id
from ioc.models.events import BoundingBox, Detection, FrameDetections
from ioc.models.incidents import IncidentKind, IncidentSource, Severity
from ioc.models.registry import CameraSpec, Zone, ZoneKind
from ioc.rules.hysteresis import Hysteresis

if TYPE_CHECKING:
    from ioc.rules.camera.registry import CameraRules

Action = Literal["open", "update", "resolve"]
Direction = Literal["left_to_right", "right_to_left"]


# --- Config and state ----------------------------------------------------------------------


class RuleConfig(BaseModel):
    """A rule's block in `camera_rules.toml`; unknown keys are an error."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    enabled: bool = True


class IncidentRuleConfig(RuleConfig):
    """A rule that raises incidents, at this severity."""

    severity: Severity


class RuleState(BaseModel):
    """What a rule keeps per camera (or per zone) between frames, inside the camera's state."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    def reset(self) -> None:
        """Back to a fresh state, in place: the episode is over."""
        for name, field in type(self).model_fields.items():
            setattr(self, name, field.get_default(call_default_factory=True))


class FrameRef(RuleState):
    """Where the frame's JPEG is: its place in the frames topic, and its camera sequence."""

    partition: int
    offset: int
    seq: int


class Box(RuleState):
    class_name: str = Field(alias="class")
    score: float
    box: BoundingBox
    track_id: int | None = None


class Evidence(RuleState):
    """A frame that shows an incident, the boxes that explain it and its score: a better frame
    (higher score) replaces it. Health incidents keep the latest frame, score 0."""

    at: datetime
    frame: FrameRef
    boxes: list[Box] = Field(default_factory=list)
    score: float = 0.0


class Episode(RuleState):
    """One condition's hysteresis and the incident it opened."""

    since: datetime | None = Field(None, description="Condition met since (event time).")
    clear_since: datetime | None = Field(None, description="Unmet since, while open.")
    incident_id: str | None = None
    start: datetime | None = None
    best: Evidence | None = None

    def held(self, met: bool, at: datetime, hold_s: float, clear_s: float) -> Action | None:
        """The hysteresis step (`ioc.rules.hysteresis`); the rule opens or resets the episode."""
        rule = Hysteresis(timedelta(seconds=hold_s), timedelta(seconds=clear_s))
        step = rule.step(self.incident_id is not None, met, at, self.since, self.clear_since)
        self.since, self.clear_since = step.since, step.clear_since
        return step.action


def evidence_of(frame: FrameDetections, detections: list[Detection], score: float) -> Evidence:
    return Evidence(
        at=frame.event_time.astimezone(UTC),
        frame=FrameRef(partition=frame.frame_partition, offset=frame.frame_offset, seq=frame.seq),
        boxes=[
            Box(class_name=d.class_name, score=d.score, box=d.box, track_id=d.track_id)
            for d in detections
        ],
        score=score,
    )


def better(best: Evidence | None, seen: Evidence) -> Evidence:
    """The earlier frame wins a tie, so the evidence does not churn on equal frames."""
    return seen if best is None or seen.score > best.score else best


# --- What rules find -----------------------------------------------------------------------


class _Finding(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Transition(_Finding):
    """What happened to one incident: the agent turns it into an `Incident` upsert."""

    camera_id: str
    rule: str
    action: Action
    incident_id: str
    kind: IncidentKind
    severity: Severity
    title: str
    episode_start: datetime
    event_time: datetime
    evidence: Evidence | None = Field(description="None: no frame seen yet (offline).")
    details: dict[str, str | int | float | None] = Field(default_factory=dict)


class Crossing(_Finding):
    camera_id: str
    line: str
    class_name: str
    direction: Direction
    track_id: int
    event_time: datetime
    total: int = Field(description="This line's crossings of the class in this direction.")


class Flow(_Finding):
    """A line's crossings in one period, by direction (zeros included): the camera as a traffic
    counter, published as a FIWARE `TrafficFlowObserved` reading."""

    camera_id: str
    line: str
    start: datetime
    end: datetime
    counts: dict[Direction, int]


Finding = Transition | Crossing | Flow


@dataclass(frozen=True)
class Reporter:
    """Opens one rule's episodes and words their transitions, for one camera at one time."""

    camera: CameraSpec
    rule: str
    kind: IncidentKind | None
    severity: Severity | None
    at: datetime

    def open(self, ep: Episode, start: datetime, *slot: object) -> None:
        """Give the episode its deterministic id: camera, rule, zone or track, and start."""
        ep.incident_id = deterministic_id(
            "inc", IncidentSource.VISION, self.camera.id, self.rule, *slot, start.isoformat()
        )
        ep.start = start

    def report(
        self,
        ep: Episode,
        action: Action,
        title: str,
        evidence: Evidence | None,
        **details: str | int | float | None,
    ) -> Transition:
        if self.kind is None or self.severity is None:
            raise TypeError(f"camera rule {self.rule!r} counts; it raises no incidents")
        assert ep.incident_id is not None and ep.start is not None
        return Transition(
            camera_id=self.camera.id,
            rule=self.rule,
            action=action,
            incident_id=ep.incident_id,
            kind=self.kind,
            severity=self.severity,
            title=f"Camera {self.camera.name}: {title}",
            episode_start=ep.start,
            event_time=self.at,
            evidence=evidence,
            details=details,
        )


# --- What rules are handed -----------------------------------------------------------------


@dataclass(frozen=True)
class Seen:
    """One frame's detections as a rule sees them; `zone` is set for zone rules."""

    frame: FrameDetections
    camera: CameraSpec
    rules: CameraRules
    at: datetime  # the frame's event time, UTC: what rules judge in
    latest: Evidence  # this frame, without boxes: the evidence of health incidents
    zone: Zone | None = None

    def in_zone(self) -> Zone:
        assert self.zone is not None, "only zone rules are handed a zone"
        return self.zone


@dataclass(frozen=True)
class Tick:
    """A wall-clock tick for one camera."""

    camera: CameraSpec
    rules: CameraRules
    now: datetime
    silent_since: datetime | None  # the latest frame's arrival, or when watching began
    latest: Evidence | None


class Stage(IntEnum):
    """The order rules see a frame in. A frame first ends a signal loss; health rules read the
    frame's statistics and are skipped for frames without them."""

    SIGNAL = 0
    OBJECTS = 1
    ZONES = 2
    HEALTH = 3


ConfigT = TypeVar("ConfigT", bound=RuleConfig)
StateT = TypeVar("StateT", bound=RuleState)


class CameraRule(ABC, Generic[ConfigT, StateT]):
    """One camera rule: its TOML block (`config`), what it keeps per camera (`state`) and what it
    makes of a frame and of a clock tick.

    A plugin is one file in `ioc/rules/camera/plugins/` that defines one subclass; the registry
    discovers it, adds its block to the rules file's model and its state to the camera's. A rule
    with a `zone_kind` is judged once per zone of that kind in the camera registry, with a state
    per zone. Rules mutate their state in place and return what they found.
    """

    name: ClassVar[str]
    kind: ClassVar[IncidentKind | None]  # None: the rule counts, it raises no incidents
    stage: ClassVar[Stage]
    zone_kind: ClassVar[ZoneKind | None] = None
    config: ClassVar[type[RuleConfig]]
    state: ClassVar[type[RuleState]]

    def on_frame(
        self, config: ConfigT, state: StateT, seen: Seen, out: Reporter
    ) -> Sequence[Finding]:
        return []

    def on_tick(
        self, config: ConfigT, state: StateT, tick: Tick, out: Reporter
    ) -> list[Transition]:
        return []


__all__ = [
    "Action",
    "Box",
    "CameraRule",
    "Crossing",
    "Direction",
    "Episode",
    "Evidence",
    "Finding",
    "Flow",
    "FrameRef",
    "IncidentRuleConfig",
    "Reporter",
    "RuleConfig",
    "RuleState",
    "Seen",
    "Stage",
    "Tick",
    "Transition",
    "better",
    "evidence_of",
]
