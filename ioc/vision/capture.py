"""Camera ingest: each camera of the registry read in its own thread (OpenCV reads block),
sampled at its fps, JPEG-encoded and handed to one aiokafka producer that publishes to
`ioc.camera.frames`, keyed by camera id, with `FrameHeaders` (capture time, per-camera sequence)."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial

import cv2
import numpy as np
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError
from rich.table import Column, Table

from ioc.config import CameraSettings, Settings
from ioc.kafka import topics
from ioc.kafka.clients import MAX_MESSAGE_BYTES, producer
from ioc.models import FrameHeaders
from ioc.models.registry import CameraRegistry, CameraSpec
from ioc.vision.sources import FrameSource, SourceError, open_source

log = logging.getLogger(__name__)

CLIENT_ID = "ioc-cameras"
# Room for key, headers and batch overhead under the topic's max.message.bytes.
FRAME_MAX_BYTES = MAX_MESSAGE_BYTES - 64 * 1024
QUALITY_STEP = 15
MIN_QUALITY = 25
QUEUE_FRAMES = 64


class Sampler:
    """Picks the frame nearest each tick of 1/fps on a source's timeline: a 10 fps file sampled at
    2 fps gives every 5th frame; a live stream gives its latest frame every 1/fps s."""

    def __init__(self, fps: float, frame_interval_s: float | None) -> None:
        self.period_s = 1 / fps
        self.slack_s = (frame_interval_s or 0.0) / 2
        self.next_s: float | None = None

    def take(self, position_s: float) -> bool:
        reached = position_s + self.slack_s
        if self.next_s is None:
            self.next_s = position_s
        if reached < self.next_s:
            return False
        self.next_s += ((reached - self.next_s) // self.period_s + 1) * self.period_s
        return True


class Backoff:
    """Waits between reconnects: the initial wait, doubling up to the maximum; reset by a frame."""

    def __init__(self, initial_s: float, max_s: float) -> None:
        self.initial_s = initial_s
        self.max_s = max_s
        self._next_s = initial_s

    def next_wait(self) -> float:
        wait_s = self._next_s
        self._next_s = min(wait_s * 2, self.max_s)
        return wait_s

    def reset(self) -> None:
        self._next_s = self.initial_s


class FrameTooLarge(Exception):
    """Even the lowest JPEG quality does not fit in one Kafka message."""


@dataclass(frozen=True)
class EncodedFrame:
    jpeg: bytes
    width: int
    height: int
    resized: bool
    quality: int


def encode_frame(
    image: np.ndarray, max_width: int, quality: int, max_bytes: int = FRAME_MAX_BYTES
) -> EncodedFrame:
    """JPEG no wider than `max_width` (aspect kept) and no larger than `max_bytes`, lowering the
    quality stepwise rather than dropping the frame."""
    height, width = image.shape[:2]
    resized = width > max_width
    if resized:
        height, width = max(1, round(height * max_width / width)), max_width
        image = cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA)
    size = 0
    for step in [quality, *range(quality - QUALITY_STEP, MIN_QUALITY - 1, -QUALITY_STEP)]:
        _, buffer = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, step])
        size = len(buffer)
        if size <= max_bytes:
            return EncodedFrame(buffer.tobytes(), width, height, resized, step)
    raise FrameTooLarge(f"{width}x{height} is {size} bytes at the lowest quality (max {max_bytes})")


@dataclass(frozen=True)
class CapturedFrame:
    headers: FrameHeaders
    jpeg: bytes


@dataclass
class CameraStats:
    """One camera's run so far; written by its reader and the publisher, read by the status."""

    camera_id: str
    state: str = "starting"
    captured: int = 0
    published: int = 0
    resized: int = 0
    reconnects: int = 0
    too_large: int = 0
    failed: int = 0
    last_error: str = ""

    @property
    def lost(self) -> int:
        return self.too_large + self.failed


class CameraReader:
    """One camera: open its source, sample and pace it, encode and hand frames over; after a failure
    back off and open it again. Runs in a thread of its own until `stop`, `max_frames` or the end
    of a file that does not loop."""

    def __init__(
        self,
        camera: CameraSpec,
        url: str,
        settings: CameraSettings,
        emit: Callable[[CapturedFrame], None],
        *,
        max_frames: int | None = None,
        max_bytes: int = FRAME_MAX_BYTES,
    ) -> None:
        self.camera = camera
        self.url = url
        self.settings = settings
        self.stats = CameraStats(camera.id)
        self._emit = emit
        self._max_frames = max_frames
        self._max_bytes = max_bytes
        self._backoff = Backoff(settings.reconnect_initial_s, settings.reconnect_max_s)

    def _done(self) -> bool:
        return self._max_frames is not None and self.stats.captured >= self._max_frames

    def run(self, stop: threading.Event) -> None:
        while not stop.is_set() and not self._done():
            try:
                source = open_source(
                    self.url,
                    1 / self.camera.fps,
                    self.settings.loop_files,
                    self.camera.rtsp_transport,
                )
            except SourceError as error:
                self._wait_to_reconnect(str(error), stop)
                continue
            self.stats.state = "streaming"
            try:
                self._stream(source, stop)
            finally:
                source.close()
            if stop.is_set() or self._done():
                break
            if not source.live:
                log.info("%s: end of %s", self.camera.id, self.url)
                break
            self._wait_to_reconnect("stream lost", stop)
        self.stats.state = "done" if self._done() else "stopped" if stop.is_set() else "ended"

    def _wait_to_reconnect(self, reason: str, stop: threading.Event) -> None:
        wait_s = self._backoff.next_wait()
        self.stats.reconnects += 1
        self.stats.last_error = reason
        self.stats.state = f"retry in {wait_s:g} s"
        log.warning("%s: %s; reconnecting in %g s", self.camera.id, reason, wait_s)
        stop.wait(wait_s)

    def _stream(self, source: FrameSource, stop: threading.Event) -> None:
        sampler = Sampler(self.camera.fps, source.frame_interval_s)
        clock: tuple[float, float] | None = None  # (monotonic, position) of the first sample
        while not stop.is_set():
            frame = source.read()
            if frame is None:
                return
            if not sampler.take(frame.position_s):
                continue
            if not source.live:  # a file plays in real time, like the camera it stands for
                clock = clock or (time.monotonic(), frame.position_s)
                if stop.wait(clock[0] + frame.position_s - clock[1] - time.monotonic()):
                    return
            self._backoff.reset()
            self._hand_over(frame.image, datetime.now(UTC))
            if self._done():
                return

    def _hand_over(self, image: np.ndarray, captured_at: datetime) -> None:
        try:
            encoded = encode_frame(
                image, self.settings.max_width, self.settings.jpeg_quality, self._max_bytes
            )
        except FrameTooLarge as error:
            self.stats.too_large += 1
            log.error("%s: frame not published: %s", self.camera.id, error)
            return
        if encoded.resized and not self.stats.resized:
            log.info(
                "%s: frames resized to %dx%d (cameras.max_width)",
                self.camera.id,
                encoded.width,
                encoded.height,
            )
        self.stats.resized += encoded.resized
        headers = FrameHeaders(
            camera_id=self.camera.id, event_time=captured_at, seq=self.stats.captured
        )
        self.stats.captured += 1
        self._emit(CapturedFrame(headers, encoded.jpeg))


class CameraIngest:
    """The cameras of one run: a reader thread each and one producer (acks=all). Ends on `stop`,
    after `duration_s`, or once every reader is done; frames handed over are still published."""

    def __init__(
        self,
        settings: Settings,
        registry: CameraRegistry,
        cameras: Sequence[CameraSpec],
        *,
        max_frames: int | None = None,
        duration_s: float | None = None,
    ) -> None:
        self.settings = settings
        self.duration_s = duration_s
        self.readers = [
            CameraReader(
                camera,
                registry.source_of(camera),
                settings.cameras,
                self._enqueue,
                max_frames=max_frames,
            )
            for camera in cameras
        ]
        self.stats = {reader.camera.id: reader.stats for reader in self.readers}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._queue: asyncio.Queue[CapturedFrame | None] = asyncio.Queue(QUEUE_FRAMES)

    def _enqueue(self, frame: CapturedFrame) -> None:
        """From a reader thread: waits while the queue is full (backpressure from Kafka)."""
        assert self._loop is not None
        asyncio.run_coroutine_threadsafe(self._queue.put(frame), self._loop).result()

    async def run(self, stop: asyncio.Event) -> None:
        self._loop = asyncio.get_running_loop()
        client = producer(self.settings.kafka, CLIENT_ID)
        await client.start()
        halt = threading.Event()
        try:
            publishing = asyncio.create_task(self._publish(client))
            finished = [self._start(reader, halt) for reader in self.readers]
            readers_done = asyncio.gather(*finished)
            stopped = asyncio.create_task(stop.wait())
            await asyncio.wait(
                {readers_done, stopped},
                timeout=self.duration_s,
                return_when=asyncio.FIRST_COMPLETED,
            )
            stopped.cancel()
            halt.set()
            await readers_done
            await self._queue.put(None)
            await publishing
        finally:
            halt.set()
            await client.stop()

    def _start(self, reader: CameraReader, halt: threading.Event) -> asyncio.Future[None]:
        assert self._loop is not None
        loop, finished = self._loop, self._loop.create_future()

        def read() -> None:
            try:
                reader.run(halt)
            finally:
                loop.call_soon_threadsafe(finished.set_result, None)

        threading.Thread(target=read, name=f"camera-{reader.camera.id}", daemon=True).start()
        return finished

    async def _publish(self, client: AIOKafkaProducer) -> None:
        pending: set[asyncio.Future[object]] = set()
        while (frame := await self._queue.get()) is not None:
            stats = self.stats[frame.headers.camera_id]
            try:
                delivery = await client.send(
                    self.settings.kafka.topic(topics.CAMERA_FRAMES),
                    key=frame.headers.camera_id.encode(),
                    value=frame.jpeg,
                    headers=frame.headers.to_kafka(),
                )
            except KafkaError as error:
                self._failed(stats, frame, error)
                continue
            pending.add(delivery)
            delivery.add_done_callback(partial(self._delivered, stats, frame, pending))
        await asyncio.gather(*pending, return_exceptions=True)

    def _delivered(
        self,
        stats: CameraStats,
        frame: CapturedFrame,
        pending: set[asyncio.Future[object]],
        delivery: asyncio.Future[object],
    ) -> None:
        pending.discard(delivery)
        if delivery.cancelled():
            self._failed(stats, frame, asyncio.CancelledError())
        elif (error := delivery.exception()) is not None:
            self._failed(stats, frame, error)
        else:
            stats.published += 1

    @staticmethod
    def _failed(stats: CameraStats, frame: CapturedFrame, error: BaseException) -> None:
        stats.failed += 1
        stats.last_error = f"not published: {type(error).__name__}"
        log.error(
            "%s: frame %d not published: %s: %s",
            stats.camera_id,
            frame.headers.seq,
            type(error).__name__,
            error,
        )


def stats_table(stats: Iterable[CameraStats]) -> Table:
    """Per camera: state, frames published, resized, reconnects, frames lost, the last problem."""
    table = Table(
        Column("camera", no_wrap=True),
        Column("state", no_wrap=True),
        "frames",
        "resized",
        "reconnects",
        "lost",
        "last problem",
    )
    for camera in stats:
        table.add_row(
            camera.camera_id,
            camera.state,
            str(camera.published),
            str(camera.resized),
            str(camera.reconnects),
            f"[red]{camera.lost}[/]" if camera.lost else "0",
            camera.last_error,
        )
    return table
