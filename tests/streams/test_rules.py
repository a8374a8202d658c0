from datetime import UTC, datetime, timedelta

from ioc.models import BoundingBox, Detection, FrameDetections, SensorEvent, SensorSpec
from ioc.streams import rules

SPEC = SensorSpec(
    id="s1",
    name="River",
    type="FloodMonitoring",
    property="currentLevel",
    unit="m",
    alert_level=3.0,
    district="D",
    lat=21.0,
    lon=105.0,
)


def _event(value: float, minute: int) -> SensorEvent:
    observed = datetime(2026, 11, 20, 8, minute, tzinfo=UTC)
    return SensorEvent(
        id="s1", type="FloodMonitoring", dateObserved=observed, measurements={"currentLevel": value}
    )


def test_sensor_crossing_opens_once_and_resolves() -> None:
    open_incident = None
    raised = []
    for minute, value in enumerate([2.5, 2.9, 3.1, 3.4, 3.2, 2.8, 2.7, 3.3]):
        incident = rules.sensor_crossing(_event(value, minute), SPEC, open_incident, 0)
        if incident:
            raised.append((minute, incident.status.value, incident.id))
            open_incident = incident.id if incident.status == "open" else None
    assert [(m, s) for m, s, _ in raised] == [(2, "open"), (5, "resolved"), (7, "open")]
    assert raised[0][2] == raised[1][2], "resolution updates the same incident"
    assert raised[2][2] != raised[0][2], "a new episode is a new incident"


def test_sensor_reading_without_the_watched_property_is_ignored() -> None:
    event = SensorEvent(
        id="s1",
        type="FloodMonitoring",
        dateObserved=datetime.now(UTC),
        measurements={"temperature": 30.0},
    )
    assert rules.sensor_crossing(event, SPEC, None, 0) is None


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
