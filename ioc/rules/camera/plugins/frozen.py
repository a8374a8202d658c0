"""The same JPEG bytes `frames` times in a row, spanning at least `min_s`: the camera's picture
is stuck. Resolves on the first different frame."""

from __future__ import annotations

from datetime import datetime, timedelta

from pydantic import Field

from ioc.models.incidents import IncidentKind
from ioc.rules.camera.base import (
    CameraRule,
    Episode,
    IncidentRuleConfig,
    Reporter,
    Seen,
    Stage,
    Transition,
)


class FrozenConfig(IncidentRuleConfig):
    frames: int = Field(ge=2, description="Identical frames in a row ...")
    min_s: float = Field(ge=0, description="... spanning at least this long.")


class FrozenState(Episode):
    digest: str | None = None
    repeats: int = 0
    digest_since: datetime | None = None


class Frozen(CameraRule[FrozenConfig, FrozenState]):
    name = "frozen"
    kind = IncidentKind.CAMERA_FROZEN
    stage = Stage.HEALTH
    config = FrozenConfig
    state = FrozenState

    def on_frame(
        self, config: FrozenConfig, state: FrozenState, seen: Seen, out: Reporter
    ) -> list[Transition]:
        assert seen.frame.stats is not None
        digest, at = seen.frame.stats.digest, seen.at
        if digest == state.digest:
            state.repeats += 1
        else:
            state.digest, state.repeats, state.digest_since = digest, 1, at
        assert state.digest_since is not None
        span = at - state.digest_since
        met = state.repeats >= config.frames and span >= timedelta(seconds=config.min_s)
        if state.incident_id is None and met:
            out.open(state, state.digest_since)
            title = (
                f"hình bị đứng ({state.repeats} khung hình giống hệt "
                f"trong {span.total_seconds():.0f} s)"
            )
            return [out.report(state, "open", title, seen.latest, frames=state.repeats)]
        if state.incident_id is not None and not met:
            done = out.report(state, "resolve", "hình chuyển động trở lại", seen.latest)
            state.reset()
            state.digest, state.repeats, state.digest_since = digest, 1, at
            return [done]
        return []
