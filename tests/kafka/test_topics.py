"""Each topic's contract: its key, its value model, and what it makes of bytes that do not fit."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
from pydantic import ValidationError

from ioc.kafka import topics
from ioc.models import Incident, IncidentKind, IncidentSource, Severity, Ticket
from ioc.models.incidents import IncidentStatus

TICKET = Ticket(
    service_request_id="TN-1",
    requested_datetime=datetime(2026, 12, 6, 8, 0, tzinfo=UTC),
    channel="phone",
    description="Cháy nhà ở tổ 5, khói đen",
)


def test_a_ticket_is_keyed_by_its_id_and_comes_back_equal() -> None:
    key, value = topics.TICKETS.encode(TICKET)
    assert key == b"TN-1"
    assert topics.TICKETS.decode(value) == TICKET


def test_a_value_that_does_not_fit_its_topic_names_the_field() -> None:
    broken = json.loads(topics.TICKETS.encode(TICKET)[1]) | {"requested_datetime": "yesterday"}
    with pytest.raises(ValidationError, match="requested_datetime"):
        topics.TICKETS.decode(json.dumps(broken).encode())
    with pytest.raises(ValidationError):
        topics.TICKETS.decode(None)  # a tombstone is not a ticket


def test_a_candidate_needs_its_region_for_a_key() -> None:
    candidate = Incident(
        id="inc-1",
        kind=IncidentKind.FIRE,
        severity=Severity.URGENT,
        source=IncidentSource.HOTLINE,
        source_key="TN-1",
        title="Cháy nhà",
        status=IncidentStatus.OPEN,
        event_time=TICKET.requested_datetime,
        ingested_at_ms=0,
    )
    with pytest.raises(TypeError, match="fusion region"):
        topics.CANDIDATES.encode(candidate)
    key, value = topics.CANDIDATES.encode(candidate, key="thai-nguyen")
    assert key == b"thai-nguyen" and topics.CANDIDATES.decode(value) == candidate


def test_topics_of_bytes_have_no_model_to_decode_with() -> None:
    for topic in (topics.FRAMES, topics.SENSORS, topics.DEAD_LETTERS):
        with pytest.raises(TypeError, match="carries bytes"):
            topic.decode(b"{}")


def test_every_topic_is_listed_once() -> None:
    names = [topic.name for topic in topics.TOPICS]
    assert len(names) == len(set(names)) == 8
