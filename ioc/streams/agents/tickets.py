"""The 1022 tickets agent: each ticket triaged, linked to the incident of its duplicates (in SQL)
and stored, then that incident's latest state announced to fusion.

A plain batched consumer (`ioc.streams.batched`), not a Faust agent: Faust's per-event cost was
as large as the triage's. Tickets are independent of each other (linking is serialised in SQL),
so several of a batch are processed at once to overlap database round trips
(`streams.hotline_concurrency`), and the batch is committed once all of it is done.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import timedelta

from aiokafka import ConsumerRecord

from ioc import topics
from ioc.hotline import tickets
from ioc.hotline.attributes import raise_for_danger
from ioc.hotline.privacy import reporter_of
from ioc.hotline.triage import Triage
from ioc.streams.acks import concurrently
from ioc.streams.batched import PartitionedWork
from ioc.streams.context import StreamContext


class TicketsAgent:
    """One ticket in, its incident stored and announced."""

    def __init__(self, ctx: StreamContext) -> None:
        self.ctx = ctx
        hotline = ctx.settings.hotline
        self.triage = Triage.load(hotline.triage_rules, hotline.sla_table, hotline.triage_model)
        # Reports of one incident are linked in turn (in SQL) but announced from concurrent
        # tasks, which could send the 10th report's state before the 9th's; fusion folds states
        # in the order it receives them. So announcements go one at a time, each the row as it
        # is then.
        self.announcing = asyncio.Lock()

    async def process(self, record: ConsumerRecord) -> None:
        ctx, hotline = self.ctx, self.ctx.settings.hotline
        ticket = topics.TICKETS.decode(record.value or b"")
        result = raise_for_danger(
            self.triage.classify(ticket.description, ticket.service_code),
            ticket.service_code,
            ticket.attributes,
        )
        async with ctx.store.connection() as conn:
            linked = await tickets.record_ticket(
                conn,
                ticket,
                result,
                sla_due=self.triage.sla_due(result, ticket.requested_datetime),
                reporter=reporter_of(ticket, ctx.settings.streams.pii_key),
                ingested_ms=record.timestamp,
                radius_m=hotline.duplicate_radius_m,
                window=timedelta(minutes=hotline.duplicate_window_minutes),
            )
        # Also on a replay: the first delivery may have crashed before it published. Fusion
        # folds the incident's latest state, so a second message changes nothing.
        async with self.announcing:
            async with ctx.store.connection() as conn:
                latest = await tickets.current_incident(conn, linked.incident.id, record.timestamp)
            await ctx.announce(latest or linked.incident)


class TicketsWork(PartitionedWork):
    """Batches of tickets: no state per partition."""

    def __init__(self, ctx: StreamContext) -> None:
        agent = TicketsAgent(ctx)

        async def handled(record: ConsumerRecord) -> None:
            await ctx.handle(record, "hotline", lambda: agent.process(record))

        self.batch = concurrently(handled, ctx.settings.streams.hotline_concurrency)

    async def process(self, records: Sequence[ConsumerRecord]) -> None:
        await self.batch(records)


def register(ctx: StreamContext) -> None:
    streams = ctx.settings.streams
    ctx.batched(
        ctx.settings.kafka.topic(topics.HOTLINE_TICKETS),
        streams.group_of("hotline"),
        TicketsWork(ctx),
        "hotline",
        streams.event_batch_size,
        streams.event_batch_wait_s,
    )
