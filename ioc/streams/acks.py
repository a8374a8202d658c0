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

So every agent takes a batch without acknowledging it (`noack_take`), does all of it (however
the work likes: in order, or with events in progress at once), and only then acknowledges every
event of it, in offset order. Work is expected to dead-letter bad input itself; if it raises anyway
(a bug, an outage it did not wait out) the batch is retried, loudly, and never acknowledged
unfinished: the partition stops there instead of losing events.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

import faust

from ioc import metrics

log = logging.getLogger(__name__)

EventWork = Callable[[faust.EventT], Awaitable[None]]
BatchWork = Callable[[Sequence[faust.EventT]], Awaitable[None]]

RETRY_MAX_S = 30.0

Item = TypeVar("Item")


async def acknowledge_batches(
    stream: faust.StreamT[Any], work: BatchWork, what: str, size: int, wait_s: float
) -> None:
    """Batches of at most `size` events (or what came within `wait_s`), each done in full, then
    acknowledged in offset order: for flows that write a batch at once."""
    async for events in stream.noack_take(size, wait_s):
        started = time.perf_counter()
        await until_done(work, events, what)
        for event in events:
            await stream.ack(event)
        metrics.batch_done(what, len(events), started)


def one_by_one(work: EventWork) -> BatchWork:
    """A batch in offset order, one event at a time: flows whose state depends on the order."""

    async def run(events: Sequence[faust.EventT]) -> None:
        for event in events:
            await work(event)

    return run


async def until_done(
    work: Callable[[Sequence[Item]], Awaitable[None]], items: Sequence[Item], what: str
) -> None:
    """Do a batch until it is done: it never goes unfinished past this point."""
    delay = 0.5
    while True:
        try:
            await work(items)
            return
        except Exception:
            log.exception("%s failed; retrying in %.1f s, unacknowledged", what, delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, RETRY_MAX_S)


__all__ = ["acknowledge_batches", "one_by_one", "until_done"]
