"""Dead letters: the original bytes of a message that could not be processed, with the reason.

Every consumer in `ioc` (Faust agents, the vision worker, the alert consumer) sends what it cannot
process here instead of crashing or dropping it.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Protocol

from ioc.models.base import epoch_ms, from_epoch_ms, utc_now

if TYPE_CHECKING:
    from aiokafka import AIOKafkaProducer

log = logging.getLogger(__name__)
# A larger value keeps only its head in the dead letter (header `value_bytes` says how large it
# was): the whole message stays on its source topic, at the partition and offset named.
KEPT_VALUE_BYTES = 1024 * 1024


class SourceRecord(Protocol):
    """What a dead letter needs of a consumed record (aiokafka's and Faust's both fit)."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None


@dataclass(frozen=True)
class DeadLetter:
    value: bytes | None
    key: bytes | None
    reason: str
    source_topic: str
    source_partition: int
    source_offset: int
    consumer: str
    value_bytes: int | None = None  # the original size, when `value` is only its head

    @classmethod
    def of(cls, record: SourceRecord, reason: str, consumer: str) -> DeadLetter:
        log.warning(
            "dead letter from %s[%s]@%s: %s", record.topic, record.partition, record.offset, reason
        )
        value = record.value
        size = len(value) if value is not None else 0
        return cls(
            value=value[:KEPT_VALUE_BYTES] if value is not None else None,
            value_bytes=size if size > KEPT_VALUE_BYTES else None,
            key=record.key,
            reason=reason,
            source_topic=record.topic,
            source_partition=record.partition,
            source_offset=record.offset,
            consumer=consumer,
        )

    def headers(self) -> list[tuple[str, bytes]]:
        return [
            ("reason", self.reason[:2000].encode()),
            ("source_topic", self.source_topic.encode()),
            ("source_partition", str(self.source_partition).encode()),
            ("source_offset", str(self.source_offset).encode()),
            ("source_key", self.key or b""),
            ("consumer", self.consumer.encode()),
            ("failed_at_ms", str(epoch_ms(utc_now())).encode()),
            *([("value_bytes", str(self.value_bytes).encode())] if self.value_bytes else []),
        ]


@dataclass(frozen=True)
class RecordedDeadLetter:
    """A DLQ record as the walls count it (a row of `dead_letters`); the bytes stay on the topic.

    Read leniently: a record someone put on the DLQ by hand still gets a row, with what it has.
    """

    dlq_partition: int
    dlq_offset: int
    failed_at: datetime
    source_topic: str
    source_partition: int | None
    source_offset: int | None
    consumer: str
    reason: str
    size_bytes: int

    @classmethod
    def of(
        cls,
        partition: int,
        offset: int,
        timestamp_ms: int,
        headers: Iterable[tuple[str, bytes]],
        value: bytes | None,
    ) -> RecordedDeadLetter:
        found = {key: raw.decode(errors="replace") for key, raw in headers}

        def number(name: str) -> int | None:
            try:
                return int(found[name])
            except (KeyError, ValueError):
                return None

        return cls(
            dlq_partition=partition,
            dlq_offset=offset,
            failed_at=from_epoch_ms(number("failed_at_ms") or timestamp_ms),
            source_topic=found.get("source_topic", "(unknown)"),
            source_partition=number("source_partition"),
            source_offset=number("source_offset"),
            consumer=found.get("consumer", "(unknown)"),
            reason=found.get("reason", "(no reason header)"),
            size_bytes=len(value or b""),
        )


def describe_validation_error(error: Exception) -> str:
    """One line a person can act on, e.g. `invalid Ticket: description: Field required`."""
    from pydantic import ValidationError

    if isinstance(error, ValidationError):
        parts = [
            f"{'.'.join(str(p) for p in item['loc']) or '(root)'}: {item['msg']}"
            for item in error.errors()
        ]
        return f"invalid {error.title}: " + "; ".join(parts[:5])
    return f"{type(error).__name__}: {error}"


async def send_dead_letter(
    producer: AIOKafkaProducer, dlq_topic: str, record: SourceRecord, reason: str, consumer: str
) -> None:
    """Publish a dead letter from a plain aiokafka client (the Faust app has its own topic)."""
    letter = DeadLetter.of(record, reason, consumer)
    await producer.send_and_wait(
        dlq_topic, key=letter.source_topic.encode(), value=letter.value, headers=letter.headers()
    )
