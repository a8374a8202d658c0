"""At-least-once for Faust agents: an event is acknowledged only after its effects are durable,
and events are acknowledged in offset order, so the committed offset never passes work in flight.

Why not Faust's own `concurrency=N` or `take_events`:
- faust-streaming 0.15.3 commits the highest run of acknowledged offsets. With several actors on
  one stream, a slow event at a partition's head can stay unacknowledged while later ones are
  acknowledged, and the consumer's head-gap guard (`Consumer._new_offset`) misses that case: it is
  off by one for a single event in flight and skipped while the committed offset is 0. A kill then
  loses the slow event (https://github.com/faust-streaming/faust/issues/606, fix in PR #707).
- `take_events` and `events()` acknowledge in a `finally`, so an exception or a cancellation at
  shutdown acknowledges events that were never processed, and the consumer commits them on stop.

So every agent takes a batch without acknowledging it (`noack_take`), processes the whole batch
(concurrently where the flow allows: see `concurrently`), and only then acknowledges every event
of it, in order. Overlap comes from within the batch instead of from actors racing each other.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import faust

log = logging.getLogger(__name__)

BatchWork = Callable[[Sequence[faust.EventT]], Awaitable[None]]
EventWork = Callable[[faust.EventT], Awaitable[None]]

RETRY_MAX_S = 30.0


async def acknowledge_after(
    stream: faust.StreamT[Any], work: BatchWork, what: str, size: int, wait_s: float
) -> None:
    """Batches of at most `size` events (or what came within `wait_s`): each batch is done in
    full, then acknowledged in offset order. `work` is expected to dead-letter bad input itself;
    if it raises anyway (a bug, an outage it did not wait out) the batch is retried, never
    acknowledged unfinished: the partition stops there, loudly, instead of losing the batch."""
    async for events in stream.noack_take(size, wait_s):
        await _until_done(work, events, what)
        for event in events:
            await stream.ack(event)


async def _until_done(work: BatchWork, events: Sequence[faust.EventT], what: str) -> None:
    delay = 0.5
    while True:
        try:
            await work(events)
            return
        except Exception:
            log.exception(
                "%s: a batch of %d events failed; retrying it in %.1f s", what, len(events), delay
            )
            await asyncio.sleep(delay)
            delay = min(delay * 2, RETRY_MAX_S)


def one_by_one(work: EventWork) -> BatchWork:
    """A batch in order, one event at a time: flows whose state depends on the order."""

    async def run(events: Sequence[faust.EventT]) -> None:
        for event in events:
            await work(event)

    return run


def concurrently(work: EventWork, limit: int) -> BatchWork:
    """A batch with up to `limit` events in progress at once: independent events whose database
    round trips overlap. The batch ends when the slowest of them does."""
    slots = asyncio.Semaphore(limit)

    async def bounded(event: faust.EventT) -> None:
        async with slots:
            await work(event)

    async def run(events: Sequence[faust.EventT]) -> None:
        # Every event runs to its end before a failure is raised: a retry of the batch must
        # not overlap a straggler of the failed try.
        outcomes = await asyncio.gather(
            *(bounded(event) for event in events), return_exceptions=True
        )
        for outcome in outcomes:
            if isinstance(outcome, BaseException):
                raise outcome

    return run


__all__ = ["acknowledge_after", "concurrently", "one_by_one"]
