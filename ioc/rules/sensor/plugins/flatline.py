"""Identical readings for `minutes`: a stuck device (a sensor fault), resolved by the first
different value."""

from __future__ import annotations

from datetime import timedelta

from pydantic import Field

from ioc.models.incidents import IncidentKind, Severity
from ioc.models.registry import SensorSpec
from ioc.rules.sensor.base import (
    Action,
    Check,
    ConditionState,
    Reporter,
    RuleConfig,
    Seen,
    SensorRule,
    Transition,
    minutes,
    unit_of,
)


class FlatlineConfig(RuleConfig):
    property: str | None = None
    minutes: float = Field(gt=0)
    severity: Severity = Severity.NORMAL


class FlatlineCheck(Check):
    """Needs no reach back: a run of equal values is kept as its two ends, and the history
    keeps one reading from before its horizon, which is the run's start."""

    property: str
    unit: str
    minutes: float
    severity: Severity


class Flatline(SensorRule[FlatlineConfig, FlatlineCheck]):
    name = "flatline"
    config = FlatlineConfig
    check = FlatlineCheck

    def resolve(self, config: FlatlineConfig, spec: SensorSpec) -> FlatlineCheck:
        prop = config.property or spec.property
        return FlatlineCheck(
            property=prop,
            unit=unit_of(prop, spec),
            minutes=config.minutes,
            severity=config.severity,
        )

    def on_reading(
        self, check: FlatlineCheck, state: ConditionState, seen: Seen, out: Reporter
    ) -> list[Transition]:
        at, value = seen.at, seen.value

        def report(action: Action, title: str) -> Transition:
            return out.report(
                state,
                action,
                kind=IncidentKind.SENSOR_FAULT,
                title=f"{out.name}: {title}",
                value=value,
                unit=check.unit,
                level=check.minutes,
                at=at,
            )

        if state.incident_id is None:
            since = seen.run_since(lambda v: v == value)
            state.above_since = since
            if since is None or at - since < timedelta(minutes=check.minutes):
                return []
            out.open(state, since)
            state.level, state.severity, state.last_report, state.reference = (
                self.name,
                check.severity,
                at,
                value,
            )
            stuck = minutes(round((at - since).total_seconds() / 60, 1))
            return [report("open", f"{check.property} stuck at {value:g} {check.unit} for {stuck}")]
        if value == state.reference:
            return []
        title = f"{check.property} changing again ({state.reference:g} → {value:g} {check.unit})"
        done = report("resolve", title)
        state.reset()
        return [done]
