from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

from ioc.assets import DEMO_SENSOR_RULES_PATH
from ioc.devtools.scenario.plan import build_plan
from ioc.kafka import topics
from ioc.models import Ticket, load_sensor_registry
from ioc.rules.sensor.registry import RuleSet
from ioc.streams.agents.readings import SensorFlow
from ioc.streams.keyed import Message, partition_of


def test_plan_covers_every_flow_in_time_order(samples_dir: Path) -> None:
    plan = build_plan(samples_dir, duration_s=60, frame_interval_s=2, sensor_interval_s=4)
    per_topic = Counter(item.topic for item in plan)
    assert per_topic[topics.HOTLINE_TICKETS] == 32 + 1 + 2  # samples, a second report, bad ones
    assert per_topic[topics.CAMERA_FRAMES] == 3 * 30 + 1
    assert per_topic[topics.SENSOR_EVENTS] == 3 * 15 + 2
    assert [item.at_s for item in plan] == sorted(item.at_s for item in plan)
    assert all(0 <= item.at_s <= 60 for item in plan)
    assert sum(item.bad for item in plan) == 5


def test_one_sensor_rises_fast_then_above_its_alert_level(samples_dir: Path) -> None:
    """The demo's sensor story, judged by the real flow and rules (no broker)."""
    start = datetime(2026, 11, 23, 1, 0, tzinfo=UTC)
    plan = build_plan(samples_dir, 120, 2, 4, start=start)
    rules = RuleSet.load(DEMO_SENSOR_RULES_PATH)  # what the demo's workers run
    flow = SensorFlow(load_sensor_registry(), rules, 3, stored_state=lambda _: None)
    messages = [
        Message(
            value=item.value,
            partition=partition_of(item.key.decode(), 3),
            offset=offset,
            timestamp_ms=int((start + timedelta(seconds=item.at_s)).timestamp() * 1000),
        )
        for offset, item in enumerate(plan)
        if item.topic == topics.SENSOR_EVENTS and not item.bad
    ]
    output = flow.process(messages)
    assert not output.rejected, "no reading is ahead of its arrival or otherwise refused"
    opened = [
        (i.source_key, i.evidence["condition"])
        for i in output.incidents
        if i.evidence["action"] == "open"
    ]
    assert opened == [("tn-wl-cau-gia-bay", "rate_of_rise"), ("tn-wl-cau-gia-bay", "alert")]
    assert {i.severity for i in output.incidents} == {"high"}, "both page the hotline staff"
    # Readings every 4 s: the first minute's window of each sensor has closed, with 15 in it.
    assert sorted((w.sensor_id, w.start, w.count) for w in output.windows) == [
        (spec.id, start, 15) for spec in sorted(load_sensor_registry().sensors, key=lambda s: s.id)
    ]


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
