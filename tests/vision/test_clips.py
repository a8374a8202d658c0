"""Incident clips: encoded from real frames, assembled from the frames topic by the evidence
writer (only the incident's camera, only the window), served to staff with byte ranges, and
deleted by retention once the incident is over."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr

from ioc.api.app import create_app
from ioc.config import Settings
from ioc.incidents.composition import FusionRules
from ioc.incidents.fusion import fuse
from ioc.kafka import topics
from ioc.models import Incident
from ioc.models.base import deterministic_id
from ioc.store.writer import Store
from ioc.vision import clips
from ioc.vision.evidence import EvidenceWriter
from tests.vision.test_worker import T0, camera_fire, isolated, send_frames

av = pytest.importorskip("av", reason="the vision extra (PyAV) is not installed")


def decoded(path: Path) -> list[tuple[float, int, int]]:
    """(seconds, width, height) of each frame of a video file, as a player decodes it."""
    with av.open(str(path)) as container:
        return [
            (float(frame.pts * frame.time_base), frame.width, frame.height)
            for frame in container.decode(video=0)
        ]


def test_frames_become_an_h264_mp4_that_keeps_their_timing_and_evens_their_size(
    samples_dir: Path, tmp_path: Path
) -> None:
    import cv2

    jpegs = [p.read_bytes() for p in sorted((samples_dir / "frames" / "traffic").glob("*.jpg"))]
    first = cv2.imread(str(samples_dir / "frames" / "traffic" / "traffic_00.jpg"))
    padded = cv2.copyMakeBorder(first, 0, 1, 0, 1, cv2.BORDER_CONSTANT)  # 641 x 641: odd sides
    odd = cv2.imencode(".jpg", padded)[1].tobytes()
    times = [0, 400, 1_000, 1_100, 2_500]  # an unevenly sampled camera
    sources = [odd, *jpegs[1:5]]
    frames = [clips.ClipFrame(1_000_000 + t, j) for t, j in zip(times, sources, strict=True)]
    frames.insert(2, clips.ClipFrame(1_000_600, b"not a jpeg"))  # skipped, not fatal
    path = tmp_path / "cam" / "inc.mp4"
    assert clips.encode_mp4(frames, path) == 5
    with av.open(str(path)) as container:
        assert container.streams.video[0].codec_context.name == "h264"
    shown = decoded(path)
    assert [round(seconds, 3) for seconds, _, _ in shown] == [t / 1000 for t in times]
    assert {(width, height) for _, width, height in shown} == {(640, 640)}
    assert not list(path.parent.glob("*.part*"))
    assert clips.encode_mp4([clips.ClipFrame(0, b"junk")], tmp_path / "none.mp4") == 0
    assert not (tmp_path / "none.mp4").exists()


def test_wide_frames_are_scaled_down_to_an_even_size() -> None:
    assert clips.clip_size(1920, 1080) == (1280, 720)
    assert clips.clip_size(2560, 1441) == (1280, 720)
    assert clips.clip_size(641, 481) == (640, 480)


def evidence_settings(live_stack: Settings) -> Settings:
    """The session's evidence settings (its vision worker, when running, writes evidence for the
    same incidents into the same folder with the same windows) under a group of the test's."""
    return isolated(live_stack, "clips")


def with_staff_key(settings: Settings) -> Settings:
    alerts = settings.alerts.model_copy(update={"staff_keys": {"lan": SecretStr("k-lan")}})
    return settings.model_copy(update={"alerts": alerts})


def run_writer(settings: Settings, until: Callable[[], Any], timeout: float = 90) -> EvidenceWriter:
    async def main() -> EvidenceWriter:
        writer = EvidenceWriter(settings)
        await writer.start()
        stop = asyncio.Event()
        task = asyncio.create_task(writer.run(stop))
        try:
            deadline = asyncio.get_running_loop().time() + timeout
            while not await asyncio.to_thread(until):
                assert not task.done(), task
                assert asyncio.get_running_loop().time() < deadline, "writer did not finish"
                await asyncio.sleep(0.3)
        finally:
            stop.set()
            await task
            await writer.stop()
        return writer

    return asyncio.run(main())


@pytest.mark.integration
def test_a_camera_incident_gets_a_clip_of_its_window_served_to_staff_then_expired(
    live_stack: Settings, samples_dir: Path, db: Any
) -> None:
    from kafka import KafkaProducer

    settings = evidence_settings(live_stack)
    camera, other = (f"cam-clip-{uuid.uuid4().hex[:6]}" for _ in range(2))
    jpegs = [p.read_bytes() for p in sorted((samples_dir / "frames" / "fire").glob("*.jpg"))]
    # 50 frames a second apart (camera time T0 + seq s), another camera's interleaved.
    sent = [(cam, seq, jpegs[seq % len(jpegs)]) for seq in range(50) for cam in (camera, other)]
    placed = send_frames(settings, sent)
    anchor_seq = 20
    first_seq = anchor_seq - int(settings.vision.clip_before_s)
    last_seq = anchor_seq + int(settings.vision.clip_after_s)
    assert first_seq > 0 and last_seq < 49, "the window lies inside what was sent"
    anchor = placed[sent.index((camera, anchor_seq, jpegs[anchor_seq % len(jpegs)]))]
    incident_id = deterministic_id("inc", "test-clips", camera)
    box = {"x1": 10, "y1": 10, "x2": 200, "y2": 200}
    incident = camera_fire(
        incident_id, camera, anchor, anchor_seq, [{"class": "fire", "score": 0.8, "box": box}], 0.8
    )

    async def record(candidate: Incident) -> None:
        store = Store(settings.database.dsn)
        try:
            await store.upsert_incident(candidate)
            async with store.connection() as conn:
                await fuse(conn, candidate, FusionRules.load(), "clips-test")
        finally:
            await store.close()

    asyncio.run(record(incident))
    with KafkaProducer(bootstrap_servers=settings.kafka.bootstrap_servers, acks="all") as client:
        client.send(topics.INCIDENT_CANDIDATES, key=b"t", value=incident.to_bytes()).get(30)

    def clip() -> dict[str, Any] | None:
        row = db.execute(
            "SELECT status, path, frames, first_frame_at, last_frame_at FROM incident_clips"
            " WHERE incident_id = %s",
            (incident_id,),
        ).fetchone()
        return row if row and row[0] != "pending" else None

    run_writer(settings, clip)
    status, path, frames, first, last = clip()
    # Only the incident's camera, only the window (10 s before to 20 s after, by default).
    assert status == "ready" and frames == last_seq - first_seq + 1
    assert (first, last) == (T0 + timedelta(seconds=first_seq), T0 + timedelta(seconds=last_seq))
    shown = [seconds for seconds, _, _ in decoded(Path(path))]
    assert shown == [float(s) for s in range(frames)]

    app = create_app(with_staff_key(settings))
    with TestClient(app) as api:
        base = f"/api/v1/incidents/{incident_id}"
        assert api.get(f"{base}/clip").status_code == 401
        whole = api.get(f"{base}/clip", headers={"X-API-Key": "k-lan"})
        assert whole.status_code == 200 and whole.headers["content-type"] == "video/mp4"
        assert whole.content == Path(path).read_bytes()
        part = api.get(f"{base}/clip", headers={"X-API-Key": "k-lan", "Range": "bytes=0-99"})
        assert part.status_code == 206 and part.content == whole.content[:100]
        snapshot = api.get(f"{base}/snapshot", headers={"X-API-Key": "k-lan"})
        assert snapshot.status_code == 200 and snapshot.content[:2] == b"\xff\xd8"
        shown = api.get(base, headers={"X-API-Key": "k-lan"}).json()["evidence_files"]
        assert [(entry["camera_id"], entry["clip_status"]) for entry in shown] == [
            (camera, "ready")
        ]
        assert api.get(shown[0]["clip_url"], headers={"X-API-Key": "k-lan"}).status_code == 200
        elsewhere = api.get(f"{base}/clip?member=inc-none", headers={"X-API-Key": "k-lan"})
        assert elsewhere.status_code == 404 and "member" in elsewhere.text

    # Retention: nothing goes while the incident is open; once resolved and old, file and row go.
    snapshot_path = Path(
        db.execute(
            "SELECT path FROM incident_snapshots WHERE incident_id = %s", (incident_id,)
        ).fetchone()[0]
    )

    async def expire() -> list[Path]:
        store = Store(settings.database.dsn)
        try:
            async with store.connection() as conn:
                return await clips.expire_evidence(conn, timedelta(seconds=0))
        finally:
            await store.close()

    assert Path(path) not in asyncio.run(expire())
    db.execute("UPDATE incidents SET status = 'resolved' WHERE id = %s", (incident_id,))
    expired = asyncio.run(expire())
    assert {Path(path), snapshot_path} <= set(expired)
    assert db.execute(
        "SELECT count(*) FROM incident_clips WHERE incident_id = %s", (incident_id,)
    ).fetchone() == (0,)


@pytest.mark.integration
def test_a_clip_whose_frames_are_gone_is_recorded_empty(live_stack: Settings, db: Any) -> None:
    """Kafka kept nothing of the window (retention, or a camera that sent nothing): the clip is
    `empty`, not retried forever, and the API says so."""
    settings = evidence_settings(live_stack)
    camera = f"cam-clip-gone-{uuid.uuid4().hex[:6]}"
    incident_id = deterministic_id("inc", "test-clips-gone", camera)
    incident = camera_fire(incident_id, camera, _Placed(0, 0), 0, [], 0.5)
    window = clips.ClipWindow(timedelta(seconds=4), timedelta(seconds=3))

    async def request() -> None:
        store = Store(settings.database.dsn)
        try:
            await store.upsert_incident(incident)
            async with store.connection() as conn:
                await fuse(conn, incident, FusionRules.load(), "clips-test")
                # a window long before anything on the topic's partition: a far-future anchor
                await clips.request_clip(
                    conn, window.request(incident_id, camera, 0, 4_102_444_800_000, T0)
                )
                await conn.execute(
                    "UPDATE incident_clips SET due_at = now() WHERE incident_id = %s",
                    (incident_id,),
                )
        finally:
            await store.close()

    asyncio.run(request())

    def status() -> str | None:
        row = db.execute(
            "SELECT status FROM incident_clips WHERE incident_id = %s", (incident_id,)
        ).fetchone()
        return row[0] if row[0] != "pending" else None

    run_writer(settings, status)
    assert status() == "empty"
    app = create_app(with_staff_key(settings))
    with TestClient(app) as api:
        answer = api.get(f"/api/v1/incidents/{incident_id}/clip", headers={"X-API-Key": "k-lan"})
    assert answer.status_code == 404 and "(empty)" in answer.text


class _Placed:
    def __init__(self, partition: int, offset: int) -> None:
        self.partition, self.offset = partition, offset
