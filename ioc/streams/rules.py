"""The camera rules, as pure functions so they are tested without a broker. (Hotline tickets are
triaged in `ioc.hotline`, sensors are judged by `ioc.sensors.engine`.)"""

from __future__ import annotations

from datetime import datetime, timedelta

from ioc.models import (
    FrameDetections,
    Incident,
    IncidentKind,
    IncidentSource,
    Severity,
)
from ioc.models.base import deterministic_id


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
