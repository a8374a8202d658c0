"""A Faust worker for the at-least-once regression test (tests/streams/test_acks.py).

Run as `python -m tests.streams.ack_worker MODE BOOTSTRAP GROUP TOPIC PROBE_TOPIC LOG RELEASE DATA`:
- MODE `actors`: the path faust-streaming 0.15.3 gets wrong, several actors on one stream
  (`concurrency=4`), as the hotline agent ran before;
- MODE `ordered`: `ioc.streams.acks`, batches acknowledged in offset order once done, with as
  many events in progress at once: the agents' rule, however their work runs a batch.

Each event's value is logged as `started <value>` and `done <value>`. The value `slow` waits until
the file RELEASE exists. A second agent on PROBE_TOPIC only acknowledges its events, so that the
test can see a commit happen after the fast events were done.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import faust

from ioc.streams.acks import acknowledge_batches, one_by_one

ACTORS = 4
Item = TypeVar("Item")


def concurrently(
    work: Callable[[Item], Awaitable[None]], limit: int
) -> Callable[[Sequence[Item]], Awaitable[None]]:
    """A batch with up to `limit` events in progress at once, ending when the slowest does."""
    slots = asyncio.Semaphore(limit)

    async def bounded(item: Item) -> None:
        async with slots:
            await work(item)

    async def run(items: Sequence[Item]) -> None:
        await asyncio.gather(*map(bounded, items))

    return run


def main(argv: list[str]) -> None:
    mode, bootstrap, group, topic_name, probe_name, log_path, release_path, data_dir = argv
    log = Path(log_path)
    release = Path(release_path)

    def note(line: str) -> None:
        with log.open("a", encoding="utf-8") as out:
            out.write(line + "\n")

    app = faust.App(
        group,
        broker=f"kafka://{bootstrap}",
        store="memory://",
        autodiscover=False,
        datadir=data_dir,
        topic_partitions=1,
        consumer_auto_offset_reset="earliest",
        broker_commit_interval=0.5,
        broker_session_timeout=10,
        broker_heartbeat_interval=1,
        web_enabled=False,
    )

    def raw(name: str) -> faust.TopicT:
        return app.topic(
            name, key_type=bytes, value_type=bytes, key_serializer="raw", value_serializer="raw"
        )

    async def process(event: faust.EventT) -> None:
        value = (event.value or b"").decode()
        note(f"started {value}")
        while value == "slow" and not release.exists():
            await asyncio.sleep(0.05)
        note(f"done {value}")

    async def ignore(event: faust.EventT) -> None:
        return None

    if mode == "actors":

        async def actor(stream: faust.StreamT[Any]) -> None:
            async for event in stream.events():
                await process(event)

        app.agent(raw(topic_name), name="regression.events", concurrency=ACTORS)(actor)
    elif mode == "ordered":

        async def ordered(stream: faust.StreamT[Any]) -> None:
            await acknowledge_batches(stream, concurrently(process, ACTORS), "events", 100, 0.05)

        app.agent(raw(topic_name), name="regression.events")(ordered)
    else:
        raise SystemExit(f"unknown mode {mode!r}")

    async def probe(stream: faust.StreamT[Any]) -> None:
        await acknowledge_batches(stream, one_by_one(ignore), "probe", 100, 0.05)

    app.agent(raw(probe_name), name="regression.probe")(probe)
    faust.Worker(app, loglevel="warning", quiet=True).execute_from_commandline()


if __name__ == "__main__":
    main(sys.argv[1:])
