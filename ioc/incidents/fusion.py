"""Fusion: candidates from cameras, 1022 tickets and sensors that match in kind, place and time
become one incident, with every candidate's evidence and a severity that rises with independent
confirmation.

An incident is a connected set of candidates under the matching relation (same group, within
the group's distance and time window). Each candidate joins the sets of all the candidates it
matches; sets it bridges merge, and the incident is named after its earliest candidate (by event
time, then id). Matching reads only what a candidate never changes (kind, place, event time), so
the final incidents do not depend on the order the candidates arrived in.

Fusion runs in one transaction per candidate under a per-region advisory lock, and rows are
locked before staff changes touch them (see `ioc.incidents.lifecycle`), so fusion, timers and staff
never overwrite one another's changes.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from psycopg import AsyncConnection
from psycopg.rows import dict_row

from ioc.incidents import lifecycle
from ioc.incidents.composition import FusionGroup, FusionRules, compose
from ioc.incidents.rows import DISTANCE_M, distance_sql, incident_from_row
from ioc.models import FusedIncident, Incident, IncidentKind, Member
from ioc.models.base import epoch_ms, utc_now
from ioc.models.incidents import IncidentSource, IncidentStatus

REPUBLISH_LIMIT = 1000  # per sweep: a backlog drains over several sweeps


def member_of(row: dict[str, Any], previous: Member | None) -> Member:
    """A candidate row as a member; `cleared_at` is kept while it stays resolved."""
    status = IncidentStatus(row["status"])
    cleared_at = None
    if status == IncidentStatus.RESOLVED:
        kept = previous is not None and previous.status == IncidentStatus.RESOLVED
        cleared_at = previous.cleared_at if kept and previous is not None else utc_now()
    return Member(
        id=row["id"],
        source=row["source"],
        source_key=row["source_key"],
        kind=row["kind"],
        severity=row["severity"],
        status=status,
        event_time=row["event_time"],
        title=row["title"],
        reports=row["reports"],
        cleared_at=cleared_at,
    )


def evidence_of(rows: list[dict[str, Any]], tickets: dict[str, list[str]]) -> dict[str, list]:
    """Each kind of evidence, listed: camera frames, 1022 tickets, sensor readings."""
    cameras, reports, readings = [], [], []
    for row in sorted(rows, key=lambda r: (r["event_time"], r["id"])):
        found = row["evidence"] or {}
        if row["source"] == IncidentSource.VISION:
            cameras.append(
                {
                    "candidate": row["id"],
                    "camera": row["source_key"],
                    "score": found.get("score"),
                    "frame": found.get("frame"),
                }
            )
        elif row["source"] == IncidentSource.HOTLINE:
            reports.append(
                {
                    "candidate": row["id"],
                    "tickets": tickets.get(row["id"], [row["source_key"]]),
                    "reports": row["reports"],
                }
            )
        else:
            readings.append(
                {
                    "candidate": row["id"],
                    "sensor": row["source_key"],
                    "condition": found.get("condition"),
                    "value": found.get("value"),
                    "unit": found.get("unit"),
                    "observed_at": found.get("observed_at"),
                }
            )
    evidence = {"cameras": cameras, "tickets": reports, "sensors": readings}
    return {name: items for name, items in evidence.items() if items}


def _as_row(candidate: Incident) -> dict[str, Any]:
    return candidate.model_dump(mode="python", exclude={"ingested_at_ms", "category"})


async def _fused_ids_near(
    cur: Any, candidate: Incident, kinds: list[IncidentKind], radius_m: float, window: timedelta
) -> list[str]:
    """Fused incidents holding another candidate of `kinds` within `radius_m` and `window` of
    this one."""
    if candidate.lat is None or candidate.lon is None:
        return []
    await cur.execute(
        "SELECT DISTINCT fused_id FROM incidents WHERE fused_id IS NOT NULL AND id <> %(id)s"
        " AND kind = ANY(%(kinds)s) AND event_time BETWEEN %(since)s AND %(until)s"
        f" AND lat IS NOT NULL AND {DISTANCE_M} <= %(radius)s ORDER BY fused_id",
        {
            "id": candidate.id,
            "kinds": [str(kind) for kind in kinds],
            "since": candidate.event_time - window,
            "until": candidate.event_time + window,
            "lat": candidate.lat,
            "lon": candidate.lon,
            "radius": radius_m,
        },
    )
    return [row["fused_id"] for row in await cur.fetchall()]


async def _matching_fused_ids(cur: Any, candidate: Incident, group: FusionGroup | None) -> set[str]:
    """Fused incidents holding a candidate that matches this one."""
    if group is None:
        return set()
    window = timedelta(minutes=group.window_minutes)
    return set(await _fused_ids_near(cur, candidate, group.kinds, group.distance_m, window))


async def _near(cur: Any, rows: list[dict[str, Any]], group: FusionGroup | None) -> bool:
    """Whether a candidate of the group's `raise_near` kinds lies within `raise_near_m` and the
    group's window of one of these candidates."""
    placed = [row for row in rows if row["lat"] is not None and row["lon"] is not None]
    if group is None or not group.raise_near or not placed:
        return False
    await cur.execute(
        "SELECT EXISTS (SELECT 1 FROM unnest(%(lats)s::float8[], %(lons)s::float8[],"
        " %(times)s::timestamptz[]) AS p (lat, lon, at) JOIN incidents AS i"
        " ON i.kind = ANY(%(kinds)s) AND i.lat IS NOT NULL"
        " AND i.event_time BETWEEN p.at - %(window)s AND p.at + %(window)s"
        f" WHERE {distance_sql('p.lat', 'p.lon', 'i')} <= %(radius)s) AS near",
        {
            "lats": [row["lat"] for row in placed],
            "lons": [row["lon"] for row in placed],
            "times": [row["event_time"] for row in placed],
            "kinds": [str(kind) for kind in group.raise_near],
            "window": timedelta(minutes=group.window_minutes),
            "radius": group.raise_near_m,
        },
    )
    found = await cur.fetchone()
    return bool(found["near"])


async def _raised_nearby(
    cur: Any, candidate: Incident, rules: FusionRules, now: datetime
) -> list[FusedIncident]:
    """The incidents of groups that this candidate's kind raises (`raise_near`), recomposed:
    the other side of `_near`, so a camera lost before the fire it watched is raised too."""
    changed = []
    for group in rules.groups.values():
        if candidate.kind not in group.raise_near:
            continue
        window = timedelta(minutes=group.window_minutes)
        for fused_id in await _fused_ids_near(
            cur, candidate, group.kinds, group.raise_near_m, window
        ):
            await cur.execute(
                "SELECT * FROM fused_incidents WHERE id = %s AND status <> 'merged' FOR UPDATE",
                (fused_id,),
            )
            row = await cur.fetchone()
            if row is None:
                continue
            current = lifecycle.fused_from_row(row)
            await cur.execute("SELECT * FROM incidents WHERE fused_id = %s", (current.id,))
            near = await _near(cur, await cur.fetchall(), group)
            composition = compose(current.members, group, near)
            reason = f"{candidate.kind} {candidate.source_key} gần đó"
            state = lifecycle.recomposed(current, composition, reason, now)
            if state is not None:
                await lifecycle.save(cur, state)
                changed.append(state)
    return changed


async def fuse(
    conn: AsyncConnection, candidate: Incident, rules: FusionRules, region: str
) -> list[FusedIncident]:
    """Fold one candidate's latest state into the incidents; the versions to publish (the
    incident it belongs to, and any it merged away), none when nothing changed."""
    group = rules.group_of(candidate.kind)
    async with conn.transaction(), conn.cursor(row_factory=dict_row) as cur:
        await cur.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (f"fusion:{region}",))
        await cur.execute("SELECT fused_id FROM incidents WHERE id = %s", (candidate.id,))
        own = await cur.fetchone()
        if own is None:  # its source stores it before publishing: this is a stray message
            raise LookupError(f"candidate {candidate.id} is not in the incidents table")
        fused_ids = await _matching_fused_ids(cur, candidate, group)
        if own["fused_id"]:
            fused_ids.add(own["fused_id"])
        await cur.execute(
            "SELECT * FROM fused_incidents WHERE id = ANY(%s) ORDER BY id FOR UPDATE",
            (sorted(fused_ids),),
        )
        existing = {row["id"]: lifecycle.fused_from_row(row) for row in await cur.fetchall()}
        await cur.execute(
            "SELECT * FROM incidents WHERE id = %s OR fused_id = ANY(%s)",
            (candidate.id, sorted(fused_ids)),
        )
        # The candidate as its message says (its row may already be further on: the source
        # stored later states, whose messages follow); the others as fusion last saw them.
        rows = [
            _as_row(candidate) | {"fused_id": row["fused_id"]} if row["id"] == candidate.id else row
            for row in await cur.fetchall()
        ]
        previous = {m.id: m for incident in existing.values() for m in incident.members}
        members = [
            previous[row["id"]]
            if row["id"] in previous and row["id"] != candidate.id
            else member_of(row, previous.get(row["id"]))
            for row in rows
        ]
        composition = compose(members, group, await _near(cur, rows, group))
        target_id = composition.head.id
        await cur.execute(
            "UPDATE incidents SET fused_id = %(target)s WHERE id = ANY(%(ids)s)"
            " AND fused_id IS DISTINCT FROM %(target)s",
            {"target": target_id, "ids": [m.id for m in members]},
        )
        hotline = [r["id"] for r in rows if r["source"] == IncidentSource.HOTLINE]
        tickets: dict[str, list[str]] = {}
        if hotline:
            await cur.execute(
                "SELECT incident_id, service_request_id FROM tickets WHERE incident_id = ANY(%s)"
                " ORDER BY requested_at, service_request_id",
                (hotline,),
            )
            for ticket in await cur.fetchall():
                tickets.setdefault(ticket["incident_id"], []).append(ticket["service_request_id"])

        changed: list[FusedIncident] = []
        now = utc_now()
        for absorbed_id in sorted(set(existing) - {target_id}):
            merged = lifecycle.merged(existing[absorbed_id], target_id, candidate, now)
            await lifecycle.save(cur, merged)
            changed.append(merged)
        state = lifecycle.folded(
            existing.get(target_id),
            candidate,
            composition,
            members,
            evidence_of(rows, tickets),
            previous,
            absorbed=[existing[i] for i in existing if i != target_id],
            now=now,
        )
        if state is not None:
            await lifecycle.save(cur, state)
            changed.append(state)
        if own["fused_id"] is None:  # its first time: the incidents it raises are recomposed
            changed += await _raised_nearby(cur, candidate, rules, now)
        return changed


async def unfused_candidates(conn: AsyncConnection, older_than: timedelta) -> list[Incident]:
    """Candidates stored before `older_than` that fusion never saw. Sources store a candidate,
    then publish it; a crash in between leaves it here, and publishing it again is harmless
    (fusion folds a candidate's latest state)."""
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(
            "SELECT * FROM incidents WHERE fused_id IS NULL AND updated_at < now() - %s"
            " ORDER BY updated_at LIMIT %s",
            (older_than, REPUBLISH_LIMIT),
        )
        return [incident_from_row(row, epoch_ms(row["updated_at"])) for row in await cur.fetchall()]


__all__ = ["fuse", "unfused_candidates"]
