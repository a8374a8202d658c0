"""Fire or smoke seen in `frames` of the last `window` frames: one odd frame raises nothing.
Resolves once none is seen for `clear_s`. Score: the best detection's."""

from __future__ import annotations

from pydantic import Field, model_validator

from ioc.models.incidents import IncidentKind
from ioc.rules.camera.base import (
    CameraRule,
    Episode,
    Evidence,
    IncidentRuleConfig,
    Reporter,
    Seen,
    Stage,
    Transition,
    better,
    evidence_of,
)

MAX_WINDOW = 60  # frames the rule may look back over; bounds the state


class FireConfig(IncidentRuleConfig):
    classes: tuple[str, ...] = Field(min_length=1)
    min_score: float = Field(ge=0, le=1, description="Detections below are not counted.")
    frames: int = Field(ge=1, description="Raised when seen in this many frames ...")
    window: int = Field(ge=1, le=MAX_WINDOW, description="... of the last this many.")
    clear_s: float = Field(gt=0)

    @model_validator(mode="after")
    def _frames_in_window(self) -> FireConfig:
        if self.frames > self.window:
            raise ValueError("fire: frames must not exceed window")
        return self


class FireState(Episode):
    window: list[Evidence | None] = Field(
        default_factory=list, description="The last frames: what they showed of fire, or None."
    )


class Fire(CameraRule[FireConfig, FireState]):
    name = "fire"
    kind = IncidentKind.FIRE
    stage = Stage.OBJECTS
    config = FireConfig
    state = FireState

    def on_frame(
        self, config: FireConfig, state: FireState, seen: Seen, out: Reporter
    ) -> list[Transition]:
        frame, labels = seen.frame, seen.rules
        hits = [
            d
            for d in frame.detections
            if d.class_name in config.classes and d.score >= config.min_score
        ]
        sighting = evidence_of(frame, hits, max(d.score for d in hits)) if hits else None
        state.window = [*state.window, sighting][-config.window :]

        def title(best: Evidence) -> str:
            top = max(best.boxes, key=lambda box: box.score)
            return f"phát hiện {labels.label(top.class_name)} ({top.score:.0%})"

        if state.incident_id is None:
            shown = [e for e in state.window if e is not None]
            if len(shown) < config.frames:
                return []
            out.open(state, shown[0].at)
            for evidence in shown:
                state.best = better(state.best, evidence)
            assert state.best is not None
            return [out.report(state, "open", title(state.best), state.best, frames=len(shown))]
        assert state.best is not None
        action = state.held(sighting is not None, seen.at, 0, config.clear_s)
        if sighting is not None and sighting.score > state.best.score:
            state.best = sighting
            return [out.report(state, "update", title(sighting), sighting)]
        if action != "resolve":
            return []
        names = "/".join(labels.label(name) for name in config.classes)
        title_done = (
            f"không còn thấy {names} sau {config.clear_s:g} s (cao nhất {state.best.score:.0%})"
        )
        done = out.report(state, "resolve", title_done, state.best)
        state.reset()  # old sightings must not reopen it
        return [done]
