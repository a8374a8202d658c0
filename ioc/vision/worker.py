"""The inference worker: frames from `ioc.camera.frames`, detections to `ioc.vision.detections`.

Real-time semantics: a fetch loop reads frames as fast as Kafka gives them into `LatestFrames`,
which holds at most one frame per camera; a newer frame replaces the one still waiting, and the
replaced frames are counted (`FrameDetections.dropped`), never silently lost. The inference loop
takes micro-batches across cameras (flushed at `batch_size` or `batch_wait_ms` after the first
frame arrived), so under overload the model always works on the present and no backlog of stale
frames builds up, in memory or in Kafka.

At least once: a partition's offset is committed only below the oldest frame still waiting or in
the model, after the detections of the frames before it are acknowledged.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass

from aiokafka import ConsumerRebalanceListener, ConsumerRecord, TopicPartition
from aiokafka.errors import KafkaError
from pydantic import ValidationError

from ioc import metrics
from ioc.config import Settings
from ioc.kafka import topics
from ioc.kafka.clients import consumer, producer
from ioc.kafka.dlq import describe_validation_error, send_dead_letter
from ioc.models import FrameDetections, FrameHeaders
from ioc.vision.detector import Detector, FrameResult
from ioc.vision.evidence import EvidenceWriter
from ioc.vision.tracking import CameraTracks

log = logging.getLogger(__name__)
CONSUMER = "ioc.vision"
FLOW = "vision"  # its name in the metrics
REPORT_EVERY_S = 30.0


@dataclass(frozen=True)
class PendingFrame:
    """A frame waiting for the model, and the offsets of the older frames of its camera that it
    replaced: they count as done only once this one is, so a crash before then reads them again
    instead of losing them uncounted."""

    partition: TopicPartition
    record: ConsumerRecord
    headers: FrameHeaders
    replaced: tuple[tuple[TopicPartition, int], ...] = ()

    @property
    def dropped(self) -> int:
        return len(self.replaced)

    def offsets(self) -> tuple[tuple[TopicPartition, int], ...]:
        """This frame's offset and those of the frames it replaced."""
        return ((self.partition, self.record.offset), *self.replaced)


class LatestFrames:
    """Frames waiting for the model, at most one per camera, oldest waiting camera first."""

    def __init__(self) -> None:
        self._waiting: dict[str, PendingFrame] = {}
        self._arrived = asyncio.Event()
        self.dropped = 0

    def __len__(self) -> int:
        return len(self._waiting)

    def put(self, frame: PendingFrame) -> None:
        """Queue `frame`, in place of the older frame of its camera still waiting, if any.

        A camera keeps its place in line when its frame is replaced, so a busy camera cannot
        starve a quiet one.
        """
        camera_id = frame.headers.camera_id
        older = self._waiting.get(camera_id)
        if older is not None:
            replaced = (*older.replaced, (older.partition, older.record.offset), *frame.replaced)
            frame = PendingFrame(frame.partition, frame.record, frame.headers, replaced)
            self.dropped += 1
        self._waiting[camera_id] = frame
        self._arrived.set()

    async def batch(self, size: int, wait_s: float) -> list[PendingFrame]:
        """Up to `size` frames: as soon as `size` are waiting, else `wait_s` after the first."""
        while not self._waiting:
            self._arrived.clear()
            await self._arrived.wait()
        deadline = time.monotonic() + wait_s
        while len(self._waiting) < size and (left := deadline - time.monotonic()) > 0:
            self._arrived.clear()
            try:
                await asyncio.wait_for(self._arrived.wait(), left)
            except TimeoutError:
                break
        cameras = list(self._waiting)[:size]
        return [self._waiting.pop(camera_id) for camera_id in cameras]

    def discard(self, partitions: set[TopicPartition]) -> set[str]:
        """Forget frames of partitions no longer ours; returns their cameras."""
        gone = {c for c, frame in self._waiting.items() if frame.partition in partitions}
        for camera_id in gone:
            del self._waiting[camera_id]
        return gone


class Offsets:
    """Per partition: the next offset to commit is the oldest frame not yet done."""

    def __init__(self) -> None:
        self._open: dict[TopicPartition, set[int]] = defaultdict(set)
        self._next: dict[TopicPartition, int] = {}
        self._committed: dict[TopicPartition, int] = {}

    def seen(self, partition: TopicPartition, offset: int) -> None:
        self._open[partition].add(offset)
        self._next[partition] = max(self._next.get(partition, 0), offset + 1)

    def done(self, *offsets: tuple[TopicPartition, int]) -> None:
        for partition, offset in offsets:
            self._open[partition].discard(offset)

    def to_commit(self, assigned: Iterable[TopicPartition]) -> dict[TopicPartition, int]:
        """Offsets that moved since the last commit, for partitions still assigned."""
        ready = {}
        for partition in assigned:
            if partition not in self._next:
                continue
            open_offsets = self._open[partition]
            offset = min(open_offsets) if open_offsets else self._next[partition]
            if self._committed.get(partition) != offset:
                ready[partition] = offset
        return ready

    def committed(self, offsets: dict[TopicPartition, int]) -> None:
        self._committed.update(offsets)

    def forget(self, partitions: set[TopicPartition]) -> None:
        for partition in partitions:
            self._open.pop(partition, None)
            self._next.pop(partition, None)
            self._committed.pop(partition, None)


class _Rebalance(ConsumerRebalanceListener):
    def __init__(self, worker: VisionWorker) -> None:
        self.worker = worker

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        await self.worker.release(set(revoked))

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        log.info("vision worker owns %d frame partition(s)", len(assigned))


class VisionWorker:
    def __init__(self, settings: Settings, detector: Detector) -> None:
        self.settings = settings
        self.detector = detector
        self.consumer = consumer(settings.kafka, settings.vision.group_id)
        self.producer = producer(settings.kafka, settings.vision.group_id)
        self.tracks = CameraTracks() if settings.vision.tracker != "none" else None
        self.waiting = LatestFrames()
        self.offsets = Offsets()
        self.evidence = EvidenceWriter(settings)
        self.frames_done = 0
        self._commit_lock = asyncio.Lock()

    async def _reject(self, frame: PendingFrame | ConsumerRecord, reason: str) -> None:
        record = frame.record if isinstance(frame, PendingFrame) else frame
        await send_dead_letter(
            self.producer, self.settings.kafka.topic(topics.DLQ), record, reason, CONSUMER
        )
        metrics.dead_lettered(FLOW)

    async def fetch(self, stop: asyncio.Event) -> None:
        """Read frames as they come; only the newest of each camera waits for the model."""
        while not stop.is_set():
            batches = await self.consumer.getmany(timeout_ms=200, max_records=1000)
            for partition, records in batches.items():
                for record in records:
                    self.offsets.seen(partition, record.offset)
                    try:
                        headers = FrameHeaders.from_kafka(record.headers)
                    except (ValidationError, UnicodeDecodeError) as error:
                        reason = (
                            describe_validation_error(error)
                            if isinstance(error, ValidationError)
                            else "headers are not UTF-8"
                        )
                        await self._reject(record, "bad frame headers: " + reason)
                        self.offsets.done((partition, record.offset))
                        continue
                    self.waiting.put(PendingFrame(partition, record, headers))

    async def infer(self, stop: asyncio.Event) -> None:
        vision = self.settings.vision
        while not stop.is_set():
            frames = await self.waiting.batch(vision.batch_size, vision.batch_wait_ms / 1000)
            await self.process(frames)
            await self.commit()

    async def process(self, frames: list[PendingFrame]) -> None:
        started = time.perf_counter()
        try:
            results = await asyncio.to_thread(
                self.detector.detect_jpegs, [frame.record.value or b"" for frame in frames]
            )
        except Exception as error:  # a frame the model chokes on must not stop the cameras
            log.exception("inference failed on a batch of %d frames", len(frames))
            for frame in frames:
                await self._reject(frame, f"inference failed: {type(error).__name__}: {error}")
                self.offsets.done(*frame.offsets())
            return
        per_frame_ms = (time.perf_counter() - started) * 1000 / len(frames)
        detections = self.settings.kafka.topic(topics.DETECTIONS.name)
        sends = []
        for frame, result in zip(frames, results, strict=True):
            if result is None:
                await self._reject(frame, "frame value is not a decodable image")
                continue
            key, value = topics.DETECTIONS.encode(self._output(frame, result, per_frame_ms))
            sends.append(await self.producer.send(detections, key=key, value=value))
        await asyncio.gather(*sends)
        for frame in frames:
            self.offsets.done(*frame.offsets())
        self.frames_done += len(sends)
        metrics.batch_done(FLOW, len(frames), started)

    def _output(
        self, frame: PendingFrame, result: FrameResult, per_frame_ms: float
    ) -> FrameDetections:
        detections = result.detections
        if self.tracks is not None:
            detections = self.tracks.assign(
                frame.headers.camera_id, detections, (result.height, result.width)
            )
        return FrameDetections(
            camera_id=frame.headers.camera_id,
            event_time=frame.headers.event_time,
            seq=frame.headers.seq,
            frame_partition=frame.record.partition,
            frame_offset=frame.record.offset,
            ingested_at_ms=frame.record.timestamp,
            model=self.detector.name,
            inference_ms=round(per_frame_ms, 2),
            width=result.width,
            height=result.height,
            detections=detections,
            stats=result.stats,
            dropped=frame.dropped,
        )

    async def commit(self) -> None:
        async with self._commit_lock:
            ready = self.offsets.to_commit(self.consumer.assignment())
            if not ready:
                return
            try:
                await self.consumer.commit(ready)
            except KafkaError as error:  # a rebalance: the frames are read again, at least once
                log.warning("offset commit failed (%s); frames will be re-read", error)
                return
            self.offsets.committed(ready)

    async def release(self, revoked: set[TopicPartition]) -> None:
        """Partitions move to another worker: commit what is done, forget the rest."""
        await self.commit()
        cameras = self.waiting.discard(revoked)
        self.offsets.forget(revoked)
        if self.tracks is not None:
            self.tracks.forget(cameras)

    async def report(self, stop: asyncio.Event) -> None:
        done, started = self.frames_done, time.monotonic()
        while not stop.is_set():
            await asyncio.sleep(REPORT_EVERY_S)
            rate = (self.frames_done - done) / (time.monotonic() - started)
            done, started = self.frames_done, time.monotonic()
            log.info(
                "vision: %d frames (%.1f/s), %d dropped as stale, %d waiting",
                self.frames_done,
                rate,
                self.waiting.dropped,
                len(self.waiting),
            )

    async def run(self, stop: asyncio.Event) -> None:
        await self.producer.start()
        self.consumer.subscribe(
            [self.settings.kafka.topic(topics.CAMERA_FRAMES)], listener=_Rebalance(self)
        )
        await self.consumer.start()
        await self.evidence.start()
        log.info("vision worker ready: model %s on %s", self.detector.name, self.detector.device)
        tasks = [
            asyncio.create_task(loop(stop), name=loop.__qualname__)
            for loop in (self.fetch, self.infer, self.report, self.evidence.run)
        ]
        stopped = asyncio.create_task(stop.wait())
        try:
            done, _ = await asyncio.wait([stopped, *tasks], return_when=asyncio.FIRST_COMPLETED)
            for task in () if stopped in done else done:
                # a loop that ends on its own has failed: exit loudly (the supervisor restarts
                # the worker, the group rebalances) rather than run on half-dead
                log.error("vision worker: %s stopped; exiting", task.get_name())
                task.result()
                raise RuntimeError(f"{task.get_name()} ended unexpectedly")
        finally:
            stopped.cancel()
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await self.commit()
            await self.evidence.stop()
            await self.consumer.stop()
            await self.producer.stop()


def run_worker(settings: Settings) -> None:
    """Load the model first (so joining the group means ready), then consume until SIGTERM."""
    from ioc.runtime import run_until_signal

    vision = settings.vision
    detector = Detector(
        vision.model_path,
        device=vision.device,
        image_size=vision.image_size,
        min_score=vision.min_score,
        class_min_scores=vision.class_min_scores,
        half=vision.half,
    )
    if vision.metrics_port is not None:
        metrics.serve(vision.metrics_host, vision.metrics_port)
    run_until_signal(lambda: VisionWorker(settings, detector))
