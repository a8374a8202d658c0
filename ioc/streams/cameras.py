"""The camera flow: messages from the detections topic in, frames to store and incidents out.

Kept free of Kafka and database calls, like the sensor flow (`ioc.streams.sensors`), whose ways
it shares: per-camera rule state (`ioc.vision.rules.CameraState`) lives in a Faust table backed
by a changelog, this class caches the decoded states of the cameras it owns and hands back the
ones it changed; a camera is always on one partition (it is the key), so its state records the
offset of the last message applied and a frame redelivered after a crash is not judged twice
(the state is written only once its frames and incidents are); it is stored again, which the
idempotent insert makes harmless. Clock ticks for the
offline check are messages on the detections topic itself (the `ioc-tick` header), one per
partition, ordered after the frames already there.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime

from pydantic import ValidationError

from ioc.dlq import describe_validation_error
from ioc.models import FrameDetections, Incident, IncidentSource
from ioc.models.base import from_epoch_ms
from ioc.models.incidents import IncidentStatus
from ioc.models.registry import CameraRegistry, CameraSpec
from ioc.streams.sensors import Message, partition_of
from ioc.vision.rules import (
    CameraRules,
    CameraRuleSet,
    CameraState,
    Crossing,
    Transition,
    evaluate,
    evaluate_timer,
)

log = logging.getLogger(__name__)


@dataclass
class CameraOutput:
    frames: list[FrameDetections] = field(default_factory=list)  # to store
    incidents: list[Incident] = field(default_factory=list)
    crossings: list[Crossing] = field(default_factory=list)
    rejected: list[tuple[int, str]] = field(default_factory=list)  # (index in batch, reason)
    changed: dict[str, CameraState] = field(default_factory=dict)  # to write to the table


def incident_of(transition: Transition, camera: CameraSpec, ingested_ms: int) -> Incident:
    """An engine transition as the incident the walls, alerts and snapshots see. The evidence
    names the frame that shows it best (`frame`: partition, offset and seq in the frames topic),
    the `boxes` that explain it and its `score`; a camera offline before any frame has none."""
    shown = transition.evidence
    evidence: dict[str, object] = {
        "rule": transition.rule,
        "action": transition.action,
        "observed_at": transition.event_time.isoformat(),
        **transition.details,
    }
    if shown is not None:
        evidence |= {
            "frame": shown.frame.model_dump(),
            "boxes": [box.model_dump(mode="json", by_alias=True) for box in shown.boxes],
            "score": shown.score,
        }
    return Incident(
        id=transition.incident_id,
        kind=transition.kind,
        severity=transition.severity,
        source=IncidentSource.VISION,
        source_key=camera.id,
        title=transition.title,
        status=IncidentStatus.RESOLVED if transition.action == "resolve" else IncidentStatus.OPEN,
        event_time=transition.episode_start,
        ingested_at_ms=ingested_ms,
        district=camera.district,
        lat=camera.lat,
        lon=camera.lon,
        evidence=evidence,
    )


class CameraFlow:
    """Detections and ticks → frames to store, incidents, line crossings; per-camera state."""

    def __init__(
        self,
        registry: CameraRegistry,
        ruleset: CameraRuleSet,
        partitions: int,
        stored_state: Callable[[str], bytes | None],
    ) -> None:
        self.cameras = {camera.id: camera for camera in registry.cameras}
        self.rules: dict[str, CameraRules] = {
            camera.id: ruleset.for_camera(camera.id) for camera in registry.cameras
        }
        self.by_partition: dict[int, list[str]] = {}
        for camera in registry.cameras:
            self.by_partition.setdefault(partition_of(camera.id, partitions), []).append(camera.id)
        self.stored_state = stored_state
        self.states: dict[str, CameraState] = {}

    def forget(self, camera_ids: Iterable[str] | None = None) -> None:
        """Drop cached states (after a rebalance, or output that could not be stored): the
        table, restored from its changelog, is the truth."""
        if camera_ids is None:
            self.states.clear()
        else:
            for camera_id in camera_ids:
                self.states.pop(camera_id, None)

    def _state(self, camera_id: str, now: datetime) -> CameraState:
        state = self.states.get(camera_id)
        if state is None:
            stored = self.stored_state(camera_id)
            state = (
                CameraState.model_validate_json(stored)
                if stored
                else CameraState.start(camera_id, now)
            )
            self.states[camera_id] = state
        return state

    def _discard(self, camera_id: str, out: CameraOutput) -> None:
        """A state an evaluation failed half-way through is not kept: the table's is."""
        self.forget([camera_id])
        out.changed.pop(camera_id, None)

    def process(self, messages: Iterable[Message]) -> CameraOutput:
        out = CameraOutput()
        for index, message in enumerate(messages):
            if message.tick:
                self._tick(message, out)
            else:
                reason = self._frame(message, out)
                if reason is not None:
                    out.rejected.append((index, reason))
        return out

    def _frame(self, message: Message, out: CameraOutput) -> str | None:
        """Judge one frame's detections; the reason when it is rejected."""
        try:
            frame = FrameDetections.model_validate_json(message.value)
        except ValidationError as error:
            return describe_validation_error(error)
        camera = self.cameras.get(frame.camera_id)
        if camera is None:
            return f"unknown camera id {frame.camera_id!r}: not in the camera registry"
        state = self._state(camera.id, from_epoch_ms(message.timestamp_ms))
        if state.source_offset is not None and message.offset <= state.source_offset:
            # Judged before a restart, or skipped by a delivery gap that the held commit then
            # redelivered: not judged again, but stored again (an idempotent insert), since a
            # frame missing from the database is lost for good (as in `ioc.streams.sensors`).
            out.frames.append(frame)
            return None
        try:
            transitions, crossings = evaluate(state, frame, camera, self.rules[camera.id])
        except Exception as error:  # a bug for one frame must not stop every other camera
            log.exception("camera rules failed on frame %s of %s", frame.seq, camera.id)
            self._discard(camera.id, out)
            return f"camera rules failed on this frame ({error!r}); kept here to replay once fixed"
        state.source_offset = message.offset
        out.frames.append(frame)
        out.incidents.extend(incident_of(t, camera, frame.ingested_at_ms) for t in transitions)
        out.crossings.extend(crossings)
        out.changed[camera.id] = state
        return None

    def _tick(self, message: Message, out: CameraOutput) -> None:
        now = from_epoch_ms(message.timestamp_ms)
        for camera_id in self.by_partition.get(message.partition, ()):
            new = camera_id not in self.states  # first tick since start-up or a rebalance
            state = self._state(camera_id, now)
            if state.source_offset is not None and message.offset <= state.source_offset:
                continue
            camera = self.cameras[camera_id]
            try:
                transitions = evaluate_timer(state, camera, self.rules[camera_id], now)
            except Exception:  # the next tick tries again; other cameras go on
                log.exception("camera rules failed on a clock tick for %s", camera_id)
                self._discard(camera_id, out)
                continue
            if new or transitions:  # else nothing worth a changelog write changed
                state.source_offset = message.offset
                out.changed[camera_id] = state
            out.incidents.extend(incident_of(t, camera, message.timestamp_ms) for t in transitions)


__all__ = ["CameraFlow", "CameraOutput", "incident_of"]
