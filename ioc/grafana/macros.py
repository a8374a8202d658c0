"""Expand the Grafana PostgreSQL macros the walls use, as Grafana does before it sends a panel's
SQL, so the SQL can be run outside Grafana (tests, `psql`, debugging a panel).

Supported (what `ioc.grafana.walls` uses; anything else starting with `$__` is an error):

- `$__timeFilter(col)`: `col BETWEEN '<from>' AND '<to>'` (ISO 8601, UTC);
- `$__timeFrom()`, `$__timeTo()`: `'<from>'`, `'<to>'`;
- `$__timeGroup(col, interval)`: with TimescaleDB `time_bucket('<N>s', col)`, on plain
  PostgreSQL `to_timestamp(floor(extract(epoch from col)/N)*N)`;
- `$__timeGroupAlias(col, interval)`: the same, `AS "time"`;
- `$__interval`, `$__interval_ms`: the interval as Grafana writes it (`1m`, `30s`), and in ms.

Both `$__timeGroup` forms give UTC-aligned buckets. Grafana itself, with the datasource's
TimescaleDB toggle off, writes `floor(extract(epoch from col)/N)*N` (epoch seconds, which it
reads as time); `to_timestamp(...)` of it is the same instant as a timestamptz, so the rows have
the shape the panel gets: a timestamp first.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

MACRO = re.compile(r"\$__(\w+)(?:\(([^()]*)\))?")
UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
DURATION = re.compile(r"^(\d+(?:\.\d+)?)(ms|s|m|h|d|w)$")


def grafana_interval(interval: timedelta) -> str:
    """`timedelta(minutes=1)` as Grafana writes `$__interval`: 1m, 30s, 2h, 1d, 500ms."""
    ms = round(interval.total_seconds() * 1000)
    for unit, seconds in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if ms % (seconds * 1000) == 0:
            return f"{ms // (seconds * 1000)}{unit}"
    return f"{ms}ms"


def parse_interval(text: str) -> float:
    """Seconds in a Grafana interval argument: `5m`, `'5m'`, `30s`, `1h`."""
    match = DURATION.match(text.strip().strip("'\""))
    if not match:
        raise ValueError(f"not a Grafana interval: {text!r}")
    return float(match[1]) * UNITS[match[2]]


def _instant(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _group(column: str, seconds: float, timescaledb: bool) -> str:
    if timescaledb:
        return f"time_bucket('{seconds:.3f}s', {column})"
    step = f"{seconds:g}"
    return f"to_timestamp(floor(extract(epoch from {column})/{step})*{step})"


def expand(
    sql: str,
    *,
    time_from: datetime,
    time_to: datetime,
    interval: timedelta = timedelta(minutes=1),
    timescaledb: bool = False,
) -> str:
    """`sql` with every Grafana macro replaced; unknown macros raise ValueError."""
    if time_from.tzinfo is None or time_to.tzinfo is None:
        raise ValueError("time_from and time_to must be timezone-aware")
    # Grafana interpolates the interval variables first, then the macros that take arguments.
    sql = sql.replace("$__interval_ms", str(round(interval.total_seconds() * 1000)))
    sql = re.sub(r"\$__interval\b", grafana_interval(interval), sql)
    start, end = f"'{_instant(time_from)}'", f"'{_instant(time_to)}'"

    def replace(match: re.Match[str]) -> str:
        name, raw_args = match[1], match[2]
        args = [arg.strip() for arg in raw_args.split(",")] if raw_args else []
        if name == "timeFilter" and len(args) == 1:
            return f"{args[0]} BETWEEN {start} AND {end}"
        if name == "timeFrom" and raw_args is not None and not args:
            return start
        if name == "timeTo" and raw_args is not None and not args:
            return end
        if name in {"timeGroup", "timeGroupAlias"} and len(args) == 2:
            grouped = _group(args[0], parse_interval(args[1]), timescaledb)
            return f'{grouped} AS "time"' if name == "timeGroupAlias" else grouped
        raise ValueError(f"unsupported Grafana macro: {match[0]}")

    return MACRO.sub(replace, sql)
