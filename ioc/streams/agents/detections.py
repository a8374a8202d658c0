"""The camera detections agent: frames' detections from the detections topic in, in each camera's
order, frames to store and incidents out, with per-camera rule state
(`ioc.rules.camera.CameraState`, see `ioc.streams.keyed`). Clock ticks on the topic drive the
offline check.

Like the sensor readings, a plain batched consumer (`ioc.streams.keyed_work`) with its states in
the database, not a Faust agent: one frame at a time through Faust bounded a replay at about 700
frames/s, two thirds of its time.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

from pydantic import ValidationError

from ioc.incidents.candidates import candidate_of
from ioc.kafka import topics
from ioc.kafka.dlq import describe_validation_error
from ioc.models import FrameDetections, Incident, IncidentSource
from ioc.models.registry import CameraRegistry, CameraSpec, line_sensor_id, load_camera_registry
from ioc.rules.camera.base import Crossing, Flow, Transition
from ioc.rules.camera.engine import Outcome, evaluate, evaluate_timer
from ioc.rules.camera.registry import CameraRules, CameraRuleSet, CameraState
from ioc.sensors import fiware
from ioc.streams.context import StreamContext
from ioc.streams.keyed import FlowOutput, KeyedFlow, Message
from ioc.streams.keyed_work import KeyedWork

log = logging.getLogger(__name__)
DERIVED = {topics.DERIVED_HEADER: b"camera-line"}


@dataclass
class DetectionsOutput(FlowOutput[CameraState]):
    frames: list[FrameDetections] = field(default_factory=list)  # to store
    crossings: list[Crossing] = field(default_factory=list)
    flows: list[tuple[bytes, bytes]] = field(default_factory=list)  # to the sensors topic


Judged = Outcome


def flow_readings(flow: Flow, camera: CameraSpec) -> list[tuple[bytes, bytes]]:
    """A line's minute as one FIWARE `TrafficFlowObserved` reading per direction, keyed by the
    line's sensor id, for the sensor path (`SensorRegistry.with_camera_lines`). `laneDirection`
    is `forward` for the line's allowed direction (left to right when it has none)."""
    (zone,) = [zone for zone in camera.zones if zone.name == flow.line]
    readings = []
    for direction, count in flow.counts.items():
        sensor_id = line_sensor_id(camera.id, flow.line, direction)
        entity = fiware.entity(sensor_id, "TrafficFlowObserved", flow.end, intensity=count)
        forward = direction == (zone.direction or "left_to_right")
        entity |= {
            "dateObservedFrom": flow.start.isoformat(),
            "dateObservedTo": flow.end.isoformat(),
            "laneDirection": "forward" if forward else "backward",
            "name": f"{camera.name} – {flow.line}",
        }
        readings.append((sensor_id.encode(), json.dumps(entity, ensure_ascii=False).encode()))
    return readings


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
    return candidate_of(transition, camera, IncidentSource.VISION, ingested_ms, evidence)


class CameraFlow(KeyedFlow[CameraState, FrameDetections, Judged, DetectionsOutput]):
    """Detections and ticks → frames to store, incidents, line crossings; per-camera state."""

    what = "frame"
    rules_name = "camera rules"

    def __init__(
        self,
        registry: CameraRegistry,
        ruleset: CameraRuleSet,
        partitions: int,
        stored_state: Callable[[str], bytes | None],
    ) -> None:
        super().__init__((camera.id for camera in registry.cameras), partitions, stored_state)
        self.cameras = {camera.id: camera for camera in registry.cameras}
        self.rules: dict[str, CameraRules] = {
            camera.id: ruleset.for_camera(camera.id) for camera in registry.cameras
        }

    def output(self) -> DetectionsOutput:
        return DetectionsOutput()

    def load_state(self, stored: bytes) -> CameraState:
        return CameraState.from_json(stored)

    def start_state(self, key: str, now: datetime) -> CameraState:
        return CameraState.start(key, now)

    def decode(self, message: Message) -> tuple[str, FrameDetections] | str:
        try:
            frame = topics.DETECTIONS.decode(message.value)
        except ValidationError as error:
            return describe_validation_error(error)
        if frame.camera_id not in self.cameras:
            return f"unknown camera id {frame.camera_id!r}: not in the camera registry"
        return frame.camera_id, frame

    def judge(
        self, state: CameraState, key: str, item: FrameDetections, message: Message
    ) -> Judged:
        return evaluate(state, item, self.cameras[key], self.rules[key])

    def emit(
        self,
        key: str,
        item: FrameDetections,
        judged: Judged,
        message: Message,
        out: DetectionsOutput,
    ) -> None:
        out.frames.append(item)
        camera = self.cameras[key]
        out.incidents.extend(
            incident_of(t, camera, item.ingested_at_ms) for t in judged.transitions
        )
        out.crossings.extend(judged.crossings)
        out.flows.extend(
            reading for flow in judged.flows for reading in flow_readings(flow, camera)
        )

    def store_again(
        self, key: str, item: FrameDetections, message: Message, out: DetectionsOutput
    ) -> None:
        out.frames.append(item)

    def judge_tick(self, state: CameraState, key: str, now: datetime) -> Judged:
        return Outcome(evaluate_timer(state, self.cameras[key], self.rules[key], now), [], [])

    def emit_tick(self, key: str, judged: Judged, message: Message, out: DetectionsOutput) -> bool:
        camera = self.cameras[key]
        out.incidents.extend(
            incident_of(t, camera, message.timestamp_ms) for t in judged.transitions
        )
        return bool(judged.transitions)


def register(ctx: StreamContext) -> None:
    streams = ctx.settings.streams
    group = streams.group_of("cameras")
    stored: dict[str, bytes] = {}  # the database's states of the partitions this worker owns
    flow = CameraFlow(
        load_camera_registry(ctx.settings.cameras.registry),
        CameraRuleSet.load(ctx.settings.cameras.rules),
        ctx.settings.kafka.partitions,
        stored_state=stored.get,
    )

    async def store(output: DetectionsOutput) -> None:
        """Frames, incidents and line minutes; the states are written after them."""
        await ctx.store.insert_frames(output.frames)
        for incident in output.incidents:  # opened, better frame, resolved
            await ctx.raise_incident(incident)
        for key, value in output.flows:  # the lines' minutes, to the sensor path
            await ctx.topics.sensors.send(key=key, value=value, headers=DERIVED)
        for crossing in output.crossings:
            log.info(
                "camera %s line %s: %s #%d crossed %s (%d so far)",
                crossing.camera_id,
                crossing.line,
                crossing.class_name,
                crossing.track_id,
                crossing.direction,
                crossing.total,
            )

    ctx.batched(
        ctx.settings.kafka.topic(topics.VISION_DETECTIONS),
        group,
        KeyedWork(ctx, flow, group, "camera", store, stored),
        "camera",
        streams.event_batch_size,
        streams.event_batch_wait_s,
    )
