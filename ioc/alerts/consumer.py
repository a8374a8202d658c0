"""Reads `ioc.incidents` and delivers each newly opened incident once per channel.

Delivery is recorded in the `alerts` table keyed by (incident, channel), so a redelivered
incident message does not page anyone twice; a failed delivery is recorded and retried the next
time that incident's state arrives.
"""

from __future__ import annotations

import asyncio
import logging

from aiokafka import ConsumerRecord
from pydantic import ValidationError

from ioc import topics
from ioc.alerts.channels import Channel, channels_from_settings
from ioc.config import Settings
from ioc.dlq import describe_validation_error, send_dead_letter
from ioc.kafka_clients import consumer, producer
from ioc.models import Alert, Incident, Severity
from ioc.models.base import deterministic_id, epoch_ms, utc_now
from ioc.models.incidents import IncidentStatus
from ioc.store.writer import Store

log = logging.getLogger(__name__)

ATTEMPTS = 5


class AlertConsumer:
    def __init__(self, settings: Settings, channels: list[Channel]) -> None:
        self.channels = channels
        self.paging = Severity.at_least(settings.alerts.min_severity)
        self.store = Store(settings.database.dsn, settings.database.pool_max_size)
        self.consumer = consumer(settings.kafka, settings.alerts.group_id, topics.INCIDENTS)
        self.producer = producer(settings.kafka, settings.alerts.group_id)

    async def _reject(self, record: ConsumerRecord, reason: str) -> None:
        await send_dead_letter(self.producer, record, reason, "ioc.alerts")

    async def handle_safely(self, record: ConsumerRecord) -> None:
        """Retry transient failures (database, broker); then the record becomes a dead letter."""
        for attempt in range(1, ATTEMPTS + 1):
            try:
                await self.handle(record)
                return
            except Exception as error:
                if attempt == ATTEMPTS:
                    log.exception("giving up on %s@%s", record.topic, record.offset)
                    await self._reject(record, f"alerting failed {attempt}x: {error!r}")
                    return
                await asyncio.sleep(0.2 * 2**attempt)

    async def handle(self, record: ConsumerRecord) -> None:
        try:
            incident = Incident.model_validate_json(record.value or b"")
        except ValidationError as error:
            await self._reject(record, describe_validation_error(error))
            return
        if incident.status != IncidentStatus.OPEN or incident.severity not in self.paging:
            return
        for channel in self.channels:
            alert_id = deterministic_id("alert", incident.id, channel.name)
            if await self.store.alert_exists(alert_id):
                continue
            error_text = None
            try:
                await channel.deliver(incident)
            except Exception as error:  # a channel failing must not stop the others
                error_text = f"{type(error).__name__}: {error}"
                log.warning("alert %s via %s failed: %s", incident.id, channel.name, error_text)
            delivered_at = utc_now()
            alert = Alert(
                id=alert_id,
                incident_id=incident.id,
                channel=channel.name,
                delivered_at=delivered_at,
                latency_ms=epoch_ms(delivered_at) - incident.ingested_at_ms,
                ok=error_text is None,
                error=error_text,
            )
            await self.store.insert_alert(alert)
            await self.producer.send_and_wait(
                topics.ALERTS, key=incident.id.encode(), value=alert.to_bytes()
            )

    async def run(self, stop: asyncio.Event) -> None:
        await self.producer.start()
        await self.consumer.start()
        log.info("alert consumer ready: channels %s", ", ".join(c.name for c in self.channels))
        try:
            while not stop.is_set():
                batches = await self.consumer.getmany(timeout_ms=200, max_records=100)
                for records in batches.values():
                    for record in records:
                        await self.handle_safely(record)
                if batches:
                    await self.consumer.commit()
        finally:
            await self.consumer.stop()
            await self.producer.stop()
            for channel in self.channels:
                await channel.close()
            await self.store.close()


def run_consumer(settings: Settings) -> None:
    from ioc.runtime import run_until_signal

    run_until_signal(lambda: AlertConsumer(settings, channels_from_settings(settings)))
