"""A recording of the demo's mix over any length of time, without waiting that long.

The same cameras, sensors, 1022 tickets, bad inputs and rates as `ioc demo` (a frame per camera
every `frame_interval_s`, a reading per sensor every `sensor_interval_s`, the sample tickets again
and again at the demo's pace, the streams app's clock ticks every `sensor_tick_s` on each
partition), written as the live topics would hold them. Frames are recorded as what the vision
worker made of them: the real detector runs once per distinct sample frame, and each frame's
detections are what it found. `ioc bench replay` and the replay tests use it.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from ioc.config import Settings
from ioc.devtools.replay.recording import Manifest, RecordedMessage, RecordingWriter
from ioc.devtools.scenario.plan import (
    bad_messages,
    live_ticket,
    sample_cameras,
    second_report,
    sensor_event,
    sensor_value,
)
from ioc.kafka import topics
from ioc.models import FrameDetections, load_sensor_registry
from ioc.models.base import epoch_ms
from ioc.streams.keyed import TICK_HEADER, partition_of
from ioc.vision.detector import FrameResult

DEMO_TICKET_CYCLE_S = 120.0  # the demo sends every sample ticket once in its 120 s
Detect = Callable[[list[bytes]], list[FrameResult | None]]


@dataclass(frozen=True)
class Planned:
    at_ms: int
    topic: str
    key: bytes | None
    value: bytes
    headers: tuple[tuple[str, bytes], ...] = ()
    partition: int | None = None  # clock ticks: one per partition; else by key


def _frames(
    samples_dir: Path, start: datetime, duration_s: float, interval_s: float, detect: Detect
) -> Iterator[Planned]:
    cameras = sample_cameras(samples_dir)
    files = sorted({frame for camera in cameras for frame in camera.frames})
    found = dict(zip(files, detect([path.read_bytes() for path in files]), strict=True))
    for index, camera in enumerate(cameras):
        for seq in range(int(duration_s / interval_s)):
            at = start + timedelta(seconds=seq * interval_s + index * interval_s / 3)
            result = found[camera.frames[seq % len(camera.frames)]]
            if result is None:
                continue
            detections = FrameDetections(
                camera_id=camera.camera_id,
                event_time=at,
                seq=seq,
                frame_partition=0,
                frame_offset=seq,
                ingested_at_ms=epoch_ms(at),
                model="ioc-yolo11n.pt",
                inference_ms=0.0,
                width=result.width,
                height=result.height,
                detections=result.detections,
                stats=result.stats,
            )
            yield Planned(
                epoch_ms(at),
                topics.VISION_DETECTIONS,
                camera.camera_id.encode(),
                detections.to_bytes(),
            )


def _tickets(samples_dir: Path, start: datetime, duration_s: float) -> Iterator[Planned]:
    samples = [
        json.loads(line) for line in (samples_dir / "tickets_1022.jsonl").read_text().splitlines()
    ]
    every_s = DEMO_TICKET_CYCLE_S / len(samples)
    for index in range(int(duration_s / every_s)):
        cycle, sample = divmod(index, len(samples))
        at = start + timedelta(seconds=(index + 0.5) * every_s)
        ticket = live_ticket(samples[sample], f"r{cycle:04d}", at)
        yield Planned(
            epoch_ms(at),
            topics.HOTLINE_TICKETS,
            ticket["service_request_id"].encode(),
            json.dumps(ticket, ensure_ascii=False).encode(),
        )
        if sample == 0:  # the neighbour's second report, as in the demo
            echo_at = at + timedelta(seconds=20)
            echo = live_ticket(second_report(samples[0]), f"r{cycle:04d}", echo_at)
            yield Planned(
                epoch_ms(echo_at),
                topics.HOTLINE_TICKETS,
                echo["service_request_id"].encode(),
                json.dumps(echo, ensure_ascii=False).encode(),
            )


def _readings(
    settings: Settings, start: datetime, duration_s: float, interval_s: float
) -> Iterator[Planned]:
    steps = int(duration_s / interval_s)
    for spec in load_sensor_registry(settings.streams.sensor_registry).sensors:
        for step in range(steps):
            at = start + timedelta(seconds=step * interval_s)
            value = sensor_value(spec, step / max(steps - 1, 1))
            yield Planned(
                epoch_ms(at), topics.SENSOR_EVENTS, spec.id.encode(), sensor_event(spec, value, at)
            )


def _ticks(
    start: datetime, duration_s: float, every_s: float, partitions: int
) -> Iterator[Planned]:
    for step in range(1, int(duration_s / every_s) + 1):
        at_ms = epoch_ms(start + timedelta(seconds=step * every_s))
        for topic in (topics.SENSOR_EVENTS, topics.VISION_DETECTIONS):
            for partition in range(partitions):
                yield Planned(at_ms, topic, None, b"", ((TICK_HEADER, b"1"),), partition)


def write_demo_mix(
    out: Path,
    settings: Settings,
    samples_dir: Path,
    start: datetime,
    duration_s: float,
    detect: Detect,
) -> Manifest:
    """An hour (or `duration_s`) of the demo's traffic from `start`, as a recording in `out`."""
    demo, partitions = settings.demo, settings.kafka.partitions
    planned = [
        *_frames(samples_dir, start, duration_s, demo.frame_interval_s, detect),
        *_tickets(samples_dir, start, duration_s),
        *_readings(settings, start, duration_s, demo.sensor_interval_s),
        *_ticks(start, duration_s, settings.streams.sensor_tick_s, partitions),
    ]
    for bad in bad_messages(duration_s, start):
        if bad.topic != topics.CAMERA_FRAMES:  # detections are recorded, not frames
            at_ms = epoch_ms(start + timedelta(seconds=bad.at_s))
            planned.append(Planned(at_ms, bad.topic, bad.key, bad.value, bad.headers))
    planned.sort(key=lambda item: item.at_ms)
    writer = RecordingWriter(out, start, start + timedelta(seconds=duration_s))
    offsets: dict[tuple[str, int], int] = {}
    try:
        for item in planned:
            partition = (
                item.partition
                if item.partition is not None
                else partition_of(item.key or b"", partitions)
            )
            offset = offsets.get((item.topic, partition), 0)
            offsets[(item.topic, partition)] = offset + 1
            writer.add(
                RecordedMessage(
                    topic=item.topic,
                    partition=partition,
                    offset=offset,
                    timestamp_ms=item.at_ms,
                    key=item.key,
                    value=item.value,
                    headers=item.headers,
                )
            )
        return writer.close()
    except BaseException:
        writer.abort()
        raise


def detector_for(settings: Settings) -> Detect:
    """The configured detector on the CPU: what the vision worker would run."""
    from ioc.vision.detector import Detector

    vision = settings.vision
    detector = Detector(
        str(vision.model_path),
        device="cpu",
        image_size=vision.image_size,
        min_score=vision.min_score,
        class_min_scores=vision.class_min_scores,
    )
    return detector.detect_jpegs
