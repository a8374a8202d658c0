"""The notification rules every channel shares: one page when an incident fires, one when it
escalates, one when it resolves, nothing while it is acknowledged or below the paging level."""

from __future__ import annotations

from datetime import UTC, datetime

from ioc.alerts.consumer import due
from ioc.models import FusedIncident, Notification, Severity

WHEN = datetime(2026, 11, 23, 3, 0, tzinfo=UTC)
PAGING = Severity.at_least("high")
FIRING, ESCALATED, RESOLVED = Notification.FIRING, Notification.ESCALATED, Notification.RESOLVED


def incident(status: str = "open", severity: str = "urgent", **extra: object) -> FusedIncident:
    return FusedIncident(
        id="inc-1",
        version=1,
        change="opened",
        kind="fire",
        severity=severity,
        status=status,
        title="Cháy",
        event_time=WHEN,
        opened_at=WHEN,
        status_since=WHEN,
        ingested_at_ms=0,
        sources=1,
        members=[],
        **extra,
    )


def test_an_open_paging_incident_fires_once() -> None:
    assert due(incident(), PAGING, set()) == [FIRING]
    assert due(incident(), PAGING, {FIRING}) == []


def test_below_the_paging_level_nobody_is_paged_until_it_rises() -> None:
    assert due(incident(severity="normal"), PAGING, set()) == []
    assert due(incident(severity="high"), PAGING, set()) == [FIRING]


def test_acknowledged_incidents_page_nobody() -> None:
    assert due(incident("acknowledged"), PAGING, set()) == []
    assert due(incident("acknowledged", escalated_at=WHEN), PAGING, {FIRING}) == []


def test_escalation_follows_the_page_once() -> None:
    escalated = incident(escalated_at=WHEN)
    assert due(escalated, PAGING, {FIRING}) == [ESCALATED]
    assert due(escalated, PAGING, set()) == [FIRING, ESCALATED]  # the first page failed
    assert due(escalated, PAGING, {FIRING, ESCALATED}) == []


def test_a_resolution_is_told_only_to_those_who_were_paged() -> None:
    assert due(incident("resolved"), PAGING, {FIRING}) == [RESOLVED]
    assert due(incident("merged"), PAGING, {FIRING}) == [RESOLVED]
    assert due(incident("resolved"), PAGING, set()) == []
    assert due(incident("resolved"), PAGING, {FIRING, RESOLVED}) == []
