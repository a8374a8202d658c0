"""The sensor flow without a broker: batches of messages in, rows, windows and incidents out."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from ioc.models import SensorRegistry, SensorSpec
from ioc.rules.sensor.registry import RuleSet
from ioc.sensors import fiware
from ioc.streams.agents import readings as sensors_module
from ioc.streams.agents.readings import SensorFlow
from ioc.streams.keyed import Message, partition_of

T0 = datetime(2026, 11, 23, 8, 0, tzinfo=UTC)
PARTITIONS = 3


def spec(sensor_id: str) -> SensorSpec:
    return SensorSpec(
        id=sensor_id,
        name=f"Air {sensor_id}",
        type="AirQualityObserved",
        property="pm25",
        unit="µg/m³",
        alert_level=150.0,
        district="Phường Tân Thịnh",
        lat=21.58,
        lon=105.82,
    )


REGISTRY = SensorRegistry(sensors=[spec(f"aq-{n}") for n in range(6)])


class Log:
    """A sensor topic: readings get offsets per partition, arrival timestamps as given."""

    def __init__(self) -> None:
        self.offsets: dict[int, int] = {}

    def message(self, partition: int, value: bytes, arrived: datetime, tick: bool) -> Message:
        offset = self.offsets.get(partition, 0)
        self.offsets[partition] = offset + 1
        return Message(value, partition, offset, int(arrived.timestamp() * 1000), tick)

    def reading(self, sensor: str, observed: datetime, pm25: float, delay_s: float = 2) -> Message:
        value = json.dumps(fiware.entity(sensor, "AirQualityObserved", observed, pm25=pm25))
        arrived = observed + timedelta(seconds=delay_s)
        return self.message(partition_of(sensor, PARTITIONS), value.encode(), arrived, False)

    def tick(self, partition: int, now: datetime) -> Message:
        return self.message(partition, b"", now, True)


def flow(stored: dict[str, bytes] | None = None) -> SensorFlow:
    table = stored if stored is not None else {}
    return SensorFlow(REGISTRY, RuleSet.load(), PARTITIONS, stored_state=table.get)


def test_readings_become_rows_and_windows_close_as_event_time_moves_on() -> None:
    log = Log()
    readings = [log.reading("aq-1", T0 + timedelta(seconds=s), float(s)) for s in (0, 20, 40)]
    readings.append(log.reading("aq-1", T0 + timedelta(minutes=4), 1.0))
    output = flow().process(readings)
    assert [(r.sensor_id, r.property, r.value, r.late) for r in output.readings] == [
        ("aq-1", "pm25", v, False) for v in (0.0, 20.0, 40.0, 1.0)
    ]
    (closed,) = output.windows
    assert (closed.start, closed.count, closed.min, closed.max, closed.mean) == (
        T0,
        3,
        0.0,
        40.0,
        20.0,
    )
    assert set(output.changed) == {"aq-1"}


def test_messages_redelivered_after_a_restart_are_not_applied_twice() -> None:
    log = Log()
    first = [log.reading("aq-2", T0 + timedelta(seconds=s), 10.0 + s) for s in (0, 15, 30)]
    before = flow()
    output = before.process(first)
    table = {k: v.model_dump_json().encode() for k, v in output.changed.items()}

    after = flow(table)  # a new worker, its state restored from the changelog
    rest = [log.reading("aq-2", T0 + timedelta(seconds=45), 55.0)]
    rest.append(log.reading("aq-2", T0 + timedelta(minutes=4), 1.0))
    output = after.process(first + rest)  # the first three again: offsets not yet committed
    (closed,) = output.windows
    assert closed.count == 4 and closed.max == 55.0
    assert not output.rejected


def test_a_reading_behind_the_applied_offset_is_stored_again_but_not_counted() -> None:
    """Chaos run 27: a worker applied a sensor's later readings while one earlier reading of it
    never reached the flow, the held commit redelivered that one to the next worker, and the
    restored state said it was applied, so it was acknowledged and never stored."""
    log = Log()
    skipped = log.reading("aq-2", T0 + timedelta(seconds=10), 30.0)
    later = [log.reading("aq-2", T0 + timedelta(seconds=s), 10.0) for s in (20, 40)]
    output = flow().process(later)  # the gap: `skipped` never reached this worker's flow
    table = {k: v.model_dump_json().encode() for k, v in output.changed.items()}

    after = flow(table)
    closing = log.reading("aq-2", T0 + timedelta(minutes=4), 1.0)
    output = after.process([skipped, *later, closing])
    stored = [(r.observed_at, r.value, r.late) for r in output.readings]
    assert (T0 + timedelta(seconds=10), 30.0, True) in stored  # stored, marked not counted
    (closed,) = output.windows
    assert (closed.count, closed.max) == (2, 10.0)  # the windows count each reading once
    assert not output.rejected


def test_bad_readings_are_rejected_with_a_reason_and_the_rest_of_the_batch_goes_on() -> None:
    log = Log()
    good = log.reading("aq-3", T0, 12.0)
    future = log.reading("aq-3", T0 + timedelta(days=2), 12.0, delay_s=-2 * 86400)
    unknown = log.reading("aq-unregistered", T0, 12.0)
    broken = log.message(0, b"{not json", T0, False)
    output = flow().process([good, future, unknown, broken])
    reasons = dict(output.rejected)
    assert set(reasons) == {1, 2, 3}
    assert "device clock is wrong" in reasons[1]
    assert "not in the sensor registry" in reasons[2]
    assert "invalid JSON" in reasons[3]
    assert [r.value for r in output.readings] == [12.0]


def test_ticks_watch_the_sensors_of_their_partition_and_raise_offline() -> None:
    log = Log()
    sensors = flow()
    partition = partition_of("aq-4", PARTITIONS)
    mine = {s.id for s in REGISTRY.sensors if partition_of(s.id, PARTITIONS) == partition}
    first = sensors.process([log.tick(partition, T0)])
    assert set(first.changed) == mine, "every registry sensor is watched from the first tick"
    assert not first.incidents
    later = sensors.process([log.tick(partition, T0 + timedelta(minutes=16))])
    offline = {i.source_key for i in later.incidents if i.evidence["condition"] == "offline"}
    assert offline == mine, "the air rules allow 15 silent minutes"
    assert all(i.kind == "sensor_offline" and i.status == "open" for i in later.incidents)

    back = sensors.process([log.reading("aq-4", T0 + timedelta(minutes=17), 20.0)])
    assert [(i.source_key, i.status) for i in back.incidents] == [("aq-4", "resolved")]


def test_a_tick_closes_the_window_of_a_sensor_that_went_quiet() -> None:
    log = Log()
    sensors = flow()
    sensors.process([log.reading("aq-5", T0 + timedelta(seconds=10), 30.0)])
    partition = partition_of("aq-5", PARTITIONS)
    soon = sensors.process([log.tick(partition, T0 + timedelta(seconds=60))])
    assert not soon.windows, "within the grace period the window stays open"
    later = sensors.process([log.tick(partition, T0 + timedelta(minutes=4))])
    assert [(w.sensor_id, w.count) for w in later.windows] == [("aq-5", 1)]


def test_a_rules_failure_on_one_reading_rejects_it_and_the_batch_goes_on(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    real = sensors_module.evaluate

    def failing_for_aq0(state, event, rules, now):  # type: ignore[no-untyped-def]
        if event.id == "aq-0":
            raise ZeroDivisionError("a bug")
        return real(state, event, rules, now)

    monkeypatch.setattr(sensors_module, "evaluate", failing_for_aq0)
    log = Log()
    output = flow().process([log.reading("aq-0", T0, 10.0), log.reading("aq-1", T0, 11.0)])
    [(index, reason)] = output.rejected
    assert index == 0 and "rules failed" in reason and "ZeroDivisionError" in reason
    assert [r.sensor_id for r in output.readings] == ["aq-1"]
    assert set(output.changed) == {"aq-1"}, "a half-evaluated state is not written"
