"""The chain's pages, as a function of the incident and the moment: each step at its time and
repeats, none once acknowledged, again after the hold, afresh when reopened."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from ioc.dispatch.escalation import due_pages
from ioc.dispatch.roster import Chain, Step
from ioc.models import FusedIncident, Member

OPENED = datetime(2026, 12, 6, 8, 0, tzinfo=UTC)
CHAIN = Chain(
    hold_minutes=30,
    steps=[
        Step(role="duty_desk", after_minutes=0, repeat_minutes=3, times=2),
        Step(role="supervisor", after_minutes=5),
    ],
)


def incident(**changes: object) -> FusedIncident:
    member = Member(
        id="inc-1",
        source="vision",
        source_key="cam-1",
        kind="fire",
        severity="urgent",
        status="open",
        event_time=OPENED,
        title="Cháy",
    )
    fields: dict[str, object] = {
        "id": "inc-1",
        "version": 1,
        "change": "opened",
        "kind": "fire",
        "severity": "urgent",
        "status": "open",
        "title": "Cháy",
        "event_time": OPENED,
        "opened_at": OPENED,
        "status_since": OPENED,
        "ingested_at_ms": 1,
        "sources": 1,
        "members": [member],
    }
    return FusedIncident(**(fields | changes))  # type: ignore[arg-type]


def keys(fused: FusedIncident, minutes: float) -> list[str]:
    return [p.key for p in due_pages(fused, CHAIN, OPENED + timedelta(minutes=minutes))]


def test_an_open_incident_pages_each_step_at_its_time_and_repeats() -> None:
    assert keys(incident(), 0) == ["1:0:1:1"]
    assert keys(incident(), 2.9) == ["1:0:1:1"]
    assert keys(incident(), 3) == ["1:0:1:1", "1:0:1:2"]
    assert keys(incident(), 60) == ["1:0:1:1", "1:0:1:2", "1:0:2:1"], "twice, then the next step"
    pages = due_pages(incident(), CHAIN, OPENED + timedelta(minutes=60))
    assert [(p.role, p.step, p.round) for p in pages] == [
        ("duty_desk", 1, 1),
        ("duty_desk", 1, 2),
        ("supervisor", 2, 1),
    ]


def test_an_acknowledgement_stops_the_chain_until_the_hold_runs_out() -> None:
    acked = incident(status="acknowledged", acknowledged_at=OPENED + timedelta(minutes=4))
    assert keys(acked, 10) == [] and keys(acked, 33.9) == []
    assert keys(acked, 34) == ["1:1:1:1"], "unresolved 30 minutes after: from the first step"
    assert keys(acked, 39) == ["1:1:1:1", "1:1:1:2", "1:1:2:1"]
    assert keys(acked, 64) == ["1:2:1:1"], "and again each hold after that"


def test_a_resolved_incident_pages_nobody_and_a_reopened_one_starts_again() -> None:
    assert keys(incident(status="resolved"), 10) == []
    reopened = incident(episode=2, status_since=OPENED + timedelta(minutes=50))
    assert keys(reopened, 50) == ["2:0:1:1"]
