"""What staff change, written once for the terminal and the HTTP API: each change is one database
transaction (committed before anything is sent), then the message that tells the rest of the
system. A ticket's candidate must reach fusion, so a failed send is the caller's error; an
incident's new version only tells the alerts service, whose refresh from the database would pick
it up anyway, so a failed send is logged and the change stands."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from typing import Any, Protocol

import psycopg
from aiokafka.errors import KafkaError

from ioc.config import Settings
from ioc.hotline import tickets
from ioc.hotline.corrections import Applied, Correction, correct_triage
from ioc.hotline.triage import SlaTable
from ioc.incidents import lifecycle
from ioc.incidents.messages import Outgoing, to_alerting, to_fusion
from ioc.models import FusedIncident, Incident

log = logging.getLogger(__name__)

Connect = Callable[[], AbstractAsyncContextManager[psycopg.AsyncConnection[Any]]]


class Producer(Protocol):
    async def send_and_wait(self, topic: str, value: bytes, key: bytes) -> Any: ...


@dataclass(frozen=True)
class StaffActions:
    settings: Settings
    connect: Connect
    producer: Producer

    async def change_incident(
        self, incident_id: str, action: str, actor: str, reason: str | None
    ) -> FusedIncident:
        """`ack`, `resolve` or `reopen` an incident, then publish its new version."""
        async with self.connect() as conn:
            incident = await lifecycle.change_status(conn, incident_id, action, actor, reason)
        await self._announce(incident)
        return incident

    async def assign_unit(
        self, incident_id: str, unit: str, actor: str, reason: str | None
    ) -> FusedIncident:
        """Hand an incident to a unit (or transfer it), then publish its new version."""
        async with self.connect() as conn:
            incident = await lifecycle.assign(conn, incident_id, unit, actor, reason)
        await self._announce(incident)
        return incident

    async def set_ticket_status(
        self, ticket_id: str, status: str, note: str | None
    ) -> Incident | None:
        """Move a ticket; a change to its incident goes to fusion like any candidate."""
        async with self.connect() as conn:
            incident = await tickets.set_status(conn, ticket_id, status, note)
        if incident is not None:
            await self._send(to_fusion(self.settings, incident))
        return incident

    async def correct_ticket(
        self, ticket_id: str, correction: Correction, sla: SlaTable
    ) -> Applied:
        """Correct a ticket's triage; made urgent, its incident goes to fusion and pages."""
        async with self.connect() as conn:
            applied = await correct_triage(conn, ticket_id, correction, sla)
        if applied.incident is not None:
            await self._send(to_fusion(self.settings, applied.incident))
        return applied

    async def _announce(self, incident: FusedIncident) -> None:
        """The new version to alerting; committed already, so Kafka being away only delays it
        (alerting catches up from the database)."""
        try:
            await self._send(to_alerting(self.settings, incident))
        except KafkaError as error:
            log.warning("incident %s not published: %s", incident.id, type(error).__name__)

    async def _send(self, message: Outgoing) -> None:
        await self.producer.send_and_wait(message.topic, key=message.key, value=message.value)


class _OnFirstSend:
    """A producer started when the first message goes out, after the change is committed: with
    Kafka away, the change is still made (and an incident's alerting catches up from the
    database)."""

    def __init__(self, settings: Settings) -> None:
        from ioc.kafka.clients import producer

        self._client = producer(settings.kafka, "ioc-cli")
        self._started = False

    async def send_and_wait(self, topic: str, value: bytes, key: bytes) -> Any:
        if not self._started:
            await self._client.start()
            self._started = True
        return await self._client.send_and_wait(topic, key=key, value=value)

    async def stop(self) -> None:
        if self._started:
            await self._client.stop()


@asynccontextmanager
async def terminal_actions(settings: Settings) -> AsyncIterator[StaffActions]:
    """Staff actions from a terminal on the IOC's servers: a connection per change and a producer
    for the command's life."""

    @asynccontextmanager
    async def connect() -> AsyncIterator[psycopg.AsyncConnection[Any]]:
        async with await psycopg.AsyncConnection.connect(
            settings.database.dsn, autocommit=True
        ) as conn:
            yield conn

    client = _OnFirstSend(settings)
    try:
        yield StaffActions(settings, connect, client)
    finally:
        await client.stop()


__all__ = ["StaffActions", "terminal_actions"]
