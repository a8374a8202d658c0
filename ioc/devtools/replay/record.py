"""Export a time range of Kafka topics to a recording directory (`ioc record`)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

from aiokafka import TopicPartition

from ioc.config import KafkaSettings
from ioc.devtools.replay.recording import Manifest, RecordedMessage, RecordingError, RecordingWriter
from ioc.kafka.clients import MAX_MESSAGE_BYTES, aio_admin, aio_consumer
from ioc.models.base import VIETNAM_TIME

FETCH_TIMEOUT_MS = 500
# Producers stamp messages themselves (CreateTime), so timestamps are not quite in offset order:
# a partition is read on to the first message this far past the window's end.
OUT_OF_ORDER_MS = 5 * 60 * 1000


def parse_time(text: str, *, now_ok: bool = False) -> datetime:
    """An ISO 8601 time; without an offset it is Vietnam time. `now` when `now_ok`."""
    cleaned = text.strip()
    if now_ok and cleaned.lower() == "now":
        return datetime.now(UTC)
    try:
        moment = datetime.fromisoformat(cleaned)
    except ValueError:
        example = "2026-03-01T08:00" + (" or now" if now_ok else "")
        raise ValueError(f"not an ISO 8601 time: {text!r} (e.g. {example})") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=VIETNAM_TIME)
    return moment


def _ms(moment: datetime) -> int:
    """The first whole millisecond at or after `moment` (Kafka timestamps are milliseconds)."""
    micros = (moment - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(microseconds=1)
    return -(-micros // 1000)


async def _partitions(kafka: KafkaSettings, names: Sequence[str]) -> dict[str, list[int]]:
    """Each (existing) topic's partitions, from the broker (the consumer's metadata only knows
    topics it has been asked about)."""
    admin = aio_admin(kafka, "ioc-record")
    await admin.start()
    try:
        described = await admin.describe_topics(list(names))
    finally:
        await admin.close()
    layout = {
        topic["topic"]: sorted(partition["partition"] for partition in topic["partitions"])
        for topic in described
        if topic["error_code"] == 0
    }
    missing = [name for name in names if not layout.get(name)]
    if missing:
        raise RecordingError(f"no partitions found for topic(s): {', '.join(missing)}")
    return layout


async def record(
    kafka: KafkaSettings,
    topics: Sequence[str],
    start: datetime,
    end: datetime,
    out: Path,
    on_progress: Callable[[int], None] | None = None,
    keep: Callable[[RecordedMessage], bool] | None = None,
) -> Manifest:
    """Write every message of `topics` with a timestamp in [start, end) to the recording `out`.

    No consumer group: each partition is assigned, read from the first offset at/after `start`
    (`offsets_for_times`) up to the first offset at/after `end` plus `OUT_OF_ORDER_MS` (or the
    end of the partition when there is none), and messages whose timestamp lies outside the
    window are skipped (CreateTime need not follow the offsets), and so are those `keep`
    refuses, when given."""
    if start.tzinfo is None or end.tzinfo is None:
        raise RecordingError("--from and --to need a time zone")
    if start >= end:
        raise RecordingError(f"--from {start.isoformat()} is not before --to {end.isoformat()}")
    names = list(dict.fromkeys(topics))
    if not names:
        raise RecordingError("no topics to record")
    start_ms, end_ms = _ms(start), _ms(end)
    writer = RecordingWriter(out, start, end)
    consumer = aio_consumer(
        kafka,
        group_id=None,
        client_id="ioc-record",
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        max_partition_fetch_bytes=MAX_MESSAGE_BYTES + 64 * 1024,
        fetch_max_bytes=4 * (MAX_MESSAGE_BYTES + 64 * 1024),
    )
    try:
        await consumer.start()
        existing = await consumer.topics()
        unknown = [name for name in names if name not in existing]
        if unknown:
            raise RecordingError(f"unknown topic(s): {', '.join(unknown)}")
        layout = await _partitions(kafka, names)
        partitions = [
            TopicPartition(name, partition) for name in names for partition in layout[name]
        ]
        consumer.assign(partitions)
        firsts = await consumer.offsets_for_times(dict.fromkeys(partitions, start_ms))
        afters = await consumer.offsets_for_times(
            dict.fromkeys(partitions, end_ms + OUT_OF_ORDER_MS)
        )
        ends = await consumer.end_offsets(partitions)
        stops: dict[TopicPartition, int] = {}
        for tp in partitions:
            first, after = firsts.get(tp), afters.get(tp)
            stop = min(ends[tp], after.offset) if after is not None else ends[tp]
            begin = first.offset if first is not None else stop
            if begin < stop:
                consumer.seek(tp, begin)
                stops[tp] = stop
        consumer.pause(*(tp for tp in partitions if tp not in stops))
        written = 0
        while stops:
            batches = await consumer.getmany(*stops, timeout_ms=FETCH_TIMEOUT_MS)
            for tp, records in sorted(batches.items()):
                stop = stops.get(tp)
                if stop is None:
                    continue
                for message in records:
                    if message.offset >= stop:
                        break
                    if not start_ms <= message.timestamp < end_ms:
                        continue
                    recorded = RecordedMessage(
                        topic=tp.topic,
                        partition=tp.partition,
                        offset=message.offset,
                        timestamp_ms=message.timestamp,
                        key=message.key,
                        value=message.value,
                        headers=tuple(message.headers),
                    )
                    if keep is None or keep(recorded):
                        writer.add(recorded)
                        written += 1
            for tp in list(stops):
                # The position passes compacted gaps and transaction markers too.
                if await consumer.position(tp) >= stops[tp]:
                    del stops[tp]
                    consumer.pause(tp)
            if on_progress is not None:
                on_progress(written)
        manifest = writer.close()
        if on_progress is not None:
            on_progress(written)
    except BaseException:
        writer.abort()
        raise
    finally:
        await consumer.stop()
    return manifest
