"""What every package's commands share: one console, one way to fail, logging set up once, and
clean stops on SIGTERM."""

from __future__ import annotations

import logging
import signal
import sys
from typing import NoReturn
from urllib.parse import urlsplit

import typer
from rich.console import Console

from ioc.config import get_settings

# Piped into a file or a CI log, rich would wrap every table at 80 columns.
console = Console(width=None if sys.stdout.isatty() else 160)


class _OriginOnly(logging.Filter):
    """httpx logs each request's full URL at INFO; a webhook's path or query and a URL's
    password are credentials, so only scheme, host and port reach the log."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if isinstance(args, tuple) and len(args) >= 2:
            url = urlsplit(str(args[1]))
            if url.scheme and url.hostname:
                port = f":{url.port}" if url.port else ""
                record.args = (args[0], f"{url.scheme}://{url.hostname}{port}", *args[2:])
        return True


def setup_logging() -> None:
    level = get_settings().log_level.upper()
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("httpx").addFilter(_OriginOnly())


def clean_up_on_sigterm() -> None:
    """For commands that start a stack and workers: SIGTERM unwinds like Ctrl-C, so they stop
    what they started instead of leaving Kafka and PostgreSQL running."""

    def terminate(signum: int, _frame: object) -> None:
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, terminate)


def fail(error: Exception | str) -> NoReturn:
    """The error on one line (for scripts), then exit 1."""
    console.print(f"[bold red]error:[/] {error}", soft_wrap=True)
    raise typer.Exit(1)
