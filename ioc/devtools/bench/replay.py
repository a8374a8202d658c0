"""`ioc bench replay`: how many times faster than real time a recorded stretch of the demo's mix
replays with `--max`, against a raw topic copy of the same messages in the same run.

The recording is `ioc.devtools.replay.mix` (the demo's cameras as the real detector sees them, its
sensors, its 1022 tickets and bad inputs, the streams app's clock ticks) over `minutes`. Each
round replays it into a fresh sandbox through the real streams worker: Kafka, rules, fusion and
every database write. The baseline copies the messages the replay published, topic to topic, with a
plain aiokafka consume → produce loop: what moving the bytes costs without processing them.
"""

from __future__ import annotations

import asyncio
import json
import os
import platform
import statistics
import tempfile
import time
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

from rich.console import Console
from rich.table import Table

from ioc.assets import SAMPLES_DIR
from ioc.config import Settings
from ioc.devtools.bench.common import ephemeral_settings
from ioc.devtools.replay.mix import detector_for, write_demo_mix
from ioc.devtools.replay.recording import open_recording
from ioc.devtools.replay.replay import Pace, Replayer
from ioc.devtools.replay.sandbox import Sandbox
from ioc.devtools.stack import stack_down, stack_up
from ioc.kafka import clients as kafka_clients
from ioc.kafka import topics
from ioc.kafka.clients import MAX_MESSAGE_BYTES, producer
from ioc.runtime import run_async

GOAL_SPEEDUP = 50.0
START = datetime(2026, 11, 20, 1, 0, tzinfo=UTC)
COPY_PREFIX = "bench-copy."


@dataclass
class ReplayBench:
    minutes: float
    messages: int
    span_s: float
    replay_s: list[float]  # per round: first message published → sandbox drained
    copy_s: list[float]  # per round: the raw topic copy of the same messages
    machine: str

    @property
    def replay_speedup(self) -> float:
        return self.span_s / statistics.median(self.replay_s)

    @property
    def copy_speedup(self) -> float:
        return self.span_s / statistics.median(self.copy_s)

    def as_dict(self) -> dict[str, object]:
        return asdict(self) | {
            "replay_speedup_median": self.replay_speedup,
            "copy_speedup_median": self.copy_speedup,
            "replay_vs_copy": statistics.median(self.replay_s) / statistics.median(self.copy_s),
            "goal_met": self.replay_speedup >= GOAL_SPEEDUP,
        }


async def raw_copy(settings: Settings, sources: list[str]) -> tuple[int, float]:
    """Every message of `sources` into `bench-copy.<source>`: (messages, seconds)."""
    from aiokafka import TopicPartition
    from kafka.admin import NewTopic

    admin = kafka_clients.admin(settings.kafka, "ioc-bench-copy")
    try:
        existing = set(admin.list_topics())
        admin.delete_topics([COPY_PREFIX + s for s in sources if COPY_PREFIX + s in existing])
        while {COPY_PREFIX + s for s in sources} & set(admin.list_topics()):
            await asyncio.sleep(0.2)
        admin.create_topics(
            [NewTopic(COPY_PREFIX + s, 1, 1, topic_configs={"retention.ms": "-1"}) for s in sources]
        )
    finally:
        admin.close()
    consumer = kafka_clients.aio_consumer(
        settings.kafka,
        enable_auto_commit=False,
        max_partition_fetch_bytes=MAX_MESSAGE_BYTES + 64 * 1024,
    )
    client = producer(settings.kafka, "ioc-bench-copy")
    await consumer.start()
    await client.start()
    try:
        partitions = [TopicPartition(source, 0) for source in sources]
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        ends = await consumer.end_offsets(partitions)
        remaining = sum(ends.values())
        read = copied = 0
        started = time.perf_counter()
        while read < remaining:
            batches = await consumer.getmany(timeout_ms=1000, max_records=5000)
            pending = []
            for tp, records in batches.items():
                read += len(records)
                for record in records:
                    if topics.is_derived(record.headers):
                        continue  # the sandbox's own output (camera counts), not the recording
                    pending.append(
                        await client.send(
                            COPY_PREFIX + tp.topic,
                            key=record.key,
                            value=record.value,
                            headers=list(record.headers),
                            timestamp_ms=record.timestamp,
                        )
                    )
            await asyncio.gather(*pending)
            copied += len(pending)
        return copied, time.perf_counter() - started
    finally:
        await client.stop()
        await consumer.stop()


def run_bench(minutes: float, rounds: int, console: Console, as_json: bool = False) -> ReplayBench:
    with (
        tempfile.TemporaryDirectory(prefix="ioc-bench-replay-") as root,
        ephemeral_settings(Path(root)) as settings,
    ):
        with console.status(f"recording {minutes:g} min of the demo's mix…"):
            out = Path(root) / "recording"
            write_demo_mix(out, settings, SAMPLES_DIR, START, minutes * 60, detector_for(settings))
            recording = open_recording(out)
        with console.status("starting an ephemeral stack…"):
            stack_up(settings)
        try:
            sandbox = Sandbox("bench")
            replay_s, copy_s, messages, span_s = [], [], 0, 0.0
            for round_number in range(1, rounds + 1):
                with console.status(f"round {round_number}/{rounds}: replay --max…"):
                    result = Replayer(settings, sandbox, Pace(None)).run(recording)
                replay_s.append(result.processing_s)
                messages, span_s = result.messages, result.span_s
                sources = [sandbox.topic_prefix + name for name in result.published]
                with console.status(f"round {round_number}/{rounds}: raw topic copy…"):
                    copied, seconds = run_async(raw_copy(settings, sources))
                assert copied == messages, (copied, messages)
                copy_s.append(seconds)
                console.print(
                    f"round {round_number}: replay {result.processing_s:.1f} s "
                    f"({result.speedup:.0f}× real time), raw copy {seconds:.1f} s"
                )
        finally:
            stack_down(settings)
    bench = ReplayBench(
        minutes,
        messages,
        span_s,
        replay_s,
        copy_s,
        f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}",
    )
    if as_json:
        console.print_json(json.dumps(bench.as_dict()))
    else:
        render(bench, console)
    return bench


def render(bench: ReplayBench, console: Console) -> None:
    table = Table(
        "",
        "median s",
        "events/s",
        "× real time",
        title=f"ioc bench replay · {bench.minutes:g} min of the demo's mix · "
        f"{bench.messages:,} messages · {len(bench.replay_s)} rounds · {bench.machine}",
    )
    replay, copy = statistics.median(bench.replay_s), statistics.median(bench.copy_s)
    table.add_row(
        "replay --max (streams app, rules, fusion, database)",
        f"{replay:,.1f}",
        f"{bench.messages / replay:,.0f}",
        f"{bench.replay_speedup:,.0f}×",
    )
    table.add_row(
        "baseline: raw topic copy (aiokafka consume → produce)",
        f"{copy:,.1f}",
        f"{bench.messages / copy:,.0f}",
        f"{bench.copy_speedup:,.0f}×",
    )
    console.print(table)
    goal = "[green]met[/]" if bench.replay_speedup >= GOAL_SPEEDUP else "[red]not met[/]"
    console.print(
        f"replay takes {replay / copy:,.1f}× the raw copy's time; goal ≥ {GOAL_SPEEDUP:g}× real "
        f"time: {goal}"
    )
