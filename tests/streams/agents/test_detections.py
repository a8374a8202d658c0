"""The camera flow: without a broker (redelivery, rejects, clock ticks), then through the real
stack and streams worker (detections in, incidents in the database and on the incidents topic)."""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest
from kafka import KafkaProducer

from ioc.config import Settings
from ioc.kafka import topics
from ioc.models import BoundingBox, Detection, FrameDetections, FrameStats
from ioc.models.base import epoch_ms, utc_now
from ioc.models.registry import CameraRegistry, CameraSpec, Zone, load_sensor_registry
from ioc.rules.camera.registry import CameraRuleSet
from ioc.rules.sensor.registry import RuleSet
from ioc.sensors import fiware
from ioc.streams.agents import detections as cameras_module
from ioc.streams.agents.detections import CameraFlow
from ioc.streams.keyed import Message, partition_of
from tests.conftest import dead_letters, end_offsets, published_since, wait_for

T0 = datetime(2026, 11, 23, 8, 0, tzinfo=UTC)
PARTITIONS = 3
SIZE = 1000


def spec(camera_id: str) -> CameraSpec:
    return CameraSpec(
        id=camera_id,
        name=f"Camera {camera_id}",
        url="rtsp://example/stream",
        district="Phường Tân Thịnh",
        lat=21.58,
        lon=105.82,
        zones=(
            Zone(name="san", kind="crowd", points=((0, 0.5), (1, 0.5), (1, 1), (0, 1)), limit=2),
        ),
    )


REGISTRY = CameraRegistry(cameras=[spec(f"cam-{n}") for n in range(6)])


def person(x: float, y: float = 800) -> Detection:
    return Detection(
        class_name="person", score=0.8, box=BoundingBox(x1=x - 20, y1=y - 60, x2=x + 20, y2=y)
    )


def fire() -> Detection:
    return Detection(class_name="fire", score=0.8, box=BoundingBox(x1=100, y1=100, x2=300, y2=300))


def detections(
    camera: str,
    seq: int,
    at: datetime,
    found: Iterable[Detection] = (),
    stats: FrameStats | None = None,
    ingested: datetime | None = None,
) -> bytes:
    return FrameDetections(
        camera_id=camera,
        event_time=at,
        seq=seq,
        frame_partition=0,
        frame_offset=seq,
        ingested_at_ms=epoch_ms(ingested or at + timedelta(seconds=1)),
        model="test",
        inference_ms=1.0,
        width=SIZE,
        height=SIZE,
        detections=list(found),
        stats=stats,
    ).to_bytes()


class Log:
    """The detections topic: messages get offsets per partition, timestamps as given."""

    def __init__(self) -> None:
        self.offsets: dict[int, int] = {}

    def message(self, partition: int, value: bytes, at: datetime, tick: bool = False) -> Message:
        offset = self.offsets.get(partition, 0)
        self.offsets[partition] = offset + 1
        return Message(value, partition, offset, epoch_ms(at), tick)

    def frame(self, camera: str, seq: int, found: Iterable[Detection] = ()) -> Message:
        at = T0 + timedelta(seconds=2 * seq)
        value = detections(camera, seq, at, found)
        return self.message(partition_of(camera, PARTITIONS), value, at + timedelta(seconds=1))

    def tick(self, partition: int, now: datetime) -> Message:
        return self.message(partition, b"", now, tick=True)


def flow(stored: dict[str, bytes] | None = None) -> CameraFlow:
    table = stored if stored is not None else {}
    return CameraFlow(REGISTRY, CameraRuleSet.load(), PARTITIONS, stored_state=table.get)


def test_frames_redelivered_after_a_restart_are_stored_again_but_not_judged_twice() -> None:
    """Stored again because the flow cannot tell a frame it stored from one a delivery gap kept
    from it (the sensors' chaos loss); the frame insert is idempotent."""
    log = Log()
    first = [log.frame("cam-1", seq, [fire()]) for seq in range(3)]
    output = flow().process(first)
    assert [(i.kind, i.status) for i in output.incidents] == [("fire", "open")]
    assert [f.seq for f in output.frames] == [0, 1, 2]
    table = {k: v.model_dump_json().encode() for k, v in output.changed.items()}

    after = flow(table)  # a new worker, its state restored from the changelog
    output = after.process([*first, log.frame("cam-1", 3, [fire()])])  # offsets not committed
    assert not output.incidents, "the fire is already open; no better frame"
    assert [f.seq for f in output.frames] == [0, 1, 2, 3]
    assert not output.rejected


def test_unknown_cameras_and_bad_messages_are_rejected_and_the_batch_goes_on() -> None:
    log = Log()
    unknown = log.message(0, detections("cam-unregistered", 0, T0), T0)
    broken = log.message(0, b"{not json", T0)
    wrong = log.message(0, b'{"camera_id": "cam-1"}', T0)
    good = log.frame("cam-2", 0, [person(100)])
    output = flow().process([unknown, broken, wrong, good])
    reasons = dict(output.rejected)
    assert set(reasons) == {0, 1, 2}
    assert "unknown camera id 'cam-unregistered'" in reasons[0]
    assert "not in the camera registry" in reasons[0]
    assert "Invalid JSON" in reasons[1]
    assert "event_time" in reasons[2]
    assert [f.camera_id for f in output.frames] == ["cam-2"]


def test_ticks_watch_the_cameras_of_their_partition_and_raise_offline() -> None:
    log = Log()
    cameras = flow()
    partition = partition_of("cam-4", PARTITIONS)
    mine = {c.id for c in REGISTRY.cameras if partition_of(c.id, PARTITIONS) == partition}
    first = cameras.process([log.tick(partition, T0)])
    assert set(first.changed) == mine, "every registry camera is watched from the first tick"
    assert not first.incidents
    later = cameras.process([log.tick(partition, T0 + timedelta(seconds=121))])
    assert {i.source_key for i in later.incidents} == mine, "the bundled rules allow 120 s"
    assert all(
        (i.kind, i.status, i.severity) == ("camera_offline", "open", "normal")
        for i in later.incidents
    )
    assert "frame" not in later.incidents[0].evidence, "no frame seen yet"
    assert later.incidents[0].title.startswith("Camera Camera cam-")
    back = cameras.process([log.frame("cam-4", 70)])  # at 140 s
    assert [(i.source_key, i.kind, i.status) for i in back.incidents] == [
        ("cam-4", "camera_offline", "resolved")
    ]


def test_a_rules_failure_on_one_frame_rejects_it_and_keeps_the_table_state(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    real = cameras_module.evaluate

    def failing_for_cam0(state, frame, camera, rules):  # type: ignore[no-untyped-def]
        if camera.id == "cam-0":
            raise ZeroDivisionError("a bug")
        return real(state, frame, camera, rules)

    monkeypatch.setattr(cameras_module, "evaluate", failing_for_cam0)
    log = Log()
    output = flow().process([log.frame("cam-0", 0), log.frame("cam-1", 0)])
    [(index, reason)] = output.rejected
    assert index == 0 and "camera rules failed" in reason and "ZeroDivisionError" in reason
    assert [f.camera_id for f in output.frames] == ["cam-1"]
    assert set(output.changed) == {"cam-1"}, "a half-judged state is not written"


# --- Through the real stack ----------------------------------------------------------------


def send(producer: KafkaProducer, camera: str, value: bytes) -> None:
    producer.send(topics.VISION_DETECTIONS, key=camera.encode(), value=value).get(timeout=10)


def incidents_of(db: psycopg.Connection, camera: str, kind: str) -> list[tuple[Any, ...]]:
    return db.execute(
        "SELECT id, status, severity, evidence FROM incidents"
        " WHERE source_key = %s AND kind = %s ORDER BY opened_at",
        (camera, kind),
    ).fetchall()


def published(settings: Settings, since: dict[Any, int], incident_id: str) -> list[str]:
    """The statuses the incident was published with, in order."""
    import json

    return [
        json.loads(record.value)["status"]
        for record in published_since(settings, topics.INCIDENT_CANDIDATES, since)
        if json.loads(record.value)["id"] == incident_id
    ]


def health(std: float, seq: int) -> FrameStats:
    return FrameStats(
        luma_mean=90, luma_std=std, signature="0f0f0f0f0f0f0f0f", digest=f"{seq:016x}"
    )


@pytest.mark.integration
def test_a_crowd_held_over_the_limit_is_raised_updated_and_resolved(
    producer: KafkaProducer, db: psycopg.Connection, workers: Settings
) -> None:
    camera = "cam-test-crowd"  # tests/data/cameras.toml: zone "san", more than 2 for 2 s
    since = end_offsets(workers, topics.INCIDENT_CANDIDATES)
    start = utc_now().replace(microsecond=0) - timedelta(seconds=30)
    counts = [4, 4, 4, 4, 6, 4, 1, 1, 1, 1]  # one frame a second; clear after 2 s at the limit
    for seq, count in enumerate(counts):
        crowd = [person(100 + 80 * index) for index in range(count)] + [person(500, y=200)]
        at = start + timedelta(seconds=seq)
        send(producer, camera, detections(camera, seq, at, crowd, ingested=utc_now()))

    resolved = wait_for(
        lambda: [i for i in incidents_of(db, camera, "crowding") if i[1] == "resolved"],
        what="the crowding episode to open and resolve",
    )
    assert len(incidents_of(db, camera, "crowding")) == 1, "one incident for the episode"
    incident_id, _, severity, evidence = resolved[0]
    assert severity == "high"
    assert evidence["zone"] == "san" and evidence["score"] == 6, "the fullest frame"
    assert evidence["frame"]["seq"] == 4 and len(evidence["boxes"]) == 6
    statuses = wait_for(
        lambda: (found := published(workers, since, incident_id))[-1:] == ["resolved"] and found,
        what="the candidate on the candidates topic",
    )
    assert statuses == ["open", "open", "resolved"], "opened, a better frame, resolved"
    stored = db.execute(
        "SELECT count(*) FROM camera_frames WHERE camera_id = %s AND event_time >= %s",
        (camera, start),
    ).fetchone()
    assert stored == (len(counts),), "every frame is stored"


@pytest.mark.integration
def test_camera_health_blackout_and_offline_are_raised_and_resolved(
    producer: KafkaProducer, db: psycopg.Connection, workers: Settings
) -> None:
    camera = "cam-test-health"  # blackout after 2 s, offline after 6 s in the test rules
    start = utc_now().replace(microsecond=0) - timedelta(seconds=30)
    spreads = [1.0, 1.0, 1.0, 1.0, 40.0, 40.0, 40.0, 40.0]
    for seq, std in enumerate(spreads):
        at = start + timedelta(seconds=seq)
        send(
            producer,
            camera,
            detections(camera, seq, at, stats=health(std, seq), ingested=utc_now()),
        )

    blackout = wait_for(
        lambda: [i for i in incidents_of(db, camera, "camera_blackout") if i[1] == "resolved"],
        what="the blackout to open and resolve",
    )
    assert len(incidents_of(db, camera, "camera_blackout")) == 1
    assert blackout[0][2] == "normal" and blackout[0][3]["score"] == 0

    def offline(seq: int) -> tuple[Any, ...] | None:
        """The offline incident whose evidence, the camera's latest frame, is `seq`."""
        found = incidents_of(db, camera, "camera_offline")
        return next((i for i in found if i[3].get("frame", {}).get("seq") == seq), None)

    last = len(spreads) - 1
    opened = wait_for(lambda: offline(last), what="the clock ticks to declare the camera offline")
    assert opened[1] == "open"
    send(producer, camera, detections(camera, last + 1, utc_now(), stats=health(40.0, last + 1)))
    resolved = wait_for(lambda: offline(last + 1), what="back online on the next frame")
    assert resolved[:2] == (opened[0], "resolved")


@pytest.mark.integration
def test_detections_of_an_unregistered_camera_are_dead_lettered_and_the_agent_goes_on(
    producer: KafkaProducer, db: psycopg.Connection, workers: Settings
) -> None:
    stranger = f"cam-unregistered-{uuid.uuid4().hex}"
    send(producer, stranger, detections(stranger, 0, utc_now()))
    camera, seq = "cam-test-frames", 1000
    send(producer, camera, detections(camera, seq, utc_now()))
    wait_for(
        lambda: db.execute(
            "SELECT 1 FROM camera_frames WHERE camera_id = %s AND seq = %s", (camera, seq)
        ).fetchone(),
        what="the next frame to be stored",
    )
    letters = wait_for(lambda: dead_letters(workers, stranger.encode()), what="the dead letter")
    assert "not in the camera registry" in letters[0].headers["reason"]
    assert letters[0].headers["consumer"] == "camera"


def test_a_line_s_minutes_reach_the_sensor_path_as_traffic_flow_readings() -> None:
    """The camera's flow readings parse as the line's TrafficFlowObserved sensors, one per
    direction, and those sensors leave offline to the camera."""
    line = Zone(
        name="vach", kind="line", points=((0.0, 0.5), (1.0, 0.5)), direction="left_to_right"
    )
    camera = spec("cam-line").model_copy(update={"zones": (line,)})
    cameras = CameraRegistry(cameras=[camera])
    counting = CameraFlow(cameras, CameraRuleSet.load(), PARTITIONS, stored_state={}.get)
    log = Log()

    def car(y: float) -> Detection:
        box = BoundingBox(x1=480, y1=y - 40, x2=520, y2=y)
        return Detection(class_name="car", score=0.9, box=box, track_id=7)

    output = counting.process(
        [log.frame("cam-line", seq, [car(400 + 60 * seq)]) for seq in range(4)]
    )
    assert not output.flows
    output = counting.process([log.frame("cam-line", 31)])  # 62 s: the first minute closes
    registry = load_sensor_registry().with_camera_lines(cameras)
    events = {
        key.decode(): fiware.parse_observation(value, registry) for key, value in output.flows
    }
    assert {key: event.measurements for key, event in events.items()} == {
        "cam-line.vach.ltr": {"intensity": 1.0},
        "cam-line.vach.rtl": {"intensity": 0.0},
    }
    assert all(event.date_observed == T0 + timedelta(minutes=1) for event in events.values())
    sensor = registry.get("cam-line.vach.ltr")
    assert sensor is not None and sensor.type == "TrafficFlowObserved" and sensor.district
    assert RuleSet.load().for_sensor(sensor).offline is None, "the camera's offline covers it"
