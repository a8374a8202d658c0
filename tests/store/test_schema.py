"""The storage schema on plain PostgreSQL (the embedded server has no TimescaleDB): the incident
audit trail, the wall views and the one line that says which features are off."""

from __future__ import annotations

import asyncio
import logging
import uuid
from datetime import UTC, datetime

import psycopg
import pytest

from ioc.config import Settings
from ioc.store.migrate import MIGRATIONS_DIR, migrate
from ioc.store.writer import Store
from tests.store.walls import WALL_COLUMNS, audit_trail, incident, view_columns

pytestmark = pytest.mark.integration

T0 = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)


def test_migrate_again_changes_nothing_and_logs_what_is_off(
    pg_dsn: str, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="ioc.store.migrate"):
        report = migrate(pg_dsn)
    assert report.applied == []
    assert report.timescaledb is False
    assert report.storage.startswith("plain PostgreSQL (no timescaledb extension)")
    assert "off: hypertables, continuous aggregates, compression, retention" in report.storage
    lines = [r.getMessage() for r in caplog.records if r.name == "ioc.store.migrate"]
    assert lines == [f"storage: {report.storage}"]
    with psycopg.connect(pg_dsn) as conn:
        versions = [r[0] for r in conn.execute("SELECT version FROM schema_migrations")]
    assert sorted(versions) == sorted(p.stem for p in MIGRATIONS_DIR.glob("*.sql"))


def test_wall_views_exist_with_their_columns(pg_dsn: str) -> None:
    with psycopg.connect(pg_dsn) as conn:
        kinds = dict(
            conn.execute(
                "SELECT relname, relkind FROM pg_class WHERE relname = ANY(%s)",
                (list(WALL_COLUMNS),),
            ).fetchall()
        )
        columns = {view: view_columns(conn, view) for view in WALL_COLUMNS}
    assert kinds == dict.fromkeys(WALL_COLUMNS, "v")
    assert columns == WALL_COLUMNS


def test_sensor_views_aggregate_per_minute_and_hour(pg_dsn: str) -> None:
    sensor = f"views-{uuid.uuid4().hex[:8]}"
    rows = [(T0.replace(second=10), 2.0), (T0.replace(second=50), 4.0), (T0.replace(minute=1), 9.0)]
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.cursor().executemany(
            "INSERT INTO sensor_readings (sensor_id, observed_at, property, value, sensor_type,"
            " ingested_at) VALUES (%s, %s, 'currentLevel', %s, 'FloodMonitoring', now())",
            [(sensor, at, value) for at, value in rows],
        )
        minutes = conn.execute(
            "SELECT bucket, readings, min, max, avg, last FROM sensor_readings_1m"
            " WHERE sensor_id = %s ORDER BY bucket",
            (sensor,),
        ).fetchall()
        hours = conn.execute(
            "SELECT bucket, readings, min, max, last FROM sensor_readings_1h WHERE sensor_id = %s",
            (sensor,),
        ).fetchall()
    assert minutes == [(T0, 2, 2.0, 4.0, 3.0, 4.0), (T0.replace(minute=1), 1, 9.0, 9.0, 9.0, 9.0)]
    assert hours == [(T0, 3, 2.0, 9.0, 9.0)]


def test_incident_changes_are_audited_once(pg_dsn: str) -> None:
    incident_id = f"audit-{uuid.uuid4().hex[:8]}"
    raised = incident(incident_id, T0)

    async def writes() -> None:
        store = Store(pg_dsn, max_size=1)
        try:
            await store.upsert_incident(raised)
            await store.upsert_incident(raised)  # a replay: no change, no event
            await store.upsert_incident(raised.model_copy(update={"title": "refreshed"}))
            await store.upsert_incident(raised.model_copy(update={"status": "resolved"}))
        finally:
            await store.close()

    asyncio.run(writes())
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        # the hotline updates incidents directly: the trigger sees those too
        conn.execute("UPDATE incidents SET severity = 'urgent' WHERE id = %s", (incident_id,))
        conn.execute("UPDATE incidents SET reports = reports + 1 WHERE id = %s", (incident_id,))
        trail = audit_trail(conn, incident_id)
        per_hour = conn.execute(
            "SELECT incidents FROM incidents_1h WHERE district = 'Storage Test'"
            " AND bucket = date_trunc('hour', now()) AND kind = 'flood'"
        ).fetchone()
    assert trail == [
        ("opened", "open", "high", None, None),
        ("status", "resolved", "high", "open", "high"),
        ("severity", "resolved", "urgent", "resolved", "high"),
    ]
    assert per_hour is not None and per_hour[0] >= 1


@pytest.mark.usefixtures("live_stack")
def test_the_stack_database_has_the_storage_schema(db: psycopg.Connection) -> None:
    for view, columns in WALL_COLUMNS.items():
        assert view_columns(db, view) == columns
    assert db.execute("SELECT to_regclass('incident_events')").fetchone() == ("incident_events",)


def test_policy_settings_accept_off() -> None:
    settings = Settings(storage={"compress_after_days": "off", "raw_retention_days": 0})
    assert settings.storage.compress_after_days is None
    assert settings.storage.raw_retention_days is None
    assert settings.storage.minute_retention_days == 30
