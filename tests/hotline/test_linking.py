"""Linking a batch of tickets to incidents (`record_tickets`) on the real database: reports of one
batch join each other and stored incidents, a batch is idempotent, and two workers linking
reports of one fire at the same moment make one incident."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Sequence
from datetime import datetime, timedelta

import psycopg
import pytest

from ioc.config import Settings
from ioc.hotline import tickets
from ioc.hotline.privacy import Reporter
from ioc.hotline.triage import TriageResult
from ioc.models import Incident, Ticket
from ioc.models.categories import Category

pytestmark = pytest.mark.integration

LINKING = tickets.Linking(radius_m=200.0, window=timedelta(minutes=120))
FIRE = TriageResult(Category.CHAY_NO, True, 1, 0.9, ("cháy",), 0.9)
SMOKE = TriageResult(Category.CHAY_NO, False, 3, 0.9, ("khói",), 0.6)
WASTE = TriageResult(Category.MOI_TRUONG, False, 4, 0.9, ("rác",), 0.8)


def intake(
    lat: float, lon: float, when: datetime, result: TriageResult, ticket_id: str | None = None
) -> tickets.Intake:
    ticket = Ticket(
        service_request_id=ticket_id or f"L-{uuid.uuid4().hex[:12]}",
        requested_datetime=when,
        channel="app",
        description="báo cáo thử",
        lat=lat,
        long=lon,
        address_string="Thái Nguyên",
    )
    return tickets.Intake(ticket, result, when + timedelta(hours=1), Reporter(None, None), 0)


def metres_north(lat: float, metres: float) -> float:
    return lat + metres / 111_320


async def link(settings: Settings, batch: Sequence[tickets.Intake]) -> list[Incident]:
    async with await psycopg.AsyncConnection.connect(settings.database.dsn) as conn:
        return await tickets.record_tickets(conn, batch, LINKING)


def incident_of(db: psycopg.Connection, ticket_id: str) -> tuple[str, str, str]:
    row = db.execute(
        "SELECT incident_id, status, coalesce(status_notes, '') FROM tickets"
        " WHERE service_request_id = %s",
        (ticket_id,),
    ).fetchone()
    assert row is not None, ticket_id
    return row


def test_a_batch_links_to_itself_and_to_stored_incidents(
    live_stack: Settings, db: psycopg.Connection, place: tuple[float, float, datetime]
) -> None:
    lat, lon, when = place
    stored = intake(lat, lon, when, SMOKE)
    asyncio.run(link(live_stack, [stored]))

    far = intake(metres_north(lat, 3000), lon, when, SMOKE)
    near_far = intake(metres_north(lat, 3100), lon, when + timedelta(minutes=5), FIRE)
    same_spot = intake(metres_north(lat, 3000), lon, when + timedelta(minutes=6), SMOKE)
    joins_stored = intake(metres_north(lat, 50), lon, when + timedelta(minutes=10), FIRE)
    other_category = intake(lat, lon, when, WASTE)
    too_late = intake(lat, lon, when + timedelta(hours=3), SMOKE)
    batch = [far, near_far, same_spot, joins_stored, other_category, too_late]
    touched = asyncio.run(link(live_stack, batch))

    first = incident_of(db, stored.ticket.service_request_id)[0]
    assert incident_of(db, joins_stored.ticket.service_request_id)[:2] == (first, "duplicate")
    opened_here = incident_of(db, far.ticket.service_request_id)
    assert opened_here[1] == "triaged"
    linked = incident_of(db, near_far.ticket.service_request_id)
    assert linked[:2] == (opened_here[0], "duplicate"), "joins an incident this batch opened"
    assert opened_here[0] in linked[2]
    assert incident_of(db, same_spot.ticket.service_request_id)[:2] == (opened_here[0], "duplicate")
    separate = {
        first,
        opened_here[0],
        incident_of(db, other_category.ticket.service_request_id)[0],
        incident_of(db, too_late.ticket.service_request_id)[0],
    }
    assert len(separate) == 4, "distance, category and time window separate"

    by_id = {incident.id: incident for incident in touched}
    assert set(by_id) == separate, "every incident the batch touched, once"
    assert (by_id[first].reports, by_id[first].severity) == (2, "urgent"), "the urgent report"
    assert (by_id[opened_here[0]].reports, by_id[opened_here[0]].severity) == (3, "urgent")
    events = db.execute(
        "SELECT count(*) FROM ticket_events WHERE service_request_id = ANY(%s)",
        ([i.ticket.service_request_id for i in batch],),
    ).fetchone()
    assert events == (len(batch),)


def test_a_batch_done_again_changes_nothing(
    live_stack: Settings, db: psycopg.Connection, place: tuple[float, float, datetime]
) -> None:
    lat, lon, when = place
    first = intake(lat, lon, when, FIRE)
    again_in_batch = intake(lat, lon, when, FIRE, first.ticket.service_request_id)
    second = intake(metres_north(lat, 20), lon, when, SMOKE)
    batch = [first, again_in_batch, second]
    once = asyncio.run(link(live_stack, batch))
    twice = asyncio.run(link(live_stack, batch))

    assert [i.id for i in once] == [i.id for i in twice]
    assert [i.reports for i in twice] == [2], "the ticket twice in a batch is one report"
    events = db.execute(
        "SELECT count(*) FROM ticket_events WHERE service_request_id = ANY(%s)",
        ([first.ticket.service_request_id, second.ticket.service_request_id],),
    ).fetchone()
    assert events == (2,)


def test_two_workers_linking_one_fire_at_once_make_one_incident(
    live_stack: Settings, db: psycopg.Connection, place: tuple[float, float, datetime]
) -> None:
    """Ten rounds of two batches at once, each with one report of the same fire: the grid-cell
    locks serialise them, so the second always finds the first's incident. Each round is 500 m
    east of the last (beyond the radius), so the rounds fall at different places in the grid."""
    lat, lon, when = place

    async def race(east_m: float) -> tuple[list[Incident], list[Incident]]:
        spot_lon = lon + east_m / 103_000
        one = intake(lat, spot_lon, when, FIRE)
        other = intake(metres_north(lat, 30), spot_lon, when, FIRE)
        filler = [intake(lat + 0.05 * k, lon - 0.05, when, WASTE) for k in range(1, 4)]
        return await asyncio.gather(
            link(live_stack, [*filler, one]), link(live_stack, [other, *filler[::-1]])
        )

    for round_number in range(10):
        left, right = asyncio.run(race(500.0 * round_number))
        fires = {i.id for i in [*left, *right] if i.category == Category.CHAY_NO}
        assert len(fires) == 1, f"round {round_number}: {fires}"
        (fire,) = fires
        reports = db.execute("SELECT reports FROM incidents WHERE id = %s", (fire,)).fetchone()
        assert reports == (2,), f"round {round_number}"
