"""`ioc incidents …`: what hotline staff do from a terminal on the IOC's servers (the HTTP API
under /api/v1/incidents does the same for other tools)."""

from __future__ import annotations

import getpass
import json
from collections.abc import Awaitable, Callable
from dataclasses import asdict
from typing import TYPE_CHECKING, Annotated

import psycopg
import typer
from rich.table import Table

from ioc.commandline import console
from ioc.config import get_settings
from ioc.dispatch.units import Units
from ioc.incidents import lifecycle
from ioc.incidents.lifecycle import EvidenceFiles
from ioc.models import FusedIncident, FusedStatus
from ioc.models.base import VIETNAM_TIME
from ioc.runtime import run_async

if TYPE_CHECKING:
    from ioc.incidents.service import StaffActions

incidents_app = typer.Typer(
    help="Incidents staff act on: list, show, acknowledge, resolve, reopen.",
    no_args_is_help=True,
)
STYLES = {"urgent": "bold red", "high": "yellow", "normal": "cyan"}

JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON instead of tables.")]
ByOption = Annotated[
    str | None, typer.Option("--by", help="Who is acting (default: your login name).")
]
ReasonOption = Annotated[str | None, typer.Option(help="Why; kept in the incident's history.")]


async def _connect() -> psycopg.AsyncConnection:
    return await psycopg.AsyncConnection.connect(get_settings().database.dsn, autocommit=True)


def _local(moment: object) -> str:
    return moment.astimezone(VIETNAM_TIME).strftime("%d/%m %H:%M:%S") if moment else "–"  # type: ignore[attr-defined]


@incidents_app.command("list")
def list_command(
    status: Annotated[
        list[FusedStatus] | None,
        typer.Option(help="Repeat for several; default open and acknowledged."),
    ] = None,
    limit: Annotated[int, typer.Option(min=1)] = 50,
    as_json: JsonOption = False,
) -> None:
    """Incidents, the most severe and the most recent first."""
    statuses = status or [FusedStatus.OPEN, FusedStatus.ACKNOWLEDGED]

    async def read() -> list[FusedIncident]:
        async with await _connect() as conn:
            return await lifecycle.listed(conn, statuses, limit)

    incidents = run_async(read())
    if as_json:
        print(json.dumps([i.model_dump(mode="json") for i in incidents], ensure_ascii=False))
        return
    table = Table(title=f"Incidents ({', '.join(statuses)})")
    for column in ("id", "severity", "status", "kind", "src", "1022", "district", "since", "title"):
        table.add_column(column, overflow="fold")
    for incident in incidents:
        table.add_row(
            incident.id,
            f"[{STYLES[incident.severity]}]{incident.severity}[/]",
            incident.status,
            incident.kind,
            str(incident.sources),
            str(incident.reports),
            incident.district or "–",
            _local(incident.status_since),
            incident.title,
        )
    console.print(table)


@incidents_app.command("show")
def show_command(
    incident_id: Annotated[str, typer.Argument(help="The incident's id.")],
    as_json: JsonOption = False,
) -> None:
    """One incident: its sources, evidence, 1022 tickets with the reporters' answers and every
    change (who, when, why)."""

    async def read() -> tuple[FusedIncident, list[dict], list[EvidenceFiles], list[dict]]:
        async with await _connect() as conn:
            incident = await lifecycle.get(conn, incident_id)
            return (
                incident,
                await lifecycle.history(conn, incident_id),
                await lifecycle.evidence_files(conn, incident),
                await lifecycle.tickets(conn, incident),
            )

    try:
        incident, history, files, tickets = run_async(read())
    except lifecycle.UnknownIncident as error:
        console.print(f"[red]{error}[/]")
        raise typer.Exit(1) from None
    if as_json:
        body = incident.model_dump(mode="json") | {
            "history": [row | {"at": row["at"].isoformat()} for row in history],
            "evidence_files": [asdict(entry) for entry in files],
            "tickets": [row | {"requested_at": row["requested_at"].isoformat()} for row in tickets],
        }
        print(json.dumps(body, ensure_ascii=False))
        return
    ended = f" as {incident.resolution}" if incident.resolution else ""
    console.print(
        f"[{STYLES[incident.severity]}]{incident.severity.upper()}[/] [bold]{incident.title}[/]\n"
        f"{incident.id} · {incident.kind} · {incident.status}{ended} "
        f"(episode {incident.episode}) · "
        f"{incident.sources} source type(s), {incident.reports} citizen report(s) · "
        f"{incident.district or '–'} · scope {incident.scope}"
    )
    if incident.merged_into:
        console.print(f"merged into [bold]{incident.merged_into}[/]")
    members = Table(title="Sources")
    for column in ("candidate", "source", "key", "kind", "severity", "status", "event time"):
        members.add_column(column)
    for member in incident.members:
        members.add_row(
            member.id,
            member.source,
            member.source_key,
            member.kind,
            member.severity,
            member.status,
            _local(member.event_time),
        )
    console.print(members)
    for name, items in incident.evidence.items():
        console.print(f"[bold]{name}[/]: " + json.dumps(items, ensure_ascii=False, default=str))
    for entry in files:
        console.print(f"camera {entry.camera_id}: snapshot {entry.snapshot or '–'}")
        console.print(f"camera {entry.camera_id}: clip {entry.clip or entry.clip_status}")
    for ticket in tickets:  # the reporter's words: no markup
        answers = json.dumps(ticket["attributes"], ensure_ascii=False)
        console.print(
            f"ticket {ticket['service_request_id']}: {ticket['description']} · answers {answers}",
            markup=False,
        )
    changes = Table(title="History")
    for column in ("v", "at", "change", "status", "severity", "who", "why"):
        changes.add_column(column, overflow="fold")
    for row in history:
        changes.add_row(
            str(row["version"]),
            _local(row["at"]),
            row["change"],
            row["status"],
            row["severity"],
            row["actor"],
            row["reason"] or "",
        )
    console.print(changes)


def _act(incident_id: str, action: str, by: str | None, reason: str | None) -> None:
    _apply(by, lambda actions, actor: actions.change_incident(incident_id, action, actor, reason))


def _apply(by: str | None, change: Callable[[StaffActions, str], Awaitable[FusedIncident]]) -> None:
    """Change the incident in the database, then publish the new version for alerting."""
    from ioc.incidents.service import terminal_actions

    actor = by or getpass.getuser()

    async def run() -> FusedIncident:
        async with terminal_actions(get_settings()) as actions:
            return await change(actions, actor)

    try:
        incident = run_async(run())
    except (lifecycle.UnknownIncident, lifecycle.IncidentTransitionError) as error:
        console.print(f"[red]{error}[/]")
        raise typer.Exit(1) from None
    console.print(f"{incident.id}: {incident.change} by {actor} (version {incident.version})")


@incidents_app.command("ack")
def ack_command(
    incident_id: Annotated[str, typer.Argument(help="The incident's id.")],
    by: ByOption = None,
    reason: ReasonOption = None,
) -> None:
    """Acknowledge: someone is on it. Its alerts are silenced until it resolves or reopens."""
    _act(incident_id, "ack", by, reason)


@incidents_app.command("start")
def start_command(
    incident_id: Annotated[str, typer.Argument(help="The incident's id.")],
    by: ByOption = None,
    reason: ReasonOption = None,
) -> None:
    """Đang xử lý: work on it has started (acknowledges it too, if nobody had)."""
    _act(incident_id, "start", by, reason)


@incidents_app.command("assign")
def assign_command(
    incident_id: Annotated[str, typer.Argument(help="The incident's id.")],
    unit: Annotated[str, typer.Argument(help="The unit's id in the units file (pccc, csgt, …).")],
    by: ByOption = None,
    reason: ReasonOption = None,
) -> None:
    """Giao đơn vị: hand it to a unit, or transfer it (the history names both units)."""
    units = Units.load(get_settings().console.units)
    if units.get(unit) is None:
        console.print(f"[red]no unit {unit!r}: one of {', '.join(sorted(units.units))}[/]")
        raise typer.Exit(2)
    _apply(by, lambda actions, actor: actions.assign_unit(incident_id, unit, actor, reason))


@incidents_app.command("resolve")
def resolve_command(
    incident_id: Annotated[str, typer.Argument(help="The incident's id.")],
    by: ByOption = None,
    reason: ReasonOption = None,
) -> None:
    """Resolve: staff are done with it (new evidence reopens it)."""
    _act(incident_id, "resolve", by, reason)


@incidents_app.command("false-alarm")
def false_alarm_command(
    incident_id: Annotated[str, typer.Argument(help="The incident's id.")],
    by: ByOption = None,
    reason: ReasonOption = None,
) -> None:
    """Báo nhầm: nothing was there. Resolves it (or relabels one that cleared by itself); the
    cameras wall counts it against its camera and rule, and `ioc replay labels` exports it."""
    _act(incident_id, "false_alarm", by, reason)


@incidents_app.command("reopen")
def reopen_command(
    incident_id: Annotated[str, typer.Argument(help="The incident's id.")],
    by: ByOption = None,
    reason: ReasonOption = None,
) -> None:
    """Reopen a resolved incident: it pages again."""
    _act(incident_id, "reopen", by, reason)
