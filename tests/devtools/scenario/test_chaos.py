"""`ioc chaos` in small: six SIGKILLs (two of each worker) under steady mixed load, on a stack
of its own; every check of the full command must pass. Slow, and in CI: before the consumer of
`ioc.streams.consumer`, it lost the tickets and frames fetched around a restarted worker's seek."""

from __future__ import annotations

import pytest
from rich.console import Console

from ioc.devtools.scenario.chaos import (
    DRAIN_TIMEOUT_S,
    READY_TIMEOUT_S,
    SETTLE_TIMEOUT_S,
    WORKERS,
    kill_plan,
    render,
    run_chaos,
    unaccounted_frames,
)

# The run's own stage bounds, plus the kills: pytest must not cut a run those bounds allow (CI
# cut one at the suite's 300 s while it drained on a machine busy with other work).
RUN_BOUND_S = READY_TIMEOUT_S + DRAIN_TIMEOUT_S + SETTLE_TIMEOUT_S + 120


def test_the_kill_plan_shares_kills_evenly_and_depends_only_on_the_seed() -> None:
    plan = kill_plan(21, seed=3)
    assert sorted(plan) == sorted(list(WORKERS) * 7)
    assert plan == kill_plan(21, seed=3) != kill_plan(21, seed=4)


def test_a_frame_neither_judged_nor_counted_as_replaced_is_unaccounted() -> None:
    from collections import Counter

    judged = [("cam", 0, 0), ("cam", 3, 2), ("cam", 4, 0)]  # frame 3 replaced 1 and 2
    assert unaccounted_frames(judged, Counter({"cam": 5})) == []
    assert unaccounted_frames(judged, Counter({"cam": 6})) == ["cam 5..5 (0 counted)"]
    undercounted = [("cam", 0, 0), ("cam", 3, 1), ("cam", 4, 0)]
    assert unaccounted_frames(undercounted, Counter({"cam": 5})) == ["cam 1..2 (1 counted)"]


@pytest.mark.slow
@pytest.mark.timeout(RUN_BOUND_S)
def test_six_kills_lose_double_and_page_twice_nothing() -> None:
    console = Console(width=200)
    result = run_chaos(kills=6, seed=11, min_gap_s=3.0, max_gap_s=10.0, console=console)
    render(result, 11, console)
    assert sum(result.kills.values()) == 6
    failed = [f"{c.name}: {c.figures}" for c in result.checks if not c.ok]
    assert not failed, f"{failed}; worker logs in {result.logs}"
