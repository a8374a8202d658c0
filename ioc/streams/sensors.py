"""The sensor flow: a batch of messages from the sensor topic in, rows, windows and incidents out.

Kept free of Kafka and database calls so it is tested on its own; the agent in `ioc.streams.app`
does the I/O. Per-sensor engine state (`ioc.sensors.engine.SensorState`) lives in a Faust table
backed by a changelog; this class keeps the decoded states of the sensors it owns in memory and
hands back the ones a batch changed, to be written to the table once per batch.

Exactly-once state, at-least-once output: a sensor is always on one partition (it is the key),
so its state records the offset of the last message applied, and a message redelivered after a
crash is not applied twice (windows would count it twice). Database writes are idempotent
upserts and incident messages are deduplicated downstream, so they may simply be repeated.

Clock ticks are messages on the sensor topic itself (a header marks them), one per partition,
published by the leader on a timer. In the stream they are ordered after the readings already
there, so a worker catching up on a backlog never declares a sensor offline before it has seen
the sensor's queued readings, and a replay of the topic gives the same incidents.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from kafka.partitioner.default import murmur2

from ioc.models import Incident, IncidentSource, SensorEvent, SensorRegistry, SensorSpec
from ioc.models.base import from_epoch_ms
from ioc.models.incidents import IncidentStatus
from ioc.sensors import fiware
from ioc.sensors.engine import (
    RuleSet,
    SensorRules,
    SensorState,
    Transition,
    WindowAggregate,
    evaluate,
    evaluate_timer,
)
from ioc.store.writer import ReadingRow

TICK_HEADER = "ioc-tick"

log = logging.getLogger(__name__)


def is_tick(headers: Iterable[tuple[str, bytes]] | None) -> bool:
    """A clock tick (see the module doc), not a reading: every reader of the topic skips it."""
    return any(key == TICK_HEADER for key, _ in headers or ())


@dataclass(frozen=True)
class Message:
    """What the flow needs of one Kafka message."""

    value: bytes
    partition: int
    offset: int
    timestamp_ms: int
    tick: bool = False


@dataclass
class BatchOutput:
    readings: list[ReadingRow] = field(default_factory=list)
    windows: list[WindowAggregate] = field(default_factory=list)
    incidents: list[Incident] = field(default_factory=list)
    rejected: list[tuple[int, str]] = field(default_factory=list)  # (index in batch, reason)
    changed: dict[str, SensorState] = field(default_factory=dict)  # to write to the table


def partition_of(sensor_id: str, partitions: int) -> int:
    """The partition Kafka's default partitioner gives a key (murmur2, as every client)."""
    return (murmur2(sensor_id.encode()) & 0x7FFFFFFF) % partitions


def incident_of(transition: Transition, spec: SensorSpec, ingested_ms: int) -> Incident:
    """An engine transition as the incident the walls and alerts see."""
    return Incident(
        id=transition.incident_id,
        kind=transition.kind,
        severity=transition.severity,
        source=IncidentSource.SENSOR,
        source_key=spec.id,
        title=transition.title,
        status=IncidentStatus.RESOLVED if transition.action == "resolve" else IncidentStatus.OPEN,
        event_time=transition.episode_start,
        ingested_at_ms=ingested_ms,
        district=spec.district,
        lat=spec.lat,
        lon=spec.lon,
        evidence={
            "condition": transition.condition,
            "action": transition.action,
            "value": transition.value,
            "unit": transition.unit,
            "level": transition.level,
            "observed_at": transition.event_time.isoformat(),
        },
    )


class SensorFlow:
    """Readings and ticks → stored readings, closed windows, incidents; per-sensor state."""

    def __init__(
        self,
        registry: SensorRegistry,
        ruleset: RuleSet,
        partitions: int,
        stored_state: Callable[[str], bytes | None],
        max_future: timedelta = timedelta(minutes=5),
    ) -> None:
        self.registry = registry
        self.specs = {spec.id: spec for spec in registry.sensors}
        # Every sensor's rules resolved at start: a bad rules file fails the worker's start-up.
        self.rules: dict[str, SensorRules] = {
            spec.id: ruleset.for_sensor(spec) for spec in registry.sensors
        }
        self.by_partition: dict[int, list[str]] = {}
        for spec in registry.sensors:
            self.by_partition.setdefault(partition_of(spec.id, partitions), []).append(spec.id)
        self.stored_state = stored_state
        self.max_future = max_future
        self.states: dict[str, SensorState] = {}

    def forget(self, sensor_ids: Iterable[str] | None = None) -> None:
        """Drop cached states (after a rebalance, or a batch that could not be stored): the
        table, restored from its changelog, is the truth."""
        if sensor_ids is None:
            self.states.clear()
        else:
            for sensor_id in sensor_ids:
                self.states.pop(sensor_id, None)

    def _state(self, sensor_id: str, now: datetime) -> SensorState:
        state = self.states.get(sensor_id)
        if state is None:
            stored = self.stored_state(sensor_id)
            state = (
                SensorState.model_validate_json(stored)
                if stored
                else SensorState.start(sensor_id, now)
            )
            self.states[sensor_id] = state
        return state

    def _discard(self, sensor_id: str, out: BatchOutput) -> None:
        """A state an evaluation failed half-way through is not kept: the table's is."""
        self.forget([sensor_id])
        out.changed.pop(sensor_id, None)

    def process(self, messages: Iterable[Message]) -> BatchOutput:
        out = BatchOutput()
        for index, message in enumerate(messages):
            if message.tick:
                self._tick(message, out)
            else:
                reason = self._reading(message, out)
                if reason is not None:
                    out.rejected.append((index, reason))
        return out

    def _reading(self, message: Message, out: BatchOutput) -> str | None:
        """Apply one reading; the reason when it is rejected."""
        try:  # the intakes' parse: the entity id resolved to a registered sensor
            event = fiware.parse_observation(message.value, self.registry)
        except fiware.ObservationError as error:
            return f"invalid observation: {error}"
        rules = self.rules[event.id]
        arrived = from_epoch_ms(message.timestamp_ms)
        clock = fiware.clock_problem(event, arrived, self.max_future)
        if clock is not None:
            return clock
        state = self._state(event.id, arrived)
        if state.source_offset is not None and message.offset <= state.source_offset:
            # Applied before a restart, or skipped by a delivery gap that the held commit then
            # redelivered: not counted again, but stored again, since the row write is an
            # idempotent upsert and a reading missing from the database is lost for good.
            out.readings.extend(self._rows(event, arrived, late=True))
            return None
        try:
            transitions, windows = evaluate(state, event, rules, arrived)
        except Exception as error:  # a bug for one reading must not stop every other sensor
            log.exception("rules failed on a reading of %s", event.id)
            self._discard(event.id, out)
            return f"rules failed on this reading ({error!r}); kept here to replay once fixed"
        state.source_offset = message.offset
        late = bool(windows) and windows[0].status == "late"
        out.readings.extend(self._rows(event, arrived, late))
        if not late:
            out.windows.extend(windows)
        spec = self.specs[event.id]
        out.incidents.extend(incident_of(t, spec, message.timestamp_ms) for t in transitions)
        out.changed[event.id] = state
        return None

    @staticmethod
    def _rows(event: SensorEvent, arrived: datetime, late: bool) -> list[ReadingRow]:
        """One row per measurement; `late` rows did not change the windows."""
        return [
            ReadingRow(event.id, event.date_observed, name, value, event.type, arrived, late)
            for name, value in event.measurements.items()
        ]

    def _tick(self, message: Message, out: BatchOutput) -> None:
        now = from_epoch_ms(message.timestamp_ms)
        for sensor_id in self.by_partition.get(message.partition, ()):
            new = sensor_id not in self.states  # first tick since start-up or a rebalance
            state = self._state(sensor_id, now)
            if state.source_offset is not None and message.offset <= state.source_offset:
                continue
            try:
                transitions, windows = evaluate_timer(state, self.rules[sensor_id], now)
            except Exception:  # the next tick tries again; other sensors go on
                log.exception("rules failed on a clock tick for %s", sensor_id)
                self._discard(sensor_id, out)
                continue
            if new or transitions or windows:  # else nothing worth a changelog write changed
                state.source_offset = message.offset
                out.changed[sensor_id] = state
            out.windows.extend(windows)
            spec = self.specs[sensor_id]
            out.incidents.extend(incident_of(t, spec, message.timestamp_ms) for t in transitions)


__all__ = [
    "TICK_HEADER",
    "BatchOutput",
    "Message",
    "SensorFlow",
    "incident_of",
    "is_tick",
    "partition_of",
]
