"""No frame for `after_s`, judged on clock ticks (the Kafka time of frames, not their event
time: a camera's clock may be wrong). Resolves on the next frame."""

from __future__ import annotations

from datetime import UTC, datetime

from pydantic import Field

from ioc.models.incidents import IncidentKind
from ioc.rules.camera.base import (
    CameraRule,
    Episode,
    IncidentRuleConfig,
    Reporter,
    Seen,
    Stage,
    Tick,
    Transition,
)


class OfflineConfig(IncidentRuleConfig):
    after_s: float = Field(gt=0)


class Offline(CameraRule[OfflineConfig, Episode]):
    name = "offline"
    kind = IncidentKind.CAMERA_OFFLINE
    stage = Stage.SIGNAL
    config = OfflineConfig
    state = Episode

    def on_frame(
        self, config: OfflineConfig, state: Episode, seen: Seen, out: Reporter
    ) -> list[Transition]:
        if state.incident_id is None or state.start is None:
            return []
        arrived = datetime.fromtimestamp(seen.frame.ingested_at_ms / 1000, UTC)
        silent = (arrived - state.start).total_seconds()
        title = f"có hình trở lại (mất tín hiệu khoảng {silent:.0f} s)"
        done = out.report(state, "resolve", title, seen.latest, silent_s=round(silent))
        state.reset()
        return [done]

    def on_tick(
        self, config: OfflineConfig, state: Episode, tick: Tick, out: Reporter
    ) -> list[Transition]:
        if tick.silent_since is None or state.incident_id is not None:
            return []
        silent = (tick.now - tick.silent_since).total_seconds()
        if silent < config.after_s:
            return []
        out.open(state, tick.silent_since)
        title = f"mất tín hiệu ({silent:.0f} s không có hình, giới hạn {config.after_s:g} s)"
        return [out.report(state, "open", title, tick.latest, silent_s=round(silent))]
