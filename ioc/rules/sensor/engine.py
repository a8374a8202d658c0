"""The sensor rule engine: each reading through every rule that applies to its sensor, and the
1-minute aggregate windows, over a small per-sensor state (a JSON-serialisable pydantic model
kept in the flow's state table).

`evaluate(state, event, rules, now)` handles an arriving reading; `evaluate_timer(state, rules,
now)` is called periodically for the rules that watch the clock (offline) and to close aggregate
windows when a sensor goes quiet. Both update the state in place (copying it per reading would
cost more than the evaluation itself) and return the incident transitions (open / update /
resolve) and the windows that closed. The rules themselves are plugins
(`ioc/rules/sensor/plugins/`, one file each, configured by `sensor_rules.toml`).

The recent readings of each property a rule judges are kept sorted by observation time, so
conditions tolerate out-of-order readings, and compacted to run ends, so a long flat stretch
costs two readings.

Lateness: the watermark is the latest event time seen minus the grace period; a window closes
once its end is at or before the watermark. A reading whose window is still open is counted in
it, whatever order it came in; a reading whose window has closed is late: it is returned as a
`late` aggregate of its own and counted in `SensorState.late_count`, and it neither reopens the
window nor feeds the rules (they have moved on).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Literal

from pydantic import BaseModel, Field

from ioc.models.events import SensorEvent
from ioc.rules.sensor.base import (
    STATE_CONFIG,
    ConditionState,
    Now,
    Reading,
    Seen,
    Transition,
)
from ioc.rules.sensor.registry import TICKED, SensorRules

MAX_READINGS = 720  # per property, after compression; bounds the state whatever the rate
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


# --- State ---------------------------------------------------------------------------------


@dataclass(slots=True)
class WindowAggregate:
    """One property over one tumbling window, by event time."""

    __pydantic_config__ = STATE_CONFIG

    sensor_id: str
    property: str
    start: datetime
    end: datetime
    count: int = 0
    min: float = 0.0
    max: float = 0.0
    mean: float = 0.0
    last: float = 0.0
    last_time: datetime | None = None  # event time of `last`
    status: Literal["open", "closed", "late"] = "open"

    def add(self, moment: datetime, value: float) -> None:
        if self.count == 0:
            self.min = self.max = value
        else:
            self.min, self.max = min(self.min, value), max(self.max, value)
        self.count += 1
        self.mean += (value - self.mean) / self.count
        if self.last_time is None or moment >= self.last_time:
            self.last, self.last_time = value, moment


class SensorState(BaseModel):
    """What the engine keeps per sensor between readings (a row of the flow's state table)."""

    model_config = STATE_CONFIG

    sensor_id: str
    watching_since: datetime | None = Field(None, description="Offline clock before a reading.")
    last_arrival: datetime | None = Field(None, description="Wall clock of the last reading.")
    last_event_time: datetime | None = Field(None, description="Latest event time seen.")
    watermark: datetime | None = None
    closed_through: datetime | None = Field(None, description="Windows before this are closed.")
    late_count: int = 0
    source_offset: int | None = Field(
        None, description="Offset of the last message applied (its sensor is on one partition)."
    )
    history: dict[str, list[Reading]] = Field(default_factory=dict)
    conditions: dict[str, ConditionState] = Field(default_factory=dict)
    windows: list[WindowAggregate] = Field(default_factory=list)

    @classmethod
    def start(cls, sensor_id: str, now: datetime) -> SensorState:
        """A sensor that is expected to report from `now` on (so it can be offline)."""
        return cls(sensor_id=sensor_id, watching_since=_utc(now))


# --- Evaluation ----------------------------------------------------------------------------


def _utc(moment: datetime) -> datetime:
    return moment.astimezone(UTC)


def _window_start(moment: datetime, seconds: int) -> datetime:
    step = timedelta(seconds=seconds)
    return EPOCH + ((moment - EPOCH) // step) * step


def _condition(state: SensorState, name: str) -> ConditionState:
    """The condition's state, created on first use (not built anew on every reading)."""
    found = state.conditions.get(name)
    if found is None:
        found = state.conditions[name] = ConditionState()
    return found


def _record(history: list[Reading], moment: datetime, value: float, horizon: timedelta) -> None:
    """Insert in event-time order, drop readings that add nothing, and those out of reach.

    Work is local to the insertion point (the rest of the list already satisfies the same
    invariants), so a reading costs the same however long the history is."""
    index = len(history)
    while index > 0 and history[index - 1].t > moment:
        index -= 1
    if index > 0 and history[index - 1].t == moment:
        history[index - 1].v = value  # the same instant twice: a redelivery or a correction
        index -= 1
    else:
        history.insert(index, Reading(t=moment, v=value))
    # The middle of three equal values is implied by the other two: only run ends are kept,
    # so a flatline of any length costs two readings. Only neighbours of the change can be new
    # middles; they are found first and removed together, as run ends must survive.
    middles = [
        i
        for i in range(max(index - 1, 1), min(index + 2, len(history) - 1))
        if history[i - 1].v == history[i].v == history[i + 1].v
    ]
    for i in reversed(middles):
        del history[i]
    # Keep one reading at or before the cutoff: it anchors runs and rises that began earlier.
    cutoff = history[-1].t - horizon
    first = 0
    while first + 1 < len(history) and history[first + 1].t <= cutoff:
        first += 1
    first = max(first, len(history) - MAX_READINGS)
    if first:
        del history[:first]


def _close_windows(
    state: SensorState, rules: SensorRules, watermark: datetime
) -> list[WindowAggregate]:
    if state.watermark is not None and watermark <= state.watermark:
        return []
    state.watermark = watermark
    closed_through = _window_start(watermark, rules.window_seconds)
    if closed_through == state.closed_through:
        return []  # the watermark moved within a window: nothing more can close
    state.closed_through = closed_through
    closed = [window for window in state.windows if window.start < closed_through]
    state.windows = [window for window in state.windows if window.start >= closed_through]
    for window in closed:
        window.status = "closed"
    return sorted(closed, key=lambda window: (window.start, window.property))


Outcome = tuple[list[Transition], list[WindowAggregate]]


def evaluate(state: SensorState, event: SensorEvent, rules: SensorRules, now: datetime) -> Outcome:
    """One arriving reading (`now` is its arrival time: the Kafka timestamp, so replays agree)."""
    moment, now = _utc(event.date_observed), _utc(now)
    transitions: list[Transition] = []
    state.last_arrival = now if state.last_arrival is None else max(state.last_arrival, now)
    for rule, check, out in rules.active:
        open_condition = state.conditions.get(rule.name)
        if open_condition is not None and open_condition.incident_id is not None:
            transitions += rule.on_return(check, open_condition, Now(now, state.last_arrival), out)

    start = _window_start(moment, rules.window_seconds)
    end = start + timedelta(seconds=rules.window_seconds)
    if state.closed_through is not None and start < state.closed_through:
        state.late_count += 1
        late = []
        for prop, value in sorted(event.measurements.items()):
            window = WindowAggregate(
                sensor_id=rules.sensor_id, property=prop, start=start, end=end, status="late"
            )
            window.add(moment, value)
            late.append(window)
        return transitions, late

    for prop, value in sorted(event.measurements.items()):
        window = next((w for w in state.windows if w.property == prop and w.start == start), None)
        if window is None:
            window = WindowAggregate(sensor_id=rules.sensor_id, property=prop, start=start, end=end)
            state.windows.append(window)
        window.add(moment, value)
    state.windows.sort(key=lambda window: (window.start, window.property))

    horizon = rules.horizon
    for prop in sorted(rules.tracked & event.measurements.keys()):
        _record(state.history.setdefault(prop, []), moment, event.measurements[prop], horizon)
    if state.last_event_time is None or moment > state.last_event_time:
        state.last_event_time = moment
    closed = _close_windows(
        state, rules, state.last_event_time - timedelta(seconds=rules.grace_seconds)
    )
    for rule, check, out in rules.active:
        history = state.history.get(check.property) if check.property else None
        if history:
            seen = Seen(history)
            transitions += rule.on_reading(check, _condition(state, rule.name), seen, out)
    return transitions, closed


def evaluate_timer(state: SensorState, rules: SensorRules, now: datetime) -> Outcome:
    """A wall-clock tick: the rules that watch the clock, and windows closed while the sensor is
    quiet.

    The watermark moves on by the wall time elapsed since the last arrival, so a sensor whose
    clock is off by minutes does not have its readings declared late."""
    now = _utc(now)
    transitions: list[Transition] = []
    tick = Now(now, state.last_arrival or state.watching_since)
    for rule, check, out in rules.active:
        if rule.name not in TICKED:
            continue
        condition = _condition(state, rule.name)
        transitions += rule.on_tick(check, condition, tick, out)
        if condition.incident_id is None and condition == ConditionState():
            del state.conditions[rule.name]
    closed: list[WindowAggregate] = []
    if state.last_event_time is not None and state.last_arrival is not None:
        quiet = max(now - state.last_arrival, timedelta(0))
        watermark = state.last_event_time + quiet - timedelta(seconds=rules.grace_seconds)
        closed = _close_windows(state, rules, watermark)
    return transitions, closed


__all__ = [
    "Outcome",
    "SensorState",
    "WindowAggregate",
    "evaluate",
    "evaluate_timer",
]
