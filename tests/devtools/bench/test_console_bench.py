"""`ioc bench console` on a tiny run: both pages and their baselines measured on a stack of its
own, the ratio is baseline / console, and the operators figure follows from the refresh."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from rich.console import Console

from ioc.devtools.bench import console as bench

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.mark.timeout(300)
def test_bench_console_times_the_pages_against_their_queries() -> None:
    output = Console(record=True, width=200)
    result = bench.run_bench(incidents=60, requests=5, rounds=2, console=output)
    for timing in (result.queue, result.incident):
        assert len(timing.console) == len(timing.baseline) == 2
        assert timing.console_ms > 0 and timing.baseline_ms > 0
        assert timing.ratio == pytest.approx(timing.baseline_ms / timing.console_ms)
    assert result.operators == int(result.refresh_s / (result.queue.console_ms / 1000))
    text = output.export_text()
    assert "queue refresh" in text and "incident page" in text and "operators" in text


def test_the_seeded_day_is_open_and_acknowledged_incidents_in_three_wards() -> None:
    incidents = bench.seeded(12, datetime(2026, 12, 6, tzinfo=UTC))
    assert {i.status for i in incidents} == {"open", "acknowledged"}
    assert len({i.district for i in incidents}) == 3
    assert len({i.id for i in incidents}) == 12
