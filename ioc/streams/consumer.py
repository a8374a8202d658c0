"""A Kafka consumer for the streams app that delivers each partition in order, without holes,
and never commits an offset no agent finished.

faust-streaming 0.15.3 (pinned) loses input when a worker (re)joins with a backlog, as `ioc chaos`
showed (22 of 553 tickets, in stretches):

- During table recovery its fetcher already runs, and recovery resumes the stream partitions
  *before* it seeks them to their committed offsets (`Recovery._resume_streams`), so records
  fetched before the seek keep arriving after it.
- Its drain loop drops every record below the last offset it read ("DROPPED MESSAGE") and counts
  a jump above it as a log gap, acknowledged (`Consumer._add_gap`). After that seek, a partition
  was delivered 34 then 42 on, its refetched 35..41 were dropped, and a commit went over them.
- A record a stream skips (stale rebalance generation, paused flow) is acknowledged unprocessed,
  and the head guard of `Consumer._new_offset` is off by one (faust-streaming #606).

This consumer keeps Faust's fetching and rebalancing and decides two things itself:

- Delivery: a partition's records reach the streams one after another from where it was last
  sought. A record already delivered is dropped; one that jumps ahead seeks the partition back to
  the next offset due. Only when a fetch begun after that seek still starts above it is the jump a
  real hole in the log (expired by retention), logged and passed.
- Commits: only records a stream really took count as acknowledged, and a commit only advances
  over a run of acknowledged offsets that starts at the committed one (with none yet, a new
  group's, at the lowest acknowledged one). The app's input topics are neither compacted nor
  written in transactions (tests/streams/test_consumer.py checks it): consecutive offsets.

Changelog topics (table recovery, not acknowledged) pass through as Faust delivers them.

A record fetched for an earlier rebalance generation is not delivered at all. A loaded CI run held
one partition's commit at offset 12 for 18 minutes after a restart, while the two others, with the
same records, moved on. The sequence that explains it: that partition's record 12 arrived once
with the generation from before the assignment, after recovery's seek; it was delivered, and the
stream skipped it as stale, so its copy fetched after the seek was dropped as delivered already,
and nothing could be committed past it. A watchdog keeps the rule live whatever else may hold a
commit: a partition whose commit has not moved for `STALLED_S` while the log has records past it
and no agent holds one is fetched again from its committed offset, with a warning that records its
state. The records are processed again (every write is idempotent), never skipped.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Iterable, Iterator, Mapping
from typing import Any

import faust
from faust.transport.drivers import aiokafka as faust_aiokafka
from faust.types import TP, Message

log = logging.getLogger(__name__)

STALLED_S = 60.0  # far above a batch's work, short of a drain check's patience


class _ReadOffsetsNeverKnown(dict[TP, int | None]):
    """Faust's read offsets, as its drain loop sees them: never known, so that loop neither drops
    nor skips a record; `AtLeastOnceConsumer` keeps order itself. Writes are kept, unread."""

    def __getitem__(self, tp: TP) -> None:
        return None


class AtLeastOnceConsumer(faust_aiokafka.Consumer):
    """Faust's aiokafka consumer, delivering partitions in order and committing only runs of
    offsets that agents finished."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._read_offset = _ReadOffsetsNeverKnown()
        self._deliver = self.callback
        self.callback = self._deliver_in_order
        self._next_offset: dict[TP, int] = {}  # next record due, per acknowledged partition
        self._fetches = 0  # fetches begun so far
        self._sought_back: dict[TP, tuple[int, int]] = {}  # offset sought back to, in fetch n
        self._moved_at: dict[TP, float] = {}  # when each partition's commit last moved

    async def getmany(self, timeout: float) -> AsyncIterator[tuple[TP, Message]]:
        self._fetches += 1
        async for fetched in super().getmany(timeout):
            yield fetched

    async def seek_to_committed(self) -> Mapping[TP, int]:
        offsets = await super().seek_to_committed()
        for tp, offset in offsets.items():
            self._sought(tp, offset)
        return offsets

    async def _seek(self, partition: TP, offset: int) -> None:
        await super()._seek(partition, offset)
        self._sought(partition, offset)

    async def on_partitions_revoked(self, revoked: set[TP]) -> None:
        for tp in revoked:
            self._next_offset.pop(tp, None)
            self._sought_back.pop(tp, None)
            self._moved_at.pop(tp, None)
        await super().on_partitions_revoked(revoked)

    def _sought(self, tp: TP, offset: int | None) -> None:
        self._sought_back.pop(tp, None)
        self._moved_at[tp] = time.monotonic()
        if offset is None or offset < 0:  # nothing committed: the first record fetched
            self._next_offset.pop(tp, None)
        else:
            self._next_offset[tp] = offset

    async def _deliver_in_order(self, message: Message) -> None:
        if not self.app.topics.acks_enabled_for(message.topic):
            await self._deliver(message)
            return
        if message.generation_id != self.app.consumer_generation_id:
            # Fetched before this generation's assignment: a stream would skip it unprocessed,
            # and taking its place would make the copy fetched after the seek look delivered.
            return
        tp, offset = message.tp, message.offset
        expected = self._next_offset.get(tp, offset)
        if offset < expected:
            return  # delivered already: fetched before a seek, and again after it
        if offset > expected:
            if not self._hole_confirmed(tp, expected):
                self._seek_back(tp, expected)
                return
            log.warning("%s: offsets %d..%d are not in the log; going on", tp, expected, offset - 1)
        self._next_offset[tp] = offset + 1
        self._sought_back.pop(tp, None)
        await self._deliver(message)

    def _hole_confirmed(self, tp: TP, expected: int) -> bool:
        """A fetch begun after `tp` was sought back to `expected` still started above it."""
        offset, fetch = self._sought_back.get(tp, (None, self._fetches))
        return offset == expected and self._fetches > fetch

    def _seek_back(self, tp: TP, offset: int) -> None:
        """Fetch `tp` again from `offset` (a record beyond it came first), once per offset."""
        if self._sought_back.get(tp, (None, 0))[0] != offset:
            self._sought_back[tp] = (offset, self._fetches)
            self._thread.seek(tp, offset)

    def ack(self, message: Message) -> bool:
        """Ignore acknowledgements of records no stream took (a stream acknowledges the records
        it skips for a stale generation or paused flow: they come again after the seek)."""
        if not message.tracked:
            return False
        return super().ack(message)

    def _new_offset(self, tp: TP) -> int | None:
        """The offset after the run of acknowledged offsets that starts at the committed one;
        None while that offset is not acknowledged (a record in progress, or not yet delivered)."""
        acked = self._acked[tp]
        committed = self._committed_offset[tp]
        acked.sort()
        if committed is not None:
            below = sum(1 for offset in acked if offset < committed)  # redelivered, done before
            self._acked_index[tp].difference_update(acked[:below])
            del acked[:below]
        if not acked or (committed is not None and acked[0] != committed):
            self._watch(tp, committed)
            return None
        run = 1
        while run < len(acked) and acked[run] == acked[run - 1] + 1:
            run += 1
        self._acked_index[tp].difference_update(acked[:run])
        next_offset = acked[run - 1] + 1
        del acked[:run]
        self._moved_at[tp] = time.monotonic()
        return next_offset

    def _filter_tps_with_pending_acks(self, topics: Iterable[Any] | None = None) -> Iterator[TP]:
        """Every assigned partition of an acknowledged topic, so that the watchdog sees one
        whose records stopped coming as well as one whose commit stopped."""
        pending = set(super()._filter_tps_with_pending_acks(topics))
        assigned = {
            tp
            for tp in self.assignment()
            if self.app.topics.acks_enabled_for(tp.topic)
            and (topics is None or tp in topics or tp.topic in topics)
        }
        return iter(pending | assigned)

    def _watch(self, tp: TP, committed: int | None) -> None:
        """Fetch `tp` again from its committed offset when its commit is stalled (see above)."""
        now = time.monotonic()
        since = self._moved_at.setdefault(tp, now)
        if committed is None or now - since < STALLED_S:
            return
        highwater = self.highwater(tp)
        if highwater is None or highwater <= committed:  # nothing past the commit: idle
            self._moved_at[tp] = now
            return
        if any(
            message.tp == tp and message.offset >= committed and not message.acked
            for message in list(self._unacked_messages)
        ):
            return  # an agent is still on it: slow, not stalled
        log.warning(
            "%s: commit held at %d for %.0f s, records up to %d, none in progress (next due %s,"
            " done %s); fetching again from %d",
            tp,
            committed,
            now - since,
            highwater - 1,
            self._next_offset.get(tp),
            sorted(self._acked[tp])[:5],
            committed,
        )
        self._thread.seek(tp, committed)
        self._sought(tp, committed)


class AtLeastOnceTransport(faust_aiokafka.Transport):
    """The aiokafka transport with `AtLeastOnceConsumer`."""

    Consumer = AtLeastOnceConsumer


def consume_at_least_once(app: faust.App) -> None:
    """Give a new app `AtLeastOnceConsumer`; before anything touches `app.transport`."""
    app.transport = AtLeastOnceTransport(app.conf.broker_consumer, app)


__all__ = ["AtLeastOnceConsumer", "AtLeastOnceTransport", "consume_at_least_once"]
