"""Batch triage of a JSONL file of tickets (the `ioc triage` command)."""

from __future__ import annotations

import json
import sys
from datetime import datetime
from typing import Any, TextIO

from ioc.hotline.categories import Category
from ioc.hotline.triage import Triage
from ioc.models.base import VIETNAM_TIME


class _Rejected(ValueError):
    """A line that cannot be triaged; the message says why."""


def _received(record: dict[str, Any]) -> datetime:
    value = record.get("requested_datetime")
    if value is None:
        return datetime.now(VIETNAM_TIME)
    if not isinstance(value, str):
        raise _Rejected("requested_datetime is not a string")
    try:
        moment = datetime.fromisoformat(value)
    except ValueError as error:
        raise _Rejected(f"requested_datetime is not ISO 8601: {value!r}") from error
    # A time without offset is Vietnam's local time, as staff and citizens write it.
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=VIETNAM_TIME)


def _service_code(record: dict[str, Any]) -> Category | None:
    value = record.get("service_code")
    if value is None or value == "":
        return None
    try:
        return Category(value)
    except ValueError as error:
        raise _Rejected(f"unknown service_code {value!r}") from error


def _triage_line(line: str, triage: Triage) -> dict[str, Any]:
    try:
        record = json.loads(line)
    except json.JSONDecodeError as error:
        raise _Rejected(f"invalid JSON ({error.msg} at column {error.colno})") from error
    if not isinstance(record, dict):
        raise _Rejected("not a JSON object")
    description = record.get("description")
    if not isinstance(description, str) or not description.strip():
        raise _Rejected("missing description")
    received = _received(record)
    result = triage.classify(description, _service_code(record))
    return {
        "service_request_id": record.get("service_request_id"),
        "category": result.category.value,
        "urgent": result.urgent,
        "priority": result.priority,
        "sla_due": triage.sla_due(result, received).isoformat(),
    }


def triage_file(
    source: TextIO, sink: TextIO, triage: Triage, *, errors: TextIO | None = None
) -> tuple[int, int]:
    """Triage each JSONL ticket of `source` into one JSONL line of `sink`.

    A line that is not a JSON object with a `description` (or whose `requested_datetime` or
    `service_code` cannot be read) is reported on `errors` (stderr by default) with its line
    number and reason, and skipped; blank lines are ignored. `requested_datetime` defaults to
    now. Returns (written, rejected).
    """
    report = errors if errors is not None else sys.stderr
    written = rejected = 0
    for number, line in enumerate(source, start=1):
        if not line.strip():
            continue
        try:
            out = _triage_line(line, triage)
        except _Rejected as error:
            print(f"line {number}: {error}", file=report)
            rejected += 1
            continue
        sink.write(json.dumps(out, ensure_ascii=False) + "\n")
        written += 1
    return written, rejected
