"""Luma spread below `max_luma_std` (a black, white or covered lens) for `hold_s`; resolves after
`clear_s` of normal frames."""

from __future__ import annotations

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


class BlackoutConfig(IncidentRuleConfig):
    max_luma_std: float = Field(gt=0, description="Luma spread below: a near-uniform frame.")
    hold_s: float = Field(gt=0)
    clear_s: float = Field(gt=0)


class Blackout(CameraRule[BlackoutConfig, Episode]):
    name = "blackout"
    kind = IncidentKind.CAMERA_BLACKOUT
    stage = Stage.HEALTH
    config = BlackoutConfig
    state = Episode

    def on_frame(
        self, config: BlackoutConfig, state: Episode, seen: Seen, out: Reporter
    ) -> list[Transition]:
        assert seen.frame.stats is not None
        luma_std = seen.frame.stats.luma_std
        action = state.held(luma_std < config.max_luma_std, seen.at, config.hold_s, config.clear_s)
        if action == "open":
            assert state.since is not None
            out.open(state, state.since)
            title = f"hình tối đen, chói trắng hoặc bị che (độ tương phản {luma_std:.1f})"
            return [out.report(state, "open", title, seen.latest, luma_std=luma_std)]
        if action == "resolve":
            title = "hình bình thường trở lại"
            done = out.report(state, "resolve", title, seen.latest, luma_std=luma_std)
            state.reset()
            return [done]
        return []
