"""The citizen loop on a real database of its own (migrated like production, in the session's
PostgreSQL) with a real SMTP server: reporters are told each step once and in order, can reopen
a resolved report once from its link, failures are retried then given up, and contacts are
destroyed when the loop no longer needs them."""

from __future__ import annotations

import asyncio
import random
import re
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest
from fastapi.testclient import TestClient

from ioc.api.app import create_app
from ioc.citizens.contacts import ContactBox, contact_of
from ioc.citizens.loop import CitizenLoop, PassSummary
from ioc.config import CitizenSettings, NotifySettings, Settings
from ioc.dispatch.units import Units
from ioc.hotline import tickets
from ioc.hotline.privacy import Reporter
from ioc.hotline.triage import Triage
from ioc.incidents import lifecycle
from ioc.incidents.composition import FusionRules
from ioc.incidents.fusion import fuse
from ioc.models import Ticket
from ioc.notify.channels import AddressKind, EmailChannel
from tests.conftest import migrated_database
from tests.smtp import SmtpSink

pytestmark = pytest.mark.integration
KEY = "loop-test-contacts-" + "z" * 32
PUBLIC = "https://ioc.example"
TRIAGE = Triage.load()


@pytest.fixture(scope="module")
def dsn(live_stack: Settings) -> str:
    """A database of the module's own: the session's alerts worker runs a loop of its own on
    the session's database, and must not tell these reporters."""
    return migrated_database(live_stack, "citizens")


@pytest.fixture
def smtp() -> Iterator[SmtpSink]:
    sink = SmtpSink(refuse="bounce")
    yield sink
    sink.close()


def citizen_settings(smtp: SmtpSink, **changes: Any) -> tuple[CitizenSettings, NotifySettings]:
    mail = NotifySettings(smtp_host="127.0.0.1", smtp_port=smtp.port, smtp_starttls=False)
    return CitizenSettings(contact_key=KEY, public_url=PUBLIC, **changes), mail


def loop_of(settings: tuple[CitizenSettings, NotifySettings]) -> CitizenLoop:
    citizens, mail = settings
    return CitizenLoop(citizens, {AddressKind.EMAIL: EmailChannel(mail)}, Units.load())


def run(dsn: str, coroutine_of: Any) -> Any:
    async def main() -> Any:
        async with await psycopg.AsyncConnection.connect(dsn) as conn:
            return await coroutine_of(conn)

    return asyncio.run(main())


def report(dsn: str, email: str, text: str = "Cháy nhà dân, khói rất nhiều") -> tuple[str, str]:
    """A 1022 report with an e-mail, stored and fused as the workers would: (ticket, incident)."""
    ticket = Ticket(
        service_request_id=f"1022-{uuid.uuid4().hex[:8]}",
        requested_datetime=datetime.now(UTC),
        description=text,
        channel="app",
        email=email,
        lat=random.uniform(9, 23),  # inside Vietnam, far apart: each report its own incident
        long=random.uniform(103, 109),
    )
    result = TRIAGE.classify(ticket.description)
    contact = contact_of(ticket)
    assert contact is not None
    sealed = ContactBox.of(CitizenSettings(contact_key=KEY).contact_key).seal(  # type: ignore[arg-type]
        ticket.service_request_id, contact
    )
    intake = tickets.Intake(
        ticket,
        result,
        TRIAGE.sla_due(result, ticket.requested_datetime),
        Reporter("hash", "l***@example.vn"),
        1,
        tickets.SealedContact(contact.kind, sealed),
    )

    async def store(conn: psycopg.AsyncConnection) -> str:
        linking = tickets.Linking(200, timedelta(hours=2))
        (incident,) = await tickets.record_tickets(conn, [intake], linking)
        await fuse(conn, incident, FusionRules.load(), "citizens-test")
        row = await (
            await conn.execute("SELECT fused_id FROM incidents WHERE id = %s", (incident.id,))
        ).fetchone()
        assert row is not None
        return str(row[0])

    return ticket.service_request_id, run(dsn, store)


def pass_once(dsn: str, loop: CitizenLoop) -> PassSummary:
    return run(dsn, loop.run_once)


def act(dsn: str, incident_id: str, action: str, reason: str | None = None) -> None:
    async def change(conn: psycopg.AsyncConnection) -> None:
        if action == "assign":
            await lifecycle.assign(conn, incident_id, "pccc", "op.lan", None)
        else:
            await lifecycle.change_status(conn, incident_id, action, "op.lan", reason)

    run(dsn, change)


def test_a_reporter_is_told_each_step_once_and_can_reopen_once(
    dsn: str, smtp: SmtpSink, live_stack: Settings
) -> None:
    address = f"lan.{uuid.uuid4().hex[:6]}@example.vn"
    ticket_id, incident_id = report(dsn, address)
    loop = loop_of(citizen_settings(smtp))
    assert pass_once(dsn, loop).sent == 1
    assert pass_once(dsn, loop).sent == 0, "told once"
    act(dsn, incident_id, "ack")
    assert pass_once(dsn, loop).sent == 0, "an acknowledgement is not news to the reporter"
    act(dsn, incident_id, "assign")
    act(dsn, incident_id, "resolve", "Đã dập tắt đám cháy, không ai bị thương")
    assert pass_once(dsn, loop).sent == 1, "resolved before the pass: the assignment is old news"
    mails = smtp.to(address)
    assert [m.subject for m in mails] == [
        f"[1022] Phản ánh {ticket_id}: đã tiếp nhận",
        f"[1022] Phản ánh {ticket_id}: đã xử lý",
    ]
    resolved = mails[1].text()
    assert "Kết quả: Đã dập tắt đám cháy, không ai bị thương." in resolved
    link = re.search(rf"{PUBLIC}(/citizen/reopen/\S+)", resolved)
    assert link, resolved

    settings = Settings(database={"dsn": dsn}, citizens={"contact_key": KEY})
    with TestClient(create_app(settings)) as client:
        page = client.get(link.group(1))
        assert page.status_code == 200 and f"Mở lại phản ánh {ticket_id}" in page.text
        done = client.post(link.group(1), data={"why": "Vẫn còn khói, gọi 0912345678"})
        assert done.status_code == 200 and "đã được mở lại" in done.text
        again = client.post(link.group(1), data={})
        assert again.status_code == 409 and "đã được mở lại" in again.text
        forged = link.group(1)[:-3] + ("AAA" if not link.group(1).endswith("AAA") else "BBB")
        assert client.get(forged).status_code == 403
    history = run(dsn, lambda conn: lifecycle.history(conn, incident_id))
    reopened = history[-1]
    assert reopened["change"] == "reopened" and reopened["actor"] == f"citizen:{ticket_id}"
    assert "09******78" in reopened["reason"] and "0912345678" not in reopened["reason"]

    assert pass_once(dsn, loop).sent == 1, "reopened, still with PCCC: told so"
    act(dsn, incident_id, "resolve", "Đã xử lý triệt để")
    assert pass_once(dsn, loop).sent == 1
    subjects = [m.subject for m in smtp.to(address)][2:]
    assert subjects == [
        f"[1022] Phản ánh {ticket_id}: đã giao xử lý",
        f"[1022] Phản ánh {ticket_id}: đã xử lý",
    ]
    assert "Phòng Cảnh sát PCCC và CNCH" in smtp.to(address)[2].text()


def test_a_refused_notice_is_retried_then_given_up_and_later_news_waits(
    dsn: str, smtp: SmtpSink
) -> None:
    ticket_id, incident_id = report(dsn, f"bounce.{uuid.uuid4().hex[:6]}@example.vn")
    loop = loop_of(citizen_settings(smtp, max_attempts=2))
    act(dsn, incident_id, "assign")
    first = pass_once(dsn, loop)
    assert first.failed == 1 and first.sent == 0

    def notices(conn: psycopg.AsyncConnection) -> Any:
        return _fetch(
            conn,
            "SELECT notice, status, attempts, detail FROM citizen_notices"
            " WHERE service_request_id = %s ORDER BY at",
            ticket_id,
        )

    (received,) = run(dsn, notices)
    assert received[:3] == ("received", "failed", 1), "the assignment waits for it"
    assert "SMTPRecipientsRefused" in received[3] and "bounce" not in received[3]
    pass_once(dsn, loop)
    assert [row[:3] for row in run(dsn, notices)] == [("received", "abandoned", 2)]
    pass_once(dsn, loop)  # given up on: the next news goes ahead
    rows = run(dsn, notices)
    assert [row[:3] for row in rows] == [
        ("received", "abandoned", 2),
        ("assigned:1:Phòng Cảnh sát PCCC và CNCH, Công an tỉnh Thái Nguyên", "failed", 1),
    ]


def test_contacts_are_destroyed_after_the_reopen_window_or_the_keep_time(
    dsn: str, smtp: SmtpSink
) -> None:
    resolved_ticket, resolved_incident = report(dsn, f"an.{uuid.uuid4().hex[:6]}@example.vn")
    open_ticket, _ = report(dsn, f"binh.{uuid.uuid4().hex[:6]}@example.vn")
    loop = loop_of(citizen_settings(smtp, reopen_days=2 / 86_400))  # two seconds
    act(dsn, resolved_incident, "resolve", "Đã xử lý")

    def kept(conn: psycopg.AsyncConnection) -> Any:
        return _fetch(
            conn,
            "SELECT service_request_id FROM reporter_contacts WHERE service_request_id = ANY(%s)"
            " ORDER BY created_at",
            [resolved_ticket, open_ticket],
        )

    # The module's database holds the other tests' reports too, which this loop's two-second
    # window may destroy as well: only these two reports' contacts are looked at.
    pass_once(dsn, loop)
    assert [row[0] for row in run(dsn, kept)] == [resolved_ticket, open_ticket], (
        "not destroyed before the resolution is told"
    )
    asyncio.run(asyncio.sleep(2.5))
    pass_once(dsn, loop)
    assert [row[0] for row in run(dsn, kept)] == [open_ticket]

    async def age(conn: psycopg.AsyncConnection) -> None:
        await conn.execute(
            "UPDATE reporter_contacts SET created_at = now() - interval '61 days'"
            " WHERE service_request_id = %s",
            (open_ticket,),
        )
        await conn.commit()

    run(dsn, age)
    pass_once(dsn, loop)
    assert run(dsn, kept) == [], "kept 60 days at most, resolved or not"


async def _fetch(conn: psycopg.AsyncConnection, sql: str, *params: Any) -> list[tuple[Any, ...]]:
    return await (await conn.execute(sql, params)).fetchall()
