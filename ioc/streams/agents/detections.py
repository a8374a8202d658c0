"""The camera detections agent: frames' detections from the detections topic in, one at a time in
each camera's order, frames to store and incidents out, with per-camera rule state
(`ioc.rules.camera.CameraState`, see `ioc.streams.keyed`). Clock ticks on the topic drive the
offline check.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import faust
from pydantic import ValidationError

from ioc import topics
from ioc.dlq import describe_validation_error
from ioc.incidents.candidates import candidate_of
from ioc.models import FrameDetections, Incident, IncidentSource
from ioc.models.registry import CameraRegistry, CameraSpec, line_sensor_id, load_camera_registry
from ioc.retry import retried
from ioc.rules.camera.base import Crossing, Flow, Transition
from ioc.rules.camera.engine import Outcome, evaluate, evaluate_timer
from ioc.rules.camera.registry import CameraRules, CameraRuleSet, CameraState
from ioc.sensors import fiware
from ioc.streams.acks import one_by_one
from ioc.streams.context import Rejected, StreamContext, message_of
from ioc.streams.keyed import FlowOutput, KeyedFlow, Message, is_tick

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
    states = ctx.state_table("camera-state")
    flow = CameraFlow(
        load_camera_registry(ctx.settings.cameras.registry),
        CameraRuleSet.load(ctx.settings.cameras.rules),
        ctx.settings.kafka.partitions,
        stored_state=lambda camera_id: states.get(camera_id.encode()),
    )

    @ctx.app.on_partitions_revoked.connect
    async def forget_states(_app: faust.App, _revoked: Any, **_: Any) -> None:
        flow.forget()

    async def store_output(output: DetectionsOutput) -> None:
        """Frames and incidents first, then the states: a crash in between replays the frame."""
        try:
            for frame in output.frames:
                await ctx.store.insert_frame(frame)
            for incident in output.incidents:  # opened, better frame, resolved
                await ctx.raise_incident(incident)
            for key, value in output.flows:  # the lines' minutes, to the sensor path
                await ctx.topics.sensors.send(key=key, value=value, headers=DERIVED)
        except Exception:
            flow.forget(output.changed)  # a retry judges again from the table's state
            raise
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
        for camera_id, state in output.changed.items():
            states[camera_id.encode()] = state.model_dump_json().encode()

    async def process_detections(event: faust.EventT) -> None:
        output = flow.process([message_of(event)])
        for _, reason in output.rejected:
            raise Rejected(reason)
        await store_output(output)

    async def process_tick(event: faust.EventT) -> None:
        """A failed tick is logged, never dead-lettered: the next one judges again."""
        failure = await retried(
            lambda: store_output(flow.process([message_of(event)])), "camera tick"
        )
        if failure is not None:
            log.error("giving up on a camera clock tick", exc_info=failure)

    async def process_event(event: faust.EventT) -> None:
        """One frame at a time, in each camera's order; clock ticks for the offline check."""
        if is_tick(event.message.headers):
            await process_tick(event)
        else:
            await ctx.handle(event.message, "camera", lambda: process_detections(event))

    ctx.agent(ctx.topics.detections, "camera", one_by_one(process_event))
