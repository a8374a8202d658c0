"""`ioc grafana generate|push`: the walls as files, and on a Grafana."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ioc.commandline import console, fail
from ioc.config import get_settings

grafana_app = typer.Typer(
    help="Grafana walls: generate the JSON, push to a Grafana.", no_args_is_help=True
)


@grafana_app.command("generate")
def grafana_generate_command(
    out: Annotated[
        Path | None,
        typer.Option(help="Folder for the JSON (default: the repo's grafana/dashboards)."),
    ] = None,
    check: Annotated[
        bool, typer.Option(help="Write nothing; exit 1 if the files differ from the generator.")
    ] = False,
) -> None:
    """Write the six walls (dashboards as code) to grafana/dashboards/*.json."""
    from ioc.grafana.publish import REPO_DASHBOARDS, stale_files, write_dashboards
    from ioc.grafana.walls import walls

    directory = out or REPO_DASHBOARDS
    dashboards = walls()
    if check:
        stale = stale_files(dashboards, directory)
        for name in stale:
            console.print(f"[red]out of date:[/] {directory / name}")
        raise typer.Exit(1 if stale else 0)
    changed = write_dashboards(dashboards, directory)
    console.print(f"{len(dashboards)} dashboards in {directory}; {len(changed)} file(s) changed")


@grafana_app.command("push")
def grafana_push_command(
    url: Annotated[
        str | None, typer.Option(help="Grafana base URL (default: grafana.url).")
    ] = None,
    token: Annotated[
        str | None, typer.Option(help="Service-account token (default: grafana.token).")
    ] = None,
    folder: Annotated[
        str | None, typer.Option(help="Folder title (default: grafana.folder).")
    ] = None,
) -> None:
    """Upload the datasource and the six walls to an existing Grafana (overwriting them)."""
    from grafana_client.client import GrafanaException

    from ioc.grafana.publish import datasource_payload, push
    from ioc.grafana.walls import walls

    settings = get_settings()
    config = settings.grafana
    try:
        report = push(
            url or config.url,
            token or (config.token.get_secret_value() if config.token else None),
            walls(),
            datasource_payload(config.datasource_dsn or settings.database.dsn, config.timescaledb),
            folder or config.folder,
            config.folder_uid,
        )
    except (GrafanaException, OSError, ValueError) as error:
        fail(error)
    console.print(f"[green]✓[/] datasource {report.datasource}; folder {report.folder}")
    for link in report.dashboards:
        console.print(f"[green]✓[/] {link}")
