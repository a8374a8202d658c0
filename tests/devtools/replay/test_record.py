"""`record` and `ioc record` against the real local Kafka: exactly the messages whose timestamp
lies in the window, with their keys, headers, timestamps and offsets."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import cv2
import numpy as np
import pytest
from aiokafka import AIOKafkaProducer
from kafka import KafkaAdminClient
from kafka.admin import NewTopic

from ioc.config import Settings
from ioc.devtools.replay.record import parse_time, record
from ioc.devtools.replay.recording import RecordedMessage, RecordingError, open_recording
from ioc.models.base import VIETNAM_TIME

pytestmark = pytest.mark.integration

# A window in the recent past (within retention and the broker's timestamp limits).
START = (datetime.now(UTC) - timedelta(minutes=30)).replace(microsecond=0)
END = START + timedelta(minutes=5)
S = int(START.timestamp() * 1000)
E = int(END.timestamp() * 1000)


def _jpeg() -> bytes:
    image = np.zeros((32, 32, 3), dtype=np.uint8)
    image[8:24, 8:24] = (0, 128, 255)
    ok, encoded = cv2.imencode(".jpg", image)
    assert ok
    return encoded.tobytes()


# (partition, timestamp_ms, key, value, headers, inside the window)
EVENTS: list[tuple[int, int, bytes | None, bytes | None, list[tuple[str, bytes]], bool]] = [
    (0, S - 60_000, b"s1", b"before", [], False),
    (0, S - 1, b"s1", b"just before", [], False),
    (0, S, b"s1", b"at the start", [("source", b"mqtt")], True),
    (0, S + 1_000, None, b"no key", [("a", b"1"), ("b", b"")], True),
    (0, S + 2_000, b"s2", None, [], True),
    (0, E, b"s1", b"at the end (excluded)", [], False),
    (0, S + 3_000, b"s1", b"late, within the out-of-order allowance", [], True),
    (0, E + 6 * 60_000, b"s1", b"past the allowance", [], False),
    (0, S + 4_000, b"s1", b"late beyond the allowance: not looked for", [], False),
    (1, S + 500, b"s3", b"partition 1", [("seq", b"1")], True),
    (1, S - 5_000, b"s3", b"old CreateTime in the middle", [], False),
    (1, E - 1, b"s3", b"last millisecond", [], True),
    (1, E + 60_000, b"s3", b"after", [], False),
]


@pytest.fixture
def topics(live_stack: Settings) -> Iterator[tuple[str, str]]:
    """A fresh 2-partition topic and a fresh frames topic (under a prefix), deleted after."""
    suffix = uuid.uuid4().hex[:10]
    events, frames = f"test.record.{suffix}", f"sandbox.{suffix}.ioc.camera.frames"
    admin = KafkaAdminClient(bootstrap_servers=live_stack.kafka.bootstrap_servers)
    try:
        admin.create_topics(
            [
                NewTopic(events, num_partitions=2, replication_factor=1),
                NewTopic(frames, num_partitions=1, replication_factor=1),
            ]
        )
        yield events, frames
        admin.delete_topics([events, frames])
    finally:
        admin.close()


async def _produce(settings: Settings, events: str, frames: str) -> list[RecordedMessage]:
    """Produce EVENTS and three frames; return what the window should hold."""
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka.bootstrap_servers, acks="all")
    await producer.start()
    inside = []
    try:
        for partition, timestamp, key, value, headers, wanted in EVENTS:
            meta = await producer.send_and_wait(
                events, value, key=key, partition=partition, timestamp_ms=timestamp, headers=headers
            )
            assert meta.partition == partition
            if wanted:
                message = RecordedMessage(
                    events, partition, meta.offset, timestamp, key, value, tuple(headers)
                )
                inside.append(message)
        for timestamp, value, wanted in [
            (S + 100, _jpeg(), True),
            (S + 200, b"\xff\xd8 corrupt", True),
            (E + 100, _jpeg(), False),
        ]:
            headers = [("camera_id", b"cam-1")]
            meta = await producer.send_and_wait(
                frames, value, key=b"cam-1", partition=0, timestamp_ms=timestamp, headers=headers
            )
            if wanted:
                inside.append(
                    RecordedMessage(
                        frames, 0, meta.offset, timestamp, b"cam-1", value, tuple(headers)
                    )
                )
    finally:
        await producer.stop()
    return inside


def _position(message: RecordedMessage) -> tuple[str, int, int]:
    return message.topic, message.partition, message.offset


def test_records_exactly_the_window(
    live_stack: Settings, topics: tuple[str, str], tmp_path: Path
) -> None:
    events, frames = topics
    inside = asyncio.run(_produce(live_stack, events, frames))
    progress: list[int] = []
    manifest = asyncio.run(
        record(live_stack.kafka, [events, frames], START, END, tmp_path / "rec", progress.append)
    )
    assert manifest.count == len(inside) == 8
    assert manifest.frames == 1
    assert progress and progress[-1] == len(inside)
    recording = open_recording(tmp_path / "rec")
    assert recording.manifest == manifest
    read = list(recording.messages())
    assert sorted(read, key=_position) == sorted(inside, key=_position)
    assert [m.timestamp_ms for m in read] == sorted(m.timestamp_ms for m in read)
    image = cv2.imread(str(tmp_path / "rec" / f"frames/{frames}/0/0.jpg"))
    assert image is not None and image.shape == (32, 32, 3)
    by_value = {m.value: m for m in read}
    assert by_value[b"no key"].key is None
    assert by_value[b"no key"].headers == (("a", b"1"), ("b", b""))
    assert by_value[None].offset == 4 and by_value[None].key == b"s2"
    assert {
        (e.topic, e.partition): (e.first_offset, e.last_offset) for e in manifest.partitions
    } == {
        (events, 0): (2, 6),
        (events, 1): (0, 2),
        (frames, 0): (0, 1),
    }

    # A window before every message is an empty but valid recording.
    empty = asyncio.run(
        record(
            live_stack.kafka,
            [events],
            START - timedelta(hours=2),
            START - timedelta(hours=1),
            tmp_path / "empty",
        )
    )
    assert empty.count == 0 and list(open_recording(tmp_path / "empty").messages()) == []


def test_refuses_unknown_topics_and_empty_windows(live_stack: Settings, tmp_path: Path) -> None:
    with pytest.raises(RecordingError, match="unknown topic"):
        asyncio.run(record(live_stack.kafka, ["no.such.topic.here"], START, END, tmp_path / "a"))
    with pytest.raises(RecordingError, match="not before"):
        asyncio.run(record(live_stack.kafka, ["ioc.sensor.events"], END, START, tmp_path / "b"))


def test_parse_time_defaults_to_vietnam_time() -> None:
    assert parse_time("2026-03-01T08:00") == datetime(2026, 3, 1, 1, 0, tzinfo=UTC)
    assert parse_time("2026-03-01T01:00:00Z") == datetime(2026, 3, 1, 1, 0, tzinfo=UTC)
    assert abs(parse_time("now", now_ok=True) - datetime.now(UTC)) < timedelta(seconds=5)
    with pytest.raises(ValueError, match="not an ISO 8601 time"):
        parse_time("now")


def test_ioc_record_command(live_stack: Settings, topics: tuple[str, str], tmp_path: Path) -> None:
    events, frames = topics
    inside = asyncio.run(_produce(live_stack, events, frames))
    # Naive times are Vietnam time; topics repeated and comma separated.
    local = [moment.astimezone(VIETNAM_TIME).replace(tzinfo=None) for moment in (START, END)]
    env = os.environ | {"COLUMNS": "200"}
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "ioc",
            "record",
            "--topics",
            f"{events},{frames}",
            "--topics",
            events,
            "--from",
            local[0].isoformat(),
            "--to",
            local[1].isoformat(),
            "--out",
            str(tmp_path / "rec"),
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert events in done.stdout and frames in done.stdout and "total" in done.stdout
    assert "8 messages recorded" in done.stdout
    recording = open_recording(tmp_path / "rec")
    assert sorted(recording.messages(), key=_position) == sorted(inside, key=_position)

    bad = subprocess.run(
        [
            sys.executable,
            "-m",
            "ioc",
            "record",
            "--from",
            "yesterday",
            "--to",
            "now",
            "--out",
            str(tmp_path / "bad"),
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert bad.returncode == 1
    assert "error: not an ISO 8601 time: 'yesterday'" in bad.stdout
    assert "Traceback" not in bad.stdout + bad.stderr
    assert not (tmp_path / "bad").exists()
