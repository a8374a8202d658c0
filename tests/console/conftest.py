"""What the console's tests share: a member of staff with an account, and a camera fire stored
and fused as the workers would (with its snapshot on disk, as the evidence writer keeps it)."""

from __future__ import annotations

import asyncio
import random
import shutil
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pytest

from ioc.config import Settings
from ioc.console import accounts
from ioc.console.accounts import Role
from ioc.hotline import tickets
from ioc.hotline.privacy import reporter_of
from ioc.hotline.triage import Triage
from ioc.incidents.composition import FusionRules
from ioc.incidents.fusion import fuse
from ioc.models import Incident, Ticket
from ioc.models.base import deterministic_id
from ioc.store.writer import Store

COST = 10  # scrypt N = 2^10 in tests: the hashing is tested, not its cost
PASSWORD = "mật khẩu trực ban 1"
FIRE_FRAME = Path(__file__).resolve().parents[2] / "ioc/assets/samples/frames/fire/fire_05.jpg"


@pytest.fixture(scope="module")
def staff(live_stack: Settings) -> str:
    """An operator's username (password `PASSWORD`)."""
    name = f"op.{uuid.uuid4().hex[:8]}"

    async def make() -> None:
        async with await psycopg.AsyncConnection.connect(
            live_stack.database.dsn, autocommit=True
        ) as conn:
            await accounts.create(conn, name, "Nguyễn Thị Lan", Role.OPERATOR, PASSWORD, COST)

    asyncio.run(make())
    return name


def camera_fire(settings: Settings, title: str, snapshot: bool = False) -> Incident:
    """A fresh fire a camera saw, fused alone (placed away from the session's other fires), so
    the fused incident takes the candidate's id."""
    tag = f"{random.getrandbits(40):x}"
    incident = Incident(
        id=deterministic_id("inc", "console", tag),
        kind="fire",
        severity="urgent",
        source="vision",
        source_key=f"cam-console-{tag}",
        title=title,
        event_time=datetime.now(UTC) - timedelta(seconds=random.randint(30, 3600)),
        ingested_at_ms=1,
        district="Phường Phan Đình Phùng",
        lat=random.uniform(10, 20),
        lon=random.uniform(100, 110),
    )
    path = settings.vision.evidence_dir.expanduser() / f"{incident.id}.jpg"
    if snapshot:
        path.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(FIRE_FRAME, path)

    async def store() -> None:
        writer = Store(settings.database.dsn, 1)
        try:
            await writer.upsert_incident(incident)
            async with writer.connection() as conn:
                if snapshot:
                    await conn.execute(
                        "INSERT INTO incident_snapshots (incident_id, path, camera_id,"
                        " frame_partition, frame_offset, seq, score)"
                        " VALUES (%s, %s, %s, 0, 0, 1, 0.9)",
                        (incident.id, str(path), incident.source_key),
                    )
                await fuse(conn, incident, FusionRules.load(), "console-test")
        finally:
            await writer.close()

    asyncio.run(store())
    return incident


def reported_incident(
    settings: Settings, text: str = "Cháy bếp nhà hàng, khói nhiều"
) -> tuple[str, str]:
    """A 1022 report fused into an incident of its own, its reporter masked at intake as
    09******78: (the incident's id, the ticket's id)."""
    triage = Triage.load()
    ticket = Ticket(
        service_request_id=f"1022-{uuid.uuid4().hex[:8]}",
        requested_datetime=datetime.now(UTC),
        description=text,
        channel="phone",
        phone="0912345678",
        lat=random.uniform(9, 23),  # far from the session's other reports
        long=random.uniform(103, 109),
    )
    result = triage.classify(ticket.description)
    due = triage.sla_due(result, ticket.requested_datetime)
    intake = tickets.Intake(ticket, result, due, reporter_of(ticket, "test-key"), 1)

    async def store() -> str:
        async with await psycopg.AsyncConnection.connect(settings.database.dsn) as conn:
            linking = tickets.Linking(200, timedelta(hours=2))
            (incident,) = await tickets.record_tickets(conn, [intake], linking)
            await fuse(conn, incident, FusionRules.load(), "i18n-test")
            cursor = await conn.execute(
                "SELECT fused_id FROM incidents WHERE id = %s", (incident.id,)
            )
            row = await cursor.fetchone()
            await conn.commit()
        assert row is not None
        return str(row[0])

    return asyncio.run(store()), ticket.service_request_id
