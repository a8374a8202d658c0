"""A keyed-state flow (`ioc.streams.keyed`) driven by a batched consumer (`ioc.streams.batched`),
its device states in the database (table `flow_states`, one row per device).

Per batch: the states of newly assigned partitions are read, the flow judges the whole fetch, the
flow's output is stored (the agent's `store`), then the states the batch changed are written, all
before the consumer commits. A crash anywhere before the commit replays the batch from the
states before it. Bad messages and a batch given up on go to the dead letters, never ticks: a
tick is judged again by the next one.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Generic, TypeVar

from aiokafka import ConsumerRecord

from ioc.retry import retried
from ioc.streams.batched import PartitionedWork
from ioc.streams.context import StreamContext, gave_up, record_message
from ioc.streams.keyed import FlowOutput, KeyedFlow, is_tick

log = logging.getLogger(__name__)

Out = TypeVar("Out", bound=FlowOutput[Any])


class KeyedWork(PartitionedWork, Generic[Out]):
    """One keyed flow's batches, stores and states; `stored` is the flow's `stored_state`."""

    def __init__(
        self,
        ctx: StreamContext,
        flow: KeyedFlow[Any, Any, Any, Out],
        group: str,
        consumer: str,
        store: Callable[[Out], Awaitable[None]],
        stored: dict[str, bytes],
    ) -> None:
        self.ctx = ctx
        self.flow = flow
        self.group = group
        self.consumer = consumer
        self.store = store
        self.stored = stored  # the database's states of the partitions this worker owns
        self.unloaded: set[int] = set()

    async def assigned(self, partitions: set[int]) -> None:
        self.unloaded |= partitions

    async def revoked(self, partitions: set[int]) -> None:
        self.unloaded -= partitions
        keys = self.flow.keys_in(partitions)
        self.flow.forget(keys)
        for key in keys:
            self.stored.pop(key, None)

    async def process(self, records: Sequence[ConsumerRecord]) -> None:
        if self.unloaded:  # raises while the database is down: the batch is tried again
            self.stored.update(
                await self.ctx.store.flow_states(self.group, self.flow.keys_in(self.unloaded))
            )
            self.unloaded.clear()
        output = self.flow.process(map(record_message, records))
        states = {key: state.model_dump_json() for key, state in output.changed.items()}

        async def store_output() -> None:
            await self.store(output)
            await self.ctx.store.save_flow_states(self.group, states)

        reasons = dict(output.rejected)
        failure = await retried(store_output, self.consumer)
        if failure is None:
            self.stored.update((key, state.encode()) for key, state in states.items())
        else:
            log.error(
                "giving up on a batch of %d %s messages",
                len(records),
                self.consumer,
                exc_info=failure,
            )
            self.flow.forget(output.changed)  # the stored states are the ones before it
            reasons = {
                index: reasons.get(index, gave_up(failure))
                for index, record in enumerate(records)
                if not is_tick(record.headers)
            }
        for index, reason in reasons.items():
            await self.ctx.dead_letter(records[index], reason, self.consumer)


__all__ = ["KeyedWork"]
