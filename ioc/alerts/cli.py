"""`ioc alerts run`: delivery of incidents to hotline staff."""

from __future__ import annotations

import typer

from ioc.commandline import setup_logging
from ioc.config import get_settings

alerts_app = typer.Typer(help="Alert delivery to hotline staff.", no_args_is_help=True)


@alerts_app.command("run")
def alerts_run_command() -> None:
    """Deliver each new incident to the console and the configured webhook until stopped."""
    from ioc.alerts.consumer import run_consumer

    setup_logging()
    run_consumer(get_settings())
