"""The inference worker in-process against the real stack: newest frame per camera under
overload (drops counted, nothing unaccounted for), track ids across frames, and snapshots of
camera incidents saved from the frames topic."""

from __future__ import annotations

import asyncio
import shutil
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from aiokafka import TopicPartition

from ioc.config import Settings
from ioc.kafka import topics
from ioc.models import FrameDetections, FrameHeaders, Incident, IncidentKind, IncidentSource
from ioc.models.base import deterministic_id
from ioc.models.incidents import Severity
from ioc.store.writer import Store
from ioc.vision.detector import Detector
from ioc.vision.evidence import EvidenceWriter
from ioc.vision.worker import LatestFrames, Offsets, PendingFrame, VisionWorker
from tests.conftest import caught_up, dead_letters, end_offsets, published_since

pytestmark = pytest.mark.integration
T0 = datetime(2026, 11, 23, 8, 0, tzinfo=UTC)
MODEL_NAME = f"test-worker-{uuid.uuid4().hex[:8]}"


def pending(camera_id: str, offset: int, partition: int = 0) -> PendingFrame:
    from aiokafka import ConsumerRecord

    record = ConsumerRecord(
        topics.CAMERA_FRAMES, partition, offset, 0, 0, None, b"", None, 0, 0, []
    )
    headers = FrameHeaders(camera_id=camera_id, event_time=T0, seq=offset)
    return PendingFrame(TopicPartition(topics.CAMERA_FRAMES, partition), record, headers)


def test_a_newer_frame_replaces_the_waiting_one_and_keeps_its_place_in_line() -> None:
    waiting = LatestFrames()
    for camera_id, offset in (("a", 0), ("b", 1), ("a", 2), ("a", 3)):
        waiting.put(pending(camera_id, offset))
    batch = asyncio.run(waiting.batch(size=8, wait_s=0))
    assert [(f.headers.camera_id, f.record.offset, f.dropped) for f in batch] == [
        ("a", 3, 2),
        ("b", 1, 0),
    ]
    tp = TopicPartition(topics.CAMERA_FRAMES, 0)
    assert batch[0].offsets() == ((tp, 3), (tp, 0), (tp, 2))
    assert waiting.dropped == 2 and len(waiting) == 0


def test_offsets_commit_only_below_the_oldest_frame_not_done() -> None:
    offsets, tp = Offsets(), TopicPartition(topics.CAMERA_FRAMES, 0)
    for offset in range(5):
        offsets.seen(tp, offset)
    offsets.done((tp, 0), (tp, 1), (tp, 3))
    assert offsets.to_commit([tp]) == {tp: 2}
    offsets.committed({tp: 2})
    assert offsets.to_commit([tp]) == {}
    offsets.done((tp, 2), (tp, 4))
    assert offsets.to_commit([tp]) == {tp: 5}
    assert offsets.to_commit([TopicPartition(topics.CAMERA_FRAMES, 1)]) == {}


def test_a_replaced_frame_is_not_committed_before_the_frame_that_replaced_it_is_done() -> None:
    """A crash while the newer frame waits for the model must read the replaced one again, or
    it would be neither judged nor counted as dropped."""
    waiting, offsets = LatestFrames(), Offsets()
    tp = TopicPartition(topics.CAMERA_FRAMES, 0)
    for offset in range(3):
        offsets.seen(tp, offset)
        waiting.put(pending("a", offset))
    assert offsets.to_commit([tp]) == {tp: 0}
    (newest,) = asyncio.run(waiting.batch(size=8, wait_s=0))
    offsets.done(*newest.offsets())
    assert offsets.to_commit([tp]) == {tp: 3}


@pytest.fixture(scope="module")
def detector(settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Detector:
    """The default model under a name of its own: outputs carry the model's name, which tells
    this module's workers' detections from those of the session's vision worker."""
    vision = settings.vision
    model = tmp_path_factory.mktemp("model") / f"{MODEL_NAME}.pt"
    shutil.copyfile(vision.model_path, model)
    return Detector(
        str(model),
        device="cpu",
        image_size=vision.image_size,
        min_score=vision.min_score,
        class_min_scores=vision.class_min_scores,
        half=vision.half,
    )


def send_frames(settings: Settings, frames: list[tuple[str, int, bytes]]) -> list[Any]:
    """(camera, seq, jpeg) in order; returns each record's metadata."""
    from kafka import KafkaProducer

    client = KafkaProducer(bootstrap_servers=settings.kafka.bootstrap_servers, acks="all")
    try:
        futures = [
            client.send(
                topics.CAMERA_FRAMES,
                key=camera.encode(),
                value=jpeg,
                headers=FrameHeaders(
                    camera_id=camera, event_time=T0 + timedelta(seconds=seq), seq=seq
                ).to_kafka(),
            )
            for camera, seq, jpeg in frames
        ]
        return [future.get(timeout=30) for future in futures]
    finally:
        client.close()


def camera_fire(
    incident_id: str, camera: str, placed: Any, seq: int, boxes: list[Any], score: float
) -> Incident:
    """A camera fire incident whose evidence names the frame at `placed` (its send metadata)."""
    return Incident(
        id=incident_id,
        kind=IncidentKind.FIRE,
        severity=Severity.URGENT,
        source=IncidentSource.VISION,
        source_key=camera,
        title=f"Camera {camera}: fire",
        event_time=T0,
        ingested_at_ms=0,
        evidence={
            "frame": {"partition": placed.partition, "offset": placed.offset, "seq": seq},
            "boxes": boxes,
            "score": score,
        },
    )


def outputs_for(settings: Settings, since: dict[Any, int], cameras: set[str]) -> list[Any]:
    records = published_since(settings, topics.VISION_DETECTIONS, since)
    frames = [FrameDetections.model_validate_json(r.value) for r in records]
    return [
        frame
        for frame in frames
        if frame.camera_id in cameras and frame.model == f"{MODEL_NAME}.pt"
    ]


def run_worker_until(
    settings: Settings, detector: Detector, done: Callable[[], bool], timeout: float = 180
) -> VisionWorker:
    async def main() -> VisionWorker:
        worker = VisionWorker(settings, detector)
        stop = asyncio.Event()
        task = asyncio.create_task(worker.run(stop))
        deadline = asyncio.get_running_loop().time() + timeout
        try:
            while not await asyncio.to_thread(done):
                if task.done():
                    task.result()  # a crashed worker fails the test with its error
                assert asyncio.get_running_loop().time() < deadline, "worker did not finish"
                await asyncio.sleep(0.5)
        finally:
            stop.set()
            await task
        return worker

    return asyncio.run(main())


def isolated(settings: Settings, name: str) -> Settings:
    """The session's settings with a group of its own, so the session's workers don't interfere."""
    vision = settings.vision.model_copy(
        update={"group_id": f"test-{name}-{uuid.uuid4().hex[:8]}", "batch_size": 4}
    )
    return settings.model_copy(update={"vision": vision})


def test_under_overload_each_camera_gets_its_newest_frame_and_every_frame_is_accounted_for(
    live_stack: Settings, detector: Detector, samples_dir: Path
) -> None:
    settings = isolated(live_stack, "overload")
    jpegs = [p.read_bytes() for p in sorted((samples_dir / "frames" / "traffic").glob("*.jpg"))]
    cameras = [f"cam-overload-{uuid.uuid4().hex[:6]}-{i}" for i in range(3)]
    per_camera = 15
    since = end_offsets(settings, topics.VISION_DETECTIONS)
    send_frames(
        settings,
        [(camera, seq, jpegs[seq % len(jpegs)]) for seq in range(per_camera) for camera in cameras],
    )

    def last_frames_seen_and_committed() -> bool:
        """The group reads the whole topic (earlier tests' cameras too): it is done once it has
        committed all of it, not as soon as these cameras' last frames are out."""
        seqs = {(f.camera_id, f.seq) for f in outputs_for(settings, since, set(cameras))}
        return all((camera, per_camera - 1) in seqs for camera in cameras) and caught_up(
            settings, settings.vision.group_id, topics.CAMERA_FRAMES
        )

    worker = run_worker_until(settings, detector, last_frames_seen_and_committed)

    outputs = outputs_for(settings, since, set(cameras))
    for camera in cameras:
        mine = [f for f in outputs if f.camera_id == camera]
        seqs = [f.seq for f in mine]
        assert seqs == sorted(seqs), "a camera's frames are inferred in order"
        assert sum(1 + f.dropped for f in mine) == per_camera, "each frame processed or counted"
        assert all(f.stats is not None and f.width == 640 for f in mine)
    assert sum(f.dropped for f in outputs) > 0, "a backlog was read as the present, not replayed"
    assert len(outputs) < len(cameras) * per_camera
    assert worker.waiting.dropped >= sum(f.dropped for f in outputs)


def test_a_vehicle_keeps_its_track_id_across_frames(
    live_stack: Settings, detector: Detector, samples_dir: Path
) -> None:
    settings = isolated(live_stack, "tracks")
    jpeg = (samples_dir / "frames" / "traffic" / "traffic_07.jpg").read_bytes()  # seven buses
    camera = f"cam-tracks-{uuid.uuid4().hex[:6]}"
    since = end_offsets(settings, topics.VISION_DETECTIONS)
    frames_wanted = 4

    async def main() -> None:
        worker = VisionWorker(settings, detector)
        stop = asyncio.Event()
        task = asyncio.create_task(worker.run(stop))
        deadline = asyncio.get_running_loop().time() + 180
        try:
            for seq in range(frames_wanted):  # one at a time: none is dropped as stale
                await asyncio.to_thread(send_frames, settings, [(camera, seq, jpeg)])
                while len(await asyncio.to_thread(outputs_for, settings, since, {camera})) <= seq:
                    assert not task.done(), task
                    assert asyncio.get_running_loop().time() < deadline, f"frame {seq} not judged"
                    await asyncio.sleep(0.3)
        finally:
            stop.set()
            await task

    asyncio.run(main())
    frames = sorted(outputs_for(settings, since, {camera}), key=lambda f: f.seq)
    assert [f.seq for f in frames] == list(range(frames_wanted))
    assert len(frames[-1].detections) >= 5
    ids = [sorted(d.track_id for d in f.detections if d.track_id is not None) for f in frames]
    assert ids[1] and ids[1] == ids[2] == ids[3], ids
    assert len(set(ids[-1])) == len(ids[-1]), "one id per object"


def test_a_camera_incident_gets_its_best_frame_annotated_on_disk(
    live_stack: Settings, samples_dir: Path, db: Any
) -> None:
    import cv2
    import numpy as np
    from kafka import KafkaProducer

    settings = isolated(live_stack, "evidence")
    camera = f"cam-evidence-{uuid.uuid4().hex[:6]}"
    jpegs = [p.read_bytes() for p in sorted((samples_dir / "frames" / "fire").glob("*.jpg"))[:3]]
    placed = send_frames(settings, [(camera, seq, jpeg) for seq, jpeg in enumerate(jpegs)])
    incident_id = deterministic_id("inc", "test-evidence", camera)

    def incident(seq: int, score: float) -> Incident:
        box = {"x1": 10, "y1": 10, "x2": 200, "y2": 200}
        boxes = [{"class": "fire", "score": score, "box": box}]
        return camera_fire(incident_id, camera, placed[seq], seq, boxes, score)

    async def record(first: Incident) -> None:
        store = Store(settings.database.dsn)
        try:
            await store.upsert_incident(first)
        finally:
            await store.close()

    asyncio.run(record(incident(0, 0.5)))
    client = KafkaProducer(bootstrap_servers=settings.kafka.bootstrap_servers, acks="all")

    def publish(update: Incident) -> None:
        client.send(topics.INCIDENT_CANDIDATES, key=b"test", value=update.to_bytes()).get(30)

    def snapshot() -> tuple[str, int, float] | None:
        return db.execute(
            "SELECT path, seq, score FROM incident_snapshots WHERE incident_id = %s",
            (incident_id,),
        ).fetchone()

    async def run_writer(until: Callable[[], bool]) -> None:
        writer = EvidenceWriter(settings)
        await writer.start()
        stop = asyncio.Event()
        task = asyncio.create_task(writer.run(stop))
        try:
            deadline = asyncio.get_running_loop().time() + 90
            while not await asyncio.to_thread(until):
                assert not task.done(), task
                assert asyncio.get_running_loop().time() < deadline, "no snapshot"
                await asyncio.sleep(0.3)
        finally:
            stop.set()
            await task
            await writer.stop()

    try:
        publish(incident(0, 0.5))
        asyncio.run(run_writer(lambda: snapshot() is not None))
        first_path, seq, _ = snapshot()
        assert seq == 0 and Path(first_path).is_file()
        saved = cv2.imdecode(np.frombuffer(Path(first_path).read_bytes(), np.uint8), 1)
        original = cv2.imdecode(np.frombuffer(jpegs[0], np.uint8), 1)
        assert saved.shape == original.shape
        assert np.abs(saved.astype(int) - original.astype(int)).max() > 100, "boxes drawn"

        publish(incident(1, 0.9))  # a better frame replaces the snapshot and its file
        publish(incident(2, 0.2))  # a worse one does not
        asyncio.run(run_writer(lambda: snapshot()[1] == 1))
        asyncio.run(
            run_writer(
                lambda: caught_up(
                    settings, f"{settings.vision.group_id}-evidence", topics.INCIDENT_CANDIDATES
                )
            )
        )
        path, seq, score = snapshot()
        assert seq == 1 and score == pytest.approx(0.9)
        assert Path(path).is_file() and not Path(first_path).exists()
        assert not Path(path).with_name(f"{incident_id}-2.jpg").exists()
    finally:
        client.close()


def test_a_snapshot_that_keeps_failing_becomes_a_dead_letter_and_the_writer_goes_on(
    live_stack: Settings, samples_dir: Path
) -> None:
    """The incident was never stored (the snapshot row's foreign key fails every time, as a
    database that stays away would): after the retries the incident is dead-lettered."""
    from aiokafka.structs import ConsumerRecord as Record

    settings = isolated(live_stack, "evidence-fails")
    camera = f"cam-evidence-{uuid.uuid4().hex[:6]}"
    jpeg = (samples_dir / "frames" / "fire" / "fire_00.jpg").read_bytes()
    placed = send_frames(settings, [(camera, 0, jpeg)])[0]
    incident_id = deterministic_id("inc", "test-evidence-fails", camera)
    incident = camera_fire(incident_id, camera, placed, 0, [], 0.5)
    record = Record(
        topics.INCIDENT_CANDIDATES, 0, 7, 0, 0, None, incident.to_bytes(), None, 0, 0, []
    )

    async def main() -> None:
        writer = EvidenceWriter(settings)
        await writer.start()
        try:
            await writer.handle_with_retries(record)
        finally:
            await writer.stop()

    asyncio.run(main())
    letters = dead_letters(settings, incident.id.encode())
    assert [letter.headers["consumer"] for letter in letters] == ["ioc.vision.evidence"]
    assert "snapshot failed 5 times: ForeignKeyViolation" in letters[0].headers["reason"]
