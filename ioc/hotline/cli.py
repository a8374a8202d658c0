"""`ioc triage …`: triage a JSONL file, score triage on labelled files, train the model, and
correct a ticket's triage as staff."""

from __future__ import annotations

import getpass
import json
import sys
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any, TextIO

import click
import typer
from rich.table import Table
from typer.core import TyperGroup

from ioc.commandline import console, fail
from ioc.config import get_settings
from ioc.hotline.attributes import raise_for_danger
from ioc.hotline.training import (
    CORPUS_DIR,
    GOAL_RECALL,
    TARGET_RECALL,
    CorpusError,
    evaluate,
    read_corpus,
    read_examples,
    train,
)
from ioc.hotline.triage import Triage
from ioc.models.base import VIETNAM_TIME
from ioc.models.categories import Category
from ioc.runtime import run_async


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


def _answers(record: dict[str, Any]) -> dict[str, tuple[str, ...]]:
    """`attributes` as a ticket carries them (code → list of answers), or none."""
    value = record.get("attributes") or {}
    if not isinstance(value, dict) or not all(
        isinstance(answers, list) and all(isinstance(answer, str) for answer in answers)
        for answers in value.values()
    ):
        raise _Rejected("attributes is not an object of code → list of answers")
    return {code: tuple(answers) for code, answers in value.items()}


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
    service_code = _service_code(record)
    result = raise_for_danger(
        triage.classify(description, service_code), service_code, _answers(record)
    )
    return {
        "service_request_id": record.get("service_request_id"),
        "category": result.category.value,
        "urgent": result.urgent,
        "priority": result.priority,
        "sla_due": triage.sla_due(result, received).isoformat(),
        "urgency_confidence": result.urgency_confidence,
        "matched": list(result.matched),
        "model": result.model,
    }


def triage_file(
    source: TextIO, sink: TextIO, triage: Triage, *, errors: TextIO | None = None
) -> tuple[int, int]:
    """Triage each JSONL ticket of `source` into one JSONL line of `sink`.

    A line that is not a JSON object with a `description` (or whose `requested_datetime`,
    `service_code` or `attributes` cannot be read) is reported on `errors` (stderr by default)
    with its line number and reason, and skipped; blank lines are ignored.
    `requested_datetime` defaults to now. An answer in `attributes` that signals danger makes
    the ticket urgent, as in the stream. Returns (written, rejected).
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


class _ClassifyByDefault(TyperGroup):
    """`ioc triage FILE` and `ioc triage -` mean `ioc triage classify …`, as before there were
    subcommands."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        first = args[0] if args else "-"
        if first not in self.commands and (first == "-" or not first.startswith("-")):
            args = ["classify", *args]
        return super().parse_args(ctx, args)


triage_app = typer.Typer(
    cls=_ClassifyByDefault,
    help="1022 triage: classify tickets, score and train the model, correct a ticket.",
)


def _triage(model: Path | None = None) -> Triage:
    from ioc.hotline.model import TriageModelError

    hotline = get_settings().hotline
    try:
        return Triage.load(hotline.triage_rules, hotline.sla_table, model or hotline.triage_model)
    except TriageModelError as error:
        fail(error)
        raise


ModelOption = Annotated[
    Path | None, typer.Option(help="A model file instead of the configured one.")
]


@triage_app.command("classify")
def classify_command(
    source: Annotated[str, typer.Argument(help="JSONL tickets file, or - for stdin.")] = "-",
    model: ModelOption = None,
) -> None:
    """Triage tickets offline: JSONL in, JSONL out (category, urgent, priority, sla_due, …)."""
    if source != "-" and not Path(source).is_file():
        fail(f"no such file: {source}")
    triage = _triage(model)
    if source == "-":
        triage_file(sys.stdin, sys.stdout, triage)
        return
    with open(source, encoding="utf-8") as handle:
        triage_file(handle, sys.stdout, triage)


@triage_app.command("eval")
def eval_command(
    files: Annotated[list[Path], typer.Argument(help="Labelled JSONL files (see README).")],
    strip_marks: Annotated[
        bool, typer.Option(help="Also score each file with its diacritics removed.")
    ] = True,
    model: ModelOption = None,
    show_missed: Annotated[
        bool, typer.Option(help="List the urgent tickets not flagged urgent.")
    ] = False,
) -> None:
    """Category accuracy, a confusion matrix, and urgent recall and precision."""

    triage = _triage(model)
    assert triage.model is not None
    card = triage.model.content.card
    console.print(
        f"model {triage.model.version} · trained {card.trained_at} on {card.examples} tickets"
        f" and {card.corrections} corrections · urgent from p ≥ {triage.model.urgent_threshold:.3f}"
    )
    for path in files:
        try:
            examples = read_examples(path)
        except (OSError, CorpusError) as error:
            fail(error)
            raise
        variants = [("as written", False)] + ([("marks removed", True)] if strip_marks else [])
        for label, strip in variants:
            scores = evaluate(triage, examples, strip_marks=strip)
            _print_scores(f"{path.name} ({label})", scores, show_missed)


def _print_scores(title: str, scores: Any, show_missed: bool) -> None:
    console.print(
        f"\n[bold]{title}[/]: {scores.total} tickets · category accuracy"
        f" {scores.category_accuracy:.3f} · urgent recall {scores.urgent_recall:.3f}"
        f" ({scores.urgent_found}/{scores.urgent}) · urgent precision"
        f" {scores.urgent_precision:.3f} · false urgent {scores.false_urgent_rate:.3f}"
        f" ({scores.false_urgent}/{scores.not_urgent}) · fires urgent"
        f" {scores.fires_urgent}/{scores.fires}"
    )
    auc, floor = scores.urgent_auc, scores.false_urgent_at(GOAL_RECALL)
    if auc is not None and floor is not None:
        console.print(
            f"ranking: AUC {auc:.3f} · to find {GOAL_RECALL:.0%} of the urgent tickets, any"
            f" threshold flags at least {floor:.3f} of the calm ones"
        )
    present = [c for c in Category if any(c in key for key in scores.confusion)]
    table = Table(title="confusion (rows: labelled, columns: triaged)", title_justify="left")
    table.add_column("")
    for category in present:
        table.add_column(category.value[:8], justify="right")
    for truth in present:
        cells = []
        for guess in present:
            count = scores.confusion.get((truth, guess), 0)
            cells.append(f"[bold]{count}[/]" if truth == guess else str(count or "·"))
        table.add_row(truth.value, *cells)
    console.print(table)
    console.print(_urgency_table(scores))
    if show_missed:
        for text in scores.missed:
            console.print(f"  missed urgent: {text}")


def _urgency_table(scores: Any) -> Table:
    """Where urgency errs, by labelled category and priority: urgent tickets missed, and calm ones
    (p3, and p4: questions, ideas, thanks) flagged urgent."""
    table = Table(title="urgency by labelled category", title_justify="left")
    for name in ("", "p1–2 missed", "p3 flagged", "p4 flagged"):
        table.add_column(name, justify="right" if name else "left")
    for category in Category:
        cells = []
        for priorities, wanted in (((1, 2), False), ((3,), True), ((4,), True)):
            counts = [scores.flagged_by_label.get((category, p), (0, 0)) for p in priorities]
            tickets = sum(t for t, _ in counts)
            flagged = sum(f for _, f in counts)
            errors = flagged if wanted else tickets - flagged
            cells.append(f"{errors}/{tickets}" if tickets else "·")
        if any(cell != "·" for cell in cells):
            table.add_row(category.value, *cells)
    return table


@triage_app.command("train")
def train_command(
    corpus: Annotated[
        Path | None, typer.Option(help="Folder of labelled *.jsonl; default the bundled corpus.")
    ] = None,
    corrections: Annotated[
        bool, typer.Option(help="Fold in staff corrections from the database.")
    ] = True,
    output: Annotated[
        Path | None, typer.Option(help="Where to write the model; default the configured one.")
    ] = None,
    target_recall: Annotated[
        float,
        typer.Option(min=0.5, max=1.0, help="Out-of-fold urgent recall the threshold must reach."),
    ] = TARGET_RECALL,
) -> None:
    """Fit the triage model on the corpus and staff corrections (seconds on a CPU)."""
    from ioc.hotline.model import MODEL_PATH
    from ioc.hotline.triage import RULES_PATH, SLA_PATH, load_rules, load_sla

    settings = get_settings()
    try:
        examples = read_corpus(corpus or CORPUS_DIR)
    except (OSError, CorpusError) as error:
        fail(error)
        raise
    fixes = _corrections(settings.database.dsn) if corrections else []
    rules = Triage(
        load_rules(settings.hotline.triage_rules or RULES_PATH),
        load_sla(settings.hotline.sla_table or SLA_PATH),
        None,
    )
    with console.status("training") as status:
        model = train(
            rules, examples, fixes, target_recall, progress=lambda step: status.update(step)
        )
    target = output or settings.hotline.triage_model or MODEL_PATH
    model.save(target)
    card = model.content.card
    console.print(
        f"model {model.version} → {target}\n{card.examples} tickets, {card.corrections}"
        f" corrections · urgent from p ≥ {model.urgent_threshold:.3f} · cross-validated:"
        f" urgent recall {card.urgent_recall_cv:.3f}, false urgent {card.false_urgent_cv:.3f},"
        f" category accuracy {card.category_accuracy_cv:.3f}"
    )


def _corrections(dsn: str) -> Sequence[Any]:
    import psycopg

    from ioc.hotline.corrections import training_examples

    async def read() -> Sequence[Any]:
        async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
            return await training_examples(conn)

    try:
        return run_async(read())
    except psycopg.OperationalError as error:
        fail(f"cannot read corrections from the database ({error}); or use --no-corrections")
        raise


@triage_app.command("correct")
def correct_command(
    ticket_id: Annotated[str, typer.Argument(help="service_request_id")],
    reason: Annotated[str, typer.Option(help="Why; kept with the correction.")],
    category: Annotated[Category | None, typer.Option(help="The right category.")] = None,
    urgent: Annotated[
        bool | None, typer.Option("--urgent/--not-urgent", help="The right urgency.")
    ] = None,
    priority: Annotated[int | None, typer.Option(min=1, max=4, help="1 most urgent.")] = None,
    by: Annotated[
        str | None, typer.Option("--by", help="Who corrects (default: your login name).")
    ] = None,
) -> None:
    """Correct a ticket's category and urgency; made urgent, its incident pages at once."""
    from pydantic import ValidationError

    from ioc.hotline.corrections import Correction

    try:
        correction = Correction(
            category=category,
            urgent=urgent,
            priority=priority,
            corrected_by=by or getpass.getuser(),
            reason=reason,
        )
    except ValidationError as error:
        fail("; ".join(item["msg"].removeprefix("Value error, ") for item in error.errors()))
        raise
    applied = _apply(ticket_id, correction)
    console.print(
        f"{ticket_id}: {applied.category.value}, priority {applied.priority}"
        + (", urgent" if applied.urgent else "")
        + (f" · incident {applied.incident.id} raised and paged" if applied.raised else "")
    )


def _apply(ticket_id: str, correction: Any) -> Any:
    from ioc.hotline.corrections import CorrectionError
    from ioc.hotline.tickets import UnknownTicket
    from ioc.hotline.triage import SLA_PATH, load_sla
    from ioc.incidents.service import terminal_actions

    settings = get_settings()
    sla = load_sla(settings.hotline.sla_table or SLA_PATH)

    async def apply() -> Any:
        async with terminal_actions(settings) as actions:
            return await actions.correct_ticket(ticket_id, correction, sla)

    try:
        return run_async(apply())
    except (UnknownTicket, CorrectionError) as error:
        fail(error)
        raise


tickets_app = typer.Typer(help="1022 hotline tickets.", no_args_is_help=True)


@tickets_app.command("import")
def tickets_import_command(
    path: Annotated[Path, typer.Argument(help="A .csv (Open311 field names) or .jsonl file.")],
) -> None:
    """Bulk-load tickets onto the intake topic; prints accepted and rejected rows with reasons."""
    from ioc.api.importer import import_tickets

    if not path.is_file():
        fail(FileNotFoundError(f"no such file: {path}"))
    try:
        report = import_tickets(path, get_settings())
    except ValueError as error:  # the whole file is unusable (type, encoding, header)
        fail(error)
    raise typer.Exit(1 if report.rejected and not report.accepted else 0)


@tickets_app.command("set-status")
def tickets_set_status_command(
    ticket_id: Annotated[str, typer.Argument(help="service_request_id")],
    status: Annotated[str, typer.Argument(help="assigned, in_progress, resolved or triaged")],
    note: Annotated[str | None, typer.Option(help="Status notes shown to the citizen.")] = None,
) -> None:
    """Move a ticket through its lifecycle (resolving the first report resolves its incident)."""

    from ioc.hotline.tickets import TicketTransitionError
    from ioc.incidents.service import terminal_actions

    async def move() -> None:
        async with terminal_actions(get_settings()) as actions:
            incident = await actions.set_ticket_status(ticket_id, status, note)
        if incident is not None:
            console.print(f"incident {incident.id}: {incident.status}")

    try:
        run_async(move())
    except TicketTransitionError as error:
        fail(error)
    console.print(f"{ticket_id}: {status}")
