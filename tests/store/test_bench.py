"""`ioc bench store` end to end with tiny numbers, on a private PostgreSQL of its own."""

from __future__ import annotations

import io

import pytest
from rich.console import Console

from ioc.devtools.bench.store import TABLES, StoreBenchResult, round_rows, run_bench

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_round_rows_are_distinct_per_round() -> None:
    first, second = round_rows(1000, 0), round_rows(1000, 1)
    keys = {(r[0], r[2], r[1]) for r in first + second}
    assert len(keys) == 2000  # every row new, in both rounds


def test_bench_runs_and_reports() -> None:
    out = io.StringIO()
    result = run_bench(2000, 2, 500, Console(file=out, width=160))
    assert isinstance(result, StoreBenchResult)
    assert len(result.sink) == len(result.raw) == len(result.staged) == 2
    assert result.complete, result.stored  # the replay stored nothing twice
    assert result.stored == (4000,) * len(TABLES)
    assert result.ratio > 0 and result.replay > 0
    text = out.getvalue()
    assert "ioc bench store" in text and "median rows/s" in text
    assert "target sink ≥ 60% of raw COPY" in text
