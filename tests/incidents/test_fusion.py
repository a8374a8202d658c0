"""Fusion against the real database: candidates that match in kind, place and time are one
incident, whatever order they arrive in; the lifecycle records who changed what."""

from __future__ import annotations

import asyncio
import itertools
import random
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest
from psycopg.rows import dict_row

from ioc.config import Settings
from ioc.incidents import lifecycle
from ioc.incidents.composition import FusionGroup, FusionRules, compose
from ioc.incidents.fusion import fuse
from ioc.models import FusedIncident, Incident, IncidentKind, IncidentSource, Member, Severity
from ioc.models.base import deterministic_id
from ioc.models.incidents import FusedStatus, IncidentStatus
from ioc.store.writer import Store

RULES = FusionRules.load()
METRE = 1 / 111_320  # degrees of latitude


class Place:
    """A private corner of the map and of time, so tests never match each other's candidates."""

    def __init__(self) -> None:
        self.lat = random.uniform(10.0, 20.0)
        self.lon = random.uniform(100.0, 110.0)
        self.t0 = datetime(2020, 1, 1, tzinfo=UTC) + timedelta(days=random.randint(0, 2000))
        self.tag = f"{random.getrandbits(40):x}"

    def candidate(
        self,
        name: str,
        source: IncidentSource,
        kind: IncidentKind,
        *,
        north_m: float = 0.0,
        minutes: float = 0.0,
        severity: Severity = Severity.HIGH,
        status: IncidentStatus = IncidentStatus.OPEN,
        reports: int = 1,
    ) -> Incident:
        return Incident(
            id=deterministic_id("inc", self.tag, name),
            kind=kind,
            severity=severity,
            source=source,
            source_key=f"{name}-{self.tag}",
            title=f"{kind} {name}",
            status=status,
            event_time=self.t0 + timedelta(minutes=minutes),
            ingested_at_ms=1,
            district="Phường Thử Nghiệm",
            lat=self.lat + north_m * METRE,
            lon=self.lon,
            reports=reports,
            evidence={"value": 180.0, "unit": "µg/m³"} if source == IncidentSource.SENSOR else {},
        )


@pytest.fixture
def dsn(live_stack: Settings) -> str:
    return live_stack.database.dsn


async def _feed(dsn: str, candidates: list[Incident]) -> list[FusedIncident]:
    """Store each candidate as its source does, then fuse it; every published version."""
    store = Store(dsn, 2)
    published: list[FusedIncident] = []
    try:
        for candidate in candidates:
            await store.upsert_incident(candidate)
            async with store.connection() as conn:
                published += await fuse(conn, candidate, RULES, "test")
    finally:
        await store.close()
    return published


def feed(dsn: str, candidates: list[Incident]) -> list[FusedIncident]:
    return asyncio.run(_feed(dsn, candidates))


def fused_rows(dsn: str, candidates: list[Incident]) -> list[dict[str, Any]]:
    with psycopg.connect(dsn, row_factory=dict_row) as conn:
        return conn.execute(
            "SELECT f.* FROM fused_incidents f WHERE f.id IN"
            " (SELECT fused_id FROM incidents WHERE id = ANY(%s))"
            " AND f.status <> 'merged' ORDER BY f.id",
            ([c.id for c in candidates],),
        ).fetchall()


def test_bundled_rules_group_camera_ticket_and_smoke_sensor() -> None:
    fire = RULES.group_of(IncidentKind.FIRE)
    assert fire is not None and IncidentKind.AIR_QUALITY_POOR in fire.kinds
    assert RULES.group_of(IncidentKind.CROWDING) is None


def test_rules_reject_a_kind_in_two_groups_and_a_foreign_primary() -> None:
    group = {"kinds": ["fire"], "primary": "fire", "distance_m": 100, "window_minutes": 5}
    with pytest.raises(ValueError, match="in groups"):
        FusionRules.model_validate({"version": 1, "groups": {"a": group, "b": group}})
    with pytest.raises(ValueError, match="primary"):
        FusionGroup.model_validate(group | {"primary": "flood"})


def _member(source: IncidentSource, kind: IncidentKind, severity: Severity, minute: int) -> Member:
    return Member(
        id=f"m{minute}",
        source=source,
        source_key=f"k{minute}",
        kind=kind,
        severity=severity,
        status=IncidentStatus.OPEN,
        event_time=datetime(2026, 1, 1, 0, minute, tzinfo=UTC),
        title=f"{kind}",
        reports=2 if source == IncidentSource.HOTLINE else 1,
    )


def test_severity_rises_one_step_per_independent_source_type() -> None:
    group = RULES.group_of(IncidentKind.FIRE)
    smoke = _member(IncidentSource.SENSOR, IncidentKind.AIR_QUALITY_POOR, Severity.NORMAL, 1)
    camera = _member(IncidentSource.VISION, IncidentKind.FIRE, Severity.NORMAL, 2)
    camera_again = _member(IncidentSource.VISION, IncidentKind.FIRE, Severity.NORMAL, 3)
    ticket = _member(IncidentSource.HOTLINE, IncidentKind.FIRE, Severity.NORMAL, 4)

    alone = compose([smoke], group)
    assert (alone.severity, alone.sources, alone.kind) == (Severity.NORMAL, 1, "air_quality_poor")
    two_cameras = compose([camera, camera_again], group)  # one source type: no confirmation
    assert (two_cameras.severity, two_cameras.sources) == (Severity.NORMAL, 1)
    confirmed = compose([smoke, camera], group)
    assert (confirmed.severity, confirmed.sources) == (Severity.HIGH, 2)
    # The earliest candidate names it, but the fire gives it its kind and title.
    assert (confirmed.head.id, confirmed.kind, confirmed.title) == ("m1", "fire", "fire")
    everything = compose([ticket, smoke, camera], group)
    assert (everything.severity, everything.sources, everything.reports) == (Severity.URGENT, 3, 2)


def test_camera_three_citizens_and_a_smoke_sensor_are_one_incident(dsn: str) -> None:
    place = Place()
    camera = place.candidate("cam", IncidentSource.VISION, IncidentKind.FIRE, minutes=0)
    report = place.candidate(
        "1022", IncidentSource.HOTLINE, IncidentKind.FIRE, north_m=150, minutes=4, reports=3
    )
    smoke = place.candidate(
        "pm25", IncidentSource.SENSOR, IncidentKind.AIR_QUALITY_POOR, north_m=-300, minutes=9
    )
    far = place.candidate("far", IncidentSource.VISION, IncidentKind.FIRE, north_m=5000)
    later = place.candidate("later", IncidentSource.VISION, IncidentKind.FIRE, minutes=120)
    crowd = place.candidate("crowd", IncidentSource.VISION, IncidentKind.CROWDING, minutes=1)

    versions = feed(dsn, [camera, report, smoke, far, later, crowd])

    rows = fused_rows(dsn, [camera, report, smoke, far, later, crowd])
    assert len(rows) == 4  # the fire; a fire far away; a fire hours later; the crowd
    fire = next(row for row in rows if row["id"] == camera.id)
    assert (fire["kind"], fire["sources"], fire["reports"]) == ("fire", 3, 3)
    assert fire["severity"] == "urgent"  # high, confirmed by two more kinds of source
    assert sorted(m["id"] for m in fire["members"]) == sorted([camera.id, report.id, smoke.id])
    assert set(fire["evidence"]) == {"cameras", "tickets", "sensors"}
    assert fire["evidence"]["sensors"][0]["value"] == 180.0
    changes = [v.change for v in versions if v.id == camera.id]
    assert changes == ["opened", "joined", "joined"]
    assert fire["version"] == 3


def test_the_same_inputs_in_any_order_give_the_same_incidents(dsn: str) -> None:
    """A chain: `a` and `c` are too far apart, `b` lies between; `d` is a separate fire."""

    def scenario(place: Place) -> list[Incident]:
        return [
            place.candidate("a", IncidentSource.VISION, IncidentKind.FIRE, minutes=2),
            place.candidate("b", IncidentSource.HOTLINE, IncidentKind.FIRE, north_m=400),
            place.candidate(
                "c", IncidentSource.SENSOR, IncidentKind.AIR_QUALITY_POOR, north_m=800, minutes=5
            ),
            place.candidate("d", IncidentSource.VISION, IncidentKind.FIRE, north_m=3000),
        ]

    outcomes = set()
    for order in itertools.permutations(range(4)):
        place = Place()
        candidates = scenario(place)
        feed(dsn, [candidates[i] for i in order])
        rows = fused_rows(dsn, candidates)
        names = {c.id: c.source_key.split("-")[0] for c in candidates}
        outcomes.add(
            tuple(
                (
                    names[row["id"]],
                    tuple(sorted(names[m["id"]] for m in row["members"])),
                    row["severity"],
                    row["sources"],
                    row["kind"],
                    row["status"],
                )
                for row in sorted(rows, key=lambda r: names[r["id"]])
            )
        )
    assert outcomes == {
        (
            ("b", ("a", "b", "c"), "urgent", 3, "fire", "open"),  # b is the earliest
            ("d", ("d",), "high", 1, "fire", "open"),
        )
    }


def test_a_bridging_candidate_merges_two_incidents_into_the_earlier(dsn: str) -> None:
    place = Place()
    a = place.candidate("a", IncidentSource.VISION, IncidentKind.FIRE)
    c = place.candidate("c", IncidentSource.VISION, IncidentKind.FIRE, north_m=800, minutes=1)
    b = place.candidate("b", IncidentSource.HOTLINE, IncidentKind.FIRE, north_m=400, minutes=2)
    versions = feed(dsn, [a, c, b])
    merged = [v for v in versions if v.change == "merged" and v.id == c.id]
    assert merged and merged[-1].status == FusedStatus.MERGED and merged[-1].merged_into == a.id
    with psycopg.connect(dsn) as conn:
        status = conn.execute("SELECT status FROM fused_incidents WHERE id = %s", (c.id,))
        assert status.fetchone() == ("merged",)


def test_a_replayed_candidate_changes_nothing(dsn: str) -> None:
    place = Place()
    camera = place.candidate("cam", IncidentSource.VISION, IncidentKind.FIRE)
    assert [v.change for v in feed(dsn, [camera])] == ["opened"]
    assert feed(dsn, [camera]) == []


def test_a_camera_lost_near_a_fire_is_raised_a_step_whichever_came_first(dsn: str) -> None:
    """A camera 300 m from a burning market goes dark 5 minutes in: the outage is paged (normal
    to high), fire first or outage first. One 5 km away, and one 2 hours later, are not."""
    results = set()
    for outage_first in (False, True):
        place = Place()
        fire = place.candidate("fire", IncidentSource.VISION, IncidentKind.FIRE)
        dark, far, later = (
            place.candidate(
                name,
                IncidentSource.VISION,
                IncidentKind.CAMERA_OFFLINE,
                severity=Severity.NORMAL,
                **where,
            )
            for name, where in (
                ("dark", {"north_m": 300, "minutes": 5}),
                ("far", {"north_m": 5000, "minutes": 5}),
                ("later", {"north_m": -300, "minutes": 120}),
            )
        )
        order = [dark, far, later, fire] if outage_first else [fire, dark, far, later]
        versions = feed(dsn, order)
        rows = {row["id"]: row for row in fused_rows(dsn, order)}
        assert rows[fire.id]["severity"] == "high"  # the fire is not raised by the outage
        results.add(
            tuple((rows[c.id]["severity"], rows[c.id]["title"]) for c in (dark, far, later))
        )
        raised = [v for v in versions if v.id == dark.id and v.change == "severity"]
        assert len(raised) == int(outage_first)
        if outage_first:
            assert raised[0].reason is not None and "fire" in raised[0].reason
    assert len(results) == 1, results
    ((dark_severity, dark_title), far_one, later_one) = results.pop()
    assert dark_severity == "high" and dark_title.startswith("gần sự cố đang xảy ra · ")
    assert far_one[0] == later_one[0] == "normal"


def test_raise_near_may_not_name_the_groups_own_kinds() -> None:
    group = {
        "kinds": ["camera_offline"],
        "primary": "camera_offline",
        "distance_m": 100,
        "window_minutes": 5,
        "raise_near": ["camera_offline"],
    }
    with pytest.raises(ValueError, match="own kinds"):
        FusionGroup.model_validate(group)


def _act(dsn: str, incident_id: str, action: str, actor: str, reason: str | None = None):
    async def run() -> FusedIncident:
        async with await psycopg.AsyncConnection.connect(dsn) as conn:
            return await lifecycle.change_status(conn, incident_id, action, actor, reason)

    return asyncio.run(run())


def _timers(dsn: str, hold_s: float, limits: dict[str, float]) -> list[FusedIncident]:
    async def run() -> list[FusedIncident]:
        async with await psycopg.AsyncConnection.connect(dsn) as conn:
            resolved = await lifecycle.auto_resolve(conn, timedelta(seconds=hold_s))
            return resolved + await lifecycle.escalate(conn, limits)

    return asyncio.run(run())


def test_staff_acknowledge_and_resolve_and_every_change_is_recorded(dsn: str) -> None:
    place = Place()
    camera = place.candidate("cam", IncidentSource.VISION, IncidentKind.FIRE)
    feed(dsn, [camera])
    acked = _act(dsn, camera.id, "ack", "lan.nguyen", "xe cứu hỏa đang tới")
    assert (acked.status, acked.acknowledged_by, acked.version) == ("acknowledged", "lan.nguyen", 2)
    with pytest.raises(lifecycle.IncidentTransitionError, match="not open"):
        _act(dsn, camera.id, "ack", "minh.tran")
    resolved = _act(dsn, camera.id, "resolve", "lan.nguyen", "đã dập tắt")
    assert (resolved.status, resolved.resolved_by) == ("resolved", "lan.nguyen")
    with pytest.raises(lifecycle.UnknownIncident):
        _act(dsn, "inc-nope", "ack", "x")

    async def events() -> list[dict[str, Any]]:
        async with await psycopg.AsyncConnection.connect(dsn) as conn:
            return await lifecycle.history(conn, camera.id)

    recorded = [(e["change"], e["status"], e["actor"], e["reason"]) for e in asyncio.run(events())]
    assert recorded == [
        ("opened", "open", "ioc", None),
        ("acknowledged", "acknowledged", "lan.nguyen", "xe cứu hỏa đang tới"),
        ("resolved", "resolved", "lan.nguyen", "đã dập tắt"),
    ]


def test_new_evidence_reopens_a_resolved_incident(dsn: str) -> None:
    place = Place()
    camera = place.candidate("cam", IncidentSource.VISION, IncidentKind.FIRE)
    feed(dsn, [camera])
    _act(dsn, camera.id, "resolve", "lan.nguyen")
    report = place.candidate("1022", IncidentSource.HOTLINE, IncidentKind.FIRE, minutes=3)
    versions = feed(dsn, [report])
    assert [(v.change, v.status, v.episode) for v in versions] == [("reopened", "open", 2)]
    assert "hotline" in (versions[0].reason or "")


def test_auto_resolve_waits_for_every_source_to_clear(dsn: str) -> None:
    place = Place()
    camera = place.candidate("cam", IncidentSource.VISION, IncidentKind.FIRE)
    smoke = place.candidate("pm", IncidentSource.SENSOR, IncidentKind.AIR_QUALITY_POOR, minutes=1)
    feed(dsn, [camera, smoke])
    feed(dsn, [camera.model_copy(update={"status": IncidentStatus.RESOLVED})])
    assert camera.id not in {v.id for v in _timers(dsn, 0, {})}  # the sensor still sees smoke
    feed(dsn, [smoke.model_copy(update={"status": IncidentStatus.RESOLVED})])
    assert camera.id not in {v.id for v in _timers(dsn, 3600, {})}  # not cleared for an hour
    done = [v for v in _timers(dsn, 0, {}) if v.id == camera.id]
    assert done and (done[0].status, done[0].resolved_by) == ("resolved", "ioc")


def test_an_unacknowledged_urgent_incident_escalates_once(dsn: str) -> None:
    place = Place()
    urgent = place.candidate("cam", IncidentSource.VISION, IncidentKind.FIRE, severity="urgent")
    feed(dsn, [urgent])
    first = [v for v in _timers(dsn, 3600, {"urgent": 0}) if v.id == urgent.id]
    assert first and first[0].change == "escalated" and first[0].escalated_at is not None
    assert urgent.id not in {v.id for v in _timers(dsn, 3600, {"urgent": 0})}
