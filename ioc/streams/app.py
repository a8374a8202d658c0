"""The Faust app of the streams worker, composed: its agents (`ioc.streams.agents`, one module
each) and timers (`ioc.streams.timers`) over one `StreamContext` (`ioc.streams.context`).
"""

from __future__ import annotations

from typing import Any

import faust

from ioc import metrics
from ioc.config import Settings
from ioc.kafka.clients import MAX_MESSAGE_BYTES, faust_credentials, hide_produced_payloads
from ioc.store.writer import Store
from ioc.streams import agents, timers
from ioc.streams.consumer import consume_at_least_once
from ioc.streams.context import StreamContext, StreamTopics


def broker_url(bootstrap_servers: str) -> str:
    return ";".join(f"kafka://{server.strip()}" for server in bootstrap_servers.split(","))


def create_app(settings: Settings) -> faust.App:
    """Build the app and its agents from settings (no module-level state: tests build their own)."""
    hide_produced_payloads()
    app = faust.App(
        settings.streams.app_id,
        broker=broker_url(settings.kafka.bootstrap_servers),
        broker_credentials=faust_credentials(settings.kafka),
        store="memory://",
        autodiscover=False,
        topic_partitions=settings.kafka.partitions,
        topic_replication_factor=settings.kafka.replication_factor,
        consumer_auto_offset_reset="earliest",
        # Frequent commits keep lag near zero between sensor clock ticks (drain checks read it).
        broker_commit_interval=1.0,
        broker_session_timeout=settings.kafka.session_timeout_s,
        broker_heartbeat_interval=settings.kafka.heartbeat_interval_s,
        producer_acks=-1,
        # Dead letters carry up to KEPT_VALUE_BYTES of the original (Faust's default is 1 MB).
        producer_max_request_size=MAX_MESSAGE_BYTES + 64 * 1024,
        web_enabled=settings.streams.web_port is not None,
        web_port=settings.streams.web_port or 6066,
    )
    consume_at_least_once(app)
    ctx = StreamContext(
        app,
        settings,
        Store(settings.database.dsn, settings.database.pool_max_size),
        StreamTopics.of(app, settings),
    )
    agents.register_all(ctx)
    timers.register(ctx)

    @app.on_before_shutdown.connect
    async def close(_app: faust.App, **_: Any) -> None:
        await ctx.close()

    return app


def run_worker(settings: Settings) -> None:
    """Run the agents until SIGTERM/SIGINT (Faust's worker handles the signals)."""
    app = create_app(settings)
    if settings.streams.metrics_port is not None:
        metrics.watch_faust(app)
        metrics.serve(settings.streams.metrics_host, settings.streams.metrics_port)
    worker = faust.Worker(app, loglevel=settings.log_level.upper(), quiet=True)
    worker.execute_from_commandline()


__all__ = ["create_app", "run_worker"]
