"""The recording format: round trip, merge order, determinism, and rejection of recordings that
are incomplete, truncated or edited (naming the file and the Kafka offset)."""

from __future__ import annotations

import gzip
import json
import re
import time
import zlib
from datetime import UTC, datetime, timedelta
from pathlib import Path

import cv2
import numpy as np
import pytest

from ioc.devtools.replay.recording import (
    FORMAT,
    VERSION,
    Manifest,
    RecordedMessage,
    RecordingError,
    RecordingWriter,
    open_recording,
)
from ioc.devtools.replay.replay import derived
from ioc.kafka.topics import DERIVED_HEADER

START = datetime(2026, 3, 1, 1, 0, tzinfo=UTC)
END = START + timedelta(hours=1)
T0 = int(START.timestamp() * 1000)
SENSORS = "ioc.sensor.events"
TICKETS = "ioc.hotline.tickets"
FRAMES = "ioc.camera.frames"
SANDBOX_FRAMES = "sandbox.x.ioc.camera.frames"
CORRUPT_FRAME = b"\xff\xd8 this is not a whole JPEG"


def _jpeg(shade: int) -> bytes:
    image = np.full((48, 64, 3), shade, dtype=np.uint8)
    cv2.rectangle(image, (8, 8), (40, 30), (0, 0, 255), -1)
    ok, encoded = cv2.imencode(".jpg", image)
    assert ok
    return encoded.tobytes()


def _sample() -> list[RecordedMessage]:
    """Two sensor partitions interleaved in time, tickets with null keys and values, camera
    frames (one corrupt) on the frames topic and a sandbox-prefixed one."""
    messages = []
    for i in range(40):
        partition = i % 2
        messages.append(
            RecordedMessage(
                SENSORS,
                partition,
                100 + i // 2,
                T0 + 1000 * i,
                f"sensor-{i % 5}".encode(),
                json.dumps({"id": f"sensor-{i % 5}", "level_cm": i}).encode(),
                (("source", b"mqtt"), ("seq", str(i).encode())),
            )
        )
    messages += [
        RecordedMessage(TICKETS, 0, 7, T0 + 1500, None, b'{"ticket": 1}', ()),
        RecordedMessage(TICKETS, 0, 9, T0 + 2500, b"ticket-2", None, (("empty", b""),)),
        RecordedMessage(TICKETS, 0, 12, T0 + 2500, b"", b"", ()),
        RecordedMessage(FRAMES, 0, 17, T0 + 3000, b"cam-1", _jpeg(40), (("seq", b"1"),)),
        RecordedMessage(FRAMES, 0, 18, T0 + 3100, b"cam-1", CORRUPT_FRAME, (("seq", b"2"),)),
        RecordedMessage(FRAMES, 0, 19, T0 + 3200, b"cam-1", _jpeg(200), (("seq", b"3"),)),
        RecordedMessage(FRAMES, 1, 4, T0 + 3050, b"cam-2", None, ()),
        RecordedMessage(SANDBOX_FRAMES, 2, 0, T0 + 50, b"cam-3", _jpeg(90), ()),
    ]
    return messages


def _write(out: Path, messages: list[RecordedMessage]) -> Manifest:
    writer = RecordingWriter(out, START, END)
    for message in sorted(messages, key=lambda m: (m.topic, m.partition, m.offset)):
        writer.add(message)
    return writer.close()


def _by_position(messages: list[RecordedMessage]) -> list[RecordedMessage]:
    return sorted(messages, key=lambda m: (m.topic, m.partition, m.offset))


@pytest.fixture
def recorded(tmp_path: Path) -> Path:
    out = tmp_path / "rec"
    _write(out, _sample())
    return out


def _lines(path: Path) -> list[bytes]:
    return gzip.decompress(path.read_bytes()).splitlines(keepends=True)


def _rewrite(path: Path, lines: list[bytes]) -> None:
    path.write_bytes(gzip.compress(b"".join(lines), mtime=0))


def _error(path: Path) -> str:
    with pytest.raises(RecordingError) as caught:
        open_recording(path)
    return str(caught.value)


def test_round_trip_keeps_every_field(recorded: Path) -> None:
    recording = open_recording(recorded)
    read = list(recording.messages())
    assert _by_position(read) == _by_position(_sample())
    tickets = {m.offset: m for m in read if m.topic == TICKETS}
    assert tickets[7].key is None and tickets[7].value == b'{"ticket": 1}'
    assert tickets[9].value is None and tickets[9].headers == (("empty", b""),)
    assert tickets[12].key == b"" and tickets[12].value == b""
    assert recording.manifest.count == len(_sample())
    assert recording.manifest.frames == 3
    assert recording.manifest.topics == sorted({FRAMES, SANDBOX_FRAMES, SENSORS, TICKETS})
    assert recording.manifest.first_timestamp_ms == T0
    assert recording.manifest.last_timestamp_ms == T0 + 39_000


def test_frames_are_jpeg_files_and_other_values_stay_inline(recorded: Path) -> None:
    for relative, shade in [
        (f"frames/{FRAMES}/0/17.jpg", 40),
        (f"frames/{FRAMES}/0/19.jpg", 200),
        (f"frames/{SANDBOX_FRAMES}/2/0.jpg", 90),
    ]:
        image = cv2.imread(str(recorded / relative))
        assert image is not None and image.shape == (48, 64, 3)
        assert abs(int(image[45, 60].mean()) - shade) < 8  # outside the red rectangle
    assert sorted(p.name for p in (recorded / "frames" / FRAMES / "0").iterdir()) == [
        "17.jpg",
        "19.jpg",
    ]
    assert not (recorded / "frames" / FRAMES / "1").exists()
    lines = [json.loads(line) for line in _lines(recorded / f"topics/{FRAMES}/0.jsonl.gz")]
    assert [("frame" in line, "value" in line) for line in lines] == [
        (True, False),
        (False, True),
        (True, False),
    ]
    assert lines[0]["frame"]["path"] == f"frames/{FRAMES}/0/17.jpg"
    frames = {m.offset: m.value for m in open_recording(recorded).messages([FRAMES])}
    assert frames == {17: _jpeg(40), 18: CORRUPT_FRAME, 19: _jpeg(200), 4: None}


def test_lines_and_manifest_follow_the_layout(recorded: Path) -> None:
    line = _lines(recorded / f"topics/{SENSORS}/1.jsonl.gz")[0]
    fields = json.loads(line)
    crc = fields.pop("crc32")
    assert zlib.crc32(json.dumps(fields, sort_keys=True, separators=(",", ":")).encode()) == crc
    assert fields["offset"] == 100 and fields["timestamp_ms"] == T0 + 1000
    assert fields["headers"] == [["source", "bXF0dA=="], ["seq", "MQ=="]]
    text = (recorded / "manifest.json").read_text()
    document = json.loads(text)
    assert text == json.dumps(document, indent=2, sort_keys=True) + "\n"
    assert document["format"] == FORMAT and document["version"] == VERSION
    assert document["from"] == "2026-03-01T01:00:00Z" and document["to"] == "2026-03-01T02:00:00Z"
    assert document["messages"] == len(_sample()) and document["frames"] == 3
    keys = [(entry["topic"], entry["partition"]) for entry in document["partitions"]]
    assert keys == sorted(keys) and len(keys) == 6
    sensors_1 = next(e for e in document["partitions"] if e["topic"] == SENSORS and e["partition"])
    assert sensors_1 | {"sha256": "-", "bytes": 0} == {
        "topic": SENSORS,
        "partition": 1,
        "file": f"topics/{SENSORS}/1.jsonl.gz",
        "count": 20,
        "first_offset": 100,
        "last_offset": 119,
        "first_timestamp_ms": T0 + 1000,
        "last_timestamp_ms": T0 + 39_000,
        "sha256": "-",
        "bytes": 0,
        "frames": 0,
    }
    assert sensors_1["bytes"] == (recorded / sensors_1["file"]).stat().st_size
    manifest = Manifest.from_json(text)
    assert Manifest.from_json(manifest.to_json()) == manifest
    assert manifest.start == START and manifest.end == END


def test_merge_orders_by_timestamp_then_topic_then_partition(tmp_path: Path) -> None:
    messages = [
        RecordedMessage(SENSORS, 1, 0, T0 + 10, None, b"a", ()),
        RecordedMessage(SENSORS, 0, 0, T0 + 10, None, b"b", ()),
        RecordedMessage(TICKETS, 0, 0, T0 + 10, None, b"c", ()),
        RecordedMessage(SENSORS, 0, 1, T0 + 5, None, b"late CreateTime", ()),
        RecordedMessage(SENSORS, 0, 2, T0 + 30, None, b"d", ()),
        RecordedMessage(SENSORS, 1, 1, T0 + 20, None, b"e", ()),
        RecordedMessage(TICKETS, 0, 1, T0 + 1, None, b"f", ()),
    ]
    _write(tmp_path / "rec", messages)
    recording = open_recording(tmp_path / "rec")
    order = [(m.topic, m.partition, m.offset) for m in recording.messages()]
    # Between partitions the smallest (timestamp, topic, partition) first ("ioc.hotline…" sorts
    # before "ioc.sensor…"); each partition keeps its own order: a later offset with an earlier
    # CreateTime stays after its predecessor.
    assert order == [
        (TICKETS, 0, 0),
        (TICKETS, 0, 1),
        (SENSORS, 0, 0),
        (SENSORS, 0, 1),
        (SENSORS, 1, 0),
        (SENSORS, 1, 1),
        (SENSORS, 0, 2),
    ]
    assert [m.value for m in recording.messages([TICKETS])] == [b"c", b"f"]
    assert list(recording.messages([])) == []

    sample = tmp_path / "sample"
    _write(sample, _sample())
    merged = list(open_recording(sample).messages([SENSORS, TICKETS]))
    assert [(m.timestamp_ms, m.topic, m.partition) for m in merged] == sorted(
        (m.timestamp_ms, m.topic, m.partition) for m in merged
    )
    assert {m.topic for m in merged} == {SENSORS, TICKETS}


def test_same_input_gives_the_same_bytes(tmp_path: Path) -> None:
    first, second = tmp_path / "a", tmp_path / "b"
    _write(first, _sample())
    _write(second, list(reversed(_sample())))
    files = sorted(p.relative_to(first) for p in first.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(second) for p in second.rglob("*") if p.is_file())
    assert len(files) == 1 + 6 + 3
    for relative in files:
        a, b = (first / relative).read_bytes(), (second / relative).read_bytes()
        if relative.name == "manifest.json":
            a, b = (json.loads(text) for text in (a, b))
            a.pop("created_at"), b.pop("created_at")
        assert a == b, relative


def test_writer_refuses_a_used_directory_and_offsets_that_do_not_increase(
    tmp_path: Path,
) -> None:
    (tmp_path / "used").mkdir()
    (tmp_path / "used" / "notes.txt").write_text("keep me")
    with pytest.raises(RecordingError, match="not an empty directory"):
        RecordingWriter(tmp_path / "used", START, END)
    with pytest.raises(RecordingError, match="not before"):
        RecordingWriter(tmp_path / "window", END, START)
    writer = RecordingWriter(tmp_path / "rec", START, END)
    writer.add(RecordedMessage(SENSORS, 0, 5, T0, None, b"x", ()))
    writer.add(RecordedMessage(SENSORS, 1, 1, T0, None, b"x", ()))
    with pytest.raises(RecordingError, match="offset 5 is not after offset 5"):
        writer.add(RecordedMessage(SENSORS, 0, 5, T0, None, b"y", ()))
    writer.abort()
    assert _error(tmp_path / "rec") == "manifest.json missing: incomplete recording"


def test_abort_leaves_no_manifest_and_removes_a_directory_it_left_empty(tmp_path: Path) -> None:
    RecordingWriter(tmp_path / "new", START, END).abort()
    assert not (tmp_path / "new").exists()
    (tmp_path / "kept").mkdir()
    RecordingWriter(tmp_path / "kept", START, END).abort()
    assert (tmp_path / "kept").is_dir()


def test_an_empty_window_is_a_valid_recording(tmp_path: Path) -> None:
    manifest = RecordingWriter(tmp_path / "rec", START, END).close()
    recording = open_recording(tmp_path / "rec")
    assert recording.manifest == manifest
    assert manifest.count == 0 and manifest.first_timestamp_ms is None
    assert list(recording.messages()) == []


def test_rejects_a_missing_manifest(recorded: Path) -> None:
    (recorded / "manifest.json").unlink()
    assert _error(recorded) == "manifest.json missing: incomplete recording"


def test_rejects_another_format_or_version(recorded: Path) -> None:
    document = json.loads((recorded / "manifest.json").read_text())
    (recorded / "manifest.json").write_text(json.dumps(document | {"version": 2}))
    assert "manifest.json: version 2 is not supported" in _error(recorded)
    (recorded / "manifest.json").write_text(json.dumps(document | {"format": "x"}))
    assert "manifest.json: not an ioc-recording manifest" in _error(recorded)
    broken = document["partitions"][0] | {"file": "../../etc/passwd"}
    (recorded / "manifest.json").write_text(
        json.dumps(document | {"partitions": [broken, *document["partitions"][1:]]})
    )
    assert "manifest.json: malformed" in _error(recorded)


def test_rejects_a_truncated_file_naming_the_last_good_offset(recorded: Path) -> None:
    path = recorded / f"topics/{SENSORS}/1.jsonl.gz"
    path.write_bytes(path.read_bytes()[:-30])
    message = _error(recorded)
    found = re.fullmatch(
        rf"topics/{SENSORS}/1\.jsonl\.gz: truncated after offset (\d+) \((.*)\)", message
    )
    assert found, message
    assert 100 <= int(found.group(1)) < 119
    assert found.group(2) in {"gzip stream ends early", "a partial line"}


def test_rejects_an_edited_line(recorded: Path) -> None:
    path = recorded / f"topics/{SENSORS}/0.jsonl.gz"
    lines = _lines(path)
    fields = json.loads(lines[3])
    assert fields["offset"] == 103
    fields["value"] = "eyJsZXZlbF9jbSI6IDk5OX0="  # {"level_cm": 999}
    lines[3] = json.dumps(fields, sort_keys=True, separators=(",", ":")).encode() + b"\n"
    _rewrite(path, lines)
    assert _error(recorded) == (
        f"topics/{SENSORS}/0.jsonl.gz: offset 103: crc mismatch (line edited)"
    )


def test_rejects_an_appended_line(recorded: Path) -> None:
    path = recorded / f"topics/{SENSORS}/0.jsonl.gz"
    lines = _lines(path)
    fields = json.loads(lines[-1])
    fields.pop("crc32")
    fields["offset"] += 1
    fields["crc32"] = zlib.crc32(json.dumps(fields, sort_keys=True, separators=(",", ":")).encode())
    _rewrite(path, [*lines, json.dumps(fields, sort_keys=True).encode() + b"\n"])
    assert _error(recorded) == (
        f"topics/{SENSORS}/0.jsonl.gz: offset 120: beyond the manifest's last offset 119 "
        "(line added)"
    )


def test_rejects_a_removed_line_and_a_recompressed_file(recorded: Path) -> None:
    path = recorded / f"topics/{SENSORS}/0.jsonl.gz"
    lines = _lines(path)
    _rewrite(path, lines[:-1])
    assert _error(recorded).startswith(
        f"topics/{SENSORS}/0.jsonl.gz: ends after offset 118: 19 message(s)"
    )
    # The same lines compressed differently: the file's sha256 differs, no line is bad.
    path.write_bytes(gzip.compress(b"".join(lines), compresslevel=1, mtime=0))
    assert _error(recorded) == (
        f"topics/{SENSORS}/0.jsonl.gz: size mismatch (file edited; every line up to offset "
        "119 checks out)"
    )


def test_rejects_an_edited_frame(recorded: Path) -> None:
    frame = recorded / f"frames/{FRAMES}/0/19.jpg"
    data = bytearray(frame.read_bytes())
    data[len(data) // 2] ^= 0xFF
    frame.write_bytes(bytes(data))
    assert _error(recorded) == f"frames/{FRAMES}/0/19.jpg: offset 19: sha256 mismatch"


def test_rejects_a_deleted_frame(recorded: Path) -> None:
    (recorded / f"frames/{FRAMES}/0/17.jpg").unlink()
    assert _error(recorded) == f"frames/{FRAMES}/0/17.jpg: offset 17: frame file missing"


def test_rejects_a_deleted_partition_file(recorded: Path) -> None:
    (recorded / f"topics/{TICKETS}/0.jsonl.gz").unlink()
    assert _error(recorded) == f"topics/{TICKETS}/0.jsonl.gz: missing (offsets 7..12)"


def test_messages_checks_each_line_again(recorded: Path) -> None:
    recording = open_recording(recorded)
    path = recorded / f"topics/{TICKETS}/0.jsonl.gz"
    lines = _lines(path)
    lines[1] = lines[1].replace(b'"timestamp_ms":', b'"timestamp_ms":1')
    _rewrite(path, lines)
    with pytest.raises(RecordingError, match=rf"^topics/{TICKETS}/0\.jsonl\.gz: offset 9: crc"):
        list(recording.messages([TICKETS]))


def test_reads_well_over_5k_messages_per_second(tmp_path: Path) -> None:
    value = json.dumps({"id": "s", "type": "WaterLevel", "measurements": {"cm": 1.5}}).encode()
    writer = RecordingWriter(tmp_path / "rec", START, END)
    for i in range(30_000):
        writer.add(
            RecordedMessage(SENSORS, i % 3, i // 3, T0 + i, b"sensor", value, (("h", b"v"),))
        )
    writer.close()
    began = time.perf_counter()
    recording = open_recording(tmp_path / "rec")
    read = sum(1 for _ in recording.messages())
    elapsed = time.perf_counter() - began
    assert read == 30_000
    assert read / elapsed > 10_000, f"{read / elapsed:.0f} msg/s (verification included)"


def test_a_message_a_worker_derived_is_left_for_the_sandbox_to_derive_again() -> None:
    """A camera line's traffic flow rides the sensors topic beside the devices' readings; the
    sandbox's camera agent publishes it again from the replayed detections."""
    reading = RecordedMessage("ioc.sensor.events", 0, 7, 1, b"s", b"{}", ())
    flow = RecordedMessage("ioc.sensor.events", 0, 8, 2, b"l", b"{}", ((DERIVED_HEADER, b"x"),))
    assert not derived(reading) and derived(flow)
