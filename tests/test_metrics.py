"""The worker's Prometheus metrics (`ioc.metrics`): what a batch and a dead letter record, served
over HTTP, and a taken port that does not stop the worker."""

from __future__ import annotations

import logging
import socket
import time

import httpx
import pytest
from prometheus_client import REGISTRY

from ioc import metrics
from ioc.devtools.stack.process import free_port


def value(name: str, **labels: str) -> float:
    found = REGISTRY.get_sample_value(name, labels)
    return 0.0 if found is None else found


def test_a_batch_counts_its_records_its_time_and_when_it_ended() -> None:
    before = value("ioc_records_total", flow="test-batch")
    metrics.batch_done("test-batch", 7, time.perf_counter() - 0.03)
    assert value("ioc_records_total", flow="test-batch") == before + 7
    assert value("ioc_batch_seconds_count", flow="test-batch") >= 1
    assert value("ioc_batch_seconds_sum", flow="test-batch") >= 0.03
    assert abs(value("ioc_last_batch_timestamp_seconds", flow="test-batch") - time.time()) < 60


def test_dead_letters_and_lag_are_per_flow_and_per_group() -> None:
    before = value("ioc_dead_letters_total", flow="test-dlq")
    metrics.dead_lettered("test-dlq")
    metrics.lag_sampled({("ioc-streams.sensors", "ioc.sensor.events"): 42})
    assert value("ioc_dead_letters_total", flow="test-dlq") == before + 1
    assert value("ioc_consumer_lag", group="ioc-streams.sensors", topic="ioc.sensor.events") == 42


def test_the_metrics_are_served_and_a_taken_port_only_logs(
    caplog: pytest.LogCaptureFixture,
) -> None:
    port = free_port()
    metrics.batch_done("test-served", 1, time.perf_counter())
    metrics.serve("127.0.0.1", port)
    page = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
    assert 'ioc_records_total{flow="test-served"}' in page
    taken = free_port()
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", taken))
        holder.listen()
        with caplog.at_level(logging.ERROR, logger="ioc.metrics"):
            metrics.serve("127.0.0.1", taken)
    assert f"metrics not served on 127.0.0.1:{taken}" in caplog.text
