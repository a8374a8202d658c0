"""The Open311 API in-process against the real stack and workers: POST publishes to Kafka, the
stream agent stores the ticket, GET reads it back without any personal data."""

from __future__ import annotations

import json
import logging
import re
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest
from fastapi.testclient import TestClient

from ioc.api.app import create_app
from ioc.config import Settings
from ioc.kafka import topics
from ioc.models.categories import Category
from tests.conftest import end_offsets, wait_for

pytestmark = pytest.mark.integration

V2 = "/open311/v2"
KEY = {"X-API-Key": "k-test"}
PERSONAL = {
    "phone": "0912345678",
    "email": "nguoi.dan@example.vn",
    "first_name": "Thị Mai",
    "last_name": "Nguyễn",
}
REQUEST_FIELDS = {
    "service_request_id",
    "status",
    "status_notes",
    "service_name",
    "service_code",
    "description",
    "agency_responsible",
    "requested_datetime",
    "updated_datetime",
    "expected_datetime",
    "address",
    "lat",
    "long",
    "media_url",
    "priority",
    "incident_id",
}


@pytest.fixture(scope="module")
def client(workers: Settings) -> Iterator[TestClient]:
    app = create_app(Settings(hotline={"api_keys": {"test-system": "k-test"}}))
    with TestClient(app) as test_client:
        yield test_client


def report(**overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "description": f"Đèn đường hỏng cả dãy phố, tối om ({uuid.uuid4().hex[:6]})",
        "channel": "app",
        "service_code": "dien_nuoc_chieu_sang",
        "lat": 21.5942,
        "long": 105.8482,
        "address_string": "Đường Z115, Thái Nguyên",
        "media_url": "https://example.vn/anh/den-duong.jpg",
        **PERSONAL,
    }
    body.update(overrides)
    return {key: value for key, value in body.items() if value is not None}


def stored(client: TestClient, request_id: str) -> dict[str, Any]:
    def probe() -> dict[str, Any] | None:
        response = client.get(f"{V2}/requests/{request_id}.json")
        return response.json()[0] if response.status_code == 200 else None

    return wait_for(probe, timeout=30, what=f"ticket {request_id} readable via GET")


def problems(response: Any) -> str:
    body = response.json()
    assert isinstance(body, list) and body, body
    assert all(item["code"] == response.status_code for item in body), body
    return " | ".join(item["description"] for item in body)


def assert_no_personal_data(text: str) -> None:
    for value in PERSONAL.values():
        assert value not in text


def test_services_are_the_ten_categories(client: TestClient) -> None:
    response = client.get(f"{V2}/services.json")
    assert response.status_code == 200
    found = response.json()
    assert [service["service_code"] for service in found] == [c.value for c in Category]
    fire = found[0]
    assert fire["service_name"] == "Cháy, nổ"
    assert fire["metadata"] is True and fire["type"] == "realtime"  # it asks who is trapped
    assert fire["keywords"] and fire["group"] and fire["description"]


def test_json_post_is_published_stored_and_read_back_without_personal_data(
    client: TestClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    sent = report()
    response = client.post(f"{V2}/requests.json", json=sent, headers=KEY)
    assert response.status_code == 201, response.text
    [created] = response.json()
    request_id = created["service_request_id"]
    assert re.fullmatch(r"TN-\d{8}-[0-9a-f]{8}", request_id)
    assert request_id in created["service_notice"]

    ticket = stored(client, request_id)
    assert set(ticket) == REQUEST_FIELDS
    assert ticket["status"] == "open"
    assert ticket["description"] == sent["description"]
    assert ticket["address"] == sent["address_string"]
    assert (ticket["lat"], ticket["long"]) == (sent["lat"], sent["long"])
    assert datetime.fromisoformat(ticket["requested_datetime"]).tzinfo is not None
    if ticket["service_code"] is not None:  # set once triage has run
        assert ticket["service_code"] in {c.value for c in Category}
        assert ticket["service_name"]
    assert ticket["priority"] is None or 1 <= ticket["priority"] <= 4
    assert ticket["media_url"] in (None, sent["media_url"])
    raw = client.get(f"{V2}/requests/{request_id}.json").text
    assert_no_personal_data(raw)
    assert_no_personal_data(caplog.text)


def test_form_post_with_api_key_field(client: TestClient) -> None:
    when = "2026-11-20T08:15:00+07:00"
    form = report(
        api_key="k-test", lat="21.60", long="105.85", requested_datetime=when, channel="web"
    )
    response = client.post(f"{V2}/requests.json", data=form)
    assert response.status_code == 201, response.text
    request_id = response.json()[0]["service_request_id"]

    ticket = stored(client, request_id)
    assert ticket["status"] == "open"
    assert ticket["description"] == form["description"]
    assert (ticket["lat"], ticket["long"]) == (21.60, 105.85)
    assert datetime.fromisoformat(ticket["requested_datetime"]) == datetime.fromisoformat(when)
    assert_no_personal_data(json.dumps(ticket, ensure_ascii=False))


def test_without_or_with_wrong_key_is_401_and_nothing_is_published(
    client: TestClient, workers: Settings
) -> None:
    before = end_offsets(workers, topics.HOTLINE_TICKETS)
    attempts = [
        client.post(f"{V2}/requests.json", json=report()),
        client.post(f"{V2}/requests.json", json=report(), headers={"X-API-Key": "k-wrong"}),
        client.post(f"{V2}/requests.json", data=report(api_key="k-wrong")),
        client.post(f"{V2}/requests.json", json=report(api_key="")),
    ]
    for response in attempts:
        assert response.status_code == 401
        assert "api_key" in problems(response)
    assert end_offsets(workers, topics.HOTLINE_TICKETS) == before


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"description": None}, "description"),
        ({"description": "   "}, "description"),
        ({"lat": 48.85, "long": 2.35}, "lat"),
        ({"long": 120.0}, "long"),
        ({"lat": None}, "lat"),
        ({"requested_datetime": "hôm qua lúc 8 giờ"}, "requested_datetime"),
        ({"requested_datetime": "2026-11-20T08:15:00"}, "requested_datetime"),
        ({"service_code": "potholes"}, "service_code"),
        ({"channel": "fax"}, "channel"),
        ({"service_request_id": "TN-mine"}, "service_request_id"),
        ({"phone_number": "0912345678"}, "phone_number"),
        ({"attributes": {"nguoi_mac_ket": ["co"]}}, "attribute[code]"),  # answers only so
    ],
)
def test_bad_input_is_400_naming_the_field(
    client: TestClient,
    workers: Settings,
    caplog: pytest.LogCaptureFixture,
    overrides: dict[str, Any],
    field: str,
) -> None:
    caplog.set_level(logging.DEBUG)
    before = end_offsets(workers, topics.HOTLINE_TICKETS)
    response = client.post(f"{V2}/requests.json", json=report(**overrides), headers=KEY)
    assert response.status_code == 400, response.text
    assert field in problems(response)
    assert_no_personal_data(response.text)
    assert_no_personal_data(caplog.text)
    assert end_offsets(workers, topics.HOTLINE_TICKETS) == before


def test_malformed_or_unsupported_bodies(client: TestClient) -> None:
    url = f"{V2}/requests.json"
    as_json = KEY | {"Content-Type": "application/json"}
    broken = client.post(url, content=b"{not json", headers=as_json)
    assert broken.status_code == 400 and "JSON" in problems(broken)
    listed = client.post(url, json=[report()], headers=KEY)
    assert listed.status_code == 400 and "object" in problems(listed)
    plain = client.post(url, content=b"hello", headers=KEY | {"Content-Type": "text/plain"})
    assert plain.status_code == 415 and "Content-Type" in problems(plain)
    upload = client.post(
        url, data=report(), files={"photo": ("a.jpg", b"\xff\xd8\xff", "image/jpeg")}, headers=KEY
    )
    assert upload.status_code == 400 and "photo: file uploads not accepted" in problems(upload)


def test_oversized_body_is_413_by_declared_or_actual_size(
    client: TestClient, workers: Settings
) -> None:
    before = end_offsets(workers, topics.HOTLINE_TICKETS)
    limit = workers.hotline.max_body_bytes
    declared = client.post(
        f"{V2}/requests.json", json=report(address_string="x" * (limit + 1)), headers=KEY
    )
    assert declared.status_code == 413
    assert str(limit) in problems(declared)

    payload = json.dumps(report(address_string="y" * (limit + 1))).encode()
    chunks = iter([payload[i : i + 8192] for i in range(0, len(payload), 8192)])
    streamed = client.post(
        f"{V2}/requests.json",
        content=chunks,  # chunked: no Content-Length to trust
        headers=KEY | {"Content-Type": "application/json"},
    )
    assert streamed.status_code == 413
    assert end_offsets(workers, topics.HOTLINE_TICKETS) == before


def test_unknown_request_is_404(client: TestClient) -> None:
    response = client.get(f"{V2}/requests/TN-20260101-00000000.json")
    assert response.status_code == 404
    assert "not found" in problems(response)


@pytest.fixture
def listed(db: psycopg.Connection) -> Iterator[tuple[datetime, list[str]]]:
    """Six tickets stored directly in a time window of their own: (window start, ids oldest
    first); statuses and categories as the triage agent would have set them."""
    start = datetime(2031, 1, 1, tzinfo=UTC) + timedelta(days=uuid.uuid4().int % 3000)
    tag = uuid.uuid4().hex[:6]
    rows = [
        ("giao_thong", "new", None),
        ("moi_truong", "triaged", 3),
        ("giao_thong", "resolved", 2),
        ("moi_truong", "duplicate", 4),
        ("giao_thong", "in_progress", 1),
        (None, "new", None),
    ]
    ids = [f"LT-{tag}-{index}" for index in range(len(rows))]
    for index, (category, status, priority) in enumerate(rows):
        requested = start + timedelta(hours=index)
        db.execute(
            "INSERT INTO tickets (service_request_id, requested_at, channel, description, urgent,"
            " ingested_at, category, status, priority, sla_due, status_notes)"
            " VALUES (%s, %s, 'web', %s, false, now(), %s, %s, %s, %s, %s)",
            (
                ids[index],
                requested,
                f"phản ánh {index}",
                category,
                status,
                priority,
                requested + timedelta(hours=24) if priority else None,
                "Đã xử lý xong" if status == "resolved" else None,
            ),
        )
    yield start, ids
    db.execute("DELETE FROM tickets WHERE service_request_id = ANY(%s)", (ids,))


def test_list_filters_and_paging(client: TestClient, listed: tuple[datetime, list[str]]) -> None:
    start, ids = listed
    window = {"start_date": start.isoformat(), "end_date": (start + timedelta(days=1)).isoformat()}

    def found(**params: Any) -> list[str]:
        response = client.get(f"{V2}/requests.json", params=window | params)
        assert response.status_code == 200, response.text
        return [item["service_request_id"] for item in response.json()]

    newest_first = ids[::-1]
    assert found() == newest_first
    assert found(page_size=4) == newest_first[:4]
    assert found(page_size=4, page=2) == newest_first[4:]
    assert found(page_size=4, page=3) == []
    assert found(service_code="giao_thong") == [ids[4], ids[2], ids[0]]
    assert found(service_code="giao_thong,moi_truong") == newest_first[1:]
    assert found(status="closed") == [ids[3], ids[2]]
    assert found(status="open") == [ids[5], ids[4], ids[1], ids[0]]
    assert found(status="open,closed") == newest_first
    assert found(status="open", service_code="giao_thong") == [ids[4], ids[0]]
    assert found(end_date=(start + timedelta(hours=1)).isoformat()) == [ids[1], ids[0]]
    by_id = client.get(f"{V2}/requests.json", params={"service_request_id": f"{ids[0]},{ids[3]}"})
    assert [item["service_request_id"] for item in by_id.json()] == [ids[3], ids[0]]

    closed = client.get(f"{V2}/requests/{ids[2]}.json").json()[0]
    assert closed["status"] == "closed"
    assert closed["status_notes"] == "Đã xử lý xong"
    assert closed["service_code"] == "giao_thong" and closed["service_name"] == "Giao thông"
    assert closed["priority"] == 2
    expected = datetime.fromisoformat(closed["expected_datetime"])
    assert expected == start + timedelta(hours=26)
    untriaged = client.get(f"{V2}/requests/{ids[5]}.json").json()[0]
    assert untriaged["service_code"] is None and untriaged["priority"] is None
    assert untriaged["status"] == "open"


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"status": "pending"}, "status"),
        ({"service_code": "potholes"}, "service_code"),
        ({"start_date": "tuần trước"}, "start_date"),
        ({"end_date": "2026-11-20T08:00:00"}, "end_date"),
        ({"start_date": "2026-11-21T00:00Z", "end_date": "2026-11-20T00:00Z"}, "start_date"),
        ({"page": "0"}, "page"),
        ({"page": "two"}, "page"),
        ({"page_size": "201"}, "page_size"),
        ({"stauts": "open"}, "stauts"),
    ],
)
def test_bad_list_parameters_are_400(
    client: TestClient, params: dict[str, str], field: str
) -> None:
    response = client.get(f"{V2}/requests.json", params=params)
    assert response.status_code == 400, response.text
    assert field in problems(response)


def test_default_page_size_and_health(client: TestClient) -> None:
    response = client.get(f"{V2}/requests.json")
    assert response.status_code == 200
    assert len(response.json()) <= 50
    health = client.get("/healthz")
    assert health.status_code == 200
    assert health.json() == {"status": "ok", "kafka": True, "database": True}


def test_staff_move_a_ticket_through_its_lifecycle(
    client: TestClient, db: psycopg.Connection
) -> None:
    spot = {"lat": 21.3 + uuid.uuid4().int % 1000 / 5000, "long": 105.5}
    sent = report(description="Cháy kho phế liệu, khói đen", service_code=None, **spot)
    request_id = client.post(f"{V2}/requests.json", json=sent, headers=KEY).json()[0][
        "service_request_id"
    ]
    ticket = stored(client, request_id)
    assert ticket["service_code"] == "chay_no" and ticket["status"] == "open"
    status_url = f"{V2}/requests/{request_id}/status.json"

    assert client.post(status_url, data={"status": "assigned"}).status_code == 401
    moved = client.post(status_url, data={"status": "assigned"}, headers=KEY)
    assert moved.status_code == 200 and moved.json()[0]["status"] == "open"
    done = client.post(
        status_url, json={"status": "resolved", "status_notes": "Đã dập tắt"}, headers=KEY
    )
    assert done.status_code == 200, done.text
    assert (done.json()[0]["status"], done.json()[0]["status_notes"]) == ("closed", "Đã dập tắt")
    incident = db.execute(
        "SELECT status FROM incidents WHERE id = %s", (ticket["incident_id"],)
    ).fetchone()
    assert incident == ("resolved",), "resolving the first report resolves its incident"
    history = [
        r[0]
        for r in db.execute(
            "SELECT status FROM ticket_events WHERE service_request_id = %s ORDER BY at",
            (request_id,),
        )
    ]
    assert history[-2:] == ["assigned", "resolved"]

    wrong = client.post(status_url, data={"status": "assigned"}, headers=KEY)
    assert wrong.status_code == 400 and "from resolved to assigned" in problems(wrong)
    assert client.post(status_url, data={"status": "bogus"}, headers=KEY).status_code == 400
    unknown = client.post(
        f"{V2}/requests/TN-0-none/status.json", data={"status": "assigned"}, headers=KEY
    )
    assert unknown.status_code == 404


def test_staff_correct_triage_and_an_emergency_missed_pages_at_once(
    client: TestClient, db: psycopg.Connection
) -> None:
    spot = {"lat": 21.3 + uuid.uuid4().int % 1000 / 5000, "long": 105.9}
    sent = report(description="Đèn đường hỏng, tối om", service_code=None, **spot)
    request_id = client.post(f"{V2}/requests.json", json=sent, headers=KEY).json()[0][
        "service_request_id"
    ]
    ticket = stored(client, request_id)
    url = f"{V2}/requests/{request_id}/triage.json"
    fix = {"urgent": "true", "corrected_by": "Lê Thu", "reason": "dây điện đứt, đang chập"}

    assert client.post(url, data=fix).status_code == 401
    bad = client.post(url, data={**fix, "service_code": "fire", "colour": "x"}, headers=KEY)
    assert bad.status_code == 400
    assert "unknown service_code" in problems(bad) and "colour: unknown field" in problems(bad)
    no_reason = client.post(url, data={"urgent": "true", "corrected_by": "Lê Thu"}, headers=KEY)
    assert no_reason.status_code == 400 and "reason: required" in problems(no_reason)
    unknown = client.post(f"{V2}/requests/TN-0-none/triage.json", data=fix, headers=KEY)
    assert unknown.status_code == 404

    done = client.post(url, data=fix, headers=KEY)
    assert done.status_code == 200, done.text
    assert done.json() == [
        {
            "service_request_id": request_id,
            "service_code": "dien_nuoc_chieu_sang",
            "priority": 2,
            "urgent": True,
            "incident_id": ticket["incident_id"],
            "paged": True,
        }
    ]

    def paged() -> set[str]:
        query = "SELECT channel FROM alerts WHERE incident_id = %s AND ok"
        return {r[0] for r in db.execute(query, (ticket["incident_id"],))}

    assert wait_for(lambda: paged() >= {"webhook"} and paged(), what="a page") >= {"webhook"}
    again = client.post(url, json={**fix, "urgent": True}, headers=KEY)
    assert again.status_code == 400 and "nothing to correct" in problems(again)
