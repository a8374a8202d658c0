"""The streams app's timers: clock ticks for the keyed flows, SLA checks, the incidents' own
clock (auto-resolve, escalation, candidates a crash left unannounced) and lag samples.

In a replay sandbox none runs (`StreamContext.timer`): the recording carries its own ticks.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import timedelta

from ioc import metrics
from ioc.hotline import tickets
from ioc.incidents import lifecycle as incident_lifecycle
from ioc.incidents.fusion import unfused_candidates
from ioc.kafka.lag import consumer_lag
from ioc.models.base import utc_now
from ioc.services import worker_specs
from ioc.streams.context import StreamContext
from ioc.streams.keyed import TICK_HEADER

log = logging.getLogger(__name__)


def register(ctx: StreamContext) -> None:
    settings = ctx.settings
    streams = settings.streams

    @ctx.timer(interval=streams.sensor_tick_s, on_leader=True)
    async def tick() -> None:
        """One clock tick per partition of the sensor and detections topics, through the topics,
        ordered after the messages there (see `ioc.streams.keyed`)."""
        for topic in (ctx.topics.sensors, ctx.topics.detections):
            for partition in range(settings.kafka.partitions):
                await topic.send(value=b"", partition=partition, headers={TICK_HEADER: b"1"})

    @ctx.timer(interval=streams.lag_sample_s, on_leader=True)
    async def sample_lag() -> None:
        """Consumer lag of every `ioc` group into the database, for the pipeline-health wall."""
        groups = {g: t for spec in worker_specs(settings) for g, t in spec.groups().items()}
        try:
            lags = await asyncio.to_thread(consumer_lag, settings.kafka, groups)
            metrics.lag_sampled(lags)
            await ctx.store.record_lag(utc_now(), lags)
        except Exception:  # Kafka or the database may be restarting: the next sample tries
            log.exception("lag sample failed")

    @ctx.timer(interval=settings.hotline.sla_check_interval_s)
    async def watch_sla() -> None:
        """Open tickets past their deadline become SLA-breach incidents (claimed once in SQL)."""
        try:
            async with ctx.store.connection() as conn:
                breaches = await tickets.claim_sla_breaches(conn)
            for incident in breaches:  # stored with the claim
                await ctx.announce(incident)
        except Exception:  # the database may be restarting: the next tick tries again
            log.exception("SLA check failed")

    @ctx.timer(interval=settings.fusion.check_interval_s, on_leader=True)
    async def watch_incidents() -> None:
        """Incidents whose sources all cleared resolve; urgent ones nobody acknowledged escalate;
        candidates a crash left unpublished go to fusion again."""
        hold = timedelta(seconds=settings.fusion.resolve_hold_s)
        republish_after = timedelta(seconds=settings.fusion.republish_after_s)
        limits = settings.alerts.escalate_after_s
        try:
            async with ctx.store.connection() as conn:
                versions = await incident_lifecycle.auto_resolve(conn, hold)
                versions += await incident_lifecycle.escalate(conn, limits)
                unfused = await unfused_candidates(conn, republish_after)
            await ctx.publish(versions)
            for incident in unfused:
                await ctx.announce(incident)
        except Exception:  # the database may be restarting: the next tick tries again
            log.exception("incident check failed")


__all__ = ["register"]
