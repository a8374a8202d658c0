"""A private embedded PostgreSQL for the storage tests: its own folder and free port, migrated,
so a test may stop and start it without touching the shared stack."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import psycopg
import pytest

from ioc.config import Settings
from ioc.devtools.stack.postgres import PostgresService
from ioc.devtools.stack.process import free_port
from ioc.store.migrate import migrate


@pytest.fixture(scope="session")
def private_postgres(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PostgresService]:
    root = tmp_path_factory.mktemp("store-pg")
    settings = Settings(
        stack={"dir": root / "stack"},
        database={"dsn": f"postgresql://ioc:store-test@127.0.0.1:{free_port()}/ioc"},
    )
    service = PostgresService(settings.stack, settings.database)
    service.up()
    try:
        migrate(settings.database.dsn)
        yield service
    finally:
        service.down()


@pytest.fixture
def pg_dsn(private_postgres: PostgresService) -> str:
    if not private_postgres.running():  # a test that stopped it failed half-way
        private_postgres.up()
    return private_postgres.database.dsn


@pytest.fixture
def readings_table(pg_dsn: str) -> Iterator[str]:
    """A fresh table shaped like sensor_readings (same natural key), dropped afterwards."""
    name = f"sink_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute(f"CREATE TABLE {name} (LIKE sensor_readings INCLUDING ALL)")
    yield name
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute(f"DROP TABLE IF EXISTS {name}")
