"""`ioc bench rtsp`: glass → Kafka for a real RTSP camera, against the naive OpenCV loop.

The camera is GStreamer's RTSP server (`rtsp_server.py`, run by the system Python): H.264 at 10
frames/s, each frame carrying the wall-clock millisecond it was made, drawn as blocks of pixels.
A frame's *age* is a later clock minus the one drawn in it, so the latency is read from the
pictures, not assumed.

- ioc: `CameraIngest`, the code of `ioc cameras run`, sampling `fps` frames/s (always the newest
  frame, the older ones dropped in the reader) and publishing them to Kafka (acks=all) on an
  ephemeral stack. Age: the frame's Kafka timestamp minus its drawn clock (glass → Kafka).
- Baseline, same server, same run: the loop most camera code starts as, `cv2.VideoCapture` then
  `read()` once per sample interval. Age: the time `read()` returned minus the drawn clock
  (glass → decoded frame; no Kafka). A stream faster than the sampling piles up in FFmpeg's
  buffers, so every sample is older than the one before.
"""

from __future__ import annotations

import asyncio
import statistics
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from aiokafka import TopicPartition
from rich.console import Console
from rich.table import Table

from ioc.config import Settings
from ioc.devtools.bench import rtsp_camera
from ioc.devtools.bench.common import cpu_name, ephemeral_settings, percentile
from ioc.devtools.stack import stack_down, stack_up
from ioc.devtools.stack.kafka import ensure_topics
from ioc.kafka import topics
from ioc.kafka.clients import MAX_MESSAGE_BYTES, aio_consumer
from ioc.models.registry import CameraRegistry, CameraSpec
from ioc.vision.capture import CameraIngest

CAMERA = "cam-bench-rtsp"
OPEN_TIMEOUT_S = 30.0


class RtspUnavailable(RuntimeError):
    """GStreamer's RTSP server cannot run here (the reason names the Debian package)."""


@dataclass(frozen=True)
class Ages:
    """Each sampled frame's age in milliseconds, in the order they were sampled."""

    ms: list[float]

    @property
    def p50(self) -> float:
        return statistics.median(self.ms)

    @property
    def p99(self) -> float:
        return percentile(self.ms, 99)

    @property
    def last(self) -> float:
        return self.ms[-1]


@dataclass(frozen=True)
class RtspResult:
    codec: str
    fps: float
    frames: int
    ioc: Ages
    naive: Ages

    @property
    def ratio(self) -> float:
        """The naive loop's median age over ioc's: how many times fresher ioc's frames are."""
        return self.naive.p50 / self.ioc.p50


def run_bench(frames: int, fps: float, codec: str, console: Console) -> RtspResult:
    missing = rtsp_camera.missing()
    if missing is not None:
        raise RtspUnavailable(missing)
    with (
        rtsp_camera.RtspCamera(codec) as server,
        tempfile.TemporaryDirectory(prefix="ioc-bench-rtsp-") as root,
        ephemeral_settings(Path(root)) as settings,
    ):
        with console.status("starting an ephemeral stack…"):
            stack_up(settings)
        try:
            ensure_topics(settings.kafka)
            with console.status(f"naive loop: {frames} frames at {fps:g}/s…"):
                naive = naive_ages(server.url(), frames, fps)
            with console.status(f"ioc cameras: {frames} frames at {fps:g}/s…"):
                ioc = asyncio.run(ioc_ages(settings, server.url(), frames, fps))
        finally:
            stack_down(settings)
    result = RtspResult(codec, fps, frames, ioc, naive)
    render(result, console)
    return result


def naive_ages(url: str, frames: int, fps: float) -> Ages:
    """`VideoCapture.read()` once per sample interval; each frame's age when read returns."""
    capture = cv2.VideoCapture(url, cv2.CAP_FFMPEG)
    try:
        if not capture.isOpened():
            raise RtspUnavailable(f"OpenCV could not open {url}")
        ages: list[float] = []
        started = time.monotonic()
        for index in range(frames):
            delay = index / fps - (time.monotonic() - started)
            if delay > 0:
                time.sleep(delay)
            ok, image = capture.read()
            read_ms = time.time() * 1000
            if not ok:
                raise RtspUnavailable("the naive loop lost the stream")
            ages.append(read_ms - rtsp_camera.clock_of(image))
        return Ages(ages)
    finally:
        capture.release()


async def ioc_ages(settings: Settings, url: str, frames: int, fps: float) -> Ages:
    """`ioc cameras run` on the camera until `frames` are on Kafka; their Kafka timestamps minus
    their drawn clocks."""
    camera = CameraSpec(
        id=CAMERA, name="Bench", url=url, district="Bench", lat=21.59, lon=105.85, fps=fps
    )
    ingest = CameraIngest(settings, CameraRegistry(cameras=[camera]), [camera], max_frames=frames)
    await ingest.run(asyncio.Event())
    consumer = aio_consumer(
        settings.kafka,
        client_id="ioc-bench-rtsp",
        enable_auto_commit=False,
        max_partition_fetch_bytes=MAX_MESSAGE_BYTES + 64 * 1024,
    )
    await consumer.start()
    try:
        topic = settings.kafka.topic(topics.CAMERA_FRAMES)
        partitions = [TopicPartition(topic, p) for p in range(settings.kafka.partitions)]
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        ends = await consumer.end_offsets(partitions)
        ages: dict[int, float] = {}
        while len(ages) < sum(ends.values()):
            batches = await consumer.getmany(timeout_ms=5000)
            if not batches:
                break
            for records in batches.values():
                for record in records:
                    image = cv2.imdecode(np.frombuffer(record.value, np.uint8), cv2.IMREAD_COLOR)
                    seq = int(dict(record.headers)["seq"])
                    ages[seq] = record.timestamp - rtsp_camera.clock_of(image)
    finally:
        await consumer.stop()
    if len(ages) < frames:
        raise RtspUnavailable(f"only {len(ages)} of {frames} frames reached Kafka")
    return Ages([ages[seq] for seq in sorted(ages)])


def render(result: RtspResult, console: Console) -> None:
    table = Table(
        "path",
        "frames",
        "p50 ms",
        "p99 ms",
        "last ms",
        title=f"Glass → frame, RTSP {result.codec} 10 fps sampled at {result.fps:g}/s "
        f"({cpu_name()})",
    )
    table.add_row(
        "ioc cameras → Kafka",
        str(len(result.ioc.ms)),
        f"{result.ioc.p50:.0f}",
        f"{result.ioc.p99:.0f}",
        f"{result.ioc.last:.0f}",
    )
    table.add_row(
        "naive cv2 loop → decoded frame",
        str(len(result.naive.ms)),
        f"{result.naive.p50:.0f}",
        f"{result.naive.p99:.0f}",
        f"{result.naive.last:.0f}",
    )
    console.print(table)
    console.print(
        f"median age: ioc {result.ioc.p50:.0f} ms vs naive {result.naive.p50:.0f} ms "
        f"({result.ratio:.1f}× fresher), same server, same run"
    )
