"""An async client for Prometheus Alertmanager's v2 API.

Alertmanager, not ioc, decides who is paged, how alerts are grouped and repeated, and what an
inhibition or silence suppresses (deploy/alertmanager/alertmanager.yml); ioc only posts the state
of its incidents as alerts, and turns an acknowledgement into a silence bound to the incident's
`incident_id` label.

Errors come in two kinds so callers can tell "fix the request" from "try again later":
`AlertmanagerError` when Alertmanager refused the request (4xx, with its reason), and an
`httpx.HTTPError` when it stayed unreachable or failing (5xx) through every retry.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx


@dataclass(frozen=True)
class AmAlert:
    """One alert as Alertmanager sees it: identified by its label set alone."""

    labels: dict[str, str]
    annotations: dict[str, str]
    starts_at: datetime
    ends_at: datetime | None = None  # None: AM decides (resolve_timeout); a past/now time resolves
    generator_url: str | None = None

    def to_api(self) -> dict[str, Any]:
        payload: dict[str, Any] = {
            "labels": dict(self.labels),
            "annotations": dict(self.annotations),
            "startsAt": rfc3339(self.starts_at),
        }
        if self.ends_at is not None:
            payload["endsAt"] = rfc3339(self.ends_at)
        if self.generator_url is not None:
            payload["generatorURL"] = self.generator_url
        return payload


class AlertmanagerError(RuntimeError):
    """Alertmanager refused the request (4xx): retrying the same request cannot succeed."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(f"Alertmanager refused the request (HTTP {status}): {reason}")
        self.status = status
        self.reason = reason


def rfc3339(moment: datetime) -> str:
    """RFC 3339 in UTC, as Alertmanager parses it. Naive times are refused: a local time taken
    for UTC would move every alert by the UTC offset (7 h in Vietnam)."""
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(f"{moment!r} has no time zone; Alertmanager times must be aware")
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _reason(response: httpx.Response) -> str:
    """Alertmanager's error text: a JSON string, or a JSON object with a message, or plain text."""
    try:
        body = response.json()
    except ValueError:
        return response.text.strip() or response.reason_phrase
    if isinstance(body, str):
        return body
    if isinstance(body, dict):
        return str(body.get("message") or body.get("error") or body)
    return str(body)


class AlertmanagerClient:
    """Alertmanager's v2 API: post alerts, silence and un-silence incidents, read back state."""

    def __init__(self, url: str, timeout_s: float = 5.0, retries: int = 3) -> None:
        self.url = url.rstrip("/")
        self.retries = retries
        self.backoff_s = 0.2
        self._client = httpx.AsyncClient(base_url=self.url, timeout=timeout_s)

    async def __aenter__(self) -> AlertmanagerClient:
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await self.close()

    async def _request(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: Any = None,
        accept: Callable[[httpx.Response], bool] = lambda _response: False,
    ) -> httpx.Response:
        """Send with exponential backoff on transport errors and 5xx (a restarting Alertmanager
        or a proxy in front of it); a 4xx fails at once. `accept` lets a caller take an error
        status as an answer (an already expired silence)."""
        for attempt in range(self.retries + 1):
            try:
                response = await self._client.request(method, path, json=json, params=params)
            except httpx.TransportError as transport_error:
                error: Exception = transport_error
            else:
                if response.status_code < 400 or accept(response):
                    return response
                if response.status_code < 500:
                    raise AlertmanagerError(response.status_code, _reason(response))
                error = httpx.HTTPStatusError(
                    f"Alertmanager {method} {path}: HTTP {response.status_code}: "
                    f"{_reason(response)}",
                    request=response.request,
                    response=response,
                )
            if attempt == self.retries:
                raise error
            await asyncio.sleep(self.backoff_s * 2**attempt)
        raise AssertionError("unreachable")  # the loop returns or raises

    async def post(self, alerts: Sequence[AmAlert]) -> None:
        """Create, refresh or resolve alerts (same labels = same alert). Alertmanager forgets a
        firing alert without `ends_at` after resolve_timeout, so callers re-post active ones."""
        if alerts:
            await self._request("POST", "/api/v2/alerts", json=[a.to_api() for a in alerts])

    async def silence(
        self, matchers: Mapping[str, str], ends_at: datetime, created_by: str, comment: str
    ) -> str:
        """Silence, from now until `ends_at`, every alert whose labels equal `matchers` (an
        acknowledged incident: {"incident_id": ...}). Returns the silence id for expiring it."""
        if not matchers:
            raise ValueError("a silence without matchers would silence everything")
        body = {
            "matchers": [
                {"name": name, "value": value, "isRegex": False, "isEqual": True}
                for name, value in matchers.items()
            ],
            "startsAt": rfc3339(datetime.now(UTC)),
            "endsAt": rfc3339(ends_at),
            "createdBy": created_by,
            "comment": comment,
        }
        response = await self._request("POST", "/api/v2/silences", json=body)
        return str(response.json()["silenceID"])

    async def expire_silence(self, silence_id: str) -> None:
        """End a silence now. Already expired or unknown is fine: the goal is "not silenced".
        Alertmanager 0.25 answers both with a 500 ("silence ... already expired", "silence not
        found") that is no outage; later versions answer an unknown id with a 404."""

        def gone(response: httpx.Response) -> bool:
            return response.status_code == 404 or (
                response.status_code == 500
                and ("already expired" in response.text or "not found" in response.text)
            )

        await self._request("DELETE", f"/api/v2/silence/{silence_id}", accept=gone)

    async def alerts(
        self,
        filters: Mapping[str, str] | None = None,
        active: bool = True,
        silenced: bool = True,
        inhibited: bool = True,
    ) -> list[dict]:
        """Alerts Alertmanager holds, with `status.state`, `silencedBy` and `inhibitedBy`;
        `filters` are label equalities, all of which must hold."""
        params: list[tuple[str, str]] = [
            ("active", _flag(active)),
            ("silenced", _flag(silenced)),
            ("inhibited", _flag(inhibited)),
        ]
        params += [("filter", f"{name}={_quote(value)}") for name, value in (filters or {}).items()]
        response = await self._request("GET", "/api/v2/alerts", params=params)
        return list(response.json())

    async def silences(self) -> list[dict]:
        """Every silence Alertmanager keeps (active, pending and recently expired)."""
        response = await self._request("GET", "/api/v2/silences")
        return list(response.json())

    async def ready(self) -> bool:
        """Whether Alertmanager answers `/-/ready` now (no retries: a probe, not a delivery)."""
        try:
            response = await self._client.get("/-/ready")
        except httpx.HTTPError:
            return False
        return response.status_code == 200

    async def close(self) -> None:
        await self._client.aclose()


def _flag(value: bool) -> str:
    return "true" if value else "false"


def _quote(value: str) -> str:
    """A matcher value in double quotes, escaped as Alertmanager's matcher parser expects."""
    escaped = value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return f'"{escaped}"'
