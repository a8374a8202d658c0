"""The latest value minus the lowest of the last `window_minutes` at or above `rise` opens (after
`hold_minutes`); the incident resolves once the rise has stayed below `clear_rise` (default half
the rise) for `clear_hold_minutes`. Water that climbs fast is an emergency before it reaches
any level."""

from __future__ import annotations

from bisect import bisect_left
from datetime import datetime, timedelta

from pydantic import Field, model_validator

from ioc.models.incidents import IncidentKind, Severity
from ioc.models.registry import SensorSpec
from ioc.rules.hysteresis import Hysteresis
from ioc.rules.sensor.base import (
    Action,
    Check,
    ConditionState,
    Reading,
    Reporter,
    RuleConfig,
    Seen,
    SensorRule,
    Transition,
    minutes,
    unit_of,
)


def _time(reading: Reading) -> datetime:
    return reading.t


class RateOfRiseConfig(RuleConfig):
    property: str | None = None
    kind: IncidentKind = IncidentKind.WATER_LEVEL_HIGH
    severity: Severity = Severity.HIGH
    rise: float = Field(gt=0, description="Rise, in the property's unit, within the window.")
    window_minutes: float = Field(gt=0)
    hold_minutes: float = Field(0.0, ge=0)
    clear_rise: float | None = Field(None, ge=0, description="Unset: rise / 2.")
    clear_hold_minutes: float = Field(10.0, ge=0)

    @model_validator(mode="after")
    def _clear_below_rise(self) -> RateOfRiseConfig:
        if self.clear_rise is not None and self.clear_rise >= self.rise:
            raise ValueError("rate_of_rise: clear_rise must be below rise")
        return self


class RateOfRiseCheck(Check):
    property: str
    unit: str
    kind: IncidentKind
    severity: Severity
    rise: float
    window_minutes: float
    clear_rise: float
    hysteresis: Hysteresis

    def keep_minutes(self) -> float:
        return self.window_minutes


class RateOfRise(SensorRule[RateOfRiseConfig, RateOfRiseCheck]):
    name = "rate_of_rise"
    config = RateOfRiseConfig
    check = RateOfRiseCheck

    def resolve(self, config: RateOfRiseConfig, spec: SensorSpec) -> RateOfRiseCheck:
        prop = config.property or spec.property
        return RateOfRiseCheck(
            property=prop,
            unit=unit_of(prop, spec),
            kind=config.kind,
            severity=config.severity,
            rise=config.rise,
            window_minutes=config.window_minutes,
            clear_rise=config.rise / 2 if config.clear_rise is None else config.clear_rise,
            hysteresis=Hysteresis(
                timedelta(minutes=config.hold_minutes),
                timedelta(minutes=config.clear_hold_minutes),
            ),
        )

    def on_reading(
        self, check: RateOfRiseCheck, state: ConditionState, seen: Seen, out: Reporter
    ) -> list[Transition]:
        at, value = seen.at, seen.value
        history = seen.history  # in event-time order: only the window's tail is read
        first = bisect_left(history, at - timedelta(minutes=check.window_minutes), key=_time)
        rise = value - min(reading.v for reading in history[first:])
        window = minutes(check.window_minutes)

        def report(action: Action, title: str) -> Transition:
            return out.report(
                state,
                action,
                kind=check.kind,
                title=f"{out.name}: {title}",
                value=rise,
                unit=check.unit,
                level=check.rise,
                at=at,
            )

        is_open = state.incident_id is not None
        met = rise >= (check.clear_rise if is_open else check.rise)
        step = check.hysteresis.step(is_open, met, at, state.above_since, state.below_clear_since)
        state.above_since, state.below_clear_since = step.since, step.clear_since
        if step.action is None:
            if is_open and met:
                state.peak = rise if state.peak is None else max(state.peak, rise)
            return []
        if step.action == "open":
            assert state.above_since is not None
            out.open(state, state.above_since)
            state.level, state.severity, state.last_report, state.peak = (
                self.name,
                check.severity,
                at,
                rise,
            )
            title = (
                f"{check.property} rose {rise:+.2f} {check.unit} in {window} "
                f"(now {value:g} {check.unit})"
            )
            return [report("open", title)]
        title = (
            f"{check.property} steady at {value:g} {check.unit} (rise under "
            f"{check.clear_rise:g} {check.unit} per {window})"
        )
        done = report("resolve", title)
        state.reset()
        return [done]
