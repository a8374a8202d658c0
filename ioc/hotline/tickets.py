"""A ticket's way through the IOC: stored triaged, linked to the incident it reports (a new one,
or an open one of the same category nearby and recently), and watched against its SLA.

Linking runs in one transaction under a per-category advisory lock, so two workers that receive
two reports of the same fire at the same moment still make one incident with two reports.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from psycopg import AsyncConnection
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from ioc.hotline.privacy import Reporter, redact_answers, redact_text
from ioc.hotline.triage import TriageResult
from ioc.incidents.rows import DISTANCE_M, incident_from_row
from ioc.models import Incident, IncidentKind, IncidentSource, Severity, Ticket
from ioc.models.base import VIETNAM_TIME, deterministic_id, epoch_ms, from_epoch_ms, utc_now
from ioc.models.categories import CATEGORY_NAMES, Category
from ioc.store.writer import upsert_incident

# Internal states; Open311 shows the first four as "open" and the last two as "closed".
OPEN_STATES = ("new", "triaged", "assigned", "in_progress")
CLOSED_STATES = ("resolved", "duplicate")

KIND_OF_CATEGORY = {
    Category.CHAY_NO: IncidentKind.FIRE,
    Category.NGAP_LUT_THIEN_TAI: IncidentKind.FLOOD,
}


def severity_for(urgent: bool, priority: int) -> Severity:
    """Urgent reports page at once; priority 2 pages too; the rest wait for the queue."""
    if urgent or priority == 1:
        return Severity.URGENT
    return Severity.HIGH if priority == 2 else Severity.NORMAL


METRES_PER_DEGREE = 111_320  # of latitude; of longitude times cos(latitude)


@dataclass(frozen=True)
class Linked:
    incident: Incident
    created: bool  # the first report of this incident


def ticket_incident(ticket: Ticket, result: TriageResult, ingested_ms: int) -> Incident:
    """The incident a first report opens."""
    name = CATEGORY_NAMES[result.category][0]
    return Incident(
        id=deterministic_id("inc", IncidentSource.HOTLINE, ticket.service_request_id),
        kind=KIND_OF_CATEGORY.get(result.category, IncidentKind.CITIZEN_REPORT),
        severity=severity_for(result.urgent, result.priority),
        source=IncidentSource.HOTLINE,
        source_key=ticket.service_request_id,
        title=f"1022 · {name}: {redact_text(ticket.description)[:140]}",
        event_time=ticket.requested_datetime,
        ingested_at_ms=ingested_ms,
        district=ticket.address_string,
        lat=ticket.lat,
        lon=ticket.long,
        category=result.category,
        evidence={
            "priority": result.priority,
            "matched": list(result.matched),
            "confidence": round(result.confidence, 3),
            "urgency_confidence": result.urgency_confidence,
            "model": result.model,
            "channel": ticket.channel,
        },
    )


async def record_ticket(
    conn: AsyncConnection,
    ticket: Ticket,
    result: TriageResult,
    sla_due: datetime,
    reporter: Reporter,
    ingested_ms: int,
    radius_m: float,
    window: timedelta,
) -> Linked:
    """Store the triaged ticket and link it to its incident, atomically and idempotently."""
    async with conn.transaction(), conn.cursor(row_factory=dict_row) as cur:
        lock = f"hotline:{result.category}"
        await cur.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (lock,))
        await cur.execute(
            "SELECT i.* FROM tickets t JOIN incidents i ON i.id = t.incident_id"
            " WHERE t.service_request_id = %s",
            (ticket.service_request_id,),
        )
        if existing := await cur.fetchone():
            return Linked(incident_from_row(existing, ingested_ms), created=False)

        fresh = ticket_incident(ticket, result, ingested_ms)
        match = await _nearby_open_incident(cur, ticket, result.category, radius_m, window)
        if match:
            severity = min(Severity(match["severity"]), fresh.severity, key=lambda s: s.rank)
            await cur.execute(
                "UPDATE incidents SET reports = reports + 1, severity = %s, updated_at = now()"
                " WHERE id = %s RETURNING *",
                (severity, match["id"]),
            )
            row = await cur.fetchone()
            status, note = "duplicate", f"linked to incident {match['id']}"
        else:
            await cur.execute(
                "INSERT INTO incidents (id, kind, severity, source, source_key, title, status,"
                " district, lat, lon, event_time, category, reports, evidence)"
                " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, 1, %s)"
                " ON CONFLICT (id) DO UPDATE SET updated_at = now() RETURNING *",
                (
                    fresh.id,
                    fresh.kind,
                    fresh.severity,
                    fresh.source,
                    fresh.source_key,
                    fresh.title,
                    fresh.status,
                    fresh.district,
                    fresh.lat,
                    fresh.lon,
                    fresh.event_time,
                    fresh.category,
                    Jsonb(fresh.evidence),
                ),
            )
            row = await cur.fetchone()
            status, note = "triaged", None
        assert row is not None
        await cur.execute(
            "INSERT INTO tickets (service_request_id, requested_at, channel, description, address,"
            " lat, lon, reporter_hash, reporter_masked, urgent, ingested_at, service_code,"
            " category, priority, triage_confidence, sla_due, status, status_notes, media_url,"
            " incident_id, triage_model, urgency_confidence, attributes)"
            f" VALUES ({', '.join(['%s'] * 23)})"
            " ON CONFLICT (service_request_id) DO NOTHING",
            (
                ticket.service_request_id,
                ticket.requested_datetime,
                ticket.channel,
                redact_text(ticket.description),
                ticket.address_string,
                ticket.lat,
                ticket.long,
                reporter.hash,
                reporter.masked,
                result.urgent,
                from_epoch_ms(ingested_ms),
                ticket.service_code,
                result.category,
                result.priority,
                result.confidence,
                sla_due,
                status,
                note,
                ticket.media_url,
                row["id"],
                result.model,
                result.urgency_confidence,
                Jsonb(redact_answers(ticket.attributes)),
            ),
        )
        await cur.execute(
            "INSERT INTO ticket_events (service_request_id, status, note) VALUES (%s, %s, %s)",
            (ticket.service_request_id, status, note),
        )
        return Linked(incident_from_row(row, ingested_ms), created=match is None)


async def current_incident(
    conn: AsyncConnection, incident_id: str, ingested_ms: int
) -> Incident | None:
    """The incident as stored now."""
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute("SELECT * FROM incidents WHERE id = %s", (incident_id,))
        row = await cur.fetchone()
    return incident_from_row(row, ingested_ms) if row else None


async def _nearby_open_incident(
    cur: Any, ticket: Ticket, category: Category, radius_m: float, window: timedelta
) -> dict[str, Any] | None:
    """The nearest open hotline incident of the category within the radius and time window."""
    if ticket.lat is None or ticket.long is None:
        return None
    dlat = radius_m / METRES_PER_DEGREE
    dlon = radius_m / (METRES_PER_DEGREE * max(math.cos(math.radians(ticket.lat)), 0.01))
    params = {
        "category": category,
        "lat": ticket.lat,
        "lon": ticket.long,
        "radius": radius_m,
        "since": ticket.requested_datetime - window,
        "until": ticket.requested_datetime + window,
        "lat_min": ticket.lat - dlat,
        "lat_max": ticket.lat + dlat,
        "lon_min": ticket.long - dlon,
        "lon_max": ticket.long + dlon,
    }
    await cur.execute(
        f"SELECT id, severity, {DISTANCE_M} AS distance_m FROM incidents"
        " WHERE source = 'hotline' AND category = %(category)s AND status = 'open'"
        " AND kind <> 'sla_breach'"  # a breach shares its ticket's place: never a report's match
        " AND lat BETWEEN %(lat_min)s AND %(lat_max)s AND lon BETWEEN %(lon_min)s AND %(lon_max)s"
        " AND event_time BETWEEN %(since)s AND %(until)s"
        f" AND {DISTANCE_M} <= %(radius)s ORDER BY distance_m LIMIT 1",
        params,
    )
    return await cur.fetchone()


def breach_incident(row: dict[str, Any]) -> Incident:
    """An SLA breach is an incident of its own, so it reaches staff through the same alerts."""
    category = Category(row["category"])
    due_ict = row["sla_due"].astimezone(VIETNAM_TIME)
    return Incident(
        id=deterministic_id("inc", "sla", row["service_request_id"]),
        kind=IncidentKind.SLA_BREACH,
        severity=Severity.URGENT if row["urgent"] or row["priority"] == 1 else Severity.HIGH,
        source=IncidentSource.HOTLINE,
        source_key=row["service_request_id"],
        title=(
            f"Quá hạn xử lý 1022 {row['service_request_id']} · {CATEGORY_NAMES[category][0]}"
            f" (hạn {due_ict:%H:%M %d/%m})"
        ),
        event_time=row["sla_due"],
        ingested_at_ms=epoch_ms(utc_now()),
        district=row["address"],
        lat=row["lat"],
        lon=row["lon"],
        category=category,
        evidence={
            "ticket": row["service_request_id"],
            "priority": row["priority"],
            "incident": row["incident_id"],
            "status": row["status"],
        },
    )


async def claim_sla_breaches(conn: AsyncConnection) -> list[Incident]:
    """Mark open tickets past their deadline as breached (once, even with many workers), and
    store their incidents in the same transaction: a crash before they are published leaves
    them unfused, and the fusion sweep publishes them again (`unfused_candidates`)."""
    async with conn.transaction(), conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(
            "UPDATE tickets SET sla_breached_at = now() WHERE status = ANY(%s)"
            " AND sla_due < now() AND sla_breached_at IS NULL"
            " RETURNING service_request_id, category, priority, urgent, sla_due, incident_id,"
            " status, address, lat, lon",
            (list(OPEN_STATES),),
        )
        rows = await cur.fetchall()
        for row in rows:
            await cur.execute(
                "INSERT INTO ticket_events (service_request_id, status, note)"
                " VALUES (%s, %s, 'SLA breached')",
                (row["service_request_id"], row["status"]),
            )
        breaches = [breach_incident(row) for row in rows]
        for incident in breaches:
            await upsert_incident(conn, incident)
    return breaches


# Staff moves; "duplicate" is set only by linking. Reopening a resolved ticket is allowed.
TRANSITIONS: dict[str, frozenset[str]] = {
    "new": frozenset({"triaged", "assigned", "in_progress", "resolved"}),
    "triaged": frozenset({"assigned", "in_progress", "resolved"}),
    "assigned": frozenset({"in_progress", "resolved"}),
    "in_progress": frozenset({"assigned", "resolved"}),
    "resolved": frozenset({"in_progress"}),
    "duplicate": frozenset(),
}


class TicketTransitionError(ValueError):
    """A status change that the lifecycle does not allow."""


class UnknownTicket(TicketTransitionError):
    """No ticket has that id."""


async def set_status(
    conn: AsyncConnection, ticket_id: str, status: str, note: str | None
) -> Incident | None:
    """Move a ticket; resolving (or reopening) the ticket that opened an incident does the same
    to the incident, which is returned so the caller publishes its new state. The note is
    public (Open311 shows it): a phone number or e-mail typed into it is masked."""
    note = redact_text(note) if note is not None else None
    async with conn.transaction(), conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(
            "SELECT status, incident_id FROM tickets WHERE service_request_id = %s FOR UPDATE",
            (ticket_id,),
        )
        current = await cur.fetchone()
        if current is None:
            raise UnknownTicket(f"unknown ticket {ticket_id}")
        if status not in TRANSITIONS.get(current["status"], frozenset()):
            allowed = ", ".join(sorted(TRANSITIONS.get(current["status"], ()))) or "none"
            raise TicketTransitionError(
                f"cannot move {ticket_id} from {current['status']} to {status} (allowed: {allowed})"
            )
        await cur.execute(
            "UPDATE tickets SET status = %s, status_notes = %s, updated_at = now()"
            " WHERE service_request_id = %s",
            (status, note, ticket_id),
        )
        await cur.execute(
            "INSERT INTO ticket_events (service_request_id, status, note) VALUES (%s, %s, %s)",
            (ticket_id, status, note),
        )
        incident_status = {"resolved": "resolved", "in_progress": "open"}.get(status)
        if incident_status is None:
            return None
        await cur.execute(
            "UPDATE incidents SET status = %s, updated_at = now()"
            " WHERE id = %s AND source_key = %s AND status <> %s RETURNING *",
            (incident_status, current["incident_id"], ticket_id, incident_status),
        )
        row = await cur.fetchone()
    return incident_from_row(row, epoch_ms(utc_now())) if row else None
