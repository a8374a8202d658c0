"""The sensor and camera rules, as pure functions so they are tested without a broker.
(Hotline tickets are triaged in `ioc.hotline`.)"""

from __future__ import annotations

from datetime import datetime, timedelta

from ioc.models import (
    FrameDetections,
    Incident,
    IncidentKind,
    IncidentSource,
    SensorEvent,
    SensorSpec,
    Severity,
)
from ioc.models.base import deterministic_id
from ioc.models.incidents import IncidentStatus

SENSOR_KINDS = {
    "FloodMonitoring": (IncidentKind.WATER_LEVEL_HIGH, Severity.URGENT),
    "AirQualityObserved": (IncidentKind.AIR_QUALITY_POOR, Severity.HIGH),
}


def sensor_crossing(
    event: SensorEvent, spec: SensorSpec, open_incident: str | None, ingested_at_ms: int
) -> Incident | None:
    """Open an incident when the value first goes above the alert level, resolve it when it
    comes back: one incident per episode, however many readings stay above."""
    value = event.measurements.get(spec.property)
    if value is None:
        return None
    above = value > spec.alert_level
    if above == (open_incident is not None):
        return None
    kind, severity = SENSOR_KINDS.get(spec.type, (IncidentKind.WATER_LEVEL_HIGH, Severity.HIGH))
    incident_id = open_incident or deterministic_id(
        "inc", IncidentSource.SENSOR, spec.id, event.date_observed.isoformat()
    )
    verb = "above" if above else "back below"
    return Incident(
        id=incident_id,
        kind=kind,
        severity=severity,
        source=IncidentSource.SENSOR,
        source_key=spec.id,
        title=f"{spec.name}: {value:g} {spec.unit} {verb} alert level {spec.alert_level:g}",
        status=IncidentStatus.OPEN if above else IncidentStatus.RESOLVED,
        event_time=event.date_observed,
        ingested_at_ms=ingested_at_ms,
        district=spec.district,
        lat=spec.lat,
        lon=spec.lon,
        evidence={"property": spec.property, "value": value, "alert_level": spec.alert_level},
    )


def bucket_start(moment: datetime, minutes: int) -> datetime:
    step = timedelta(minutes=minutes)
    epoch = datetime(1970, 1, 1, tzinfo=moment.tzinfo)
    return epoch + ((moment - epoch) // step) * step


def camera_incident(
    frame: FrameDetections, classes: list[str], min_score: float, bucket_minutes: int
) -> Incident | None:
    """Fire or smoke seen on a camera; repeats within one time bucket are the same incident."""
    hits = [d for d in frame.detections if d.class_name in classes and d.score >= min_score]
    if not hits:
        return None
    best = max(hits, key=lambda detection: detection.score)
    bucket = bucket_start(frame.event_time, bucket_minutes)
    return Incident(
        id=deterministic_id(
            "inc", IncidentSource.VISION, frame.camera_id, "fire", bucket.isoformat()
        ),
        kind=IncidentKind.FIRE,
        severity=Severity.URGENT,
        source=IncidentSource.VISION,
        source_key=frame.camera_id,
        title=f"Camera {frame.camera_id}: {best.class_name} detected ({best.score:.0%})",
        event_time=frame.event_time,
        ingested_at_ms=frame.ingested_at_ms,
        evidence={
            "classes": sorted({d.class_name for d in hits}),
            "best_score": round(best.score, 3),
            "frame": {
                "partition": frame.frame_partition,
                "offset": frame.frame_offset,
                "seq": frame.seq,
            },
        },
    )
