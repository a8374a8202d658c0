"""The console's pages over HTTP on the real stack: sign-in, the queue, an incident page and its
actions, CSRF, and what a missing or expired session gets. (The browser tests drive the same
pages in Chromium.)"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import psycopg
import pytest
from fastapi.testclient import TestClient

from ioc.api.app import create_app
from ioc.config import Settings
from ioc.console import links
from ioc.console.links import LinkClaim, LinkMaker
from ioc.models import Incident
from tests.console.conftest import COST, PASSWORD, camera_fire

pytestmark = pytest.mark.integration
LINK_KEY = "console-test-" + "k" * 32


def linked() -> Settings:
    """The session's settings (read once its stack is up), with links signed and a fast hash."""
    return Settings(
        console={"password_cost": COST, "link_key": LINK_KEY},
        alerts={"api_url": "https://ioc.example"},
    )


@pytest.fixture(scope="module")
def app_client(live_stack: Settings) -> Iterator[TestClient]:
    app = create_app(linked())
    with TestClient(app, follow_redirects=False) as client:
        yield client


@pytest.fixture
def client(app_client: TestClient) -> TestClient:
    app_client.cookies.clear()
    return app_client


def sign_in(client: TestClient, name: str, password: str = PASSWORD) -> None:
    response = client.post(
        "/console/login", data={"username": name, "password": password, "next": "/console/"}
    )
    assert response.status_code == 303, response.text


def csrf_of(html: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', html)
    assert found, html
    return found.group(1)


@pytest.fixture
def fire(live_stack: Settings) -> Incident:
    return camera_fire(live_stack, f"Cháy kho hàng {uuid.uuid4().hex[:8]}")


def fused_id(client: TestClient, fire: Incident) -> str:
    """The fused incident the fire candidate opened (it takes the candidate's id), in the queue."""
    assert f'data-incident="{fire.id}"' in client.get("/console/queue").text
    return fire.id


def test_pages_send_a_browser_without_a_session_to_sign_in(client: TestClient) -> None:
    response = client.get("/console/")
    assert response.status_code == 303
    assert response.headers["location"] == "/console/login?next=/console/"
    refresh = client.get("/console/queue", headers={"HX-Request": "true"})
    assert refresh.status_code == 401
    assert refresh.headers["HX-Redirect"].startswith("/console/login?next=")
    assert client.get("/console/login").status_code == 200


def test_a_wrong_password_is_refused_with_a_page_and_no_session(
    client: TestClient, staff: str
) -> None:
    response = client.post("/console/login", data={"username": staff, "password": "sai rồi"})
    assert response.status_code == 401
    assert "Sai tên đăng nhập hoặc mật khẩu" in response.text
    assert "ioc_session" not in response.cookies
    assert client.get("/console/").status_code == 303


def test_sign_in_goes_only_to_console_pages(client: TestClient, staff: str) -> None:
    for target, expected in [
        ("/console/incidents/x", "/console/incidents/x"),
        ("https://evil.example/", "/console/"),
        ("//evil.example/console/", "/console/"),
    ]:
        response = client.post(
            "/console/login", data={"username": staff, "password": PASSWORD, "next": target}
        )
        assert response.headers["location"] == expected
        cookie = response.headers["set-cookie"]
        assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Path=/console" in cookie


def test_the_queue_shows_open_incidents_and_filters_by_kind(
    client: TestClient, staff: str, fire: Incident
) -> None:
    sign_in(client, staff)
    page = client.get("/console/")
    assert page.status_code == 200
    assert fire.title in page.text and "Khẩn cấp" in page.text
    assert 'hx-trigger="every 5.0s"' in page.text and "Nguyễn Thị Lan" in page.text
    assert fire.title in client.get("/console/queue?kind=fire").text
    assert fire.title not in client.get("/console/queue?kind=flood").text
    assert client.get("/console/static/htmx-2.0.4.min.js").status_code == 200


def test_acting_needs_the_sessions_csrf_token_and_is_recorded_by_name(
    client: TestClient, staff: str, fire: Incident
) -> None:
    sign_in(client, staff)
    incident_id = fused_id(client, fire)
    page = client.get(f"/console/incidents/{incident_id}")
    assert page.status_code == 200 and fire.title in page.text and "Nhận" in page.text
    forged = client.post(f"/console/incidents/{incident_id}/ack", data={"csrf": "forged"})
    assert forged.status_code == 403 and "Hãy tải lại trang" in forged.text
    missing = client.post(f"/console/incidents/{incident_id}/ack", data={})
    assert missing.status_code == 403
    assert "Mới" in client.get(f"/console/incidents/{incident_id}").text  # still open

    acked = client.post(f"/console/incidents/{incident_id}/ack", data={"csrf": csrf_of(page.text)})
    assert acked.status_code == 303
    page = client.get(acked.headers["location"])
    assert "Đã nhận" in page.text
    history = page.text[page.text.index('id="history"') :]
    assert "acknowledged" in history and staff in history
    assert f"Đã nhận · {staff}" in client.get("/console/queue").text

    csrf = csrf_of(page.text)
    done = client.post(
        f"/console/incidents/{incident_id}/false-alarm",
        data={"csrf": csrf, "reason": "Khói bếp của nhà hàng, không phải cháy"},
    )
    assert done.status_code == 303
    page = client.get(f"/console/incidents/{incident_id}")
    assert "báo nhầm" in page.text and "Khói bếp của nhà hàng" in page.text
    assert fire.title not in client.get("/console/queue").text

    twice = client.post(f"/console/incidents/{incident_id}/resolve", data={"csrf": csrf})
    assert twice.status_code == 409 and "Không thực hiện được" in twice.text
    reopened = client.post(f"/console/incidents/{incident_id}/reopen", data={"csrf": csrf})
    assert reopened.status_code == 303
    assert fire.title in client.get("/console/queue").text


def test_an_unknown_incident_or_action_gets_a_page_saying_so(
    client: TestClient, staff: str, fire: Incident
) -> None:
    sign_in(client, staff)
    missing = client.get("/console/incidents/inc-khong-co")
    assert missing.status_code == 404 and "Không có sự cố inc-khong-co" in missing.text
    incident_id = fused_id(client, fire)
    csrf = csrf_of(client.get(f"/console/incidents/{incident_id}").text)
    wrong = client.post(f"/console/incidents/{incident_id}/explode", data={"csrf": csrf})
    assert wrong.status_code == 404 and "Không có thao tác explode" in wrong.text


def test_signing_out_ends_the_session(client: TestClient, staff: str) -> None:
    sign_in(client, staff)
    page = client.get("/console/")
    token = client.cookies.get("ioc_session")
    out = client.post("/console/logout", data={"csrf": csrf_of(page.text)})
    assert out.status_code == 303 and out.headers["location"] == "/console/login"
    client.cookies.set("ioc_session", token or "", path="/console")
    assert client.get("/console/").status_code == 303  # the old cookie no longer works


def link_path(incident_id: str, recipient: str = "webhook") -> str:
    made = LinkMaker(linked()).link(incident_id, recipient)
    assert made is not None and made.startswith("https://ioc.example/console/a/")
    return made.removeprefix("https://ioc.example")


def test_an_alerts_link_acknowledges_once(client: TestClient, fire: Incident) -> None:
    path = link_path(fire.id)
    opened = client.get(path)
    assert opened.status_code == 200 and fire.title in opened.text and "Nhận" in opened.text
    done = client.post(path)
    assert done.status_code == 200 and "Đã nhận sự cố (webhook (liên kết))" in done.text
    replayed = client.post(path)
    assert replayed.status_code == 409 and "đã được dùng" in replayed.text


def test_a_link_acts_as_the_signed_in_member_of_staff(
    client: TestClient, staff: str, fire: Incident
) -> None:
    sign_in(client, staff)
    done = client.post(link_path(fire.id))
    assert done.status_code == 200 and f"Đã nhận sự cố ({staff})" in done.text
    history = client.get(f"/console/incidents/{fire.id}").text
    assert "nhận từ liên kết trong cảnh báo" in history


def test_a_forged_or_expired_link_is_refused_with_a_page(
    client: TestClient, fire: Incident
) -> None:
    path = link_path(fire.id)
    body, _, mac = path.removeprefix("/console/a/").partition(".")
    other = link_path("inc-some-other").removeprefix("/console/a/").partition(".")[2]
    for forged in [f"{body}.{other}", f"{body}x.{mac}", "not-a-link", f"{body}."]:
        refused = client.post(f"/console/a/{forged}")
        assert refused.status_code == 403 and "Liên kết không hợp lệ" in refused.text, forged
    key = linked().console.link_key
    assert key is not None
    stale = LinkClaim(fire.id, "webhook", datetime.now(UTC) - timedelta(minutes=1), "n-stale")
    expired = client.get(f"/console/a/{links.sign(key, stale)}")
    assert expired.status_code == 410 and "Liên kết đã hết hạn" in expired.text
    assert '<strong id="status">Mới</strong>' in client.get(path).text  # nothing acted


def test_giving_an_incident_to_a_unit_and_transferring_it_is_recorded(
    client: TestClient, staff: str, fire: Incident
) -> None:
    sign_in(client, staff)
    page = client.get(f"/console/incidents/{fire.id}")
    assert "Chưa giao đơn vị" in page.text
    assert '<option value="pccc">PCCC (đề xuất)</option>' in page.text  # a fire: the fire police
    csrf = csrf_of(page.text)
    given = client.post(f"/console/incidents/{fire.id}/assign", data={"csrf": csrf, "unit": "pccc"})
    assert given.status_code == 303
    page = client.get(f"/console/incidents/{fire.id}")
    assert "Đơn vị xử lý: <strong>Phòng Cảnh sát PCCC" in page.text and "hạn" in page.text
    assert fire.title in client.get("/console/queue?unit=pccc").text
    assert fire.title not in client.get("/console/queue?unit=csgt").text

    again = client.post(f"/console/incidents/{fire.id}/assign", data={"csrf": csrf, "unit": "pccc"})
    assert again.status_code == 409 and "already with pccc" in again.text
    unknown = client.post(f"/console/incidents/{fire.id}/assign", data={"csrf": csrf, "unit": "x"})
    assert unknown.status_code == 400 and "Hãy chọn một đơn vị" in unknown.text
    moved = client.post(
        f"/console/incidents/{fire.id}/assign",
        data={"csrf": csrf, "unit": "csgt", "reason": "xe bồn cháy trên quốc lộ"},
    )
    assert moved.status_code == 303
    history = client.get(f"/console/incidents/{fire.id}").text
    history = history[history.index('id="history"') :]
    assert "assigned" in history and "transferred" in history
    assert "pccc → csgt: xe bồn cháy trên quốc lộ" in history and staff in history


def test_a_failed_delivery_shows_on_the_incident_page_with_its_reason(
    client: TestClient, staff: str, fire: Incident, live_stack: Settings
) -> None:
    sign_in(client, staff)
    incident_id = fused_id(client, fire)
    with psycopg.connect(live_stack.database.dsn, autocommit=True) as conn:
        conn.execute(  # as the alerts worker records a delivery that failed
            "INSERT INTO alerts (id, incident_id, channel, notification, delivered_at,"
            " latency_ms, ok, error) VALUES (%s, %s, 'webhook', 'firing', now(), 12, false,"
            " 'HTTPStatusError: HTTP 503')",
            (f"alert-{uuid.uuid4().hex}", incident_id),
        )
    page = client.get(f"/console/incidents/{incident_id}").text
    table = page[page.index('id="deliveries"') :]
    assert "webhook" in table and "lỗi: HTTPStatusError: HTTP 503" in table
