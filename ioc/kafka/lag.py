"""Consumer-group lag read from Kafka itself: committed offsets against the log end.

Used by the demo and tests to know when the pipeline has drained, and by the streams leader to
record lag for the pipeline-health wall.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence

from ioc.config import KafkaSettings
from ioc.kafka import clients as kafka_clients


def consumer_lag(
    kafka: KafkaSettings, groups: Mapping[str, Sequence[str]]
) -> dict[tuple[str, str], int]:
    """Per (group, topic), messages not yet committed over all partitions (blocking I/O)."""
    from kafka import TopicPartition

    # kafka-python cannot decode Faust's member metadata and warns on every call; harmless.
    logging.getLogger("kafka.admin._groups").setLevel(logging.ERROR)
    admin = kafka_clients.admin(kafka, "ioc-lag")
    reader = kafka_clients.reader(kafka, client_id="ioc-lag")
    try:
        committed_by_group = admin.list_group_offsets(list(groups))
        lags: dict[tuple[str, str], int] = {}
        for group, topics in groups.items():
            committed = committed_by_group.get(group, {})
            for topic in topics:
                partitions = [
                    TopicPartition(topic, p) for p in reader.partitions_for_topic(topic) or ()
                ]
                ends = reader.end_offsets(partitions)
                lags[(group, topic)] = sum(
                    max(0, ends[tp] - (committed[tp].offset if tp in committed else 0))
                    for tp in partitions
                )
        return lags
    finally:
        reader.close()
        admin.close()


__all__ = ["consumer_lag"]
