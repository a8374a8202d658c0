"""What the benchmarks share: an ephemeral stack of their own with the real streams worker, the
baseline's topic and table, a publisher, and percentiles."""

from __future__ import annotations

import asyncio
import os
import platform
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import replace
from pathlib import Path

import psycopg
from rich.console import Console

from ioc.config import Settings
from ioc.devtools.scenario.workers import Workers
from ioc.devtools.stack import stack_down, stack_up
from ioc.devtools.stack.kafka import ensure_topics
from ioc.devtools.stack.process import free_port
from ioc.kafka import clients as kafka_clients
from ioc.kafka.clients import producer
from ioc.services import worker_specs


def cpu_name() -> str:
    """The CPU's model name (what a figure depends on most), else its architecture."""
    with suppress(OSError), open("/proc/cpuinfo", encoding="utf-8") as info:
        for line in info:
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


@contextmanager
def ephemeral_settings(root: Path, **env: str) -> Iterator[Settings]:
    """A stack of its own on free ports, so a bench never touches a running one (exported, so
    the worker process it starts reads the same; the environment is restored afterwards)."""
    overrides = {
        "IOC_KAFKA__BOOTSTRAP_SERVERS": f"127.0.0.1:{free_port(2)}",
        "IOC_DATABASE__DSN": f"postgresql://ioc:bench@127.0.0.1:{free_port()}/ioc",
        "IOC_STACK__DIR": str(root / "stack"),
    } | env
    saved = {key: os.environ.get(key) for key in overrides}
    os.environ.update(overrides)
    try:
        yield Settings()
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@contextmanager
def bench_stack(
    settings: Settings,
    console: Console,
    baseline_topic: str,
    baseline_ddl: str,
    copies: int = 1,
) -> Iterator[Workers]:
    """Kafka, PostgreSQL, the baseline's topic and table, and `copies` real streams workers
    (members of the same groups), ready; all stopped afterwards."""
    with console.status("starting an ephemeral stack…"):
        stack_up(settings)
    (streams,) = (spec for spec in worker_specs(settings) if spec.name == "streams")
    workers = Workers(
        settings,
        [streams]
        if copies == 1
        else [replace(streams, name=f"streams-{n}") for n in range(copies)],
    )
    try:
        _create_baseline(settings, baseline_topic, baseline_ddl)
        with console.status("starting the streams worker…"):
            workers.start()
            workers.wait_ready(timeout_s=120)
        yield workers
    finally:
        workers.stop()
        stack_down(settings)


def _create_baseline(settings: Settings, topic: str, ddl: str) -> None:
    from kafka.admin import NewTopic

    ensure_topics(settings.kafka)
    admin = kafka_clients.admin(settings.kafka, "ioc-bench")
    try:
        admin.create_topics([NewTopic(topic, settings.kafka.partitions, 1)])
    finally:
        admin.close()
    with psycopg.connect(settings.database.dsn, autocommit=True) as conn:
        conn.execute(ddl)


async def publish(
    settings: Settings, topic: str, messages: Iterable[tuple[bytes, bytes]], rate: float | None
) -> None:
    """(key, value) pairs one `send` at a time, at `rate` per second or as fast as it goes."""
    client = producer(settings.kafka, "ioc-bench")
    await client.start()
    try:
        started = time.monotonic()
        pending = []
        for index, (key, value) in enumerate(messages):
            if rate:
                delay = index / rate - (time.monotonic() - started)
                if delay > 0:
                    await asyncio.sleep(delay)
            pending.append(await client.send(topic, key=key, value=value))
        await asyncio.gather(*pending)
    finally:
        await client.stop()


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile; q in [0, 1]."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]
