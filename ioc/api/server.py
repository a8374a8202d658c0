"""`ioc api`: the Open311 app under uvicorn."""

from __future__ import annotations

import logging

import uvicorn

from ioc.api.app import create_app
from ioc.config import Settings


class _PathOnlyForWrites(logging.Filter):
    """Access log lines keep query strings of GETs (filters) but not of other methods: a client
    that puts report fields (a phone number, an api_key) in a POST's URL must not log them."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if isinstance(args, tuple) and len(args) >= 3 and args[1] != "GET":
            record.args = (args[0], args[1], str(args[2]).split("?", 1)[0], *args[3:])
        return True


def serve(settings: Settings) -> None:
    """Serve until SIGINT/SIGTERM on settings.hotline.api_host:api_port."""
    config = uvicorn.Config(
        create_app(settings),
        host=settings.hotline.api_host,
        port=settings.hotline.api_port,
        log_level=settings.log_level,
        server_header=False,
        proxy_headers=False,
    )
    logging.getLogger("uvicorn.access").addFilter(_PathOnlyForWrites())  # after Config's setup
    uvicorn.Server(config).run()
