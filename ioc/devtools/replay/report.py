"""What a replay or a comparison prints: a summary an engineer can act on."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from rich.console import Console
from rich.table import Table

from ioc.devtools.replay.compare import Diff, OutcomeDiff, View
from ioc.devtools.replay.labels import LabelScore
from ioc.devtools.replay.replay import ReplayResult
from ioc.models.base import VIETNAM_TIME


def local(moment: datetime) -> str:
    return moment.astimezone(VIETNAM_TIME).strftime("%Y-%m-%d %H:%M:%S")


def render_result(result: ReplayResult, console: Console) -> None:
    sandbox = result.sandbox
    flow = Table("topic", "messages", title=f"Replayed into sandbox {sandbox.name}")
    for name, count in sorted(result.published.items()):
        flow.add_row(sandbox.topic_prefix + name, f"{count:,}")
    for name in result.not_replayed:
        flow.add_row(name, "[dim]not replayed: the sandbox derives it[/]")
    console.print(flow)
    console.print(
        f"{result.messages:,} messages covering {result.span_s:,.0f} s of recorded time, "
        f"processed in {result.processing_s:,.1f} s: [bold]{result.speedup:,.1f}× real time[/], "
        f"{result.rate:,.0f} events/s ({result.total_s:,.1f} s with sandbox set-up)"
    )
    outcome = result.outcome
    if outcome is None:
        return
    counts = Counter((i.kind, i.severity) for i in outcome.incidents)
    table = Table("kind", "severity", "incidents", title="Incidents (fused)")
    for (kind, severity), count in sorted(counts.items()):
        table.add_row(kind, severity, str(count))
    console.print(table)
    rows = ", ".join(f"{table} {count:,}" for table, count in outcome.rows.items())
    console.print(
        f"{len(outcome.candidates)} source incidents fused into "
        f"{sum(counts.values())} incidents; rows: {rows}"
    )
    console.print(
        f"inspect: schema [bold]{result.schema}[/] (psql: SET search_path = {result.schema}), "
        f"topics [bold]{result.topic_prefix}*[/]"
    )


def _table(title: str, views: Sequence[View]) -> Table:
    table = Table("incident", "kind", "severity", "opened (event time)", "where", title=title)
    for view in views:
        table.add_row(
            view.id,
            view.kind,
            getattr(view, "severity", ""),
            local(view.event_time),
            getattr(view, "district", None) or view.head_key,
        )
    return table


def _describe(name: str, a: object, b: object, shift_s: float) -> str:
    if name == "event_time":
        return f"opens {abs(shift_s):,.0f} s {'later' if shift_s > 0 else 'earlier'}"
    return f"{name} {a} → {b}"


def _render(level: str, found: Diff[Any], console: Console) -> None:
    console.print(
        f"[bold]{level}[/]: {found.same} the same, {len(found.only_a)} only in A, "
        f"{len(found.only_b)} only in B, {len(found.changed)} changed"
    )
    if found.only_a:
        console.print(_table(f"{level}: opened only in A", found.only_a))
    if found.only_b:
        console.print(_table(f"{level}: opened only in B", found.only_b))
    if found.changed:
        table = Table(
            "incident (A)",
            "kind",
            "where",
            "opened in A",
            "what B changed",
            title=f"{level}: changed",
        )
        for change in found.changed:
            table.add_row(
                change.a.id,
                change.a.kind,
                change.a.head_key,
                local(change.a.event_time),
                "; ".join(
                    _describe(
                        name, getattr(change.a, name), getattr(change.b, name), change.shift_s
                    )
                    for name in change.fields
                ),
            )
        console.print(table)


def render_diff(found: OutcomeDiff, a_label: str, b_label: str, console: Console) -> None:
    console.rule("incident diff")
    console.print(f"[bold]A[/] = {a_label}\n[bold]B[/] = {b_label}")
    _render("Source incidents (what the rules raised)", found.candidates, console)
    _render("Incidents (what staff act on)", found.incidents, console)
    if found.empty:
        console.print("[green]no difference in incidents[/]")


def render_scores(a: LabelScore, b: LabelScore, console: Console) -> None:
    """Each rule set on the labelled set: false alarms it raises again, real ones it misses."""
    table = Table("", "A", "B", title="Labelled set (staff's judgements)")

    def share(part: int, whole: int) -> str:
        return f"{part}/{whole}"

    def precision(found: LabelScore) -> str:
        return "–" if found.precision is None else f"{found.precision:.2f}"

    table.add_row(
        "false alarms raised again",
        share(a.false_alarms_raised, a.false_alarms),
        share(b.false_alarms_raised, b.false_alarms),
    )
    table.add_row(
        "confirmed incidents raised",
        share(a.confirmed_raised, a.confirmed),
        share(b.confirmed_raised, b.confirmed),
    )
    table.add_row("precision on the labels", precision(a), precision(b))
    console.print(table)
