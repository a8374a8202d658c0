"""`ioc streams run`: the streams worker."""

from __future__ import annotations

import typer

from ioc.commandline import fail
from ioc.config import get_settings

streams_app = typer.Typer(help="The Faust stream agents.", no_args_is_help=True)


@streams_app.command("run")
def streams_run_command() -> None:
    """Run the Faust agents (hotline, sensors, camera rules) until stopped."""
    from ioc.config import MissingSecret
    from ioc.hotline.model import TriageModelError
    from ioc.streams.app import run_worker

    try:
        run_worker(get_settings())
    except (TriageModelError, MissingSecret) as error:
        fail(error)
