"""The `ioc` command."""

from __future__ import annotations

import logging
import sys

import typer
from rich.console import Console
from rich.table import Table

from ioc.config import get_settings
from ioc.stack import StackError, stack_down, stack_status, stack_up

console = Console()
app = typer.Typer(help="ioc: an Intelligent Operations Centre stream processor.", no_args_is_help=True)
stack_app = typer.Typer(help="The native local stack (Kafka, PostgreSQL).", no_args_is_help=True)
streams_app = typer.Typer(help="The Faust stream agents.", no_args_is_help=True)
vision_app = typer.Typer(help="The YOLO inference worker.", no_args_is_help=True)
alerts_app = typer.Typer(help="Alert delivery to hotline staff.", no_args_is_help=True)
scenario_app = typer.Typer(help="Publish sample inputs.", no_args_is_help=True)
app.add_typer(stack_app, name="stack")
app.add_typer(streams_app, name="streams")
app.add_typer(vision_app, name="vision")
app.add_typer(alerts_app, name="alerts")
app.add_typer(scenario_app, name="scenario")


def _setup_logging() -> None:
    level = get_settings().log_level.upper()
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")


def _fail(error: Exception) -> None:
    console.print(f"[bold red]error:[/] {error}")
    raise typer.Exit(1)


@stack_app.command("up")
def stack_up_command() -> None:
    """Start Kafka and PostgreSQL (if not running), create topics, apply migrations."""
    settings = get_settings()
    try:
        with console.status("starting the local stack…"):
            services, topics, report = stack_up(settings)
    except StackError as error:
        _fail(error)
    for name, outcome in services.items():
        console.print(f"[green]✓[/] {name}: {outcome}")
    created = [name for name, outcome in topics.items() if outcome == "created"]
    console.print(f"[green]✓[/] topics: {len(topics)} ({len(created)} created)")
    console.print(f"[green]✓[/] schema: {len(report.applied)} migration(s) applied; {report.storage}")


@stack_app.command("down")
def stack_down_command() -> None:
    """Stop what `ioc stack up` started, and nothing else."""
    try:
        stopped = stack_down(get_settings())
    except StackError as error:
        _fail(error)
    for name, was_running in stopped.items():
        console.print(f"{name}: {'stopped' if was_running else 'was not running'}")


@stack_app.command("status")
def stack_status_command() -> None:
    """Each local service, its address and health. Exits 1 if any is unhealthy."""
    table = Table("service", "address", "running", "healthy", "detail")
    healths = stack_status(get_settings())
    for health in healths:
        table.add_row(
            health.service, health.address, "yes" if health.running else "no",
            "[green]yes[/]" if health.healthy else "[red]no[/]", health.detail,
        )
    console.print(table)
    if not all(health.healthy for health in healths):
        raise typer.Exit(1)


def main() -> None:
    try:
        app()
    except KeyboardInterrupt:
        sys.exit(130)
