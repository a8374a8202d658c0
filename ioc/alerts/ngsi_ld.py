"""Fused incidents kept current in an NGSI-LD context broker (Orion-LD, Scorpio, Stellio) as FIWARE
`Alert` entities (smart data model dataModel.Alert), so a provincial platform subscribes to the
city's incidents instead of polling the IOC.

Each incident is one entity, `urn:ngsi-ld:Alert:<incident id>`, written whole by a batch upsert
with `options=replace` on every notification and every change in between (acknowledged, joined by
another source, resolved, reopened). Writing the whole entity makes a repeat after a retry or a
crash harmless, and drops what no longer holds (`validTo` once an incident reopens) instead of
leaving it behind. The entity travels as `application/ld+json` with its `@context` inside, in the
shape of the model's official normalized NGSI-LD example.
"""

from __future__ import annotations

import asyncio
import json
import logging
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

import httpx

from ioc.alerts.channels import summary_en, summary_vi
from ioc.models import FusedIncident, IncidentSource, Member, Notification, Severity
from ioc.models.kinds import KINDS

log = logging.getLogger(__name__)

CORE_CONTEXT = "https://uri.etsi.org/ngsi-ld/v1/ngsi-ld-core-context.jsonld"
UPSERT_PATH = "/ngsi-ld/v1/entityOperations/upsert"
URN_SAFE = "-._~:@!$&'()*+,;="  # what a URN's specific part may hold unescaped (RFC 8141)
REASON_MAX_CHARS = 300

ALERT_SEVERITIES: dict[Severity, str] = {
    Severity.URGENT: "critical",
    Severity.HIGH: "high",
    Severity.NORMAL: "medium",
}
# The FIWARE entity type of what raised a candidate, for its URN: sensors and cameras are
# `Device`s, 1022 tickets are Open311 service requests (dataModel.IssueTracking).
SOURCE_TYPES: dict[IncidentSource, str] = {
    IncidentSource.SENSOR: "Device",
    IncidentSource.VISION: "Device",
    IncidentSource.HOTLINE: "Open311ServiceRequest",
}


def ngsi_ld_urn(entity_type: str, key: str) -> str:
    return f"urn:ngsi-ld:{entity_type}:{quote(key, safe=URN_SAFE)}"


def alert_entity_id(incident_id: str) -> str:
    """Derived from the incident alone, so every write of one incident lands on one entity."""
    return ngsi_ld_urn("Alert", incident_id)


def source_urn(member: Member) -> str:
    return ngsi_ld_urn(SOURCE_TYPES[member.source], member.source_key)


def source_urns(incident: FusedIncident) -> list[str]:
    """What raised the incident, its earliest candidate (whose id it took) first."""
    members = sorted(incident.members, key=lambda m: (m.id != incident.id, m.event_time, m.id))
    return list(dict.fromkeys(source_urn(member) for member in members))


def iso_utc(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _property(value: object) -> dict[str, Any]:
    return {"type": "Property", "value": value}


def _date(moment: datetime) -> dict[str, Any]:
    """Typed as a DateTime, so brokers compare it as a date in `q` filters, not as text."""
    return _property({"@type": "DateTime", "@value": iso_utc(moment)})


def alert_entity(incident: FusedIncident, context: str) -> dict[str, Any]:
    """The incident as a normalized NGSI-LD `Alert` entity, `@context` included."""
    info = KINDS[incident.kind]
    category, sub_category = info.alert_category, info.alert_subcategory
    sources = source_urns(incident)
    entity: dict[str, Any] = {
        "id": alert_entity_id(incident.id),
        "type": "Alert",
        # An incident with no member left to name falls back to the IOC that issued it.
        "alertSource": _property(sources[0] if sources else "ioc"),
        "category": _property(category),
        "dateIssued": _date(incident.opened_at),
        # Vietnamese first, as hotline staff read it; English after, for everyone else.
        "description": _property(f"{summary_vi(incident)} | {summary_en(incident)}"),
    }
    if incident.district:
        entity["address"] = _property({"district": incident.district})
    if incident.lat is not None and incident.lon is not None:
        entity["location"] = {
            "type": "GeoProperty",
            "value": {"type": "Point", "coordinates": [incident.lon, incident.lat]},
        }
    entity["severity"] = _property(ALERT_SEVERITIES[incident.severity])
    if sub_category:
        entity["subCategory"] = _property(sub_category)
    entity["validFrom"] = _date(incident.event_time)
    if not incident.status.active:  # resolved, or merged into another incident
        entity["validTo"] = _date(incident.resolved_at or incident.status_since)
    data: dict[str, Any] = {
        "incidentId": incident.id,
        "kind": str(incident.kind),
        "status": str(incident.status),
        "episode": incident.episode,
        "version": incident.version,
        "independentSources": incident.sources,
        "citizenReports": incident.reports,
        "scope": incident.scope,
        "sources": sources,
    }
    if incident.merged_into:
        data["mergedInto"] = alert_entity_id(incident.merged_into)
    entity["data"] = _property(data)
    entity["@context"] = [CORE_CONTEXT, context]
    return entity


def broker_reason(response: httpx.Response) -> str:
    """What the broker said was wrong: a ProblemDetails' type, title and detail, or the first
    failed entity of a 207's BatchOperationResult; else the body's start."""
    try:
        body = response.json()
    except ValueError:
        return response.text[:REASON_MAX_CHARS] or response.reason_phrase
    if isinstance(body, dict) and isinstance(body.get("errors"), list) and body["errors"]:
        failed = body["errors"][0]  # one entity per upsert: the error is about it
        return _problem(failed.get("error") if isinstance(failed, dict) else failed)
    return _problem(body)


def _problem(problem: object) -> str:
    if isinstance(problem, dict):
        kind = str(problem.get("type", "")).rsplit("/", 1)[-1]
        parts = [kind, str(problem.get("title", "")), str(problem.get("detail", ""))]
        text = " · ".join(part for part in parts if part)
    else:
        text = json.dumps(problem, ensure_ascii=False)
    return text[:REASON_MAX_CHARS]


class NgsiLdAlertChannel:
    """Every incident, paging or not, as a FIWARE `Alert` in an NGSI-LD broker, kept current from
    the first notification to the resolution. Retries network errors and 5xx with backoff; a 4xx
    or a 207 (the broker refused the entity) fails at once with the broker's reason."""

    name = "ngsi-ld"

    def __init__(
        self, url: str, context: str, tenant: str | None, timeout_s: float, retries: int
    ) -> None:
        self.context = context
        self.retries = retries
        headers = {"Content-Type": "application/ld+json", "Accept": "application/json"}
        if tenant:
            headers["NGSILD-Tenant"] = tenant
        self.client = httpx.AsyncClient(
            base_url=url.rstrip("/"), timeout=timeout_s, headers=headers
        )

    async def deliver(self, incident: FusedIncident, notification: Notification) -> None:
        """Firing, escalated and resolved alike: the entity is the incident's state, which the
        notification's cause is already part of."""
        await self.upsert(incident)

    async def update(self, incident: FusedIncident) -> None:
        """Also called on every refresh of an active incident, so an entity the broker lost (a
        restart without persistence) is back within a refresh period."""
        await self.upsert(incident)

    async def upsert(self, incident: FusedIncident) -> None:
        entity = alert_entity(incident, self.context)
        body = json.dumps([entity], ensure_ascii=False).encode()
        for attempt in range(self.retries + 1):
            try:
                response = await self.client.post(
                    UPSERT_PATH, params={"options": "replace"}, content=body
                )
            except httpx.TransportError as transport_error:
                error: Exception = transport_error
            else:
                if response.is_success and response.status_code != 207:
                    return
                # Not raise_for_status: its message quotes the URL, ours the broker's reason.
                error = httpx.HTTPStatusError(
                    f"HTTP {response.status_code} for {entity['id']}: {broker_reason(response)}",
                    request=response.request,
                    response=response,
                )
                if response.status_code < 500:
                    raise error  # the broker refused this entity: sending it again changes nothing
            if attempt == self.retries:
                raise error
            log.info("NGSI-LD upsert of %s failed, retrying: %s", entity["id"], error)
            await asyncio.sleep(0.2 * 2**attempt)

    async def close(self) -> None:
        await self.client.aclose()
