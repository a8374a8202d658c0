"""The roster file: who holds a role when (Vietnam time, shifts past midnight), and a file that
names people, roles or channels that do not exist refused with the name."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from pydantic import ValidationError

from ioc.dispatch.roster import Roster
from ioc.models.base import VIETNAM_TIME

ROSTER = """
version = 1
[roles.duty_desk]
name = "Trực ban 1022"
[roles.supervisor]
name = "Giám sát ca"
[people.lan]
name = "Nguyễn Thị Lan"
contacts = ["sms:0912000001", "email:lan@ioc.invalid"]
[people.minh]
name = "Trần Văn Minh"
contacts = ["zalo:0912000002"]
[[shifts]]
role = "duty_desk"
person = "lan"
days = ["mon", "tue", "wed", "thu", "fri"]
start = "07:30"
end = "17:30"
[[shifts]]
role = "duty_desk"
person = "minh"
days = ["fri"]
start = "17:30"
end = "07:30"
[[shifts]]
role = "supervisor"
person = "minh"
start = "00:00"
end = "00:00"
[chains.urgent]
hold_minutes = 30
steps = [{ role = "duty_desk", after_minutes = 0, repeat_minutes = 3, times = 2 }]
"""


def roster(tmp_path: Path, text: str = ROSTER) -> Roster:
    path = tmp_path / "roster.toml"
    path.write_text(text)
    return Roster.load(path)


def vietnam(day: int, hour: int, minute: int = 0) -> datetime:
    """December 2026 in Vietnam time, as UTC (the roster reads it back): the 4th is a Friday."""
    return datetime(2026, 12, day, hour, minute, tzinfo=VIETNAM_TIME).astimezone(UTC)


def test_who_is_on_duty_follows_the_shifts_in_vietnam_time(tmp_path: Path) -> None:
    on_call = roster(tmp_path)
    assert on_call.on_duty("duty_desk", vietnam(4, 9)) == ["lan"]  # Friday morning
    assert on_call.on_duty("duty_desk", vietnam(4, 17, 30)) == ["minh"]  # the night shift
    assert on_call.on_duty("duty_desk", vietnam(5, 3)) == ["minh"], "Friday's night, on Saturday"
    assert on_call.on_duty("duty_desk", vietnam(5, 9)) == [], "nobody on Saturday morning"
    assert on_call.on_duty("duty_desk", vietnam(6, 3)) == [], "Saturday's night is not Friday's"
    assert on_call.on_duty("supervisor", vietnam(6, 3)) == ["minh"], "00:00 to 00:00: all day"
    assert on_call.people["lan"].reachable() == [
        ("sms", "0912000001"),
        ("email", "lan@ioc.invalid"),
    ]


def test_the_bundled_roster_loads_and_staffs_every_step() -> None:
    bundled = Roster.load()
    assert set(bundled.chains) == {"urgent", "high"}
    for hour in range(24):
        moment = datetime(2026, 12, 6, hour, 15, tzinfo=UTC)
        assert len(bundled.on_duty("duty_desk", moment)) == 1, hour


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (('person = "lan"', 'person = "lanh"'), "unknown person 'lanh'"),
        (('{ role = "duty_desk"', '{ role = "truc_ban"'), "unknown role 'truc_ban'"),
        (('"zalo:0912000002"', '"fax:0912000002"'), "expected email:…, sms:… or zalo:…"),
        (("hold_minutes = 30", "hold_minutes = 30\nescalate = true"), "Extra inputs"),
        (("times = 2 }", 'times = 2 }, { role = "leader", after_minutes = 5 }'), "'leader'"),
    ],
)
def test_a_wrong_roster_is_refused_by_name(
    tmp_path: Path, change: tuple[str, str], message: str
) -> None:
    with pytest.raises(ValidationError, match=message):
        roster(tmp_path, ROSTER.replace(*change, 1))


def test_a_role_in_a_chain_that_nobody_holds_is_refused(tmp_path: Path) -> None:
    text = ROSTER.replace('role = "duty_desk", after', 'role = "supervisor", after').replace(
        'role = "supervisor"\nperson = "minh"', 'role = "duty_desk"\nperson = "minh"'
    )
    with pytest.raises(ValidationError, match="nobody ever holds 'supervisor'"):
        roster(tmp_path, text)
