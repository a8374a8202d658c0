"""At-least-once for Faust agents: an event is acknowledged only after its effects are durable,
and events are acknowledged in offset order, so the committed offset never passes work in flight.

Why not Faust's own `concurrency=N`, `events()` or `take_events`:
- faust-streaming 0.15.3 commits the highest run of acknowledged offsets. With several actors on
  one stream, a slow event at a partition's head can stay unacknowledged while later ones are
  acknowledged, and the consumer's head-gap guard (`Consumer._new_offset`) misses that case: it is
  off by one for a single event in flight and skipped while the committed offset is 0. A kill then
  loses the slow event (https://github.com/faust-streaming/faust/issues/606, fix in PR #707).
- `events()` and `take_events` acknowledge in a `finally`, so an exception, or a cancellation at
  shutdown, acknowledges events that were never processed, and the consumer commits them on stop.

So agents read without acknowledging (`noack`), and acknowledge themselves, in order, once the
work is done. Overlap comes from several events in progress with their acknowledgements queued in
offset order (`acknowledge_in_order`), or from a whole batch written at once
(`acknowledge_batches`). Work is expected to dead-letter bad input itself; if it raises anyway (a
bug, an outage it did not wait out) it is retried, loudly, and never acknowledged unfinished: the
partition stops there instead of losing the event.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

import faust

log = logging.getLogger(__name__)

EventWork = Callable[[faust.EventT], Awaitable[None]]
BatchWork = Callable[[Sequence[faust.EventT]], Awaitable[None]]

RETRY_MAX_S = 30.0

T = TypeVar("T")


async def acknowledge_in_order(
    stream: faust.StreamT[Any], work: EventWork, what: str, in_progress: int = 1
) -> None:
    """Each event as it comes, up to `in_progress` at once (1: strictly in order), each
    acknowledged once it and every event before it are done."""
    reader = stream.noack()
    if in_progress == 1:  # no task per event: what the plain ordered path costs
        async for event in reader.events():
            await _until_done(work, event, what)
            await reader.ack(event)
        return
    slots = asyncio.Semaphore(in_progress)
    done_in_order: asyncio.Queue[tuple[faust.EventT, asyncio.Task[None]]] = asyncio.Queue()

    async def run(event: faust.EventT) -> None:
        try:
            await _until_done(work, event, what)
        finally:
            slots.release()

    async def acknowledge() -> None:
        while True:
            event, task = await done_in_order.get()
            await task
            await reader.ack(event)

    acknowledger = asyncio.create_task(acknowledge())
    try:
        async for event in reader.events():
            await slots.acquire()
            done_in_order.put_nowait((event, asyncio.create_task(run(event))))
    finally:
        acknowledger.cancel()


async def acknowledge_batches(
    stream: faust.StreamT[Any], work: BatchWork, what: str, size: int, wait_s: float
) -> None:
    """Batches of at most `size` events (or what came within `wait_s`), each done in full, then
    acknowledged in offset order: for flows that write a batch at once."""
    async for events in stream.noack_take(size, wait_s):
        await _until_done(work, events, what)
        for event in events:
            await stream.ack(event)


async def _until_done(work: Callable[[T], Awaitable[None]], item: T, what: str) -> None:
    delay = 0.5
    while True:
        try:
            await work(item)
            return
        except Exception:
            log.exception("%s failed; retrying in %.1f s, unacknowledged", what, delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, RETRY_MAX_S)


__all__ = ["acknowledge_batches", "acknowledge_in_order"]
