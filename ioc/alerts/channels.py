"""Delivery channels behind one interface: `deliver(incident)` returns or raises."""

from __future__ import annotations

import asyncio
from typing import ClassVar, Protocol

import httpx
from rich.console import Console

from ioc.config import Settings
from ioc.models import Incident
from ioc.models.base import epoch_ms


class Channel(Protocol):
    name: str

    async def deliver(self, incident: Incident) -> None: ...

    async def close(self) -> None: ...


class ConsoleChannel:
    """One line per incident on the operator's terminal."""

    name = "console"
    STYLES: ClassVar[dict[str, str]] = {"urgent": "bold red", "high": "yellow", "normal": "cyan"}

    def __init__(self, console: Console | None = None) -> None:
        self.console = console or Console(stderr=True)

    async def deliver(self, incident: Incident) -> None:
        style = self.STYLES.get(incident.severity, "")
        self.console.print(
            f"[{style}]ALERT {incident.severity.upper()}[/] {incident.kind} · {incident.source} · "
            f"{incident.title} [dim]({incident.id})[/]"
        )

    async def close(self) -> None:
        return None


async def _post(client: httpx.AsyncClient, url: str, payload: dict, retries: int) -> None:
    """POST JSON; retry with backoff on network errors and 5xx, fail at once on 4xx."""
    for attempt in range(retries + 1):
        try:
            response = await client.post(url, json=payload)
            if response.status_code < 500:
                response.raise_for_status()
                return
            error: Exception = httpx.HTTPStatusError(
                f"HTTP {response.status_code}", request=response.request, response=response
            )
        except httpx.TransportError as transport_error:
            error = transport_error
        if attempt == retries:
            raise error
        await asyncio.sleep(0.2 * 2**attempt)


class WebhookChannel:
    """POST the incident as JSON (an Alertmanager-style receiver, a chat bridge, ...)."""

    name = "webhook"

    def __init__(self, url: str, timeout_s: float, retries: int) -> None:
        self.url = url
        self.retries = retries
        self.client = httpx.AsyncClient(timeout=timeout_s)

    async def deliver(self, incident: Incident) -> None:
        payload = {"type": "ioc.incident", "incident": incident.model_dump(mode="json")}
        await _post(self.client, self.url, payload, self.retries)

    async def close(self) -> None:
        await self.client.aclose()


class GrafanaAnnotationChannel:
    """The incident on the walls' time axis: a Grafana annotation at its event time, tagged by
    kind, district and severity, so operators filter walls by what and where."""

    name = "grafana"

    def __init__(self, url: str, token: str, timeout_s: float, retries: int) -> None:
        self.retries = retries
        self.client = httpx.AsyncClient(
            base_url=url.rstrip("/"),
            timeout=timeout_s,
            headers={"Authorization": f"Bearer {token}"},
        )

    async def deliver(self, incident: Incident) -> None:
        tags = ["ioc", f"kind:{incident.kind}", f"severity:{incident.severity}"]
        if incident.district:
            tags.append(f"district:{incident.district}")
        payload = {
            "time": epoch_ms(incident.event_time),
            "tags": tags,
            "text": f"[{incident.severity}] {incident.title} ({incident.id})",
        }
        await _post(self.client, "/api/annotations", payload, self.retries)

    async def close(self) -> None:
        await self.client.aclose()


def channels_from_settings(settings: Settings) -> list[Channel]:
    alerts, grafana = settings.alerts, settings.grafana
    channels: list[Channel] = []
    if alerts.console:
        channels.append(ConsoleChannel())
    if alerts.webhook_url:
        channels.append(
            WebhookChannel(alerts.webhook_url, alerts.webhook_timeout_s, alerts.webhook_retries)
        )
    if grafana.annotate_incidents and grafana.token:  # the settings refuse one without the other
        channels.append(
            GrafanaAnnotationChannel(
                grafana.url, grafana.token, alerts.webhook_timeout_s, alerts.webhook_retries
            )
        )
    return channels
