"""`CopySink` against a real PostgreSQL: idempotent batches, flushing by size and by time,
backpressure while the database is slow, errors that stop it, and a 30 s outage mid-stream."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import psycopg
import pytest

from ioc.config import StorageSettings
from ioc.devtools.stack.postgres import PostgresService
from ioc.devtools.stack.process import free_port
from ioc.store.sink import CopySink, SinkError, sink_from_settings
from ioc.store.writer import READING_COLUMNS

pytestmark = pytest.mark.integration

KEY = ("sensor_id", "property", "observed_at")
T0 = datetime(2026, 5, 1, tzinfo=UTC)


def rows(count: int, start: int = 0, value: float = 1.0) -> list[tuple]:
    """`count` readings of one sensor, a second apart from T0 + `start` s."""
    return [
        ("s-1", T0 + timedelta(seconds=n), "currentLevel", value + n, "FloodMonitoring", T0, False)
        for n in range(start, start + count)
    ]


def count(dsn: str, table: str) -> int:
    with psycopg.connect(dsn) as conn:
        found = conn.execute(f"SELECT count(*) FROM {table}").fetchone()
    return found[0] if found else 0


async def eventually(probe: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not await asyncio.to_thread(probe):
        if time.monotonic() > deadline:
            raise AssertionError("timed out")
        await asyncio.sleep(0.05)


def sink(dsn: str, table: str, **options: object) -> CopySink:
    return CopySink(dsn, table, READING_COLUMNS, KEY, **options)  # type: ignore[arg-type]


def test_the_same_rows_twice_are_stored_once(pg_dsn: str, readings_table: str) -> None:
    async def run() -> CopySink:
        async with sink(pg_dsn, readings_table, batch_rows=300) as out:
            await out.put_many(rows(1000))
            await out.flush()
            await out.put_many(rows(1000))  # a replay, in other batch boundaries
            await out.put_many(rows(500, start=750))  # and an overlap with new rows
        return out

    out = asyncio.run(run())
    assert count(pg_dsn, readings_table) == 1250
    assert (out.stats.written, out.stats.inserted) == (2500, 1250)
    assert out.stats.careful >= 1  # the replay's batches went through the staging table
    assert out.pending == 0


def test_duplicates_take_the_staging_path_until_a_clean_batch(
    pg_dsn: str, readings_table: str
) -> None:
    async def run() -> list[int]:
        careful = []
        async with sink(pg_dsn, readings_table, batch_rows=100, writers=1) as out:
            for start in (0, 0, 100, 200):  # new, a replay, new, new
                await out.put_many(rows(100, start=start))
                await out.flush()
                careful.append(out.stats.careful)
        return careful

    # the replay: refused COPY, then staged (nothing new: stay careful); the next batch staged
    # (all new: fast again); the last one straight COPY
    assert asyncio.run(run()) == [0, 1, 2, 2]
    assert count(pg_dsn, readings_table) == 300


def test_rows_without_copy_are_idempotent_too(pg_dsn: str, readings_table: str) -> None:
    async def run() -> None:
        async with sink(pg_dsn, readings_table, batch_rows=50, copy=False) as out:
            await out.put_many(rows(120) + rows(120))

    asyncio.run(run())
    assert count(pg_dsn, readings_table) == 120


def test_update_mode_keeps_the_last_row_of_a_key(pg_dsn: str, readings_table: str) -> None:
    async def run() -> None:
        async with sink(pg_dsn, readings_table, update=("value", "late")) as out:
            await out.put_many(rows(3, value=1.0) + rows(3, value=10.0))  # same keys, one batch
            await out.flush()
            await out.put(rows(1, value=100.0)[0])

    asyncio.run(run())
    with psycopg.connect(pg_dsn) as conn:
        values = [r[0] for r in conn.execute(f"SELECT value FROM {readings_table} ORDER BY 1")]
    assert values == [11.0, 12.0, 100.0]


def test_flushes_by_size(pg_dsn: str, readings_table: str) -> None:
    async def run() -> None:
        out = sink(pg_dsn, readings_table, batch_rows=100, flush_interval_s=60)
        await out.put_many(rows(250))
        await eventually(lambda: count(pg_dsn, readings_table) == 200)
        await asyncio.sleep(0.3)
        assert count(pg_dsn, readings_table) == 200  # the last 50 wait for more, or time
        assert out.pending == 50
        await out.close()  # flushes the rest

    asyncio.run(run())
    assert count(pg_dsn, readings_table) == 250


def test_flushes_by_time(pg_dsn: str, readings_table: str) -> None:
    async def run() -> float:
        out = sink(pg_dsn, readings_table, batch_rows=1000, flush_interval_s=0.4)
        started = time.monotonic()
        await out.put_many(rows(5))
        await eventually(lambda: count(pg_dsn, readings_table) == 5)
        waited = time.monotonic() - started
        await out.close()
        return waited

    assert asyncio.run(run()) >= 0.4  # not before the interval (`eventually` bounds the rest)


def test_put_waits_while_the_database_is_slow(pg_dsn: str, readings_table: str) -> None:
    """A lock held elsewhere stalls every write: the producer stops at `max_rows` pending."""

    async def run() -> CopySink:
        blocker = await psycopg.AsyncConnection.connect(pg_dsn)
        await blocker.execute(f"LOCK TABLE {readings_table} IN ACCESS EXCLUSIVE MODE")
        out = sink(pg_dsn, readings_table, batch_rows=50, max_rows=200, flush_interval_s=0.05)
        producer = asyncio.create_task(out.put_many(rows(1000)))
        await eventually(lambda: out.pending == 200 and out.stats.waits == 1)
        assert not producer.done()  # blocked, not buffering without bound
        await blocker.rollback()  # the database is fast again
        await blocker.close()
        await asyncio.wait_for(producer, 30)
        await out.close()
        return out

    out = asyncio.run(run())
    assert count(pg_dsn, readings_table) == 1000
    assert out.stats.inserted == 1000


def test_put_waits_while_the_database_is_unreachable() -> None:
    nowhere = f"postgresql://ioc:x@127.0.0.1:{free_port()}/ioc"

    async def run() -> None:
        out = sink(nowhere, "sensor_readings", batch_rows=5, max_rows=10, retry_initial_s=0.05)
        producer = asyncio.create_task(out.put_many(rows(11)))
        await eventually(lambda: out.pending == 10 and out.stats.retries >= 2)
        assert not producer.done()  # it keeps trying; nothing is dropped
        left = await out.abort()
        assert len(left) == 10 and left == rows(10)  # handed back in order
        with pytest.raises(SinkError, match="closed"):
            await producer

    asyncio.run(run())


def test_an_error_retrying_cannot_fix_stops_the_sink(pg_dsn: str, readings_table: str) -> None:
    async def run() -> None:
        out = sink(pg_dsn, readings_table, batch_rows=2)
        bad = ("s-1", T0, "currentLevel", "not a number", "FloodMonitoring", T0, False)
        await out.put_many([bad, *rows(1, start=5)])
        with pytest.raises(SinkError, match=r"not a number|invalid input"):
            await out.flush()
        assert out.pending == 2  # still there, for the caller to see
        with pytest.raises(SinkError):
            await out.put(rows(1)[0])
        with pytest.raises(SinkError):
            await out.close()

    asyncio.run(run())
    assert count(pg_dsn, readings_table) == 0


def test_sink_from_settings_takes_its_sizes() -> None:
    storage = StorageSettings(sink_batch_rows=7, sink_max_rows=70, sink_flush_interval_s=2)
    out = sink_from_settings("postgresql://x@h/db", storage, "t", ["a", "b"], ["a"])
    assert (out.batch_rows, out.max_rows, out.flush_interval_s) == (7, 70, 2.0)
    with pytest.raises(ValueError):
        CopySink("postgresql://x@h/db", "t", ["a"], ["b"])
    with pytest.raises(ValueError):
        CopySink("postgresql://x@h/db", "t", ["a"], ["a"], batch_rows=10, max_rows=5)
    with pytest.raises(ValueError):  # DO UPDATE keeps the last row of a key: one writer
        CopySink("postgresql://x@h/db", "t", ["a", "b"], ["a"], update=["b"], writers=2)
    assert CopySink("postgresql://x@h/db", "t", ["a", "b"], ["a"], update=["b"]).writers == 1
    assert out.writers == 2


OUTAGE_S = 30.0


@pytest.mark.slow
def test_a_30_s_outage_mid_stream_loses_and_duplicates_nothing(
    private_postgres: PostgresService, pg_dsn: str, readings_table: str
) -> None:
    """PostgreSQL stops for 30 s while a producer keeps putting rows; once it is back every
    row is there exactly once (a batch whose commit was cut off is written again, harmlessly)."""
    rate, max_rows = 400, 2000  # the outage outlasts the buffer: the producer has to wait

    async def run() -> tuple[int, CopySink, float]:
        out = sink(
            pg_dsn,
            readings_table,
            batch_rows=200,
            max_rows=max_rows,
            flush_interval_s=0.2,
            retry_initial_s=0.2,
            retry_max_s=2.0,
        )
        produced = 0
        stop = asyncio.Event()

        async def produce() -> None:
            nonlocal produced
            while not stop.is_set():
                await out.put_many(rows(20, start=produced))
                produced += 20
                await asyncio.sleep(20 / rate)

        producer = asyncio.create_task(produce())
        await eventually(lambda: count(pg_dsn, readings_table) >= 500)
        await asyncio.to_thread(private_postgres.down)
        down_at = time.monotonic()
        await asyncio.sleep(OUTAGE_S)
        assert out.pending == max_rows  # full, and the producer waits
        await asyncio.to_thread(private_postgres.up)
        down_for = time.monotonic() - down_at
        await asyncio.sleep(3)  # streaming again
        stop.set()
        await asyncio.wait_for(producer, 30)
        await asyncio.wait_for(out.close(), 60)
        return produced, out, down_for

    produced, out, down_for = asyncio.run(run())
    with psycopg.connect(pg_dsn) as conn:
        stored, distinct, first, last = conn.execute(
            f"SELECT count(*), count(DISTINCT observed_at), min(observed_at), max(observed_at)"
            f" FROM {readings_table}"
        ).fetchone() or (0, 0, None, None)
    assert down_for >= OUTAGE_S
    assert produced > 3000
    assert stored == distinct == produced
    assert (first, last) == (T0, T0 + timedelta(seconds=produced - 1))
    assert out.stats.retries >= 1 and out.stats.waits >= 1
    assert out.stats.inserted == produced
