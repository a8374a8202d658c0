"""The Kafka topics of the IOC, their keys and their configs (see README, "Topics")."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ioc.config import KafkaSettings

HOUR_MS = 3_600_000


@dataclass(frozen=True)
class TopicSpec:
    name: str
    key: str
    value: str
    config: dict[str, str] = field(default_factory=dict)


CAMERA_FRAMES = "ioc.camera.frames"
VISION_DETECTIONS = "ioc.vision.detections"
HOTLINE_TICKETS = "ioc.hotline.tickets"
SENSOR_EVENTS = "ioc.sensor.events"
INCIDENT_CANDIDATES = "ioc.incidents.candidates"
INCIDENTS = "ioc.incidents"
ALERTS = "ioc.alerts"
DLQ = "ioc.dlq"

TOPICS: tuple[TopicSpec, ...] = (
    TopicSpec(
        CAMERA_FRAMES,
        "camera id",
        "JPEG bytes; headers camera_id, event_time, seq",
        {"max.message.bytes": str(8 * 1024 * 1024)},
    ),
    TopicSpec(VISION_DETECTIONS, "camera id", "FrameDetections JSON"),
    TopicSpec(HOTLINE_TICKETS, "ticket id", "Ticket JSON (Open311 + channel, reporter contact)"),
    TopicSpec(SENSOR_EVENTS, "sensor id", "SensorEvent JSON (FIWARE key-value)"),
    TopicSpec(
        INCIDENT_CANDIDATES,
        "fusion region",
        "Incident JSON: one source's candidate, latest state (fusion reads a region in order)",
    ),
    TopicSpec(
        INCIDENTS,
        "incident id",
        "FusedIncident JSON, each version (fusion, timers, staff)",
        {"cleanup.policy": "compact,delete"},
    ),
    TopicSpec(ALERTS, "incident id", "Alert JSON, one per delivery"),
    TopicSpec(
        DLQ,
        "source topic",
        "original bytes; headers reason, source topic/partition/offset",
        {"retention.ms": str(30 * 24 * HOUR_MS), "max.message.bytes": str(8 * 1024 * 1024)},
    ),
)


def topic_configs(spec: TopicSpec, kafka: KafkaSettings) -> dict[str, str]:
    """The spec's own configs over the default retention and the cluster's min ISR (a write
    acknowledged with acks=all is on that many replicas)."""
    return {
        "retention.ms": str(kafka.retention_hours * HOUR_MS),
        "min.insync.replicas": str(kafka.effective_min_insync_replicas),
    } | spec.config
