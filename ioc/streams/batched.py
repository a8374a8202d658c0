"""A plain aiokafka consumer inside the streams worker, for its high-volume keyed topic (sensor
readings): fetch a batch, do all of it, then commit it.

Why not a Faust agent: Faust costs about 300 µs per event whatever the agent does (a stream
iterator, four tasks per message in `wait_first`, the conductor, the ack bookkeeping), which
capped the readings at about 3,300/s on two cores while the rules themselves take a third of
that (the profile is in the README's Benchmarks section). Here the whole fetch goes through the
flow at once, and the commit follows the batch's writes.

At-least-once, as the Faust agents (`ioc.streams.acks`): offsets are committed only after the
batch's work returned, and a batch whose work raises is retried, never committed unfinished.

A rebalance never lets two members apply the same partition's records on different states: the
revocation waits for the batch in progress (it holds the same lock), and a batch whose fetch a
revocation overlapped is dropped unprocessed: its records are read again, by whichever member
owns the partition now.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from abc import ABC, abstractmethod
from collections.abc import Sequence

from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, ConsumerRecord, TopicPartition
from aiokafka.errors import CommitFailedError, IllegalStateError

from ioc import metrics
from ioc.config import KafkaSettings
from ioc.kafka import clients as kafka_clients
from ioc.streams.acks import RETRY_MAX_S, until_done

log = logging.getLogger(__name__)

RETRY_FIRST_S = 0.5


class PartitionedWork(ABC):
    """What a batched consumer drives: batches of records, and partitions coming and going
    (a flow that keeps state per partition loads and forgets it there)."""

    async def assigned(self, partitions: set[int]) -> None:
        """Partitions this member now owns; their first batch comes after this. Nothing to do
        for a flow without state per partition."""
        return None

    async def revoked(self, partitions: set[int]) -> None:
        """Partitions another member will own: forget what is cached for them."""
        return None

    @abstractmethod
    async def process(self, records: Sequence[ConsumerRecord]) -> None:
        """A batch, in offset order per partition; raises only when it could not be done."""


class BatchedConsumer(ConsumerRebalanceListener):
    def __init__(
        self,
        kafka: KafkaSettings,
        group_id: str,
        topic: str,
        work: PartitionedWork,
        what: str,
        max_records: int,
        wait_s: float,
    ) -> None:
        self.kafka = kafka
        self.group_id = group_id
        self.consumer: AIOKafkaConsumer | None = None  # made on start: it needs the running loop
        self.topic = topic
        self.work = work
        self.what = what
        self.max_records = max_records
        self.wait_ms = max(1, int(wait_s * 1000))
        self._batch = asyncio.Lock()
        self._generation = 0  # a revocation since a batch was fetched makes that batch stale
        self._task: asyncio.Task[None] | None = None

    # --- aiokafka's rebalance listener ----------------------------------------------------------

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        async with self._batch:  # the batch in progress ends, and commits, first
            self._generation += 1
            await self.work.revoked({tp.partition for tp in revoked})

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        await self.work.assigned({tp.partition for tp in assigned})

    # --- The loop -------------------------------------------------------------------------------

    def start(self) -> None:
        self.consumer = kafka_clients.consumer(self.kafka, self.group_id)
        self._task = asyncio.get_running_loop().create_task(self._run(self.consumer))

    async def stop(self) -> None:
        """Cancel the loop (an unfinished batch is not committed: it is fetched again) and leave
        the group."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self.consumer is not None:
            await self.consumer.stop()

    async def _run(self, consumer: AIOKafkaConsumer) -> None:
        """Never ends but by `stop`: a failure to join or fetch (Kafka restarting) is logged
        and tried again, like every agent's (an agent never crashes)."""
        consumer.subscribe([self.topic], listener=self)
        delay, started = RETRY_FIRST_S, False
        while True:
            try:
                if not started:
                    await consumer.start()
                    started = True
                await self._next_batch(consumer)
                delay = RETRY_FIRST_S
            except Exception:
                log.exception("%s: consuming failed; trying again in %.1f s", self.what, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, RETRY_MAX_S)

    async def _next_batch(self, consumer: AIOKafkaConsumer) -> None:
        generation = self._generation
        fetched = await consumer.getmany(timeout_ms=self.wait_ms, max_records=self.max_records)
        if not fetched:
            return
        async with self._batch:
            if generation != self._generation:
                self._drop(consumer, fetched)
                return
            await self._do(consumer, fetched)

    def _drop(
        self, consumer: AIOKafkaConsumer, fetched: dict[TopicPartition, list[ConsumerRecord]]
    ) -> None:
        """A batch fetched across a rebalance: the partitions still ours are read again from its
        first record (the fetch may have begun under the new assignment: the position is past
        it already), the others by their new owner from the committed offset."""
        owned = consumer.assignment()
        for tp, records in fetched.items():
            if tp in owned:
                consumer.seek(tp, records[0].offset)
        log.info("%s: a batch fetched across a rebalance is dropped, to be read again", self.what)

    async def _do(
        self, consumer: AIOKafkaConsumer, fetched: dict[TopicPartition, list[ConsumerRecord]]
    ) -> None:
        started = time.perf_counter()
        records = [record for batch in fetched.values() for record in batch]
        await until_done(self.work.process, records, self.what)
        offsets = {tp: batch[-1].offset + 1 for tp, batch in fetched.items()}
        try:
            await consumer.commit(offsets)
        except (CommitFailedError, IllegalStateError) as error:
            # The group moved on without this member (it was too slow, or kicked out): the
            # records are done and stored, and the partition's next owner does them again.
            log.warning("%s: commit refused after a rebalance (%s)", self.what, error)
        metrics.batch_done(self.what, len(records), started)


__all__ = ["BatchedConsumer", "PartitionedWork"]
