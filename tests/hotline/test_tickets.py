"""Tickets through the real stack: triage, duplicate linking, SLA breaches, privacy."""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest
from kafka import KafkaProducer

from ioc.config import Settings
from ioc.hotline import tickets
from ioc.kafka import topics
from tests.conftest import WebhookReceiver, caught_up, dead_letters, letters_marker, wait_for

pytestmark = pytest.mark.integration


def report(
    producer: KafkaProducer, description: str, lat: float, lon: float, when: datetime, **extra: Any
) -> str:
    ticket_id = f"T-{uuid.uuid4().hex[:10]}"
    body = {
        "service_request_id": ticket_id,
        "requested_datetime": when.isoformat(),
        "channel": "app",
        "description": description,
        "lat": lat,
        "long": lon,
        "address_string": "Thái Nguyên",
    } | extra
    producer.send(topics.HOTLINE_TICKETS, key=ticket_id.encode(), value=json.dumps(body).encode())
    producer.flush()
    return ticket_id


def stored(db: psycopg.Connection, ticket_id: str) -> dict[str, Any]:
    def probe() -> dict[str, Any] | None:
        cur = db.cursor(row_factory=psycopg.rows.dict_row)
        return cur.execute(
            "SELECT * FROM tickets WHERE service_request_id = %s", (ticket_id,)
        ).fetchone()

    return wait_for(probe, what=f"ticket {ticket_id} stored")


def incident(db: psycopg.Connection, incident_id: str) -> dict[str, Any]:
    cur = db.cursor(row_factory=psycopg.rows.dict_row)
    return cur.execute("SELECT * FROM incidents WHERE id = %s", (incident_id,)).fetchone()


def metres_north(lat: float, metres: float) -> float:
    return lat + metres / 111_320


def test_nearby_reports_of_one_category_link_to_one_incident(
    producer: KafkaProducer,
    db: psycopg.Connection,
    settings: Settings,
    place: tuple[float, float, datetime],
) -> None:
    lat, lon, when = place
    first = stored(db, report(producer, "Cháy nhà dân, khói đen bốc cao", lat, lon, when))
    second = stored(
        db,
        report(
            producer,
            "chay nha o gan day, lua to lam",
            metres_north(lat, 120),
            lon,
            when + timedelta(minutes=40),
        ),
    )
    far = stored(db, report(producer, "Cháy kho hàng", metres_north(lat, 900), lon, when))
    later = stored(db, report(producer, "Cháy nhà dân", lat, lon, when + timedelta(hours=5)))
    other_kind = stored(db, report(producer, "Rác thải bốc mùi hôi thối", lat, lon, when))

    assert first["category"] == second["category"] == "chay_no"
    assert second["incident_id"] == first["incident_id"]
    assert (first["status"], second["status"]) == ("triaged", "duplicate")
    assert first["incident_id"] in second["status_notes"]
    assert (
        len(
            {
                first["incident_id"],
                far["incident_id"],
                later["incident_id"],
                other_kind["incident_id"],
            }
        )
        == 4
    ), "distance, time window and category all separate"
    linked = incident(db, first["incident_id"])
    assert linked["reports"] == 2 and linked["kind"] == "fire" and linked["severity"] == "urgent"
    wait_for(lambda: caught_up(settings, "ioc-alerts", topics.INCIDENTS), what="alert consumer")
    channels = [
        r[0]
        for r in db.execute(
            "SELECT channel FROM alerts WHERE incident_id = %s", (first["incident_id"],)
        )
    ]
    assert sorted(channels) == ["console", "webhook"], "one page per channel, not per report"


def test_a_report_never_joins_an_sla_breach_incident(
    producer: KafkaProducer,
    db: psycopg.Connection,
    settings: Settings,
    place: tuple[float, float, datetime],
) -> None:
    """An SLA breach is an open hotline incident at its ticket's place and category; once the
    fire itself is resolved, it is the only open one there, and a new report must not join it."""
    lat, lon, when = place
    first = stored(db, report(producer, "Cháy nhà dân, khói đen bốc cao", lat, lon, when))
    breach = wait_for(
        lambda: db.execute(
            "SELECT id FROM incidents WHERE kind = 'sla_breach' AND source_key = %s",
            (first["service_request_id"],),
        ).fetchone(),
        what="the first report's SLA breach (it is long overdue)",
    )

    async def resolve() -> None:
        async with await psycopg.AsyncConnection.connect(settings.database.dsn) as conn:
            await tickets.set_status(conn, first["service_request_id"], "resolved", "Đã dập")

    asyncio.run(resolve())
    assert incident(db, first["incident_id"])["status"] == "resolved"
    second = stored(
        db, report(producer, "chay nha, lua to", lat, lon, when + timedelta(minutes=30))
    )
    assert second["incident_id"] not in (breach[0], first["incident_id"])
    assert incident(db, second["incident_id"])["kind"] == "fire"


def test_redelivered_ticket_changes_nothing(
    producer: KafkaProducer, db: psycopg.Connection, place: tuple[float, float, datetime]
) -> None:
    lat, lon, when = place
    ticket_id = report(producer, "Ngập sâu 50cm sau mưa lớn", lat, lon, when)
    first = stored(db, ticket_id)
    body = {
        "service_request_id": ticket_id,
        "requested_datetime": when.isoformat(),
        "channel": "app",
        "description": "Ngập sâu 50cm sau mưa lớn",
        "lat": lat,
        "long": lon,
        "address_string": "Thái Nguyên",
    }
    producer.send(topics.HOTLINE_TICKETS, key=ticket_id.encode(), value=json.dumps(body).encode())
    marker = report(producer, "Ngập nước đường", metres_north(lat, 5000), lon, when)
    stored(db, marker)  # processed after the redelivery (same agent, ordered per partition pair)
    events = db.execute(
        "SELECT count(*) FROM ticket_events WHERE service_request_id = %s"
        " AND note IS DISTINCT FROM 'SLA breached'",
        (ticket_id,),
    ).fetchone()
    assert events == (1,)
    assert incident(db, first["incident_id"])["reports"] == 1


def test_sla_breach_raises_one_alerted_incident(
    producer: KafkaProducer,
    db: psycopg.Connection,
    webhook: WebhookReceiver,
    place: tuple[float, float, datetime],
) -> None:
    lat, lon, _ = place
    overdue = report(producer, "Cháy lớn tại chợ", lat, lon, datetime.now(UTC) - timedelta(days=1))
    fresh = report(producer, "Cháy lớn tại chợ", lat, lon + 0.05, datetime.now(UTC))
    ticket = stored(db, overdue)
    assert ticket["sla_due"] < datetime.now(UTC)

    def breach() -> list[tuple] | None:
        rows = db.execute(
            "SELECT id, kind, severity FROM incidents WHERE source_key = %s"
            " AND kind = 'sla_breach'",
            (overdue,),
        ).fetchall()
        return rows or None

    rows = wait_for(breach, what="SLA breach incident")
    assert len(rows) == 1 and rows[0][2] == "urgent"
    wait_for(lambda: [i for i in webhook.incidents() if i["id"] == rows[0][0]], what="breach alert")
    assert stored(db, overdue)["sla_breached_at"] is not None
    assert stored(db, fresh)["sla_breached_at"] is None
    # Later checks (every second here) must not raise it again.
    wait_for(
        lambda: db.execute(
            "SELECT 1 FROM ticket_events WHERE service_request_id = %s AND note = 'SLA breached'",
            (overdue,),
        ).fetchone(),
        what="event",
    )
    assert len(breach() or []) == 1


def test_personal_data_stops_at_intake(
    producer: KafkaProducer,
    db: psycopg.Connection,
    settings: Settings,
    webhook: WebhookReceiver,
    place: tuple[float, float, datetime],
) -> None:
    lat, lon, when = place
    ticket_id = report(
        producer,
        "Cháy xưởng gỗ, gọi lại cho tôi số 0987 654 321",
        lat,
        lon,
        when,
        phone="0912345678",
        email="nguyen.an@example.vn",
        first_name="An",
        last_name="Nguyễn",
    )
    row = stored(db, ticket_id)
    assert row["reporter_masked"] == "09******78"
    flat = json.dumps(row, default=str)
    for secret in ("0912345678", "987 654 321", "0987654321", "nguyen.an", "Nguyễn"):
        assert secret not in flat
    alerted = wait_for(
        lambda: [i for i in webhook.incidents() if i["id"] == row["incident_id"]], what="alert"
    )
    assert "987 654 321" not in json.dumps(alerted, ensure_ascii=False)

    marker = letters_marker()
    broken = (
        f'{{"service_request_id": "{marker}", "phone": "0912345678", "last_name": "Trần",'
        f' "description": "lh 0987654321"'
    ).encode()
    producer.send(topics.HOTLINE_TICKETS, key=marker.encode(), value=broken)
    producer.flush()
    letters = wait_for(lambda: dead_letters(settings, marker.encode()), what="dead letter")
    assert "Invalid JSON" in letters[0].headers["reason"]
    assert all(b"0912345678" not in d.value and "Trần".encode() not in d.value for d in letters)


def test_staff_cli_moves_a_ticket_and_refuses_invalid_moves(
    producer: KafkaProducer, db: psycopg.Connection, place: tuple[float, float, datetime]
) -> None:
    import subprocess
    import sys

    lat, lon, when = place
    ticket_id = report(producer, "Đèn chiếu sáng hỏng cả dãy phố", lat, lon, when)
    stored(db, ticket_id)

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "ioc", "tickets", "set-status", ticket_id, *args],
            capture_output=True,
            text=True,
            timeout=120,
        )

    moved = cli("in_progress", "--note", "Đội điện lực đang xử lý")
    assert moved.returncode == 0, moved.stdout + moved.stderr
    row = stored(db, ticket_id)
    assert (row["status"], row["status_notes"]) == ("in_progress", "Đội điện lực đang xử lý")
    refused = cli("duplicate")
    assert refused.returncode == 1 and "cannot move" in refused.stdout
    assert stored(db, ticket_id)["status"] == "in_progress"


def test_a_ticket_the_database_refuses_is_dead_lettered_and_its_batch_kept(
    producer: KafkaProducer,
    db: psycopg.Connection,
    settings: Settings,
    place: tuple[float, float, datetime],
) -> None:
    """A NUL character passes JSON and the model, but PostgreSQL text cannot hold it: the batch
    is linked again one ticket at a time, and only that ticket is dead-lettered."""
    lat, lon, when = place
    marker = letters_marker()
    before = report(producer, "Ngập nước sau mưa", lat, lon, when)
    refused = report(producer, f"Ngập {marker}\u0000 nước", lat, lon + 0.02, when)
    after = report(producer, "Cây đổ chắn đường", lat, lon + 0.04, when)
    assert stored(db, before)["status"] == "triaged"
    assert stored(db, after)["status"] == "triaged"
    letters = wait_for(lambda: dead_letters(settings, marker.encode()), what="dead letter")
    assert letters[0].headers["reason"].startswith("refused by the database")
    assert db.execute(
        "SELECT count(*) FROM tickets WHERE service_request_id = %s", (refused,)
    ).fetchone() == (0,)
