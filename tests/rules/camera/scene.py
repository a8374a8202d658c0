"""A synthetic camera scene for the rules' tests: a camera with a crowd zone, a no-stopping
zone and a line, and frames of made-up detections fed to it (no broker, no model, no clock)."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime, timedelta

from ioc.models import BoundingBox, Detection, FrameDetections, FrameStats
from ioc.models.registry import CameraSpec, Zone
from ioc.rules.camera.base import Crossing, Flow, Transition
from ioc.rules.camera.engine import evaluate, evaluate_timer
from ioc.rules.camera.registry import CameraRules, CameraState

T0 = datetime(2026, 11, 23, 8, 0, tzinfo=UTC)
SIZE = 1000  # frames are 1000 x 1000 pixels: a box at 400 is at 0.4 of the frame

CAMERA = CameraSpec(
    id="cam-1",
    name="Ngã tư thử",
    url="rtsp://example/1",
    district="Phường Gia Sàng",
    lat=21.57,
    lon=105.84,
    zones=(
        Zone(
            name="cong",
            kind="crowd",
            points=((0, 0.5), (1, 0.5), (1, 1), (0, 1)),
            limit=3,
            hold_s=10,
        ),
        Zone(
            name="lan",
            kind="no_stopping",
            points=((0, 0), (0.5, 0), (0.5, 0.45), (0, 0.45)),
            dwell_s=30,
        ),
        Zone(name="vach", kind="line", points=((0.5, 0.3), (1, 0.3))),
    ),
)


def det(
    name: str, score: float, x: float, y: float, size: float = 40, track: int | None = None
) -> Detection:
    """A box whose bottom centre (its anchor) is at (x, y), in pixels."""
    box = BoundingBox(x1=x - size / 2, y1=y - size, x2=x + size / 2, y2=y)
    return Detection(class_name=name, score=score, box=box, track_id=track)


def stats(digest: str = "00000000000000aa", signature: str = "0f0f0f0f0f0f0f0f", std=40.0):
    return FrameStats(luma_mean=120, luma_std=std, signature=signature, digest=digest)


def frame(
    seq: int,
    at_s: float,
    detections: Iterable[Detection] = (),
    frame_stats: FrameStats | None = None,
    camera: str = CAMERA.id,
) -> FrameDetections:
    at = T0 + timedelta(seconds=at_s)
    return FrameDetections(
        camera_id=camera,
        event_time=at,
        seq=seq,
        frame_partition=1,
        frame_offset=100 + seq,
        ingested_at_ms=int((at + timedelta(seconds=1)).timestamp() * 1000),
        model="m",
        inference_ms=10,
        width=SIZE,
        height=SIZE,
        detections=list(detections),
        stats=frame_stats,
    )


class Run:
    """Feeds frames and clock ticks to one camera, collecting what comes out."""

    def __init__(
        self, rules: CameraRules, camera: CameraSpec = CAMERA, state: CameraState | None = None
    ) -> None:
        self.rules, self.camera = rules, camera
        self.state = state or CameraState.start(camera.id, T0)
        self.transitions: list[Transition] = []
        self.crossings: list[Crossing] = []
        self.flows: list[Flow] = []
        self.seq = 0

    def feed(
        self, at_s: float, detections: Iterable[Detection] = (), st: FrameStats | None = None
    ) -> list[Transition]:
        outcome = evaluate(
            self.state, frame(self.seq, at_s, detections, st), self.camera, self.rules
        )
        self.seq += 1
        self.transitions += outcome.transitions
        self.crossings += outcome.crossings
        self.flows += outcome.flows
        return outcome.transitions

    def tick(self, at_s: float) -> list[Transition]:
        found = evaluate_timer(self.state, self.camera, self.rules, T0 + timedelta(seconds=at_s))
        self.transitions += found
        return found

    def of(self, rule: str) -> list[tuple[str, str]]:
        return [(t.action, t.incident_id) for t in self.transitions if t.rule == rule]

    def actions(self, rule: str) -> list[str]:
        return [action for action, _ in self.of(rule)]


FIRE = det("fire", 0.8, 700, 400)
