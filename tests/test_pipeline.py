"""End to end through the real stack and workers: input topic → agents/worker → database,
incident topic → alert consumer → console + webhook; bad input → dead-letter topic."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
from kafka import KafkaProducer

from ioc.config import Settings
from ioc.devtools.scenario.workers import Workers
from ioc.kafka import topics
from ioc.models import FrameHeaders
from ioc.sensors import fiware
from tests.conftest import (
    ALERTS_METRICS_PORT,
    METRICS_PORT,
    VISION_METRICS_PORT,
    WebhookReceiver,
    caught_up,
    dead_letters,
    letters_marker,
    wait_for,
)

pytestmark = pytest.mark.integration


def send(
    producer: KafkaProducer, topic: str, key: str, value: bytes, headers: list | None = None
) -> None:
    producer.send(topic, key=key.encode(), value=value, headers=headers or []).get(timeout=10)


def row(db: psycopg.Connection, sql: str, *params: Any) -> tuple | None:
    return db.execute(sql, params).fetchone()


def ticket(ticket_id: str, description: str) -> bytes:
    return json.dumps(
        {
            "service_request_id": ticket_id,
            "requested_datetime": "2026-11-20T08:15:00+07:00",
            "channel": "phone",
            "description": description,
            "address_string": "Phường Phan Đình Phùng, Thái Nguyên",
            "lat": 21.59,
            "long": 105.84,
            "phone": "0912345678",
        }
    ).encode()


def reading(sensor_id: str, value: float, observed: datetime) -> bytes:
    return json.dumps(
        fiware.entity(sensor_id, "FloodMonitoring", observed, currentLevel=value)
    ).encode()


def air(sensor_id: str, pm25: float, observed: datetime) -> bytes:
    return json.dumps(fiware.entity(sensor_id, "AirQualityObserved", observed, pm25=pm25)).encode()


def test_fire_ticket_raises_urgent_incident_and_alert(
    producer: KafkaProducer, db: psycopg.Connection, webhook: WebhookReceiver
) -> None:
    ticket_id = f"T-{uuid.uuid4().hex[:8]}"
    send(
        producer,
        topics.HOTLINE_TICKETS,
        ticket_id,
        ticket(ticket_id, "Cháy nhà dân tại tổ 5, khói đen bốc cao, đề nghị cử xe cứu hỏa"),
    )

    incident = wait_for(
        lambda: row(
            db,
            "SELECT id, kind, severity, source FROM incidents WHERE source_key = %s"
            " AND kind <> 'sla_breach'",
            ticket_id,
        ),
        what="incident row for the fire ticket",
    )
    assert incident[1:] == ("fire", "urgent", "hotline")
    stored = row(
        db, "SELECT urgent, reporter_hash FROM tickets WHERE service_request_id = %s", ticket_id
    )
    assert stored is not None and stored[0] is True
    assert stored[1] and "0912345678" not in stored[1], (
        "the phone number must not reach the database"
    )

    def ok_channels() -> set[str]:
        query = "SELECT channel FROM alerts WHERE incident_id = %s AND ok"
        return {r[0] for r in db.execute(query, (incident[0],))}

    channels = wait_for(
        lambda: (found := ok_channels()) >= {"console", "webhook"} and found,
        what="console and webhook alerts",
    )
    assert channels == {"console", "webhook"}
    delivered = wait_for(
        lambda: [i for i in webhook.incidents() if i["id"] == incident[0]], what="webhook POST"
    )
    assert delivered[0]["severity"] == "urgent"


def test_ordinary_ticket_is_triaged_without_paging_anyone(
    producer: KafkaProducer, db: psycopg.Connection, settings: Settings
) -> None:
    ticket_id = f"T-{uuid.uuid4().hex[:8]}"
    description = "Đèn chiếu sáng công cộng đường Z115 không sáng cả tuần"
    send(producer, topics.HOTLINE_TICKETS, ticket_id, ticket(ticket_id, description))
    stored = wait_for(
        lambda: row(
            db,
            "SELECT urgent, category, status, incident_id FROM tickets"
            " WHERE service_request_id = %s",
            ticket_id,
        ),
        what="ticket row",
    )
    assert stored[:3] == (False, "dien_nuoc_chieu_sang", "triaged")
    incident = row(db, "SELECT kind, severity FROM incidents WHERE id = %s", stored[3])
    assert incident == ("citizen_report", "normal")
    wait_for(lambda: caught_up(settings, "ioc-alerts", topics.INCIDENTS), what="alert consumer")
    assert row(db, "SELECT 1 FROM alerts WHERE incident_id = %s", stored[3]) is None


def sensor_incidents(db: psycopg.Connection, sensor: str) -> list[tuple]:
    return db.execute(
        "SELECT id, status, kind, severity, evidence->>'condition' FROM incidents"
        " WHERE source_key = %s ORDER BY opened_at",
        (sensor,),
    ).fetchall()


def window(db: psycopg.Connection, sensor: str, start: datetime) -> tuple | None:
    return row(
        db,
        "SELECT count, min, max, mean, last FROM sensor_windows"
        " WHERE sensor_id = %s AND property = 'pm25' AND window_start = %s",
        sensor,
        start,
    )


def test_water_level_episode_opens_once_escalates_and_resolves_after_the_clear_hold(
    producer: KafkaProducer, db: psycopg.Connection, settings: Settings
) -> None:
    sensor = "test-wl-episode"  # alert level 2.0 (danger 3.0) in tests/data/sensors.toml
    # Minute by minute, ending now: below, then oscillating around the alert level (which must
    # not open one incident per crossing), held above, up to danger, then down and below the
    # clear level (alert - 0.2 m) for the 15-minute clear hold.
    levels = [1.5, 1.5, 2.1, 1.95, 2.1, 1.95, 2.2, 2.3, 2.4, 3.2, 3.3, 3.4, 2.5, 1.9]
    levels += [1.6] * 17
    start = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(minutes=len(levels))
    for index, level in enumerate(levels):
        observed = start + timedelta(minutes=index)
        send(producer, topics.SENSOR_EVENTS, sensor, reading(sensor, level, observed))

    resolved = wait_for(
        lambda: (
            [
                i
                for i in sensor_incidents(db, sensor)
                if i[4] in ("alert", "danger") and i[1] == "resolved"
            ]
            or None
        ),
        what="the level episode to open and resolve",
    )
    levels_incidents = [i for i in sensor_incidents(db, sensor) if i[4] in ("alert", "danger")]
    assert len(levels_incidents) == 1, f"one incident for the episode, got {levels_incidents}"
    assert resolved[0][2:4] == ("water_level_high", "urgent"), "escalated to danger, kept"
    wait_for(
        lambda: row(
            db,
            "SELECT 1 FROM sensor_readings WHERE sensor_id = %s HAVING count(*) = %s",
            sensor,
            len(levels),
        ),
        what="every reading stored (the last may follow the resolving one's batch)",
    )
    wait_for(lambda: caught_up(settings, "ioc-alerts", topics.INCIDENTS), what="alert consumer")
    # Alerts follow the fused incident (other test gauges nearby may share it); the episode's
    # resolution is told once the fused incident's own clear hold has passed, not yet.
    alerts = db.execute(
        "SELECT channel, notification FROM alerts"
        " WHERE incident_id = (SELECT fused_id FROM incidents WHERE id = %s)",
        (resolved[0][0],),
    ).fetchall()
    # Paged once per channel. If the alerts worker saw the incident while it was still at the
    # alert level, the climb to danger is a second, different notice (escalated), also once.
    assert sorted(alerts) in (
        [("console", "firing"), ("webhook", "firing")],
        [
            ("console", "escalated"),
            ("console", "firing"),
            ("webhook", "escalated"),
            ("webhook", "firing"),
        ],
    ), f"paged once each: {sorted(alerts)}"


def test_worker_killed_mid_window_restarts_with_its_state_and_counts_the_window_once(
    producer: KafkaProducer, db: psycopg.Connection, worker_processes: Workers
) -> None:
    sensor = "test-aq-restart"
    minute = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(minutes=10)
    before = [(0, 10.0), (10, 20.0), (20, 30.0)]
    after = [(30, 40.0), (40, 50.0)]
    for second, value in before:
        observed = minute + timedelta(seconds=second)
        send(producer, topics.SENSOR_EVENTS, sensor, air(sensor, value, observed))
    wait_for(
        lambda: row(
            db,
            "SELECT count(*) FROM sensor_readings WHERE sensor_id = %s HAVING count(*) = 3",
            sensor,
        ),
        what="the first half of the window stored",
    )
    assert window(db, sensor, minute) is None, "the window is still open"

    worker_processes.crash_and_restart("streams")
    worker_processes.wait_ready(timeout_s=240)

    for second, value in after:
        observed = minute + timedelta(seconds=second)
        send(producer, topics.SENSOR_EVENTS, sensor, air(sensor, value, observed))
    # The next reading moves the watermark (event time - 2 min grace) past the window's end.
    send(producer, topics.SENSOR_EVENTS, sensor, air(sensor, 5.0, minute + timedelta(minutes=4)))
    # The group moves the partitions once the killed member's session (60 s) expires.
    closed = wait_for(lambda: window(db, sensor, minute), timeout=240, what="the window to close")
    assert closed == (5, 10.0, 50.0, pytest.approx(30.0), 50.0)


def test_a_silent_sensor_is_declared_offline_on_the_clock_and_back_on_its_next_reading(
    producer: KafkaProducer, db: psycopg.Connection
) -> None:
    sensor = "test-aq-offline"  # registered, never reports; offline after 6 s in the test rules

    def offline() -> tuple | None:
        return row(
            db,
            "SELECT id, status, kind, severity FROM incidents WHERE source_key = %s"
            " AND kind = 'sensor_offline'",
            sensor,
        )

    opened = wait_for(offline, what="the clock ticks to declare the sensor offline")
    assert opened[1:] == ("open", "sensor_offline", "normal")
    send(producer, topics.SENSOR_EVENTS, sensor, air(sensor, 12.0, datetime.now(UTC)))
    wait_for(lambda: (found := offline()) and found[1] == "resolved", what="back online")


def test_late_readings_count_within_grace_and_never_reopen_a_closed_window(
    producer: KafkaProducer, db: psycopg.Connection
) -> None:
    sensor = "test-aq-late"
    minute = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(minutes=10)

    def at(offset_s: float, value: float) -> None:
        observed = minute + timedelta(seconds=offset_s)
        send(producer, topics.SENSOR_EVENTS, sensor, air(sensor, value, observed))

    at(30, 30.0)
    at(90, 90.0)  # the next window
    at(10, 10.0)  # out of order, but within the 2-minute grace: counted in the first window
    at(50, 50.0)
    at(170, 170.0)  # watermark 50 s: nothing closes yet
    at(185, 185.0)  # watermark 65 s: the first window closes
    at(240, 240.0)  # watermark 120 s: the second closes
    at(20, 20.0)  # too late for the first: recorded, not counted
    closed = wait_for(lambda: window(db, sensor, minute), what="the first window to close")
    assert closed == (3, 10.0, 50.0, pytest.approx(30.0), 50.0)
    late = wait_for(
        lambda: row(
            db,
            "SELECT late FROM sensor_readings WHERE sensor_id = %s AND observed_at = %s",
            sensor,
            minute + timedelta(seconds=20),
        ),
        what="the late reading recorded",
    )
    assert late == (True,)
    assert window(db, sensor, minute) == closed, "the closed window is not reopened"
    assert window(db, sensor, minute + timedelta(minutes=1)) == (1, 90.0, 90.0, 90.0, 90.0)


def frame_stored(db: psycopg.Connection, camera: str, seq: int) -> tuple | None:
    return row(db, "SELECT 1 FROM camera_frames WHERE camera_id = %s AND seq = %s", camera, seq)


def test_fire_frames_raise_one_vision_incident_that_stays_current(
    producer: KafkaProducer, db: psycopg.Connection, samples_dir: Path
) -> None:
    camera = "cam-test-fire"  # tests/data/cameras.toml; fire opens when seen in 3 of 5 frames
    now = datetime.now(UTC)
    frames = samples_dir / "frames"
    sequence = [frames / "negative" / "neg_00.jpg"]
    sequence += [frames / "fire" / f"fire_0{index}.jpg" for index in (4, 5, 6, 7)]
    for seq, frame in enumerate(sequence):
        headers = FrameHeaders(camera_id=camera, event_time=now + timedelta(seconds=seq), seq=seq)
        send(producer, topics.CAMERA_FRAMES, camera, frame.read_bytes(), headers.to_kafka())
        # One at a time: under load the worker skips to a camera's newest frame.
        wait_for(lambda seq=seq: frame_stored(db, camera, seq), timeout=120, what=f"frame {seq}")

    best = row(
        db,
        "SELECT seq, score FROM detections WHERE camera_id = %s AND class_name IN"
        " ('fire', 'smoke') ORDER BY score DESC, seq LIMIT 1",
        camera,
    )
    assert best is not None

    def fire_incidents() -> list[tuple] | None:
        rows = db.execute(
            "SELECT id, kind, severity, source, status, evidence FROM incidents"
            " WHERE source_key = %s AND kind = 'fire'",
            (camera,),
        ).fetchall()
        return rows if rows and rows[0][5]["frame"]["seq"] == best[0] else None

    found = wait_for(fire_incidents, what="the fire incident showing the episode's best frame")
    assert len(found) == 1, "fire on one camera, frame after frame, is one incident"
    assert found[0][1:5] == ("fire", "urgent", "vision", "open")
    evidence = found[0][5]
    assert evidence["score"] == pytest.approx(best[1], abs=1e-4)
    assert {box["class"] for box in evidence["boxes"]} <= {"fire", "smoke"}
    # Paged as the incident it was fused into: a fire filmed nearby by another test
    # (tests/vision/test_end_to_end.py) may have opened it, when that test ran first.
    (fused_id,) = wait_for(
        lambda: row(
            db, "SELECT fused_id FROM incidents WHERE id = %s AND fused_id IS NOT NULL", found[0][0]
        ),
        what="the fire fused into an incident",
    )
    wait_for(
        lambda: row(
            db,
            "SELECT count(*) FROM alerts WHERE incident_id = %s HAVING count(*) = 2",
            fused_id,
        ),
        what="one alert per channel",
    )


@pytest.mark.parametrize(
    ("topic", "bad_value", "reason_part"),
    [
        (topics.HOTLINE_TICKETS, b'{"service_request_id": "MARK", ', "Invalid JSON"),
        (
            topics.SENSOR_EVENTS,
            b'{"id": "test-wl-1", "type": "FloodMonitoring", "dateObserved": "MARK",'
            b' "currentLevel": 1.0}',
            "dateObserved",
        ),
        (
            topics.SENSOR_EVENTS,
            b'{"id": "MARK-unknown", "type": "FloodMonitoring",'
            b' "dateObserved": "2026-11-20T08:00:00+07:00", "currentLevel": 1}',
            "unknown sensor id",
        ),
    ],
    ids=["ticket-bad-json", "sensor-bad-time", "sensor-unknown"],
)
def test_malformed_message_goes_to_dlq_and_agent_continues(
    producer: KafkaProducer,
    db: psycopg.Connection,
    settings: Settings,
    topic: str,
    bad_value: bytes,
    reason_part: str,
) -> None:
    marker = letters_marker().encode()
    key = "test-wl-1" if topic == topics.SENSOR_EVENTS else f"T-{marker.decode()[:8]}"
    send(producer, topic, key, bad_value.replace(b"MARK", marker))
    # The next message on the same key (same partition) must still be processed.
    if topic == topics.HOTLINE_TICKETS:
        good_id = f"T-{uuid.uuid4().hex[:8]}"
        send(producer, topic, key, ticket(good_id, "Rác thải tồn đọng đầu ngõ 45"))
        wait_for(
            lambda: row(db, "SELECT 1 FROM tickets WHERE service_request_id = %s", good_id),
            what="the next ticket to be stored",
        )
    else:
        observed = datetime.now(UTC)
        send(producer, topic, key, reading("test-wl-1", 1.0, observed))
        wait_for(
            lambda: row(
                db,
                "SELECT 1 FROM sensor_readings WHERE sensor_id = 'test-wl-1' AND observed_at = %s",
                observed,
            ),
            what="the next reading to be stored",
        )

    letters = wait_for(lambda: dead_letters(settings, marker), what="the dead letter")
    assert len(letters) == 1
    assert reason_part in letters[0].headers["reason"]
    assert letters[0].headers["source_topic"] == topic
    assert int(letters[0].headers["source_offset"]) >= 0
    recorded = wait_for(
        lambda: row(
            db,
            "SELECT consumer, reason FROM dead_letters WHERE source_topic = %s"
            " AND source_partition = %s AND source_offset = %s",
            topic,
            int(letters[0].headers["source_partition"]),
            int(letters[0].headers["source_offset"]),
        ),
        what="the dead letter recorded for the walls",
    )
    assert recorded == (letters[0].headers["consumer"], letters[0].headers["reason"])


def test_reading_from_a_device_clock_days_ahead_is_dead_lettered(
    producer: KafkaProducer, settings: Settings
) -> None:
    ahead = datetime.now(UTC) + timedelta(days=3, microseconds=uuid.uuid4().int % 10**6)
    value = reading("test-wl-1", 1.0, ahead)
    send(producer, topics.SENSOR_EVENTS, "test-wl-1", value)
    letters = wait_for(lambda: dead_letters(settings, value), what="the dead letter")
    assert "device clock is wrong" in letters[0].headers["reason"]


def test_consumer_lag_of_every_group_is_recorded_for_the_walls(db: psycopg.Connection) -> None:
    groups = wait_for(
        lambda: (
            (found := {r[0] for r in db.execute("SELECT DISTINCT group_id FROM consumer_lag")})
            >= {"ioc-streams", "ioc-vision", "ioc-alerts"}
            and found
        ),
        what="lag samples of the three groups",
    )
    assert groups == {
        "ioc-streams",
        "ioc-streams.cameras",
        "ioc-streams.hotline",
        "ioc-streams.sensors",
        "ioc-vision",
        "ioc-vision-evidence",
        "ioc-alerts",
    }
    topics_sampled = {r[0] for r in db.execute("SELECT DISTINCT topic FROM consumer_lag")}
    assert topics.DLQ in topics_sampled and topics.CAMERA_FRAMES in topics_sampled


def test_undecodable_frame_goes_to_dlq_and_worker_continues(
    producer: KafkaProducer, db: psycopg.Connection, settings: Settings, samples_dir: Path
) -> None:
    camera = "cam-test-frames"
    marker = uuid.uuid4().hex.encode()
    now = datetime.now(UTC)
    send(
        producer,
        topics.CAMERA_FRAMES,
        camera,
        b"not a jpeg " + marker,
        FrameHeaders(camera_id=camera, event_time=now, seq=0).to_kafka(),
    )
    send(producer, topics.CAMERA_FRAMES, camera, b"no headers " + marker)
    letters = wait_for(
        lambda: (found := dead_letters(settings, marker)) and len(found) == 2 and found,
        what="two dead letters",
    )
    reasons = sorted(letter.headers["reason"] for letter in letters)
    assert "bad frame headers" in reasons[0] and "camera_id" in reasons[0]
    assert reasons[1] == "frame value is not a decodable image"

    # Sent once the bad ones are handled: a newer frame waiting would replace the undecodable one.
    fire = (samples_dir / "frames" / "fire" / "fire_07.jpg").read_bytes()
    send(
        producer,
        topics.CAMERA_FRAMES,
        camera,
        fire,
        FrameHeaders(camera_id=camera, event_time=now, seq=1).to_kafka(),
    )
    wait_for(
        lambda: frame_stored(db, camera, 1),
        timeout=120,
        what="the good frame after the bad ones to be judged and stored",
    )


def test_a_candidate_stored_but_never_published_is_fused_by_the_sweep(
    workers: Settings, db: psycopg.Connection
) -> None:
    """A source that crashed between storing a candidate and publishing it: the leader's
    incident check publishes it again once it is `fusion.republish_after_s` old."""
    incident_id = f"inc-orphan-{uuid.uuid4().hex[:10]}"
    db.execute(
        "INSERT INTO incidents (id, kind, severity, source, source_key, title, status, lat, lon,"
        " event_time, updated_at) VALUES (%s, 'flood', 'high', 'sensor', %s, 'Orphan', 'open',"
        " 11.5, 101.5, now(), now() - %s * interval '1 second')",
        (incident_id, incident_id, workers.fusion.republish_after_s + 1),
    )
    fused = wait_for(
        lambda: row(
            db, "SELECT fused_id FROM incidents WHERE id = %s AND fused_id IS NOT NULL", incident_id
        ),
        timeout=workers.fusion.check_interval_s * 6 + 30,
        what="the orphan candidate fused",
    )
    assert row(db, "SELECT status FROM fused_incidents WHERE id = %s", fused[0]) == ("open",)


def scraped(port: int) -> dict[str, float]:
    """A worker's `/metrics`, the ioc_ series only, by name with labels."""
    found = {}
    for line in httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text.splitlines():
        name, _, number = line.rpartition(" ")
        if name.startswith("ioc_"):
            found[name] = float(number)
    return found


def test_the_streams_worker_serves_its_own_health_to_prometheus(
    producer: KafkaProducer, workers: Settings
) -> None:
    ticket_id = f"METRICS-{uuid.uuid4().hex[:8]}"
    send(producer, topics.HOTLINE_TICKETS, ticket_id, ticket(ticket_id, "Cháy nhà ở tổ 5"))
    send(producer, topics.HOTLINE_TICKETS, f"{ticket_id}-BAD", b'{"service_request_id": ')
    page = wait_for(
        lambda: (
            (found := scraped(METRICS_PORT)).get('ioc_records_total{flow="hotline"}', 0) >= 2
            and found.get('ioc_dead_letters_total{flow="hotline"}', 0) >= 1
            and any(name.startswith("ioc_consumer_lag{") for name in found)
            and found.get("ioc_faust_messages_received_total", 0) >= 1  # Faust's own sensor
            and found
        ),
        what="the hotline's records, its dead letter, the lag and Faust's sensor on /metrics",
    )
    assert page['ioc_last_batch_timestamp_seconds{flow="sensors"}'] > 0  # the clock ticks
    assert page['ioc_batch_seconds_count{flow="hotline"}'] >= 1


def test_the_vision_and_alerts_workers_serve_their_health_too(
    producer: KafkaProducer, db: psycopg.Connection, samples_dir: Path
) -> None:
    camera = "cam-test-frames"
    frame = (samples_dir / "frames" / "negative" / "neg_00.jpg").read_bytes()
    headers = FrameHeaders(camera_id=camera, event_time=datetime.now(UTC), seq=900_001)
    send(producer, topics.CAMERA_FRAMES, camera, frame, headers.to_kafka())
    send(producer, topics.CAMERA_FRAMES, camera, b"not a jpeg", headers.to_kafka())
    vision = wait_for(
        lambda: (
            (found := scraped(VISION_METRICS_PORT)).get('ioc_records_total{flow="vision"}', 0) >= 1
            and found.get('ioc_dead_letters_total{flow="vision"}', 0) >= 1
            and found
        ),
        what="the vision worker's frames and its dead letter on /metrics",
    )
    assert vision['ioc_last_batch_timestamp_seconds{flow="vision"}'] > 0

    ticket_id = f"METRICS-{uuid.uuid4().hex[:8]}"
    send(producer, topics.HOTLINE_TICKETS, ticket_id, ticket(ticket_id, "Cháy lớn ở chợ, khói đen"))
    alerts = wait_for(
        lambda: (
            (found := scraped(ALERTS_METRICS_PORT)).get('ioc_records_total{flow="alerts"}', 0) >= 1
            and found.get('ioc_alert_deliveries_total{channel="webhook",outcome="ok"}', 0) >= 1
            and found
        ),
        what="the alerts worker's incidents and its webhook deliveries on /metrics",
    )
    delivered = db.execute(
        "SELECT count(*) FROM alerts WHERE channel = 'webhook' AND ok"
    ).fetchone()
    assert delivered is not None
    assert alerts['ioc_alert_deliveries_total{channel="webhook",outcome="ok"}'] <= delivered[0]
