"""Staff corrections of triage on the real stack: applied, audited, re-dated, raising the incident
and paging when a ticket becomes urgent, and read back for training."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from datetime import datetime, timedelta
from typing import Any

import psycopg
import pytest
from kafka import KafkaProducer

from ioc.config import Settings
from ioc.hotline.corrections import (
    Applied,
    Correction,
    CorrectionError,
    correct_triage,
    training_examples,
)
from ioc.hotline.tickets import UnknownTicket
from ioc.hotline.triage import load_sla
from ioc.models.categories import Category
from tests.conftest import wait_for
from tests.hotline.test_tickets import incident, metres_north, report, stored

pytestmark = pytest.mark.integration

STREET_LIGHT = "Đèn chiếu sáng công cộng ngõ 12 không sáng từ tối qua"


def apply(settings: Settings, ticket_id: str, **fields: Any) -> Applied:
    correction = Correction(corrected_by="Nguyễn Văn Trực", reason="gọi lại xác minh", **fields)

    async def run() -> Applied:
        async with await psycopg.AsyncConnection.connect(
            settings.database.dsn, autocommit=True
        ) as conn:
            return await correct_triage(conn, ticket_id, correction, load_sla())

    return asyncio.run(run())


def corrections(db: psycopg.Connection, ticket_id: str) -> list[dict[str, Any]]:
    cur = db.cursor(row_factory=psycopg.rows.dict_row)
    return cur.execute(
        "SELECT * FROM triage_corrections WHERE service_request_id = %s ORDER BY id", (ticket_id,)
    ).fetchall()


@pytest.fixture
def street_light(
    producer: KafkaProducer, db: psycopg.Connection, place: tuple[float, float, datetime]
) -> dict[str, Any]:
    """A calm report, stored: its row."""
    lat, lon, when = place
    return stored(db, report(producer, STREET_LIGHT, lat, lon, when))


def test_a_correction_is_applied_audited_and_re_dated(
    db: psycopg.Connection, settings: Settings, street_light: dict[str, Any]
) -> None:
    before = street_light
    ticket_id = before["service_request_id"]
    assert (before["category"], before["urgent"]) == ("dien_nuoc_chieu_sang", False)
    assert before["triage_model"] and before["triage_model"].startswith("m")
    assert 0 < before["urgency_confidence"] <= 1

    applied = apply(settings, ticket_id, category=Category.AN_NINH_TRAT_TU, urgent=True)
    assert (applied.category, applied.priority, applied.urgent, applied.raised) == (
        Category.AN_NINH_TRAT_TU,
        2,
        True,
        True,
    )
    after = stored(db, ticket_id)
    assert (after["category"], after["priority"], after["urgent"]) == ("an_ninh_trat_tu", 2, True)
    hours = load_sla().hours_for(Category.AN_NINH_TRAT_TU, 2)
    assert after["sla_due"] == after["requested_at"] + timedelta(hours=hours)

    (audit,) = corrections(db, ticket_id)
    assert (audit["corrected_by"], audit["reason"]) == ("Nguyễn Văn Trực", "gọi lại xác minh")
    assert (audit["from_category"], audit["from_priority"], audit["from_urgent"]) == (
        "dien_nuoc_chieu_sang",
        before["priority"],
        False,
    )
    assert (audit["to_category"], audit["to_priority"], audit["to_urgent"]) == (
        "an_ninh_trat_tu",
        2,
        True,
    )
    assert audit["triage_model"] == before["triage_model"]
    events = db.execute(
        "SELECT note FROM ticket_events WHERE service_request_id = %s AND note LIKE 'triage%%'",
        (ticket_id,),
    ).fetchall()
    assert events == [
        (f"triage corrected: dien_nuoc_chieu_sang p{before['priority']} → an_ninh_trat_tu p2",)
    ]

    raised = incident(db, after["incident_id"])
    assert (raised["severity"], raised["category"]) == ("urgent", "an_ninh_trat_tu")
    assert applied.incident is not None and applied.incident.severity == "urgent"


def test_corrections_that_change_nothing_or_name_no_ticket_are_refused(
    db: psycopg.Connection, settings: Settings, street_light: dict[str, Any]
) -> None:
    row = street_light
    ticket_id = row["service_request_id"]
    with pytest.raises(CorrectionError, match="nothing to correct"):
        apply(settings, ticket_id, category=Category(row["category"]), urgent=row["urgent"])
    with pytest.raises(UnknownTicket):
        apply(settings, "TN-0-none", urgent=True)
    assert corrections(db, ticket_id) == []


def test_a_further_report_made_urgent_raises_the_incident_it_joined_and_calm_never_lowers_it(
    producer: KafkaProducer,
    db: psycopg.Connection,
    settings: Settings,
    place: tuple[float, float, datetime],
) -> None:
    lat, lon, when = place
    first = stored(db, report(producer, STREET_LIGHT, lat, lon, when))
    second_id = report(
        producer,
        "Den duong ngo 12 tat",
        metres_north(lat, 50),
        lon,
        when + timedelta(minutes=5),
    )
    second = stored(db, second_id)
    assert second["incident_id"] == first["incident_id"] and second["status"] == "duplicate"

    applied = apply(settings, second_id, urgent=True)
    assert applied.raised and applied.incident is not None
    joined = incident(db, first["incident_id"])
    assert joined["severity"] == "urgent"
    assert joined["category"] == "dien_nuoc_chieu_sang", "a further report never recategorises"

    calm = apply(settings, second_id, urgent=False)
    assert calm.incident is None and not calm.raised
    assert incident(db, first["incident_id"])["severity"] == "urgent"


def test_training_reads_the_latest_correction_of_each_ticket(
    settings: Settings, street_light: dict[str, Any]
) -> None:
    ticket_id = street_light["service_request_id"]
    apply(settings, ticket_id, category=Category.GIAO_THONG)
    apply(settings, ticket_id, priority=4)

    async def read() -> list[Any]:
        async with await psycopg.AsyncConnection.connect(
            settings.database.dsn, autocommit=True
        ) as conn:
            return await training_examples(conn)

    mine = [e for e in asyncio.run(read()) if e.source == f"correction:{ticket_id}"]
    assert [(e.text, e.category, e.priority) for e in mine] == [
        (STREET_LIGHT, Category.GIAO_THONG, 4)
    ]


def test_staff_correct_from_the_cli_and_bad_corrections_exit_with_the_reason(
    db: psycopg.Connection, webhook: Any, street_light: dict[str, Any]
) -> None:
    row = street_light
    ticket_id = row["service_request_id"]

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "ioc", "triage", "correct", ticket_id, *args],
            capture_output=True,
            text=True,
            timeout=120,
        )

    done = cli("--urgent", "--by", "trực ban", "--reason", "dây điện chập cháy")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "raised and paged" in done.stdout
    assert stored(db, ticket_id)["urgent"] is True

    def pages() -> set[str]:
        query = "SELECT channel FROM alerts WHERE incident_id = %s AND ok"
        return {r[0] for r in db.execute(query, (row["incident_id"],))}

    assert wait_for(lambda: pages() >= {"webhook"} and pages(), what="the page") >= {"webhook"}

    refused = cli("--urgent", "--priority", "4", "--reason", "x")
    assert refused.returncode == 1 and "disagree" in refused.stdout
    missing = cli("--priority", "3")
    assert missing.returncode == 2 and "--reason" in missing.stderr
