"""Schemas shared by the publisher, the agents, the sink, the workers and the tests."""

from ioc.models.events import (
    BoundingBox,
    Detection,
    FrameDetections,
    FrameHeaders,
    FrameStats,
    SensorEvent,
    Ticket,
)
from ioc.models.incidents import (
    Alert,
    FusedIncident,
    FusedStatus,
    Incident,
    IncidentKind,
    IncidentSource,
    Member,
    Notification,
    Resolution,
    Severity,
)
from ioc.models.registry import SensorRegistry, SensorSpec, load_sensor_registry

__all__ = [
    "Alert",
    "BoundingBox",
    "Detection",
    "FrameDetections",
    "FrameHeaders",
    "FrameStats",
    "FusedIncident",
    "FusedStatus",
    "Incident",
    "IncidentKind",
    "IncidentSource",
    "Member",
    "Notification",
    "Resolution",
    "SensorEvent",
    "SensorRegistry",
    "SensorSpec",
    "Severity",
    "Ticket",
    "load_sensor_registry",
]
