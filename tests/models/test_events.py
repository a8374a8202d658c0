from datetime import UTC, datetime
from pathlib import Path

import pytest
from pydantic import ValidationError

from ioc.models import FrameHeaders, SensorEvent, Ticket, load_sensor_registry
from ioc.models.registry import SensorRegistry


def test_every_sample_ticket_is_valid(samples_dir: Path) -> None:
    tickets = [
        Ticket.model_validate_json(line)
        for line in (samples_dir / "tickets_1022.jsonl").read_text().splitlines()
    ]
    assert len({t.service_request_id for t in tickets}) == 32


def test_ticket_rejects_naive_time_and_unknown_fields() -> None:
    base = {"service_request_id": "S-1", "channel": "app", "description": "x"}
    with pytest.raises(ValidationError, match="timezone"):
        Ticket.model_validate(base | {"requested_datetime": "2026-11-20T08:00:00"})
    with pytest.raises(ValidationError, match="Extra inputs"):
        Ticket.model_validate(
            base | {"requested_datetime": "2026-11-20T08:00:00Z", "reporter": "x"}
        )


def test_sensor_event_rejects_non_finite_and_empty_measurements() -> None:
    with pytest.raises(ValidationError, match="non-finite"):
        SensorEvent(
            id="s", type="T", dateObserved=datetime.now(UTC), measurements={"x": float("nan")}
        )
    with pytest.raises(ValidationError):
        SensorEvent(id="s", type="T", dateObserved=datetime.now(UTC), measurements={})


def test_frame_headers_round_trip_through_kafka_headers() -> None:
    headers = FrameHeaders(camera_id="cam-1", event_time=datetime(2026, 11, 20, tzinfo=UTC), seq=7)
    assert FrameHeaders.from_kafka(headers.to_kafka()) == headers


def test_bundled_sensor_registry_is_valid_and_duplicates_are_rejected() -> None:
    registry = load_sensor_registry()
    assert registry.get("tn-wl-cau-gia-bay") is not None
    sensor = registry.sensors[0].model_dump()
    with pytest.raises(ValidationError, match="duplicate"):
        SensorRegistry.model_validate({"sensors": [sensor, sensor]})


def test_ticket_answers_are_kept_apart_from_the_description() -> None:
    base = {
        "service_request_id": "S-1",
        "requested_datetime": "2026-11-20T08:00:00Z",
        "channel": "app",
        "description": "Cháy nhà",
        "service_code": "chay_no",
    }
    assert Ticket.model_validate(base).attributes == {}
    ticket = Ticket.model_validate(base | {"attributes": {"nguoi_mac_ket": ["co"]}})
    assert ticket.attributes == {"nguoi_mac_ket": ("co",)} and ticket.description == "Cháy nhà"
    assert Ticket.model_validate_json(ticket.to_bytes()) == ticket
    for bad in ({"nguoi_mac_ket": []}, {"nguoi_mac_ket": [""]}, {"a b": ["co"]}, ["co"]):
        with pytest.raises(ValidationError, match="attributes"):
            Ticket.model_validate(base | {"attributes": bad})
