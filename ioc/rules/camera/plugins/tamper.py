"""The view's 64-bit signature more than `max_bits` away from a reference learnt from the first
`learn_frames` frames, for `hold_s`: the camera was moved or turned. Each bit of the reference is
the running share of frames with that bit set, and frames that match keep it moving with slow
changes (light, seasons). Resolves when the view is back for `clear_s`, or when the new view has
lasted `accept_after_s` (it becomes the reference). Near-uniform frames (the blackout rule's
`max_luma_std`) are skipped: their signature is noise. A camera moved at `night` (Vietnam time)
is raised with `night_severity`: nobody services cameras then."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

from pydantic import Field

from ioc.models.incidents import IncidentKind, Severity
from ioc.models.registry import Window
from ioc.rules.camera.base import (
    CameraRule,
    Episode,
    IncidentRuleConfig,
    Reporter,
    Seen,
    Stage,
    Transition,
)
from ioc.rules.camera.plugins.blackout import BlackoutConfig

SIGNATURE_BITS = 64


class TamperConfig(IncidentRuleConfig):
    learn_frames: int = Field(ge=1, description="Frames the reference view is learnt from.")
    max_bits: int = Field(ge=1, lt=SIGNATURE_BITS, description="More differing bits: changed.")
    hold_s: float = Field(gt=0)
    clear_s: float = Field(gt=0)
    accept_after_s: float | None = Field(
        None, gt=0, description="A view changed this long becomes the reference; unset: never."
    )
    night: Window | None = Field(None, description="When a change of view is suspect.")
    night_severity: Severity | None = Field(None, description="The severity then.")


class TamperState(Episode):
    reference: list[float] = Field(default_factory=list, description="Share of 1s per bit.")
    learnt: int = Field(0, description="Frames the reference has learnt from, up to the rule's.")

    def learn(self, bits: list[int], weight: float) -> None:
        reference = self.reference or [0.0] * SIGNATURE_BITS
        self.reference = [
            round(p + (bit - p) * weight, 4) for p, bit in zip(reference, bits, strict=True)
        ]


class Tamper(CameraRule[TamperConfig, TamperState]):
    name = "tamper"
    kind = IncidentKind.CAMERA_TAMPER
    stage = Stage.HEALTH
    config = TamperConfig
    state = TamperState

    def on_frame(
        self, config: TamperConfig, state: TamperState, seen: Seen, out: Reporter
    ) -> list[Transition]:
        stats, at = seen.frame.stats, seen.at
        assert stats is not None
        if stats.luma_std < seen.rules.config(BlackoutConfig).max_luma_std:
            return []
        value = int(stats.signature, 16)
        bits = [(value >> i) & 1 for i in range(SIGNATURE_BITS)]
        if state.learnt < config.learn_frames:
            state.learn(bits, 1 / (state.learnt + 1))
            state.learnt += 1
            return []
        distance = sum(bit != (p >= 0.5) for bit, p in zip(bits, state.reference, strict=True))
        changed = distance > config.max_bits
        if not changed and state.incident_id is None:
            state.learn(bits, 1 / config.learn_frames)
        action = state.held(changed, at, config.hold_s, config.clear_s)
        if action == "open":
            assert state.since is not None
            if config.night is not None and config.night.covers(state.since):
                out = replace(out, severity=config.night_severity or out.severity)
            out.open(state, state.since)
            title = f"góc quay thay đổi đột ngột ({distance}/{SIGNATURE_BITS} bit khác)"
            return [out.report(state, "open", title, seen.latest, bits=distance)]
        if action == "resolve":
            title = "góc quay trở lại như cũ"
            done = out.report(state, "resolve", title, seen.latest, bits=distance)
            reference, learnt = state.reference, state.learnt
            state.reset()
            state.reference, state.learnt = reference, learnt
            return [done]
        accept = config.accept_after_s
        if (
            state.start is not None
            and accept is not None
            and at - state.start >= timedelta(seconds=accept)
        ):
            title = f"góc quay mới được lấy làm chuẩn sau {accept:g} s"
            done = out.report(state, "resolve", title, seen.latest, bits=distance)
            state.reset()  # learns the new view from the next frames
            return [done]
        return []
