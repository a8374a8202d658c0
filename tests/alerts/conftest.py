"""A real Alertmanager running the shipped routing tree, with a real webhook receiver and a real
SMTP server in place of the production placeholders (and group timings cut to about a second)."""

from __future__ import annotations

import asyncio
import copy
import threading
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

import pytest
import yaml
from aiohttp import web

from ioc.config import StackSettings
from ioc.devtools.stack.alertmanager import AlertmanagerService, find_alertmanager, resolve_config
from ioc.devtools.stack.process import StackError, free_port
from tests.smtp import SmtpSink

T = TypeVar("T")
SHIPPED_CONFIG = resolve_config(StackSettings().alertmanager_config)


def alertmanager_missing() -> str | None:
    """Why the Alertmanager tests cannot run here, or None when they can."""
    try:
        find_alertmanager()
    except StackError as error:
        return str(error)
    return None


@dataclass
class Notification:
    path: str  # which receiver: /hotline, /escalation, /district-desk
    payload: dict[str, Any]

    def incident_ids(self) -> set[str]:
        return {alert["labels"].get("incident_id", "") for alert in self.payload["alerts"]}


class WebhookSink:
    """A real aiohttp server on a loopback port, in its own thread, that records every webhook
    notification Alertmanager POSTs, whatever the path."""

    def __init__(self) -> None:
        self.received: list[Notification] = []
        self._lock = threading.Lock()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()
        self._runner: web.AppRunner | None = None
        self.port = asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(10)
        self.url = f"http://127.0.0.1:{self.port}"

    async def _start(self) -> int:
        app = web.Application()
        app.router.add_post("/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        return int(self._runner.addresses[0][1])

    async def _handle(self, request: web.Request) -> web.Response:
        payload = await request.json()
        with self._lock:
            self.received.append(Notification(request.path, payload))
        return web.Response(status=200)

    def about(self, incident_id: str, path: str | None = None) -> list[Notification]:
        """Notifications (to `path`, or any receiver) carrying an alert of `incident_id`."""
        with self._lock:
            return [
                n
                for n in self.received
                if incident_id in n.incident_ids() and (path is None or n.path == path)
            ]

    def close(self) -> None:
        async def stop() -> None:
            if self._runner is not None:
                await self._runner.cleanup()

        asyncio.run_coroutine_threadsafe(stop(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)


def config_for_tests(shipped: dict[str, Any], webhook_url: str, smarthost: str) -> dict[str, Any]:
    """The shipped tree with the placeholders pointed at the test's servers (URL paths kept, so
    each receiver stays recognisable) and group waits and intervals cut to one second."""
    config = copy.deepcopy(shipped)
    config["global"]["smtp_smarthost"] = smarthost
    config["global"]["smtp_require_tls"] = False  # aiosmtpd here speaks plain SMTP
    for receiver in config["receivers"]:
        for hook in receiver.get("webhook_configs", []):
            hook["url"] = webhook_url + urlsplit(hook["url"]).path

    def shorten(route: dict[str, Any]) -> None:
        for key in ("group_wait", "group_interval"):
            if key in route and route[key] != "0s":
                route[key] = "1s"
        for child in route.get("routes", []):
            shorten(child)

    shorten(config["route"])
    return config


def start_alertmanager(home: Path, config_file: Path) -> AlertmanagerService:
    stack = StackSettings(
        dir=home,
        alertmanager=True,
        alertmanager_port=free_port(),
        alertmanager_config=config_file,
        start_timeout_s=30,
    )
    service = AlertmanagerService(stack)
    service.up()
    return service


@pytest.fixture(scope="session")
def webhook_sink() -> Iterator[WebhookSink]:
    sink = WebhookSink()
    yield sink
    sink.close()


@pytest.fixture(scope="session")
def smtp_sink() -> Iterator[SmtpSink]:
    sink = SmtpSink()
    yield sink
    sink.close()


@pytest.fixture(scope="session")
def alertmanager(
    tmp_path_factory: pytest.TempPathFactory, webhook_sink: WebhookSink, smtp_sink: SmtpSink
) -> Iterator[AlertmanagerService]:
    """A real Alertmanager running the shipped routing tree against the test's servers."""
    if (reason := alertmanager_missing()) is not None:
        pytest.skip(reason)
    home = tmp_path_factory.mktemp("am")
    shipped = yaml.safe_load(SHIPPED_CONFIG.read_text())
    config_file = home / "alertmanager.yml"
    config_file.write_text(
        yaml.safe_dump(
            config_for_tests(shipped, webhook_sink.url, smtp_sink.smarthost), allow_unicode=True
        )
    )
    service = start_alertmanager(home, config_file)
    yield service
    service.down()


@pytest.fixture(scope="session")
def run() -> Iterator[Callable[[Awaitable[T]], T]]:
    """Run a coroutine on one event loop kept for the session (the client's connections live
    on it)."""
    loop = asyncio.new_event_loop()
    yield loop.run_until_complete  # type: ignore[misc]
    loop.close()
