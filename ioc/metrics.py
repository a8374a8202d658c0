"""The workers' own health, for Prometheus: what each flow finished and when, its dead letters,
the consumer lag the streams leader samples, and every alert delivery by channel and outcome.
Each worker serves its own (`streams.metrics_port`, `vision.metrics_port`,
`alerts.metrics_port`); the alert rules that read them are in `deploy/prometheus/`.

Per flow (`hotline`, `sensors`, `fusion`, `camera`, `dead-letters` in the streams worker,
`vision` and `alerts` in theirs), so a silent or failing flow shows by name. The streams worker
adds Faust's own sensor (`ioc_faust_*`) for the agents that still run on Faust."""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING

from prometheus_client import REGISTRY, Counter, Gauge, Histogram, start_http_server

if TYPE_CHECKING:
    import faust

log = logging.getLogger(__name__)
FAUST_PREFIX = "ioc_faust"

RECORDS = Counter(
    "ioc_records", "Records a flow finished: stored, then committed or acknowledged.", ["flow"]
)
DEAD_LETTERS = Counter(
    "ioc_dead_letters", "Records a flow sent to the dead-letter topic, with a reason.", ["flow"]
)
BATCH_SECONDS = Histogram(
    "ioc_batch_seconds",
    "Time a flow took for one batch, its database writes included.",
    ["flow"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0),
)
LAST_BATCH = Gauge(
    "ioc_last_batch_timestamp_seconds", "When a flow last finished a batch (Unix time).", ["flow"]
)
DELIVERIES = Counter(
    "ioc_alert_deliveries",
    "Notifications the alerts worker tried, per channel and outcome (ok or failed).",
    ["channel", "outcome"],
)
CONSUMER_LAG = Gauge(
    "ioc_consumer_lag",
    "Messages not yet committed, per consumer group and topic (sampled by the streams leader).",
    ["group", "topic"],
)


def batch_done(flow: str, records: int, started: float) -> None:
    """A batch of `records`, begun at `started` (`time.perf_counter()`), is done."""
    RECORDS.labels(flow).inc(records)
    BATCH_SECONDS.labels(flow).observe(time.perf_counter() - started)
    LAST_BATCH.labels(flow).set_to_current_time()


def dead_lettered(flow: str) -> None:
    DEAD_LETTERS.labels(flow).inc()


def delivered(channel: str, ok: bool) -> None:
    DELIVERIES.labels(channel, "ok" if ok else "failed").inc()


def lag_sampled(lags: dict[tuple[str, str], int]) -> None:
    for (group, topic), lag in lags.items():
        CONSUMER_LAG.labels(group, topic).set(lag)


def watch_faust(app: faust.App) -> None:
    """Faust's own sensor on the same `/metrics` (`ioc_faust_*`: messages and events in, commits,
    sends and their latency, rebalances): the runtime's view beside the flows'. Once per process:
    the metrics register in the default registry."""
    from faust.sensors.prometheus import FaustMetrics, PrometheusMonitor

    app.monitor = PrometheusMonitor(metrics=FaustMetrics.create(REGISTRY, FAUST_PREFIX))


def serve(host: str, port: int) -> None:
    """`/metrics` on a thread of its own; a port in use is logged, and the worker runs on."""
    try:
        start_http_server(port, addr=host)
    except OSError as error:
        log.error("metrics not served on %s:%d: %s", host, port, error)
        return
    log.info("metrics on http://%s:%d/metrics", host, port)


__all__ = ["batch_done", "dead_lettered", "lag_sampled", "serve", "watch_faust"]
