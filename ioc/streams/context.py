"""What every agent and timer of the streams app shares: the store, the topics, and the one way
each of them dead-letters a message, raises an incident and publishes incident versions.

Every agent reads raw bytes, so a malformed message can never crash it: validation happens in
the agent, and what fails goes to `ioc.dlq` with the reason (`StreamContext.handle`). A source
agent stores its candidate incident, then announces it to fusion (`raise_incident`), so an alert
never refers to an incident the walls cannot show.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import faust
from aiokafka import ConsumerRecord
from psycopg import DataError
from pydantic import ValidationError

from ioc import metrics
from ioc.config import Settings
from ioc.hotline.privacy import redact_ticket_bytes
from ioc.incidents.messages import to_alerting, to_fusion
from ioc.kafka import topics
from ioc.kafka.dlq import DeadLetter, SourceRecord, describe_validation_error
from ioc.models import FusedIncident, Incident
from ioc.retry import ATTEMPTS, retried
from ioc.store.writer import Store
from ioc.streams.acks import BatchWork, EventWork, acknowledge_batches
from ioc.streams.batched import BatchedConsumer, PartitionedWork
from ioc.streams.keyed import Message, is_tick

log = logging.getLogger(__name__)

EventProcess = Callable[[faust.EventT], Awaitable[None]]


class Rejected(Exception):
    """The message is permanently bad; its reason goes to the dead-letter topic."""


def ingested_ms(event: faust.EventT) -> int:
    return int(event.message.timestamp * 1000)


def gave_up(error: BaseException) -> str:
    return f"processing failed {ATTEMPTS}x: {error!r}"


def record_message(record: ConsumerRecord) -> Message:
    """What a keyed flow needs of a record a plain consumer fetched (`ioc.streams.batched`)."""
    return Message(
        value=record.value or b"",
        partition=record.partition,
        offset=record.offset,
        timestamp_ms=record.timestamp,
        tick=is_tick(record.headers),
    )


def raw_topic(app: faust.App, name: str) -> faust.TopicT:
    return app.topic(
        name, key_type=bytes, value_type=bytes, key_serializer="raw", value_serializer="raw"
    )


@dataclass(frozen=True)
class StreamTopics:
    """The topics the Faust app reads or writes, as raw bytes: every agent validates."""

    sensors: faust.TopicT  # written only (clock ticks, camera traffic counts)
    detections: faust.TopicT
    candidates: faust.TopicT
    incidents: faust.TopicT
    dlq: faust.TopicT

    @classmethod
    def of(cls, app: faust.App, settings: Settings) -> StreamTopics:
        name = settings.kafka.topic
        return cls(
            sensors=raw_topic(app, name(topics.SENSOR_EVENTS)),
            detections=raw_topic(app, name(topics.VISION_DETECTIONS)),
            candidates=raw_topic(app, name(topics.INCIDENT_CANDIDATES)),
            incidents=raw_topic(app, name(topics.INCIDENTS)),
            dlq=raw_topic(app, name(topics.DLQ)),
        )


@dataclass
class StreamContext:
    """Built once per worker by `ioc.streams.app.create_app` and handed to every agent's and
    timer's `register`; `closers` run at shutdown, before the store closes."""

    app: faust.App
    settings: Settings
    store: Store
    topics: StreamTopics
    closers: list[Callable[[], Awaitable[None]]] = field(default_factory=list)

    # --- Registration -------------------------------------------------------------------------

    def agent(
        self,
        topic: faust.TopicT,
        name: str,
        work: BatchWork,
        size: int | None = None,
        wait_s: float | None = None,
    ) -> None:
        """An agent whose batches are acknowledged once all of each is done (see `acks`)."""
        streams = self.settings.streams
        batch = streams.event_batch_size if size is None else size
        wait = streams.event_batch_wait_s if wait_s is None else wait_s

        async def run(stream: faust.StreamT[Any]) -> None:
            await acknowledge_batches(stream, work, name, batch, wait)

        self.app.agent(topic, name=f"ioc.streams.{name}")(run)

    def batched(
        self,
        topic: str,
        group_id: str,
        work: PartitionedWork,
        what: str,
        max_records: int,
        wait_s: float,
    ) -> None:
        """A plain consumer group of its own, started with the app and stopped before the store
        closes: for a flow too busy for Faust's per-event cost (see `ioc.streams.batched`)."""
        consumer = BatchedConsumer(
            self.settings.kafka,
            group_id,
            topic,
            work,
            what,
            max_records,
            wait_s,
        )

        @self.app.task
        async def start() -> None:
            consumer.start()

        self.closers.insert(0, consumer.stop)

    def timer(
        self, interval: float, on_leader: bool = False
    ) -> Callable[[Callable[[], Awaitable[None]]], Any]:
        """Faust's timer; none in a replay sandbox, where the recording's own clock ticks and
        event times stand in for the wall clock (`streams.wall_clock_timers`)."""
        if self.settings.streams.wall_clock_timers:
            return self.app.timer(interval=interval, on_leader=on_leader)
        return lambda function: function

    def each_event(self, consumer: str, process: EventProcess) -> EventWork:
        async def handled(event: faust.EventT) -> None:
            await self.handle(event.message, consumer, lambda: process(event))

        return handled

    # --- What agents do -----------------------------------------------------------------------

    async def handle(
        self, record: SourceRecord, consumer: str, process: Callable[[], Awaitable[None]]
    ) -> None:
        """Process one record; bad input and exhausted retries become dead letters, never a
        crash."""
        try:
            failure = await retried(
                process, consumer, permanent=(Rejected, ValidationError, DataError)
            )
        except Rejected as error:
            await self.dead_letter(record, str(error), consumer)
            return
        except DataError as error:  # the values, not the database: it would refuse them again
            await self.dead_letter(record, f"refused by the database: {error}", consumer)
            return
        except ValidationError as error:
            await self.dead_letter(record, describe_validation_error(error), consumer)
            return
        if failure is not None:
            log.error("giving up on %s@%s", record.topic, record.offset, exc_info=failure)
            await self.dead_letter(record, gave_up(failure), consumer)

    async def dead_letter(self, record: SourceRecord, reason: str, consumer: str) -> None:
        letter = DeadLetter.of(record, reason, consumer)
        if letter.source_topic == self.settings.kafka.topic(topics.HOTLINE_TICKETS):
            letter = replace(letter, value=redact_ticket_bytes(letter.value))  # contact stays
        await self.topics.dlq.send(
            key=letter.source_topic.encode(), value=letter.value, headers=letter.headers()
        )
        metrics.dead_lettered(consumer)

    async def announce(self, incident: Incident) -> None:
        """To fusion, once stored. A crash before this leaves the candidate unfused, and the
        incidents timer (`ioc.streams.timers`) publishes it again."""
        message = to_fusion(self.settings, incident)
        await self.topics.candidates.send(key=message.key, value=message.value)

    async def raise_incident(self, incident: Incident) -> None:
        await self.store.upsert_incident(incident)
        await self.announce(incident)

    async def publish(self, versions: Sequence[FusedIncident]) -> None:
        for version in versions:
            message = to_alerting(self.settings, version)
            await self.topics.incidents.send(key=message.key, value=message.value)

    async def until_stored(self, write: Callable[[], Awaitable[None]], what: str) -> None:
        """Retry a write until it is stored: for what must never be dead-lettered."""
        delay = 0.5
        while True:
            try:
                await write()
                return
            except Exception:
                log.exception("storing %s failed; retrying in %.1f s", what, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 30.0)

    async def close(self) -> None:
        for close in self.closers:
            await close()
        await self.store.close()


__all__ = [
    "EventProcess",
    "Rejected",
    "StreamContext",
    "StreamTopics",
    "gave_up",
    "ingested_ms",
    "raw_topic",
    "record_message",
]
