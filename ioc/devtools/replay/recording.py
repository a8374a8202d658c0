"""The portable recording format: a time range of Kafka topics in a directory.

```
<dir>/manifest.json                          written last: a directory without it is incomplete
<dir>/topics/<topic>/<partition>.jsonl.gz    one JSON object per message, in offset order
<dir>/frames/<topic>/<partition>/<offset>.jpg  camera frames, as files engineers can open
```

Each line holds `offset`, `timestamp_ms`, `key` (base64 or null), `headers` ([[name, base64]]),
and either `value` (base64 or null) or `frame` ({path, sha256}), plus `crc32`: the zlib CRC-32 of
the line's other fields serialised canonically (`json.dumps(sort_keys=True,
separators=(",", ":"))`). Files are gzip with mtime 0, so the same input gives the same bytes.
The manifest names every partition file with its count, offsets, timestamps, size and SHA-256;
`open_recording` checks all of it (and every frame) before anything is replayed.
"""

from __future__ import annotations

import binascii
import gzip
import hashlib
import heapq
import json
import os
import re
import zlib
from collections.abc import Collection, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

from ioc.kafka.topics import CAMERA_FRAMES

FORMAT = "ioc-recording"
VERSION = 1
MANIFEST = "manifest.json"
JPEG_MAGIC = b"\xff\xd8\xff"
_READ_BUFFER = 1 << 16
_TOPIC_NAME = re.compile(r"^[A-Za-z0-9._-]{1,249}$")


@dataclass(frozen=True)
class RecordedMessage:
    """One Kafka record as it was on the broker."""

    topic: str
    partition: int
    offset: int
    timestamp_ms: int
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes], ...] = ()


class RecordingError(Exception):
    """A recording that is incomplete, truncated or edited; the message names the file and the
    Kafka offset."""


@dataclass(frozen=True)
class PartitionFile:
    """One entry of the manifest: the messages of one topic partition. The timestamps are the
    smallest and largest in the file (CreateTime need not follow the offsets); `bytes` and
    `sha256` are those of the .jsonl.gz file, `frames` how many lines point at a .jpg file."""

    topic: str
    partition: int
    file: str
    count: int
    first_offset: int
    last_offset: int
    first_timestamp_ms: int
    last_timestamp_ms: int
    sha256: str
    bytes: int
    frames: int


@dataclass(frozen=True)
class Manifest:
    """What a recording holds: the window [start, end) and one entry per partition file."""

    start: datetime
    end: datetime
    created_at: datetime
    partitions: tuple[PartitionFile, ...] = field(default=())

    @property
    def topics(self) -> list[str]:
        return sorted({entry.topic for entry in self.partitions})

    @property
    def count(self) -> int:
        return sum(entry.count for entry in self.partitions)

    @property
    def frames(self) -> int:
        return sum(entry.frames for entry in self.partitions)

    @property
    def first_timestamp_ms(self) -> int | None:
        """The earliest message's timestamp; None for a recording without messages."""
        return min((entry.first_timestamp_ms for entry in self.partitions), default=None)

    @property
    def last_timestamp_ms(self) -> int | None:
        return max((entry.last_timestamp_ms for entry in self.partitions), default=None)

    def to_json(self) -> str:
        document = {
            "format": FORMAT,
            "version": VERSION,
            "created_at": _iso(self.created_at),
            "from": _iso(self.start),
            "to": _iso(self.end),
            "messages": self.count,
            "frames": self.frames,
            "partitions": [
                {name: getattr(entry, name) for name in _ENTRY_FIELDS}
                for entry in sorted(self.partitions, key=lambda e: (e.topic, e.partition))
            ],
        }
        return json.dumps(document, indent=2, sort_keys=True) + "\n"

    @classmethod
    def from_json(cls, text: str | bytes) -> Manifest:
        """Parse and check a manifest; RecordingError for anything but format 1 of this shape."""
        try:
            document = json.loads(text)
        except (ValueError, UnicodeDecodeError) as error:
            raise RecordingError(f"{MANIFEST}: not JSON ({error})") from None
        if not isinstance(document, dict) or document.get("format") != FORMAT:
            raise RecordingError(f"{MANIFEST}: not an {FORMAT} manifest")
        if document.get("version") != VERSION:
            raise RecordingError(
                f"{MANIFEST}: version {document.get('version')!r} is not supported "
                f"(this ioc reads version {VERSION})"
            )
        try:
            entries = tuple(_entry(raw) for raw in document["partitions"])
            manifest = cls(
                start=_parse_iso(document["from"]),
                end=_parse_iso(document["to"]),
                created_at=_parse_iso(document["created_at"]),
                partitions=entries,
            )
            messages, frames = document["messages"], document["frames"]
        except (KeyError, TypeError, ValueError) as error:
            raise RecordingError(f"{MANIFEST}: malformed ({_describe(error)})") from None
        keys = [(entry.topic, entry.partition) for entry in entries]
        if keys != sorted(set(keys)):
            raise RecordingError(f"{MANIFEST}: partitions not sorted by (topic, partition)")
        if messages != manifest.count or frames != manifest.frames:
            raise RecordingError(
                f"{MANIFEST}: totals ({messages} messages, {frames} frames) differ from its "
                f"partitions ({manifest.count}, {manifest.frames})"
            )
        if manifest.start >= manifest.end:
            raise RecordingError(f"{MANIFEST}: 'from' is not before 'to'")
        return manifest


_ENTRY_FIELDS = (
    "topic",
    "partition",
    "file",
    "count",
    "first_offset",
    "last_offset",
    "first_timestamp_ms",
    "last_timestamp_ms",
    "sha256",
    "bytes",
    "frames",
)


def _entry(raw: Any) -> PartitionFile:
    if not isinstance(raw, dict):
        raise TypeError("a partition entry is not an object")
    values = {name: raw[name] for name in _ENTRY_FIELDS}
    for name in _ENTRY_FIELDS:
        expected = str if name in {"topic", "file", "sha256"} else int
        if type(values[name]) is not expected:
            raise TypeError(f"{name} is not {expected.__name__}")
    entry = PartitionFile(**values)
    if not _TOPIC_NAME.match(entry.topic) or entry.topic in {".", ".."}:
        raise ValueError(f"bad topic name {entry.topic!r}")
    if entry.partition < 0 or entry.file != partition_path(entry.topic, entry.partition):
        raise ValueError(f"bad file {entry.file!r} for {entry.topic}[{entry.partition}]")
    if entry.count < 1 or not 0 <= entry.frames <= entry.count:
        raise ValueError(f"{entry.file}: bad count or frames")
    if not 0 <= entry.first_offset <= entry.last_offset or entry.bytes < 0:
        raise ValueError(f"{entry.file}: bad offsets or size")
    if not re.fullmatch(r"[0-9a-f]{64}", entry.sha256):
        raise ValueError(f"{entry.file}: bad sha256")
    return entry


def _describe(error: Exception) -> str:
    return f"missing {error}" if isinstance(error, KeyError) else str(error)


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _parse_iso(text: Any) -> datetime:
    if not isinstance(text, str):
        raise TypeError("a time is not a string")
    moment = datetime.fromisoformat(text)
    if moment.tzinfo is None:
        raise ValueError(f"time without offset: {text}")
    return moment.astimezone(UTC)


def partition_path(topic: str, partition: int) -> str:
    """A partition file's path relative to the recording."""
    return f"topics/{topic}/{partition}.jsonl.gz"


def frame_path(topic: str, partition: int, offset: int) -> str:
    """A frame file's path relative to the recording."""
    return f"frames/{topic}/{partition}/{offset}.jpg"


def is_frame(topic: str, value: bytes | None) -> bool:
    """Written as a .jpg file: a JPEG on the camera frames topic (under any prefix)."""
    return value is not None and topic.endswith(CAMERA_FRAMES) and value[:3] == JPEG_MAGIC


def _b64(data: bytes | None) -> str | None:
    return None if data is None else binascii.b2a_base64(data, newline=False).decode("ascii")


def _unb64(text: str | None) -> bytes | None:
    return None if text is None else binascii.a2b_base64(text)


def _canonical(fields: dict[str, Any]) -> bytes:
    return json.dumps(fields, sort_keys=True, separators=(",", ":")).encode("ascii")


def _sha256_file(path: Path) -> tuple[str, int]:
    digest = hashlib.sha256()
    size = 0
    with path.open("rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
            size += len(chunk)
    return digest.hexdigest(), size


@dataclass
class _OpenPartition:
    """The writer's state for one partition file."""

    topic: str
    partition: int
    raw: IO[bytes]
    zipped: gzip.GzipFile
    frames_dir: Path | None = None
    count: int = 0
    frames: int = 0
    first_offset: int = -1
    last_offset: int = -1
    first_timestamp_ms: int = 0
    last_timestamp_ms: int = 0

    def close(self) -> None:
        try:
            self.zipped.close()
        finally:
            self.raw.close()


class RecordingWriter:
    """Writes a recording into `out` (a new or empty directory); `close` writes the manifest."""

    def __init__(self, out: Path, start: datetime, end: datetime) -> None:
        if start.tzinfo is None or end.tzinfo is None:
            raise RecordingError("the window's times need a UTC offset")
        if start >= end:
            raise RecordingError(f"the window is empty: {_iso(start)} is not before {_iso(end)}")
        out = Path(out)
        if out.exists() and (not out.is_dir() or any(out.iterdir())):
            raise RecordingError(f"{out}: exists and is not an empty directory")
        self._created = not out.exists()
        out.mkdir(parents=True, exist_ok=True)
        self.out = out
        self.start = start.astimezone(UTC)
        self.end = end.astimezone(UTC)
        self._open: dict[tuple[str, int], _OpenPartition] = {}
        self._closed = False

    @property
    def count(self) -> int:
        """Messages added so far."""
        return sum(state.count for state in self._open.values())

    def _partition(self, topic: str, partition: int) -> _OpenPartition:
        state = self._open.get((topic, partition))
        if state is None:
            if not _TOPIC_NAME.match(topic) or topic in {".", ".."}:
                raise RecordingError(f"not a Kafka topic name: {topic!r}")
            if partition < 0:
                raise RecordingError(f"{topic}: bad partition {partition}")
            path = self.out / partition_path(topic, partition)
            path.parent.mkdir(parents=True, exist_ok=True)
            raw = path.open("xb")
            # filename="" and mtime=0: the header holds neither, so the bytes depend on the
            # messages only.
            zipped = gzip.GzipFile(filename="", mode="wb", fileobj=raw, compresslevel=6, mtime=0)
            state = _OpenPartition(topic, partition, raw, zipped)
            self._open[(topic, partition)] = state
        return state

    def add(self, message: RecordedMessage) -> None:
        """Append one message; per (topic, partition) offsets must increase."""
        if self._closed:
            raise RecordingError(f"{self.out}: the recording is closed")
        if type(message.offset) is not int or type(message.timestamp_ms) is not int:
            raise RecordingError(f"{message.topic}: offset and timestamp_ms must be integers")
        state = self._partition(message.topic, message.partition)
        if message.offset <= state.last_offset:
            raise RecordingError(
                f"{partition_path(message.topic, message.partition)}: offset {message.offset} "
                f"is not after offset {state.last_offset}"
            )
        fields: dict[str, Any] = {
            "offset": message.offset,
            "timestamp_ms": message.timestamp_ms,
            "key": _b64(message.key),
            "headers": [[name, _b64(value)] for name, value in message.headers],
        }
        value = message.value
        if value is not None and is_frame(message.topic, value):
            relative = frame_path(message.topic, message.partition, message.offset)
            if state.frames_dir is None:
                state.frames_dir = (self.out / relative).parent
                state.frames_dir.mkdir(parents=True, exist_ok=True)
            with (self.out / relative).open("xb") as handle:
                handle.write(value)
            fields["frame"] = {"path": relative, "sha256": hashlib.sha256(value).hexdigest()}
            state.frames += 1
        else:
            fields["value"] = _b64(value)
        body = _canonical(fields)
        # The canonical line with "crc32" added: it sorts before every other field.
        state.zipped.write(b'{"crc32":%d,' % zlib.crc32(body) + body[1:] + b"\n")
        if state.count == 0:
            state.first_offset = message.offset
            state.first_timestamp_ms = state.last_timestamp_ms = message.timestamp_ms
        state.first_timestamp_ms = min(state.first_timestamp_ms, message.timestamp_ms)
        state.last_timestamp_ms = max(state.last_timestamp_ms, message.timestamp_ms)
        state.last_offset = message.offset
        state.count += 1

    def close(self) -> Manifest:
        """Finish every file, then write manifest.json (a tmp file renamed into place)."""
        if self._closed:
            raise RecordingError(f"{self.out}: the recording is already closed")
        self._closed = True
        entries = []
        for (topic, partition), state in sorted(self._open.items()):
            state.zipped.close()
            state.raw.flush()
            os.fsync(state.raw.fileno())
            state.raw.close()
            relative = partition_path(topic, partition)
            sha256, size = _sha256_file(self.out / relative)
            entries.append(
                PartitionFile(
                    topic=topic,
                    partition=partition,
                    file=relative,
                    count=state.count,
                    first_offset=state.first_offset,
                    last_offset=state.last_offset,
                    first_timestamp_ms=state.first_timestamp_ms,
                    last_timestamp_ms=state.last_timestamp_ms,
                    sha256=sha256,
                    bytes=size,
                    frames=state.frames,
                )
            )
        manifest = Manifest(
            start=self.start,
            end=self.end,
            created_at=datetime.now(UTC).replace(microsecond=0),
            partitions=tuple(entries),
        )
        tmp = self.out / (MANIFEST + ".tmp")
        with tmp.open("w", encoding="utf-8") as handle:
            handle.write(manifest.to_json())
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, self.out / MANIFEST)
        return manifest

    def abort(self) -> None:
        """Close the files without a manifest: what was written stays an incomplete recording
        (a directory this writer created and left empty is removed)."""
        if self._closed:
            return
        self._closed = True
        for state in self._open.values():
            state.close()
        if self._created and not self._open and not any(self.out.iterdir()):
            self.out.rmdir()


def _check_crc(line: bytes, fields: dict[str, Any]) -> bool:
    """The line's crc32 against its other fields. Written lines are canonical with `crc32`
    first, so the other fields are the bytes after the first comma; a line that is not (but
    holds the same fields) is checked the long way."""
    crc = fields.get("crc32")
    if type(crc) is not int:
        return False
    comma = line.find(b",")
    if line.startswith(b'{"crc32":') and zlib.crc32(b"{" + line[comma + 1 :]) == crc:
        return True
    return zlib.crc32(_canonical({k: v for k, v in fields.items() if k != "crc32"})) == crc


class Recording:
    """A verified recording (see `open_recording`)."""

    def __init__(self, path: Path, manifest: Manifest) -> None:
        self.path = path
        self.manifest = manifest

    def messages(self, topics: Collection[str] | None = None) -> Iterator[RecordedMessage]:
        """Every message (of `topics`, when given) in (timestamp_ms, topic, partition) order,
        each partition in its own offset order. Each line's crc is checked again."""
        wanted = None if topics is None else set(topics)
        files = [
            self._read(entry)
            for entry in self.manifest.partitions
            if wanted is None or entry.topic in wanted
        ]
        return heapq.merge(*files, key=lambda m: (m.timestamp_ms, m.topic, m.partition))

    def _read(self, entry: PartitionFile) -> Iterator[RecordedMessage]:
        topic, partition = entry.topic, entry.partition
        offset = None
        for line, fields, offset in _lines(self.path, entry):
            if not _check_crc(line, fields):
                raise RecordingError(f"{entry.file}: offset {offset}: crc mismatch (line edited)")
            frame = fields.get("frame")
            if frame is not None:
                value = _read_frame(self.path, entry, offset, frame)
            else:
                value = _unb64(fields["value"])
            yield RecordedMessage(
                topic,
                partition,
                offset,
                fields["timestamp_ms"],
                _unb64(fields["key"]),
                value,
                tuple((name, _unb64(data)) for name, data in fields["headers"]),
            )
        if offset != entry.last_offset:
            raise RecordingError(
                f"{entry.file}: ends after offset {offset}, the manifest says {entry.last_offset}"
            )


def _lines(root: Path, entry: PartitionFile) -> Iterator[tuple[bytes, dict[str, Any], int]]:
    """(raw line, fields, offset) of each line, as the gzip stream is decoded; RecordingError
    for a truncated or corrupt stream, a line that is not a message, or offsets that do not
    increase."""
    last: int | None = None

    def where() -> str:
        return f"after offset {last}" if last is not None else "before its first line"

    try:
        raw = (root / entry.file).open("rb")
    except OSError as error:
        raise RecordingError(f"{entry.file}: cannot be read ({error.strerror})") from None
    decompressor = zlib.decompressobj(wbits=31)  # gzip: header, deflate, CRC-32 and size
    pieces: list[bytes] = []  # the line being decoded, when it spans chunks
    with raw:
        while True:
            chunk = raw.read(_READ_BUFFER)
            try:
                data = decompressor.decompress(chunk) if chunk else decompressor.flush()
            except zlib.error as error:
                raise RecordingError(f"{entry.file}: corrupt gzip {where()} ({error})") from None
            if decompressor.unused_data:
                raise RecordingError(f"{entry.file}: data after the gzip stream {where()}")
            if b"\n" not in data:
                if data:
                    pieces.append(data)
                if chunk:
                    continue
                if not decompressor.eof:
                    raise RecordingError(
                        f"{entry.file}: truncated {where()} (gzip stream ends early)"
                    )
                if pieces:
                    raise RecordingError(f"{entry.file}: truncated {where()} (a partial line)")
                return
            lines = data.split(b"\n")
            if pieces:
                pieces.append(lines[0])
                lines[0] = b"".join(pieces)
            tail = lines.pop()
            pieces = [tail] if tail else []
            for line in lines:
                try:
                    fields = json.loads(line)
                    offset = fields["offset"]
                    if type(offset) is not int or type(fields["timestamp_ms"]) is not int:
                        raise TypeError("offset and timestamp_ms must be integers")
                    if not isinstance(fields["headers"], list) or not (
                        "value" in fields or "frame" in fields
                    ):
                        raise TypeError("headers, value or frame missing")
                except (ValueError, KeyError, TypeError) as error:
                    raise RecordingError(
                        f"{entry.file}: line {where()} is not a message ({_describe(error)})"
                    ) from None
                if last is not None and offset <= last:
                    raise RecordingError(
                        f"{entry.file}: offset {offset}: not after offset {last} "
                        "(lines out of order)"
                    )
                if offset > entry.last_offset:
                    raise RecordingError(
                        f"{entry.file}: offset {offset}: beyond the manifest's last offset "
                        f"{entry.last_offset} (line added)"
                    )
                yield line, fields, offset
                last = offset


def _read_frame(root: Path, entry: PartitionFile, offset: int, frame: Any) -> bytes:
    expected = frame_path(entry.topic, entry.partition, offset)
    if not isinstance(frame, dict) or frame.get("path") != expected:
        raise RecordingError(f"{entry.file}: offset {offset}: frame is not at {expected}")
    try:
        data = (root / expected).read_bytes()
    except FileNotFoundError:
        raise RecordingError(f"{expected}: offset {offset}: frame file missing") from None
    except OSError as error:
        raise RecordingError(f"{expected}: offset {offset}: {error.strerror}") from None
    if hashlib.sha256(data).hexdigest() != frame.get("sha256"):
        raise RecordingError(f"{expected}: offset {offset}: sha256 mismatch")
    return data


def _verify(root: Path, entry: PartitionFile) -> None:
    """Every check of one partition file and its frames."""
    path = root / entry.file
    if not path.is_file():
        raise RecordingError(
            f"{entry.file}: missing (offsets {entry.first_offset}..{entry.last_offset})"
        )
    sha256, size = _sha256_file(path)
    count = frames = 0
    first: int | None = None
    last: int | None = None
    low = high = 0
    for line, fields, offset in _lines(root, entry):
        if not _check_crc(line, fields):
            raise RecordingError(f"{entry.file}: offset {offset}: crc mismatch (line edited)")
        if "frame" in fields:
            _read_frame(root, entry, offset, fields["frame"])
            frames += 1
        else:
            value = fields["value"]
            if value is not None and not isinstance(value, str):
                raise RecordingError(f"{entry.file}: offset {offset}: value is not base64")
        timestamp = fields["timestamp_ms"]
        if first is None:
            first, low, high = offset, timestamp, timestamp
        low, high = min(low, timestamp), max(high, timestamp)
        last = offset
        count += 1
    after = f"after offset {last}" if last is not None else "before its first line"
    if (count, first, last) != (entry.count, entry.first_offset, entry.last_offset):
        raise RecordingError(
            f"{entry.file}: ends {after}: {count} message(s) at offsets {first}..{last}, the "
            f"manifest says {entry.count} at {entry.first_offset}..{entry.last_offset} "
            "(lines removed)"
        )
    if (frames, low, high) != (entry.frames, entry.first_timestamp_ms, entry.last_timestamp_ms):
        raise RecordingError(
            f"{entry.file}: offset {last}: frames or timestamps differ from the manifest"
        )
    if size != entry.bytes or sha256 != entry.sha256:
        raise RecordingError(
            f"{entry.file}: {'size' if size != entry.bytes else 'sha256'} mismatch "
            f"(file edited; every line up to offset {last} checks out)"
        )


def open_recording(path: Path) -> Recording:
    """Open a recording after checking all of it: the manifest, each partition file's size,
    SHA-256 and lines (crc, offsets, counts), and each frame file's SHA-256."""
    root = Path(path)
    if not root.is_dir():
        raise RecordingError(f"{root}: not a directory")
    try:
        text = (root / MANIFEST).read_bytes()
    except FileNotFoundError:
        raise RecordingError(f"{MANIFEST} missing: incomplete recording") from None
    except OSError as error:
        raise RecordingError(f"{MANIFEST}: cannot be read ({error.strerror})") from None
    manifest = Manifest.from_json(text)
    for entry in manifest.partitions:
        _verify(root, entry)
    return Recording(root, manifest)
