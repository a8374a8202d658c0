"""Lines: crossings that hold before they count, and wrong-way traffic."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from ioc.rules.camera.registry import CameraRules, CameraRuleSet
from tests.rules.camera.scene import CAMERA, T0, Run, det

ONE_WAY = CAMERA.model_copy(
    update={
        "zones": tuple(
            zone.model_copy(update={"direction": "left_to_right"}) if zone.kind == "line" else zone
            for zone in CAMERA.zones
        )
    }
)


def test_a_track_going_against_a_one_way_line_opens_wrong_way_once_it_holds(
    rules: CameraRules,
) -> None:
    run = Run(rules, camera=ONE_WAY)
    for second, y in enumerate([400, 350, 310, 280]):
        run.feed(second, [det("motorbike", 0.8, 900, y, track=12)])
    assert not run.of("wrong_way"), "seen once past the line: not yet"
    (opened,) = run.feed(4, [det("motorbike", 0.85, 900, 250, track=12)])
    assert (opened.rule, opened.action, opened.kind, opened.severity) == (
        "wrong_way",
        "open",
        "wrong_way",
        "high",
    )
    assert opened.details == {"line": "vach", "count": 1}
    assert "xe máy #12 đi ngược chiều qua vach" in opened.title
    for second, y in enumerate([250, 290, 320, 340], start=5):  # the allowed way
        run.feed(second, [det("car", 0.8, 700, y, track=13)])
    for second, y in enumerate([400, 320, 290, 260], start=9):
        run.feed(second, [det("truck", 0.9, 800, y, track=14)])
    assert run.actions("wrong_way") == ["open", "update"]
    assert run.transitions[-1].details["count"] == 2
    assert {incident for _, incident in run.of("wrong_way")} == {opened.incident_id}
    run.feed(13)  # the first frame without one
    run.feed(132)
    assert run.actions("wrong_way") == ["open", "update"]
    run.feed(133)  # 120 s without
    assert run.actions("wrong_way") == ["open", "update", "resolve"]
    directions = [c.direction for c in run.crossings]
    assert directions == ["right_to_left", "left_to_right", "right_to_left"], "counted as ever"


def test_a_line_without_a_direction_has_no_wrong_way(rules: CameraRules) -> None:
    run = Run(rules)
    for second, y in enumerate([400, 350, 310, 280, 250]):
        run.feed(second, [det("motorbike", 0.8, 900, y, track=12)])
    assert not run.of("wrong_way") and len(run.crossings) == 1


def test_a_box_jittering_on_the_line_counts_nothing_when_crossings_must_hold(
    tmp_path: Path,
) -> None:
    site = tmp_path / "rules.toml"
    site.write_text("version = 1\nextends_bundled = true\n[line]\nhold_frames = 2\n")
    run = Run(CameraRuleSet.load(site).for_camera(CAMERA.id))
    for second, y in enumerate([290, 310, 290, 310, 290, 310, 290]):
        run.feed(second, [det("car", 0.8, 700, y, track=21)])
    assert not run.crossings
    run.feed(7, [det("car", 0.8, 700, 310, track=21)])
    run.feed(8, [det("car", 0.8, 700, 330, track=21)])
    assert [(c.track_id, c.direction) for c in run.crossings] == [(21, "left_to_right")]


def test_each_minute_s_crossings_close_as_a_flow_once_a_later_minute_is_seen(
    rules: CameraRules,
) -> None:
    """T0 is on a minute. Minutes without a frame have no flow: no data is not no traffic."""
    run = Run(rules)
    for second, y in enumerate([250, 290, 320]):  # a car down, at 2 s
        run.feed(second, [det("car", 0.8, 700, y, track=1)])
    for second, y in enumerate([400, 350, 280], start=10):  # a motorbike up, at 12 s
        run.feed(second, [det("motorbike", 0.8, 900, y, track=2)])
    for second, y in enumerate([250, 290, 330], start=20):  # another car down, at 22 s
        run.feed(second, [det("car", 0.8, 650, y, track=3)])
    assert not run.flows, "the minute is still open"
    run.feed(61)
    run.feed(200)  # minutes 2 and 3 had no frame
    assert [(f.line, f.start, f.end, f.counts) for f in run.flows] == [
        ("vach", T0, T0 + timedelta(minutes=1), {"left_to_right": 2, "right_to_left": 1}),
        (
            "vach",
            T0 + timedelta(minutes=1),
            T0 + timedelta(minutes=2),
            {"left_to_right": 0, "right_to_left": 0},
        ),
    ]
