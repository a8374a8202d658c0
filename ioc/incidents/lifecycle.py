"""An incident's life: open → acknowledged → resolved, reopened by new evidence or by staff,
resolved by itself once every source has cleared for a hold time, escalated when urgent and
nobody acknowledges it in time.

Every change is a new version of the incident (row in `fused_incidents`, event in
`fused_incident_events` with who, when and why) made in one transaction with the row locked; the
caller publishes the returned version to `ioc.incidents`, where alerting follows it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from psycopg import AsyncConnection
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from ioc.incidents.composition import Composition
from ioc.models import (
    FusedIncident,
    FusedStatus,
    Incident,
    IncidentSource,
    Member,
    Resolution,
    Severity,
)
from ioc.models.base import utc_now
from ioc.models.incidents import IncidentStatus

SYSTEM = "ioc"

COLUMNS = (
    "id",
    "version",
    "change",
    "kind",
    "severity",
    "status",
    "episode",
    "title",
    "district",
    "lat",
    "lon",
    "event_time",
    "opened_at",
    "status_since",
    "ingested_at_ms",
    "sources",
    "reports",
    "scope",
    "members",
    "evidence",
    "actor",
    "reason",
    "acknowledged_by",
    "acknowledged_at",
    "resolved_by",
    "resolved_at",
    "resolution",
    "escalated_at",
    "merged_into",
    "unit",
    "assigned_at",
    "work_started_at",
)


class IncidentTransitionError(ValueError):
    """A change the lifecycle does not allow (acknowledging a resolved incident, …)."""


class UnknownIncident(LookupError):
    """No incident has that id."""


def fused_from_row(row: Mapping[str, Any]) -> FusedIncident:
    return FusedIncident.model_validate({name: row[name] for name in COLUMNS})


async def save(cur: Any, incident: FusedIncident) -> None:
    """Write a version and its event; an older version never overwrites a newer one."""
    values = incident.model_dump(mode="json")
    values["members"] = Jsonb(values["members"])
    values["evidence"] = Jsonb(values["evidence"])
    updates = ", ".join(f"{name} = EXCLUDED.{name}" for name in COLUMNS[1:])
    await cur.execute(
        f"INSERT INTO fused_incidents ({', '.join(COLUMNS)}, updated_at)"
        f" VALUES ({', '.join(f'%({name})s' for name in COLUMNS)}, now())"
        f" ON CONFLICT (id) DO UPDATE SET {updates}, updated_at = now()"
        " WHERE fused_incidents.version < EXCLUDED.version",
        values,
    )
    await cur.execute(
        "INSERT INTO fused_incident_events (incident_id, version, change, status, severity,"
        " sources, actor, reason) VALUES (%s, %s, %s, %s, %s, %s, %s, %s)"
        " ON CONFLICT DO NOTHING",
        (
            incident.id,
            incident.version,
            incident.change,
            incident.status,
            incident.severity,
            incident.sources,
            incident.actor,
            incident.reason,
        ),
    )


def _next(incident: FusedIncident, **changes: Any) -> FusedIncident:
    return incident.model_copy(update={"version": incident.version + 1, **changes})


def _reopened(now: datetime) -> dict[str, Any]:
    return {
        "status": FusedStatus.OPEN,
        "status_since": now,
        "acknowledged_by": None,
        "acknowledged_at": None,
        "resolved_by": None,
        "resolved_at": None,
        "resolution": None,
        "escalated_at": None,
        "work_started_at": None,
    }


def merged(absorbed: FusedIncident, into: str, candidate: Incident, now: datetime) -> FusedIncident:
    """An incident that turned out to be part of an earlier one."""
    return _next(
        absorbed,
        change="merged",
        status=FusedStatus.MERGED,
        status_since=now,
        merged_into=into,
        ingested_at_ms=candidate.ingested_at_ms,
        actor=SYSTEM,
        reason=f"the same incident as {into} ({candidate.source} {candidate.source_key})",
    )


def folded(
    current: FusedIncident | None,
    candidate: Incident,
    composition: Composition,
    members: list[Member],
    evidence: dict[str, list],
    previous: Mapping[str, Member],
    absorbed: list[FusedIncident],
    now: datetime,
) -> FusedIncident | None:
    """The incident's next version after fusion saw `candidate`; None when nothing changed."""
    members = sorted(members, key=lambda m: (m.event_time, m.id))
    head = composition.head
    derived: dict[str, Any] = {
        "kind": composition.kind,
        "severity": composition.severity,
        "title": composition.title,
        "sources": composition.sources,
        "reports": composition.reports,
        "scope": composition.scope,
        "members": members,
        "evidence": evidence,
        "event_time": head.event_time,
        "ingested_at_ms": candidate.ingested_at_ms,
        "actor": SYSTEM,
    }
    any_open = any(m.status == IncidentStatus.OPEN for m in members)
    joined = [m for m in members if m.id not in previous]
    if current is None:
        place = candidate if head.id == candidate.id else None
        base = absorbed[0] if absorbed and place is None else None
        active = [a for a in absorbed if a.status.active]
        acknowledged = active and all(a.status == FusedStatus.ACKNOWLEDGED for a in active)
        status = (
            FusedStatus.ACKNOWLEDGED
            if acknowledged
            else FusedStatus.OPEN
            if active or any_open
            else FusedStatus.RESOLVED
        )
        first_ack = min((a for a in active if a.acknowledged_at), key=_ack_time, default=None)
        return FusedIncident(
            id=head.id,
            version=1,
            change="merged" if absorbed else "opened",
            status=status,
            episode=max((a.episode for a in absorbed), default=1),
            opened_at=min((a.opened_at for a in absorbed), default=now),
            status_since=now,
            reason=_joined_reason(joined) if absorbed else None,
            acknowledged_by=first_ack.acknowledged_by if acknowledged and first_ack else None,
            acknowledged_at=first_ack.acknowledged_at if acknowledged and first_ack else None,
            resolved_by=SYSTEM if status == FusedStatus.RESOLVED else None,
            resolved_at=now if status == FusedStatus.RESOLVED else None,
            resolution=Resolution.CLEARED if status == FusedStatus.RESOLVED else None,
            **(derived | _place(place, base)),
        )

    derived |= _place(candidate if head.id == candidate.id else None, current)
    reopened_members = [
        m
        for m in members
        if m.status == IncidentStatus.OPEN
        and m.id in previous
        and previous[m.id].status == IncidentStatus.RESOLVED
    ]
    if current.status == FusedStatus.RESOLVED and (
        any(m.status == IncidentStatus.OPEN for m in joined) or reopened_members
    ):
        cause = [m for m in joined if m.status == IncidentStatus.OPEN] or reopened_members
        return _next(
            current,
            change="reopened",
            episode=current.episode + 1,
            reason=f"new evidence: {_joined_reason(cause)}",
            **(derived | _reopened(now)),
        )
    if absorbed:
        change, reason = "merged", "absorbed " + ", ".join(sorted(a.id for a in absorbed))
    elif joined:
        change, reason = "joined", _joined_reason(joined)
    elif composition.severity != current.severity:
        change, reason = "severity", f"{current.severity} → {composition.severity}"
    else:
        change, reason = "updated", None
    unchanged = all(
        getattr(current, name) == value
        for name, value in derived.items()
        if name not in ("ingested_at_ms", "actor")
    )
    if unchanged and not absorbed:
        return None
    return _next(current, change=change, reason=reason, **derived)


def recomposed(
    current: FusedIncident, composition: Composition, reason: str, now: datetime
) -> FusedIncident | None:
    """The incident with a severity or title that changed for a reason outside its members (a
    `raise_near` candidate nearby); None when neither changed."""
    if (composition.severity, composition.title) == (current.severity, current.title):
        return None
    return _next(
        current,
        change="severity",
        severity=composition.severity,
        title=composition.title,
        reason=f"{current.severity} → {composition.severity}: {reason}",
        actor=SYSTEM,
        ingested_at_ms=int(now.timestamp() * 1000),
    )


def _ack_time(incident: FusedIncident) -> datetime:
    assert incident.acknowledged_at is not None
    return incident.acknowledged_at


def _place(candidate: Incident | None, fallback: FusedIncident | None) -> dict[str, Any]:
    """Where the incident is: its earliest candidate's place."""
    if candidate is not None:
        return {"district": candidate.district, "lat": candidate.lat, "lon": candidate.lon}
    if fallback is not None:
        return {"district": fallback.district, "lat": fallback.lat, "lon": fallback.lon}
    return {"district": None, "lat": None, "lon": None}


def _joined_reason(joined: list[Member]) -> str:
    return ", ".join(f"{m.source} {m.source_key} ({m.kind})" for m in joined) or "—"


# --- Staff changes ----------------------------------------------------------------------------


async def _locked(cur: Any, incident_id: str) -> FusedIncident:
    await cur.execute("SELECT * FROM fused_incidents WHERE id = %s FOR UPDATE", (incident_id,))
    row = await cur.fetchone()
    if row is None:
        raise UnknownIncident(f"no incident {incident_id}")
    return fused_from_row(row)


async def change_status(
    conn: AsyncConnection, incident_id: str, action: str, actor: str, reason: str | None
) -> FusedIncident:
    """`ack`, `start` (Đang xử lý), `resolve`, `false_alarm` or `reopen` by a staff member; the
    new version. A false alarm resolves an active incident, or relabels one that cleared by
    itself (staff review after the fact): its rules are judged by it."""
    now = utc_now()
    async with conn.transaction(), conn.cursor(row_factory=dict_row) as cur:
        current = await _locked(cur, incident_id)
        if current.status == FusedStatus.MERGED:
            raise IncidentTransitionError(
                f"{incident_id} was merged into {current.merged_into}; act there"
            )
        changes: dict[str, Any]
        if action == "ack":
            if current.status != FusedStatus.OPEN:
                raise IncidentTransitionError(f"{incident_id} is {current.status}, not open")
            changes = {
                "change": "acknowledged",
                "status": FusedStatus.ACKNOWLEDGED,
                "acknowledged_by": actor,
                "acknowledged_at": now,
            }
        elif action == "start":
            if not current.status.active:
                raise IncidentTransitionError(f"{incident_id} is {current.status}, not active")
            if current.work_started_at is not None:
                raise IncidentTransitionError(f"{incident_id} is already in progress")
            changes = {"change": "in_progress", "work_started_at": now}
            if current.status == FusedStatus.OPEN:  # starting work acknowledges it too
                changes |= {
                    "status": FusedStatus.ACKNOWLEDGED,
                    "acknowledged_by": actor,
                    "acknowledged_at": now,
                }
        elif action == "resolve":
            if not current.status.active:
                raise IncidentTransitionError(f"{incident_id} is already {current.status}")
            changes = {
                "change": "resolved",
                "status": FusedStatus.RESOLVED,
                "resolved_by": actor,
                "resolved_at": now,
                "resolution": Resolution.HANDLED,
            }
        elif action == "false_alarm":
            if current.resolution == Resolution.FALSE_ALARM:
                raise IncidentTransitionError(f"{incident_id} is already a false alarm")
            if current.status == FusedStatus.RESOLVED and current.resolution != Resolution.CLEARED:
                raise IncidentTransitionError(
                    f"{incident_id} was resolved as {current.resolution}: reopen it first"
                )
            changes = {
                "change": "false_alarm",
                "status": FusedStatus.RESOLVED,
                "resolved_by": actor,
                "resolved_at": now,
                "resolution": Resolution.FALSE_ALARM,
            }
        elif action == "reopen":
            if current.status != FusedStatus.RESOLVED:
                raise IncidentTransitionError(
                    f"{incident_id} is {current.status}: only resolved reopen"
                )
            changes = {"change": "reopened", "episode": current.episode + 1} | _reopened(now)
        else:
            raise IncidentTransitionError(
                f"unknown action {action!r} (ack, start, resolve, false_alarm, reopen)"
            )
        since = now if "status" in changes else current.status_since  # start may keep it
        changes |= {"status_since": since, "actor": actor, "reason": reason}
        updated = _next(current, **changes, ingested_at_ms=int(now.timestamp() * 1000))
        await save(cur, updated)
    return updated


async def assign(
    conn: AsyncConnection, incident_id: str, unit: str, actor: str, reason: str | None
) -> FusedIncident:
    """Hand an active incident to a unit, or transfer it from one to another; the new version.
    Its history records who gave it to whom (a transfer names the unit it left)."""
    now = utc_now()
    async with conn.transaction(), conn.cursor(row_factory=dict_row) as cur:
        current = await _locked(cur, incident_id)
        if not current.status.active:
            raise IncidentTransitionError(f"{incident_id} is {current.status}, not active")
        if current.unit == unit:
            raise IncidentTransitionError(f"{incident_id} is already with {unit}")
        change = "assigned" if current.unit is None else "transferred"
        note = f"{unit}" if current.unit is None else f"{current.unit} → {unit}"
        updated = _next(
            current,
            change=change,
            unit=unit,
            assigned_at=now,
            actor=actor,
            reason=f"{note}: {reason}" if reason else note,
            ingested_at_ms=int(now.timestamp() * 1000),
        )
        await save(cur, updated)
    return updated


# --- Timers -----------------------------------------------------------------------------------


async def auto_resolve(conn: AsyncConnection, hold: timedelta) -> list[FusedIncident]:
    """Active incidents whose every source has cleared for `hold` resolve by themselves."""
    now = utc_now()
    resolved = []
    async with conn.transaction(), conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(
            "SELECT * FROM fused_incidents WHERE status IN ('open', 'acknowledged')"
            " AND NOT EXISTS (SELECT 1 FROM jsonb_array_elements(members) AS m"
            "                 WHERE m->>'status' <> 'resolved')"
            " ORDER BY id FOR UPDATE SKIP LOCKED"
        )
        for row in await cur.fetchall():
            current = fused_from_row(row)
            cleared = [m.cleared_at or now for m in current.members]
            if max(cleared) > now - hold:
                continue
            updated = _next(
                current,
                change="resolved",
                status=FusedStatus.RESOLVED,
                status_since=now,
                resolved_by=SYSTEM,
                resolved_at=now,
                resolution=Resolution.CLEARED,
                actor=SYSTEM,
                reason=f"every source cleared for {hold.total_seconds():.0f} s",
                ingested_at_ms=int(now.timestamp() * 1000),
            )
            await save(cur, updated)
            resolved.append(updated)
    return resolved


async def escalate(conn: AsyncConnection, limits: Mapping[str, float]) -> list[FusedIncident]:
    """Open incidents nobody acknowledged within their severity's limit: escalated, once per
    episode (reopening re-arms it)."""
    now = utc_now()
    escalated = []
    async with conn.transaction(), conn.cursor(row_factory=dict_row) as cur:
        for severity, limit_s in sorted(limits.items()):
            await cur.execute(
                "SELECT * FROM fused_incidents WHERE status = 'open' AND severity = %s"
                " AND escalated_at IS NULL AND status_since <= %s"
                " ORDER BY id FOR UPDATE SKIP LOCKED",
                (Severity(severity), now - timedelta(seconds=limit_s)),
            )
            for row in await cur.fetchall():
                updated = _next(
                    fused_from_row(row),
                    change="escalated",
                    escalated_at=now,
                    actor=SYSTEM,
                    reason=f"not acknowledged within {limit_s:.0f} s",
                    ingested_at_ms=int(now.timestamp() * 1000),
                )
                await save(cur, updated)
                escalated.append(updated)
    return escalated


# --- Reading ----------------------------------------------------------------------------------


async def get(conn: AsyncConnection, incident_id: str) -> FusedIncident:
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute("SELECT * FROM fused_incidents WHERE id = %s", (incident_id,))
        row = await cur.fetchone()
    if row is None:
        raise UnknownIncident(f"no incident {incident_id}")
    return fused_from_row(row)


async def history(conn: AsyncConnection, incident_id: str) -> list[dict[str, Any]]:
    """Every change of the incident, oldest first: version, when, what, who, why."""
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(
            "SELECT version, at, change, status, severity, sources, actor, reason"
            " FROM fused_incident_events WHERE incident_id = %s ORDER BY version",
            (incident_id,),
        )
        return await cur.fetchall()


@dataclass(frozen=True)
class EvidenceFiles:
    """What one camera candidate of an incident left on disk: its best annotated frame and its
    clip (`clip_status`: pending until its window has passed, then ready, empty or failed)."""

    member_id: str
    camera_id: str
    snapshot: str | None
    score: float | None
    clip: str | None
    clip_status: str | None


async def evidence_files(conn: AsyncConnection, incident: FusedIncident) -> list[EvidenceFiles]:
    """Its camera candidates' snapshots and clips, the best-scoring snapshot first."""
    members = [m.id for m in incident.members if m.source == IncidentSource.VISION]
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(
            "SELECT m.id AS member_id, coalesce(s.camera_id, c.camera_id) AS camera_id,"
            " s.path AS snapshot, s.score, c.path AS clip, c.status AS clip_status"
            " FROM unnest(%s::text[]) AS m (id)"
            " LEFT JOIN incident_snapshots AS s ON s.incident_id = m.id"
            " LEFT JOIN incident_clips AS c ON c.incident_id = m.id"
            " WHERE s.incident_id IS NOT NULL OR c.incident_id IS NOT NULL"
            " ORDER BY s.score DESC NULLS LAST, m.id",
            (members,),
        )
        return [EvidenceFiles(**row) for row in await cur.fetchall()]


async def deliveries(conn: AsyncConnection, incident_id: str) -> list[dict[str, Any]]:
    """What the alerts worker sent about it on each channel (firing, escalated, resolved), with
    failures and their reasons, oldest first."""
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(
            "SELECT channel, notification, delivered_at, ok, error FROM alerts"
            " WHERE incident_id = %s ORDER BY delivered_at, channel",
            (incident_id,),
        )
        return await cur.fetchall()


async def tickets(conn: AsyncConnection, incident: FusedIncident) -> list[dict[str, Any]]:
    """The 1022 tickets of its hotline candidates, oldest first: the reporter's words (redacted
    at intake), the answers to the service's questions, which are not in those words, and what
    the reporter was told (`ioc.citizens`: each notice and its outcome, oldest first)."""
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(
            "SELECT t.service_request_id, t.requested_at, t.category, t.description, t.attributes,"
            " t.lat, t.lon,"
            " coalesce((SELECT jsonb_agg(jsonb_build_object('notice', split_part(n.notice, ':', 1),"
            " 'status', n.status, 'channel', n.channel, 'at', n.at) ORDER BY n.at)"
            " FROM citizen_notices n WHERE n.service_request_id = t.service_request_id),"
            " '[]'::jsonb) AS notices"
            " FROM tickets t"
            " WHERE t.incident_id = ANY(%s) ORDER BY t.requested_at, t.service_request_id",
            ([m.id for m in incident.members if m.source == IncidentSource.HOTLINE],),
        )
        return await cur.fetchall()


async def listed(
    conn: AsyncConnection, statuses: list[FusedStatus], limit: int
) -> list[FusedIncident]:
    """Incidents in these states, the most severe and the most recent first."""
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(
            "SELECT * FROM fused_incidents WHERE status = ANY(%s)"
            " ORDER BY CASE severity WHEN 'urgent' THEN 0 WHEN 'high' THEN 1 ELSE 2 END,"
            " event_time DESC, id LIMIT %s",
            ([str(s) for s in statuses], limit),
        )
        return [fused_from_row(row) for row in await cur.fetchall()]
