"""GeoReport v2 as the spec writes it, against the API served over HTTP on the session's stack:
XML and JSON, service definitions and `attribute[code]`, jurisdiction, discovery, photos, and two
third-party clients from PyPI (georeport for reads in both formats, civicbot for spec form POSTs),
used without any of our extensions."""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlencode
from xml.etree import ElementTree

import httpx
import psycopg
import pytest
import uvicorn
import xmltodict
from civicbot.http import HttpTransport, RateLimiter
from civicbot.open311 import Open311Client
from civicbot.registry import Endpoint
from georeport import GeoReport

from ioc.api.app import create_app
from ioc.api.open311 import error_document
from ioc.api.openapi import render
from ioc.config import Settings
from ioc.devtools.stack.process import free_port
from ioc.kafka import topics
from ioc.models.categories import Category
from tests.conftest import end_offsets, wait_for

pytestmark = pytest.mark.integration

V2 = "/open311/v2"
KEY = {"X-API-Key": "k-test"}
STAFF = {"X-API-Key": "s-staff"}
JURISDICTION = "thainguyen.gov.vn"
MEDIA_LIMIT = 64 * 1024
PNG = b"\x89PNG\r\n\x1a\n" + bytes(64)
PHONE = "0912345678"
OPENAPI_FILE = Path(__file__).resolve().parents[2] / "docs" / "open311-openapi.json"
# Urgent by its words, only just: statements appended to it once made it not urgent.
BORDERLINE_COLLISION = "Va chạm giữa xe tải và xe máy ở ngã tư Đồng Quang"
CALM_FLOOD = "Nước mưa đọng trên vỉa hè trước cổng chợ, đi lại hơi bất tiện"  # calm by its words


@pytest.fixture(scope="module")
def base_url(workers: Settings) -> Iterator[str]:
    """The API under uvicorn on a free loopback port, as integrators reach it."""
    settings = Settings(
        hotline={"api_keys": {"test-system": "k-test", "zalo-oa": "k-zalo"}},
        open311={"channels": {"zalo-oa": "zalo"}, "max_media_bytes": MEDIA_LIMIT},
        alerts={"staff_keys": {"Lê Thu": "s-staff"}},
    )
    server = uvicorn.Server(
        uvicorn.Config(
            create_app(settings), host="127.0.0.1", port=free_port(), log_level="warning"
        )
    )
    thread = threading.Thread(target=server.run, name="open311-api", daemon=True)
    thread.start()
    wait_for(lambda: server.started, timeout=60, what="the API to listen")
    yield f"http://127.0.0.1:{server.config.port}{V2}"
    server.should_exit = True
    thread.join(timeout=30)


@pytest.fixture(scope="module")
def http(base_url: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=base_url, timeout=30) as client:
        yield client


def xml_of(response: httpx.Response) -> ElementTree.Element:
    assert response.headers["content-type"] == "text/xml; charset=utf-8", response.headers
    assert response.content.startswith(b'<?xml version="1.0" encoding="UTF-8"?>')
    return ElementTree.fromstring(response.content)


def xml_problems(response: httpx.Response) -> str:
    root = xml_of(response)
    assert root.tag == "errors" and len(root), response.text
    assert all(error.findtext("code") == str(response.status_code) for error in root)
    return " | ".join(error.findtext("description") or "" for error in root)


def json_problems(response: httpx.Response) -> str:
    body = response.json()
    assert all(item["code"] == response.status_code for item in body), body
    return " | ".join(item["description"] for item in body)


def read_back(http: httpx.Client, request_id: str, format: str = "json") -> httpx.Response:
    def probe() -> httpx.Response | None:
        response = http.get(f"/requests/{request_id}.{format}")
        return response if response.status_code == 200 else None

    return wait_for(probe, timeout=30, what=f"ticket {request_id} readable")


def spec_form(**fields: Any) -> dict[str, Any]:
    """A POST as the spec shows it: form fields, the key as `api_key`, no `channel`."""
    return {
        "api_key": "k-test",
        "jurisdiction_id": JURISDICTION,
        "lat": "21.5942",
        "long": "105.8482",
        "address_string": "Phường Phan Đình Phùng, TP. Thái Nguyên",
        "phone": PHONE,
        **fields,
    }


def test_services_and_definitions_in_both_formats(http: httpx.Client) -> None:
    listed = xml_of(http.get("/services.xml"))
    assert listed.tag == "services"
    codes = [service.findtext("service_code") for service in listed.iter("service")]
    assert codes == [category.value for category in Category]
    metadata = {s.findtext("service_code"): s.findtext("metadata") for s in listed}
    assert metadata["chay_no"] == metadata["trat_tu_do_thi"] == "true"
    assert metadata["khac"] == "false"

    fire = http.get("/services/chay_no.json")
    assert fire.status_code == 200 and fire.headers["content-type"] == "application/json"
    trapped = fire.json()["attributes"][0]
    assert trapped["code"] == "nguoi_mac_ket" and trapped["datatype"] == "singlevaluelist"
    assert {"variable", "required", "datatype_description", "order", "description"} <= set(trapped)
    assert [value["key"] for value in trapped["values"]] == ["co", "khong", "khong_ro"]

    flood = xml_of(http.get("/services/ngap_lut_thien_tai.xml"))
    assert flood.tag == "service_definition"
    assert flood.findtext("service_code") == "ngap_lut_thien_tai"
    depth = flood.find("attributes/attribute")
    assert depth is not None and depth.findtext("datatype") == "number"
    assert flood.find("attributes/attribute/values/value/key") is not None  # the trapped list
    assert http.get("/services/khac.json").json() == {"service_code": "khac", "attributes": []}

    unknown_json = http.get("/services/potholes.json")
    assert unknown_json.status_code == 404 and "service_code" in json_problems(unknown_json)
    unknown_xml = http.get("/services/potholes.xml")
    assert unknown_xml.status_code == 404 and "not found" in xml_problems(unknown_xml)
    other_format = http.get("/services.csv")
    assert other_format.status_code == 400 and "format" in json_problems(other_format)
    no_route = http.get("/tokens/abc.xml")
    assert no_route.status_code == 404 and "Not Found" in xml_problems(no_route)


def test_discovery_in_both_formats(http: httpx.Client, base_url: str) -> None:
    document = http.get("/discovery.json").json()
    assert document["contact"] and document["key_service"] and document["changeset"]
    [endpoint] = document["endpoints"]
    assert endpoint["specification"] == "http://wiki.open311.org/GeoReport_v2"
    assert endpoint["url"] == base_url and endpoint["type"] == "production"
    assert endpoint["formats"] == ["text/xml", "application/json"]
    as_xml = xml_of(http.get("/discovery.xml"))
    assert as_xml.tag == "discovery"
    assert as_xml.findtext("endpoints/endpoint/url") == base_url
    assert [f.text for f in as_xml.iter("format")] == ["text/xml", "application/json"]


def test_another_jurisdiction_is_404_and_nothing_is_published(
    http: httpx.Client, workers: Settings
) -> None:
    before = end_offsets(workers, topics.HOTLINE_TICKETS)
    other = {"jurisdiction_id": "hanoi.gov.vn"}
    refused = [
        http.get("/services.json", params=other),
        http.get("/services/chay_no.xml", params=other),
        http.get("/requests.json", params=other),
        http.post(
            "/requests.xml",
            data=spec_form(service_code="khac", description="Hỏi thủ tục", **other),
        ),
    ]
    for response in refused:
        assert response.status_code == 404, response.text
    assert "jurisdiction_id" in xml_problems(refused[-1])
    assert http.get("/services.json", params={"jurisdiction_id": JURISDICTION}).status_code == 200
    assert end_offsets(workers, topics.HOTLINE_TICKETS) == before


def test_spec_form_post_in_xml_with_attributes_and_no_channel(
    http: httpx.Client, db: psycopg.Connection
) -> None:
    form = spec_form(
        service_code="trat_tu_do_thi",
        description=f"Quán nước lấn chiếm hết vỉa hè ({uuid.uuid4().hex[:6]})",
        **{"attribute[loai_vi_pham]": "lan_chiem", "attribute[tu_khi_nao]": "2026-11-20T08:00Z"},
    )
    created = http.post("/requests.xml", data=form)
    assert created.status_code == 201, created.text
    request = xml_of(created).find("request")
    assert request is not None and request.find("account_id") is not None
    request_id = request.findtext("service_request_id")
    assert request_id and request_id in (request.findtext("service_notice") or "")

    stored = xml_of(read_back(http, request_id, "xml")).find("request")
    assert stored is not None
    assert stored.findtext("description") == form["description"], "the citizen's words only"
    assert PHONE not in read_back(http, request_id, "xml").text
    row = db.execute(
        "SELECT channel, description, attributes FROM tickets WHERE service_request_id = %s",
        (request_id,),
    )
    assert row.fetchone() == (
        "app",
        form["description"],
        {"loai_vi_pham": ["lan_chiem"], "tu_khi_nao": ["2026-11-20T08:00:00+00:00"]},
    ), "no channel and no mapping: the citizen-app channel; the answers in their column"


def test_multivaluelist_as_repeated_form_fields_and_channel_from_the_key(
    http: httpx.Client, db: psycopg.Connection
) -> None:
    form = spec_form(
        api_key="k-zalo",
        service_code="giao_thong",
        description=BORDERLINE_COLLISION,
        **{"attribute[nguoi_bi_thuong]": "khong"},
    )
    body = list(form.items()) + [
        ("attribute[phuong_tien][]", v) for v in ("xe_tai", "xe_may", "xe_tai")
    ]
    created = http.post(
        "/requests.json",
        content=urlencode(body),
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert created.status_code == 201, created.text
    request_id = created.json()[0]["service_request_id"]
    assert read_back(http, request_id).json()[0]["description"] == BORDERLINE_COLLISION
    row = db.execute(
        "SELECT channel, attributes, urgent, priority FROM tickets WHERE service_request_id = %s",
        (request_id,),
    )
    channel, attributes, urgent, priority = row.fetchone()
    assert channel == "zalo", "open311.channels maps the zalo-oa key to zalo"
    assert attributes == {"nguoi_bi_thuong": ["khong"], "phuong_tien": ["xe_tai", "xe_may"]}
    assert urgent and priority <= 2, "answers that signal no danger never make it less urgent"

    told = http.post(
        "/requests.json",
        json={"description": "Gọi từ tổng đài", "channel": "phone"},
        headers={"X-API-Key": "k-zalo"},
    )
    assert told.status_code == 201, told.text
    told_id = told.json()[0]["service_request_id"]
    read_back(http, told_id)
    row = db.execute("SELECT channel FROM tickets WHERE service_request_id = %s", (told_id,))
    assert row.fetchone() == ("phone",), "a channel sent wins over the key's default"


def test_people_trapped_make_a_calm_report_urgent_and_staff_see_the_answers(
    http: httpx.Client, base_url: str, db: psycopg.Connection
) -> None:
    """Triage reads the calm words (not urgent); the answer "people trapped: yes" raises it."""
    form = spec_form(
        service_code="ngap_lut_thien_tai",
        description=CALM_FLOOD,
        **{"attribute[nguoi_mac_ket]": "co", "attribute[do_sau_nuoc_cm]": "40.0"},
    )
    created = http.post("/requests.json", data=form)
    assert created.status_code == 201, created.text
    request_id = created.json()[0]["service_request_id"]
    [stored] = read_back(http, request_id).json()
    assert stored["description"] == CALM_FLOOD and stored["priority"] == 2
    assert "attributes" not in stored, "GeoReport v2 has no answers in a request"

    def fused_id() -> str | None:
        row = db.execute(
            "SELECT i.fused_id FROM tickets t JOIN incidents i ON i.id = t.incident_id"
            " WHERE t.service_request_id = %s",
            (request_id,),
        ).fetchone()
        return row[0] if row else None

    incident_url = f"{base_url.removesuffix(V2)}/api/v1/incidents/{wait_for(fused_id)}"
    incident = httpx.get(incident_url, headers=STAFF)
    assert incident.status_code == 200, incident.text
    tickets = {ticket["service_request_id"]: ticket for ticket in incident.json()["tickets"]}
    assert tickets[request_id]["description"] == CALM_FLOOD
    assert tickets[request_id]["attributes"] == {"do_sau_nuoc_cm": ["40"], "nguoi_mac_ket": ["co"]}
    assert incident.json()["severity"] == "urgent", "urgent: it pages at once"


@pytest.mark.parametrize(
    ("service_code", "answers", "expected"),
    [
        ("trat_tu_do_thi", {}, "attribute[loai_vi_pham]: required"),
        ("trat_tu_do_thi", {"attribute[loai_vi_pham]": "ban_hang"}, "must be one of"),
        ("ngap_lut_thien_tai", {"attribute[do_sau_nuoc_cm]": PHONE}, "from 0 to 500"),
        ("ngap_lut_thien_tai", {"attribute[do_sau_nuoc_cm]": "sâu lắm"}, "do_sau_nuoc_cm"),
        (
            "trat_tu_do_thi",
            {"attribute[loai_vi_pham]": "khac", "attribute[tu_khi_nao]": "2026-11-20T08:00"},
            "attribute[tu_khi_nao]: needs a timezone",
        ),
        ("chay_no", {"attribute[do_sau_nuoc_cm]": "30"}, "not an attribute of service_code"),
        ("chay_no", {"attribute[nguoi_mac_ket][]": ["co", "khong"]}, "takes one value"),
        ("moi_truong", {"attribute[co_so_gay_o_nhiem]": "x" * 201}, "longer than 200"),
        (None, {"attribute[nguoi_mac_ket]": "co"}, "service_code: required"),
        ("chay_no", {"attribute[nguoi mac ket]": "co"}, "attribute[code]"),
    ],
)
def test_bad_attributes_are_400_naming_them_in_json_and_xml(
    http: httpx.Client,
    workers: Settings,
    service_code: str | None,
    answers: dict[str, Any],
    expected: str,
) -> None:
    before = end_offsets(workers, topics.HOTLINE_TICKETS)
    body = {"description": "Phản ánh", "service_code": service_code, **answers}
    sent = {key: value for key, value in body.items() if value is not None}
    as_json = http.post("/requests.json", json=sent, headers=KEY)
    assert as_json.status_code == 400, as_json.text
    assert expected in json_problems(as_json)
    as_xml = http.post("/requests.xml", json=sent, headers=KEY)
    assert as_xml.status_code == 400 and expected in xml_problems(as_xml)
    assert PHONE not in as_json.text + as_xml.text
    assert end_offsets(workers, topics.HOTLINE_TICKETS) == before


def test_photo_is_stored_and_served_to_staff_only(
    http: httpx.Client, base_url: str, db: psycopg.Connection
) -> None:
    form = spec_form(service_code="khac", description=f"Ảnh hiện trường {uuid.uuid4().hex[:6]}")
    created = http.post(
        "/requests.json", data=form, files={"media": ("anh.bin", PNG, "application/octet-stream")}
    )
    assert created.status_code == 201, created.text
    request_id = created.json()[0]["service_request_id"]
    media_url = read_back(http, request_id).json()[0]["media_url"]
    assert media_url == f"{base_url}/requests/{request_id}/media"

    assert httpx.get(media_url).status_code == 401
    assert httpx.get(media_url, headers=KEY).status_code == 401, "integration keys are not staff"
    photo = httpx.get(media_url, headers={"Authorization": "Bearer s-staff"})
    assert photo.status_code == 200 and photo.content == PNG
    assert photo.headers["content-type"] == "image/png"
    assert "no-store" in photo.headers["cache-control"]
    missing = http.get("/requests/TN-20260101-00000000/media", headers=STAFF)
    assert missing.status_code == 404
    row = db.execute(
        "SELECT media_type, length(content) FROM ticket_media WHERE service_request_id = %s",
        (request_id,),
    ).fetchone()
    assert row == ("image/png", len(PNG))
    walls = db.execute("SELECT has_table_privilege('ioc_grafana', 'ticket_media', 'SELECT')")
    assert walls.fetchone() == (False,), "photos are personal data: not for the walls"


def test_bad_photos_are_refused_with_the_reason(http: httpx.Client, workers: Settings) -> None:
    before = end_offsets(workers, topics.HOTLINE_TICKETS)
    form = spec_form(service_code="khac", description="Ảnh")
    gif_named_jpeg = http.post(
        "/requests.xml", data=form, files={"media": ("a.jpg", b"GIF89a" + bytes(32), "image/jpeg")}
    )
    assert gif_named_jpeg.status_code == 400
    assert "media: not a JPEG, PNG or WebP image" in xml_problems(gif_named_jpeg)
    too_large = http.post(
        "/requests.json",
        data=form,
        files={"media": ("a.png", PNG + bytes(MEDIA_LIMIT), "image/png")},
    )
    assert too_large.status_code == 413 and str(MEDIA_LIMIT) in json_problems(too_large)
    both = http.post(
        "/requests.json",
        data=form | {"media_url": "https://example.vn/a.png"},
        files={"media": ("a.png", PNG, "image/png")},
    )
    assert both.status_code == 400 and "media_url" in json_problems(both)
    assert end_offsets(workers, topics.HOTLINE_TICKETS) == before


def test_third_party_clients_list_submit_and_read_back(
    http: httpx.Client, base_url: str, db: psycopg.Connection
) -> None:
    """georeport 0.3.1 reads (JSON and XML); civicbot 0.4.0 builds and sends the spec's form
    POST, checking it against services and the service definition first. Neither knows
    `channel`, `priority` or our keys' header."""
    reader_json = GeoReport(base_url, jurisdiction=JURISDICTION)
    reader_xml = GeoReport(base_url, jurisdiction=JURISDICTION, output_format="xml")
    every_code = [category.value for category in Category]
    assert [s["service_code"] for s in reader_json.get_service_list()] == every_code
    assert [s["service_code"] for s in reader_xml.get_service_list()] == every_code
    definition = reader_xml.get_service_definition("trat_tu_do_thi")
    assert definition["attributes"]["attribute"][0]["required"] == "true"

    endpoint = Endpoint(id="ioc-test", name="IOC 1022", base_url=base_url, write=True)
    transport = HttpTransport(rate_limiter=RateLimiter(min_interval=0))
    writer = Open311Client(endpoint, transport, jurisdiction_id=JURISDICTION)
    description = f"Cháy bãi rác sau chợ, khói đen ({uuid.uuid4().hex[:6]})"
    sent = writer.create_request(
        "chay_no",
        dry_run=False,
        confirm="SEND",
        api_key="k-test",
        validate_remote=True,
        lat=21.5942,
        lng=105.8482,
        description=description,
        attributes={"nguoi_mac_ket": "khong", "noi_chay": "khac"},
    )
    [created] = sent.response
    request_id = created["service_request_id"]
    read_back(http, request_id)
    assert writer.get_request(request_id)["service_request_id"] == request_id
    as_json = reader_json.get_service_request(request_id)
    assert as_json["description"] == description
    as_xml = reader_xml.get_service_request(request_id)
    assert as_xml["service_request_id"] == request_id and as_xml["status"] == "open"
    listed = writer.list_requests(service_request_ids=[request_id])
    assert [item["service_request_id"] for item in listed] == [request_id]

    xml_writer = Open311Client(endpoint, transport, jurisdiction_id=JURISDICTION, fmt="xml")
    prepared = xml_writer.create_request(
        "giao_thong",
        api_key="k-test",
        lat=21.6,
        lng=105.85,
        description=f"Ổ gà lớn giữa đường ({uuid.uuid4().hex[:6]})",
        attributes={"phuong_tien": ["xe_may", "o_to"]},
    )  # civicbot parses only JSON answers: send its prepared XML request ourselves
    response = httpx.post(prepared.url, data=prepared.form)
    assert response.status_code == 201, response.text
    xml_id = xmltodict.parse(response.content)["service_requests"]["request"]["service_request_id"]
    read_back(http, xml_id)
    assert reader_xml.get_service_request(xml_id)["description"].startswith("Ổ gà lớn")
    answers = db.execute(
        "SELECT service_request_id, attributes FROM tickets WHERE service_request_id = ANY(%s)",
        ([request_id, xml_id],),
    )
    assert dict(answers.fetchall()) == {
        request_id: {"nguoi_mac_ket": ["khong"], "noi_chay": ["khac"]},
        xml_id: {"phuong_tien": ["xe_may", "o_to"]},
    }


def test_committed_openapi_document_is_current() -> None:
    assert OPENAPI_FILE.read_text(encoding="utf-8") == render(), (
        "docs/open311-openapi.json is stale: python -m ioc.api.openapi > docs/open311-openapi.json"
    )
    paths = json.loads(render())["paths"]
    assert f"{V2}/services/{{service_code}}.{{format}}" in paths


@pytest.mark.parametrize(
    ("path", "content_type"),
    [("/open311/v2/requests.xml", "text/xml"), ("/open311/v2/requests.json", "application/json")],
)
def test_every_error_is_in_the_format_the_url_asked_for(path: str, content_type: str) -> None:
    body, media_type = error_document(path, 500, ["internal error"])
    assert media_type.startswith(content_type)
    if content_type == "text/xml":
        error = ElementTree.fromstring(body).find("error")
        assert error is not None
        assert (error.findtext("code"), error.findtext("description")) == ("500", "internal error")
    else:
        assert json.loads(body) == [{"code": 500, "description": "internal error"}]
