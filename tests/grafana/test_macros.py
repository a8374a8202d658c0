from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from ioc.grafana.macros import expand, grafana_interval, parse_interval

FROM = datetime(2026, 11, 23, 10, 0, tzinfo=timezone(timedelta(hours=7)))
TO = datetime(2026, 11, 23, 4, 0, tzinfo=UTC)


def run(sql: str, **options: object) -> str:
    return expand(sql, time_from=FROM, time_to=TO, **options)  # type: ignore[arg-type]


def test_time_filter_and_bounds_are_utc_instants() -> None:
    assert run("WHERE $__timeFilter(t.at) AND x > $__timeFrom() AND y < $__timeTo()") == (
        "WHERE t.at BETWEEN '2026-11-23T03:00:00Z' AND '2026-11-23T04:00:00Z'"
        " AND x > '2026-11-23T03:00:00Z' AND y < '2026-11-23T04:00:00Z'"
    )


def test_time_group_plain_postgres_and_timescaledb() -> None:
    sql = "SELECT $__timeGroupAlias(observed_at, $__interval), $__timeGroup(at, '5m')"
    assert run(sql, interval=timedelta(seconds=30)) == (
        'SELECT to_timestamp(floor(extract(epoch from observed_at)/30)*30) AS "time",'
        " to_timestamp(floor(extract(epoch from at)/300)*300)"
    )
    assert run(sql, interval=timedelta(minutes=1), timescaledb=True) == (
        "SELECT time_bucket('60.000s', observed_at) AS \"time\", time_bucket('300.000s', at)"
    )


def test_interval_variables() -> None:
    assert run("$__interval_ms / $__interval", interval=timedelta(minutes=2)) == "120000 / 2m"
    assert [grafana_interval(timedelta(seconds=s)) for s in (0.5, 30, 60, 7200, 86400)] == [
        "500ms",
        "30s",
        "1m",
        "2h",
        "1d",
    ]
    assert parse_interval("'15m'") == 900 and parse_interval("1h") == 3600


@pytest.mark.parametrize(
    "sql",
    ["$__timeEpoch(at)", "$__unixEpochFilter(at)", "$__timeFilter(a, b)", "$__timeFrom"],
)
def test_unknown_or_malformed_macros_are_errors(sql: str) -> None:
    with pytest.raises(ValueError, match="unsupported Grafana macro"):
        run(sql)


def test_bad_interval_and_naive_times() -> None:
    with pytest.raises(ValueError, match="interval"):
        run("$__timeGroup(at, 'often')")
    with pytest.raises(ValueError, match="timezone-aware"):
        expand("SELECT 1", time_from=datetime(2026, 1, 1), time_to=TO)
