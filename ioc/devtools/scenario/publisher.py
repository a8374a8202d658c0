"""Publish a plan in real time, so latencies measured downstream are those of a live feed."""

from __future__ import annotations

import asyncio
import time
from collections import Counter

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from ioc.config import KafkaSettings
from ioc.devtools.scenario.plan import Scheduled
from ioc.kafka.clients import producer


async def publish(
    plan: list[Scheduled], kafka: KafkaSettings, *, show_progress: bool = True
) -> Counter[str]:
    """Send each message at its time; returns messages sent per topic."""
    client = producer(kafka, "ioc-scenario")
    await client.start()
    sent: Counter[str] = Counter()
    started = time.monotonic()
    try:
        with Progress(
            TextColumn("[bold]scenario"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TextColumn("{task.description}"),
            disable=not show_progress,
            transient=False,
        ) as progress:
            task = progress.add_task("", total=len(plan))
            pending = []
            for item in plan:
                delay = item.at_s - (time.monotonic() - started)
                if delay > 0:
                    await asyncio.sleep(delay)
                pending.append(
                    await client.send(
                        kafka.topic(item.topic),
                        key=item.key,
                        value=item.value,
                        headers=list(item.headers),
                    )
                )
                sent[item.topic] += 1
                progress.update(task, advance=1, description=item.topic)
            await asyncio.gather(*pending)
    finally:
        await client.stop()
    return sent
