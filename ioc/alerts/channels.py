"""Delivery channels behind one interface: `deliver(incident)` returns or raises."""

from __future__ import annotations

import asyncio
from typing import ClassVar, Protocol

import httpx
from rich.console import Console

from ioc.config import AlertSettings
from ioc.models import Incident


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


class WebhookChannel:
    """POST the incident as JSON; retries with backoff on network errors and 5xx."""

    name = "webhook"

    def __init__(self, url: str, timeout_s: float, retries: int) -> None:
        self.url = url
        self.retries = retries
        self.client = httpx.AsyncClient(timeout=timeout_s)

    async def deliver(self, incident: Incident) -> None:
        payload = {"type": "ioc.incident", "incident": incident.model_dump(mode="json")}
        for attempt in range(self.retries + 1):
            try:
                response = await self.client.post(self.url, json=payload)
                if response.status_code < 500:
                    response.raise_for_status()
                    return
                error: Exception = httpx.HTTPStatusError(
                    f"HTTP {response.status_code}", request=response.request, response=response
                )
            except httpx.TransportError as transport_error:
                error = transport_error
            if attempt == self.retries:
                raise error
            await asyncio.sleep(0.2 * 2**attempt)

    async def close(self) -> None:
        await self.client.aclose()


def channels_from_settings(alerts: AlertSettings) -> list[Channel]:
    channels: list[Channel] = []
    if alerts.console:
        channels.append(ConsoleChannel())
    if alerts.webhook_url:
        channels.append(
            WebhookChannel(alerts.webhook_url, alerts.webhook_timeout_s, alerts.webhook_retries)
        )
    return channels
