"""aiokafka clients configured the same way in every `ioc` process."""

from __future__ import annotations

import logging

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from ioc.config import KafkaSettings

MAX_MESSAGE_BYTES = 8 * 1024 * 1024


class _NoPayloads(logging.Filter):
    """Drops aiokafka's debug line that prints every produced value (a ticket with its phone)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("Sending (key=")


def hide_produced_payloads() -> None:
    """Message values never reach the log, whatever the log level (idempotent; Faust's producer
    logs through the same aiokafka logger)."""
    logger = logging.getLogger("aiokafka.producer.producer")
    if not any(isinstance(existing, _NoPayloads) for existing in logger.filters):
        logger.addFilter(_NoPayloads())


def producer(kafka: KafkaSettings, client_id: str) -> AIOKafkaProducer:
    hide_produced_payloads()
    return AIOKafkaProducer(
        bootstrap_servers=kafka.bootstrap_servers,
        client_id=client_id,
        acks="all",
        linger_ms=5,
        max_request_size=MAX_MESSAGE_BYTES + 64 * 1024,
    )


def consumer(kafka: KafkaSettings, group_id: str, *topics: str) -> AIOKafkaConsumer:
    """At-least-once: offsets are committed by the caller after its outputs are acknowledged."""
    return AIOKafkaConsumer(
        *topics,
        bootstrap_servers=kafka.bootstrap_servers,
        group_id=group_id,
        client_id=group_id,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        max_partition_fetch_bytes=MAX_MESSAGE_BYTES + 64 * 1024,
    )
