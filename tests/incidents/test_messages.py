"""The one place that picks an incident message's topic and key (no services)."""

from __future__ import annotations

from datetime import UTC, datetime

from ioc.config import Settings
from ioc.incidents.messages import to_alerting, to_fusion
from ioc.models import FusedIncident, Incident

WHEN = datetime(2026, 12, 6, 1, 0, tzinfo=UTC)


def settings() -> Settings:
    base = Settings()
    return base.model_copy(
        update={
            "kafka": base.kafka.model_copy(update={"topic_prefix": "lab."}),
            "fusion": base.fusion.model_copy(update={"region": "thai-nguyen"}),
        }
    )


def test_a_candidate_goes_to_fusion_keyed_by_the_region() -> None:
    candidate = Incident(
        id="inc-9",
        kind="fire",
        severity="high",
        source="vision",
        source_key="cam-1",
        title="Cháy",
        event_time=WHEN,
        ingested_at_ms=1,
    )
    message = to_fusion(settings(), candidate)
    assert (message.topic, message.key) == ("lab.ioc.incidents.candidates", b"thai-nguyen")
    assert Incident.model_validate_json(message.value) == candidate


def test_a_version_goes_to_alerting_keyed_by_the_incident() -> None:
    version = FusedIncident.model_validate(
        {
            "id": "inc-9",
            "version": 3,
            "change": "acknowledged",
            "kind": "fire",
            "severity": "urgent",
            "status": "acknowledged",
            "title": "Cháy",
            "event_time": WHEN,
            "opened_at": WHEN,
            "status_since": WHEN,
            "ingested_at_ms": 0,
            "sources": 1,
            "reports": 0,
            "members": [],
        }
    )
    message = to_alerting(settings(), version)
    assert (message.topic, message.key) == ("lab.ioc.incidents", b"inc-9")
    assert FusedIncident.model_validate_json(message.value) == version
