"""The native local stack's commands: `ioc stack up|down|status`."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from ioc.commandline import console, fail
from ioc.config import Settings, get_settings
from ioc.devtools.stack import StackError, stack_down, stack_status, stack_up

stack_app = typer.Typer(
    help="The native local stack (Kafka, PostgreSQL; optionally Mosquitto, Alertmanager).",
    no_args_is_help=True,
)


@stack_app.command("up")
def stack_up_command(
    brokers: Annotated[
        int | None,
        typer.Option(
            min=1,
            help="Kafka nodes (default: stack.kafka_brokers, 1). 3 runs a KRaft cluster like "
            "docker-compose.yml's (replication factor 3, min.insync.replicas 2, PLAINTEXT): "
            "one broker can be lost without losing an acknowledged write.",
        ),
    ] = None,
) -> None:
    """Start Kafka and PostgreSQL (and Mosquitto, Alertmanager when enabled) if not running,
    create topics, apply migrations."""
    settings = get_settings() if brokers is None else Settings(stack={"kafka_brokers": brokers})
    try:
        with console.status("starting the local stack…") as status:
            services, topics, report = stack_up(settings, progress=status.update)
    except StackError as error:
        fail(error)
    for name, outcome in services.items():
        console.print(f"[green]✓[/] {name}: {outcome}")
    if settings.stack.kafka_brokers > 1:
        console.print(
            "  [dim]every ioc process sees the cluster with "
            f"IOC_STACK__KAFKA_BROKERS={settings.stack.kafka_brokers}[/]"
        )
    if "alertmanager" in services and not settings.alerts.alertmanager_url:
        console.print(
            "  [dim]alerts go to it with "
            f"IOC_ALERTS__ALERTMANAGER_URL=http://127.0.0.1:{settings.stack.alertmanager_port}[/]"
        )
    created = [name for name, outcome in topics.items() if outcome == "created"]
    console.print(f"[green]✓[/] topics: {len(topics)} ({len(created)} created)")
    console.print(
        f"[green]✓[/] schema: {len(report.applied)} migration(s) applied; {report.storage}"
    )


@stack_app.command("down")
def stack_down_command() -> None:
    """Stop what `ioc stack up` started, and nothing else."""
    try:
        stopped = stack_down(get_settings())
    except StackError as error:
        fail(error)
    for name, was_running in stopped.items():
        console.print(f"{name}: {'stopped' if was_running else 'was not running'}")


@stack_app.command("status")
def stack_status_command() -> None:
    """Each local service, its address and health. Exits 1 if any is unhealthy."""
    table = Table("service", "address", "running", "healthy", "detail")
    healths = stack_status(get_settings())
    for health in healths:
        table.add_row(
            health.service,
            health.address,
            "yes" if health.running else "no",
            "[green]yes[/]" if health.healthy else "[red]no[/]",
            health.detail,
        )
    console.print(table)
    if not all(health.healthy for health in healths):
        raise typer.Exit(1)
