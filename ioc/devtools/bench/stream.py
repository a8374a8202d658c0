"""`ioc bench stream`: what the streams worker's two runtimes cost, against a plain aiokafka
consume → produce loop doing the same work on the same messages, in the same run, on an
ephemeral Kafka of its own (no database: nothing in the measured path writes to one).

Every agent of the streams app stores what it validated, so none runs without PostgreSQL. The
bench therefore runs the hotline intake step on its own, on each runtime: a Faust app configured
as `create_app` configures the worker (the runtime of fusion, the camera rules and the dead
letters), and `ioc.streams.batched` (the runtime of the tickets and sensor readings). Each reads
raw bytes, validates each as a `Ticket` and forwards it, or dead-letters it with the reason and
the reporter's contact redacted. That decode → validate → route step is shared with the baseline
(`route`), so the difference is the runtime: consumer, producer, offset commits, against
aiokafka used directly (commit after each fetch once its outputs are acknowledged). Each side
runs in a process of its own, like the streams worker, on topics of its own.

Throughput: N tickets (one in `BAD_EVERY` malformed) published as fast as the client can while
every consumer runs; the figure is N / (time from the first publish until N messages are on the
side's output and dead-letter topics), median over rounds, the sides' order rotating so drift
hits each. A warm-up batch per side first (group join, first fetches) is not counted.
"""

from __future__ import annotations

import asyncio
import json
import logging
import multiprocessing
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from multiprocessing.process import BaseProcess
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaProducer, ConsumerRecord
from pydantic import ValidationError
from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from ioc.config import KafkaSettings, Settings
from ioc.devtools.bench.common import ephemeral_settings
from ioc.devtools.bench.sensors import Reading, publish_burst
from ioc.devtools.bench.tickets import synthetic_tickets
from ioc.devtools.stack.kafka import KafkaService
from ioc.devtools.stack.process import StackError
from ioc.hotline.privacy import redact_ticket_bytes
from ioc.kafka import clients as kafka_clients
from ioc.kafka.clients import MAX_MESSAGE_BYTES, consumer, faust_credentials, producer
from ioc.kafka.dlq import DeadLetter, SourceRecord, describe_validation_error
from ioc.models import Ticket
from ioc.runtime import run_async
from ioc.streams.batched import PartitionedWork

CONSUMER = "bench-stream"
BAD_EVERY = 20  # one ticket in 20 is malformed and goes to the dead-letter topic
WARM_UP = 500
STALL_S = 60.0  # no new output for this long: the consumer is stuck
POLL_S = 0.02


@dataclass(frozen=True)
class SideTopics:
    """One side's input, output and dead-letter topics."""

    source: str
    output: str
    dlq: str

    @property
    def all(self) -> tuple[str, str, str]:
        return self.source, self.output, self.dlq


FAUST_TOPICS = SideTopics(
    "bench.stream.faust.in", "bench.stream.faust.out", "bench.stream.faust.dlq"
)
PLAIN_TOPICS = SideTopics(
    "bench.stream.plain.in", "bench.stream.plain.out", "bench.stream.plain.dlq"
)
BATCHED_TOPICS = SideTopics(
    "bench.stream.batched.in", "bench.stream.batched.out", "bench.stream.batched.dlq"
)
SIDES = (FAUST_TOPICS, BATCHED_TOPICS, PLAIN_TOPICS)


def route(record: SourceRecord) -> tuple[bool, bytes | None, list[tuple[str, bytes]]]:
    """The step both sides run: (valid, value to send, headers). A valid ticket is forwarded as
    it came; a malformed one becomes a dead letter with the reason, its contact redacted."""
    try:
        Ticket.model_validate_json(record.value or b"")
    except ValidationError as error:
        letter = DeadLetter.of(record, describe_validation_error(error), CONSUMER)
        letter = replace(letter, value=redact_ticket_bytes(letter.value))
        return False, letter.value, letter.headers()
    return True, record.value, []


async def send_routed(
    writer: AIOKafkaProducer, side: SideTopics, record: SourceRecord
) -> asyncio.Future[Any]:
    """`route` a record and send it to the side's output or dead-letter topic, as aiokafka
    sides do; the delivery to await."""
    valid, value, headers = route(record)
    if valid:
        return await writer.send(side.output, key=record.key, value=value)
    return await writer.send(side.dlq, key=side.source.encode(), value=value, headers=headers)


def bench_messages(count: int, seed: str) -> list[Reading]:
    """`count` synthetic tickets, every `BAD_EVERY`-th malformed (outside the country)."""
    out = []
    for index, ticket in enumerate(synthetic_tickets(count, seed)):
        if index % BAD_EVERY == BAD_EVERY - 1:
            ticket["lat"] = 0.0
        key = ticket["service_request_id"].encode()
        out.append(Reading(key, json.dumps(ticket, ensure_ascii=False).encode(), 1))
    return out


def rejected_count(count: int) -> int:
    return count // BAD_EVERY


# --- The two sides, each in a process of its own -------------------------------------------------


def _faust_main(kafka: KafkaSettings, datadir: str) -> None:
    """The Faust side: one agent, the app configured as the streams worker's."""
    import faust

    from ioc.config import StreamsSettings
    from ioc.streams.acks import acknowledge_batches, one_by_one
    from ioc.streams.app import broker_url
    from ioc.streams.consumer import consume_at_least_once
    from ioc.streams.context import raw_topic

    logging.disable(logging.WARNING)  # a warning per dead letter, on both sides
    app = faust.App(
        "ioc-bench-stream",
        broker=broker_url(kafka.bootstrap_servers),
        broker_credentials=faust_credentials(kafka),
        store="memory://",
        autodiscover=False,
        datadir=datadir,
        topic_partitions=kafka.partitions,
        topic_replication_factor=kafka.replication_factor,
        consumer_auto_offset_reset="earliest",
        broker_commit_interval=1.0,
        producer_acks=-1,
        producer_max_request_size=MAX_MESSAGE_BYTES + 64 * 1024,
        web_enabled=False,
    )
    consume_at_least_once(app)
    source = raw_topic(app, FAUST_TOPICS.source)
    output = raw_topic(app, FAUST_TOPICS.output)
    dlq = raw_topic(app, FAUST_TOPICS.dlq)

    async def route_one(event: faust.EventT) -> None:
        valid, value, headers = route(event.message)
        if valid:
            await output.send(key=event.key, value=value)
        else:
            await dlq.send(key=FAUST_TOPICS.source.encode(), value=value, headers=headers)

    async def intake(stream: faust.StreamT[Any]) -> None:
        """Acknowledged as the streams worker's agents are (`ioc.streams.acks`)."""
        settings = StreamsSettings()
        await acknowledge_batches(
            stream,
            one_by_one(route_one),
            "bench",
            settings.event_batch_size,
            settings.event_batch_wait_s,
        )

    app.agent(source, name="ioc.devtools.bench.stream")(intake)
    faust.Worker(app, loglevel="error", quiet=True).execute_from_commandline()


async def plain_loop(kafka: KafkaSettings) -> None:
    """The baseline: consume, `route` each record, produce, await the acks, commit; until
    SIGTERM."""
    logging.disable(logging.WARNING)
    reader = consumer(kafka, CONSUMER, PLAIN_TOPICS.source)
    writer = producer(kafka, CONSUMER)
    await reader.start()
    await writer.start()
    try:
        while True:
            batches = await reader.getmany(timeout_ms=100)
            pending = []
            for record in (record for records in batches.values() for record in records):
                pending.append(await send_routed(writer, PLAIN_TOPICS, record))
            if pending:
                await asyncio.gather(*pending)
                await reader.commit()
    finally:
        await writer.stop()
        await reader.stop()


def _plain_main(kafka: KafkaSettings) -> None:
    run_async(plain_loop(kafka))


class RoutedBatches(PartitionedWork):
    """The batched side's work: `route` each record of a fetch, produce, await the acks."""

    def __init__(self, writer: AIOKafkaProducer) -> None:
        self.writer = writer

    async def process(self, records: Sequence[ConsumerRecord]) -> None:
        pending = [await send_routed(self.writer, BATCHED_TOPICS, record) for record in records]
        await asyncio.gather(*pending)


async def batched_loop(kafka: KafkaSettings) -> None:
    """ioc's path for its busy flows (`ioc.streams.batched`: tickets, sensor readings), with the
    batch sizes the streams worker uses for tickets; until SIGTERM."""
    from ioc.config import StreamsSettings
    from ioc.streams.batched import BatchedConsumer

    logging.disable(logging.WARNING)
    settings = StreamsSettings()
    writer = producer(kafka, f"{CONSUMER}-batched")
    await writer.start()
    batched = BatchedConsumer(
        kafka,
        f"{CONSUMER}-batched",
        BATCHED_TOPICS.source,
        RoutedBatches(writer),
        "bench",
        settings.event_batch_size,
        settings.event_batch_wait_s,
    )
    batched.start()
    try:
        await asyncio.Event().wait()
    finally:
        await batched.stop()
        await writer.stop()


def _batched_main(kafka: KafkaSettings) -> None:
    run_async(batched_loop(kafka))


@contextmanager
def side_process(
    target: Callable[..., None], args: tuple[Any, ...], name: str
) -> Iterator[BaseProcess]:
    """`target` in a spawned process for the whole bench; SIGTERM (Faust's clean stop), then
    SIGKILL if it does not go."""
    process = multiprocessing.get_context("spawn").Process(
        target=target, args=args, name=name, daemon=True
    )
    process.start()
    try:
        yield process
    finally:
        process.terminate()
        process.join(timeout=30)
        if process.is_alive():
            process.kill()
            process.join()


def create_topics(settings: Settings) -> None:
    from kafka.admin import NewTopic

    admin = kafka_clients.admin(settings.kafka, "ioc-bench-stream")
    try:
        admin.create_topics(
            [
                NewTopic(name, settings.kafka.partitions, settings.kafka.replication_factor)
                for side in SIDES
                for name in side.all
            ]
        )
    finally:
        admin.close()


# --- The run -------------------------------------------------------------------------------------


@dataclass
class Side:
    """One side of the comparison and its messages/s per round."""

    label: str
    topics: SideTopics
    process: BaseProcess
    throughput: list[float] = field(default_factory=list)
    publisher: list[float] = field(default_factory=list)  # messages/s of the publisher alone

    @property
    def median(self) -> float:
        return statistics.median(self.throughput)


@dataclass(frozen=True)
class StreamBenchResult:
    """What one run measured, for the table, `ioc bench all` and tests."""

    count: int
    rounds: int
    faust: list[float]  # messages/s per round
    batched: list[float]
    plain: list[float]
    faust_publisher: list[float]
    batched_publisher: list[float]
    plain_publisher: list[float]
    dead_letters: int  # per round and side

    @property
    def faust_median(self) -> float:
        return statistics.median(self.faust)

    @property
    def batched_median(self) -> float:
        return statistics.median(self.batched)

    @property
    def plain_median(self) -> float:
        return statistics.median(self.plain)

    @property
    def ratio(self) -> float:
        return self.faust_median / self.plain_median

    @property
    def batched_ratio(self) -> float:
        return self.batched_median / self.plain_median


class OutputCounter:
    """Messages on a side's output and dead-letter topics, from the end offsets."""

    def __init__(self, settings: Settings) -> None:
        from kafka import TopicPartition

        self.reader = kafka_clients.reader(settings.kafka)
        self.partitions = {
            side: [
                TopicPartition(name, partition)
                for name in (side.output, side.dlq)
                for partition in range(settings.kafka.partitions)
            ]
            for side in SIDES
        }

    def count(self, side: SideTopics) -> int:
        return sum(self.reader.end_offsets(self.partitions[side]).values())

    def wait_for(self, side: Side, expected: int) -> float:
        """Monotonic time at which `expected` messages are out; raises if the side stalls."""
        seen, progressed_at = -1, time.monotonic()
        while True:
            counted, now = self.count(side.topics), time.monotonic()
            if counted >= expected:
                return now
            if counted > seen:
                seen, progressed_at = counted, now
            elif now - progressed_at > STALL_S:
                raise StackError(
                    f"{side.label}: {counted:,} of {expected:,} messages out,"
                    f" none new for {STALL_S:.0f}s"
                )
            if not side.process.is_alive():
                raise StackError(f"{side.label} exited with {side.process.exitcode}")
            time.sleep(POLL_S)

    def close(self) -> None:
        self.reader.close()


def one_round(settings: Settings, counter: OutputCounter, side: Side, batch: list[Reading]) -> None:
    expected = counter.count(side.topics) + len(batch)
    started, acked = run_async(publish_burst(settings, side.topics.source, batch))
    done = counter.wait_for(side, expected)
    side.throughput.append(len(batch) / (done - started))
    side.publisher.append(len(batch) / (acked - started))


@contextmanager
def kafka_only(settings: Settings, console: Console) -> Iterator[None]:
    """An ephemeral Kafka with the bench's topics; stopped afterwards."""
    kafka = KafkaService(settings.stack, settings.kafka)
    with console.status("starting an ephemeral Kafka…"):
        settings.stack.dir.mkdir(parents=True, exist_ok=True)
        kafka.up()
    try:
        create_topics(settings)
        yield
    finally:
        kafka.down()


def run_bench(count: int, rounds: int, console: Console) -> StreamBenchResult:
    with (
        tempfile.TemporaryDirectory(prefix="ioc-bench-stream-") as root,
        ephemeral_settings(Path(root)) as settings,
        kafka_only(settings, console),
        side_process(_faust_main, (settings.kafka, root), "ioc-bench-faust") as faust_process,
        side_process(_batched_main, (settings.kafka,), "ioc-bench-batched") as batched_process,
        side_process(_plain_main, (settings.kafka,), "ioc-bench-plain") as plain_process,
        Progress(console=console, transient=True) as bar,
    ):
        counter = OutputCounter(settings)
        faust = Side("the Faust agent", FAUST_TOPICS, faust_process)
        batched = Side("the batched consumer", BATCHED_TOPICS, batched_process)
        plain = Side("the plain aiokafka loop", PLAIN_TOPICS, plain_process)
        sides = [plain, faust, batched]
        try:
            task = bar.add_task("bench stream", total=len(sides) * rounds + 1)
            warm = bench_messages(WARM_UP, "warm-up")
            for side in sides:  # group joins and first fetches, not counted
                one_round(settings, counter, side, warm)
                side.throughput.clear()
                side.publisher.clear()
            bar.advance(task)
            for index in range(rounds):  # rotate the order, so drift hits every side
                batch = bench_messages(count, f"round-{index}")
                for side in sides[index % 3 :] + sides[: index % 3]:
                    one_round(settings, counter, side, batch)
                    bar.advance(task)
        finally:
            counter.close()
    result = StreamBenchResult(
        count,
        rounds,
        faust.throughput,
        batched.throughput,
        plain.throughput,
        faust.publisher,
        batched.publisher,
        plain.publisher,
        rejected_count(count),
    )
    render(result, console)
    return result


def render(result: StreamBenchResult, console: Console) -> None:
    table = Table(
        "metric",
        "Faust agent (fusion, cameras, dead letters)",
        "batched consumer (tickets, sensors)",
        "baseline (plain aiokafka loop)",
        "Faust / plain",
        "batched / plain",
        title=(
            f"ioc bench stream · {result.count:,} tickets × {result.rounds} rounds,"
            f" {result.dead_letters:,} of them malformed each round; each side validates,"
            " forwards or dead-letters"
        ),
    )
    table.add_row(
        "throughput, median messages/s",
        f"{result.faust_median:,.0f}",
        f"{result.batched_median:,.0f}",
        f"{result.plain_median:,.0f}",
        f"{result.ratio:.2f}×",
        f"{result.batched_ratio:.2f}×",
    )
    table.add_row(
        "throughput per round",
        ", ".join(f"{v:,.0f}" for v in result.faust),
        ", ".join(f"{v:,.0f}" for v in result.batched),
        ", ".join(f"{v:,.0f}" for v in result.plain),
        "",
        "",
    )
    table.add_row(
        "publisher alone, median messages/s",
        f"{statistics.median(result.faust_publisher):,.0f}",
        f"{statistics.median(result.batched_publisher):,.0f}",
        f"{statistics.median(result.plain_publisher):,.0f}",
        "",
        "",
    )
    console.print(table)
