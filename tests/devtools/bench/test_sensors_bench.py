"""`ioc bench sensors`: the data it publishes, the registry it writes, its statistics, and one
end-to-end run with tiny numbers on an ephemeral stack of its own."""

from __future__ import annotations

import io
import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
from rich.console import Console

from ioc.devtools.bench.all import BENCHES, QUICK
from ioc.devtools.bench.common import percentile
from ioc.devtools.bench.sensors import (
    ALARM_PREFIX,
    ALARM_STEP,
    REPORT_EVERY,
    SensorBenchResult,
    Target,
    baseline_rows,
    interleave,
    readings,
    registry_toml,
    sensor_specs,
    steady_readings,
)
from ioc.models import load_sensor_registry
from ioc.sensors.fiware import parse_observation
from tests.devtools.bench.headline import headline_rows

T0 = datetime(2026, 11, 20, 8, 0, tzinfo=UTC)


def decoded(batch: list) -> list[dict]:
    return [json.loads(reading.value) for reading in batch]


def test_registry_toml_loads_as_the_worker_loads_it(tmp_path: Path) -> None:
    specs = sensor_specs(7) + sensor_specs(2, ALARM_PREFIX, ("FloodMonitoring",))
    path = tmp_path / "sensors.toml"
    path.write_text(registry_toml(specs), encoding="utf-8")
    registry = load_sensor_registry(path)
    assert registry.sensors == specs
    assert {s.type for s in registry.sensors} == {"FloodMonitoring", "AirQualityObserved"}
    assert registry.get("bench-alarm-0001") is not None


def test_readings_are_keyed_ordered_and_valid_fiware() -> None:
    specs = sensor_specs(4)
    batch = readings(specs, 10, T0, "seed")
    assert [r.key for r in batch[:4]] == [s.id.encode() for s in specs]  # round-robin
    assert readings(specs, 10, T0, "seed") == batch  # deterministic, so both sides get it
    by_sensor: dict[bytes, list[datetime]] = {}
    for reading in batch:
        event = parse_observation(reading.value)  # what the agent will accept
        assert event.id.encode() == reading.key
        assert reading.rows == len(event.measurements)
        spec = next(s for s in specs if s.id == event.id)
        assert event.measurements[spec.property] < spec.alert_level
        by_sensor.setdefault(reading.key, []).append(event.date_observed)
    for times in by_sensor.values():  # one reading per second of event time, in order
        assert times == [T0 + n * REPORT_EVERY for n in range(len(times))]
    assert {tuple(sorted(b)) for b in decoded(batch)} == {
        ("currentLevel", "dateObserved", "id", "type"),
        ("dateObserved", "id", "pm10", "pm25", "type"),
    }


def test_baseline_rows_match_the_pipeline_rows() -> None:
    (reading,) = readings(sensor_specs(2)[1:], 1, T0, "seed")  # bench-0001, air quality
    rows = baseline_rows(reading.value, 1_700_000_000_000)
    assert [(r[0], r[2], r[4]) for r in rows] == [
        ("bench-0001", "pm25", "AirQualityObserved"),
        ("bench-0001", "pm10", "AirQualityObserved"),
    ]
    assert len(rows) == reading.rows
    assert rows[0][5] == datetime.fromtimestamp(1_700_000_000, UTC)


def test_steady_phase_alarms_cross_and_end_with_the_others() -> None:
    sensors = sensor_specs(10)
    alarms = sensor_specs(2, ALARM_PREFIX, ("FloodMonitoring",))
    batch = steady_readings(sensors, alarms, 80, T0)  # 8 readings per sensor
    assert len(batch) == 80 + 16
    alarm_events = [parse_observation(r.value) for r in batch if r.key.startswith(b"bench-alarm")]
    first = [e for e in alarm_events if e.id == "bench-alarm-0000"]
    levels = [e.measurements["currentLevel"] for e in first]
    assert [level > alarms[0].alert_level for level in levels] == [False] * 2 + [True] * 6
    assert [e.date_observed for e in first] == sorted(e.date_observed for e in first)
    assert first[1].date_observed - first[0].date_observed == ALARM_STEP
    assert first[-1].date_observed == T0 + 7 * REPORT_EVERY  # ends with the others
    positions = [i for i, r in enumerate(batch) if r.key.startswith(b"bench-alarm")]
    assert positions[0] < len(batch) // 4 and positions[-1] == len(batch) - 1  # spread out


def test_interleave_keeps_each_streams_order() -> None:
    a = readings(sensor_specs(1), 6, T0, "a")
    b = readings(sensor_specs(1, "bench-b-"), 2, T0, "b")
    merged = interleave(a, b)
    assert [r for r in merged if r in a] == a and [r for r in merged if r in b] == b
    assert merged.index(b[0]) == 3


def test_percentile_and_medians() -> None:
    values = [float(v) for v in range(1, 101)]
    assert percentile(values, 0.5) == 51.0 and percentile(values, 0.99) == 99.0
    assert percentile([5.0], 0.99) == 5.0
    pipeline = Target("t", "sensor_readings", throughput=[100.0, 300.0, 200.0])
    baseline = Target("b", "bench_baseline_sensors", throughput=[400.0, 500.0])
    result = SensorBenchResult(pipeline, baseline, [], alarm_sensors=5)
    assert (pipeline.median, baseline.median, result.ratio) == (200.0, 450.0, 200.0 / 450.0)
    assert not result.ratio_met and not result.rate_met


@pytest.mark.integration
@pytest.mark.slow
@pytest.mark.timeout(900)
def test_bench_sensors_end_to_end() -> None:
    output = io.StringIO()
    assert (QUICK.sensors_count, QUICK.sensors_fleet, QUICK.rounds) == (2000, 50, 1)
    result = BENCHES["sensors"].run(QUICK, Console(file=output, width=160))
    assert result.pipeline.median > 0 and result.baseline.median > 0
    assert result.ratio == pytest.approx(result.pipeline.median / result.baseline.median)
    assert "ioc bench sensors" in output.getvalue()
    (row,) = headline_rows("sensors", result)
    assert (row.figure, row.baseline) == (result.pipeline.median, result.baseline.median)
