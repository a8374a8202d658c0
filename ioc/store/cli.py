"""`ioc db migrate`: the database schema."""

from __future__ import annotations

import typer

from ioc.commandline import console
from ioc.config import get_settings

db_app = typer.Typer(help="Database schema.", no_args_is_help=True)


@db_app.command("migrate")
def db_migrate_command() -> None:
    """Apply schema migrations to database.dsn; with TimescaleDB: hypertables, continuous
    aggregates, compression and retention per storage settings."""
    from ioc.store.migrate import migrate

    settings = get_settings()
    report = migrate(settings.database.dsn, settings.storage)
    console.print(f"{len(report.applied)} migration(s) applied; {report.storage}")
