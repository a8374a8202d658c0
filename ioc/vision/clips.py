"""A short video of each camera incident, assembled from the frames already on Kafka.

The frames topic is the camera's recording: the capture publishes every sampled frame there, so a
clip needs no second recorder. When the evidence writer first reads a camera incident it records
a *clip request* in `incident_clips` (before committing the candidate's offset, so a crash cannot
lose it). Once the window's last frame should be on Kafka (`clip_after_s` after the anchor frame,
plus the capture's slack), a builder claims the request, reads the camera's frames of the window
from the anchor frame's partition, and encodes them as H.264 in MP4 (`+faststart`), which every
browser and phone plays. Frames keep their camera timestamps as presentation times, so a camera
sampled unevenly plays at true speed.

A claim is a lease (`LEASE`): a builder that dies mid-clip leaves the request to be claimed again.
Evidence older than `evidence_retention_days` whose incident is no longer open is deleted, file
and row.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from datetime import datetime, timedelta
from fractions import Fraction
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from psycopg import AsyncConnection
from psycopg.rows import dict_row
from pydantic import ValidationError

from ioc.models.base import epoch_ms, from_epoch_ms
from ioc.models.events import FrameHeaders

log = logging.getLogger(__name__)

CAPTURE_SLACK = timedelta(seconds=5)  # camera clock to Kafka timestamp, at most
LEASE = timedelta(minutes=2)
MAX_FRAMES = 1_800  # 30 s at 60 fps: a bound on memory, not a setting
MAX_WIDTH = 1_280  # larger frames are scaled down: staff need the scene, not every pixel
FETCH_TIMEOUT_MS = 5_000
CLIP_CODEC = "libx264"


@dataclass(frozen=True)
class ClipRequest:
    """The clip one camera incident needs: its window in camera time, fixed when it is asked for
    (so any builder, whatever its settings, cuts the same clip), and where to look on Kafka."""

    incident_id: str
    camera_id: str
    frame_partition: int
    anchor_ms: int  # the anchor frame's Kafka timestamp: where the scan starts from
    starts_at: datetime
    ends_at: datetime
    due_at: datetime

    def covers(self, event_time: datetime) -> bool:
        return self.starts_at <= event_time <= self.ends_at


@dataclass(frozen=True)
class ClipFrame:
    event_ms: int
    jpeg: bytes


@dataclass(frozen=True)
class ClipWindow:
    """How much video around the anchor frame: `before` it and `after` it, camera time."""

    before: timedelta
    after: timedelta

    def request(
        self,
        incident_id: str,
        camera_id: str,
        partition: int,
        anchor_ms: int,
        anchor_time: datetime,
    ) -> ClipRequest:
        due = from_epoch_ms(anchor_ms) + self.after + CAPTURE_SLACK
        return ClipRequest(
            incident_id,
            camera_id,
            partition,
            anchor_ms,
            anchor_time - self.before,
            anchor_time + self.after,
            due,
        )


async def request_clip(conn: AsyncConnection, request: ClipRequest) -> None:
    """Ask for the incident's clip once; a later request for the same incident changes nothing."""
    await conn.execute(
        "INSERT INTO incident_clips (incident_id, camera_id, frame_partition, anchor_ms,"
        " starts_at, ends_at, due_at) VALUES (%s, %s, %s, %s, %s, %s, %s)"
        " ON CONFLICT DO NOTHING",
        (
            request.incident_id,
            request.camera_id,
            request.frame_partition,
            request.anchor_ms,
            request.starts_at,
            request.ends_at,
            request.due_at,
        ),
    )


async def claim_due_clip(conn: AsyncConnection) -> ClipRequest | None:
    """The oldest pending clip whose window has passed, leased to this builder for `LEASE`."""
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(
            "UPDATE incident_clips SET due_at = now() + %s WHERE incident_id = ("
            " SELECT incident_id FROM incident_clips WHERE status = 'pending' AND due_at <= now()"
            " ORDER BY due_at LIMIT 1 FOR UPDATE SKIP LOCKED)"
            " RETURNING incident_id, camera_id, frame_partition, anchor_ms, starts_at, ends_at,"
            " due_at",
            (LEASE,),
        )
        row = await cur.fetchone()
    return ClipRequest(**row) if row else None


async def finish_clip(
    conn: AsyncConnection,
    incident_id: str,
    frames: list[ClipFrame],
    path: Path | None,
    reason: str | None = None,
) -> None:
    """Record the built clip, or why there is none (`failed` with a reason, `empty`)."""
    status = "ready" if path else "failed" if reason else "empty"
    first = from_epoch_ms(frames[0].event_ms) if frames else None
    last = from_epoch_ms(frames[-1].event_ms) if frames else None
    await conn.execute(
        "UPDATE incident_clips SET status = %s, path = %s, frames = %s, first_frame_at = %s,"
        " last_frame_at = %s, reason = %s, saved_at = now() WHERE incident_id = %s",
        (status, str(path) if path else None, len(frames), first, last, reason, incident_id),
    )


async def expire_evidence(conn: AsyncConnection, retention: timedelta) -> list[Path]:
    """Delete the snapshot and clip rows kept longer than `retention` whose incident is no longer
    open; returns their files, for the caller to remove."""
    async with conn.transaction(), conn.cursor() as cur:
        await cur.execute(
            "DELETE FROM incident_snapshots AS s USING incidents AS i"
            " WHERE i.id = s.incident_id AND i.status <> 'open' AND s.saved_at < now() - %s"
            " RETURNING s.path",
            (retention,),
        )
        paths = [row[0] for row in await cur.fetchall()]
        await cur.execute(
            "DELETE FROM incident_clips AS c USING incidents AS i"
            " WHERE i.id = c.incident_id AND i.status <> 'open' AND c.status <> 'pending'"
            " AND c.requested_at < now() - %s RETURNING c.path",
            (retention,),
        )
        paths += [row[0] for row in await cur.fetchall() if row[0]]
    return [Path(path) for path in paths]


async def read_window(
    frames: AIOKafkaConsumer, topic: str, request: ClipRequest
) -> list[ClipFrame]:
    """The camera's frames of the request's window, in camera time, from the anchor frame's
    partition: scanned from the first frame Kafka stamped within the window's reach to the
    partition's end as it is now (a camera that stopped sending gives a shorter clip, not a
    wait)."""
    partition = TopicPartition(topic, request.frame_partition)
    frames.assign([partition])
    anchor = from_epoch_ms(request.anchor_ms)
    reach_from = epoch_ms(anchor - (request.ends_at - request.starts_at) - CAPTURE_SLACK)
    reach_to = epoch_ms(anchor + (request.ends_at - request.starts_at) + CAPTURE_SLACK)
    start = (await frames.offsets_for_times({partition: reach_from}))[partition]
    if start is None:
        return []
    end = (await frames.end_offsets([partition]))[partition]
    frames.seek(partition, start.offset)
    key = request.camera_id.encode()
    kept: dict[int, ClipFrame] = {}
    position = start.offset
    while position < end and len(kept) < MAX_FRAMES:
        batch = await frames.getmany(partition, timeout_ms=FETCH_TIMEOUT_MS, max_records=200)
        records = batch.get(partition, [])
        if not records:
            break
        for record in records:
            position = record.offset + 1
            if record.offset >= end or record.timestamp > reach_to:
                return sorted(kept.values(), key=lambda frame: frame.event_ms)
            if record.key != key:
                continue
            event_time = frame_time(record)
            if event_time is not None and request.covers(event_time):
                event_ms = int(event_time.timestamp() * 1000)
                kept.setdefault(event_ms, ClipFrame(event_ms, record.value))
    return sorted(kept.values(), key=lambda frame: frame.event_ms)


def frame_time(record: Any) -> datetime | None:
    """The camera's timestamp of a frame; None for a frame with bad headers (the inference worker
    dead-letters those)."""
    try:
        return FrameHeaders.from_kafka(record.headers).event_time
    except (ValidationError, UnicodeDecodeError):
        return None


def encode_mp4(frames: list[ClipFrame], path: Path) -> int:
    """The frames as H.264 in MP4 at `path` (written aside, then moved into place); returns how
    many decoded. Every frame is scaled to the first one's size (a camera may switch streams)."""
    import av
    import cv2
    import numpy as np

    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".part.mp4")
    size: tuple[int, int] | None = None
    written = 0
    container = av.open(str(partial), mode="w", format="mp4", options={"movflags": "+faststart"})
    try:
        stream: Any = None
        for frame in frames:
            image = cv2.imdecode(np.frombuffer(frame.jpeg, dtype=np.uint8), cv2.IMREAD_COLOR)
            if image is None:
                continue
            if size is None:
                size = clip_size(image.shape[1], image.shape[0])
                stream = container.add_stream(
                    CLIP_CODEC, rate=25, options={"preset": "veryfast", "crf": "26"}
                )
                stream.width, stream.height = size
                stream.pix_fmt = "yuv420p"
                stream.codec_context.time_base = Fraction(1, 1000)
                origin = frame.event_ms
            if (image.shape[1], image.shape[0]) != size:
                image = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
            video = av.VideoFrame.from_ndarray(image, format="bgr24")
            video.pts = frame.event_ms - origin
            video.time_base = Fraction(1, 1000)
            container.mux(stream.encode(video))
            written += 1
        if stream is not None:
            container.mux(stream.encode(None))
    finally:
        container.close()
    if written == 0:
        partial.unlink(missing_ok=True)
        return 0
    os.replace(partial, path)
    return written


def clip_size(width: int, height: int) -> tuple[int, int]:
    """At most `MAX_WIDTH` wide, both sides even (H.264's 4:2:0 needs them so)."""
    if width > MAX_WIDTH:
        height = round(height * MAX_WIDTH / width)
        width = MAX_WIDTH
    return width - width % 2, height - height % 2
