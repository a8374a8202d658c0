"""What every sensor rule is made of: its TOML block (`RuleConfig`), the check it resolves to for
one sensor (`Check`), the hysteresis state it keeps (`ConditionState`), the value objects it is
handed (`Seen` for a reading, `Now` for the clock) and the `SensorRule` base class that each
plugin in `ioc/rules/sensor/plugins/` subclasses once.

Rules are judged in event time over a sensor's recent readings of one property, kept sorted by
observation time (so out-of-order readings are placed where they belong). Each incident is one
episode: it opens once, may be updated while open, and resolves once; its id derives from the
sensor, the rule and the episode's start, so a replay of the same readings gives the same ids.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, fields
from datetime import datetime
from typing import ClassVar, Generic, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field

from ioc.models.base import deterministic_id
from ioc.models.incidents import IncidentKind, IncidentSource, Severity
from ioc.models.registry import SensorSpec
from ioc.sensors.fiware import QUANTITIES

Action = Literal["open", "update", "resolve"]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class RuleConfig(Strict):
    """A rule's block under a FIWARE type in `sensor_rules.toml`; unknown keys are an error."""

    enabled: bool = True


class Check(Strict):
    """A rule resolved for one sensor, every default filled in."""

    property: str | None = None  # whose recent readings the rule judges; None: none

    def keep_minutes(self) -> float:
        """How far back the readings must reach for this check (its longest hold or window)."""
        return 0.0


# The state a reading updates is made of slotted dataclasses, not models: pydantic still
# validates and serialises them inside `SensorState`, but an assignment costs a plain attribute
# write instead of a model's `__setattr__` (about 15 per reading: 18 % of the engine, profiled).
STATE_CONFIG = ConfigDict(extra="forbid")


@dataclass(slots=True)
class Reading:
    __pydantic_config__ = STATE_CONFIG

    t: datetime
    v: float


@dataclass(slots=True)
class ConditionState:
    """One rule's hysteresis and episode, kept per sensor under the rule's name."""

    __pydantic_config__ = STATE_CONFIG

    above_since: datetime | None = None  # condition met since (event time)
    below_clear_since: datetime | None = None  # below the clear level since
    incident_id: str | None = None
    level: str | None = None  # the condition reported for the open incident
    severity: Severity | None = None
    episode_start: datetime | None = None
    last_report: datetime | None = None  # time of the last open or update
    peak: float | None = None
    reference: float | None = None  # flatline: the stuck value

    def reset(self) -> None:
        """Back to a fresh state, in place: the episode is over."""
        for each in fields(self):
            setattr(self, each.name, None)


class Transition(Strict):
    """What happened to one incident: the agent turns it into an `Incident` upsert."""

    sensor_id: str
    condition: str  # the rule, or the level of the levels rule
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


@dataclass(frozen=True)
class Reporter:
    """Opens a rule's episodes and reports them, for one sensor."""

    sensor_id: str
    name: str  # the sensor's, for titles
    rule: str

    def open(self, state: ConditionState, start: datetime) -> None:
        state.incident_id = deterministic_id(
            "inc", IncidentSource.SENSOR, self.sensor_id, self.rule, start.isoformat()
        )
        state.episode_start = start

    def report(
        self,
        state: ConditionState,
        action: Action,
        *,
        kind: IncidentKind,
        title: str,
        value: float | None,
        unit: str,
        level: float | None,
        at: datetime,
        condition: str | None = None,
    ) -> Transition:
        assert state.incident_id is not None and state.severity is not None
        assert state.episode_start is not None
        return Transition(
            sensor_id=self.sensor_id,
            condition=condition or self.rule,
            action=action,
            incident_id=state.incident_id,
            kind=kind,
            severity=state.severity,
            title=title,
            value=value,
            unit=unit,
            level=level,
            episode_start=state.episode_start,
            event_time=at,
        )


@dataclass(frozen=True)
class Seen:
    """A reading that moved the history of the rule's property: that history, newest last."""

    history: list[Reading]

    @property
    def at(self) -> datetime:
        return self.history[-1].t

    @property
    def value(self) -> float:
        return self.history[-1].v

    def run_since(self, meets: Callable[[float], bool]) -> datetime | None:
        """Event time of the first reading of the trailing run that meets the condition."""
        since = None
        for reading in reversed(self.history):
            if not meets(reading.v):
                break
            since = reading.t
        return since


@dataclass(frozen=True)
class Now:
    """The wall clock: a reading's arrival, or a tick, with when the sensor last reported."""

    at: datetime
    silent_since: datetime | None  # the latest arrival, or when watching began


ConfigT = TypeVar("ConfigT", bound=RuleConfig)
CheckT = TypeVar("CheckT", bound=Check)


class SensorRule(ABC, Generic[ConfigT, CheckT]):
    """One sensor rule: its TOML block (`config`), the check it resolves to for a sensor
    (`check`) and what it makes of a reading, of an arrival and of a clock tick.

    A plugin is one file in `ioc/rules/sensor/plugins/` that defines one subclass; the registry
    discovers it and adds its block to each FIWARE type's rules and to the per-sensor overrides.
    Rules mutate their `ConditionState` in place and return their transitions.
    """

    name: ClassVar[str]
    config: ClassVar[type[RuleConfig]]
    check: ClassVar[type[Check]]

    @abstractmethod
    def resolve(self, config: ConfigT, spec: SensorSpec) -> CheckT | None:
        """The check for one sensor (None: the rule does not apply to it). Raises ValueError
        for a setting the registry contradicts, so a bad file fails the worker's start."""

    def on_reading(
        self, check: CheckT, state: ConditionState, seen: Seen, out: Reporter
    ) -> list[Transition]:
        """A reading of the check's property, on time (not late), placed in the history."""
        return []

    def on_return(
        self, check: CheckT, state: ConditionState, now: Now, out: Reporter
    ) -> list[Transition]:
        """Any reading, late or not, while this rule's incident is open."""
        return []

    def on_tick(
        self, check: CheckT, state: ConditionState, now: Now, out: Reporter
    ) -> list[Transition]:
        """A wall-clock tick, whether or not the sensor reports."""
        return []


def unit_of(prop: str, spec: SensorSpec) -> str:
    """The canonical unit of a property: the registry's for its own, else the FIWARE table's."""
    if prop == spec.property:
        return spec.unit
    quantity = QUANTITIES.get(prop)
    return quantity.unit if quantity else ""


def minutes(value: float) -> str:
    return f"{value:g} min"


__all__ = [
    "STATE_CONFIG",
    "Action",
    "Check",
    "ConditionState",
    "Now",
    "Reading",
    "Reporter",
    "RuleConfig",
    "Seen",
    "SensorRule",
    "Strict",
    "Transition",
    "minutes",
    "unit_of",
]
