"""Incidents: the candidates each source's rules raise, the fused incidents staff act on, and the
records of their delivery.

A candidate (`Incident`) is one source's view: a camera's fire episode, a 1022 report with its
duplicates, a sensor's breach. Fusion merges candidates that match in kind, place and time into one
`FusedIncident`, which takes the id of its earliest candidate, so an incident seen by one source
only keeps that source's id.
"""

from __future__ import annotations

from enum import StrEnum

from pydantic import AwareDatetime, Field

from ioc.models.base import WireModel


class IncidentSource(StrEnum):
    HOTLINE = "hotline"
    SENSOR = "sensor"
    VISION = "vision"


class IncidentKind(StrEnum):
    FIRE = "fire"
    FLOOD = "flood"
    WATER_LEVEL_HIGH = "water_level_high"
    AIR_QUALITY_POOR = "air_quality_poor"
    CITIZEN_REPORT = "citizen_report"
    SLA_BREACH = "sla_breach"
    SENSOR_FAULT = "sensor_fault"  # a stuck device (flatline)
    SENSOR_OFFLINE = "sensor_offline"
    CROWDING = "crowding"
    STOPPED_VEHICLE = "stopped_vehicle"
    WRONG_WAY = "wrong_way"
    LOITERING = "loitering"
    CAMERA_OFFLINE = "camera_offline"
    CAMERA_FROZEN = "camera_frozen"
    CAMERA_BLACKOUT = "camera_blackout"  # black, white or covered lens
    CAMERA_TAMPER = "camera_tamper"  # the view changed suddenly (moved or turned)


class Severity(StrEnum):
    URGENT = "urgent"
    HIGH = "high"
    NORMAL = "normal"

    @property
    def rank(self) -> int:
        """0 is the most severe."""
        return list(Severity).index(self)

    @classmethod
    def at_least(cls, minimum: str) -> frozenset[Severity]:
        """`minimum` and everything more severe: the severities that page staff."""
        return frozenset(s for s in cls if s.rank <= cls(minimum).rank)


class IncidentStatus(StrEnum):
    OPEN = "open"
    RESOLVED = "resolved"


class Incident(WireModel):
    """The latest state of one incident; `id` is derived from its inputs."""

    id: str
    kind: IncidentKind
    severity: Severity
    source: IncidentSource
    source_key: str = Field(description="Ticket id, sensor id or camera id.")
    title: str
    status: IncidentStatus = IncidentStatus.OPEN
    event_time: AwareDatetime = Field(description="When it happened, per the source.")
    ingested_at_ms: int = Field(description="Kafka timestamp of the triggering input.")
    district: str | None = None
    lat: float | None = None
    lon: float | None = None
    category: str | None = Field(None, description="Hotline category, for citizen reports.")
    reports: int = Field(1, ge=1, description="How many citizens reported it.")
    evidence: dict[str, object] = Field(default_factory=dict)


class FusedStatus(StrEnum):
    OPEN = "open"
    ACKNOWLEDGED = "acknowledged"
    RESOLVED = "resolved"
    MERGED = "merged"  # joined into an earlier incident (`merged_into`): nothing left to act on

    @property
    def active(self) -> bool:
        return self in (FusedStatus.OPEN, FusedStatus.ACKNOWLEDGED)


class Resolution(StrEnum):
    """How a resolved incident ended: the label that camera and sensor rules are judged by."""

    HANDLED = "handled"  # staff dealt with it: it was real
    FALSE_ALARM = "false_alarm"  # staff judged that nothing was there (Báo nhầm)
    CLEARED = "cleared"  # every source cleared by itself; nobody judged it


class Member(WireModel):
    """One candidate inside a fused incident, as fusion last saw it."""

    id: str
    source: IncidentSource
    source_key: str
    kind: IncidentKind
    severity: Severity
    status: IncidentStatus
    event_time: AwareDatetime
    title: str
    reports: int = 1
    cleared_at: AwareDatetime | None = Field(None, description="When fusion saw it resolve.")


class FusedIncident(WireModel):
    """The incident staff act on: its candidates, lifecycle and evidence; `version` orders the
    states of one incident, whoever changed it (fusion, a timer, a staff member)."""

    id: str
    version: int = Field(ge=1)
    change: str = Field(description="What this version changed: opened, joined, acknowledged, …")
    kind: IncidentKind
    severity: Severity
    status: FusedStatus
    episode: int = Field(1, ge=1, description="1, then one more each time it reopens.")
    title: str
    district: str | None = None
    lat: float | None = None
    lon: float | None = None
    event_time: AwareDatetime = Field(description="When its earliest candidate happened.")
    opened_at: AwareDatetime
    status_since: AwareDatetime
    ingested_at_ms: int = Field(description="Kafka timestamp of the input behind this version.")
    sources: int = Field(ge=1, description="Independent source types: camera, hotline, sensor.")
    reports: int = Field(0, ge=0, description="Citizens who reported it on 1022.")
    scope: str = Field("local", description="'district' once it is district-wide.")
    members: list[Member]
    evidence: dict[str, list[dict[str, object]]] = Field(default_factory=dict)
    actor: str = Field("ioc", description="Who made this change: a staff member or ioc.")
    reason: str | None = None
    acknowledged_by: str | None = None
    acknowledged_at: AwareDatetime | None = None
    resolved_by: str | None = None
    resolved_at: AwareDatetime | None = None
    resolution: Resolution | None = Field(None, description="How it ended, once resolved.")
    escalated_at: AwareDatetime | None = None
    merged_into: str | None = None
    unit: str | None = Field(None, description="The unit it is handed to (ioc.dispatch).")
    assigned_at: AwareDatetime | None = Field(None, description="When that unit was given it.")
    work_started_at: AwareDatetime | None = Field(
        None, description="Đang xử lý: when work on it started (this episode)."
    )


class Notification(StrEnum):
    FIRING = "firing"
    ESCALATED = "escalated"
    RESOLVED = "resolved"


class Alert(WireModel):
    """One delivery attempt's outcome, published to `ioc.alerts` for audit."""

    id: str
    incident_id: str
    channel: str
    notification: Notification = Notification.FIRING
    delivered_at: AwareDatetime
    latency_ms: float
    ok: bool
    error: str | None = None
