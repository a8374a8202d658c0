"""The incident messages every adapter sends once its database change is committed (the streams
agents, the API, the CLI), so that topic and key are chosen in one place: a candidate goes to
fusion keyed by the fusion region (fusion reads a region in order); a version of an incident
staff act on goes to alerting keyed by its id (the topic is compacted to each incident's newest).
"""

from __future__ import annotations

from dataclasses import dataclass

from ioc.config import Settings
from ioc.kafka import topics
from ioc.models import FusedIncident, Incident


@dataclass(frozen=True)
class Outgoing:
    topic: str
    key: bytes
    value: bytes


def to_fusion(settings: Settings, candidate: Incident) -> Outgoing:
    key, value = topics.CANDIDATES.encode(candidate, key=settings.fusion.region)
    return Outgoing(settings.kafka.topic(topics.CANDIDATES.name), key, value)


def to_alerting(settings: Settings, version: FusedIncident) -> Outgoing:
    return Outgoing(settings.kafka.topic(topics.FUSED.name), *topics.FUSED.encode(version))


__all__ = ["Outgoing", "to_alerting", "to_fusion"]
