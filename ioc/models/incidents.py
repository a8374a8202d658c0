"""Incidents raised by the rules, and the alert records of their delivery."""

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


class Alert(WireModel):
    """One delivery attempt's outcome, published to `ioc.alerts` for audit."""

    id: str
    incident_id: str
    channel: str
    delivered_at: AwareDatetime
    latency_ms: float
    ok: bool
    error: str | None = None
