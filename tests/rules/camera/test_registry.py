"""The camera rules as plugins: discovered one file each, composed into the rules file's model
and the camera's state, and a state stored before they were plugins read on."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from ioc.rules.camera import plugins as bundled_plugins
from ioc.rules.camera.registry import RULES, CameraRules, CameraState, discover
from tests.rules.camera.scene import FIRE, Run, det, stats

STATE_V1 = Path(__file__).parent / "data" / "camera_state_v1.json"

PERSONS_RULE = '''
"""Raised when at least `at_least` persons are in view."""
from ioc.models.incidents import IncidentKind
from ioc.rules.camera.base import CameraRule, Episode, IncidentRuleConfig, Stage


class PersonsConfig(IncidentRuleConfig):
    at_least: int


class Persons(CameraRule[PersonsConfig, Episode]):
    name = "persons"
    kind = IncidentKind.CROWDING
    stage = Stage.OBJECTS
    config = PersonsConfig
    state = Episode

    def on_frame(self, config, state, seen, out):
        count = sum(d.class_name == "person" for d in seen.frame.detections)
        if count < config.at_least or state.incident_id is not None:
            return []
        out.open(state, seen.at)
        return [out.report(state, "open", f"{count} người", seen.latest, count=count)]
'''

APPLY_WITH_PLUGIN = """
import json, sys
from pathlib import Path
import ioc.rules.camera.plugins as plugins
plugins.__path__.append(sys.argv[1])
from ioc.rules.camera.registry import CameraRuleSet, CameraState
from ioc.rules.camera.engine import evaluate
from tests.rules.camera.scene import CAMERA, T0, det, frame
try:
    CameraRuleSet.load()
except ValueError as error:
    print("bundled file:", str(error).splitlines()[:3], file=sys.stderr)
rules = CameraRuleSet.load(Path(sys.argv[2])).for_camera(CAMERA.id)
state = CameraState.start(CAMERA.id, T0)
people = [det("person", 0.9, 100 + 60 * n, 200) for n in range(3)]
found = evaluate(state, frame(0, 0, people), CAMERA, rules).transitions
print(json.dumps({
    "found": [[t.rule, t.action, t.kind, t.severity, t.details] for t in found],
    "state": json.loads(state.model_dump_json())["persons"],
}))
"""


def test_the_bundled_rules_are_one_plugin_file_each() -> None:
    files = sorted(p.stem for p in Path(bundled_plugins.__path__[0]).glob("[!_]*.py"))
    assert sorted(RULES) == files
    assert {"fire", "crowd", "stopped_vehicle", "line", "offline", "tamper"} <= set(RULES)


def test_a_new_rule_is_one_file_and_its_block_in_the_rules_file(tmp_path: Path) -> None:
    """The plugin is found, its block is required and validated, its state is kept per camera
    and its incidents carry its name, kind and configured severity."""
    (tmp_path / "persons.py").write_text(PERSONS_RULE)
    site = tmp_path / "site.toml"
    site.write_text(
        'version = 1\nextends_bundled = true\n[persons]\nat_least = 3\nseverity = "high"\n'
    )
    root = Path(__file__).resolve().parents[3]
    done = subprocess.run(
        [sys.executable, "-c", APPLY_WITH_PLUGIN, str(tmp_path), str(site)],
        capture_output=True,
        text=True,
        cwd=root,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert "persons" in done.stderr and "Field required" in done.stderr, done.stderr
    result = json.loads(done.stdout)
    assert result["found"] == [["persons", "open", "crowding", "high", {"count": 3}]]
    assert result["state"]["incident_id"] is not None


def test_a_plugin_file_holding_two_rules_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "twice.py").write_text(
        PERSONS_RULE + "\n\nclass Again(Persons):\n    name = 'again'\n"
    )
    monkeypatch.setattr(bundled_plugins, "__path__", [*bundled_plugins.__path__, str(tmp_path)])
    with pytest.raises(ImportError, match="one CameraRule subclass"):
        discover()


def test_a_state_stored_by_version_1_carries_on_where_it_left_off(rules: CameraRules) -> None:
    """Episodes opened before an upgrade resolve after it with the same incident ids."""
    stored = json.loads(STATE_V1.read_text())
    state = CameraState.from_json(json.dumps(stored["state"]).encode())
    assert state.line["vach"].counts == {"car": {"left_to_right": 1}}
    assert state.tamper.learnt == 20 and state.fire.incident_id is not None
    run = Run(rules, state=state)
    run.seq = 40
    for index in range(40, 160):
        run.feed(index * 2.0, [], stats(digest=f"{index // 3:016x}"))
    assert [[t.rule, t.action, t.incident_id] for t in run.transitions] == stored["after"]
    assert json.loads(state.model_dump_json())["version"] == 2


def test_a_state_round_trips_in_the_current_version(rules: CameraRules) -> None:
    run = Run(rules)
    for index in range(6):
        run.feed(index * 2.0, [FIRE, det("car", 0.7, 700, 250 + index * 20, track=3)], stats())
    again = CameraState.from_json(run.state.model_dump_json().encode())
    assert again == run.state
