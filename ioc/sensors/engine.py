"""The sensor rule engine: rules as data (`rules.toml`), evaluated by pure functions over a
small per-sensor state that a Faust table can keep (it is a JSON-serialisable pydantic model).

`evaluate(state, event, rules, now)` handles an arriving reading; `evaluate_timer(state, rules,
now)` is called periodically for the offline check and to close aggregate windows when a sensor
goes quiet. Both update the state in place (copying it per reading would cost more than the
evaluation itself) and return the incident transitions (open / update / resolve) and the
1-minute windows that closed.

Conditions are judged in event time and tolerate out-of-order readings: the recent readings are
kept sorted by observation time, and hold times are measured on the trailing run of readings
that meet the condition. Each condition has hysteresis: it opens once after its hold time,
updates while open, and resolves only when the value stays below a clear level for the clear
hold time, so a sensor oscillating around a threshold gives one incident, not one per crossing.

Lateness: the watermark is the latest event time seen minus the grace period; a window closes
once its end is at or before the watermark. A reading whose window is still open is counted in
it, whatever order it came in; a reading whose window has closed is late: it is returned as a
`late` aggregate of its own and counted in `SensorState.late_count`, and it neither reopens the
window nor feeds the conditions (they have moved on).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from functools import cached_property
from itertools import pairwise
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, model_validator

from ioc.models.base import deterministic_id
from ioc.models.events import SensorEvent
from ioc.models.incidents import IncidentKind, IncidentSource, Severity
from ioc.models.registry import SensorSpec
from ioc.rulefiles import deep_merge, read_layered
from ioc.rules.hysteresis import Hysteresis
from ioc.sensors.fiware import QUANTITIES

RULES_PATH = Path(__file__).resolve().parent / "rules.toml"
MAX_READINGS = 720  # per property, after compression; bounds the state whatever the rate
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

LevelName = Literal["threshold", "alert", "danger"]
Condition = Literal["threshold", "alert", "danger", "rate_of_rise", "flatline", "offline"]
Action = Literal["open", "update", "resolve"]
LEVEL_NAMES: tuple[LevelName, ...] = ("threshold", "alert", "danger")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# --- Rules as configured -------------------------------------------------------------------


class LevelSpec(_Strict):
    above: float | None = Field(None, description="Unset: the registry's alert_level + offset.")
    offset: float = 0.0
    severity: Severity


class LevelsRule(_Strict):
    enabled: bool = True
    property: str | None = Field(None, description="Unset: the registry's property.")
    kind: IncidentKind
    threshold: LevelSpec | None = None
    alert: LevelSpec | None = None
    danger: LevelSpec | None = None
    hold_minutes: float = Field(5.0, ge=0)
    clear_below: float | None = Field(None, description="Unset: lowest level - clear_margin.")
    clear_margin: float = Field(0.0, ge=0)
    clear_hold_minutes: float = Field(10.0, ge=0)
    update_every_minutes: float | None = Field(None, gt=0)

    @model_validator(mode="after")
    def _shape(self) -> LevelsRule:
        if self.threshold is not None and (self.alert is not None or self.danger is not None):
            raise ValueError("levels: use either threshold, or alert (and optionally danger)")
        if self.threshold is None and self.alert is None:
            raise ValueError("levels: a threshold or an alert level is required")
        return self


class RateOfRiseRule(_Strict):
    enabled: bool = True
    property: str | None = None
    kind: IncidentKind = IncidentKind.WATER_LEVEL_HIGH
    severity: Severity = Severity.HIGH
    rise: float = Field(gt=0, description="Rise, in the property's unit, within the window.")
    window_minutes: float = Field(gt=0)
    hold_minutes: float = Field(0.0, ge=0)
    clear_rise: float | None = Field(None, ge=0, description="Unset: rise / 2.")
    clear_hold_minutes: float = Field(10.0, ge=0)

    @model_validator(mode="after")
    def _clear_below_rise(self) -> RateOfRiseRule:
        if self.clear_rise is not None and self.clear_rise >= self.rise:
            raise ValueError("rate_of_rise: clear_rise must be below rise")
        return self


class FlatlineRule(_Strict):
    enabled: bool = True
    property: str | None = None
    minutes: float = Field(gt=0)
    severity: Severity = Severity.NORMAL


class OfflineRule(_Strict):
    enabled: bool = True
    minutes: float = Field(gt=0)
    severity: Severity = Severity.NORMAL


class TypeRules(_Strict):
    grace_seconds: float = Field(120.0, ge=0)
    window_seconds: int = Field(60, gt=0)
    levels: LevelsRule | None = None
    rate_of_rise: RateOfRiseRule | None = None
    flatline: FlatlineRule | None = None
    offline: OfflineRule | None = None


class SensorOverride(_Strict):
    """Partial rules for one sensor; merged into its type's and validated when loaded."""

    type: str
    grace_seconds: float | None = None
    window_seconds: int | None = None
    levels: dict[str, Any] | None = None
    rate_of_rise: dict[str, Any] | None = None
    flatline: dict[str, Any] | None = None
    offline: dict[str, Any] | None = None


# --- Rules resolved for one sensor ---------------------------------------------------------


class ResolvedLevel(_Strict):
    name: LevelName
    above: float
    severity: Severity


class LevelsCheck(_Strict):
    property: str
    unit: str
    kind: IncidentKind
    levels: list[ResolvedLevel] = Field(min_length=1, description="Ascending.")
    hold_minutes: float
    clear_below: float
    clear_hold_minutes: float
    update_every_minutes: float | None


class RateOfRiseCheck(_Strict):
    property: str
    unit: str
    kind: IncidentKind
    severity: Severity
    rise: float
    window_minutes: float
    hold_minutes: float
    clear_rise: float
    clear_hold_minutes: float


class FlatlineCheck(_Strict):
    property: str
    unit: str
    minutes: float
    severity: Severity


class SensorRules(_Strict):
    """Everything `evaluate` needs for one sensor, with every default filled in."""

    sensor_id: str
    name: str
    type: str
    grace_seconds: float
    window_seconds: int
    levels: LevelsCheck | None = None
    rate_of_rise: RateOfRiseCheck | None = None
    flatline: FlatlineCheck | None = None
    offline: OfflineRule | None = None

    @cached_property
    def tracked(self) -> frozenset[str]:
        """Properties whose recent readings the conditions need."""
        checks = (self.levels, self.rate_of_rise, self.flatline)
        return frozenset(check.property for check in checks if check is not None)

    @cached_property
    def horizon(self) -> timedelta:
        """How far back readings are kept: the longest hold or window, plus the grace. Flatline
        needs no more: a run of equal values is kept as its two ends, and the trim keeps one
        reading from before the horizon, which is the run's start."""
        minutes = [0.0]
        if self.levels:
            minutes += [self.levels.hold_minutes, self.levels.clear_hold_minutes]
        if self.rate_of_rise:
            minutes += [self.rate_of_rise.window_minutes]
        return timedelta(minutes=max(minutes), seconds=self.grace_seconds + self.window_seconds)


def _unit(prop: str, spec: SensorSpec) -> str:
    if prop == spec.property:
        return spec.unit
    quantity = QUANTITIES.get(prop)
    return quantity.unit if quantity else ""


class RuleSet(_Strict):
    """`rules.toml`: defaults per FIWARE type and per-sensor overrides."""

    version: Literal[1]
    extends_bundled: bool = Field(
        False,
        description="Layer this file over the bundled rules.toml: a site file then holds only "
        "what differs (a sensor's override, a type's hold time) instead of a copy of it all.",
    )
    types: dict[str, TypeRules] = Field(default_factory=dict)
    sensors: dict[str, SensorOverride] = Field(default_factory=dict)
    _merged: dict[str, TypeRules] = PrivateAttr(default_factory=dict)

    @model_validator(mode="after")
    def _merge_overrides(self) -> RuleSet:
        for sensor_id, override in self.sensors.items():
            base = self.types.get(override.type, TypeRules()).model_dump(exclude_unset=True)
            patch = override.model_dump(exclude_unset=True, exclude={"type"})
            try:
                self._merged[sensor_id] = TypeRules.model_validate(deep_merge(base, patch))
            except ValueError as error:
                raise ValueError(f"sensors.{sensor_id}: {error}") from None
        return self

    @classmethod
    def load(cls, path: Path | None = None) -> RuleSet:
        return cls.model_validate(read_layered(path, RULES_PATH))

    def type_rules(self, spec: SensorSpec) -> TypeRules:
        override = self.sensors.get(spec.id)
        if override is not None:
            if override.type != spec.type:
                raise ValueError(
                    f"rules for sensor {spec.id} are for type {override.type}, "
                    f"the registry says {spec.type}"
                )
            return self._merged[spec.id]
        return self.types.get(spec.type, TypeRules())

    def for_sensor(self, spec: SensorSpec) -> SensorRules:
        rules = self.type_rules(spec)
        levels = rate = flatline = None
        if rules.levels is not None and rules.levels.enabled:
            levels = _resolve_levels(rules.levels, spec)
        if rules.rate_of_rise is not None and rules.rate_of_rise.enabled:
            rule = rules.rate_of_rise
            prop = rule.property or spec.property
            rate = RateOfRiseCheck(
                property=prop,
                unit=_unit(prop, spec),
                kind=rule.kind,
                severity=rule.severity,
                rise=rule.rise,
                window_minutes=rule.window_minutes,
                hold_minutes=rule.hold_minutes,
                clear_rise=rule.rise / 2 if rule.clear_rise is None else rule.clear_rise,
                clear_hold_minutes=rule.clear_hold_minutes,
            )
        if rules.flatline is not None and rules.flatline.enabled:
            prop = rules.flatline.property or spec.property
            flatline = FlatlineCheck(
                property=prop,
                unit=_unit(prop, spec),
                minutes=rules.flatline.minutes,
                severity=rules.flatline.severity,
            )
        offline = rules.offline if rules.offline is not None and rules.offline.enabled else None
        if spec.camera is not None:
            offline = None  # a camera's line: the camera's own offline incident covers it
        return SensorRules(
            sensor_id=spec.id,
            name=spec.name,
            type=spec.type,
            grace_seconds=rules.grace_seconds,
            window_seconds=rules.window_seconds,
            levels=levels,
            rate_of_rise=rate,
            flatline=flatline,
            offline=offline,
        )


def _resolve_levels(rule: LevelsRule, spec: SensorSpec) -> LevelsCheck:
    prop = rule.property or spec.property
    levels = [
        ResolvedLevel(
            name=name,
            above=level.above if level.above is not None else spec.alert_level + level.offset,
            severity=level.severity,
        )
        for name in LEVEL_NAMES
        if (level := getattr(rule, name)) is not None
    ]
    for lower, higher in pairwise(levels):
        if higher.above <= lower.above:
            raise ValueError(
                f"sensor {spec.id}: {higher.name} level {higher.above:g} must be above "
                f"{lower.name} level {lower.above:g}"
            )
    clear = (
        rule.clear_below if rule.clear_below is not None else levels[0].above - rule.clear_margin
    )
    if clear > levels[0].above:
        raise ValueError(
            f"sensor {spec.id}: clear level {clear:g} is above {levels[0].name} level "
            f"{levels[0].above:g}"
        )
    return LevelsCheck(
        property=prop,
        unit=_unit(prop, spec),
        kind=rule.kind,
        levels=levels,
        hold_minutes=rule.hold_minutes,
        clear_below=clear,
        clear_hold_minutes=rule.clear_hold_minutes,
        update_every_minutes=rule.update_every_minutes,
    )


# --- State ---------------------------------------------------------------------------------


class _State(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Reading(_State):
    t: datetime
    v: float


class ConditionState(_State):
    """Hysteresis of one condition (`levels`, `rate_of_rise`, `flatline`, `offline`)."""

    above_since: datetime | None = Field(None, description="Condition met since (event time).")
    below_clear_since: datetime | None = Field(None, description="Below the clear level since.")
    incident_id: str | None = None
    level: Condition | None = Field(None, description="Condition reported for the open incident.")
    severity: Severity | None = None
    episode_start: datetime | None = None
    last_report: datetime | None = Field(None, description="Time of the last open or update.")
    peak: float | None = None
    reference: float | None = Field(None, description="Flatline: the stuck value.")


class WindowAggregate(_State):
    """One property over one tumbling window, by event time."""

    sensor_id: str
    property: str
    start: datetime
    end: datetime
    count: int = 0
    min: float = 0.0
    max: float = 0.0
    mean: float = 0.0
    last: float = 0.0
    last_time: datetime | None = Field(None, description="Event time of `last`.")
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


class SensorState(_State):
    """What the engine keeps per sensor between readings (a changelog-backed table value)."""

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


class Transition(_Strict):
    """What happened to one incident: the agent turns it into an `Incident` upsert."""

    sensor_id: str
    condition: Condition
    action: Action
    incident_id: str
    kind: IncidentKind
    severity: Severity
    title: str
    value: float | None = None
    unit: str = ""
    level: float | None = Field(None, description="The level, rise or minutes it is judged by.")
    episode_start: datetime
    event_time: datetime


# --- Evaluation ----------------------------------------------------------------------------


def _utc(moment: datetime) -> datetime:
    return moment.astimezone(UTC)


def _window_start(moment: datetime, seconds: int) -> datetime:
    step = timedelta(seconds=seconds)
    return EPOCH + ((moment - EPOCH) // step) * step


def _incident_id(sensor_id: str, slot: str, start: datetime) -> str:
    return deterministic_id("inc", IncidentSource.SENSOR, sensor_id, slot, start.isoformat())


def _fmt_minutes(minutes: float) -> str:
    return f"{minutes:g} min"


def _condition(state: SensorState, name: str) -> ConditionState:
    """The condition's state, created on first use (not built anew on every reading)."""
    found = state.conditions.get(name)
    if found is None:
        found = state.conditions[name] = ConditionState()
    return found


def _run_since(history: list[Reading], meets: Callable[[float], bool]) -> datetime | None:
    """Event time of the first reading of the trailing run that meets the condition."""
    since = None
    for reading in reversed(history):
        if not meets(reading.v):
            break
        since = reading.t
    return since


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


def _transition(
    rules: SensorRules,
    cs: ConditionState,
    condition: Condition,
    action: Action,
    *,
    kind: IncidentKind,
    title: str,
    value: float | None,
    unit: str,
    level: float | None,
    at: datetime,
) -> Transition:
    assert cs.incident_id is not None and cs.severity is not None
    assert cs.episode_start is not None
    return Transition(
        sensor_id=rules.sensor_id,
        condition=condition,
        action=action,
        incident_id=cs.incident_id,
        kind=kind,
        severity=cs.severity,
        title=title,
        value=value,
        unit=unit,
        level=level,
        episode_start=cs.episode_start,
        event_time=at,
    )


def _open(cs: ConditionState, rules: SensorRules, slot: str, start: datetime) -> None:
    cs.incident_id = _incident_id(rules.sensor_id, slot, start)
    cs.episode_start = start


def _levels(state: SensorState, rules: SensorRules) -> list[Transition]:
    check = rules.levels
    history = state.history.get(check.property) if check else None
    if check is None or not history:
        return []
    at, value = history[-1].t, history[-1].v
    hold = timedelta(minutes=check.hold_minutes)
    cs = _condition(state, "levels")
    sinces = [_run_since(history, lambda v, a=level.above: v > a) for level in check.levels]
    held = [index for index, since in enumerate(sinces) if since is not None and at - since >= hold]
    cs.above_since = sinces[0]
    if cs.incident_id is not None:  # only an open incident can clear (and the scan is long)
        cs.below_clear_since = _run_since(history, lambda v: v < check.clear_below)
    name, unit = rules.name, check.unit

    def report(action: Action, level: ResolvedLevel, title: str) -> Transition:
        return _transition(
            rules,
            cs,
            level.name,
            action,
            kind=check.kind,
            title=title,
            value=value,
            unit=unit,
            level=level.above,
            at=at,
        )

    if cs.incident_id is None:
        if not held:
            return []
        top = check.levels[held[-1]]
        assert sinces[0] is not None
        _open(cs, rules, "levels", sinces[0])
        cs.level, cs.severity, cs.last_report, cs.peak = top.name, top.severity, at, value
        return [
            report(
                "open",
                top,
                f"{name}: {check.property} {value:g} {unit} above {top.name} level "
                f"{top.above:g} {unit} for {_fmt_minutes(check.hold_minutes)}",
            )
        ]
    cs.peak = value if cs.peak is None else max(cs.peak, value)
    current_rank = next(i for i, level in enumerate(check.levels) if level.name == cs.level)
    current = check.levels[current_rank]
    if cs.below_clear_since is not None and at - cs.below_clear_since >= timedelta(
        minutes=check.clear_hold_minutes
    ):
        done = report(
            "resolve",
            current,
            f"{name}: {check.property} {value:g} {unit} below {check.clear_below:g} {unit} for "
            f"{_fmt_minutes(check.clear_hold_minutes)} (peak {cs.peak:g} {unit})",
        )
        state.conditions["levels"] = ConditionState()
        return [done]
    if held and held[-1] > current_rank:
        top = check.levels[held[-1]]
        cs.level, cs.severity, cs.last_report = top.name, top.severity, at
        return [
            report(
                "update",
                top,
                f"{name}: {check.property} {value:g} {unit} now above {top.name} level "
                f"{top.above:g} {unit}",
            )
        ]
    every = check.update_every_minutes
    if (
        every is not None
        and cs.last_report is not None
        and at - cs.last_report >= timedelta(minutes=every)
    ):
        cs.last_report = at
        return [
            report(
                "update",
                current,
                f"{name}: {check.property} {value:g} {unit}, {current.name} since "
                f"{cs.episode_start:%H:%M} UTC (peak {cs.peak:g} {unit})",
            )
        ]
    return []


def _rate_of_rise(state: SensorState, rules: SensorRules) -> list[Transition]:
    check = rules.rate_of_rise
    history = state.history.get(check.property) if check else None
    if check is None or not history:
        return []
    at, value = history[-1].t, history[-1].v
    start = at - timedelta(minutes=check.window_minutes)
    lowest = value
    for reading in reversed(history):  # in event-time order: only the window's tail is read
        if reading.t < start:
            break
        lowest = min(lowest, reading.v)
    rise = value - lowest
    cs = _condition(state, "rate_of_rise")
    window = _fmt_minutes(check.window_minutes)

    def report(action: Action, title: str) -> Transition:
        return _transition(
            rules,
            cs,
            "rate_of_rise",
            action,
            kind=check.kind,
            title=title,
            value=rise,
            unit=check.unit,
            level=check.rise,
            at=at,
        )

    is_open = cs.incident_id is not None
    met = rise >= (check.clear_rise if is_open else check.rise)
    hysteresis = Hysteresis(
        timedelta(minutes=check.hold_minutes), timedelta(minutes=check.clear_hold_minutes)
    )
    step = hysteresis.step(is_open, met, at, cs.above_since, cs.below_clear_since)
    cs.above_since, cs.below_clear_since = step.since, step.clear_since
    if step.action is None:
        if is_open and met:
            cs.peak = rise if cs.peak is None else max(cs.peak, rise)
        return []
    if step.action == "open":
        assert cs.above_since is not None
        _open(cs, rules, "rate_of_rise", cs.above_since)
        cs.level, cs.severity, cs.last_report, cs.peak = "rate_of_rise", check.severity, at, rise
        return [
            report(
                "open",
                f"{rules.name}: {check.property} rose {rise:+.2f} {check.unit} in {window} "
                f"(now {value:g} {check.unit})",
            )
        ]
    done = report(
        "resolve",
        f"{rules.name}: {check.property} steady at {value:g} {check.unit} (rise under "
        f"{check.clear_rise:g} {check.unit} per {window})",
    )
    state.conditions["rate_of_rise"] = ConditionState()
    return [done]


def _flatline(state: SensorState, rules: SensorRules) -> list[Transition]:
    check = rules.flatline
    history = state.history.get(check.property) if check else None
    if check is None or not history:
        return []
    at, value = history[-1].t, history[-1].v
    cs = _condition(state, "flatline")

    def report(action: Action, title: str) -> Transition:
        return _transition(
            rules,
            cs,
            "flatline",
            action,
            kind=IncidentKind.SENSOR_FAULT,
            title=title,
            value=value,
            unit=check.unit,
            level=check.minutes,
            at=at,
        )

    if cs.incident_id is None:
        since = _run_since(history, lambda v: v == value)
        cs.above_since = since
        if since is None or at - since < timedelta(minutes=check.minutes):
            return []
        _open(cs, rules, "flatline", since)
        cs.level, cs.severity, cs.last_report, cs.reference = "flatline", check.severity, at, value
        return [
            report(
                "open",
                f"{rules.name}: {check.property} stuck at {value:g} {check.unit} for "
                f"{_fmt_minutes(round((at - since).total_seconds() / 60, 1))}",
            )
        ]
    if value == cs.reference:
        return []
    done = report(
        "resolve",
        f"{rules.name}: {check.property} changing again ({cs.reference:g} → {value:g} "
        f"{check.unit})",
    )
    state.conditions["flatline"] = ConditionState()
    return [done]


def _close_windows(
    state: SensorState, rules: SensorRules, watermark: datetime
) -> list[WindowAggregate]:
    if state.watermark is not None and watermark <= state.watermark:
        return []
    state.watermark = watermark
    state.closed_through = _window_start(watermark, rules.window_seconds)
    closed = [window for window in state.windows if window.start < state.closed_through]
    state.windows = [window for window in state.windows if window.start >= state.closed_through]
    for window in closed:
        window.status = "closed"
    return sorted(closed, key=lambda window: (window.start, window.property))


Outcome = tuple[list[Transition], list[WindowAggregate]]


def evaluate(state: SensorState, event: SensorEvent, rules: SensorRules, now: datetime) -> Outcome:
    """One arriving reading (`now` is its arrival time: the Kafka timestamp, so replays agree)."""
    moment, now = _utc(event.date_observed), _utc(now)
    transitions: list[Transition] = []
    state.last_arrival = now if state.last_arrival is None else max(state.last_arrival, now)

    offline = state.conditions.get("offline")
    if offline is not None and offline.incident_id is not None:
        silent = (now - offline.episode_start).total_seconds() / 60
        transitions.append(
            _transition(
                rules,
                offline,
                "offline",
                "resolve",
                kind=IncidentKind.SENSOR_OFFLINE,
                value=round(silent, 1),
                unit="min",
                level=rules.offline.minutes if rules.offline else None,
                at=now,
                title=f"{rules.name}: reporting again (silent for about {silent:.0f} min)",
            )
        )
        state.conditions["offline"] = ConditionState()

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
    transitions += _levels(state, rules)
    transitions += _rate_of_rise(state, rules)
    transitions += _flatline(state, rules)
    return transitions, closed


def evaluate_timer(state: SensorState, rules: SensorRules, now: datetime) -> Outcome:
    """A wall-clock tick: the offline check, and windows closed while the sensor is quiet.

    The watermark moves on by the wall time elapsed since the last arrival, so a sensor whose
    clock is off by minutes does not have its readings declared late."""
    now = _utc(now)
    transitions: list[Transition] = []
    rule = rules.offline
    base = state.last_arrival or state.watching_since
    cs = _condition(state, "offline")
    if rule is not None and base is not None and cs.incident_id is None:
        silent = now - base
        if silent >= timedelta(minutes=rule.minutes):
            _open(cs, rules, "offline", base)
            cs.level, cs.severity, cs.last_report, cs.peak = "offline", rule.severity, now, None
            cs.above_since = base
            minutes = silent.total_seconds() / 60
            transitions.append(
                _transition(
                    rules,
                    cs,
                    "offline",
                    "open",
                    kind=IncidentKind.SENSOR_OFFLINE,
                    value=round(minutes, 1),
                    unit="min",
                    level=rule.minutes,
                    at=now,
                    title=f"{rules.name}: no reading for {minutes:.0f} min "
                    f"(limit {_fmt_minutes(rule.minutes)})",
                )
            )
    if cs.incident_id is None and cs == ConditionState():
        del state.conditions["offline"]
    closed: list[WindowAggregate] = []
    if state.last_event_time is not None and state.last_arrival is not None:
        quiet = max(now - state.last_arrival, timedelta(0))
        watermark = state.last_event_time + quiet - timedelta(seconds=rules.grace_seconds)
        closed = _close_windows(state, rules, watermark)
    return transitions, closed


__all__ = [
    "RULES_PATH",
    "ConditionState",
    "Outcome",
    "Reading",
    "RuleSet",
    "SensorRules",
    "SensorState",
    "Transition",
    "TypeRules",
    "WindowAggregate",
    "evaluate",
    "evaluate_timer",
]
