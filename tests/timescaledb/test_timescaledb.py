"""`ioc.store.migrate` and `ioc.store.writer.Store` against a real TimescaleDB.

The database is PGlite (PostgreSQL 17 compiled to WASM) with TimescaleDB 2.23, served over the
PostgreSQL wire protocol by `server.mjs` beside this file. Its npm packages are pinned by the
`package-lock.json` here and installed outside the repository, in a cache folder
(`$IOC_PGLITE_CACHE`, default `~/.cache/ioc/pglite-timescaledb`), once per lock.

PGlite serves one session at a time (the socket server queues the others) and its socket server
dies on COPY FROM STDIN, so every test closes its connections and writes with INSERT only.
"""

from __future__ import annotations

import asyncio
import fcntl
import hashlib
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pytest

from ioc.config import StorageSettings
from ioc.devtools.stack.process import free_port
from ioc.grafana.macros import expand
from ioc.grafana.walls import walls
from ioc.rules.sensor.engine import WindowAggregate
from ioc.store.migrate import HYPERTABLES, MIGRATIONS_DIR, RAW_TABLES, WALL_VIEWS, migrate
from ioc.store.sink import CopySink
from ioc.store.writer import READING_COLUMNS, READING_KEY, ReadingRow, Store
from tests.store.walls import WALL_COLUMNS, audit_trail, incident, view_columns

pytestmark = [pytest.mark.integration, pytest.mark.slow]

HERE = Path(__file__).resolve().parent
PINNED = ("package.json", "package-lock.json")
SERVER = "server.mjs"
START_TIMEOUT = 60.0


def _cache_dir() -> Path:
    if configured := os.environ.get("IOC_PGLITE_CACHE"):
        return Path(configured).expanduser()
    cache_home = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return cache_home / "ioc" / "pglite-timescaledb"


def _lock_hash() -> str:
    digest = hashlib.sha256()
    for name in PINNED:
        digest.update((HERE / name).read_bytes())
    return digest.hexdigest()


def _install(npm: str, cache: Path) -> None:
    """`npm ci` the pinned packages into `cache`, unless that exact lock is already installed."""
    cache.mkdir(parents=True, exist_ok=True)
    marker = cache / ".lock-hash"
    wanted = _lock_hash()
    with (cache / ".install.lock").open("w") as guard:
        fcntl.flock(guard, fcntl.LOCK_EX)  # parallel sessions: one installs, the others wait
        if (
            marker.exists()
            and marker.read_text().strip() == wanted
            and (cache / "node_modules").is_dir()
        ):
            return
        marker.unlink(missing_ok=True)
        for name in PINNED:
            shutil.copyfile(HERE / name, cache / name)
        done = subprocess.run(
            [npm, "ci", "--prefix", str(cache), "--no-audit", "--no-fund", "--ignore-scripts"],
            cwd=cache,
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
        if done.returncode != 0:
            output = (done.stdout + done.stderr)[-4000:]
            pytest.fail(f"npm ci into {cache} failed ({done.returncode}):\n{output}")
        marker.write_text(wanted + "\n")


def _tail(path: Path, limit: int = 4000) -> str:
    return path.read_text(errors="replace")[-limit:] if path.exists() else ""


@pytest.fixture(scope="module")
def timescale_dsn(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        pytest.skip("node and npm are needed to run PGlite with TimescaleDB (not on PATH)")
    cache = _cache_dir()
    _install(npm, cache)
    # Node resolves an ES module's imports from the module's own folder (NODE_PATH is ignored),
    # so the server script runs from the cache folder, beside its node_modules.
    shutil.copyfile(HERE / SERVER, cache / SERVER)

    port = free_port()
    dsn = f"postgresql://postgres:postgres@127.0.0.1:{port}/postgres?sslmode=disable"
    logs = tmp_path_factory.mktemp("pglite")
    stdout, stderr = logs / "stdout.log", logs / "stderr.log"
    with stdout.open("wb") as out, stderr.open("wb") as err:
        server = subprocess.Popen(
            [node, str(cache / SERVER), str(port)], cwd=cache, stdout=out, stderr=err
        )
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            if server.poll() is not None:
                pytest.fail(
                    f"PGlite server exited with {server.returncode} before accepting connections:"
                    f"\n{_tail(stderr)}\n{_tail(stdout)}"
                )
            try:
                with psycopg.connect(dsn, connect_timeout=5) as conn:
                    conn.execute("SELECT 1")
                break
            except psycopg.OperationalError as error:
                if time.monotonic() > deadline:
                    pytest.fail(
                        f"PGlite server not ready on port {port} after {START_TIMEOUT:.0f}s:"
                        f" {error}\n{_tail(stderr)}\n{_tail(stdout)}"
                    )
                time.sleep(0.2)
        yield dsn
        if server.poll() is not None:
            pytest.fail(f"PGlite server died during the tests:\n{_tail(stderr)}\n{_tail(stdout)}")
    finally:
        if server.poll() is None:
            server.terminate()
            try:
                server.wait(timeout=10)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait()


ALL_MIGRATIONS = sorted(path.stem for path in MIGRATIONS_DIR.glob("*.sql"))


@pytest.fixture(scope="module")
def migrated(timescale_dsn: str) -> str:
    report = migrate(timescale_dsn)
    assert report.applied == ALL_MIGRATIONS
    assert report.timescaledb is True
    assert "TimescaleDB" in report.storage
    return timescale_dsn


def test_migrate_makes_hypertables(migrated: str) -> None:
    with psycopg.connect(migrated) as conn:
        extension = conn.execute(
            "SELECT extversion FROM pg_extension WHERE extname = 'timescaledb'"
        ).fetchone()
        dimensions = conn.execute(
            "SELECT hypertable_name, column_name FROM timescaledb_information.dimensions"
            " WHERE hypertable_schema = 'public' ORDER BY hypertable_name"
        ).fetchall()
        hypertables = {
            row[0]
            for row in conn.execute(
                "SELECT hypertable_name FROM timescaledb_information.hypertables"
            )
        }
    assert extension is not None
    assert hypertables == {
        "sensor_readings",
        "sensor_windows",
        "detections",
        "camera_frames",
        "incident_events",
    }
    assert sorted(dimensions) == sorted(HYPERTABLES)


def test_migrate_again_applies_nothing(migrated: str) -> None:
    report = migrate(migrated)
    assert report.applied == []
    assert report.timescaledb is True
    assert "TimescaleDB" in report.storage
    with psycopg.connect(migrated) as conn:
        versions = [row[0] for row in conn.execute("SELECT version FROM schema_migrations")]
        count = conn.execute("SELECT count(*) FROM timescaledb_information.hypertables").fetchone()
    assert versions == ALL_MIGRATIONS
    assert count == (len(HYPERTABLES),)


def test_hypertable_keeps_primary_key(migrated: str) -> None:
    observed = datetime(2024, 5, 1, 8, 0, tzinfo=UTC)
    insert = (
        "INSERT INTO sensor_readings (sensor_id, observed_at, property, value, sensor_type,"
        " ingested_at) VALUES (%s, %s, %s, %s, %s, now()) ON CONFLICT DO NOTHING"
    )
    with psycopg.connect(migrated, autocommit=True) as conn:
        first = conn.execute(insert, ("pk-test", observed, "pm25", 41.0, "AirQualityObserved"))
        assert first.rowcount == 1
        second = conn.execute(insert, ("pk-test", observed, "pm25", 99.0, "AirQualityObserved"))
        assert second.rowcount == 0
        rows = conn.execute(
            "SELECT value FROM sensor_readings WHERE sensor_id = 'pk-test'"
        ).fetchall()
        chunks = conn.execute(
            "SELECT count(*) FROM timescaledb_information.chunks"
            " WHERE hypertable_name = 'sensor_readings'"
        ).fetchone()
        with pytest.raises(psycopg.errors.UniqueViolation):
            conn.execute(
                insert.removesuffix(" ON CONFLICT DO NOTHING"),
                ("pk-test", observed, "pm25", 1.0, "x"),
            )
    assert rows == [(41.0,)]
    assert chunks is not None and chunks[0] >= 1  # the row went into a chunk


def test_store_writes_a_sensor_batch_idempotently(migrated: str) -> None:
    observed = datetime(2024, 5, 2, 2, 30, tzinfo=UTC)
    ingested_at = datetime.now(UTC)
    readings = [
        ReadingRow("store-test", observed, name, value, "AirQualityObserved", ingested_at, False)
        for name, value in (("pm10", 80.0), ("pm25", 55.5))
    ]
    closed = WindowAggregate(
        sensor_id="store-test",
        property="pm25",
        start=observed.replace(second=0),
        end=observed.replace(second=0) + timedelta(minutes=1),
        count=1,
        min=55.5,
        max=55.5,
        mean=55.5,
        last=55.5,
        status="closed",
    )

    async def write_twice() -> None:
        # As the sensors agent writes a batch, without COPY (PGlite's server dies on COPY FROM
        # STDIN) and one connection at a time (PGlite is one backend); the second time is a
        # redelivery.
        async with CopySink(
            migrated, "sensor_readings", READING_COLUMNS, READING_KEY, copy=False, writers=1
        ) as sink:
            for _ in range(2):
                await sink.put_many(row.values() for row in readings)
                await sink.flush()
        # PGlite is one backend under every connection: the next connection's prepared
        # statements would clash with the sink's names.
        async with await psycopg.AsyncConnection.connect(migrated, autocommit=True) as conn:
            await conn.execute("DEALLOCATE ALL")
        store = Store(migrated, max_size=1)
        try:
            for _ in range(2):
                await store.upsert_windows([closed])
        finally:
            await store.close()

    asyncio.run(write_twice())
    with psycopg.connect(migrated) as conn:
        rows = conn.execute(
            "SELECT property, value, observed_at FROM sensor_readings WHERE sensor_id = %s"
            " ORDER BY property",
            ("store-test",),
        ).fetchall()
        windows = conn.execute(
            "SELECT count, mean FROM sensor_windows WHERE sensor_id = 'store-test'"
        ).fetchall()
    assert [(name, value) for name, value, _ in rows] == [("pm10", 80.0), ("pm25", 55.5)]
    assert {at for _, _, at in rows} == {observed}
    assert windows == [(1, 55.5)]


def policies(conn: psycopg.Connection) -> dict[tuple[str, str], dict]:
    """(policy, relation) -> config of each storage job."""
    return {
        (proc.removeprefix("policy_"), relation): config
        for proc, relation, config in conn.execute(
            "SELECT proc_name, hypertable_name, config FROM timescaledb_information.jobs"
            " WHERE hypertable_name IS NOT NULL"
        )
    }


RAW = [table for table, *_ in RAW_TABLES]
DEFAULT_POLICIES = (
    {("compression", table): "7 days" for table in RAW}
    | {("retention", table): "90 days" for table in RAW}
    | {("retention", "sensor_readings_1m"): "30 days"}
)


def storage_policies(conn: psycopg.Connection) -> dict[tuple[str, str], str]:
    return {
        key: config.get("compress_after") or config.get("drop_after")
        for key, config in policies(conn).items()
        if key[0] in {"compression", "retention"}
    }


def test_wall_views_are_continuous_aggregates_with_refresh_policies(migrated: str) -> None:
    with psycopg.connect(migrated) as conn:
        aggregates = dict(
            conn.execute(
                "SELECT view_name, materialized_only"
                " FROM timescaledb_information.continuous_aggregates"
            ).fetchall()
        )
        columns = {view: view_columns(conn, view) for view in WALL_COLUMNS}
        refresh = {
            relation: (config["start_offset"], config["end_offset"])
            for (kind, relation), config in policies(conn).items()
            if kind == "refresh_continuous_aggregate"
        }
    assert aggregates == dict.fromkeys(WALL_COLUMNS, False)  # real-time: recent rows show
    assert columns == WALL_COLUMNS  # the same as the plain views
    assert set(refresh) == {view.name for view in WALL_VIEWS}
    assert refresh["sensor_readings_1m"] == ("2 days", "00:01:00")


def test_compression_and_retention_follow_the_settings(migrated: str) -> None:
    with psycopg.connect(migrated) as conn:
        assert storage_policies(conn) == DEFAULT_POLICIES
        compressed = dict(
            conn.execute(
                "SELECT hypertable_name, compression_enabled"
                " FROM timescaledb_information.hypertables"
            ).fetchall()
        )
        jobs = sorted(r[0] for r in conn.execute("SELECT job_id FROM timescaledb_information.jobs"))
    assert compressed == dict.fromkeys(RAW, True) | {"incident_events": False}
    try:
        changed = migrate(
            migrated,
            StorageSettings(
                compress_after_days=None, raw_retention_days=30, minute_retention_days=None
            ),
        )
        assert changed.off == ("compression", "sensor_readings_1m retention")
        assert "off: compression, sensor_readings_1m retention" in changed.storage
        assert (
            "retention 30 d (sensor_readings, sensor_windows, detections, camera_frames)"
            in changed.storage
        )
        with psycopg.connect(migrated) as conn:
            assert storage_policies(conn) == {("retention", table): "30 days" for table in RAW}
    finally:
        restored = migrate(migrated)
    assert restored.off == ()
    assert "compression after 7 d" in restored.storage
    with psycopg.connect(migrated) as conn:
        assert storage_policies(conn) == DEFAULT_POLICIES
    again = migrate(migrated)
    with psycopg.connect(migrated) as conn:  # unchanged settings leave the jobs alone
        after = sorted(
            r[0] for r in conn.execute("SELECT job_id FROM timescaledb_information.jobs")
        )
        assert storage_policies(conn) == DEFAULT_POLICIES
    assert again.storage == restored.storage
    assert len(after) == len(jobs)


def test_aggregates_and_audit_trail_on_timescaledb(migrated: str) -> None:
    at = datetime(2024, 6, 3, 9, 0, tzinfo=UTC)
    values = [
        (at.replace(second=10), 2.0),
        (at.replace(second=50), 4.0),
        (at.replace(minute=1), 9.0),
    ]
    with psycopg.connect(migrated, autocommit=True) as conn:
        for observed, value in values:  # no executemany: PGlite's one backend keeps the
            conn.execute(  # prepared statements of earlier connections, names clash
                "INSERT INTO sensor_readings (sensor_id, observed_at, property, value,"
                " sensor_type, ingested_at)"
                " VALUES ('agg-test', %s, 'currentLevel', %s, 'FloodMonitoring', now())",
                (observed, value),
            )
        query = (
            "SELECT bucket, readings, min, max, avg, last FROM sensor_readings_1m"
            " WHERE sensor_id = 'agg-test' ORDER BY bucket"
        )
        live = conn.execute(query).fetchall()  # real-time aggregation over the raw rows
        conn.execute("CALL refresh_continuous_aggregate('sensor_readings_1m', NULL, NULL)")
        materialised = conn.execute(query).fetchall()
        hourly = conn.execute(
            "SELECT readings, max, last FROM sensor_readings_1h WHERE sensor_id = 'agg-test'"
        ).fetchall()
    expected = [(at, 2, 2.0, 4.0, 3.0, 4.0), (at.replace(minute=1), 1, 9.0, 9.0, 9.0, 9.0)]
    assert live == materialised == expected
    assert hourly == [(3, 9.0, 9.0)]

    raised = incident("tsdb-audit", at)

    async def writes() -> None:
        store = Store(migrated, max_size=1)
        try:
            await store.upsert_incident(raised)
            await store.upsert_incident(raised)  # a replay
            await store.upsert_incident(raised.model_copy(update={"status": "resolved"}))
        finally:
            await store.close()

    asyncio.run(writes())
    with psycopg.connect(migrated, autocommit=True) as conn:
        trail = audit_trail(conn, "tsdb-audit")
        per_hour = conn.execute(
            "SELECT sum(incidents) FROM incidents_1h WHERE district = 'Storage Test'"
        ).fetchone()
    assert trail == [
        ("opened", "open", "high", None, None),
        ("status", "resolved", "high", "open", "high"),
    ]
    assert per_hour == (1,)


def test_a_compressed_chunk_still_skips_replayed_rows(migrated: str) -> None:
    old = datetime(2023, 1, 10, 6, 0, tzinfo=UTC)
    insert = (
        "INSERT INTO sensor_readings (sensor_id, observed_at, property, value, sensor_type,"
        " ingested_at) VALUES ('old-test', %s, 'pm25', %s, 'AirQualityObserved', now())"
        " ON CONFLICT DO NOTHING"
    )
    with psycopg.connect(migrated, autocommit=True) as conn:
        assert conn.execute(insert, (old, 12.0)).rowcount == 1
        chunks = conn.execute(
            "SELECT compress_chunk(c, if_not_compressed => TRUE)"
            " FROM show_chunks('sensor_readings', older_than => '2023-06-01'::timestamptz) c"
        ).fetchall()
        compressed = conn.execute(
            "SELECT count(*) FROM timescaledb_information.chunks"
            " WHERE hypertable_name = 'sensor_readings' AND is_compressed"
        ).fetchone()
        replay = conn.execute(insert, (old, 99.0)).rowcount
        later = conn.execute(insert, (old + timedelta(minutes=1), 13.0)).rowcount
        rows = conn.execute(
            "SELECT value FROM sensor_readings WHERE sensor_id = 'old-test' ORDER BY observed_at"
        ).fetchall()
    assert chunks and compressed is not None and compressed[0] >= 1
    assert (replay, later) == (0, 1)
    assert rows == [(12.0,), (13.0,)]


def test_every_wall_panel_runs_on_timescaledb_with_time_bucket(migrated: str) -> None:
    """With the datasource's TimescaleDB toggle on, Grafana groups time with `time_bucket`: every
    panel's SQL, expanded that way, must run on TimescaleDB itself (and name its columns)."""
    now = datetime.now(UTC)
    panels = [(wall.uid, panel) for wall in walls() for panel in wall.panels]
    with psycopg.connect(migrated, autocommit=True) as conn:
        for uid, panel in panels:
            sql = expand(
                panel.sql, time_from=now - timedelta(hours=6), time_to=now, timescaledb=True
            )
            assert "time_bucket" in sql or "$__timeGroup" not in panel.sql
            try:
                cursor = conn.execute(sql)
            except psycopg.Error as error:
                raise AssertionError(f"{uid}: {panel.title}: {error}") from None
            assert cursor.description, f"{uid}: {panel.title} returns no columns"
    assert len(panels) > 30


def test_grafana_role_reads_every_panel_but_no_personal_data(migrated: str) -> None:
    """The continuous aggregates, created after migration 0008, are readable by ioc_grafana
    (default privileges); every panel runs as that role; the reporter's address is not."""
    now = datetime.now(UTC)
    panels = [(wall.uid, panel) for wall in walls() for panel in wall.panels]
    with psycopg.connect(migrated, autocommit=True) as conn:
        conn.execute("SET ROLE ioc_grafana")
        for uid, panel in panels:
            sql = expand(
                panel.sql, time_from=now - timedelta(hours=6), time_to=now, timescaledb=True
            )
            try:
                conn.execute(sql)
            except psycopg.Error as error:
                raise AssertionError(f"{uid}: {panel.title}: {error}") from None
        for view in WALL_VIEWS:
            conn.execute(f"SELECT * FROM {view.name} LIMIT 1")
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("SELECT address FROM tickets")
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("DELETE FROM sensor_readings")
        conn.execute("RESET ROLE")
