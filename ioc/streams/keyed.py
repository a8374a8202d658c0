"""Keyed-state flows: messages of a topic keyed by a device (a sensor, a camera) in, rows to store
and incidents out, with one rules state per device.

A flow is kept free of Kafka and database calls, so it is tested on its own; its agent
(`ioc.streams.agents`) does the I/O. The states live in a Faust table backed by a changelog
(cameras) or in the database (sensors, `ioc.streams.batched`); a flow caches the decoded states
of the devices it owns and hands back the ones a batch changed, to be written once per batch,
after the batch's rows and incidents are stored.

Exactly-once state, at-least-once output: a device is always on one partition (it is the key),
so its state records the offset of the last message applied, and a message redelivered after a
crash is not applied twice (windows would count it twice, an episode would see a frame twice).
It is stored again, though: the flow cannot tell a message it stored from one that a delivery
gap kept from it and the held commit redelivered, and row writes are idempotent, so storing
again is harmless where skipping would lose the row for good. Incident messages are
deduplicated downstream.

Clock ticks are messages on the topic itself (a header marks them), one per partition, published
by the leader on a timer. In the stream they are ordered after the messages already there, so a
worker catching up on a backlog never declares a device offline before it has seen the device's
queued messages, and a replay of the topic gives the same incidents.
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import ClassVar, Generic, Protocol, TypeVar

from kafka.partitioner.default import murmur2

from ioc.models import Incident
from ioc.models.base import from_epoch_ms

TICK_HEADER = "ioc-tick"

log = logging.getLogger(__name__)


def is_tick(headers: Iterable[tuple[str, bytes]] | None) -> bool:
    """A clock tick (see the module doc), not data: every reader of the topic skips it."""
    return any(key == TICK_HEADER for key, _ in headers or ())


def partition_of(key: str | bytes, partitions: int) -> int:
    """The partition Kafka's default partitioner gives a key (murmur2, as every client)."""
    raw = key.encode() if isinstance(key, str) else key
    return (murmur2(raw) & 0x7FFFFFFF) % partitions


@dataclass(frozen=True)
class Message:
    """What a flow needs of one Kafka message."""

    value: bytes
    partition: int
    offset: int
    timestamp_ms: int
    tick: bool = False


class KeyedState(Protocol):
    """A device's rules state, as the table holds it (JSON)."""

    source_offset: int | None

    def model_dump_json(self) -> str: ...


S = TypeVar("S", bound=KeyedState)
Item = TypeVar("Item")  # a decoded message: a sensor observation, a frame's detections
Judged = TypeVar("Judged")  # what the rules made of one: transitions, windows, crossings


@dataclass
class FlowOutput(Generic[S]):
    """What every keyed flow hands back; each flow adds its rows."""

    incidents: list[Incident] = field(default_factory=list)
    rejected: list[tuple[int, str]] = field(default_factory=list)  # (index in batch, reason)
    changed: dict[str, S] = field(default_factory=dict)  # to write to the table


Out = TypeVar("Out", bound=FlowOutput)  # type: ignore[type-arg]


class KeyedFlow(ABC, Generic[S, Item, Judged, Out]):
    """Messages and clock ticks of one keyed topic through the rules, one state per device.

    A subclass decodes a message to its device and item, judges an item or a tick (changing the
    state, and raising before it emits anything), and emits what was judged into the output.
    """

    what: ClassVar[str]  # "reading", "frame": named in rejections and logs
    rules_name: ClassVar[str]  # "rules", "camera rules"

    def __init__(
        self, keys: Iterable[str], partitions: int, stored_state: Callable[[str], bytes | None]
    ) -> None:
        self.by_partition: dict[int, list[str]] = {}
        for key in keys:
            self.by_partition.setdefault(partition_of(key, partitions), []).append(key)
        self.stored_state = stored_state
        self.states: dict[str, S] = {}

    # --- What each flow implements ------------------------------------------------------------

    @abstractmethod
    def output(self) -> Out:
        """An empty output."""

    @abstractmethod
    def load_state(self, stored: bytes) -> S: ...

    @abstractmethod
    def start_state(self, key: str, now: datetime) -> S:
        """A device expected to report from `now` on (so that it can be offline)."""

    @abstractmethod
    def decode(self, message: Message) -> tuple[str, Item] | str:
        """The device and the item, or the reason the message is rejected."""

    @abstractmethod
    def judge(self, state: S, key: str, item: Item, message: Message) -> Judged: ...

    @abstractmethod
    def emit(self, key: str, item: Item, judged: Judged, message: Message, out: Out) -> None: ...

    @abstractmethod
    def store_again(self, key: str, item: Item, message: Message, out: Out) -> None:
        """A message applied before (see the module doc): its rows, not its judgement."""

    @abstractmethod
    def judge_tick(self, state: S, key: str, now: datetime) -> Judged: ...

    @abstractmethod
    def emit_tick(self, key: str, judged: Judged, message: Message, out: Out) -> bool:
        """Emit what a tick changed; whether that is worth a changelog write."""

    # --- The flow -----------------------------------------------------------------------------

    def keys_in(self, partitions: Iterable[int]) -> list[str]:
        """The devices whose messages go to these partitions."""
        return [key for partition in partitions for key in self.by_partition.get(partition, ())]

    def forget(self, keys: Iterable[str] | None = None) -> None:
        """Drop cached states (after a rebalance, or output that could not be stored): the
        table, restored from its changelog, is the truth."""
        if keys is None:
            self.states.clear()
        else:
            for key in keys:
                self.states.pop(key, None)

    def process(self, messages: Iterable[Message]) -> Out:
        out = self.output()
        for index, message in enumerate(messages):
            if message.tick:
                self._tick(message, out)
            else:
                reason = self._message(message, out)
                if reason is not None:
                    out.rejected.append((index, reason))
        return out

    def _state(self, key: str, now: datetime) -> S:
        state = self.states.get(key)
        if state is None:
            stored = self.stored_state(key)
            state = self.load_state(stored) if stored else self.start_state(key, now)
            self.states[key] = state
        return state

    def _discard(self, key: str, out: Out) -> None:
        """A state a judgement failed half-way through is not kept: the table's is."""
        self.forget([key])
        out.changed.pop(key, None)

    @staticmethod
    def _applied(state: S, message: Message) -> bool:
        return state.source_offset is not None and message.offset <= state.source_offset

    def _message(self, message: Message, out: Out) -> str | None:
        """Apply one message; the reason when it is rejected."""
        decoded = self.decode(message)
        if isinstance(decoded, str):
            return decoded
        key, item = decoded
        state = self._state(key, from_epoch_ms(message.timestamp_ms))
        if self._applied(state, message):
            self.store_again(key, item, message, out)
            return None
        try:
            judged = self.judge(state, key, item, message)
        except Exception as error:  # a bug for one message must not stop every other device
            log.exception("%s failed on a %s of %s", self.rules_name, self.what, key)
            self._discard(key, out)
            return (
                f"{self.rules_name} failed on this {self.what} ({error!r}); "
                "kept here to replay once fixed"
            )
        state.source_offset = message.offset
        self.emit(key, item, judged, message, out)
        out.changed[key] = state
        return None

    def _tick(self, message: Message, out: Out) -> None:
        now = from_epoch_ms(message.timestamp_ms)
        for key in self.by_partition.get(message.partition, ()):
            new = key not in self.states  # first tick since start-up or a rebalance
            state = self._state(key, now)
            if self._applied(state, message):
                continue
            try:
                judged = self.judge_tick(state, key, now)
            except Exception:  # the next tick tries again; other devices go on
                log.exception("%s failed on a clock tick for %s", self.rules_name, key)
                self._discard(key, out)
                continue
            if self.emit_tick(key, judged, message, out) or new:
                state.source_offset = message.offset
                out.changed[key] = state


__all__ = [
    "TICK_HEADER",
    "FlowOutput",
    "KeyedFlow",
    "KeyedState",
    "Message",
    "is_tick",
    "partition_of",
]
