from datetime import UTC, datetime, timedelta

from ioc.models import BoundingBox, Detection, FrameDetections
from ioc.streams import rules


def _frame(classes: list[tuple[str, float]], when: datetime) -> FrameDetections:
    box = BoundingBox(x1=0, y1=0, x2=10, y2=10)
    return FrameDetections(
        camera_id="cam-1",
        event_time=when,
        seq=0,
        frame_partition=0,
        frame_offset=0,
        ingested_at_ms=0,
        model="m",
        inference_ms=1,
        width=640,
        height=640,
        detections=[Detection(class_name=name, score=score, box=box) for name, score in classes],
    )


def test_camera_incident_needs_fire_or_smoke_above_min_score() -> None:
    now = datetime(2026, 11, 20, 8, 5, tzinfo=UTC)
    assert rules.camera_incident(_frame([("car", 0.9)], now), ["fire", "smoke"], 0.4, 30) is None
    assert rules.camera_incident(_frame([("fire", 0.3)], now), ["fire", "smoke"], 0.4, 30) is None
    incident = rules.camera_incident(
        _frame([("smoke", 0.8), ("fire", 0.5)], now), ["fire", "smoke"], 0.4, 30
    )
    assert incident and incident.evidence["classes"] == ["fire", "smoke"]


def test_camera_incidents_share_an_id_within_a_bucket() -> None:
    start = datetime(2026, 11, 20, 8, 0, tzinfo=UTC)
    ids = {
        rules.camera_incident(
            _frame([("fire", 0.9)], start + timedelta(minutes=m)), ["fire"], 0.4, 30
        ).id
        for m in (1, 10, 29)
    }
    later = rules.camera_incident(
        _frame([("fire", 0.9)], start + timedelta(minutes=31)), ["fire"], 0.4, 30
    )
    assert len(ids) == 1 and later.id not in ids
