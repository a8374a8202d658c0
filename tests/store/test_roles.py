"""The least-privilege roles of migration 0008, as real login users on the embedded PostgreSQL:
ioc_grafana reads the walls' data but no personal data and writes nothing; ioc_writer writes rows
but runs no DDL."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import psycopg
import pytest

from ioc.devtools.replay.sandbox import MARKER, with_search_path
from ioc.store.migrate import MIGRATIONS_DIR, migrate
from tests.store.roles import login

pytestmark = pytest.mark.integration

PERSONAL_TICKET_COLUMNS = (
    "address",
    "lat",
    "lon",
    "reporter_hash",
    "reporter_masked",
    "description",
    "status_notes",
    "media_url",
    "attributes",
)


def denied(conn: psycopg.Connection, statement: str) -> bool:
    try:
        conn.execute(statement)
    except psycopg.errors.InsufficientPrivilege:
        return True
    return False


@pytest.fixture
def ticket(pg_dsn: str) -> Iterator[str]:
    ticket_id = f"roles-{uuid.uuid4().hex[:8]}"
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO tickets (service_request_id, requested_at, channel, description,"
            " address, lat, lon, reporter_hash, reporter_masked, urgent, ingested_at, category)"
            " VALUES (%s, now(), 'phone', 'ngập nước', 'Số 12 Lương Ngọc Quyến, Phường Túc"
            " Duyên, Thái Nguyên', 21.59, 105.84, 'abc123', '09******18', false, now(),"
            " 'ngap_ung')",
            (ticket_id,),
        )
    yield ticket_id
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute("DELETE FROM tickets WHERE service_request_id = %s", (ticket_id,))


def test_roles_exist_without_login(pg_dsn: str) -> None:
    with psycopg.connect(pg_dsn) as conn:
        roles = dict(
            conn.execute(
                "SELECT rolname, rolcanlogin FROM pg_roles"
                " WHERE rolname IN ('ioc_writer', 'ioc_grafana')"
            ).fetchall()
        )
    assert roles == {"ioc_writer": False, "ioc_grafana": False}


def test_grafana_may_read_every_ticket_column_but_the_personal_ones(pg_dsn: str) -> None:
    """A column added to tickets later is hidden from Grafana until a migration grants it: this
    fails then, so that someone decides."""
    with psycopg.connect(pg_dsn) as conn:
        columns = {
            name: readable
            for name, readable in conn.execute(
                "SELECT attname, has_column_privilege('ioc_grafana', 'tickets', attname,"
                " 'SELECT') FROM pg_attribute WHERE attrelid = 'tickets'::regclass"
                " AND attnum > 0 AND NOT attisdropped"
            )
        }
    assert {name for name, readable in columns.items() if not readable} == set(
        PERSONAL_TICKET_COLUMNS
    )


@pytest.mark.parametrize("column", PERSONAL_TICKET_COLUMNS)
def test_grafana_cannot_read_personal_ticket_columns(pg_dsn: str, ticket: str, column: str) -> None:
    with login(pg_dsn, "ioc_grafana") as conn:
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute(f"SELECT {column} FROM tickets")
        assert denied(conn, "SELECT * FROM tickets")
        assert denied(conn, "SELECT note FROM ticket_events")
        assert denied(conn, "SELECT password_hash FROM staff_accounts")
        assert denied(conn, "SELECT csrf_token FROM staff_sessions")
        assert denied(conn, "SELECT sealed FROM reporter_contacts")
        assert denied(conn, "SELECT notice FROM citizen_notices")


def test_grafana_reads_the_other_columns_and_the_areas(pg_dsn: str, ticket: str) -> None:
    with login(pg_dsn, "ioc_grafana") as conn:
        row = conn.execute(
            "SELECT channel, category, status, urgent, count(*) OVER ()"
            " FROM tickets WHERE service_request_id = %s",
            (ticket,),
        ).fetchone()
        assert row == ("phone", "ngap_ung", "new", False, 1)
        assert conn.execute("SELECT count(*) FROM tickets").fetchone()[0] >= 1
        area = conn.execute(
            "SELECT area FROM ticket_areas WHERE service_request_id = %s", (ticket,)
        ).fetchone()
        assert area == ("Phường Túc Duyên",), "the ward, never the street or house number"
        conn.execute("SELECT at, status FROM ticket_events").fetchall()
        for relation in ("sensor_readings", "incidents", "incident_events", "sensor_readings_1m"):
            conn.execute(f"SELECT * FROM {relation} LIMIT 1").fetchall()


def test_grafana_writes_nothing_and_creates_nothing(pg_dsn: str, ticket: str) -> None:
    with login(pg_dsn, "ioc_grafana") as conn:
        for statement in (
            "INSERT INTO sensor_readings (sensor_id, observed_at, property, value, sensor_type,"
            " ingested_at) VALUES ('roles-x', now(), 'pm25', 1, 'AirQualityObserved', now())",
            f"UPDATE tickets SET status = 'resolved' WHERE service_request_id = '{ticket}'",
            "UPDATE incidents SET status = 'resolved'",
            f"DELETE FROM tickets WHERE service_request_id = '{ticket}'",
            "DELETE FROM sensor_readings",
            "TRUNCATE consumer_lag",
            "CREATE TABLE grafana_was_here (x int)",
            "CREATE VIEW grafana_view AS SELECT 1 AS x",
        ):
            assert denied(conn, statement), statement


def test_writer_writes_rows_but_runs_no_ddl(pg_dsn: str, ticket: str) -> None:
    sensor = f"roles-{uuid.uuid4().hex[:8]}"
    with login(pg_dsn, "ioc_writer") as conn:
        conn.execute(
            "INSERT INTO sensor_readings (sensor_id, observed_at, property, value, sensor_type,"
            " ingested_at) VALUES (%s, now(), 'pm25', 12.5, 'AirQualityObserved', now())",
            (sensor,),
        )
        conn.execute(
            "UPDATE tickets SET status = 'triaged' WHERE service_request_id = %s", (ticket,)
        )
        assert conn.execute(
            "SELECT reporter_masked FROM tickets WHERE service_request_id = %s", (ticket,)
        ).fetchone() == ("09******18",)
        assert (
            conn.execute("DELETE FROM sensor_readings WHERE sensor_id = %s", (sensor,)).rowcount
            == 1
        )
        assert denied(conn, "CREATE TABLE writer_was_here (x int)")
        assert denied(conn, "DROP TABLE consumer_lag")
        assert denied(conn, "ALTER TABLE tickets ADD COLUMN x int")
        assert denied(conn, "TRUNCATE consumer_lag")


def test_tables_created_later_get_the_grants(pg_dsn: str) -> None:
    table = f"roles_later_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(pg_dsn, autocommit=True) as owner:
        owner.execute(f"CREATE TABLE {table} (x int)")
    try:
        with login(pg_dsn, "ioc_writer") as conn:
            conn.execute(f"INSERT INTO {table} VALUES (1)")
        with login(pg_dsn, "ioc_grafana") as conn:
            assert conn.execute(f"SELECT x FROM {table}").fetchall() == [(1,)]
            assert denied(conn, f"INSERT INTO {table} VALUES (2)")
    finally:
        with psycopg.connect(pg_dsn, autocommit=True) as owner:
            owner.execute(f"DROP TABLE {table}")


def test_migrating_again_keeps_the_roles_and_grants(pg_dsn: str, ticket: str) -> None:
    migrate(pg_dsn)
    migrate(pg_dsn)
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        for _ in range(2):  # the migration itself may run again, unchanged
            conn.execute((MIGRATIONS_DIR / "0008_roles.sql").read_text())
    with login(pg_dsn, "ioc_grafana") as conn:
        assert denied(conn, "SELECT address FROM tickets")
        conn.execute("SELECT category FROM tickets").fetchall()
        conn.execute("SELECT area FROM ticket_areas").fetchall()
    with login(pg_dsn, "ioc_writer") as conn:
        conn.execute("SELECT address FROM tickets").fetchall()
        assert denied(conn, "CREATE TABLE writer_was_here (x int)")


@pytest.mark.parametrize("sandbox", [False, True], ids=["schema", "sandbox"])
def test_grants_follow_the_schema_migrated(pg_dsn: str, sandbox: bool) -> None:
    """Grants are on the schema migrated (not on public); a replay sandbox's schema gives
    ioc_grafana nothing."""
    schema = f"roles_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(pg_dsn, autocommit=True) as owner:
        owner.execute(f"CREATE SCHEMA {schema}")
        if sandbox:
            owner.execute(f"COMMENT ON SCHEMA {schema} IS '{MARKER} x'")
    try:
        report = migrate(with_search_path(pg_dsn, schema))
        assert "0008_roles" in report.applied
        with login(pg_dsn, "ioc_writer") as conn:
            conn.execute(f"SELECT address FROM {schema}.tickets").fetchall()
            assert denied(conn, f"CREATE TABLE {schema}.writer_was_here (x int)")
        with login(pg_dsn, "ioc_grafana") as conn:
            assert denied(conn, f"SELECT address FROM {schema}.tickets")
            if sandbox:
                assert denied(conn, f"SELECT category FROM {schema}.tickets")
            else:
                conn.execute(f"SELECT category FROM {schema}.tickets").fetchall()
                conn.execute(f"SELECT * FROM {schema}.sensor_readings_1h").fetchall()
    finally:
        with psycopg.connect(pg_dsn, autocommit=True) as owner:
            owner.execute(f"DROP SCHEMA {schema} CASCADE")
