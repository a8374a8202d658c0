"""Follows `ioc.incidents` and tells hotline staff: one notification when an incident fires,
one when it escalates, one when it resolves; nothing while it is acknowledged.

Each message only says which incident changed: the consumer reads its current state from the
database, so versions arriving late or twice change nothing. What was sent is recorded in the
`alerts` table, keyed by (incident, channel, notification, episode), so a redelivered message
never pages anyone twice; a failed delivery is recorded and retried on the next change or the
next refresh, whichever comes first. Every `alerts.alertmanager_refresh_s` the active incidents
are gone through again, which keeps Alertmanager's alerts alive and retries failures.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from functools import partial

from aiokafka import ConsumerRecord
from pydantic import ValidationError

from ioc import metrics
from ioc.alerts.channels import Channel, alert_id, channels_from_settings
from ioc.citizens.loop import loop_from_settings
from ioc.config import Settings
from ioc.dispatch.pager import pager_from_settings
from ioc.incidents import lifecycle
from ioc.kafka import topics
from ioc.kafka.clients import consumer, producer
from ioc.kafka.dlq import describe_validation_error, send_dead_letter
from ioc.models import Alert, FusedIncident, FusedStatus, Notification, Severity
from ioc.models.base import epoch_ms, utc_now
from ioc.retry import ATTEMPTS, retried
from ioc.runtime import periodically
from ioc.store.writer import Store

log = logging.getLogger(__name__)
FLOW = "alerts"  # its name in the metrics


def due(
    incident: FusedIncident, paging: frozenset[Severity], sent: set[Notification]
) -> list[Notification]:
    """The notifications this state calls for that were not sent yet (in this episode)."""
    fired = Notification.FIRING in sent
    if incident.status == FusedStatus.OPEN:
        wanted = [Notification.FIRING] if incident.severity in paging else []
        if incident.escalated_at is not None and (fired or wanted):
            wanted.append(Notification.ESCALATED)
    elif incident.status in (FusedStatus.RESOLVED, FusedStatus.MERGED) and fired:
        wanted = [Notification.RESOLVED]
    else:
        wanted = []
    return [notification for notification in wanted if notification not in sent]


class AlertConsumer:
    def __init__(self, settings: Settings, channels: list[Channel] | None = None) -> None:
        self.settings = settings
        self.paging = Severity.at_least(settings.alerts.min_severity)
        self.store = Store(settings.database.dsn, settings.database.pool_max_size)
        self.channels = (
            channels if channels is not None else channels_from_settings(settings, self.store)
        )
        self.consumer = consumer(
            settings.kafka, settings.alerts.group_id, settings.kafka.topic(topics.INCIDENTS)
        )
        self.producer = producer(settings.kafka, settings.alerts.group_id)
        self.lock = asyncio.Lock()  # the refresh and the consumer never follow one incident twice
        self.citizens = loop_from_settings(settings)
        self.pager = pager_from_settings(settings)

    async def _reject(self, record: ConsumerRecord, reason: str) -> None:
        await send_dead_letter(
            self.producer, self.settings.kafka.topic(topics.DLQ), record, reason, "ioc.alerts"
        )
        metrics.dead_lettered(FLOW)

    async def handle_safely(self, record: ConsumerRecord) -> None:
        """Wait out an outage (database, broker); other failures, retried, become a dead
        letter."""
        failure = await retried(partial(self.handle, record), "alerts")
        if failure is not None:
            log.error("giving up on %s@%s", record.topic, record.offset, exc_info=failure)
            await self._reject(record, f"alerting failed {ATTEMPTS}x: {failure!r}")

    async def handle(self, record: ConsumerRecord) -> None:
        try:
            announced = topics.FUSED.decode(record.value)
        except ValidationError as error:
            await self._reject(record, describe_validation_error(error))
            return
        async with self.store.connection() as conn:
            try:
                current = await lifecycle.get(conn, announced.id)
            except lifecycle.UnknownIncident:
                await self._reject(record, f"incident {announced.id} is not in the database")
                return
        await self.follow(current)

    async def _sent(self, incident: FusedIncident, channel: str) -> set[Notification]:
        ids = {alert_id(incident, channel, n): n for n in Notification}
        async with self.store.connection() as conn:
            rows = await (
                await conn.execute("SELECT id FROM alerts WHERE id = ANY(%s) AND ok", (list(ids),))
            ).fetchall()
        return {ids[row[0]] for row in rows}

    async def follow(self, incident: FusedIncident) -> None:
        """Bring every channel up to the incident's current state."""
        async with self.lock:
            for channel in self.channels:
                notifications = due(incident, self.paging, await self._sent(incident, channel.name))
                if not notifications:
                    try:
                        await channel.update(incident)
                    except Exception as error:  # retried on the next change or refresh
                        log.warning(
                            "updating %s on %s failed: %s", incident.id, channel.name, error
                        )
                for notification in notifications:
                    await self._deliver(channel, incident, notification)

    async def _deliver(
        self, channel: Channel, incident: FusedIncident, notification: Notification
    ) -> None:
        error_text = None
        try:
            await channel.deliver(incident, notification)
        except Exception as error:  # a channel failing must not stop the others
            error_text = f"{type(error).__name__}: {error}"
            log.warning(
                "%s of %s via %s failed: %s", notification, incident.id, channel.name, error_text
            )
        metrics.delivered(channel.name, error_text is None)
        delivered_at = utc_now()
        alert = Alert(
            id=alert_id(incident, channel.name, notification),
            incident_id=incident.id,
            channel=channel.name,
            notification=notification,
            delivered_at=delivered_at,
            latency_ms=epoch_ms(delivered_at) - incident.ingested_at_ms,
            ok=error_text is None,
            error=error_text,
        )
        await self.store.insert_alert(alert)
        key, value = topics.ALERTS_SENT.encode(alert)
        await self.producer.send_and_wait(
            self.settings.kafka.topic(topics.ALERTS_SENT.name), key=key, value=value
        )

    async def refresh(self, stop: asyncio.Event) -> None:
        """Every refresh period, follow each active incident again."""
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self.settings.alerts.alertmanager_refresh_s)
                return
            try:
                async with self.store.connection() as conn:
                    active = await lifecycle.listed(
                        conn, [FusedStatus.OPEN, FusedStatus.ACKNOWLEDGED], limit=10_000
                    )
                for incident in active:
                    await self.follow(incident)
            except Exception:  # the database or Alertmanager may be restarting
                log.exception("refreshing active incidents failed")

    async def run(self, stop: asyncio.Event) -> None:
        await self.producer.start()
        await self.consumer.start()
        refresher = asyncio.create_task(self.refresh(stop))
        tasks = [refresher]
        if self.citizens is not None:
            citizens = partial(self.citizens.run_pass, self.store)
            poll = self.settings.citizens.poll_s
            tasks.append(asyncio.create_task(periodically("citizen notices", citizens, poll, stop)))
        if self.pager is not None:
            pages = partial(self.pager.run_pass, self.store)
            poll = self.settings.oncall.poll_s
            tasks.append(asyncio.create_task(periodically("on-call pages", pages, poll, stop)))
        log.info("alert consumer ready: channels %s", ", ".join(c.name for c in self.channels))
        try:
            while not stop.is_set():
                batches = await self.consumer.getmany(timeout_ms=200, max_records=100)
                started = time.perf_counter()
                for records in batches.values():
                    for record in records:
                        await self.handle_safely(record)
                if batches:
                    await self.consumer.commit()
                    metrics.batch_done(FLOW, sum(map(len, batches.values())), started)
        finally:
            for task in tasks:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            for side in (self.citizens, self.pager):
                if side is not None:
                    await side.close()
            await self.consumer.stop()
            await self.producer.stop()
            for channel in self.channels:
                await channel.close()
            await self.store.close()


def run_consumer(settings: Settings) -> None:
    from ioc.runtime import run_until_signal

    if settings.alerts.metrics_port is not None:
        metrics.serve(settings.alerts.metrics_host, settings.alerts.metrics_port)
    run_until_signal(lambda: AlertConsumer(settings))
