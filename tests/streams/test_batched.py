"""The plain batched consumer (`ioc.streams.batched`) against the real broker: a batch is
committed only once its work returned, a failed batch is done again and never committed
unfinished, and a rebalance waits for the batch in progress, so no record is done by two members.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable, Sequence

import pytest
from aiokafka import ConsumerRecord, TopicPartition
from kafka import KafkaAdminClient, KafkaProducer
from kafka.admin import NewTopic

from ioc.config import Settings
from ioc.kafka import clients as kafka_clients
from ioc.streams.batched import BatchedConsumer, PartitionedWork

pytestmark = pytest.mark.integration

PARTITIONS = 2


class Recorded(PartitionedWork):
    """A flow that records what it was given, and can be held in the middle of a batch."""

    def __init__(self, failures: int = 0) -> None:
        self.done: list[tuple[int, int]] = []  # (partition, offset) in the order done
        self.events: list[str] = []
        self.failures = failures
        self.release = asyncio.Event()
        self.release.set()
        self.holding = asyncio.Event()

    async def assigned(self, partitions: set[int]) -> None:
        self.events.append(f"assigned {sorted(partitions)}")

    async def revoked(self, partitions: set[int]) -> None:
        self.events.append(f"revoked {sorted(partitions)}")

    async def process(self, records: Sequence[ConsumerRecord]) -> None:
        if self.failures:
            self.failures -= 1
            raise RuntimeError("the database is gone for a moment")
        self.holding.set()
        await self.release.wait()
        self.done.extend((record.partition, record.offset) for record in records)
        self.events.append(f"done {len(records)}")


class Topic:
    def __init__(self, settings: Settings) -> None:
        run = uuid.uuid4().hex[:8]
        self.kafka = settings.kafka
        self.name = f"batched.readings.{run}"
        self.group = f"ioc-batched-{run}"
        admin = KafkaAdminClient(bootstrap_servers=settings.kafka.bootstrap_servers)
        admin.create_topics([NewTopic(self.name, PARTITIONS, 1)])
        admin.close()
        self.producer = KafkaProducer(bootstrap_servers=settings.kafka.bootstrap_servers)

    def send(self, count: int, start: int = 0) -> None:
        for index in range(start, start + count):
            self.producer.send(self.name, str(index).encode(), partition=index % PARTITIONS)
        self.producer.flush()

    def consumer(self, flow: Recorded) -> BatchedConsumer:
        return BatchedConsumer(self.kafka, self.group, self.name, flow, "test", 1000, 0.05)

    async def committed_to(self, expected: dict[int, int], timeout_s: float = 30.0) -> None:
        deadline = asyncio.get_running_loop().time() + timeout_s
        while (found := await self.committed()) != expected:
            if asyncio.get_running_loop().time() > deadline:
                raise AssertionError(f"committed {found}, expected {expected}")
            await asyncio.sleep(0.2)

    async def committed(self) -> dict[int, int | None]:
        reader = kafka_clients.consumer(self.kafka, self.group)
        await reader.start()
        try:
            return {
                p: await reader.committed(TopicPartition(self.name, p)) for p in range(PARTITIONS)
            }
        finally:
            await reader.stop()


async def until(probe: Callable[[], bool], timeout_s: float = 60.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout_s
    while not probe():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("timed out")
        await asyncio.sleep(0.05)


@pytest.fixture
def topic(live_stack: Settings) -> Topic:
    return Topic(live_stack)


def test_a_batch_is_committed_only_after_its_work_returns(topic: Topic) -> None:
    async def scenario() -> None:
        flow = Recorded()
        flow.release.clear()
        topic.send(10)
        consumer = topic.consumer(flow)
        consumer.start()
        try:
            await until(flow.holding.is_set)
            await asyncio.sleep(1.0)  # long enough for any eager commit to land
            assert await topic.committed() == {0: None, 1: None}
            flow.release.set()
            await until(lambda: len(flow.done) == 10)
            await topic.committed_to({0: 5, 1: 5})
        finally:
            await consumer.stop()

    asyncio.run(scenario())


def test_a_failed_batch_is_done_again_and_committed_once_done(topic: Topic) -> None:
    async def scenario() -> None:
        flow = Recorded(failures=2)
        topic.send(6)
        consumer = topic.consumer(flow)
        consumer.start()
        try:
            await until(lambda: len(flow.done) == 6)
            assert flow.failures == 0
            assert sorted(flow.done) == [(0, 0), (0, 1), (0, 2), (1, 0), (1, 1), (1, 2)]
        finally:
            await consumer.stop()
        assert await topic.committed() == {0: 3, 1: 3}  # stop waits for the loop's commit

    asyncio.run(scenario())


def test_a_rebalance_waits_for_the_batch_in_progress_and_no_record_is_done_twice(
    topic: Topic,
) -> None:
    async def scenario() -> None:
        first, second = Recorded(), Recorded()
        first.release.clear()
        topic.send(20)
        one = topic.consumer(first)
        one.start()
        two = topic.consumer(second)
        try:
            await until(first.holding.is_set)
            two.start()  # joins the group while the first member is in the middle of a batch
            await asyncio.sleep(3.0)
            assert "revoked [0, 1]" not in first.events  # held by the batch in progress
            first.release.set()
            await until(lambda: any(event.startswith("assigned [") for event in second.events))
            topic.send(20, start=20)
            await until(lambda: len(first.done) + len(second.done) == 40)
            await asyncio.sleep(1.0)  # anything done twice would show by now
        finally:
            await two.stop()
            await one.stop()
        done = first.done + second.done
        assert len(done) == len(set(done)) == 40
        # The first member finished and committed its batch before giving up its partitions.
        assert first.events.index("done 20") < first.events.index("revoked [0, 1]")

    asyncio.run(scenario())
