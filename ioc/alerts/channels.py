"""Delivery channels behind one interface.

`deliver(incident, notification)` sends one notification (firing, escalated, resolved); the
consumer decides which are due, with the same rules for every channel. `update(incident)` follows
an incident's state between notifications: Alertmanager keeps its label set current and binds
an acknowledgement to a silence; the NGSI-LD broker (`ngsi_ld.py`) gets the incident's current
state; push channels (console, webhook, Grafana) have nothing to do.
"""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta
from typing import ClassVar, Protocol

import httpx
from psycopg.types.json import Jsonb
from rich.console import Console

from ioc.alerts.alertmanager import AlertmanagerClient, AmAlert
from ioc.config import Settings
from ioc.console.links import LinkMaker
from ioc.incidents import evidence_url
from ioc.models import FusedIncident, FusedStatus, IncidentSource, Notification
from ioc.models.base import deterministic_id, epoch_ms, utc_now
from ioc.models.kinds import KINDS
from ioc.store.writer import Store

SEVERITY_VI = {"urgent": "KHẨN", "high": "CAO", "normal": "THƯỜNG"}


def alert_id(incident: FusedIncident, channel: str, notification: Notification) -> str:
    """One page: an incident's notification on a channel, in one episode. Also the webhook's
    idempotency key: a crash between a delivery and its record sends the page again, and the
    receiver can tell it is the same one."""
    return deterministic_id("alert", incident.id, channel, notification, incident.episode)


class Channel(Protocol):
    name: str

    async def deliver(self, incident: FusedIncident, notification: Notification) -> None: ...

    async def update(self, incident: FusedIncident) -> None: ...

    async def close(self) -> None: ...


def summary_vi(incident: FusedIncident) -> str:
    place = f" · {incident.district}" if incident.district else ""
    return f"[{SEVERITY_VI[incident.severity]}] {incident.title}{place} · {incident.sources} nguồn"


def summary_en(incident: FusedIncident) -> str:
    place = f" in {incident.district}" if incident.district else ""
    reports = f", {incident.reports} citizen report(s)" if incident.reports else ""
    return (
        f"[{incident.severity.upper()}] {KINDS[incident.kind].title_en}{place}: "
        f"{incident.sources} independent source(s){reports}"
    )


def location(incident: FusedIncident) -> str:
    where = incident.district or "?"
    if incident.lat is not None and incident.lon is not None:
        return f"{where} ({incident.lat:.5f}, {incident.lon:.5f})"
    return where


class ConsoleChannel:
    """One line per notification on the operator's terminal."""

    name = "console"
    STYLES: ClassVar[dict[str, str]] = {"urgent": "bold red", "high": "yellow", "normal": "cyan"}

    def __init__(self, console: Console | None = None) -> None:
        self.console = console or Console(stderr=True)

    async def deliver(self, incident: FusedIncident, notification: Notification) -> None:
        style = self.STYLES.get(incident.severity, "")
        label = {"firing": "ALERT", "escalated": "ESCALATED", "resolved": "RESOLVED"}[notification]
        self.console.print(
            f"[{style}]{label} {incident.severity.upper()}[/] {incident.kind} · "
            f"{incident.sources} source(s) · {incident.title} [dim]({incident.id})[/]"
        )

    async def update(self, incident: FusedIncident) -> None:
        return None

    async def close(self) -> None:
        return None


async def post_json(
    client: httpx.AsyncClient,
    url: str,
    payload: dict,
    retries: int,
    headers: dict[str, str] | None = None,
) -> None:
    """POST JSON; retry with backoff on network errors and 5xx, fail at once on 4xx."""
    for attempt in range(retries + 1):
        try:
            response = await client.post(url, json=payload, headers=headers)
            if response.status_code < 500:
                if not response.is_success:  # not raise_for_status: its message quotes the URL
                    raise httpx.HTTPStatusError(
                        f"HTTP {response.status_code}", request=response.request, response=response
                    )
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
    """POST the notification and the incident as JSON (a duty phone bridge, a chat bot, …)."""

    name = "webhook"

    def __init__(
        self,
        url: str,
        timeout_s: float,
        retries: int,
        wall_url: str,
        api_url: str | None,
        links: LinkMaker,
    ) -> None:
        self.url = url
        self.retries = retries
        self.wall_url = wall_url
        self.api_url = api_url
        self.links = links
        self.client = httpx.AsyncClient(timeout=timeout_s)

    async def deliver(self, incident: FusedIncident, notification: Notification) -> None:
        """Delivered at least once (a retry, a crash before the page is recorded): the page's id
        rides as `Idempotency-Key` and `alert_id`, so a receiver drops a second copy."""
        key = alert_id(incident, self.name, notification)
        payload = {
            "type": "ioc.incident",
            "alert_id": key,
            "notification": notification,
            "summary_vi": summary_vi(incident),
            "summary_en": summary_en(incident),
            "location": location(incident),
            "wall": wall_link(self.wall_url, incident),
            "evidence": evidence_links(self.api_url, incident),
            "incident": incident.model_dump(mode="json"),
        } | act_link(self.links, incident, self.name)
        await post_json(self.client, self.url, payload, self.retries, {"Idempotency-Key": key})

    async def update(self, incident: FusedIncident) -> None:
        return None

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

    async def deliver(self, incident: FusedIncident, notification: Notification) -> None:
        if notification != Notification.FIRING:
            return
        tags = ["ioc", f"kind:{incident.kind}", f"severity:{incident.severity}"]
        if incident.district:
            tags.append(f"district:{incident.district}")
        payload = {
            "time": epoch_ms(incident.event_time),
            "tags": tags,
            "text": f"[{incident.severity}] {incident.title} ({incident.id})",
        }
        await post_json(self.client, "/api/annotations", payload, self.retries)

    async def update(self, incident: FusedIncident) -> None:
        return None

    async def close(self) -> None:
        await self.client.aclose()


def wall_link(wall_url: str, incident: FusedIncident) -> str:
    return f"{wall_url}{'&' if '?' in wall_url else '?'}var-incident={incident.id}"


def evidence_links(api_url: str | None, incident: FusedIncident) -> dict[str, str]:
    """Where staff see a camera incident's snapshot and clip (a staff key opens them); none for
    an incident no camera saw, or when the API's address is not configured."""
    if api_url is None or not any(m.source == IncidentSource.VISION for m in incident.members):
        return {}
    return {
        "snapshot_url": evidence_url(api_url, incident.id, "snapshot"),
        "clip_url": evidence_url(api_url, incident.id, "clip"),
    }


def act_link(links: LinkMaker, incident: FusedIncident, recipient: str) -> dict[str, str]:
    """The signed link that acknowledges the incident in one tap, while it is open."""
    if incident.status != FusedStatus.OPEN:
        return {}
    link = links.link(incident.id, recipient)
    return {} if link is None else {"act_url": link}


def am_labels(incident: FusedIncident, escalated: bool = False) -> dict[str, str]:
    """The labels Alertmanager routes, groups, inhibits and silences by."""
    return {
        "alertname": "IOCIncidentEscalated" if escalated else "IOCIncident",
        "incident_id": incident.id,
        "kind": str(incident.kind),
        "severity": str(incident.severity),
        "district": incident.district or "unknown",
        "sources": str(incident.sources),
        "scope": incident.scope,
    }


class AlertmanagerChannel:
    """Incidents as Alertmanager alerts (v2 API): posted when they fire, re-posted while active
    (they expire at three refresh periods, so a lost resolve cannot leave one firing forever),
    resolved when the incident resolves; an acknowledgement is a silence on the incident's id.

    What was posted (label sets, the silence) is kept in `alertmanager_state`, so a label set
    that changed (more sources, a higher severity) is resolved there instead of left behind."""

    name = "alertmanager"

    def __init__(self, settings: Settings, store: Store) -> None:
        alerts = settings.alerts
        assert alerts.alertmanager_url is not None
        self.client = AlertmanagerClient(
            alerts.alertmanager_url, alerts.webhook_timeout_s, alerts.webhook_retries
        )
        self.store = store
        self.wall_url = alerts.wall_url
        self.api_url = alerts.api_url
        self.links = LinkMaker(settings)
        self.expire_after = timedelta(seconds=3 * alerts.alertmanager_refresh_s)

    def _alert(self, incident: FusedIncident, labels: dict[str, str], ends: datetime) -> AmAlert:
        return AmAlert(
            labels=labels,
            annotations={
                "summary_vi": summary_vi(incident),
                "summary_en": summary_en(incident),
                "location": location(incident),
                "wall": wall_link(self.wall_url, incident),
            }
            | evidence_links(self.api_url, incident)
            | act_link(self.links, incident, self.name),
            starts_at=incident.opened_at,
            ends_at=ends,
            generator_url=wall_link(self.wall_url, incident),
        )

    async def _state(self, incident_id: str) -> tuple[list[dict[str, str]], str | None]:
        async with self.store.connection() as conn:
            row = await (
                await conn.execute(
                    "SELECT labels, silence_id FROM alertmanager_state WHERE incident_id = %s",
                    (incident_id,),
                )
            ).fetchone()
        return (row[0] or [], row[1]) if row else ([], None)

    async def _save(
        self, incident: FusedIncident, labels: list[dict[str, str]], silence: str | None
    ) -> None:
        async with self.store.connection() as conn:
            await conn.execute(
                "INSERT INTO alertmanager_state (incident_id, version, labels, silence_id)"
                " VALUES (%s, %s, %s, %s) ON CONFLICT (incident_id) DO UPDATE SET"
                " version = EXCLUDED.version, labels = EXCLUDED.labels,"
                " silence_id = EXCLUDED.silence_id, updated_at = now()",
                (incident.id, incident.version, Jsonb(labels), silence),
            )

    async def _sync(self, incident: FusedIncident, firing: list[dict[str, str]]) -> None:
        """Post `firing` as active, resolve whatever else was posted, and hold a silence while
        the incident is acknowledged (expired first, so a resolution is still notified)."""
        posted, silence = await self._state(incident.id)
        now = utc_now()
        if silence and incident.status != FusedStatus.ACKNOWLEDGED:
            await self.client.expire_silence(silence)
            silence = None
        if incident.status == FusedStatus.ACKNOWLEDGED and silence is None and posted:
            silence = await self.client.silence(
                {"incident_id": incident.id},
                ends_at=now + timedelta(days=30),
                created_by=incident.acknowledged_by or incident.actor,
                comment=f"acknowledged: {incident.reason or 'no reason given'}",
            )
        gone = [labels for labels in posted if labels not in firing]
        alerts = [self._alert(incident, labels, now + self.expire_after) for labels in firing]
        alerts += [self._alert(incident, labels, now) for labels in gone]
        if alerts:
            await self.client.post(alerts)
        await self._save(incident, firing, silence)

    async def deliver(self, incident: FusedIncident, notification: Notification) -> None:
        posted, _ = await self._state(incident.id)
        if notification == Notification.RESOLVED:
            await self._sync(incident, [])
            return
        firing = [am_labels(incident)]
        if notification == Notification.ESCALATED or any(
            labels["alertname"] == "IOCIncidentEscalated" for labels in posted
        ):
            firing.append(am_labels(incident, escalated=True))
        await self._sync(incident, firing)

    async def update(self, incident: FusedIncident) -> None:
        """Between notifications: current labels while it fires, the silence while acked."""
        posted, silence = await self._state(incident.id)
        if not posted and silence is None:
            return  # never fired here: nothing to keep current
        if not incident.status.active:
            return  # its resolution is a notification of its own
        if incident.status == FusedStatus.ACKNOWLEDGED and posted:
            # Kept as they were: Alertmanager drops a resolution posted under a silence, so a
            # replaced label set would never be told resolved.
            await self._sync(incident, posted)
            return
        firing = [am_labels(incident)]
        if incident.escalated_at and any(
            labels["alertname"] == "IOCIncidentEscalated" for labels in posted
        ):
            firing.append(am_labels(incident, escalated=True))
        await self._sync(incident, firing)

    async def close(self) -> None:
        await self.client.close()


def channels_from_settings(settings: Settings, store: Store) -> list[Channel]:
    """Alertmanager when configured (it routes to people); else console and webhook. Grafana
    annotations and the NGSI-LD broker, when configured, come with either."""
    alerts, grafana = settings.alerts, settings.grafana
    channels: list[Channel] = []
    if alerts.alertmanager_url:
        channels.append(AlertmanagerChannel(settings, store))
    else:
        if alerts.console:
            channels.append(ConsoleChannel())
        if alerts.webhook_url:
            channels.append(
                WebhookChannel(
                    alerts.webhook_url,
                    alerts.webhook_timeout_s,
                    alerts.webhook_retries,
                    alerts.wall_url,
                    alerts.api_url,
                    LinkMaker(settings),
                )
            )
    if grafana.annotate_incidents and grafana.token:  # the settings refuse one without the other
        channels.append(
            GrafanaAnnotationChannel(
                grafana.url,
                grafana.token.get_secret_value(),
                alerts.webhook_timeout_s,
                alerts.webhook_retries,
            )
        )
    if alerts.ngsi_ld_url:
        from ioc.alerts.ngsi_ld import NgsiLdAlertChannel  # it builds on this module's summaries

        channels.append(
            NgsiLdAlertChannel(
                alerts.ngsi_ld_url,
                alerts.ngsi_ld_context,
                alerts.ngsi_ld_tenant,
                alerts.webhook_timeout_s,
                alerts.webhook_retries,
            )
        )
    return channels
