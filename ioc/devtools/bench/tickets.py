"""`ioc bench tickets`: tickets through intake topic → triage → database, against a plain aiokafka
consume-and-INSERT loop on the same machine, in the same run, on an ephemeral stack.

Throughput: N tickets are published as fast as possible while the consumer runs; the figure is
N / (time until the N-th row is in the database), median over rounds, alternating baseline and
pipeline so drift hits both. Latency: tickets published at a steady rate below capacity; per
ticket, row write time minus the Kafka timestamp of the message (p50, p99).
"""

from __future__ import annotations

import asyncio
import json
import random
import statistics
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from ioc.assets import SAMPLE_TICKETS_PATH
from ioc.config import Settings
from ioc.devtools.bench.common import bench_stack, ephemeral_settings, percentile, publish
from ioc.devtools.stack.process import StackError
from ioc.kafka import topics
from ioc.kafka.clients import aio_consumer
from ioc.models.base import utc_now
from ioc.runtime import run_async

BASELINE_TOPIC = "bench.baseline.tickets"
BASELINE_DDL = (
    "CREATE TABLE IF NOT EXISTS bench_baseline (service_request_id text PRIMARY KEY,"
    " body jsonb NOT NULL, kafka_ts timestamptz NOT NULL, written_at timestamptz NOT NULL"
    " DEFAULT clock_timestamp())"
)


def synthetic_tickets(count: int, seed: str) -> list[dict]:
    """Sample descriptions at random places across the province (few true duplicates)."""
    rng = random.Random(seed)
    samples = [json.loads(line) for line in SAMPLE_TICKETS_PATH.read_text().splitlines()]
    tickets = []
    for _ in range(count):
        sample = rng.choice(samples)
        tickets.append(
            {
                "service_request_id": f"B-{uuid.UUID(int=rng.getrandbits(128)).hex[:16]}",
                "requested_datetime": utc_now().isoformat(),
                "channel": sample["channel"],
                "description": sample["description"],
                "address_string": sample["address_string"],
                "lat": round(21.3 + rng.random() * 0.6, 6),
                "long": round(105.5 + rng.random() * 0.6, 6),
                "phone": f"09{rng.randrange(10**8):08d}",
            }
        )
    return tickets


def messages(tickets: list[dict]) -> Iterator[tuple[bytes, bytes]]:
    """Encoded as they are sent, so encoding counts in the publishing time as it always has."""
    for ticket in tickets:
        body = json.dumps(ticket, ensure_ascii=False).encode()
        yield ticket["service_request_id"].encode(), body


async def baseline_loop(settings: Settings, stop: asyncio.Event, ready: asyncio.Event) -> None:
    """The naive consumer: one JSON parse and one INSERT per message, commit per batch."""
    consumer = aio_consumer(
        settings.kafka,
        BASELINE_TOPIC,
        group_id="bench-baseline",
        enable_auto_commit=False,
        auto_offset_reset="earliest",
    )
    await consumer.start()
    conn = await psycopg.AsyncConnection.connect(settings.database.dsn, autocommit=True)
    try:
        ready.set()
        while not stop.is_set():
            batches = await consumer.getmany(timeout_ms=100)
            for records in batches.values():
                for record in records:
                    body = json.loads(record.value)
                    await conn.execute(
                        "INSERT INTO bench_baseline (service_request_id, body, kafka_ts)"
                        " VALUES (%s, %s, to_timestamp(%s / 1000.0)) ON CONFLICT DO NOTHING",
                        (body["service_request_id"], json.dumps(body), record.timestamp),
                    )
            if batches:
                await consumer.commit()
    finally:
        await consumer.stop()
        await conn.close()


def count_rows(conn: psycopg.Connection, table: str, ids: list[str]) -> int:
    row = conn.execute(
        f"SELECT count(*) FROM {table} WHERE service_request_id = ANY(%s)", (ids,)
    ).fetchone()
    return int(row[0]) if row else 0


def wait_rows(conn: psycopg.Connection, table: str, ids: list[str], timeout_s: float) -> float:
    """Seconds until every id has its row."""
    started = time.monotonic()
    while count_rows(conn, table, ids) < len(ids):
        if time.monotonic() - started > timeout_s:
            raise StackError(
                f"{table}: rows for {len(ids)} tickets not written in {timeout_s:.0f}s"
            )
        time.sleep(0.05)
    return time.monotonic() - started


LATENCY_SQL = {
    "tickets": "SELECT extract(epoch FROM updated_at - ingested_at) * 1000 FROM tickets",
    "bench_baseline": "SELECT extract(epoch FROM written_at - kafka_ts) * 1000 FROM bench_baseline",
}


def latencies(conn: psycopg.Connection, table: str, ids: list[str]) -> list[float]:
    rows = conn.execute(LATENCY_SQL[table] + " WHERE service_request_id = ANY(%s)", (ids,))
    return [float(value) for (value,) in rows]


@dataclass
class Target:
    """One side of the comparison: where tickets go and where their rows appear."""

    topic: str
    table: str
    throughput: list[float] = field(default_factory=list)  # tickets/s per round
    latency_ms: list[float] = field(default_factory=list)  # per ticket, steady phase


@dataclass(frozen=True)
class TicketBenchResult:
    """What one run measured, for `ioc bench all` and tests."""

    pipeline: Target
    baseline: Target


@dataclass
class BenchRun:
    settings: Settings
    conn: psycopg.Connection
    count: int

    def throughput_round(self, target: Target, seed: str) -> None:
        tickets = synthetic_tickets(self.count, seed)
        ids = [ticket["service_request_id"] for ticket in tickets]
        started = time.monotonic()
        run_async(publish(self.settings, target.topic, messages(tickets), rate=None))
        wait_rows(self.conn, target.table, ids, timeout_s=600)
        target.throughput.append(self.count / (time.monotonic() - started))

    def steady_latencies(self, target: Target, rate: float, seconds: float) -> None:
        tickets = synthetic_tickets(int(rate * seconds), f"{target.topic}:steady")
        ids = [ticket["service_request_id"] for ticket in tickets]
        run_async(publish(self.settings, target.topic, messages(tickets), rate=rate))
        wait_rows(self.conn, target.table, ids, timeout_s=600)
        target.latency_ms = latencies(self.conn, target.table, ids)


def run_bench(
    count: int, rounds: int, rate: float, seconds: float, console: Console
) -> TicketBenchResult:
    pipeline = Target(topics.HOTLINE_TICKETS, "tickets")
    baseline = Target(BASELINE_TOPIC, "bench_baseline")
    with (
        tempfile.TemporaryDirectory(prefix="ioc-bench-") as root,
        ephemeral_settings(Path(root)) as settings,
        bench_stack(settings, console, BASELINE_TOPIC, BASELINE_DDL),
        psycopg.connect(settings.database.dsn, autocommit=True) as conn,
        baseline_consumer(settings),
        Progress(console=console, transient=True) as bar,
    ):
        bench = BenchRun(settings, conn, count)
        task = bar.add_task("bench", total=2 * rounds + 2)
        for round_index in range(rounds):  # alternate, so drift hits both sides
            for target in (baseline, pipeline):
                bench.throughput_round(target, f"{target.topic}:{round_index}")
                bar.advance(task)
        for target in (baseline, pipeline):
            bench.steady_latencies(target, rate, seconds)
            bar.advance(task)
    render(pipeline, baseline, count, rounds, rate, console)
    return TicketBenchResult(pipeline, baseline)


@contextmanager
def baseline_consumer(settings: Settings) -> Iterator[None]:
    """The baseline consumer runs in its own thread and event loop for the whole bench."""
    stop = asyncio.Event()
    ready = threading.Event()
    loop = asyncio.new_event_loop()

    async def main() -> None:
        started = asyncio.Event()
        task = asyncio.create_task(baseline_loop(settings, stop, started))
        await started.wait()
        ready.set()
        await task

    thread = threading.Thread(target=loop.run_until_complete, args=(main(),), daemon=True)
    thread.start()
    if not ready.wait(timeout=60):
        raise StackError("the baseline consumer did not start")
    try:
        yield
    finally:
        loop.call_soon_threadsafe(stop.set)
        thread.join(timeout=30)


def render(
    pipeline: Target, baseline: Target, count: int, rounds: int, rate: float, console: Console
) -> None:
    table = Table(
        "metric",
        "ioc pipeline (triage, dedup, SLA, privacy)",
        "baseline (aiokafka + INSERT)",
        "ratio",
        title=f"ioc bench tickets · {count} tickets × {rounds} rounds; latency at {rate:g}/s",
    )
    p_tput, b_tput = statistics.median(pipeline.throughput), statistics.median(baseline.throughput)
    table.add_row(
        "throughput, median tickets/s",
        f"{p_tput:,.0f}",
        f"{b_tput:,.0f}",
        f"{p_tput / b_tput:.2f}×",
    )
    for label, q in (("latency p50 ms", 0.5), ("latency p99 ms", 0.99)):
        p, b = percentile(pipeline.latency_ms, q), percentile(baseline.latency_ms, q)
        table.add_row(label, f"{p:,.1f}", f"{b:,.1f}", f"{p / b:.2f}×" if b else "–")
    table.add_row(
        "throughput per round",
        ", ".join(f"{v:,.0f}" for v in pipeline.throughput),
        ", ".join(f"{v:,.0f}" for v in baseline.throughput),
        "",
    )
    console.print(table)
