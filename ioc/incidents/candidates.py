"""A device rule's transition as the candidate incident that fusion, the walls and alerts see:
the one way camera and sensor episodes become `Incident`s."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Protocol

from ioc.models import Incident, IncidentKind, IncidentSource, Severity
from ioc.models.incidents import IncidentStatus


class EpisodeTransition(Protocol):
    """What a camera or sensor rule reports when its episode opens, changes or resolves."""

    @property
    def incident_id(self) -> str: ...
    @property
    def kind(self) -> IncidentKind: ...
    @property
    def severity(self) -> Severity: ...
    @property
    def title(self) -> str: ...
    @property
    def action(self) -> str: ...
    @property
    def episode_start(self) -> datetime: ...


class Device(Protocol):
    """Where a candidate is: the registry entry of the camera or sensor that raised it."""

    @property
    def id(self) -> str: ...
    @property
    def district(self) -> str: ...
    @property
    def lat(self) -> float: ...
    @property
    def lon(self) -> float: ...


def candidate_of(
    transition: EpisodeTransition,
    device: Device,
    source: IncidentSource,
    ingested_ms: int,
    evidence: dict[str, Any],
) -> Incident:
    """Open until the episode resolves; its event time is the episode's start."""
    resolved = transition.action == "resolve"
    return Incident(
        id=transition.incident_id,
        kind=transition.kind,
        severity=transition.severity,
        source=source,
        source_key=device.id,
        title=transition.title,
        status=IncidentStatus.RESOLVED if resolved else IncidentStatus.OPEN,
        event_time=transition.episode_start,
        ingested_at_ms=ingested_ms,
        district=device.district,
        lat=device.lat,
        lon=device.lon,
        evidence=evidence,
    )


__all__ = ["Device", "EpisodeTransition", "candidate_of"]
