"""A ticket's way through the IOC: stored triaged, linked to the incident it reports (a new one,
or an open one of the same category nearby and recently), and watched against its SLA.

A batch of tickets is linked in one transaction, under advisory locks on the grid cells of each
report's category around its place, so two workers that receive two reports of the same fire at
the same moment still make one incident with two reports, while reports far apart go in parallel.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from psycopg import AsyncConnection
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from ioc.hotline.privacy import Reporter, redact_answers, redact_text
from ioc.hotline.triage import TriageResult
from ioc.incidents.rows import distance_m, distance_sql, incident_from_row
from ioc.models import Incident, IncidentKind, IncidentSource, Severity, Ticket
from ioc.models.base import VIETNAM_TIME, deterministic_id, epoch_ms, from_epoch_ms, utc_now
from ioc.models.categories import CATEGORY_NAMES, Category
from ioc.store.locks import advisory_key
from ioc.store.writer import incident_values, upsert_incident

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
class SealedContact:
    """The reporter's contact as the citizen loop keeps it (`ioc.citizens.contacts`)."""

    kind: str
    sealed: bytes


@dataclass(frozen=True)
class Intake:
    """A triaged ticket, ready to be stored and linked."""

    ticket: Ticket
    result: TriageResult
    sla_due: datetime
    reporter: Reporter
    ingested_ms: int
    contact: SealedContact | None = None


@dataclass(frozen=True)
class Linking:
    """Which open incident a report joins: same category, within `radius_m` and `window`."""

    radius_m: float
    window: timedelta

    def box(self, lat: float) -> tuple[float, float]:
        """Half the sides, in degrees, of the box around a point at `lat` that holds the radius."""
        dlat = self.radius_m / METRES_PER_DEGREE
        return dlat, self.radius_m / (METRES_PER_DEGREE * max(math.cos(math.radians(lat)), 0.01))

    def lock_keys(self, intake: Intake) -> set[int]:
        """Advisory locks that serialise a report with every report it could join or be joined
        by: its category's grid cells (4 radii a side) under its box. Two reports within the
        radius share the cell of either point. A report without a place links to nothing, and
        locks only its own id, against a second delivery of itself."""
        ticket, category = intake.ticket, intake.result.category
        if ticket.lat is None or ticket.long is None:
            return {advisory_key(f"hotline:ticket:{ticket.service_request_id}")}
        cell = 4 * self.radius_m / METRES_PER_DEGREE
        dlat, dlon = self.box(ticket.lat)
        rows = range(
            math.floor((ticket.lat - dlat) / cell), math.floor((ticket.lat + dlat) / cell) + 1
        )
        columns = range(
            math.floor((ticket.long - dlon) / cell), math.floor((ticket.long + dlon) / cell) + 1
        )
        return {advisory_key(f"hotline:{category}:{r}:{c}") for r in rows for c in columns}

    def joins(self, intake: Intake, incident: Incident) -> float | None:
        """The distance to an incident a report may join (opened earlier in the same batch),
        or None where it may not."""
        ticket = intake.ticket
        if (
            ticket.lat is None
            or ticket.long is None
            or incident.lat is None
            or incident.lon is None
            or incident.category != intake.result.category
            or abs(incident.event_time - ticket.requested_datetime) > self.window
        ):
            return None
        distance = distance_m(ticket.lat, ticket.long, incident.lat, incident.lon)
        return distance if distance <= self.radius_m else None


@dataclass
class Join:
    """An incident a batch opened or joined, and what the batch adds to it."""

    id: str
    severity: Severity
    added_reports: int = 0


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


async def record_tickets(
    conn: AsyncConnection, intakes: Sequence[Intake], linking: Linking
) -> list[Incident]:
    """Store a batch of triaged tickets and link each to its incident, in one transaction, and
    idempotently: a ticket already stored changes nothing. A report joins the nearest open
    hotline incident of its category within the radius and window, whether stored before or
    opened by an earlier report of the same batch, else it opens its own. Returns every incident
    the batch touched as stored after it, in the order first touched.

    About six statements per batch instead of eight per ticket: the profile showed the tickets
    flow waiting on database round trips, one ticket at a time behind a per-category lock."""
    async with conn.transaction(), conn.cursor(row_factory=dict_row) as cur:
        keys = sorted(set().union(*(linking.lock_keys(intake) for intake in intakes)))
        await cur.execute(
            "SELECT pg_advisory_xact_lock(k) FROM (SELECT unnest(%s::bigint[]) AS k ORDER BY k) l",
            (keys,),
        )
        await cur.execute(
            "SELECT service_request_id, incident_id FROM tickets"
            " WHERE service_request_id = ANY(%s)",
            ([intake.ticket.service_request_id for intake in intakes],),
        )
        known: dict[str, str] = {
            row["service_request_id"]: row["incident_id"] for row in await cur.fetchall()
        }
        touched: dict[str, int] = {}  # incident id → ingested_ms of its first report here
        fresh: list[Intake] = []
        for intake in intakes:
            ticket_id = intake.ticket.service_request_id
            if ticket_id in known:  # stored before, or earlier in this batch: announced again
                touched.setdefault(known[ticket_id], intake.ingested_ms)
            else:
                known[ticket_id] = ""
                fresh.append(intake)
        stored_matches = await _nearby_open_incidents(cur, fresh, linking)
        joins: dict[str, Join] = {}
        opened: list[Incident] = []
        ticket_rows, event_rows = [], []
        for index, intake in enumerate(fresh):
            new = ticket_incident(intake.ticket, intake.result, intake.ingested_ms)
            near = [
                (d, i.id, i.severity)
                for i in opened
                if (d := linking.joins(intake, i)) is not None  # 0.0: the very same spot
            ]
            if index in stored_matches:
                near.append(stored_matches[index])
            if near:
                _, incident_id, severity = min(near)
                join = joins.setdefault(incident_id, Join(incident_id, severity))
                join.severity = min(join.severity, new.severity, key=lambda s: s.rank)
                join.added_reports += 1
                status, note = "duplicate", f"linked to incident {incident_id}"
            else:
                opened.append(new)
                joins[new.id] = Join(new.id, new.severity)
                incident_id, status, note = new.id, "triaged", None
            known[intake.ticket.service_request_id] = incident_id
            touched.setdefault(incident_id, intake.ingested_ms)
            ticket_rows.append(_ticket_row(intake, incident_id, status, note))
            event_rows.append((intake.ticket.service_request_id, status, note))
        if opened:
            await cur.executemany(
                "INSERT INTO incidents (id, kind, severity, source, source_key, title, status,"
                " district, lat, lon, event_time, category, reports, evidence)"
                " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"
                " ON CONFLICT (id) DO UPDATE SET updated_at = now()",
                [incident_values(incident) for incident in opened],
            )
        if added := [j for j in joins.values() if j.added_reports]:
            await cur.executemany(
                "UPDATE incidents SET reports = reports + %s, severity = %s, updated_at = now()"
                " WHERE id = %s",
                [(j.added_reports, j.severity, j.id) for j in added],
            )
        if ticket_rows:
            await cur.executemany(
                "INSERT INTO tickets (service_request_id, requested_at, channel, description,"
                " address, lat, lon, reporter_hash, reporter_masked, urgent, ingested_at,"
                " service_code, category, priority, triage_confidence, sla_due, status,"
                " status_notes, media_url, incident_id, triage_model, urgency_confidence,"
                f" attributes) VALUES ({', '.join(['%s'] * 23)})"
                " ON CONFLICT (service_request_id) DO NOTHING",
                ticket_rows,
            )
            await cur.executemany(
                "INSERT INTO ticket_events (service_request_id, status, note) VALUES (%s, %s, %s)",
                event_rows,
            )
        if contacts := [
            (i.ticket.service_request_id, i.contact.kind, i.contact.sealed)
            for i in fresh
            if i.contact is not None
        ]:
            await cur.executemany(
                "INSERT INTO reporter_contacts (service_request_id, kind, sealed)"
                " VALUES (%s, %s, %s) ON CONFLICT (service_request_id) DO NOTHING",
                contacts,
            )
        await cur.execute("SELECT * FROM incidents WHERE id = ANY(%s)", (list(touched),))
        rows = {row["id"]: row for row in await cur.fetchall()}
    return [incident_from_row(rows[id_], ms) for id_, ms in touched.items() if id_ in rows]


def _ticket_row(intake: Intake, incident_id: str, status: str, note: str | None) -> tuple[Any, ...]:
    ticket, result = intake.ticket, intake.result
    return (
        ticket.service_request_id,
        ticket.requested_datetime,
        ticket.channel,
        redact_text(ticket.description),
        ticket.address_string,
        ticket.lat,
        ticket.long,
        intake.reporter.hash,
        intake.reporter.masked,
        result.urgent,
        from_epoch_ms(intake.ingested_ms),
        ticket.service_code,
        result.category,
        result.priority,
        result.confidence,
        intake.sla_due,
        status,
        note,
        ticket.media_url,
        incident_id,
        result.model,
        result.urgency_confidence,
        Jsonb(redact_answers(ticket.attributes)),
    )


async def _nearby_open_incidents(
    cur: Any, fresh: Sequence[Intake], linking: Linking
) -> dict[int, tuple[float, str, Severity]]:
    """Per report (its index in `fresh`), the nearest stored open hotline incident of its
    category within the radius and window: (distance, id, severity). One statement."""
    columns: dict[str, list[Any]] = {
        name: [] for name in ("n", "category", "lat", "lon", "since", "until", "dlat", "dlon")
    }
    for index, intake in enumerate(fresh):
        ticket = intake.ticket
        if ticket.lat is None or ticket.long is None:
            continue
        dlat, dlon = linking.box(ticket.lat)
        for name, value in (
            ("n", index),
            ("category", str(intake.result.category)),
            ("lat", ticket.lat),
            ("lon", ticket.long),
            ("since", ticket.requested_datetime - linking.window),
            ("until", ticket.requested_datetime + linking.window),
            ("dlat", dlat),
            ("dlon", dlon),
        ):
            columns[name].append(value)
    if not columns["n"]:
        return {}
    distance = distance_sql("q.lat", "q.lon", row="i")
    await cur.execute(
        "SELECT q.n, m.id, m.severity, m.distance_m FROM unnest(%(n)s::int[],"
        " %(category)s::text[], %(lat)s::float8[], %(lon)s::float8[], %(since)s::timestamptz[],"
        " %(until)s::timestamptz[], %(dlat)s::float8[], %(dlon)s::float8[])"
        " AS q(n, category, lat, lon, since, until, dlat, dlon)"
        f" CROSS JOIN LATERAL (SELECT i.id, i.severity, {distance} AS distance_m FROM incidents i"
        " WHERE i.source = 'hotline' AND i.category = q.category AND i.status = 'open'"
        " AND i.kind <> 'sla_breach'"  # a breach shares its ticket's place: never a report's match
        " AND i.lat BETWEEN q.lat - q.dlat AND q.lat + q.dlat"
        " AND i.lon BETWEEN q.lon - q.dlon AND q.lon + q.dlon"
        " AND i.event_time BETWEEN q.since AND q.until"
        f" AND {distance} <= %(radius)s ORDER BY distance_m LIMIT 1) m",
        columns | {"radius": linking.radius_m},
    )
    return {
        row["n"]: (row["distance_m"], row["id"], Severity(row["severity"]))
        for row in await cur.fetchall()
    }


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
