"""A value above a level for `hold_minutes` opens one incident; reaching a higher level updates
it (escalation, never downgraded while open); it resolves once the value has stayed below the
clear level for `clear_hold_minutes`. Levels are `threshold` alone, or `alert` and optionally
`danger`; a level without `above` is the registry's alert level plus `offset`."""

from __future__ import annotations

from datetime import timedelta
from itertools import pairwise
from typing import Literal

from pydantic import Field, model_validator

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
    Strict,
    Transition,
    minutes,
    unit_of,
)

LevelName = Literal["threshold", "alert", "danger"]
LEVEL_NAMES: tuple[LevelName, ...] = ("threshold", "alert", "danger")


class LevelSpec(Strict):
    above: float | None = Field(None, description="Unset: the registry's alert_level + offset.")
    offset: float = 0.0
    severity: Severity


class LevelsConfig(RuleConfig):
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
    def _shape(self) -> LevelsConfig:
        if self.threshold is not None and (self.alert is not None or self.danger is not None):
            raise ValueError("levels: use either threshold, or alert (and optionally danger)")
        if self.threshold is None and self.alert is None:
            raise ValueError("levels: a threshold or an alert level is required")
        return self


class ResolvedLevel(Strict):
    name: LevelName
    above: float
    severity: Severity


class LevelsCheck(Check):
    property: str
    unit: str
    kind: IncidentKind
    levels: list[ResolvedLevel] = Field(min_length=1, description="Ascending.")
    hold_minutes: float
    clear_below: float
    clear_hold_minutes: float
    update_every_minutes: float | None

    def keep_minutes(self) -> float:
        return max(self.hold_minutes, self.clear_hold_minutes)


class Levels(SensorRule[LevelsConfig, LevelsCheck]):
    name = "levels"
    config = LevelsConfig
    check = LevelsCheck

    def resolve(self, config: LevelsConfig, spec: SensorSpec) -> LevelsCheck:
        prop = config.property or spec.property
        levels = [
            ResolvedLevel(
                name=name,
                above=level.above if level.above is not None else spec.alert_level + level.offset,
                severity=level.severity,
            )
            for name in LEVEL_NAMES
            if (level := getattr(config, name)) is not None
        ]
        for lower, higher in pairwise(levels):
            if higher.above <= lower.above:
                raise ValueError(
                    f"sensor {spec.id}: {higher.name} level {higher.above:g} must be above "
                    f"{lower.name} level {lower.above:g}"
                )
        lowest = levels[0]
        clear = (
            config.clear_below
            if config.clear_below is not None
            else lowest.above - config.clear_margin
        )
        if clear > lowest.above:
            raise ValueError(
                f"sensor {spec.id}: clear level {clear:g} is above {lowest.name} level "
                f"{lowest.above:g}"
            )
        return LevelsCheck(
            property=prop,
            unit=unit_of(prop, spec),
            kind=config.kind,
            levels=levels,
            hold_minutes=config.hold_minutes,
            clear_below=clear,
            clear_hold_minutes=config.clear_hold_minutes,
            update_every_minutes=config.update_every_minutes,
        )

    def on_reading(
        self, check: LevelsCheck, state: ConditionState, seen: Seen, out: Reporter
    ) -> list[Transition]:
        at, value, unit = seen.at, seen.value, check.unit
        sinces = [seen.run_since(lambda v, a=level.above: v > a) for level in check.levels]
        hold = timedelta(minutes=check.hold_minutes)
        held = [i for i, since in enumerate(sinces) if since is not None and at - since >= hold]
        state.above_since = sinces[0]
        if state.incident_id is not None:  # only an open incident can clear (a long scan)
            state.below_clear_since = seen.run_since(lambda v: v < check.clear_below)

        def report(action: Action, level: ResolvedLevel, title: str) -> Transition:
            return out.report(
                state,
                action,
                kind=check.kind,
                title=f"{out.name}: {title}",
                value=value,
                unit=unit,
                level=level.above,
                at=at,
                condition=level.name,
            )

        if state.incident_id is None:
            if not held:
                return []
            top = check.levels[held[-1]]
            assert sinces[0] is not None
            out.open(state, sinces[0])
            state.level, state.severity, state.last_report, state.peak = (
                top.name,
                top.severity,
                at,
                value,
            )
            title = (
                f"{check.property} {value:g} {unit} above {top.name} level {top.above:g} {unit} "
                f"for {minutes(check.hold_minutes)}"
            )
            return [report("open", top, title)]
        state.peak = value if state.peak is None else max(state.peak, value)
        rank = next(i for i, level in enumerate(check.levels) if level.name == state.level)
        current = check.levels[rank]
        cleared = state.below_clear_since
        if cleared is not None and at - cleared >= timedelta(minutes=check.clear_hold_minutes):
            title = (
                f"{check.property} {value:g} {unit} below {check.clear_below:g} {unit} for "
                f"{minutes(check.clear_hold_minutes)} (peak {state.peak:g} {unit})"
            )
            done = report("resolve", current, title)
            state.reset()
            return [done]
        if held and held[-1] > rank:
            top = check.levels[held[-1]]
            state.level, state.severity, state.last_report = top.name, top.severity, at
            title = (
                f"{check.property} {value:g} {unit} now above {top.name} level {top.above:g} {unit}"
            )
            return [report("update", top, title)]
        every = check.update_every_minutes
        last = state.last_report
        if every is not None and last is not None and at - last >= timedelta(minutes=every):
            state.last_report = at
            title = (
                f"{check.property} {value:g} {unit}, {current.name} since "
                f"{state.episode_start:%H:%M} UTC (peak {state.peak:g} {unit})"
            )
            return [report("update", current, title)]
        return []
