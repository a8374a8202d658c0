"""The sensor readings agent: batches from the sensor topic in, readings, closed windows and
incidents out, with per-sensor rule state (`ioc.rules.sensor.engine.SensorState`, see
`ioc.streams.keyed`).

The busiest flow, so it is not a Faust agent: a plain consumer (`ioc.streams.batched`) hands it
whole fetches. Per batch, one database round trip for the rows (through the sink: batched
idempotent COPY that waits out a database outage instead of failing), one for the closed
windows and one for the states the batch changed (table `flow_states`), then the commit.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from ioc.incidents.candidates import candidate_of
from ioc.kafka import topics
from ioc.models import (
    Incident,
    IncidentSource,
    SensorEvent,
    SensorRegistry,
    SensorSpec,
    load_sensor_registry,
)
from ioc.models.base import from_epoch_ms
from ioc.models.registry import load_camera_registry
from ioc.rules.sensor.base import Transition
from ioc.rules.sensor.engine import SensorState, WindowAggregate, evaluate, evaluate_timer
from ioc.rules.sensor.registry import RuleSet, SensorRules
from ioc.sensors import fiware
from ioc.store.sink import CopySink, SinkError, sink_from_settings
from ioc.store.writer import READING_COLUMNS, READING_KEY, ReadingRow
from ioc.streams.context import StreamContext
from ioc.streams.keyed import FlowOutput, KeyedFlow, Message
from ioc.streams.keyed_work import KeyedWork

log = logging.getLogger(__name__)


@dataclass
class ReadingsOutput(FlowOutput[SensorState]):
    readings: list[ReadingRow] = field(default_factory=list)
    windows: list[WindowAggregate] = field(default_factory=list)


Judged = tuple[list[Transition], list[WindowAggregate]]


def incident_of(transition: Transition, spec: SensorSpec, ingested_ms: int) -> Incident:
    """A sensor rule's transition, with the reading that made it, as a candidate."""
    evidence = {
        "condition": transition.condition,
        "action": transition.action,
        "value": transition.value,
        "unit": transition.unit,
        "level": transition.level,
        "observed_at": transition.event_time.isoformat(),
    }
    return candidate_of(transition, spec, IncidentSource.SENSOR, ingested_ms, evidence)


def rows_of(event: SensorEvent, arrived: datetime, late: bool) -> list[ReadingRow]:
    """One row per measurement; `late` rows did not change the windows."""
    return [
        ReadingRow(event.id, event.date_observed, name, value, event.type, arrived, late)
        for name, value in event.measurements.items()
    ]


class SensorFlow(KeyedFlow[SensorState, SensorEvent, Judged, ReadingsOutput]):
    """Readings and ticks → stored readings, closed windows, incidents; per-sensor state."""

    what = "reading"
    rules_name = "rules"

    def __init__(
        self,
        registry: SensorRegistry,
        ruleset: RuleSet,
        partitions: int,
        stored_state: Callable[[str], bytes | None],
        max_future: timedelta = timedelta(minutes=5),
    ) -> None:
        super().__init__((spec.id for spec in registry.sensors), partitions, stored_state)
        self.registry = registry
        self.specs = {spec.id: spec for spec in registry.sensors}
        # Every sensor's rules resolved at start: a bad rules file fails the worker's start-up.
        self.rules: dict[str, SensorRules] = {
            spec.id: ruleset.for_sensor(spec) for spec in registry.sensors
        }
        self.max_future = max_future

    def output(self) -> ReadingsOutput:
        return ReadingsOutput()

    def load_state(self, stored: bytes) -> SensorState:
        return SensorState.model_validate_json(stored)

    def start_state(self, key: str, now: datetime) -> SensorState:
        return SensorState.start(key, now)

    def decode(self, message: Message) -> tuple[str, SensorEvent] | str:
        try:  # the intakes' parse: the entity id resolved to a registered sensor
            event = fiware.parse_observation(message.value, self.registry)
        except fiware.ObservationError as error:
            return f"invalid observation: {error}"
        clock = fiware.clock_problem(event, from_epoch_ms(message.timestamp_ms), self.max_future)
        return clock if clock is not None else (event.id, event)

    def judge(self, state: SensorState, key: str, item: SensorEvent, message: Message) -> Judged:
        return evaluate(state, item, self.rules[key], from_epoch_ms(message.timestamp_ms))

    def emit(
        self, key: str, item: SensorEvent, judged: Judged, message: Message, out: ReadingsOutput
    ) -> None:
        transitions, windows = judged
        late = bool(windows) and windows[0].status == "late"
        out.readings.extend(rows_of(item, from_epoch_ms(message.timestamp_ms), late))
        if not late:
            out.windows.extend(windows)
        self._incidents(key, transitions, message, out)

    def store_again(
        self, key: str, item: SensorEvent, message: Message, out: ReadingsOutput
    ) -> None:
        out.readings.extend(rows_of(item, from_epoch_ms(message.timestamp_ms), late=True))

    def judge_tick(self, state: SensorState, key: str, now: datetime) -> Judged:
        return evaluate_timer(state, self.rules[key], now)

    def emit_tick(self, key: str, judged: Judged, message: Message, out: ReadingsOutput) -> bool:
        transitions, windows = judged
        out.windows.extend(windows)
        self._incidents(key, transitions, message, out)
        return bool(transitions or windows)

    def _incidents(
        self, key: str, transitions: Iterable[Transition], message: Message, out: ReadingsOutput
    ) -> None:
        spec = self.specs[key]
        out.incidents.extend(incident_of(t, spec, message.timestamp_ms) for t in transitions)


class ReadingsSink:
    """The readings' COPY sink, replaced by a fresh one after a non-transient error."""

    def __init__(self, ctx: StreamContext) -> None:
        self.ctx = ctx
        self.sink = self._new()

    def _new(self) -> CopySink:
        settings = self.ctx.settings
        return sink_from_settings(
            settings.database.dsn,
            settings.storage,
            "sensor_readings",
            READING_COLUMNS,
            READING_KEY,
            copy=settings.database.bulk_copy,
        )

    async def write(self, rows: Sequence[ReadingRow]) -> None:
        try:
            await self.sink.put_many(row.values() for row in rows)
            await self.sink.flush()  # committed before the state is written and offsets committed
        except SinkError:
            await self.sink.abort()
            self.sink = self._new()
            raise

    async def close(self) -> None:
        await self.sink.close()


def register(ctx: StreamContext) -> None:
    streams = ctx.settings.streams
    group = streams.group_of("sensors")
    stored: dict[str, bytes] = {}  # the database's states of the partitions this worker owns
    flow = SensorFlow(
        load_sensor_registry(streams.sensor_registry).with_camera_lines(
            load_camera_registry(ctx.settings.cameras.registry)
        ),
        RuleSet.load(streams.sensor_rules),
        ctx.settings.kafka.partitions,
        stored_state=stored.get,
        max_future=timedelta(seconds=streams.sensor_max_future_s),
    )
    sink = ReadingsSink(ctx)

    async def store(output: ReadingsOutput) -> None:
        await sink.write(output.readings)
        await ctx.store.upsert_windows(output.windows)
        for incident in output.incidents:
            await ctx.raise_incident(incident)

    ctx.batched(
        ctx.settings.kafka.topic(topics.SENSOR_EVENTS),
        group,
        KeyedWork(ctx, flow, group, "sensors", store, stored),
        "sensors",
        streams.sensor_batch_size,
        streams.sensor_batch_wait_s,
    )
    ctx.closers.append(sink.close)
