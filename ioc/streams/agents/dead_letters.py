"""The dead letters agent: each dead letter as a row for the walls (its bytes stay on the topic).
A failure here is retried, never dead-lettered: that would feed the DLQ to itself."""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial

import faust

from ioc.kafka.dlq import RecordedDeadLetter
from ioc.streams.context import StreamContext, ingested_ms


def register(ctx: StreamContext) -> None:
    async def record(events: Sequence[faust.EventT]) -> None:
        letters = [
            RecordedDeadLetter.of(
                event.message.partition,
                event.message.offset,
                ingested_ms(event),
                event.message.headers or (),
                event.value,
            )
            for event in events
        ]
        await ctx.until_stored(partial(ctx.store.record_dead_letters, letters), "dead letters")

    ctx.agent(ctx.topics.dlq, "dead-letters", record, 1000, 1.0)
