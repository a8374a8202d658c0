"""The sensor rule engine, driven by synthetic reading sequences (no broker, no clock)."""

from __future__ import annotations

import random
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from pydantic import ValidationError

from ioc.models import SensorEvent, SensorSpec, Severity
from ioc.models.incidents import IncidentKind
from ioc.rules.sensor.base import Reading, Transition
from ioc.rules.sensor.engine import (
    SensorState,
    WindowAggregate,
    _record,
    evaluate,
    evaluate_timer,
)
from ioc.rules.sensor.registry import RuleSet, SensorRules

T0 = datetime(2026, 11, 20, 8, 0, tzinfo=UTC)
ARRIVAL_DELAY = timedelta(seconds=2)

AIR = SensorSpec(
    id="aq-1",
    name="Quan trắc không khí thử",
    type="AirQualityObserved",
    property="pm25",
    unit="µg/m³",
    alert_level=150.0,
    district="Phường Tân Thịnh",
    lat=21.58,
    lon=105.82,
)
WATER = SensorSpec(
    id="wl-1",
    name="Mực nước thử",
    type="FloodMonitoring",
    property="currentLevel",
    unit="m",
    alert_level=3.0,
    district="Phường Phan Đình Phùng",
    lat=21.59,
    lon=105.85,
)


@pytest.fixture(scope="module")
def ruleset() -> RuleSet:
    return RuleSet.load()


@pytest.fixture(scope="module")
def air(ruleset: RuleSet) -> SensorRules:
    return ruleset.for_sensor(AIR)


@pytest.fixture(scope="module")
def water(ruleset: RuleSet) -> SensorRules:
    return ruleset.for_sensor(WATER)


def minute(n: float) -> datetime:
    return T0 + timedelta(minutes=n)


def reading(rules: SensorRules, at: datetime, **measured: float) -> SensorEvent:
    return SensorEvent(id=rules.sensor_id, type=rules.type, dateObserved=at, measurements=measured)


class Run:
    """Feeds readings and timer ticks, collecting what comes out."""

    def __init__(self, rules: SensorRules, state: SensorState | None = None) -> None:
        self.rules = rules
        self.state = state or SensorState(sensor_id=rules.sensor_id)
        self.transitions: list[Transition] = []
        self.windows: list[WindowAggregate] = []

    def feed(self, at: datetime, now: datetime | None = None, **measured: float) -> list:
        event = reading(self.rules, at, **measured)
        transitions, windows = evaluate(self.state, event, self.rules, now or at + ARRIVAL_DELAY)
        self.transitions += transitions
        self.windows += windows
        return transitions

    def series(self, start: float, values: Iterable[float], prop: str, step: float = 1.0) -> None:
        for index, value in enumerate(values):
            self.feed(minute(start + index * step), **{prop: value})

    def tick(self, now: datetime) -> list:
        transitions, windows = evaluate_timer(self.state, self.rules, now)
        self.transitions += transitions
        self.windows += windows
        return transitions

    def of(self, *conditions: str) -> list[tuple[str, str]]:
        return [(t.condition, t.action) for t in self.transitions if t.condition in conditions]


# --- Rules as data --------------------------------------------------------------------------


def test_rules_file_gives_type_defaults_registry_levels_and_sensor_overrides(
    ruleset: RuleSet, air: SensorRules, water: SensorRules
) -> None:
    assert air.levels is not None
    assert [(level.name, level.above) for level in air.levels.levels] == [("threshold", 150.0)]
    assert (air.levels.hold_minutes, air.levels.clear_below) == (5.0, 120.0)
    assert air.levels.clear_hold_minutes == 10.0
    assert air.offline is not None and air.offline.minutes == 15
    assert air.flatline is not None and air.flatline.minutes == 60
    # FloodMonitoring: alert unset -> registry alert_level; danger = alert + offset.
    assert water.levels is not None
    assert [(level.name, level.above, level.severity) for level in water.levels.levels] == [
        ("alert", 3.0, Severity.HIGH),
        ("danger", 4.0, Severity.URGENT),
    ]
    assert water.levels.clear_below == pytest.approx(2.8)
    assert water.rate_of_rise is not None
    assert (water.rate_of_rise.rise, water.rate_of_rise.window_minutes) == (0.2, 10.0)
    # Per-sensor override, deep-merged into the type defaults.
    dam = ruleset.for_sensor(
        WATER.model_copy(update={"id": "tn-wl-thac-huong", "alert_level": 4.5})
    )
    assert dam.levels is not None and dam.rate_of_rise is not None
    assert [level.above for level in dam.levels.levels] == [4.5, 5.5]
    assert dam.levels.levels[1].severity == Severity.URGENT
    assert dam.rate_of_rise.rise == 0.3 and dam.rate_of_rise.window_minutes == 10.0
    # A type without rules still aggregates; an unknown type has none.
    weather = ruleset.for_sensor(AIR.model_copy(update={"type": "WeatherObserved"}))
    assert weather.levels is None and weather.offline is not None


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "rules.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_rules_are_validated_strictly(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="holdminutes"):
        RuleSet.load(
            write(
                tmp_path,
                'version = 1\n[types.AirQualityObserved.levels]\nkind = "air_quality_poor"\n'
                'holdminutes = 5\nthreshold = { above = 150, severity = "high" }\n',
            )
        )
    with pytest.raises(ValidationError, match="either threshold"):
        RuleSet.load(
            write(
                tmp_path,
                'version = 1\n[types.FloodMonitoring.levels]\nkind = "water_level_high"\n'
                'threshold = { severity = "high" }\nalert = { severity = "high" }\n',
            )
        )
    # An override is merged and validated when the file is loaded, not when first used.
    with pytest.raises(ValidationError, match=r"sensors\.x"):
        RuleSet.load(
            write(
                tmp_path,
                "version = 1\n[types.FloodMonitoring.offline]\nminutes = 15\n"
                '[sensors.x]\ntype = "FloodMonitoring"\noffline = { minutes = 15, typo = 1 }\n',
            )
        )


def test_override_for_the_wrong_type_and_inverted_levels_are_refused(tmp_path: Path) -> None:
    rules = RuleSet.load(
        write(
            tmp_path,
            'version = 1\n[types.FloodMonitoring.levels]\nkind = "water_level_high"\n'
            'alert = { severity = "high" }\ndanger = { above = 2.0, severity = "urgent" }\n'
            '[sensors.aq-1]\ntype = "FloodMonitoring"\n',
        )
    )
    with pytest.raises(ValueError, match="must be above alert level"):
        rules.for_sensor(WATER)  # registry alert 3.0, danger 2.0
    with pytest.raises(ValueError, match="the registry says AirQualityObserved"):
        rules.for_sensor(AIR)


def test_a_rule_can_be_switched_off_per_sensor(tmp_path: Path) -> None:
    rules = RuleSet.load(
        write(
            tmp_path,
            "version = 1\n[types.AirQualityObserved.flatline]\nminutes = 60\n"
            '[sensors.aq-1]\ntype = "AirQualityObserved"\nflatline = { enabled = false }\n',
        )
    )
    assert rules.for_sensor(AIR).flatline is None
    assert rules.for_sensor(AIR.model_copy(update={"id": "aq-2"})).flatline is not None


# --- Threshold with hold time and hysteresis -------------------------------------------------


def test_short_pm25_spike_does_not_open_a_sustained_one_opens_once(air: SensorRules) -> None:
    run = Run(air)
    run.series(0, [90, 95, 200, 210, 205, 100, 90], "pm25")  # above for 2 minutes
    assert run.transitions == []
    run.series(7, [160] * 20, "pm25")  # above from minute 7 on
    opens = [t for t in run.transitions if t.action == "open"]
    assert len(opens) == 1 and run.of("threshold") == [("threshold", "open")]
    (opened,) = opens
    assert opened.event_time == minute(12)  # 5 minutes after the first reading above
    assert opened.episode_start == minute(7)
    assert opened.severity == Severity.HIGH and opened.kind == IncidentKind.AIR_QUALITY_POOR
    assert opened.value == 160 and opened.level == 150
    assert "150" in opened.title and air.name in opened.title


def test_oscillating_around_the_threshold_for_an_hour_opens_once(air: SensorRules) -> None:
    run = Run(air)
    # Slow oscillation: 6 minutes above 150, 6 minutes below (but above the 120 clear level).
    values = [([165] * 6 + [140] * 6)[i % 12] for i in range(60)]
    run.series(0, values, "pm25")
    # Then fast flapping across the threshold and across the clear level.
    run.series(60, [155, 145] * 15 + [118, 125] * 15, "pm25")
    actions = [t.action for t in run.transitions]
    assert actions.count("open") == 1 and "resolve" not in actions
    assert len({t.incident_id for t in run.transitions}) == 1
    # While it holds, the incident is updated now and then, not on each reading.
    assert 1 <= actions.count("update") <= 4


def test_fast_flapping_never_meets_the_hold_time(air: SensorRules) -> None:
    run = Run(air)
    run.series(0, [155, 145] * 30, "pm25")
    assert run.transitions == []


def test_resolves_only_after_staying_below_the_clear_level_for_the_hold(air: SensorRules) -> None:
    run = Run(air)
    run.series(0, [170] * 6, "pm25")
    (opened,) = run.transitions
    run.series(6, [130] * 40, "pm25")  # below the threshold, above the clear level: still open
    assert [t.action for t in run.transitions] == ["open", "update"]  # 30-minute update
    run.series(46, [110] * 10, "pm25")  # 110 from minute 46 to 55: 9 minutes below
    assert run.transitions[-1].action == "update"
    run.feed(minute(56), pm25=110)
    resolved = run.transitions[-1]
    assert resolved.action == "resolve" and resolved.incident_id == opened.incident_id
    assert resolved.event_time == minute(56) and "peak 170" in resolved.title
    # A new episode later is a new incident.
    run.series(57, [180] * 6, "pm25")
    reopened = run.transitions[-1]
    assert reopened.action == "open" and reopened.incident_id != opened.incident_id


def test_a_late_reading_below_the_threshold_restarts_the_hold(air: SensorRules) -> None:
    run = Run(air)
    run.series(0, [160, 160, 160, 160], "pm25")
    run.feed(minute(2.5), now=minute(3.1), pm25=100)  # out of order, within grace
    run.series(4, [160, 160], "pm25")  # minute 5: 5 min since minute 0, but not since 3
    assert run.transitions == []
    run.series(6, [160, 160], "pm25")  # minute 7 is 4 min after minute 3
    assert run.transitions == []
    run.feed(minute(8), pm25=160)
    assert [t.action for t in run.transitions] == ["open"]
    assert run.transitions[0].episode_start == minute(3)


# --- Water: alert and danger levels, rate of rise --------------------------------------------


def test_water_alert_then_danger_is_one_incident_escalated(water: SensorRules) -> None:
    run = Run(water)
    run.series(0, [2.5, 2.6, 3.2, 3.2, 3.2, 3.3], "currentLevel")
    levels = [t for t in run.transitions if t.condition in ("alert", "danger")]
    assert [(t.condition, t.action, t.severity) for t in levels] == [
        ("alert", "open", Severity.HIGH)
    ]
    run.series(6, [4.2, 4.3, 4.3, 4.4], "currentLevel")
    run.series(10, [3.5] * 10, "currentLevel")  # back under danger: no downgrade, no flapping
    levels = [t for t in run.transitions if t.condition in ("alert", "danger")]
    assert [(t.condition, t.action, t.severity) for t in levels] == [
        ("alert", "open", Severity.HIGH),
        ("danger", "update", Severity.URGENT),
    ]
    assert levels[1].incident_id == levels[0].incident_id
    assert levels[1].event_time == minute(8) and levels[1].level == 4.0
    run.series(20, [2.7] * 16, "currentLevel")  # below 2.8 from minute 20; resolves at 35
    levels = [t for t in run.transitions if t.condition in ("alert", "danger")]
    assert (levels[-1].condition, levels[-1].action) == ("danger", "resolve")
    assert levels[-1].incident_id == levels[0].incident_id
    assert levels[-1].event_time == minute(35)


def test_straight_to_danger_opens_at_danger(water: SensorRules) -> None:
    run = Run(water)
    run.series(0, [4.5, 4.5, 4.5], "currentLevel")
    levels = [t for t in run.transitions if t.condition in ("alert", "danger")]
    assert [(t.condition, t.action, t.severity) for t in levels] == [
        ("danger", "open", Severity.URGENT)
    ]


def test_rate_of_rise_opens_on_20_cm_in_10_minutes_and_resolves_when_steady(
    water: SensorRules,
) -> None:
    run = Run(water)
    run.series(0, [round(1.0 + 0.01 * i, 3) for i in range(30)], "currentLevel")  # 10 cm / 10 min
    assert run.transitions == []
    run.series(30, [round(1.3 + 0.03 * i, 3) for i in range(1, 11)], "currentLevel")  # to 1.6
    (opened,) = run.transitions
    assert (opened.condition, opened.action) == ("rate_of_rise", "open")
    # At minute 34 the level is 1.45: 0.21 above the 1.24 of minute 24.
    assert opened.event_time == minute(34) and opened.value == pytest.approx(0.21)
    assert opened.kind == IncidentKind.WATER_LEVEL_HIGH
    run.series(40, [1.6] * 30, "currentLevel")
    (resolved,) = run.transitions[1:]
    assert resolved.action == "resolve" and resolved.incident_id == opened.incident_id
    # The rise falls below 5 cm at minute 48 (1.6 vs 1.57 at 38); 10 minutes later it resolves.
    assert resolved.event_time == minute(58)


# --- Device health: flatline, offline ---------------------------------------------------------


def test_flatline_opens_after_an_hour_of_identical_readings(air: SensorRules) -> None:
    run = Run(air)
    run.series(0, [42.0] * 70, "pm25")
    (opened,) = run.transitions
    assert (opened.condition, opened.action) == ("flatline", "open")
    assert opened.kind == IncidentKind.SENSOR_FAULT
    assert opened.event_time == minute(60) and opened.episode_start == T0
    assert len(run.state.history["pm25"]) <= 2  # a stuck value costs two readings of state
    run.feed(minute(70), pm25=43.5)
    assert [(t.condition, t.action) for t in run.transitions] == [
        ("flatline", "open"),
        ("flatline", "resolve"),
    ]
    assert run.transitions[1].incident_id == opened.incident_id


def test_offline_is_seen_by_the_timer_without_readings_and_resolves_on_recovery(
    air: SensorRules,
) -> None:
    run = Run(air, SensorState.start(air.sensor_id, T0))
    assert run.tick(minute(14)) == []
    (opened,) = run.tick(minute(16))
    assert (opened.condition, opened.action, opened.severity) == (
        "offline",
        "open",
        Severity.NORMAL,
    )
    assert opened.episode_start == T0 and opened.event_time == minute(16)
    assert run.tick(minute(30)) == [] and run.tick(minute(60)) == []  # open once
    (resolved,) = run.feed(minute(61), pm25=40)
    assert (resolved.action, resolved.incident_id) == ("resolve", opened.incident_id)
    # Silent again after the last reading: a new episode, a new incident.
    assert run.tick(minute(61) + ARRIVAL_DELAY + timedelta(minutes=14)) == []
    (again,) = run.tick(minute(61) + ARRIVAL_DELAY + timedelta(minutes=15))
    assert again.action == "open" and again.incident_id != opened.incident_id


def test_offline_uses_the_arrival_clock_not_the_device_clock(air: SensorRules) -> None:
    run = Run(air)
    # The device clock is 30 minutes behind; it reports every minute.
    for i in range(20):
        run.feed(minute(i) - timedelta(minutes=30), now=minute(i), pm25=50 + i)
        assert run.tick(minute(i) + timedelta(seconds=30)) == []
    assert run.state.late_count == 0 and run.of("offline") == []


# --- Windows, lateness and grace ------------------------------------------------------------


def window(run: Run, start: datetime, prop: str = "pm25") -> WindowAggregate:
    (found,) = [w for w in run.windows if w.start == start and w.property == prop]
    return found


def test_late_reading_within_grace_lands_in_its_minute(air: SensorRules) -> None:
    run = Run(air)
    run.feed(T0 + timedelta(seconds=10), pm25=40)
    run.feed(minute(1) + timedelta(seconds=10), pm25=60)
    run.feed(minute(2) + timedelta(seconds=5), pm25=70)
    assert run.windows == []  # watermark 08:00:05: the 08:00 window is still open
    # Observed at 08:00:50, arrives after the 08:02:05 reading: within the 2-minute grace.
    run.feed(T0 + timedelta(seconds=50), now=minute(2) + timedelta(seconds=20), pm25=20)
    run.feed(minute(3) + timedelta(seconds=30), pm25=80)  # watermark 08:01:30
    first = window(run, T0)
    assert first.status == "closed" and first.end == minute(1)
    assert (first.count, first.min, first.max, first.mean) == (2, 20, 40, 30)
    assert first.last == 20 and first.last_time == T0 + timedelta(seconds=50)
    assert [w.start for w in run.windows] == [T0]
    assert run.state.late_count == 0


def test_reading_later_than_grace_is_reported_late_and_does_not_reopen(air: SensorRules) -> None:
    run = Run(air)
    for i in range(5):
        run.feed(minute(i) + timedelta(seconds=30), pm25=50)
    closed = [w.start for w in run.windows]
    assert closed == [minute(0), minute(1)]  # watermark 08:02:30
    late_at = minute(1) + timedelta(seconds=45)
    transitions = run.feed(late_at, now=minute(5), pm25=999)
    assert transitions == []
    late = run.windows[-1]
    assert (late.status, late.start, late.count, late.last) == ("late", minute(1), 1, 999)
    assert run.state.late_count == 1
    assert all(w.start >= minute(2) for w in run.state.windows)  # not reopened
    assert all(r.v != 999 for r in run.state.history["pm25"])  # nor fed to the conditions
    for i in range(5, 10):
        run.feed(minute(i) + timedelta(seconds=30), pm25=50)
    again = [w for w in run.windows if w.start == minute(1)]
    assert [w.status for w in again] == ["closed", "late"]  # the closed minute stays as it was
    assert again[0].count == 1 and again[0].max == 50


def test_timer_closes_windows_when_the_sensor_goes_quiet(air: SensorRules) -> None:
    run = Run(air)
    run.feed(T0 + timedelta(seconds=10), now=T0 + timedelta(seconds=11), pm25=40)
    assert run.tick(minute(3)) == [] and run.windows == []  # watermark 08:00:59
    run.tick(minute(3) + timedelta(seconds=11))  # watermark 08:01:10
    assert [(w.start, w.status, w.count) for w in run.windows] == [(T0, "closed", 1)]
    run.tick(minute(4))
    assert len(run.windows) == 1  # closed once


# --- State: pure, bounded, and it survives a restart ------------------------------------------


def mixed_sequence(run: Run, checkpoint=None) -> None:
    """Ramps, oscillation, an out-of-order reading, a late one and timer ticks."""
    values = [100, 110, 160, 165, 170, 158, 172, 151, 149, 155, 160, 140, 130, 125, 119, 110]
    values += [100] * 12 + [42.0] * 70 + [155, 145] * 10
    for i, value in enumerate(values):
        run.feed(minute(i) + timedelta(seconds=20), pm25=value)
        if i == 20:
            run.feed(minute(19) + timedelta(seconds=50), now=minute(21), pm25=111)  # in grace
            run.feed(minute(10), now=minute(21), pm25=300)  # too late
        if i % 7 == 0:
            run.tick(minute(i) + timedelta(seconds=40))
        if checkpoint:
            checkpoint(run)
    run.tick(minute(len(values) + 20))  # offline, and the last windows close
    if checkpoint:
        checkpoint(run)


def test_state_round_trips_through_json_and_evaluation_continues_identically(
    air: SensorRules,
) -> None:
    straight = Run(air)
    mixed_sequence(straight)
    actions = {(t.condition, t.action) for t in straight.transitions}
    assert {("threshold", "open"), ("threshold", "resolve"), ("flatline", "open")} <= actions
    assert ("offline", "open") in actions and straight.state.late_count == 1

    sizes = []

    def restart(run: Run) -> None:
        raw = run.state.model_dump_json()
        sizes.append(len(raw))
        run.state = SensorState.model_validate_json(raw)

    restarted = Run(air)
    mixed_sequence(restarted, checkpoint=restart)
    assert restarted.transitions == straight.transitions
    assert restarted.windows == straight.windows
    assert restarted.state.model_dump_json() == straight.state.model_dump_json()
    assert max(sizes) < 8_000  # small enough for a changelog-backed table


def _record_by_rescanning(
    history: list[Reading], moment: datetime, value: float, horizon: timedelta
) -> None:
    """The obvious version of `_record`: re-compact and re-trim the whole list every time."""
    index = len(history)
    while index > 0 and history[index - 1].t > moment:
        index -= 1
    if index > 0 and history[index - 1].t == moment:
        history[index - 1].v = value
    else:
        history.insert(index, Reading(t=moment, v=value))
    history[:] = [
        r
        for i, r in enumerate(history)
        if not (0 < i < len(history) - 1 and history[i - 1].v == r.v == history[i + 1].v)
    ]
    cutoff = history[-1].t - horizon
    while len(history) > 1 and history[1].t <= cutoff:
        del history[0]


def test_local_compaction_keeps_what_rescanning_the_whole_history_keeps() -> None:
    rng = random.Random(7)
    horizon = timedelta(minutes=20)
    fast: list[Reading] = []
    slow: list[Reading] = []
    for i in range(3000):
        jitter = rng.choice([0, 0, 0, -1, -2, -3])  # some readings arrive out of order
        at = T0 + timedelta(seconds=30 * (i + jitter))
        value = rng.choice([1.0, 1.0, 1.0, 1.5, 2.0])  # long equal runs and changes
        _record(fast, at, value, horizon)
        _record_by_rescanning(slow, at, value, horizon)
        assert [(r.t, r.v) for r in fast] == [(r.t, r.v) for r in slow], f"reading {i}"


def test_history_stays_bounded_over_hours_of_changing_readings(water: SensorRules) -> None:
    run = Run(water)
    for i in range(0, 12 * 60 * 2):  # a reading every 30 seconds for 12 hours
        at = T0 + timedelta(seconds=30 * i)
        evaluate(run.state, reading(water, at, currentLevel=1 + (i % 7) / 100), water, at)
    history = run.state.history["currentLevel"]
    assert history[-1].t - history[1].t <= water.horizon
    assert len(run.state.windows) <= 4


def test_a_site_file_can_extend_the_bundled_rules(tmp_path: Path) -> None:
    site = tmp_path / "site.toml"
    site.write_text(
        "version = 1\nextends_bundled = true\n[types.AirQualityObserved.levels]\nhold_minutes = 1\n"
        '[sensors.aq-1]\ntype = "AirQualityObserved"\noffline = { minutes = 3 }\n',
        encoding="utf-8",
    )
    layered, bundled = RuleSet.load(site), RuleSet.load()
    air = layered.for_sensor(AIR)
    assert air.levels is not None and air.levels.hold_minutes == 1
    assert air.offline is not None and air.offline.minutes == 3
    assert air.levels.levels == bundled.for_sensor(AIR).levels.levels, "the rest is bundled"
    assert layered.for_sensor(WATER) == bundled.for_sensor(WATER)
