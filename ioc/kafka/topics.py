"""The Kafka topics of the IOC, their keys and their configs (see README, "Topics")."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from ioc.models.base import WireModel
from ioc.models.events import FrameDetections, Ticket
from ioc.models.incidents import Alert, FusedIncident, Incident

if TYPE_CHECKING:
    from ioc.config import KafkaSettings

HOUR_MS = 3_600_000
# A message a worker derived from other input (a camera line's traffic flow on the sensors topic):
# a replay regenerates it from those inputs, so it skips the recorded one.
DERIVED_HEADER = "ioc-derived"


def is_derived(headers: Iterable[tuple[str, bytes]]) -> bool:
    return any(name == DERIVED_HEADER for name, _ in headers)


Value = TypeVar("Value", bound=WireModel)


@dataclass(frozen=True)
class Topic(Generic[Value]):
    """A topic's contract: its name, what its key is, what its values are and its configs. A
    topic of JSON values knows their model: `decode` validates a value (a `ValidationError`
    names what is wrong, for the dead-letter reason) and `encode` makes the record of one,
    keyed by `key_of` unless the key is not in the value (the candidates' fusion region)."""

    name: str
    key: str
    value: str
    config: dict[str, str] = field(default_factory=dict)
    model: type[Value] | None = None  # None: bytes as they came (frames, raw FIWARE, letters)
    key_of: Callable[[Value], str] | None = None

    def decode(self, raw: bytes | None) -> Value:
        if self.model is None:
            raise TypeError(f"{self.name} carries bytes, not a model")
        return self.model.model_validate_json(raw or b"")

    def encode(self, value: Value, key: str | None = None) -> tuple[bytes, bytes]:
        """(key, value) bytes of the record for `value`."""
        if key is None:
            if self.key_of is None:
                raise TypeError(f"{self.name} is keyed by {self.key}: give the key")
            key = self.key_of(value)
        return key.encode(), value.to_bytes()


CAMERA_FRAMES = "ioc.camera.frames"
VISION_DETECTIONS = "ioc.vision.detections"
HOTLINE_TICKETS = "ioc.hotline.tickets"
SENSOR_EVENTS = "ioc.sensor.events"
INCIDENT_CANDIDATES = "ioc.incidents.candidates"
INCIDENTS = "ioc.incidents"
ALERTS = "ioc.alerts"
DLQ = "ioc.dlq"

FRAMES = Topic[WireModel](
    CAMERA_FRAMES,
    "camera id",
    "JPEG bytes; headers camera_id, event_time, seq",
    {"max.message.bytes": str(8 * 1024 * 1024)},
)
DETECTIONS = Topic(
    VISION_DETECTIONS,
    "camera id",
    "FrameDetections JSON",
    model=FrameDetections,
    key_of=lambda detections: detections.camera_id,
)
TICKETS = Topic(
    HOTLINE_TICKETS,
    "ticket id",
    "Ticket JSON (Open311 + channel, reporter contact)",
    model=Ticket,
    key_of=lambda ticket: ticket.service_request_id,
)
SENSORS = Topic[WireModel](
    SENSOR_EVENTS, "sensor id", "FIWARE entities as sent (NGSI-v2, NGSI-LD or key-value JSON)"
)
CANDIDATES = Topic(
    INCIDENT_CANDIDATES,
    "fusion region",
    "Incident JSON: one source's candidate, latest state (fusion reads a region in order)",
    model=Incident,
)
FUSED = Topic(
    INCIDENTS,
    "incident id",
    "FusedIncident JSON, each version (fusion, timers, staff)",
    {"cleanup.policy": "compact,delete"},
    model=FusedIncident,
    key_of=lambda incident: incident.id,
)
ALERTS_SENT = Topic(
    ALERTS,
    "incident id",
    "Alert JSON, one per delivery",
    model=Alert,
    key_of=lambda alert: alert.incident_id,
)
DEAD_LETTERS = Topic[WireModel](
    DLQ,
    "source topic",
    "original bytes; headers reason, source topic/partition/offset",
    {"retention.ms": str(30 * 24 * HOUR_MS), "max.message.bytes": str(8 * 1024 * 1024)},
)

TOPICS: tuple[Topic[Any], ...] = (
    FRAMES,
    DETECTIONS,
    TICKETS,
    SENSORS,
    CANDIDATES,
    FUSED,
    ALERTS_SENT,
    DEAD_LETTERS,
)


def topic_configs(spec: Topic[Any], kafka: KafkaSettings) -> dict[str, str]:
    """The spec's own configs over the default retention and the cluster's min ISR (a write
    acknowledged with acks=all is on that many replicas)."""
    return {
        "retention.ms": str(kafka.retention_hours * HOUR_MS),
        "min.insync.replicas": str(kafka.effective_min_insync_replicas),
    } | spec.config
