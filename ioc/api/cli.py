"""`ioc api`: the HTTP API."""

from __future__ import annotations

from ioc.commandline import setup_logging
from ioc.config import get_settings


def api_command() -> None:
    """Serve the Open311 GeoReport v2 intake (hotline.api_host:api_port) until stopped."""
    from ioc.api.server import serve

    setup_logging()
    serve(get_settings())
