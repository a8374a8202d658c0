"""`ioc api`: the Open311 app under uvicorn."""

from __future__ import annotations

import logging
from urllib.parse import parse_qsl, urlencode

import uvicorn

from ioc.api.app import create_app
from ioc.config import Settings
from ioc.hotline.privacy import PERSONAL_FIELDS, redact_text

HIDDEN_PARAMETERS = frozenset({"api_key", *PERSONAL_FIELDS})


def _masked_query(target: str) -> str:
    """`target` with the values of keys and contact fields hidden and phone numbers and e-mails
    in the other values masked (a client may send its api_key, or search by phone, on a GET)."""
    path, _, query = target.partition("?")
    if not query:
        return target
    pairs = [
        (name, "***" if name.lower() in HIDDEN_PARAMETERS else redact_text(value))
        for name, value in parse_qsl(query, keep_blank_values=True)
    ]
    return f"{path}?{urlencode(pairs, safe='*')}"


class _PathOnlyForWrites(logging.Filter):
    """Access log lines keep query strings of GETs (filters), keys and contact data masked, but
    not of other methods: a client that puts report fields (a phone number, an api_key) in a
    POST's URL must not log them."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if isinstance(args, tuple) and len(args) >= 3:
            target = str(args[2])
            target = _masked_query(target) if args[1] == "GET" else target.split("?", 1)[0]
            record.args = (args[0], args[1], target, *args[3:])
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
