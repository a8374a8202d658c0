from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

from ioc import topics
from ioc.models import Ticket, load_sensor_registry
from ioc.scenario.plan import build_plan
from ioc.sensors import fiware
from ioc.streams import rules


def test_plan_covers_every_flow_in_time_order(samples_dir: Path) -> None:
    plan = build_plan(samples_dir, duration_s=60, frame_interval_s=2, sensor_interval_s=4)
    per_topic = Counter(item.topic for item in plan)
    assert per_topic[topics.HOTLINE_TICKETS] == 32 + 1 + 2  # samples, a second report, bad ones
    assert per_topic[topics.CAMERA_FRAMES] == 3 * 30 + 1
    assert per_topic[topics.SENSOR_EVENTS] == 3 * 15 + 2
    assert [item.at_s for item in plan] == sorted(item.at_s for item in plan)
    assert all(0 <= item.at_s <= 60 for item in plan)
    assert sum(item.bad for item in plan) == 5


def test_exactly_one_sensor_crosses_its_alert_level_once(samples_dir: Path) -> None:
    registry = load_sensor_registry()
    plan = build_plan(samples_dir, duration_s=120, frame_interval_s=2, sensor_interval_s=4)
    open_by_sensor: dict[str, str | None] = {}
    opened = []
    for item in plan:
        if item.topic != topics.SENSOR_EVENTS or item.bad:
            continue
        event = fiware.parse_observation(item.value)
        spec = registry.get(event.id)
        incident = rules.sensor_crossing(event, spec, open_by_sensor.get(event.id), 0)
        if incident:
            opened.append(event.id)
            open_by_sensor[event.id] = incident.id
    assert opened == ["tn-wl-cau-gia-bay"]


def test_tickets_arrive_as_new_reports_each_run(samples_dir: Path) -> None:
    first = build_plan(samples_dir, 60, 2, 4, start=datetime(2026, 11, 23, 1, 0, tzinfo=UTC))
    second = build_plan(samples_dir, 60, 2, 4, start=datetime(2026, 11, 23, 1, 5, tzinfo=UTC))

    def tickets(plan: list) -> list[Ticket]:
        return [
            Ticket.model_validate_json(item.value)
            for item in plan
            if item.topic == topics.HOTLINE_TICKETS and not item.bad
        ]

    ids_first = {t.service_request_id for t in tickets(first)}
    assert len(ids_first) == 33
    assert not ids_first & {t.service_request_id for t in tickets(second)}
    ticket = tickets(first)[0]
    assert ticket.service_request_id.startswith("S-0001-")
    assert ticket.requested_datetime.utcoffset() == timedelta(hours=7), "keeps the time zone"
    window = (datetime(2026, 11, 23, 1, 0, tzinfo=UTC), datetime(2026, 11, 23, 1, 1, tzinfo=UTC))
    assert window[0] <= ticket.requested_datetime <= window[1]
