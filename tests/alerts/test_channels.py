"""Delivery channels against a real HTTP server (standing in for Grafana's annotations API)."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest

from ioc.alerts.channels import GrafanaAnnotationChannel, WebhookChannel, channels_from_settings
from ioc.config import Settings
from ioc.console import links
from ioc.console.links import LinkMaker
from ioc.models import FusedIncident, FusedStatus, IncidentKind, Member, Notification
from ioc.store.writer import Store

WHEN = datetime(2026, 11, 23, 3, 0, tzinfo=UTC)
NO_LINKS = LinkMaker(Settings(console={"link_key": None}))  # pages carry no link
LINK_KEY = "k" * 40
INCIDENT = FusedIncident(
    id="inc-1",
    version=1,
    change="opened",
    kind="water_level_high",
    severity="high",
    status="open",
    title="Mực nước sông Cầu – cầu Gia Bảy: 3.1 m above alert level",
    district="Phường Phan Đình Phùng",
    lat=21.59,
    lon=105.85,
    event_time=WHEN,
    opened_at=WHEN,
    status_since=WHEN,
    ingested_at_ms=0,
    sources=1,
    members=[],
)


class Grafana:
    """Records POST /api/annotations; answers with `status` (a list: one per request)."""

    def __init__(self, statuses: list[int]) -> None:
        self.requests: list[tuple[str, str, dict[str, Any]]] = []
        grafana = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                grafana.requests.append((self.path, self.headers["Authorization"], body))
                self.send_response(statuses.pop(0) if statuses else 200)
                self.end_headers()
                self.wfile.write(b'{"id": 1}')

            def log_message(self, *args: object) -> None:
                return None

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.fixture
def grafana(request: pytest.FixtureRequest) -> Iterator[Grafana]:
    server = Grafana(list(getattr(request, "param", [])))
    yield server
    server.server.shutdown()


def deliver(channel: GrafanaAnnotationChannel) -> None:
    async def main() -> None:
        try:
            await channel.deliver(INCIDENT, Notification.FIRING)
        finally:
            await channel.close()

    asyncio.run(main())


@pytest.mark.parametrize("grafana", [[503]], indirect=True)
def test_incident_becomes_an_annotation_tagged_by_kind_district_severity(
    grafana: Grafana,
) -> None:
    deliver(GrafanaAnnotationChannel(grafana.url, "glsa_test", timeout_s=5, retries=2))
    assert len(grafana.requests) == 2, "a 5xx is retried"
    path, auth, body = grafana.requests[-1]
    assert (path, auth) == ("/api/annotations", "Bearer glsa_test")
    assert body["time"] == int(INCIDENT.event_time.timestamp() * 1000)
    assert body["tags"] == [
        "ioc",
        "kind:water_level_high",
        "severity:high",
        "district:Phường Phan Đình Phùng",
    ]
    assert INCIDENT.title in body["text"] and "inc-1" in body["text"]


@pytest.mark.parametrize("grafana", [[401]], indirect=True)
def test_a_refused_token_fails_the_delivery_at_once(grafana: Grafana) -> None:
    with pytest.raises(httpx.HTTPStatusError):
        deliver(GrafanaAnnotationChannel(grafana.url, "wrong", timeout_s=5, retries=3))
    assert len(grafana.requests) == 1, "a 4xx is not retried"


def test_annotations_are_a_channel_only_when_asked_for(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("IOC_ALERTS__WEBHOOK_URL", raising=False)  # the session stack sets one

    def names(settings: Settings) -> set[str]:
        channels = channels_from_settings(settings, Store(settings.database.dsn))
        for channel in channels:
            asyncio.run(channel.close())
        return {channel.name for channel in channels}

    assert names(Settings()) == {"console"}
    assert names(Settings(grafana={"annotate_incidents": True, "token": "t"})) == {
        "console",
        "grafana",
    }
    assert names(Settings(alerts={"webhook_url": "http://127.0.0.1:9/x"})) == {
        "console",
        "webhook",
    }
    # Alertmanager routes to people itself: it replaces the console and webhook.
    assert names(
        Settings(alerts={"alertmanager_url": "http://127.0.0.1:9093", "webhook_url": "http://x"})
    ) == {"alertmanager"}


@contextmanager
def pages_received(statuses: list[int]) -> Iterator[tuple[str, list[tuple[str, dict[str, Any]]]]]:
    """A webhook receiver: its URL and each POST as (Idempotency-Key, JSON body); it answers
    `statuses` in turn, then 204."""
    received: list[tuple[str, dict[str, Any]]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            received.append((self.headers["Idempotency-Key"], body))
            self.send_response(statuses.pop(0) if statuses else 204)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            return None

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/pages", received
    finally:
        server.shutdown()


def test_a_webhook_page_sent_twice_carries_one_idempotency_key() -> None:
    """A 503 makes the channel send again; a crash before the page is recorded does too. Both
    copies carry the page's id, and the next notification has another."""

    async def main(url: str) -> None:
        channel = WebhookChannel(
            url, timeout_s=5, retries=2, wall_url="http://wall", api_url=None, links=NO_LINKS
        )
        try:
            await channel.deliver(INCIDENT, Notification.FIRING)
            await channel.deliver(INCIDENT, Notification.RESOLVED)
        finally:
            await channel.close()

    with pages_received([503]) as (url, received):
        asyncio.run(main(url))
    assert len(received) == 3
    (first, retry, resolved) = [(key, body["alert_id"]) for key, body in received]
    assert first == retry and first[0] == first[1]
    assert resolved[0] != first[0]


def test_a_camera_incident_page_links_its_snapshot_and_clip_and_others_link_none() -> None:
    camera = Member(
        id="inc-cam",
        source="vision",
        source_key="cam-tn-cho-thai",
        kind="fire",
        severity="urgent",
        status="open",
        event_time=WHEN,
        title="Cháy",
    )
    fire = INCIDENT.model_copy(
        update={"id": "inc-cam", "kind": IncidentKind.FIRE, "members": [camera]}
    )

    async def main(url: str, api_url: str | None) -> None:
        channel = WebhookChannel(url, 5, 0, wall_url="http://wall", api_url=api_url, links=NO_LINKS)
        try:
            await channel.deliver(fire, Notification.FIRING)
            await channel.deliver(INCIDENT, Notification.FIRING)
        finally:
            await channel.close()

    with pages_received([]) as (url, received):
        asyncio.run(main(url, "https://ioc.example/"))
        asyncio.run(main(url, None))
    assert [body["evidence"] for _, body in received] == [
        {
            "snapshot_url": "https://ioc.example/api/v1/incidents/inc-cam/snapshot",
            "clip_url": "https://ioc.example/api/v1/incidents/inc-cam/clip",
        },
        {},  # no camera saw the water level
        {},  # the API's address is not configured
        {},
    ]


def test_an_open_incident_page_carries_a_signed_link_that_acknowledges_it() -> None:
    settings = Settings(alerts={"api_url": "https://ioc.example"}, console={"link_key": LINK_KEY})
    resolved = INCIDENT.model_copy(update={"status": FusedStatus.RESOLVED})

    async def main(url: str) -> None:
        channel = WebhookChannel(
            url, 5, 0, wall_url="http://wall", api_url=None, links=LinkMaker(settings)
        )
        try:
            await channel.deliver(INCIDENT, Notification.FIRING)
            await channel.deliver(resolved, Notification.RESOLVED)
        finally:
            await channel.close()

    with pages_received([]) as (url, received):
        asyncio.run(main(url))
    firing, done = (body for _, body in received)
    assert "act_url" not in done  # nothing to acknowledge any more
    prefix = "https://ioc.example/console/a/"
    assert firing["act_url"].startswith(prefix)
    assert settings.console.link_key is not None
    claim = links.read(
        settings.console.link_key, firing["act_url"][len(prefix) :], datetime.now(UTC)
    )
    assert (claim.incident_id, claim.recipient) == (INCIDENT.id, "webhook")
