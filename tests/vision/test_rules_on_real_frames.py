"""The camera rules on what the real detector and tracker make of real road frames (CPU): a
parked scene filmed frame after frame, a worker restart in the middle (the tracker's ids start
again from another base), and masks. The frame is a still repeated, as a camera filming parked
vehicles would send it."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from ioc.assets import DEFAULT_MODEL_PATH
from ioc.models import FrameDetections
from ioc.models.registry import CameraSpec, Zone
from ioc.rules.camera.engine import evaluate
from ioc.rules.camera.registry import CameraRules, CameraRuleSet, CameraState
from ioc.vision.detector import Detector, FrameResult
from ioc.vision.tracking import IDS_PER_BASE, CameraTracks
from tests.rules.camera.scene import T0

WHOLE = ((0.0, 0.0), (1.0, 0.0), (1.0, 1.0), (0.0, 1.0))
CAMERA = CameraSpec(
    id="cam-road",
    name="Đường thử",
    url="rtsp://example/road",
    district="Phường Gia Sàng",
    lat=21.57,
    lon=105.84,
    zones=(Zone(name="lan", kind="no_stopping", points=WHOLE, dwell_s=30),),
)


@pytest.fixture(scope="module")
def road(samples_dir: Path) -> FrameResult:
    """The sample road frame with the most vehicles, as the default model sees it."""
    detector = Detector(str(DEFAULT_MODEL_PATH), device="cpu", image_size=640, min_score=0.25)
    results = [
        result
        for path in sorted((samples_dir / "frames" / "traffic").glob("*.jpg"))
        if (result := detector.detect_jpegs([path.read_bytes()])[0]) is not None
    ]
    return max(
        results, key=lambda r: sum(d.class_name in ("car", "truck", "bus") for d in r.detections)
    )


@pytest.fixture(scope="module")
def rules() -> CameraRules:
    return CameraRuleSet.load().for_camera(CAMERA.id)


def filmed(road: FrameResult, tracks: CameraTracks, seq: int) -> FrameDetections:
    at = T0 + timedelta(seconds=5 * seq)
    return FrameDetections(
        camera_id=CAMERA.id,
        event_time=at,
        seq=seq,
        frame_partition=0,
        frame_offset=seq,
        ingested_at_ms=int(at.timestamp() * 1000) + 500,
        model="ioc-yolo11n",
        inference_ms=50,
        width=road.width,
        height=road.height,
        detections=tracks.assign(CAMERA.id, road.detections, (road.height, road.width)),
        stats=road.stats,
    )


def test_a_restart_does_not_double_the_parked_vehicles(
    road: FrameResult, rules: CameraRules
) -> None:
    state = CameraState.start(CAMERA.id, T0)
    opened: list[str] = []
    tracks = CameraTracks(id_base=0)
    for seq in range(10):  # 45 s of a parked scene
        opened += [
            t.incident_id
            for t in evaluate(state, filmed(road, tracks, seq), CAMERA, rules).transitions
            if t.action == "open" and t.rule == "stopped_vehicle"
        ]
    assert opened, "the real frame's vehicles stopped beyond the 30 s dwell"
    assert len(set(opened)) == len(opened)
    restarted = CameraState.from_json(state.model_dump_json().encode())
    tracks = CameraTracks(id_base=IDS_PER_BASE)  # a new worker: new track ids
    after = [
        t
        for seq in range(10, 20)
        for t in evaluate(restarted, filmed(road, tracks, seq), CAMERA, rules).transitions
    ]
    stops = [t for t in after if t.rule == "stopped_vehicle"]
    assert [t for t in stops if t.action in ("open", "resolve")] == [], "the same stops go on"
    assert {s.track_id for s in restarted.stopped_vehicle["lan"].stays} >= {
        t.details["track_id"] for t in stops
    }


def test_a_mask_over_the_road_hides_it_from_the_rules(
    road: FrameResult, rules: CameraRules
) -> None:
    masked = CAMERA.model_copy(
        update={"zones": (*CAMERA.zones, Zone(name="bai-do", kind="mask", points=WHOLE))}
    )
    state = CameraState.start(CAMERA.id, T0)
    tracks = CameraTracks(id_base=0)
    found = [
        t
        for seq in range(10)
        for t in evaluate(state, filmed(road, tracks, seq), masked, rules).transitions
    ]
    assert [t.rule for t in found] == ["frozen"], "only the camera's health: a still repeated"
