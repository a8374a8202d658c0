"""`ioc tickets import FILE.csv|FILE.jsonl`: bulk intake of tickets from other systems.

Rows are validated exactly like Open311 POSTs (see ioc.api.open311), except that
`requested_datetime` is required and `service_request_id` may be given. A row without an id gets
one derived from its content, so importing the same file twice publishes the same ids (the store
upserts) instead of duplicating tickets. Rejection reasons name fields, never values.
"""

from __future__ import annotations

import asyncio
import csv
import hashlib
import io
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from aiokafka.structs import RecordMetadata
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from ioc.api.open311 import (
    INTAKE_FIELDS,
    IntakeError,
    field_label,
    intake_values,
    make_ticket,
)
from ioc.config import Settings
from ioc.kafka.clients import producer as kafka_producer
from ioc.kafka.topics import TICKETS
from ioc.models import Ticket
from ioc.models.base import VIETNAM_TIME
from ioc.runtime import run_async

BATCH = 500
SHOWN_REJECTIONS = 50
IMPORT_FIELDS = INTAKE_FIELDS | {"service_request_id"}
SKIPPED_KEYS = frozenset({"expected"})  # labels of the sample tickets


@dataclass(frozen=True)
class Rejection:
    line: int
    reason: str


@dataclass
class ImportReport:
    path: Path
    accepted_ids: list[str] = field(default_factory=list)
    rejected: list[Rejection] = field(default_factory=list)

    @property
    def accepted(self) -> int:
        return len(self.accepted_ids)

    def print(self, console: Console) -> None:
        colour = "green" if not self.rejected else "yellow"
        console.print(
            f"[{colour}]{self.path.name}: {self.accepted} accepted, "
            f"{len(self.rejected)} rejected[/]"
        )
        if not self.rejected:
            return
        table = Table("line", "reason")
        for rejection in self.rejected[:SHOWN_REJECTIONS]:
            table.add_row(str(rejection.line), rejection.reason)
        console.print(table)
        if len(self.rejected) > SHOWN_REJECTIONS:
            console.print(f"… and {len(self.rejected) - SHOWN_REJECTIONS} more")


def import_tickets(path: Path, settings: Settings, progress: bool = True) -> ImportReport:
    """Validate and publish every row; with `progress`, show a bar and print the summary.

    Raises ValueError when the file as a whole cannot be read (type, encoding, CSV header).
    """
    report = run_async(aimport_tickets(path, settings, progress=progress))
    if progress:
        report.print(Console())
    return report


async def aimport_tickets(path: Path, settings: Settings, progress: bool = True) -> ImportReport:
    rows = list(read_rows(path))
    report = ImportReport(path)
    seen: dict[str, int] = {}
    client = kafka_producer(settings.kafka, "ioc-import")
    topic = settings.kafka.topic(TICKETS.name)  # under the deployment's prefix
    await client.start()
    try:
        with Progress(
            TextColumn(f"[bold]import {path.name}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            disable=not progress,
        ) as bar:
            task = bar.add_task("", total=len(rows))
            pending: list[asyncio.Future[RecordMetadata]] = []
            for line, row in rows:
                try:
                    ticket = ticket_of(row)
                    if ticket.service_request_id in seen:
                        first = seen[ticket.service_request_id]
                        raise IntakeError([f"service_request_id: duplicate of line {first}"])
                except IntakeError as error:
                    report.rejected.append(Rejection(line, "; ".join(error.problems)))
                else:
                    seen[ticket.service_request_id] = line
                    key, value = TICKETS.encode(ticket)
                    pending.append(await client.send(topic, key=key, value=value))
                    report.accepted_ids.append(ticket.service_request_id)
                    if len(pending) >= BATCH:
                        await asyncio.gather(*pending)
                        pending.clear()
                bar.advance(task)
            await asyncio.gather(*pending)
    finally:
        await client.stop()
    return report


Row = dict[str, object] | IntakeError


def read_rows(path: Path) -> Iterator[tuple[int, Row]]:
    """(line number, fields) per record; a record that cannot be read is an IntakeError."""
    suffix = path.suffix.lower()
    if suffix in (".jsonl", ".ndjson"):
        return _jsonl_rows(path)
    if suffix == ".csv":
        return _csv_rows(path)
    raise ValueError(f"{path.name}: expected a .csv or .jsonl file")


def _jsonl_rows(path: Path) -> Iterator[tuple[int, Row]]:
    with path.open("rb") as handle:
        for number, raw in enumerate(handle, start=1):
            if not raw.strip():
                continue
            try:
                data = json.loads(raw.decode("utf-8-sig" if number == 1 else "utf-8"))
            except UnicodeDecodeError:
                yield number, IntakeError(["line: not UTF-8"])
                continue
            except json.JSONDecodeError as error:
                yield number, IntakeError([f"line: malformed JSON ({error.msg})"])
                continue
            if not isinstance(data, dict):
                yield number, IntakeError(["line: not a JSON object"])
                continue
            yield number, data


def _csv_rows(path: Path) -> Iterator[tuple[int, Row]]:
    try:
        text = path.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError:
        raise ValueError(f"{path.name}: not UTF-8 text") from None
    reader = csv.reader(io.StringIO(text, newline=""))
    header = next(reader, None)
    if not header:
        return iter(())
    names = [name.strip() for name in header]
    duplicates = sorted({field_label(name) for name in names if names.count(name) > 1})
    if duplicates:
        raise ValueError(f"{path.name}: column(s) named twice: {', '.join(duplicates)}")

    def rows() -> Iterator[tuple[int, Row]]:
        start = reader.line_num + 1
        for cells in reader:
            line, start = start, reader.line_num + 1
            if not any(cell.strip() for cell in cells):
                continue
            if len(cells) > len(names):
                yield line, IntakeError(["row: more cells than header columns"])
                continue
            yield line, dict(zip(names, cells, strict=False))

    return rows()


def ticket_of(row: Row) -> Ticket:
    """Validate one imported record; raises IntakeError naming every bad field."""
    if isinstance(row, IntakeError):
        raise row
    fields = {name: value for name, value in row.items() if name not in SKIPPED_KEYS}
    values, problems = intake_values(fields, IMPORT_FIELDS)
    if "service_request_id" not in values:
        values["service_request_id"] = _derived_id(values)
    try:
        return make_ticket(values, problems)
    except IntakeError as error:  # the API defaults it to now; an import must say when
        raise IntakeError(
            [
                "requested_datetime: required for imports"
                if problem == "requested_datetime: required"
                else problem
                for problem in error.problems
            ]
        ) from None


def _derived_id(values: dict[str, object]) -> str:
    """`TN-YYYYMMDD-<8 hex>` from the record itself: stable across re-imports of the file."""
    canonical = json.dumps(values, sort_keys=True, default=str, ensure_ascii=False)
    digest = hashlib.sha256(canonical.encode()).hexdigest()[:8]
    requested = values.get("requested_datetime")
    day = f"{requested.astimezone(VIETNAM_TIME):%Y%m%d}" if isinstance(requested, datetime) else "0"
    return f"TN-{day}-{digest}"
