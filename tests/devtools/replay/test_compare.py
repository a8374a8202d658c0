"""The incident diff between two replays (no services)."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

from ioc.devtools.replay.compare import CANDIDATE_FIELDS, diff
from ioc.devtools.replay.replay import CandidateView

T0 = datetime(2026, 11, 20, 1, 0, tzinfo=UTC)


def candidate(id: str, key: str, kind: str = "water_level_high", at_s: float = 0) -> CandidateView:
    return CandidateView(
        id=id,
        source="sensor",
        source_key=key,
        kind=kind,
        severity="high",
        status="open",
        event_time=T0 + timedelta(seconds=at_s),
        reports=1,
    )


def test_same_id_with_other_severity_or_time_is_a_change() -> None:
    a = [candidate("inc-1", "wl-1"), candidate("inc-2", "wl-2")]
    b = [replace(a[0], severity="urgent"), replace(a[1], event_time=T0 + timedelta(seconds=90))]
    found = diff(a, b, CANDIDATE_FIELDS)
    assert found.same == 0 and not found.only_a and not found.only_b
    assert [c.fields for c in found.changed] == [("severity",), ("event_time",)]
    assert found.changed[1].shift_s == 90


def test_another_id_from_the_same_source_and_kind_is_the_same_incident_moved() -> None:
    """A changed hold opens the sensor's incident at another time (and so with another id)."""
    a = [candidate("inc-early", "wl-1", at_s=0), candidate("inc-x", "wl-9", at_s=5)]
    b = [candidate("inc-late", "wl-1", at_s=120), candidate("inc-x", "wl-9", at_s=5)]
    found = diff(a, b, CANDIDATE_FIELDS)
    assert found.same == 1
    assert [(c.a.id, c.b.id, c.fields, c.shift_s) for c in found.changed] == [
        ("inc-early", "inc-late", ("event_time",), 120.0)
    ]


def test_incidents_of_one_side_only_are_listed_and_pairs_take_the_nearest() -> None:
    a = [candidate("a1", "wl-1", at_s=0), candidate("a2", "wl-1", at_s=3000)]
    b = [candidate("b1", "wl-1", at_s=2900), candidate("b2", "aq-1", kind="air_quality_poor")]
    found = diff(a, b, CANDIDATE_FIELDS)
    assert [v.id for v in found.only_a] == ["a1"]
    assert [v.id for v in found.only_b] == ["b2"]
    assert [(c.a.id, c.b.id) for c in found.changed] == [("a2", "b1")]
    assert not found.empty
    assert diff(a, a, CANDIDATE_FIELDS).empty
