"""No reading for `minutes`, by the wall clock (a device's own clock may be off): judged on the
timer, resolved by the next reading, late or not. A camera's line is left to the camera's own
offline incident."""

from __future__ import annotations

from datetime import timedelta

from pydantic import Field

from ioc.models.incidents import IncidentKind, Severity
from ioc.models.registry import SensorSpec
from ioc.rules.sensor.base import (
    Action,
    Check,
    ConditionState,
    Now,
    Reporter,
    RuleConfig,
    SensorRule,
    Transition,
    minutes,
)


class OfflineConfig(RuleConfig):
    minutes: float = Field(gt=0)
    severity: Severity = Severity.NORMAL


class OfflineCheck(Check):
    minutes: float
    severity: Severity


class Offline(SensorRule[OfflineConfig, OfflineCheck]):
    name = "offline"
    config = OfflineConfig
    check = OfflineCheck

    def resolve(self, config: OfflineConfig, spec: SensorSpec) -> OfflineCheck | None:
        if spec.camera is not None:
            return None
        return OfflineCheck(minutes=config.minutes, severity=config.severity)

    def on_tick(
        self, check: OfflineCheck, state: ConditionState, now: Now, out: Reporter
    ) -> list[Transition]:
        since = now.silent_since
        if since is None or state.incident_id is not None:
            return []
        silent = now.at - since
        if silent < timedelta(minutes=check.minutes):
            return []
        out.open(state, since)
        state.level, state.severity, state.last_report, state.above_since = (
            self.name,
            check.severity,
            now.at,
            since,
        )
        silent_minutes = silent.total_seconds() / 60
        title = (
            f"{out.name}: no reading for {silent_minutes:.0f} min (limit {minutes(check.minutes)})"
        )
        return [self._report(check, state, out, "open", title, silent_minutes, now)]

    def on_return(
        self, check: OfflineCheck, state: ConditionState, now: Now, out: Reporter
    ) -> list[Transition]:
        assert state.episode_start is not None
        silent_minutes = (now.at - state.episode_start).total_seconds() / 60
        title = f"{out.name}: reporting again (silent for about {silent_minutes:.0f} min)"
        done = self._report(check, state, out, "resolve", title, silent_minutes, now)
        state.reset()
        return [done]

    @staticmethod
    def _report(
        check: OfflineCheck,
        state: ConditionState,
        out: Reporter,
        action: Action,
        title: str,
        silent_minutes: float,
        now: Now,
    ) -> Transition:
        return out.report(
            state,
            action,
            kind=IncidentKind.SENSOR_OFFLINE,
            title=title,
            value=round(silent_minutes, 1),
            unit="min",
            level=check.minutes,
            at=now.at,
        )
