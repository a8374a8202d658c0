"""The 1022 tickets agent: a batch of tickets triaged, stored and linked to the incidents of
their duplicates in one transaction (`ioc.hotline.tickets.record_tickets`), then each incident it
touched announced to fusion in its latest state.

A plain batched consumer (`ioc.streams.batched`), not a Faust agent: Faust's per-event cost was
as large as the triage's, and one transaction per ticket left the flow waiting on the database.
A ticket that cannot be read is dead-lettered alone; a batch the database refuses is done again
ticket by ticket, so only the ticket at fault is dead-lettered and the good ones are kept.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import timedelta

from aiokafka import ConsumerRecord
from psycopg import DataError

from ioc.citizens.contacts import ContactBox, contact_of
from ioc.config import required_secret
from ioc.hotline import tickets
from ioc.hotline.attributes import raise_for_danger
from ioc.hotline.privacy import reporter_of
from ioc.hotline.triage import Triage
from ioc.kafka import topics
from ioc.models import Ticket
from ioc.retry import retried
from ioc.streams.batched import PartitionedWork
from ioc.streams.context import StreamContext

CONSUMER = "hotline"

log = logging.getLogger(__name__)


class TicketsWork(PartitionedWork):
    """Batches of tickets: no state per partition."""

    def __init__(self, ctx: StreamContext) -> None:
        self.ctx = ctx
        hotline = ctx.settings.hotline
        self.triage = Triage.load(hotline.triage_rules, hotline.sla_table, hotline.triage_model)
        self.linking = tickets.Linking(
            hotline.duplicate_radius_m, timedelta(minutes=hotline.duplicate_window_minutes)
        )
        self.pii_key = required_secret(ctx.settings.streams.pii_key, "streams.pii_key")
        contact_key = ctx.settings.citizens.contact_key
        self.contacts = ContactBox.of(contact_key) if contact_key else None

    def sealed_contact(self, ticket: Ticket) -> tickets.SealedContact | None:
        """The contact kept for the citizen loop, sealed; None when the loop is off."""
        contact = contact_of(ticket) if self.contacts else None
        if contact is None or self.contacts is None:
            return None
        sealed = self.contacts.seal(ticket.service_request_id, contact)
        return tickets.SealedContact(contact.kind, sealed)

    def intake(self, record: ConsumerRecord) -> tickets.Intake:
        """The ticket decoded and triaged; raises `ValidationError` or `Rejected` for bad input."""
        ticket = topics.TICKETS.decode(record.value or b"")
        result = raise_for_danger(
            self.triage.classify(ticket.description, ticket.service_code),
            ticket.service_code,
            ticket.attributes,
        )
        return tickets.Intake(
            ticket,
            result,
            self.triage.sla_due(result, ticket.requested_datetime),
            reporter_of(ticket, self.pii_key),
            record.timestamp,
            self.sealed_contact(ticket),
        )

    async def link(self, intakes: Sequence[tickets.Intake]) -> None:
        """Stored, then announced. A crash between the two leaves the incidents unfused; the
        batch is read again, finds its tickets stored, and announces their incidents again
        (fusion folds an incident's latest state, so a second message changes nothing)."""
        async with self.ctx.store.connection() as conn:
            touched = await tickets.record_tickets(conn, intakes, self.linking)
        for incident in touched:
            await self.ctx.announce(incident)

    async def process(self, records: Sequence[ConsumerRecord]) -> None:
        ready: list[tuple[ConsumerRecord, tickets.Intake]] = []
        for record in records:

            async def read(record: ConsumerRecord = record) -> None:
                ready.append((record, self.intake(record)))

            await self.ctx.handle(record, CONSUMER, read)
        if not ready:
            return
        batch = [intake for _, intake in ready]
        try:
            if await retried(lambda: self.link(batch), CONSUMER, permanent=(DataError,)) is None:
                return
        except DataError:
            log.info("the database refused a batch of %d tickets; linking one by one", len(batch))
        for record, intake in ready:  # one by one: the refused ticket goes to the dead letters

            async def link_one(intake: tickets.Intake = intake) -> None:
                await self.link([intake])

            await self.ctx.handle(record, CONSUMER, link_one)


def register(ctx: StreamContext) -> None:
    streams = ctx.settings.streams
    ctx.batched(
        ctx.settings.kafka.topic(topics.HOTLINE_TICKETS),
        streams.group_of("hotline"),
        TicketsWork(ctx),
        CONSUMER,
        streams.event_batch_size,
        streams.event_batch_wait_s,
    )
