"""`ioc bench sensors`: sensor readings through the sensor topic → agent → database, against a
plain aiokafka consume → COPY loop on the same machine, in the same run, on an ephemeral stack.

Throughput: N readings (FIWARE key-value entities) of M synthetic sensors are published as fast
as the client can while the consumer runs; the figure is N / (time from the first publish until
the last row is in the database), median over rounds, alternating baseline and pipeline so drift
hits both. The baseline runs in a process of its own, like the streams worker, so neither shares
a GIL with the publisher. Latency: readings at a steady rate while a few extra flood sensors go
above their alert level; per incident, the Kafka timestamp of its first message on
`ioc.incidents.candidates` minus its `ingested_at_ms` (the Kafka timestamp of the triggering
reading).

Event times are planned at the start and all lie in the past: the pipeline rejects readings
observed minutes after their arrival, and each sensor must report in event-time order.
"""

from __future__ import annotations

import asyncio
import json
import math
import multiprocessing
import random
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from multiprocessing.process import BaseProcess
from multiprocessing.synchronize import Event as EventType
from pathlib import Path
from typing import Any

import psycopg
from aiokafka.partitioner import DefaultPartitioner
from aiokafka.producer.message_accumulator import BatchBuilder
from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from ioc.config import KafkaSettings, Settings
from ioc.devtools.bench.common import bench_stack, ephemeral_settings, percentile, publish
from ioc.devtools.scenario.workers import Workers
from ioc.devtools.stack.process import StackError
from ioc.kafka import clients as kafka_clients
from ioc.kafka import topics
from ioc.kafka.clients import producer
from ioc.models import IncidentKind, SensorSpec
from ioc.models.base import from_epoch_ms, utc_now
from ioc.runtime import run_async
from ioc.sensors.fiware import entity

BASELINE_TOPIC = "bench.baseline.sensors"
BASELINE_TABLE = "bench_baseline_sensors"
BASELINE_DDL = f"CREATE TABLE IF NOT EXISTS {BASELINE_TABLE} (LIKE sensor_readings INCLUDING ALL)"
COPY_SQL = (
    f"COPY {BASELINE_TABLE} (sensor_id, observed_at, property, value, sensor_type, ingested_at)"
    " FROM STDIN"
)
NOT_MEASURED = frozenset({"id", "type", "dateObserved", "location"})
PREFIX = "bench-"
ALARM_PREFIX = "bench-alarm-"
ALARM_SENSORS = 5
# Each sensor reports every 30 s of event time, the usual interval of water-level and air-quality
# stations (many report every few minutes); published as fast as possible, like a replay.
REPORT_EVERY = timedelta(seconds=30)
ALARM_STEP = REPORT_EVERY  # four readings pass the rules' 2-minute hold
# (property, unit, alert level) per FIWARE type; readings stay well below the alert level.
KINDS = {
    "FloodMonitoring": ("currentLevel", "m", 3.0),
    "AirQualityObserved": ("pm25", "µg/m³", 150.0),
}
TARGET_RATIO = 0.5
TARGET_EVENTS_S = 20_000
STALL_S = 120.0  # no new row for this long: the consumer is stuck
POLL_S = 0.1
INCIDENT_WAIT_S = 30.0


@dataclass(frozen=True)
class Reading:
    """One message as published, and how many rows (one per measurement) it becomes."""

    key: bytes
    value: bytes
    rows: int


def sensor_specs(
    count: int, prefix: str = PREFIX, types: tuple[str, ...] = tuple(KINDS)
) -> list[SensorSpec]:
    """`count` synthetic sensors, the types taken in turn, spread over a few km of the city."""
    specs = []
    for index in range(count):
        sensor_type = types[index % len(types)]
        prop, unit, alert_level = KINDS[sensor_type]
        specs.append(
            SensorSpec(
                id=f"{prefix}{index:04d}",
                name=f"Bench {sensor_type} {index}",
                type=sensor_type,
                property=prop,
                unit=unit,
                alert_level=alert_level,
                district="Bench",
                lat=round(21.55 + (index % 100) * 0.002, 6),
                lon=round(105.80 + (index // 100) * 0.002, 6),
            )
        )
    return specs


def registry_toml(sensors: list[SensorSpec]) -> str:
    """The registry file for the worker (JSON strings and numbers are valid TOML values)."""
    return "\n".join(
        "[[sensors]]\n"
        + "".join(
            f"{key} = {json.dumps(value, ensure_ascii=False)}\n"
            for key, value in spec.model_dump(exclude_none=True).items()
        )
        for spec in sensors
    )


def _measured(spec: SensorSpec, rng: random.Random, above: bool) -> dict[str, float]:
    if spec.type == "FloodMonitoring":  # jitter far below the rate-of-rise rule's 0.2 m
        offset = 0.6 if above else -1.0
        return {"currentLevel": round(spec.alert_level + offset + rng.uniform(0, 0.04), 3)}
    pm25 = round(rng.uniform(15, 45), 1)
    return {"pm25": pm25, "pm10": round(pm25 * 1.6, 1)}


def readings(
    sensors: list[SensorSpec],
    count: int,
    start: datetime,
    seed: str,
    step: timedelta = REPORT_EVERY,
    cross_after: int | None = None,
) -> list[Reading]:
    """`count` readings round-robin over `sensors`: each sensor's are `step` apart in event
    time from `start`, below the alert level, or from its reading `cross_after` on (flood
    levels) 0.6 m above it."""
    rng = random.Random(seed)
    out = []
    for index in range(count):
        spec, nth = sensors[index % len(sensors)], index // len(sensors)
        measured = _measured(spec, rng, cross_after is not None and nth >= cross_after)
        body = entity(spec.id, spec.type, start + nth * step, **measured)
        out.append(Reading(spec.id.encode(), json.dumps(body).encode(), len(measured)))
    return out


def interleave(*streams: list[Reading]) -> list[Reading]:
    """The streams merged evenly, each keeping its order."""
    keyed = [
        ((position + 1) / len(stream), number, reading)
        for number, stream in enumerate(streams)
        for position, reading in enumerate(stream)
    ]
    return [reading for *_, reading in sorted(keyed, key=lambda item: item[:2])]


def steady_readings(
    sensors: list[SensorSpec], alarms: list[SensorSpec], count: int, start: datetime
) -> list[Reading]:
    """The latency phase: `count` ordinary readings from `start`, and as many per alarm sensor,
    10 s apart and ending with the others, crossing the alert level a quarter of the way in."""
    per_sensor = math.ceil(count / len(sensors))
    alarm_start = start + (per_sensor - 1) * (REPORT_EVERY - ALARM_STEP)
    alarm = readings(
        alarms,
        per_sensor * len(alarms),
        alarm_start,
        "alarms",
        step=ALARM_STEP,
        cross_after=max(1, per_sensor // 4),
    )
    return interleave(readings(sensors, count, start, "steady"), alarm)


async def publish_burst(
    settings: Settings, topic: str, batch: list[Reading]
) -> tuple[float, float]:
    """Everything as fast as the client can, in per-partition record batches (a `send` per
    message would make the publisher the bottleneck); monotonic times of the first append and
    of the last acknowledgement."""
    client = producer(settings.kafka, "ioc-bench")
    await client.start()
    try:
        partitions = sorted(await client.partitions_for(topic))
        partition_of = {
            key: DefaultPartitioner()(key, partitions, partitions)
            for key in {reading.key for reading in batch}
        }
        open_batches: dict[int, BatchBuilder] = {}
        pending = []
        started = time.monotonic()
        for reading in batch:
            partition = partition_of[reading.key]
            builder = open_batches.get(partition)
            if builder is not None:
                if builder.append(key=reading.key, value=reading.value, timestamp=None) is not None:
                    continue
                pending.append(await client.send_batch(builder, topic, partition=partition))  # full
            builder = open_batches[partition] = client.create_batch()
            builder.append(key=reading.key, value=reading.value, timestamp=None)
        for partition, builder in open_batches.items():
            pending.append(await client.send_batch(builder, topic, partition=partition))
        await asyncio.gather(*pending)
        return started, time.monotonic()
    finally:
        await client.stop()


def baseline_rows(value: bytes, timestamp_ms: int) -> list[tuple[Any, ...]]:
    """The rows of one message as the baseline writes them: no validation, no rules."""
    body = json.loads(value)
    sensor_id, ingested = body["id"].rsplit(":", 1)[-1], from_epoch_ms(timestamp_ms)
    return [
        (sensor_id, body["dateObserved"], name, measured, body["type"], ingested)
        for name, measured in body.items()
        if name not in NOT_MEASURED
    ]


async def baseline_loop(kafka: KafkaSettings, dsn: str, ready: EventType, stop: EventType) -> None:
    """The plain consumer: parse each message, COPY what one fetch returned, commit."""
    consumer = kafka_clients.aio_consumer(
        kafka,
        BASELINE_TOPIC,
        group_id="bench-baseline",
        enable_auto_commit=False,
        auto_offset_reset="earliest",
    )
    await consumer.start()
    conn = await psycopg.AsyncConnection.connect(dsn, autocommit=True)
    try:
        while not consumer.assignment():  # joined, so no round pays for the group join
            await consumer.getmany(timeout_ms=100)
        ready.set()
        while not stop.is_set():
            batches = await consumer.getmany(timeout_ms=100)
            rows = [
                row
                for records in batches.values()
                for record in records
                for row in baseline_rows(record.value or b"", record.timestamp)
            ]
            if rows:
                async with conn.cursor() as cursor, cursor.copy(COPY_SQL) as copy:
                    for row in rows:
                        await copy.write_row(row)
            if batches:
                await consumer.commit()
    finally:
        await consumer.stop()
        await conn.close()


def _baseline_main(kafka: KafkaSettings, dsn: str, ready: EventType, stop: EventType) -> None:
    run_async(baseline_loop(kafka, dsn, ready, stop))


@contextmanager
def baseline_process(settings: Settings) -> Iterator[BaseProcess]:
    """The baseline consumer in a process of its own for the whole bench."""
    context = multiprocessing.get_context("spawn")
    ready, stop = context.Event(), context.Event()
    process = context.Process(
        target=_baseline_main,
        args=(settings.kafka, settings.database.dsn, ready, stop),
        name="ioc-bench-baseline",
        daemon=True,
    )
    process.start()
    try:
        if not ready.wait(timeout=60):
            raise StackError("the baseline consumer did not start")
        yield process
    finally:
        stop.set()
        process.join(timeout=30)
        if process.is_alive():
            process.terminate()
            process.join()


def count_rows(conn: psycopg.Connection, table: str, since: datetime) -> int:
    row = conn.execute(
        f"SELECT count(*) FROM {table} WHERE sensor_id LIKE %s AND observed_at >= %s",
        (f"{PREFIX}%", since),
    ).fetchone()
    return int(row[0]) if row else 0


def wait_rows(
    conn: psycopg.Connection,
    table: str,
    since: datetime,
    expected: int,
    alive: Callable[[], None],
) -> float:
    """Monotonic time at which `table` holds `expected` bench rows observed since `since`. Polls
    less often as the wait goes on (1 % of it), so that counting, whose cost grows with the
    table, does not load the machine it measures more than it must."""
    rows = -1
    began = progressed_at = time.monotonic()
    while True:
        counted, now = count_rows(conn, table, since), time.monotonic()
        if counted >= expected:
            return now
        if counted > rows:
            rows, progressed_at = counted, now
        elif now - progressed_at > STALL_S:
            raise StackError(
                f"{table}: {counted:,} of {expected:,} rows, none new for {STALL_S:.0f}s"
            )
        alive()
        time.sleep(max(POLL_S, (now - began) / 100))


def incident_offsets(settings: Settings) -> dict[Any, int]:
    """Where the next incident message will land, per partition."""
    from kafka import TopicPartition

    reader = kafka_clients.reader(settings.kafka)
    try:
        topic = topics.INCIDENT_CANDIDATES
        partitions = reader.partitions_for_topic(topic) or set()
        return reader.end_offsets([TopicPartition(topic, p) for p in partitions])
    finally:
        reader.close()


def incident_latencies(
    settings: Settings, offsets: dict[Any, int], sensors: set[str], wait_s: float
) -> list[float]:
    """Per water-level incident of `sensors` published from `offsets` on: the Kafka timestamp
    of its first message minus that of the reading that triggered it, in ms. Reads until every
    sensor has one and the topic is caught up, or `wait_s`."""
    reader = kafka_clients.reader(settings.kafka)
    latency: dict[str, float] = {}
    seen: set[str] = set()
    try:
        reader.assign(list(offsets))
        for partition, offset in offsets.items():
            reader.seek(partition, offset)
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline:
            polled = reader.poll(timeout_ms=500)
            if not polled and seen >= sensors:
                break
            for record in (record for records in polled.values() for record in records):
                incident = json.loads(record.value)
                if (
                    incident.get("source_key") in sensors
                    and incident.get("kind") == IncidentKind.WATER_LEVEL_HIGH
                    and incident["id"] not in latency
                ):
                    latency[incident["id"]] = record.timestamp - incident["ingested_at_ms"]
                    seen.add(incident["source_key"])
    finally:
        reader.close()
    return list(latency.values())


@dataclass
class Target:
    """One side of the comparison: where readings go and where their rows appear."""

    topic: str
    table: str
    throughput: list[float] = field(default_factory=list)  # events/s per round
    publisher: list[float] = field(default_factory=list)  # events/s of the publisher alone

    @property
    def median(self) -> float:
        return statistics.median(self.throughput)


@dataclass(frozen=True)
class SensorBenchResult:
    """What one run measured, for the table and for tests."""

    pipeline: Target
    baseline: Target
    latency_ms: list[float]  # event → incident, one per incident of the alarm sensors
    alarm_sensors: int
    worker_processes: int = 1

    @property
    def ratio(self) -> float:
        return self.pipeline.median / self.baseline.median

    @property
    def per_worker(self) -> float:
        return self.pipeline.median / self.worker_processes

    @property
    def ratio_met(self) -> bool:
        return self.ratio >= TARGET_RATIO

    @property
    def rate_met(self) -> bool:
        return self.per_worker >= TARGET_EVENTS_S


@dataclass
class BenchRun:
    settings: Settings
    conn: psycopg.Connection
    alive: Callable[[], None]

    def throughput_round(self, target: Target, batch: list[Reading], since: datetime) -> None:
        expected = count_rows(self.conn, target.table, since) + sum(r.rows for r in batch)
        started, acked = run_async(publish_burst(self.settings, target.topic, batch))
        done = wait_rows(self.conn, target.table, since, expected, self.alive)
        target.throughput.append(len(batch) / (done - started))
        target.publisher.append(len(batch) / (acked - started))

    def steady_latencies(
        self, batch: list[Reading], since: datetime, alarms: set[str], rate: float
    ) -> list[float]:
        offsets = incident_offsets(self.settings)
        expected = count_rows(self.conn, "sensor_readings", since) + sum(r.rows for r in batch)
        messages = ((reading.key, reading.value) for reading in batch)
        run_async(publish(self.settings, topics.SENSOR_EVENTS, messages, rate))
        wait_rows(self.conn, "sensor_readings", since, expected, self.alive)
        return incident_latencies(self.settings, offsets, alarms, INCIDENT_WAIT_S)


def _check_alive(workers: Workers, baseline: BaseProcess) -> None:
    workers.check_alive()
    if not baseline.is_alive():
        raise StackError(f"the baseline consumer exited with {baseline.exitcode}")


def run_bench(
    count: int,
    rounds: int,
    sensors: int,
    rate: float,
    seconds: float,
    console: Console,
    workers: int = 1,
    partitions: int | None = None,
) -> SensorBenchResult:
    fleet = sensor_specs(sensors)
    alarms = sensor_specs(ALARM_SENSORS, ALARM_PREFIX, ("FloodMonitoring",))
    steady_count = max(1, round(rate * seconds))
    per_round, per_steady = (
        math.ceil(count / sensors) * REPORT_EVERY,
        math.ceil(steady_count / sensors),
    )
    # The last planned reading is observed now; every earlier one in order before it.
    steady_start = utc_now().replace(microsecond=0) - per_steady * REPORT_EVERY
    origin = steady_start - rounds * per_round
    pipeline = Target(topics.SENSOR_EVENTS, "sensor_readings")
    baseline = Target(BASELINE_TOPIC, BASELINE_TABLE)
    with tempfile.TemporaryDirectory(prefix="ioc-bench-") as root:
        registry = Path(root) / "sensors.toml"
        registry.write_text(registry_toml(fleet + alarms), encoding="utf-8")
        with (
            ephemeral_settings(
                Path(root), IOC_STREAMS__SENSOR_REGISTRY=str(registry), **partitions_env(partitions)
            ) as settings,
            bench_stack(settings, console, BASELINE_TOPIC, BASELINE_DDL, workers) as running,
            baseline_process(settings) as process,
            psycopg.connect(settings.database.dsn, autocommit=True) as conn,
            Progress(console=console, transient=True) as bar,
        ):
            bench = BenchRun(settings, conn, lambda: _check_alive(running, process))
            task = bar.add_task("bench", total=2 * rounds + 1)
            for index in range(rounds):  # alternate, so drift hits both sides
                since = origin + index * per_round
                batch = readings(fleet, count, since, f"round-{index}")
                for target in (baseline, pipeline):
                    bench.throughput_round(target, batch, since)
                    bar.advance(task)
            steady = steady_readings(fleet, alarms, steady_count, steady_start)
            since = steady_start - per_steady * ALARM_STEP  # before the alarms' first reading
            latency = bench.steady_latencies(steady, since, {a.id for a in alarms}, rate)
            bar.advance(task)
    result = SensorBenchResult(pipeline, baseline, latency, len(alarms))
    render(result, count, rounds, sensors, rate, seconds, workers, settings, console)
    return result


def partitions_env(partitions: int | None) -> dict[str, str]:
    return {} if partitions is None else {"IOC_KAFKA__PARTITIONS": str(partitions)}


def render(
    result: SensorBenchResult,
    count: int,
    rounds: int,
    sensors: int,
    rate: float,
    seconds: float,
    workers: int,
    settings: Settings,
    console: Console,
) -> None:
    pipeline, baseline = result.pipeline, result.baseline
    table = Table(
        "metric",
        "ioc pipeline (agent: rules, windows, rows)",
        "baseline (aiokafka + COPY)",
        "ratio",
        title=(
            f"ioc bench sensors · {count:,} readings of {sensors} sensors × {rounds} rounds;"
            f" latency at {rate:g}/s for {seconds:g} s; {workers} streams worker(s),"
            f" {settings.kafka.partitions} partitions"
        ),
    )
    table.add_row(
        "throughput, median events/s",
        f"{pipeline.median:,.0f}",
        f"{baseline.median:,.0f}",
        f"{result.ratio:.2f}×",
    )
    table.add_row(
        "throughput per round",
        ", ".join(f"{v:,.0f}" for v in pipeline.throughput),
        ", ".join(f"{v:,.0f}" for v in baseline.throughput),
        "",
    )
    table.add_row(
        "publisher alone, median events/s",
        f"{statistics.median(pipeline.publisher):,.0f}",
        f"{statistics.median(baseline.publisher):,.0f}",
        "",
    )
    latency = result.latency_ms
    for label, q in (("event → incident p50 ms", 0.5), ("event → incident p99 ms", 0.99)):
        table.add_row(label, f"{percentile(latency, q):,.1f}" if latency else "–", "–", "")
    table.add_row("incidents measured", f"{len(latency)}", "–", "")
    console.print(table)
    if not latency:
        console.print(
            f"[yellow]no incident arrived from the {result.alarm_sensors} alarm sensors:"
            " latency not measured[/]"
        )
    for met, text in (
        (result.ratio_met, f"pipeline ≥ {TARGET_RATIO:.0%} of the baseline ({result.ratio:.2f}×)"),
        (
            result.rate_met,
            f"≥ {TARGET_EVENTS_S:,} events/s per worker process ({result.per_worker:,.0f},"
            f" {result.worker_processes} process)",
        ),
    ):
        console.print(f"target {text}: " + ("[green]met[/]" if met else "[red]not met[/]"))
