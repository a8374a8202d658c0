"""`ioc bench store`: rows/s through `CopySink` (batches, bounded buffer, idempotent: COPY into
the table under a savepoint, or after a duplicate COPY into a staging table then INSERT … ON
CONFLICT DO NOTHING) against a raw COPY of the same rows into a twin table, in the same run, on
the same server.

Each round generates fresh sensor readings (so every side inserts new rows), then writes them
through the sink (put_many, then close: every row committed), with one plain COPY statement
(the ceiling: no batching, no conflict handling), and through a sink that always takes the
staging path (what each batch costs when it may hold duplicates), rotating which side goes
first so drift hits all. Timings include connecting. The figure is rows / seconds, median over
the rounds. A last phase puts the final round's rows through the sink again: a replay, all
duplicates, none stored. By default the server is a private embedded PostgreSQL started for the
bench (`--dsn` points it at another, e.g. TimescaleDB; its twin tables are dropped afterwards).
"""

from __future__ import annotations

import statistics
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from ioc.devtools.bench.common import ephemeral_settings
from ioc.devtools.stack.postgres import PostgresService
from ioc.runtime import run_async
from ioc.store.sink import CopySink
from ioc.store.writer import READING_COLUMNS

SINK_TABLE = "bench_store_sink"
RAW_TABLE = "bench_store_raw"
STAGED_TABLE = "bench_store_staged"
TABLES = (SINK_TABLE, RAW_TABLE, STAGED_TABLE)
KEY = ("sensor_id", "property", "observed_at")
TABLE_DDL = (
    "CREATE TABLE {name} (sensor_id text NOT NULL, observed_at timestamptz NOT NULL,"
    " property text NOT NULL, value double precision NOT NULL, sensor_type text NOT NULL,"
    " ingested_at timestamptz NOT NULL, late boolean NOT NULL DEFAULT false,"
    " PRIMARY KEY (sensor_id, property, observed_at))"
)
TARGET_RATIO = 0.6
SENSORS = 500
T0 = datetime(2026, 1, 1, tzinfo=UTC)

Row = tuple[str, datetime, str, float, str, datetime, bool]


@dataclass(frozen=True)
class StoreBenchResult:
    rows: int  # per round
    rounds: int
    batch_rows: int
    sink: list[float]  # rows/s per round
    raw: list[float]
    staged: list[float]  # the sink held to its staging path
    replay: float  # rows/s putting the last round through the sink again (all duplicates)
    stored: tuple[int, ...]  # rows at the end in the sink's, the raw and the staged table
    retries: int  # sink retries over the whole bench (0 unless the server hiccuped)

    @property
    def sink_median(self) -> float:
        return statistics.median(self.sink)

    @property
    def raw_median(self) -> float:
        return statistics.median(self.raw)

    @property
    def staged_median(self) -> float:
        return statistics.median(self.staged)

    @property
    def ratio(self) -> float:
        return self.sink_median / self.raw_median

    @property
    def ratio_met(self) -> bool:
        return self.ratio >= TARGET_RATIO

    @property
    def complete(self) -> bool:
        """Every table holds every row once (the replay added nothing)."""
        return self.stored == (self.rows * self.rounds,) * len(TABLES)


def round_rows(count: int, index: int) -> list[Row]:
    """`count` readings of `SENSORS` sensors, 30 s apart per sensor, round `index`'s own."""
    per_round = -(-count // SENSORS) * timedelta(seconds=30)
    start, ingested = T0 + index * per_round, datetime.now(UTC)
    return [
        (
            f"bench-{n % SENSORS:04d}",
            start + (n // SENSORS) * timedelta(seconds=30),
            "pm25" if n % 2 else "currentLevel",
            round(10 + (n % 997) * 0.1, 1),
            "AirQualityObserved" if n % 2 else "FloodMonitoring",
            ingested,
            False,
        )
        for n in range(count)
    ]


async def through_sink(
    dsn: str, rows: list[Row], batch_rows: int, table: str = SINK_TABLE
) -> tuple[float, int]:
    """Seconds from the first put until every row is committed, connecting included; retries."""
    sink = CopySink(
        dsn,
        table,
        READING_COLUMNS,
        KEY,
        batch_rows=batch_rows,
        max_rows=4 * batch_rows,
        optimistic=table != STAGED_TABLE,
    )
    started = time.perf_counter()
    await sink.put_many(rows)
    await sink.close()
    return time.perf_counter() - started, sink.stats.retries


async def raw_copy(dsn: str, rows: list[Row]) -> float:
    """Seconds for one plain COPY of every row, connecting included."""
    started = time.perf_counter()
    async with await psycopg.AsyncConnection.connect(dsn) as conn, conn.cursor() as cursor:
        columns = ", ".join(READING_COLUMNS)
        async with cursor.copy(f"COPY {RAW_TABLE} ({columns}) FROM STDIN") as copy:
            for row in rows:
                await copy.write_row(row)
    return time.perf_counter() - started


@contextmanager
def bench_database(dsn: str | None, console: Console) -> Iterator[str]:
    """`dsn`, or a private embedded PostgreSQL on a free port, stopped afterwards."""
    if dsn is not None:
        yield dsn
        return
    with (
        tempfile.TemporaryDirectory(prefix="ioc-bench-store-") as root,
        ephemeral_settings(Path(root)) as settings,
    ):
        service = PostgresService(settings.stack, settings.database)
        with console.status("starting a private PostgreSQL…"):
            service.up()
        try:
            yield settings.database.dsn
        finally:
            service.down()


def run_bench(
    rows: int, rounds: int, batch_rows: int, console: Console, dsn: str | None = None
) -> StoreBenchResult:
    rates: dict[str, list[float]] = {table: [] for table in TABLES}
    retries = 0
    with bench_database(dsn, console) as url, psycopg.connect(url, autocommit=True) as conn:
        for table in TABLES:
            conn.execute(f"DROP TABLE IF EXISTS {table}")
            conn.execute(TABLE_DDL.format(name=table))
        try:
            with Progress(console=console, transient=True) as bar:
                task = bar.add_task("bench", total=len(TABLES) * rounds + 1)
                batch: list[Row] = []
                for index in range(rounds):
                    batch = round_rows(rows, index)
                    shift = index % len(TABLES)  # rotate, so drift hits every side
                    for table in TABLES[shift:] + TABLES[:shift]:
                        if table == RAW_TABLE:
                            seconds = run_async(raw_copy(url, batch))
                        else:
                            seconds, retried = run_async(
                                through_sink(url, batch, batch_rows, table)
                            )
                            retries += retried
                        rates[table].append(rows / seconds)
                        bar.advance(task)
                seconds, retried = run_async(through_sink(url, batch, batch_rows))
                retries += retried
                bar.advance(task)
            stored = tuple(
                (conn.execute(f"SELECT count(*) FROM {table}").fetchone() or (0,))[0]
                for table in TABLES
            )
        finally:
            for table in TABLES:
                conn.execute(f"DROP TABLE IF EXISTS {table}")
    result = StoreBenchResult(
        rows,
        rounds,
        batch_rows,
        rates[SINK_TABLE],
        rates[RAW_TABLE],
        rates[STAGED_TABLE],
        rows / seconds,
        stored,
        retries,
    )
    render(result, console)
    return result


def render(result: StoreBenchResult, console: Console) -> None:
    table = Table(
        "metric",
        f"CopySink (batches of {result.batch_rows:,})",
        "raw COPY (one statement)",
        "sink, staging path only",
        "sink / raw",
        title=f"ioc bench store · {result.rows:,} rows × {result.rounds} rounds",
    )
    table.add_row(
        "median rows/s",
        f"{result.sink_median:,.0f}",
        f"{result.raw_median:,.0f}",
        f"{result.staged_median:,.0f}",
        f"{result.ratio:.2f}×",
    )
    table.add_row(
        "rows/s per round",
        *(
            ", ".join(f"{v:,.0f}" for v in side)
            for side in (result.sink, result.raw, result.staged)
        ),
        "",
    )
    table.add_row("replay of the last round, all duplicates: rows/s", f"{result.replay:,.0f}")
    table.add_row("rows stored", *(f"{n:,}" for n in result.stored), "")
    console.print(table)
    if not result.complete:
        expected = result.rows * result.rounds
        console.print(f"[red]rows stored {result.stored}, expected {expected:,} each[/]")
    if result.retries:
        console.print(f"[yellow]the sink retried {result.retries} time(s)[/]")
    met = "[green]met[/]" if result.ratio_met else "[red]not met[/]"
    console.print(f"target sink ≥ {TARGET_RATIO:.0%} of raw COPY ({result.ratio:.2f}×): {met}")
