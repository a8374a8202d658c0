"""End to end through the real stack and workers: input topic → agents/worker → database,
incident topic → alert consumer → console + webhook; bad input → dead-letter topic."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
from kafka import KafkaProducer

from ioc import topics
from ioc.config import Settings
from ioc.models import FrameHeaders
from ioc.sensors import fiware
from tests.conftest import WebhookReceiver, caught_up, dead_letters, wait_for

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


def test_threshold_crossing_sensor_raises_one_incident_per_episode(
    producer: KafkaProducer, db: psycopg.Connection, settings: Settings
) -> None:
    sensor = "test-wl-1"  # alert level 2.0 in tests/data/sensors.toml
    start = datetime.now(UTC).replace(microsecond=0) + timedelta(days=uuid.uuid4().int % 1000)
    levels = [
        1.5,
        1.8,
        2.2,
        2.5,
        2.7,
        2.4,
        1.6,
    ]  # up through 2.0, stays above four readings, back down
    for index, level in enumerate(levels):
        send(
            producer,
            topics.SENSOR_EVENTS,
            sensor,
            reading(sensor, level, start + timedelta(minutes=index)),
        )

    wait_for(
        lambda: row(
            db,
            "SELECT count(*) FROM sensor_readings WHERE sensor_id = %s AND observed_at >= %s"
            " HAVING count(*) = %s",
            sensor,
            start,
            len(levels),
        ),
        what="all readings stored",
    )
    episode = wait_for(
        lambda: (
            db.execute(
                "SELECT id, status, kind FROM incidents WHERE source_key = %s AND event_time >= %s",
                (sensor, start),
            ).fetchall()
            if row(
                db,
                "SELECT 1 FROM incidents WHERE source_key = %s AND event_time >= %s"
                " AND status = 'resolved'",
                sensor,
                start,
            )
            else None
        ),
        what="the episode to open and resolve",
    )
    assert len(episode) == 1, f"one incident per episode, got {episode}"
    assert episode[0][1:] == ("resolved", "water_level_high")
    wait_for(lambda: caught_up(settings, "ioc-alerts", topics.INCIDENTS), what="alert consumer")
    alerts = db.execute(
        "SELECT channel FROM alerts WHERE incident_id = %s", (episode[0][0],)
    ).fetchall()
    assert sorted(a[0] for a in alerts) == ["console", "webhook"], "alerted once per channel"


def test_fire_frames_raise_one_vision_incident_that_stays_current(
    producer: KafkaProducer, db: psycopg.Connection, samples_dir: Path
) -> None:
    camera = f"cam-test-{uuid.uuid4().hex[:6]}"
    now = datetime.now(UTC)
    frames = samples_dir / "frames"
    sequence = [
        frames / "negative" / "neg_00.jpg",
        frames / "fire" / "fire_04.jpg",
        frames / "fire" / "fire_07.jpg",
    ]
    for seq, frame in enumerate(sequence):
        headers = FrameHeaders(camera_id=camera, event_time=now + timedelta(seconds=seq), seq=seq)
        send(producer, topics.CAMERA_FRAMES, camera, frame.read_bytes(), headers.to_kafka())

    def incidents() -> list[tuple] | None:
        rows = db.execute(
            "SELECT id, kind, severity, source, evidence FROM incidents WHERE source_key = %s",
            (camera,),
        ).fetchall()
        return rows if rows and rows[0][4]["frame"]["seq"] == 2 else None

    found = wait_for(
        incidents, timeout=120, what="the vision incident, refreshed by the last fire frame"
    )
    assert len(found) == 1, "repeated fire on one camera within the bucket is one incident"
    assert found[0][1:4] == ("fire", "urgent", "vision")
    classes = {
        r[0]
        for r in db.execute("SELECT class_name FROM detections WHERE camera_id = %s", (camera,))
    }
    assert classes & {"fire", "smoke"}
    wait_for(
        lambda: row(
            db,
            "SELECT count(*) FROM alerts WHERE incident_id = %s HAVING count(*) = 2",
            found[0][0],
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
    marker = uuid.uuid4().hex.encode()
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
        observed = datetime.now(UTC) + timedelta(days=2000 + uuid.uuid4().int % 1000)
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


def test_undecodable_frame_goes_to_dlq_and_worker_continues(
    producer: KafkaProducer, db: psycopg.Connection, settings: Settings, samples_dir: Path
) -> None:
    camera = f"cam-test-{uuid.uuid4().hex[:6]}"
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
    fire = (samples_dir / "frames" / "fire" / "fire_07.jpg").read_bytes()
    send(
        producer,
        topics.CAMERA_FRAMES,
        camera,
        fire,
        FrameHeaders(camera_id=camera, event_time=now, seq=1).to_kafka(),
    )

    letters = wait_for(
        lambda: (found := dead_letters(settings, marker)) and len(found) == 2 and found,
        what="two dead letters",
    )
    reasons = sorted(letter.headers["reason"] for letter in letters)
    assert "bad frame headers" in reasons[0] and "camera_id" in reasons[0]
    assert reasons[1] == "frame value is not a decodable image"
    wait_for(
        lambda: row(db, "SELECT 1 FROM incidents WHERE source_key = %s", camera),
        timeout=120,
        what="the good frame after the bad ones to raise its incident",
    )
