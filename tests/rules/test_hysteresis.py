"""The one hysteresis camera and sensor rules share."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from ioc.rules.hysteresis import Hysteresis

T0 = datetime(2026, 12, 6, 8, 0, tzinfo=UTC)
RULE = Hysteresis(hold=timedelta(seconds=30), clear=timedelta(seconds=60))


def run(samples: list[tuple[int, bool]]) -> list[tuple[int, str]]:
    """Feed (seconds, met) samples; the actions, with an open episode closing on 'resolve'."""
    is_open, since, clear_since, actions = False, None, None, []
    for second, met in samples:
        step = RULE.step(is_open, met, T0 + timedelta(seconds=second), since, clear_since)
        since, clear_since = step.since, step.clear_since
        if step.action is not None:
            actions.append((second, step.action))
            is_open = step.action == "open"
            since = clear_since = None
    return actions


def test_opens_once_met_for_the_hold_and_not_before() -> None:
    assert run([(0, True), (29, True)]) == []
    assert run([(0, True), (10, True), (30, True)]) == [(30, "open")]


def test_a_blip_restarts_the_count_both_ways() -> None:
    assert run([(0, True), (20, False), (40, True), (60, True)]) == []
    assert run([(0, True), (30, True), (40, False), (90, True), (100, False), (159, False)]) == [
        (30, "open")
    ]


def test_resolves_once_unmet_for_the_clear_time() -> None:
    assert run([(0, True), (30, True), (40, False), (100, False)]) == [
        (30, "open"),
        (100, "resolve"),
    ]


def test_a_closed_rule_ignores_clearing_and_an_open_one_ignores_holding() -> None:
    step = RULE.step(False, False, T0, None, T0 - timedelta(hours=1))
    assert step.action is None and step.clear_since == T0 - timedelta(hours=1)
    step = RULE.step(True, True, T0, T0 - timedelta(hours=1), None)
    assert step.action is None and step.since == T0 - timedelta(hours=1)
