"""Loitering: a person staying in a watched zone, however the tracker names them."""

from __future__ import annotations

from ioc.models.registry import Zone
from ioc.rules.camera.registry import CameraRules
from tests.rules.camera.scene import CAMERA, Run, det

ATM = Zone(
    name="atm",
    kind="loitering",
    points=((0.55, 0.5), (1.0, 0.5), (1.0, 1.0), (0.55, 1.0)),
    dwell_s=60,
)
WATCHED = CAMERA.model_copy(update={"zones": (*CAMERA.zones, ATM)})


def test_a_person_staying_beyond_the_dwell_opens_loitering_and_it_clears(
    rules: CameraRules,
) -> None:
    run = Run(rules, camera=WATCHED)
    for second in range(0, 60, 10):
        run.feed(
            second,
            [
                det("person", 0.8, 800, 800, track=5),
                det("person", 0.8, 620 + second * 6, 900, track=6),
            ],
        )
    assert not run.of("loitering"), "59 s: not yet"
    (opened,) = run.feed(60, [det("person", 0.8, 800, 800, track=5)])
    assert (opened.action, opened.kind, opened.details) == (
        "open",
        "loitering",
        {"zone": "atm", "count": 1},
    )
    assert "1 người lảng vảng tại atm quá 60 s" in opened.title
    for second in range(70, 200, 10):
        run.feed(second)
    assert run.actions("loitering") == ["open", "resolve"]


def test_a_new_track_where_an_unseen_person_stood_keeps_their_time(rules: CameraRules) -> None:
    run = Run(rules, camera=WATCHED)
    for second in range(0, 40, 10):
        run.feed(second, [det("person", 0.8, 800, 800, size=100, track=5)])
    for second in range(40, 70, 10):  # the tracker (or a restart) names them 905
        run.feed(second, [det("person", 0.8, 805, 802, size=100, track=905)])
    assert run.actions("loitering") == ["open"], "60 s in the zone, under two names"


def test_people_passing_through_never_loiter(rules: CameraRules) -> None:
    run = Run(rules, camera=WATCHED)
    for second in range(0, 300, 10):
        run.feed(
            second, [det("person", 0.8, 600 + (second % 40) * 10, 800, track=100 + second // 40)]
        )
    assert not run.of("loitering")
