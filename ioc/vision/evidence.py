"""The evidence of each camera incident: its best frame, boxes drawn, saved as a JPEG and linked in
the database, and a short clip around it (`ioc.vision.clips`).

The camera rules (in the streams app) only see detections; they name the incident's best frame
by its place in `ioc.camera.frames` (`evidence.frame`) with the boxes that explain it
(`evidence.boxes`) and a `score` to compare frames by. This writer runs beside the inference
worker, which has OpenCV: it reads each camera incident from `ioc.incidents.candidates`, fetches
that frame from Kafka, draws the boxes and saves `<evidence_dir>/<camera>/<incident>-<seq>.jpg`.
A better frame later replaces the file and the row in `incident_snapshots`. The first frame read
for an incident anchors its clip's window.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
import unicodedata
from datetime import timedelta
from functools import partial
from pathlib import Path
from typing import Any

from aiokafka import TopicPartition
from pydantic import BaseModel, ConfigDict, ValidationError

from ioc.config import Settings
from ioc.kafka import topics
from ioc.kafka.clients import MAX_MESSAGE_BYTES, aio_consumer, consumer, producer
from ioc.kafka.dlq import describe_validation_error, send_dead_letter
from ioc.models import Incident, IncidentSource
from ioc.models.incidents import IncidentStatus
from ioc.retry import ATTEMPTS, is_outage, retried
from ioc.rules.camera.base import Box, FrameRef
from ioc.store.writer import Snapshot, Store
from ioc.vision import clips

log = logging.getLogger(__name__)
CONSUMER = "ioc.vision.evidence"
FRAME_FETCH_TIMEOUT_MS = 5_000
CLIP_POLL_S = 1.0
RETENTION_EVERY_S = 3_600.0


class CameraEvidence(BaseModel):
    """The part of `incident.evidence` the snapshot needs, as the camera rules write it."""

    model_config = ConfigDict(extra="ignore")

    frame: FrameRef
    boxes: list[Box] = []
    score: float = 0.0


def annotate(jpeg: bytes, boxes: list[Box], title: str) -> bytes | None:
    """The frame with its boxes and a caption, re-encoded; None if it does not decode."""
    import cv2
    import numpy as np

    image = cv2.imdecode(np.frombuffer(jpeg, dtype=np.uint8), cv2.IMREAD_COLOR)
    if image is None:
        return None
    thickness = max(2, image.shape[1] // 400)
    for box in boxes:
        corner1 = (int(box.box.x1), int(box.box.y1))
        corner2 = (int(box.box.x2), int(box.box.y2))
        colour = (0, 0, 255) if box.class_name in ("fire", "smoke") else (0, 200, 255)
        cv2.rectangle(image, corner1, corner2, colour, thickness)
        label = f"{box.class_name} {box.score:.2f}"
        if box.track_id is not None:
            label += f" #{box.track_id}"
        cv2.putText(
            image,
            label,
            (corner1[0], max(corner1[1] - 6, 14)),
            cv2.FONT_HERSHEY_SIMPLEX,
            0.5,
            colour,
            1,
            cv2.LINE_AA,
        )
    band = 28
    height, width = image.shape[:2]
    cv2.rectangle(image, (0, height - band), (width, height), (0, 0, 0), cv2.FILLED)
    cv2.putText(
        image,
        ascii_caption(title)[: max(width // 9, 20)],
        (8, height - 9),
        cv2.FONT_HERSHEY_SIMPLEX,
        0.55,
        (255, 255, 255),
        1,
        cv2.LINE_AA,
    )
    ok, encoded = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 90])
    return encoded.tobytes() if ok else None


def ascii_caption(text: str) -> str:
    """Vietnamese without its marks (`Chợ Thái` → `Cho Thai`): OpenCV's fonts are ASCII only."""
    text = text.replace("đ", "d").replace("Đ", "D").replace("–", "-")
    return unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()


def write_atomically(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".part")
    partial.write_bytes(data)
    os.replace(partial, path)


class EvidenceWriter:
    """Reads the candidates; for camera incidents, saves and records the best frame."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.directory = settings.vision.evidence_dir.expanduser()
        group = settings.vision.evidence_group_id
        self.incidents = consumer(
            settings.kafka, group, settings.kafka.topic(topics.INCIDENT_CANDIDATES)
        )
        self.frames = frames_reader(settings, group)
        self.clip_frames = frames_reader(settings, f"{group}-clips")
        self.producer = producer(settings.kafka, group)
        self.store = Store(settings.database.dsn, max_size=2)
        self.dlq_topic = settings.kafka.topic(topics.DLQ)
        vision = settings.vision
        self.window = clips.ClipWindow(
            timedelta(seconds=vision.clip_before_s), timedelta(seconds=vision.clip_after_s)
        )
        self.retention = timedelta(days=vision.evidence_retention_days)
        self.saved = 0

    async def start(self) -> None:
        await self.producer.start()
        await self.frames.start()
        await self.clip_frames.start()
        await self.incidents.start()

    async def stop(self) -> None:
        await self.incidents.stop()
        await self.clip_frames.stop()
        await self.frames.stop()
        await self.producer.stop()
        await self.store.close()

    async def run(self, stop: asyncio.Event) -> None:
        await asyncio.gather(self.read_candidates(stop), self.build_clips(stop))

    async def read_candidates(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            batches = await self.incidents.getmany(timeout_ms=500, max_records=100)
            for records in batches.values():
                for record in records:
                    await self.handle_with_retries(record)
            if batches:
                await self.incidents.commit()

    async def handle_with_retries(self, record: Any) -> None:
        """Waits out an outage (database, broker); a snapshot that fails for another reason
        becomes a dead letter with the reason, so the incident can be replayed and the writer
        goes on."""
        failure = await retried(partial(self.handle, record), "evidence")
        if failure is not None:
            reason = f"snapshot failed {ATTEMPTS} times: {type(failure).__name__}: {failure}"
            log.error("giving up on a snapshot", exc_info=failure)
            await send_dead_letter(self.producer, self.dlq_topic, record, reason, CONSUMER)

    async def handle(self, record: Any) -> None:
        try:
            incident = topics.CANDIDATES.decode(record.value)
        except ValidationError as error:
            await send_dead_letter(
                self.producer, self.dlq_topic, record, describe_validation_error(error), CONSUMER
            )
            return
        if incident.source != IncidentSource.VISION or incident.status == IncidentStatus.RESOLVED:
            return
        if "frame" not in incident.evidence:
            return
        try:
            evidence = CameraEvidence.model_validate(incident.evidence)
        except ValidationError as error:
            reason = "camera incident evidence: " + describe_validation_error(error)
            await send_dead_letter(self.producer, self.dlq_topic, record, reason, CONSUMER)
            return
        await self.save(incident, evidence)

    async def save(self, incident: Incident, evidence: CameraEvidence) -> None:
        record = await self.frame(evidence.frame)
        if record is None:
            log.warning(
                "incident %s: frame %s@%s is no longer in Kafka; no snapshot",
                incident.id,
                evidence.frame.partition,
                evidence.frame.offset,
            )
            return
        await self.request_clip(incident, record)
        annotated = await asyncio.to_thread(annotate, record.value, evidence.boxes, incident.title)
        if annotated is None:
            log.warning("incident %s: its frame does not decode; no snapshot", incident.id)
            return
        path = self.directory / incident.source_key / f"{incident.id}-{evidence.frame.seq}.jpg"
        await asyncio.to_thread(write_atomically, path, annotated)
        kept, previous = await self.store.record_snapshot(
            Snapshot(
                incident_id=incident.id,
                path=str(path),
                camera_id=incident.source_key,
                frame_partition=evidence.frame.partition,
                frame_offset=evidence.frame.offset,
                seq=evidence.frame.seq,
                score=evidence.score,
            )
        )
        if kept and previous not in (None, str(path)):
            Path(previous).unlink(missing_ok=True)  # superseded by a better frame
        elif not kept and previous != str(path):
            path.unlink(missing_ok=True)  # an earlier frame scores higher
        if kept:
            self.saved += 1
            log.info("incident %s: snapshot %s", incident.id, path)

    async def request_clip(self, incident: Incident, record: Any) -> None:
        """The clip around the first frame read for this incident (later ones change nothing)."""
        anchor_time = clips.frame_time(record) or incident.event_time
        request = self.window.request(
            incident.id, incident.source_key, record.partition, record.timestamp, anchor_time
        )
        async with self.store.connection() as conn:
            await clips.request_clip(conn, request)

    async def build_clips(self, stop: asyncio.Event) -> None:
        """Build each clip once its window has passed; expire old evidence now and then."""
        expired_at = 0.0
        while not stop.is_set():
            if time.monotonic() - expired_at >= RETENTION_EVERY_S:
                failure = await retried(self.expire, "evidence retention")
                if failure is not None:
                    log.error("evidence retention failed", exc_info=failure)
                expired_at = time.monotonic()
            request = await self.claim_clip()
            if request is None:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), CLIP_POLL_S)
                continue
            failure = await retried(partial(self.build_clip, request), "clip")
            if failure is not None:
                log.error("incident %s: no clip", request.incident_id, exc_info=failure)
                reason = f"{type(failure).__name__}: {failure}"
                async with self.store.connection() as conn:
                    await clips.finish_clip(conn, request.incident_id, [], None, reason)

    async def claim_clip(self) -> clips.ClipRequest | None:
        """The next clip due, or None (also while the database is away: the loop waits)."""
        try:
            async with self.store.connection() as conn:
                return await clips.claim_due_clip(conn)
        except Exception as error:
            if not is_outage(error):
                raise
            log.warning("no clips while the database is away: %s", error)
            return None

    async def build_clip(self, request: clips.ClipRequest) -> None:
        topic = self.settings.kafka.topic(topics.CAMERA_FRAMES)
        frames = await clips.read_window(self.clip_frames, topic, request)
        path = self.directory / request.camera_id / f"{request.incident_id}.mp4"
        written = await asyncio.to_thread(clips.encode_mp4, frames, path) if frames else 0
        async with self.store.connection() as conn:
            await clips.finish_clip(conn, request.incident_id, frames, path if written else None)
        if written:
            log.info("incident %s: clip %s (%d frames)", request.incident_id, path, written)
        else:
            log.warning("incident %s: no frames of its window left on Kafka", request.incident_id)

    async def expire(self) -> None:
        async with self.store.connection() as conn:
            paths = await clips.expire_evidence(conn, self.retention)
        for path in paths:
            path.unlink(missing_ok=True)
        if paths:
            log.info("evidence retention: %d files deleted", len(paths))

    async def frame(self, ref: FrameRef) -> Any | None:
        """The frame's record from its topic, or None once retention has removed it."""
        partition = TopicPartition(self.settings.kafka.topic(topics.CAMERA_FRAMES), ref.partition)
        self.frames.assign([partition])
        self.frames.seek(partition, ref.offset)
        batches = await self.frames.getmany(
            partition, timeout_ms=FRAME_FETCH_TIMEOUT_MS, max_records=1
        )
        for record in batches.get(partition, []):
            if record.offset == ref.offset:
                return record
        return None


def frames_reader(settings: Settings, client_id: str) -> Any:
    """A consumer that reads frames where it is told (no group, nothing committed)."""
    return aio_consumer(
        settings.kafka,
        client_id=client_id,
        enable_auto_commit=False,
        max_partition_fetch_bytes=MAX_MESSAGE_BYTES + 64 * 1024,
    )
