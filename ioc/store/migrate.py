"""Apply SQL migrations in order, then lay out storage for what the server can do.

With TimescaleDB: the time-series tables become hypertables, the wall views are continuous
aggregates refreshed by policy, and compression and retention policies follow `StorageSettings`.
Without it: the same tables, and the wall views as plain views with the same columns. Either way
one line (`MigrationReport.storage`, also logged) says which features are on and which are off.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import psycopg

from ioc.config import StorageSettings

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
log = logging.getLogger(__name__)

# (table, time column): the tables that grow with time and are read by time range.
HYPERTABLES = (
    ("sensor_readings", "observed_at"),
    ("sensor_windows", "window_start"),
    ("detections", "event_time"),
    ("camera_frames", "event_time"),
    ("incident_events", "at"),
)

# Raw tables that are compressed and dropped by age: (table, segment by, order by).
# incident_events is the audit trail: never compressed or dropped by policy.
RAW_TABLES = (
    ("sensor_readings", "sensor_id, property", "observed_at DESC"),
    ("sensor_windows", "sensor_id, property", "window_start DESC"),
    ("detections", "camera_id", "event_time DESC, seq, idx"),
    ("camera_frames", "camera_id", "event_time DESC, seq"),
)


@dataclass(frozen=True)
class WallView:
    """A view the walls read: a continuous aggregate with TimescaleDB, else a plain view with
    the same columns (`{bucket}` and `{last}` are filled in per mode)."""

    name: str
    width: str  # bucket width, a PostgreSQL interval
    query: str
    refresh_start: str  # continuous aggregate refresh window: [now - start, now - end]
    refresh_end: str
    refresh_every: str


SENSOR_QUERY = (
    "SELECT {bucket} AS bucket, sensor_id, property, count(*) AS readings,"
    " min(value) AS min, max(value) AS max, avg(value) AS avg, {last} AS last"
    " FROM sensor_readings GROUP BY 1, 2, 3"
)
WALL_VIEWS = (
    WallView("sensor_readings_1m", "1 minute", SENSOR_QUERY, "2 days", "1 minute", "1 minute"),
    WallView("sensor_readings_1h", "1 hour", SENSOR_QUERY, "7 days", "1 hour", "30 minutes"),
    WallView(
        "incidents_1h",
        "1 hour",
        "SELECT {bucket} AS bucket, source, kind, severity, district, count(*) AS incidents"
        " FROM incident_events WHERE change = 'opened' GROUP BY 1, 2, 3, 4, 5",
        "7 days",
        "1 hour",
        "30 minutes",
    ),
)
MINUTE_VIEW = "sensor_readings_1m"


@dataclass(frozen=True)
class MigrationReport:
    applied: list[str]
    timescaledb: bool
    timescaledb_problem: str | None = None  # installed but unusable (e.g. not preloaded)
    on: tuple[str, ...] = field(default=())  # storage features in place
    off: tuple[str, ...] = field(default=())  # storage features not in place, and why not

    @property
    def storage(self) -> str:
        views = ", ".join(view.name for view in WALL_VIEWS)
        if self.timescaledb:
            line = f"TimescaleDB: {'; '.join(self.on)}"
            return f"{line}; off: {', '.join(self.off)}" if self.off else line
        why = self.timescaledb_problem or "no timescaledb extension"
        return (
            f"plain PostgreSQL ({why}): tables and plain views {views};"
            " off: hypertables, continuous aggregates, compression, retention"
        )


def migrate(dsn: str, storage: StorageSettings | None = None) -> MigrationReport:
    """Apply what is new (under an advisory lock: concurrent starters wait, then see it done),
    then (idempotently) the storage layout for this server and `storage` settings."""
    storage = storage or StorageSettings()
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("SELECT pg_advisory_lock(4242)")
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
            if problem is None:
                on, off = _timescale_layout(conn, storage)
                report = MigrationReport(applied, True, None, on, off)
            else:
                _plain_views(conn)
                report = MigrationReport(applied, False, None if problem == ABSENT else problem)
        finally:
            conn.execute("SELECT pg_advisory_unlock(4242)")
    log.info("storage: %s", report.storage)
    return report


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


def _plain_views(conn: psycopg.Connection) -> None:
    for view in WALL_VIEWS:
        bucket = f"date_bin('{view.width}', {_time_column(view)}, '2000-01-01 00:00:00+00')"
        query = view.query.format(
            bucket=bucket, last="(array_agg(value ORDER BY observed_at DESC))[1]"
        )
        conn.execute(f"CREATE OR REPLACE VIEW {view.name} AS {query}")


def _time_column(view: WallView) -> str:
    return "at" if "incident_events" in view.query else "observed_at"


def _timescale_layout(
    conn: psycopg.Connection, storage: StorageSettings
) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """Continuous aggregates with refresh policies, then compression and retention per
    `storage`; returns the features on and off, for the report."""
    for view in WALL_VIEWS:
        _continuous_aggregate(conn, view)
    on = [
        "hypertables " + ", ".join(table for table, _ in HYPERTABLES),
        "continuous aggregates " + ", ".join(view.name for view in WALL_VIEWS),
    ]
    off = []
    raw = [table for table, *_ in RAW_TABLES]
    days = storage.compress_after_days
    for table, segment_by, order_by in RAW_TABLES:
        if days is not None:
            _enable_compression(conn, table, segment_by, order_by)
        _policy(conn, "compression", table, "compress_after", days)
    if days is None:
        off.append("compression")
    else:
        on.append(f"compression after {days} d ({', '.join(raw)})")
    days = storage.raw_retention_days
    for table in raw:
        _policy(conn, "retention", table, "drop_after", days)
    if days is None:
        off.append("raw retention")
    else:
        on.append(f"retention {days} d ({', '.join(raw)})")
    days = storage.minute_retention_days
    _policy(conn, "retention", MINUTE_VIEW, "drop_after", days)
    if days is None:
        off.append(f"{MINUTE_VIEW} retention")
    else:
        on.append(f"retention {days} d ({MINUTE_VIEW})")
    return tuple(on), tuple(off)


def _continuous_aggregate(conn: psycopg.Connection, view: WallView) -> None:
    exists = conn.execute(
        "SELECT 1 FROM timescaledb_information.continuous_aggregates"
        " WHERE view_schema = current_schema() AND view_name = %s",
        (view.name,),
    ).fetchone()
    if not exists:
        # A plain view of that name is left from a time without the extension: replace it.
        # WITH DATA (the default) materialises what is already there, so history older than
        # the refresh window is in the aggregate too.
        conn.execute(f"DROP VIEW IF EXISTS {view.name}")
        query = view.query.format(
            bucket=f"time_bucket('{view.width}', {_time_column(view)})",
            last="last(value, observed_at)",
        )
        conn.execute(
            f"CREATE MATERIALIZED VIEW {view.name} WITH (timescaledb.continuous,"
            f" timescaledb.materialized_only = false) AS {query}"
        )
    conn.execute(
        "SELECT add_continuous_aggregate_policy(%s::regclass, start_offset => %s::interval,"
        " end_offset => %s::interval, schedule_interval => %s::interval, if_not_exists => TRUE)",
        (view.name, view.refresh_start, view.refresh_end, view.refresh_every),
    )


def _enable_compression(
    conn: psycopg.Connection, table: str, segment_by: str, order_by: str
) -> None:
    enabled = conn.execute(
        "SELECT compression_enabled FROM timescaledb_information.hypertables"
        " WHERE hypertable_schema = current_schema() AND hypertable_name = %s",
        (table,),
    ).fetchone()
    if enabled and enabled[0]:
        return  # once chunks are compressed, the settings cannot change
    conn.execute(
        f"ALTER TABLE {table} SET (timescaledb.compress,"
        f" timescaledb.compress_segmentby = '{segment_by}',"
        f" timescaledb.compress_orderby = '{order_by}')"
    )


def _policy(
    conn: psycopg.Connection, kind: str, relation: str, argument: str, days: int | None
) -> None:
    """The `kind` (compression | retention) policy on `relation` set to `days`, or removed
    when None; left alone when it already says that (so migrating again changes nothing)."""
    current = conn.execute(
        f"SELECT (config->>'{argument}')::interval = make_interval(days => %s)"
        " FROM timescaledb_information.jobs"
        " WHERE proc_name = %s AND hypertable_schema = current_schema()"
        " AND hypertable_name = %s",
        (days or 0, f"policy_{kind}", relation),
    ).fetchone()
    if current is not None and days is not None and current[0]:
        return
    if current is not None:
        conn.execute(f"SELECT remove_{kind}_policy(%s::regclass, if_exists => TRUE)", (relation,))
    if days is not None:
        conn.execute(
            f"SELECT add_{kind}_policy(%s::regclass, {argument} => make_interval(days => %s))",
            (relation, days),
        )
