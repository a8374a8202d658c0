"""Incidents as FIWARE `Alert` entities: the mapping checked against the official smart data model
(schema, example, @context, copied in tests/data/fiware/alert), and the channel against a minimal
NGSI-LD broker on a loopback port that keeps entities the way a batch upsert with replace does."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import cache
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from jsonschema import Draft202012Validator
from referencing import Registry, Resource

from ioc.alerts.channels import channels_from_settings
from ioc.alerts.ngsi_ld import (
    UPSERT_PATH,
    NgsiLdAlertChannel,
    alert_entity,
)
from ioc.config import AlertSettings, Settings
from ioc.devtools.stack.process import free_port
from ioc.models import FusedIncident, IncidentKind, Notification
from ioc.models.kinds import KINDS
from ioc.store.writer import Store

OFFICIAL = Path(__file__).parents[1] / "data" / "fiware" / "alert"
ALERT_CONTEXT = AlertSettings().ngsi_ld_context
WHEN = datetime(2026, 11, 23, 3, 0, tzinfo=UTC)
MEMBERS = [
    {
        "id": "inc-1",
        "source": "vision",
        "source_key": "cam-gia-bay-02",
        "kind": "fire",
        "severity": "high",
        "status": "open",
        "event_time": WHEN,
        "title": "Khói lửa trước cầu Gia Bảy",
    },
    {
        "id": "inc-7",
        "source": "hotline",
        "source_key": "1022-20261123-0042",
        "kind": "fire",
        "severity": "urgent",
        "status": "open",
        "event_time": WHEN + timedelta(minutes=2),
        "title": "Cháy nhà dân",
    },
]


def incident(**changes: Any) -> FusedIncident:
    fields: dict[str, Any] = {
        "id": "inc-1",
        "version": 2,
        "change": "joined",
        "kind": "fire",
        "severity": "urgent",
        "status": "open",
        "title": "Cháy nhà dân gần cầu Gia Bảy",
        "district": "Phường Phan Đình Phùng",
        "lat": 21.5942,
        "lon": 105.8482,
        "event_time": WHEN,
        "opened_at": WHEN + timedelta(seconds=20),
        "status_since": WHEN + timedelta(minutes=2),
        "ingested_at_ms": 0,
        "sources": 2,
        "reports": 1,
        "members": MEMBERS,
    }
    return FusedIncident.model_validate(fields | changes)


def official(name: str) -> Any:
    return json.loads((OFFICIAL / name).read_text(encoding="utf-8"))


@cache
def alert_schema() -> Draft202012Validator:
    """The official schema with its remote references served from the local copies, and formats
    (date-time, uri) asserted rather than only annotated."""
    schema = official("schema.json")
    references = [official(name) for name in ("alert-schema.json", "common-schema.json")]
    references.append(official("weather-schema.json"))
    registry = Registry().with_resources(
        (document["$id"], Resource.from_contents(document)) for document in [schema, *references]
    )
    return Draft202012Validator(
        schema, registry=registry, format_checker=Draft202012Validator.FORMAT_CHECKER
    )


def key_values(entity: dict[str, Any]) -> dict[str, Any]:
    """Normalized NGSI-LD to the key-values form the JSON schema describes."""
    flat: dict[str, Any] = {"id": entity["id"], "type": entity["type"]}
    for name, attribute in entity.items():
        if name in ("id", "type", "@context"):
            continue
        value = attribute["value"]
        flat[name] = value["@value"] if isinstance(value, dict) and "@value" in value else value
    return flat


def schema_errors(entity: dict[str, Any]) -> list[str]:
    return [error.message for error in alert_schema().iter_errors(key_values(entity))]


def test_the_validator_accepts_the_official_examples_and_refuses_what_the_model_does_not() -> None:
    example = official("example-normalized.jsonld")
    assert schema_errors(example) == []
    assert key_values(example) == {
        name: value for name, value in official("example.jsonld").items() if name != "@context"
    }
    wrong = [
        example | {"category": {"type": "Property", "value": "fire"}},
        example | {"subCategory": {"type": "Property", "value": "houseFire"}},
        example | {"severity": {"type": "Property", "value": "urgent"}},
        example | {"dateIssued": {"type": "Property", "value": "23/11/2026 10:00"}},
    ]
    assert all(schema_errors(entity) for entity in wrong)


def test_every_kind_has_its_row_of_metadata() -> None:
    assert set(KINDS) == set(IncidentKind)


@pytest.mark.parametrize("kind", list(IncidentKind))
@pytest.mark.parametrize("status", ["open", "acknowledged", "resolved"])
def test_each_kind_is_a_valid_alert(kind: IncidentKind, status: str) -> None:
    resolved = {"resolved_at": WHEN + timedelta(hours=1)} if status == "resolved" else {}
    entity = alert_entity(incident(kind=kind, status=status, **resolved), ALERT_CONTEXT)
    assert schema_errors(entity) == []
    assert entity["category"]["value"] == KINDS[kind].alert_category
    assert entity.get("subCategory", {}).get("value") == KINDS[kind].alert_subcategory
    assert entity["data"]["value"]["kind"] == kind
    assert entity["data"]["value"]["status"] == status


@pytest.mark.parametrize(
    ("kind", "category", "sub_category"),
    [
        ("fire", "security", "buildingFire"),
        ("flood", "naturalDisaster", "flood"),
        ("water_level_high", "weather", "floodRisk"),
        ("air_quality_poor", "environment", "airPollution"),
        ("stopped_vehicle", "traffic", "carStopped"),
        ("crowding", "traffic", "crowdRisk"),
        ("camera_tamper", "security", "suspiciousAction"),
    ],
)
def test_kinds_with_a_counterpart_take_it(kind: str, category: str, sub_category: str) -> None:
    entity = alert_entity(incident(kind=kind), ALERT_CONTEXT)
    assert (entity["category"]["value"], entity["subCategory"]["value"]) == (
        category,
        sub_category,
    )


def test_an_incident_is_shaped_like_the_official_normalized_example() -> None:
    """Same attribute types, same value shapes (typed DateTimes, a GeoJSON Point) and the same
    @context as the example, which brokers are known to take."""
    example = official("example-normalized.jsonld")
    entity = alert_entity(
        incident(status="resolved", resolved_at=WHEN + timedelta(hours=1)), ALERT_CONTEXT
    )
    assert entity["@context"] == example["@context"]
    assert set(example) <= set(entity)
    for name, attribute in example.items():
        if name in ("id", "type", "@context"):
            continue
        ours = entity[name]
        assert ours["type"] == attribute["type"], name
        if isinstance(attribute["value"], dict):
            assert set(ours["value"]) == set(attribute["value"]), name
            assert ours["value"].get("@type") == attribute["value"].get("@type"), name
    terms = set(official("context.jsonld")["@context"])
    assert set(entity) - {"id", "type", "@context"} <= terms, "each attribute has a model term"


def test_the_alert_says_what_staff_see_where_and_from_which_source() -> None:
    entity = alert_entity(incident(), ALERT_CONTEXT)
    assert entity["id"] == "urn:ngsi-ld:Alert:inc-1"
    assert entity["type"] == "Alert"
    assert entity["severity"]["value"] == "critical"
    assert entity["location"]["value"] == {"type": "Point", "coordinates": [105.8482, 21.5942]}
    assert entity["address"]["value"] == {"district": "Phường Phan Đình Phùng"}
    description = entity["description"]["value"]
    assert description.startswith("[KHẨN] Cháy nhà dân gần cầu Gia Bảy · Phường Phan Đình Phùng")
    assert "[URGENT] Fire in Phường Phan Đình Phùng" in description
    assert entity["dateIssued"]["value"] == {
        "@type": "DateTime",
        "@value": "2026-11-23T03:00:20.000Z",
    }
    assert entity["validFrom"]["value"]["@value"] == "2026-11-23T03:00:00.000Z"
    assert "validTo" not in entity
    # The earliest candidate, whose id the incident took, is the source; all are in `data`.
    assert entity["alertSource"]["value"] == "urn:ngsi-ld:Device:cam-gia-bay-02"
    assert entity["data"]["value"]["sources"] == [
        "urn:ngsi-ld:Device:cam-gia-bay-02",
        "urn:ngsi-ld:Open311ServiceRequest:1022-20261123-0042",
    ]


@pytest.mark.parametrize(
    ("ours", "theirs"), [("urgent", "critical"), ("high", "high"), ("normal", "medium")]
)
def test_severity_on_the_model_scale(ours: str, theirs: str) -> None:
    assert alert_entity(incident(severity=ours), ALERT_CONTEXT)["severity"]["value"] == theirs


def test_an_incident_ends_when_resolved_or_merged_and_is_valid_again_when_reopened() -> None:
    resolved_at = WHEN + timedelta(hours=1)
    resolved = alert_entity(incident(status="resolved", resolved_at=resolved_at), ALERT_CONTEXT)
    assert resolved["validTo"]["value"]["@value"] == "2026-11-23T04:00:00.000Z"
    reopened = alert_entity(incident(status="open", episode=2, version=5), ALERT_CONTEXT)
    assert "validTo" not in reopened and reopened["data"]["value"]["episode"] == 2
    merged = alert_entity(
        incident(status="merged", merged_into="inc-0", status_since=resolved_at), ALERT_CONTEXT
    )
    assert merged["validTo"]["value"]["@value"] == "2026-11-23T04:00:00.000Z"
    assert merged["data"]["value"]["mergedInto"] == "urn:ngsi-ld:Alert:inc-0"
    assert schema_errors(merged) == []


def test_what_is_unknown_is_left_out() -> None:
    entity = alert_entity(incident(district=None, lat=None, lon=None, members=[]), ALERT_CONTEXT)
    assert "location" not in entity and "address" not in entity
    assert entity["alertSource"]["value"] == "ioc"
    assert schema_errors(entity) == []


def test_sources_are_named_by_urns_that_stay_valid_whatever_their_key() -> None:
    members = [
        MEMBERS[0] | {"source_key": "Cầu Gia Bảy 02"},
        MEMBERS[1] | {"source": "sensor", "source_key": "tn-wl-1"},
    ]
    entity = alert_entity(incident(members=members), ALERT_CONTEXT)
    assert entity["data"]["value"]["sources"] == [
        "urn:ngsi-ld:Device:C%E1%BA%A7u%20Gia%20B%E1%BA%A3y%2002",
        "urn:ngsi-ld:Device:tn-wl-1",
    ]
    assert schema_errors(entity) == []


@dataclass
class Upsert:
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: Any
    answered: int = 0


class Broker:
    """A minimal NGSI-LD broker: batch upsert with replace, spec status codes (201 with the created
    ids, 204 when all existed), content negotiation checked (JSON-LD carries its @context in the
    body and no Link header). `script` answers the next requests instead: (status, body)."""

    def __init__(self, script: list[tuple[int, Any]] | None = None) -> None:
        self.requests: list[Upsert] = []
        self.entities: dict[str, dict[str, Any]] = {}
        self.script = list(script or [])
        broker = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers["Content-Length"]))
                url = urlsplit(self.path)
                request = Upsert(
                    url.path, parse_qs(url.query), dict(self.headers.items()), json.loads(raw)
                )
                broker.requests.append(request)
                status, body = broker.answer(request)
                request.answered = status
                payload = b"" if body is None else json.dumps(body).encode()
                self.send_response(status)
                if payload:
                    content_type = (
                        "application/json" if status < 300 else "application/problem+json"
                    )
                    self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *args: object) -> None:
                return None

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        ).start()

    def answer(self, request: Upsert) -> tuple[int, Any]:
        if self.script:
            return self.script.pop(0)
        if request.path != UPSERT_PATH:
            return 404, problem("ResourceNotFound", "no such path")
        if request.headers.get("Content-Type") != "application/ld+json":
            return 415, problem("UnsupportedMediaType", "expected application/ld+json")
        if "Link" in request.headers:
            return 400, problem("BadRequestData", "JSON-LD with a Link header")
        if not all("@context" in entity for entity in request.body):
            return 400, problem("BadRequestData", "no @context in the payload")
        created = [entity["id"] for entity in request.body if entity["id"] not in self.entities]
        for entity in request.body:
            self.entities[entity["id"]] = entity
        return (201, created) if created else (204, None)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def problem(kind: str, title: str, detail: str = "") -> dict[str, str]:
    return {"type": f"https://uri.etsi.org/ngsi-ld/errors/{kind}", "title": title, "detail": detail}


@pytest.fixture
def broker(request: pytest.FixtureRequest) -> Iterator[Broker]:
    server = Broker(getattr(request, "param", None))
    yield server
    server.close()


def channel_for(
    url: str, retries: int = 2, tenant: str | None = "thainguyen"
) -> NgsiLdAlertChannel:
    return NgsiLdAlertChannel(url, ALERT_CONTEXT, tenant, timeout_s=5, retries=retries)


def run(channel: NgsiLdAlertChannel, *steps: tuple[str, FusedIncident]) -> None:
    async def main() -> None:
        try:
            for method, state in steps:
                if method == "deliver":
                    await channel.deliver(state, Notification.FIRING)
                else:
                    await channel.update(state)
        finally:
            await channel.close()

    asyncio.run(main())


def test_each_delivery_and_update_is_one_upsert_of_the_current_alert(broker: Broker) -> None:
    opened = incident()
    acknowledged = incident(status="acknowledged", version=3)
    run(channel_for(broker.url), ("deliver", opened), ("update", acknowledged))
    assert len(broker.requests) == 2
    for request, state in zip(broker.requests, [opened, acknowledged], strict=True):
        assert request.path == "/ngsi-ld/v1/entityOperations/upsert"
        assert request.query == {"options": ["replace"]}
        assert request.headers["Content-Type"] == "application/ld+json"
        assert "Link" not in request.headers
        assert request.headers["NGSILD-Tenant"] == "thainguyen"
        assert request.body == [alert_entity(state, ALERT_CONTEXT)]
    assert list(broker.entities) == ["urn:ngsi-ld:Alert:inc-1"]
    assert broker.entities["urn:ngsi-ld:Alert:inc-1"]["data"]["value"]["status"] == "acknowledged"


def test_a_repeat_after_a_crash_writes_the_same_entity_again(broker: Broker) -> None:
    """The first write creates it (201), the repeat replaces it with itself (204): one entity."""
    run(channel_for(broker.url, tenant=None), ("deliver", incident()), ("deliver", incident()))
    first, repeat = broker.requests
    assert first.body == repeat.body
    assert (first.answered, repeat.answered) == (201, 204)
    assert "NGSILD-Tenant" not in first.headers
    assert len(broker.entities) == 1


@pytest.mark.parametrize(
    "broker", [[(500, problem("InternalError", "db")), (503, None)]], indirect=True
)
def test_a_5xx_is_retried_with_the_same_entity(broker: Broker) -> None:
    run(channel_for(broker.url, retries=2), ("deliver", incident()))
    assert len(broker.requests) == 3
    assert broker.requests[0].body == broker.requests[2].body
    assert list(broker.entities) == ["urn:ngsi-ld:Alert:inc-1"]


@pytest.mark.parametrize(
    "broker", [[(500, problem("InternalError", "Database Error", "mongo down"))] * 2], indirect=True
)
def test_a_broker_that_stays_down_fails_the_delivery_with_its_reason(broker: Broker) -> None:
    with pytest.raises(httpx.HTTPStatusError) as failure:
        run(channel_for(broker.url, retries=1), ("deliver", incident()))
    assert len(broker.requests) == 2
    assert "HTTP 500" in str(failure.value)
    assert "Database Error" in str(failure.value) and "mongo down" in str(failure.value)


@pytest.mark.parametrize(
    "broker",
    [[(400, problem("BadRequestData", "Invalid Property Value", "validTo: not a DateTime"))]],
    indirect=True,
)
def test_a_refused_entity_fails_at_once_with_the_brokers_reason(broker: Broker) -> None:
    with pytest.raises(httpx.HTTPStatusError) as failure:
        run(channel_for(broker.url, retries=3), ("update", incident()))
    assert len(broker.requests) == 1, "a 4xx is not retried"
    message = str(failure.value)
    assert message.startswith("HTTP 400 for urn:ngsi-ld:Alert:inc-1: BadRequestData")
    assert "Invalid Property Value" in message and "validTo: not a DateTime" in message
    assert broker.url not in message


MULTI_STATUS = {
    "success": [],
    "errors": [
        {
            "entityId": "urn:ngsi-ld:Alert:inc-1",
            "error": problem("BadRequestData", "Invalid GeoJSON", "coordinates out of range"),
        }
    ],
}


@pytest.mark.parametrize("broker", [[(207, MULTI_STATUS)]], indirect=True)
def test_a_207_naming_the_entity_is_a_failure(broker: Broker) -> None:
    with pytest.raises(httpx.HTTPStatusError) as failure:
        run(channel_for(broker.url), ("deliver", incident()))
    assert len(broker.requests) == 1
    message = str(failure.value)
    assert message.startswith("HTTP 207 for urn:ngsi-ld:Alert:inc-1: BadRequestData")
    assert "Invalid GeoJSON" in message and "coordinates out of range" in message


def test_an_unreachable_broker_fails_the_delivery() -> None:
    with pytest.raises(httpx.TransportError):
        run(channel_for(f"http://127.0.0.1:{free_port()}", retries=1), ("deliver", incident()))


def test_the_broker_is_a_channel_only_when_configured(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("IOC_ALERTS__WEBHOOK_URL", raising=False)  # the session stack sets one

    def names(settings: Settings) -> list[str]:
        channels = channels_from_settings(settings, Store(settings.database.dsn))
        for channel in channels:
            asyncio.run(channel.close())
        return [channel.name for channel in channels]

    assert "ngsi-ld" not in names(Settings())
    assert names(Settings(alerts={"ngsi_ld_url": "http://127.0.0.1:1026"})) == [
        "console",
        "ngsi-ld",
    ]
    assert names(
        Settings(
            alerts={"alertmanager_url": "http://127.0.0.1:9093", "ngsi_ld_url": "http://b:1026"}
        )
    ) == ["alertmanager", "ngsi-ld"]
