"""What rules never see: detections in a mask, boxes no object of their class could have, and
zones outside their schedule."""

from __future__ import annotations

from datetime import UTC, datetime, time
from pathlib import Path

import pytest
from pydantic import ValidationError

from ioc.models.registry import Window, Zone
from ioc.rules.camera.registry import CameraRules, CameraRuleSet
from tests.rules.camera.scene import CAMERA, FIRE, Run, det

POSTER = Zone(name="poster", kind="mask", points=((0.6, 0.3), (0.8, 0.3), (0.8, 0.5), (0.6, 0.5)))


def crowd(count: int) -> list:
    return [det("person", 0.8, 50 + 60 * index, 800) for index in range(count)]


def test_a_mask_hides_what_stands_in_it_from_every_rule(rules: CameraRules) -> None:
    masked = CAMERA.model_copy(update={"zones": (*CAMERA.zones, POSTER)})
    run = Run(rules, camera=masked)
    for second in range(5):
        run.feed(second, [FIRE])  # the fire's anchor (0.7, 0.4) is on the poster
    assert not run.of("fire")
    persons_only = POSTER.model_copy(update={"classes": ("person",)})
    run = Run(rules, camera=CAMERA.model_copy(update={"zones": (*CAMERA.zones, persons_only)}))
    for second in range(5):
        run.feed(second, [FIRE])
    assert run.actions("fire") == ["open"], "a mask of persons leaves fire seen"


def test_boxes_no_object_of_the_class_could_have_are_ignored(tmp_path: Path) -> None:
    site = tmp_path / "rules.toml"
    site.write_text("version = 1\nextends_bundled = true\n[objects.fire]\nmin_area = 0.01\n")
    rules = CameraRuleSet.load(site).for_camera(CAMERA.id)
    run = Run(rules)
    for second in range(5):
        run.feed(second, [FIRE])  # 40 x 40 pixels of a 1000 x 1000 frame: 0.0016 of it
    assert not run.of("fire")
    for second in range(5, 10):
        run.feed(second, [det("fire", 0.8, 700, 400, size=150)])  # 0.0225 of the frame
    assert run.actions("fire") == ["open"]


def test_object_sizes_are_validated(tmp_path: Path) -> None:
    site = tmp_path / "rules.toml"
    site.write_text(
        "version = 1\nextends_bundled = true\n[objects.car]\nmin_area = 0.2\nmax_area = 0.1\n"
    )
    with pytest.raises(ValidationError, match="min_area must be below max_area"):
        CameraRuleSet.load(site)


def test_a_zone_is_judged_only_within_its_schedule(rules: CameraRules) -> None:
    """T0 is 15:00 on a Monday in Vietnam; the gate is watched from 22:00 to 05:00."""
    night = Window(start=time(22), end=time(5))
    zones = tuple(
        zone.model_copy(update={"schedule": (night,)}) if zone.kind == "crowd" else zone
        for zone in CAMERA.zones
    )
    run = Run(rules, camera=CAMERA.model_copy(update={"zones": zones}))
    for second in range(0, 60, 5):
        run.feed(second, crowd(5))
    assert not run.of("crowd"), "crowded in the afternoon: not watched"
    evening = 7 * 3600  # 22:00
    for second in range(evening, evening + 20, 5):
        run.feed(second, crowd(5))
    assert run.actions("crowd") == ["open"]


@pytest.mark.parametrize(
    ("local", "watched"),
    [
        ("2026-11-23T21:59", False),  # Monday evening, before the window
        ("2026-11-23T22:00", True),
        ("2026-11-24T04:59", True),  # Tuesday early: Monday's window
        ("2026-11-24T05:00", False),
        ("2026-11-22T23:30", False),  # Sunday night: the window is Monday to Friday
        ("2026-11-23T02:00", False),  # Monday early: Sunday's window
        ("2026-11-28T01:00", True),  # Saturday early: Friday's window
    ],
)
def test_a_window_past_midnight_belongs_to_the_day_it_starts(local: str, watched: bool) -> None:
    window = Window(days=(1, 2, 3, 4, 5), start=time(22), end=time(5))
    moment = datetime.fromisoformat(local + "+07:00").astimezone(UTC)
    assert window.covers(moment) is watched


def test_zone_settings_that_make_no_sense_are_refused() -> None:
    with pytest.raises(ValidationError, match="only a line has a direction"):
        Zone(name="x", kind="crowd", points=POSTER.points, limit=3, direction="left_to_right")
    with pytest.raises(ValidationError, match="ISO weekdays"):
        Window(days=(0,), start=time(8), end=time(9))
