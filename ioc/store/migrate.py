"""Apply SQL migrations in order; make time-series tables hypertables when TimescaleDB exists."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import psycopg

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"

# (table, time column): the tables that grow with time and are read by time range.
HYPERTABLES = (
    ("sensor_readings", "observed_at"),
    ("sensor_windows", "window_start"),
    ("detections", "event_time"),
)


@dataclass(frozen=True)
class MigrationReport:
    applied: list[str]
    timescaledb: bool
    timescaledb_problem: str | None = None  # installed but unusable (e.g. not preloaded)

    @property
    def storage(self) -> str:
        tables = ", ".join(table for table, _ in HYPERTABLES)
        if self.timescaledb:
            return f"TimescaleDB: hypertables {tables}"
        why = self.timescaledb_problem or "no timescaledb extension"
        return f"plain PostgreSQL tables ({why}): {tables}"


def migrate(dsn: str) -> MigrationReport:
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("SELECT pg_advisory_lock(4242)")  # concurrent starters wait, then see it done
        try:
            conn.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations "
                "(version text PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())"
            )
            done = {row[0] for row in conn.execute("SELECT version FROM schema_migrations")}
            applied = []
            for path in sorted(MIGRATIONS_DIR.glob("*.sql")):
                if path.stem in done:
                    continue
                with conn.transaction():
                    conn.execute(path.read_text())
                    conn.execute(
                        "INSERT INTO schema_migrations (version) VALUES (%s)", (path.stem,)
                    )
                applied.append(path.stem)
            problem = _enable_timescaledb(conn)
            return MigrationReport(applied, problem is None, None if problem == ABSENT else problem)
        finally:
            conn.execute("SELECT pg_advisory_unlock(4242)")


ABSENT = "absent"


def _enable_timescaledb(conn: psycopg.Connection) -> str | None:
    """None when the hypertables are in place; else why not (`ABSENT` when not installed)."""
    available = conn.execute(
        "SELECT 1 FROM pg_available_extensions WHERE name = 'timescaledb'"
    ).fetchone()
    if not available:
        return ABSENT
    try:
        with conn.transaction():
            conn.execute("CREATE EXTENSION IF NOT EXISTS timescaledb")
    except psycopg.Error as error:  # e.g. installed but missing from shared_preload_libraries
        return f"timescaledb installed but not usable: {str(error).strip().splitlines()[0]}"
    for table, column in HYPERTABLES:
        conn.execute(
            "SELECT create_hypertable(%s, by_range(%s),"
            " if_not_exists => TRUE, migrate_data => TRUE)",
            (table, column),
        )
    return None
