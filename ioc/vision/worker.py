"""The inference worker: frames from `ioc.camera.frames`, detections to `ioc.vision.detections`.

Frames are pulled in batches (up to `batch_size`, waiting at most `batch_wait_ms`) and run through
the model in one call; offsets are committed only after the detections are acknowledged.
"""

from __future__ import annotations

import asyncio
import logging
import time

from aiokafka import ConsumerRecord
from pydantic import ValidationError

from ioc import topics
from ioc.config import Settings
from ioc.dlq import describe_validation_error, send_dead_letter
from ioc.kafka_clients import consumer, producer
from ioc.models import FrameDetections, FrameHeaders
from ioc.vision.detector import Detector, decode_jpeg

log = logging.getLogger(__name__)


class VisionWorker:
    def __init__(self, settings: Settings, detector: Detector) -> None:
        self.settings = settings
        self.detector = detector
        self.consumer = consumer(settings.kafka, settings.vision.group_id, topics.CAMERA_FRAMES)
        self.producer = producer(settings.kafka, settings.vision.group_id)
        self.frames_done = 0

    async def _reject(self, record: ConsumerRecord, reason: str) -> None:
        await send_dead_letter(self.producer, record, reason, "ioc.vision")

    async def process_batch(self, records: list[ConsumerRecord]) -> None:
        frames = []
        for record in records:
            try:
                headers = FrameHeaders.from_kafka(record.headers)
            except ValidationError as error:
                await self._reject(record, "bad frame headers: " + describe_validation_error(error))
                continue
            image = decode_jpeg(record.value or b"")
            if image is None:
                await self._reject(record, "frame value is not a decodable image")
                continue
            frames.append((record, headers, image))
        if not frames:
            return
        started = time.perf_counter()
        try:
            results = await asyncio.to_thread(
                self.detector.detect, [image for _, _, image in frames]
            )
        except Exception as error:  # a frame the model chokes on must not stop the cameras
            log.exception("inference failed on a batch of %d frames", len(frames))
            for record, _, _ in frames:
                await self._reject(record, f"inference failed: {type(error).__name__}: {error}")
            return
        per_frame_ms = (time.perf_counter() - started) * 1000 / len(frames)
        sends = []
        for (record, headers, image), detections in zip(frames, results, strict=True):
            output = FrameDetections(
                camera_id=headers.camera_id,
                event_time=headers.event_time,
                seq=headers.seq,
                frame_partition=record.partition,
                frame_offset=record.offset,
                ingested_at_ms=record.timestamp,
                model=self.detector.name,
                inference_ms=round(per_frame_ms, 2),
                width=image.shape[1],
                height=image.shape[0],
                detections=detections,
            )
            sends.append(
                await self.producer.send(
                    topics.VISION_DETECTIONS,
                    key=headers.camera_id.encode(),
                    value=output.to_bytes(),
                )
            )
        await asyncio.gather(*sends)
        self.frames_done += len(frames)

    async def run(self, stop: asyncio.Event) -> None:
        await self.producer.start()
        await self.consumer.start()
        log.info("vision worker ready: model %s on %s", self.detector.name, self.detector.device)
        try:
            while not stop.is_set():
                batches = await self.consumer.getmany(
                    timeout_ms=self.settings.vision.batch_wait_ms or 1,
                    max_records=self.settings.vision.batch_size,
                )
                records = [record for part in batches.values() for record in part]
                if not records:
                    continue
                await self.process_batch(records)
                await self.consumer.commit()
        finally:
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
    )
    run_until_signal(lambda: VisionWorker(settings, detector))
