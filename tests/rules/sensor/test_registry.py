"""The sensor rules as plugins: discovered one file each, composed into the rules file's model
and each sensor's checks, and a state stored before they were plugins read on."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest

from ioc.models import SensorEvent
from ioc.rules.sensor import plugins as bundled_plugins
from ioc.rules.sensor.engine import SensorState, evaluate, evaluate_timer
from ioc.rules.sensor.registry import RULES, RuleSet, discover
from tests.rules.sensor.test_engine import T0, WATER

STATE_V1 = Path(__file__).parent / "data" / "sensor_state_v1.json"
LOW_BATTERY_RULE = '''
"""A battery below `below` volts opens a sensor fault; it resolves at the first reading above."""
from ioc.models.incidents import IncidentKind, Severity
from ioc.rules.sensor.base import Check, RuleConfig, SensorRule


class LowBatteryConfig(RuleConfig):
    below: float
    severity: Severity = Severity.NORMAL


class LowBatteryCheck(Check):
    property: str = "batteryLevel"
    below: float
    severity: Severity


class LowBattery(SensorRule[LowBatteryConfig, LowBatteryCheck]):
    name = "low_battery"
    config = LowBatteryConfig
    check = LowBatteryCheck

    def resolve(self, config, spec):
        return LowBatteryCheck(below=config.below, severity=config.severity)

    def on_reading(self, check, state, seen, out):
        low = seen.value < check.below
        if low and state.incident_id is None:
            out.open(state, seen.at)
            state.severity = check.severity
            action, title = "open", f"pin yếu {seen.value:g} V"
        elif not low and state.incident_id is not None:
            action, title = "resolve", f"pin {seen.value:g} V"
        else:
            return []
        found = out.report(state, action, kind=IncidentKind.SENSOR_FAULT, title=title,
                           value=seen.value, unit="V", level=check.below, at=seen.at)
        if action == "resolve":
            state.reset()
        return [found]
'''

APPLY_WITH_PLUGIN = """
import json, sys
from datetime import timedelta
from pathlib import Path
import ioc.rules.sensor.plugins as plugins
plugins.__path__.append(sys.argv[1])
from ioc.models import SensorEvent
from ioc.rules.sensor.engine import SensorState, evaluate
from ioc.rules.sensor.registry import RuleSet
from tests.rules.sensor.test_engine import T0, WATER
try:
    RuleSet.load(Path(sys.argv[3]))
except ValueError as error:
    print("bad block:", str(error).splitlines()[:3], file=sys.stderr)
rules = RuleSet.load(Path(sys.argv[2])).for_sensor(WATER)
state = SensorState.start(WATER.id, T0)
found = []
for minute, volts in enumerate([3.7, 3.4, 3.3, 3.6]):
    event = SensorEvent(id=WATER.id, type=WATER.type, date_observed=T0 + timedelta(minutes=minute),
                        measurements={"currentLevel": 1.0, "batteryLevel": volts})
    found += evaluate(state, event, rules, event.date_observed)[0]
print(json.dumps({
    "found": [[t.condition, t.action, t.kind, t.severity, t.title] for t in found],
    "tracked": sorted(rules.tracked),
}))
"""


def test_the_bundled_rules_are_one_plugin_file_each() -> None:
    files = sorted(p.stem for p in Path(bundled_plugins.__path__[0]).glob("[!_]*.py"))
    assert sorted(RULES) == files == ["flatline", "levels", "offline", "rate_of_rise"]


def test_a_new_rule_is_one_file_and_its_block_in_the_rules_file(tmp_path: Path) -> None:
    """The plugin is found, its block is validated under a type, it judges its own property and
    its incidents carry its name and configured severity."""
    (tmp_path / "low_battery.py").write_text(LOW_BATTERY_RULE)
    site, bad = tmp_path / "site.toml", tmp_path / "bad.toml"
    site.write_text(
        "version = 1\nextends_bundled = true\n"
        '[types.FloodMonitoring.low_battery]\nbelow = 3.5\nseverity = "high"\n'
    )
    bad.write_text("version = 1\n[types.FloodMonitoring.low_battery]\nbelow_volts = 3.5\n")
    root = Path(__file__).resolve().parents[3]
    done = subprocess.run(
        [sys.executable, "-c", APPLY_WITH_PLUGIN, str(tmp_path), str(site), str(bad)],
        capture_output=True,
        text=True,
        cwd=root,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert "low_battery" in done.stderr and "below_volts" in done.stderr, done.stderr
    result = json.loads(done.stdout)
    assert result["found"] == [
        ["low_battery", "open", "sensor_fault", "high", "pin yếu 3.4 V"],
        ["low_battery", "resolve", "sensor_fault", "high", "pin 3.6 V"],
    ]
    assert result["tracked"] == ["batteryLevel", "currentLevel"]


def test_a_plugin_file_holding_two_rules_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "twice.py").write_text(
        LOW_BATTERY_RULE + "\n\nclass Again(LowBattery):\n    name = 'again'\n"
    )
    monkeypatch.setattr(bundled_plugins, "__path__", [*bundled_plugins.__path__, str(tmp_path)])
    with pytest.raises(ImportError, match="one SensorRule subclass"):
        discover()


def _run(state: SensorState, steps: list[tuple[int, float | None]]) -> list[list[str]]:
    """Readings (minute, level) and ticks (minute, None), as the stored file's script ran them."""
    rules = RuleSet.load().for_sensor(WATER)
    found = []
    for minute, level in steps:
        at = T0 + timedelta(minutes=minute)
        if level is None:
            transitions, _ = evaluate_timer(state, rules, at)
        else:
            event = SensorEvent(
                id=WATER.id, type=WATER.type, date_observed=at, measurements={"currentLevel": level}
            )
            transitions, _ = evaluate(state, event, rules, at + timedelta(seconds=2))
        found += [[t.condition, t.action, t.incident_id, t.title] for t in transitions]
    return found


def test_a_state_stored_before_the_plugins_carries_on_where_it_left_off() -> None:
    """The same readings find what the engine before the plugins found: same incident ids (the
    episodes opened before go on), titles and actions. Within one reading the rules now report
    in their name order, so the findings are compared as a whole."""
    stored = json.loads(STATE_V1.read_text(encoding="utf-8"))
    before = [(m, 2.5 + 0.06 * m) for m in range(21)] + [(m, None) for m in range(40, 60, 5)]
    assert sorted(_run(SensorState.start(WATER.id, T0), before)) == sorted(stored["before"])
    after: list[tuple[int, float | None]] = [(60, 3.7), (61, 3.7)]
    after += [(m, 3.7 - 0.05 * (m - 61)) for m in range(62, 120)]
    after += [(m, 2.0) for m in range(120, 200, 3)]
    state = SensorState.model_validate(stored["state"])
    assert sorted(_run(state, after)) == sorted(stored["after"])
