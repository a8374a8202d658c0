"""The ticket page over HTTP on the real stack: hotline staff see a report's triage and what it
matched, correct it with a reason (audited by name, on the page and in the table training reads),
and a correction without a reason, without the session's token or changing nothing is refused."""

from __future__ import annotations

import re
from collections.abc import Iterator

import psycopg
import pytest
from fastapi.testclient import TestClient

from ioc.api.app import create_app
from ioc.config import Settings
from tests.console.conftest import COST, PASSWORD, reported_incident

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def client(live_stack: Settings) -> Iterator[TestClient]:
    settings = Settings(console={"password_cost": COST})
    with TestClient(create_app(settings), follow_redirects=False) as test_client:
        yield test_client


def csrf_of(html: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', html)
    assert found, html
    return found.group(1)


def test_staff_see_a_reports_triage_and_correct_it_with_a_reason(
    client: TestClient, staff: str, live_stack: Settings
) -> None:
    incident_id, ticket_id = reported_incident(
        live_stack, "Cây đổ chắn ngang đường, xe không qua được"
    )
    client.cookies.clear()
    client.post("/console/login", data={"username": staff, "password": PASSWORD})
    incident_page = client.get(f"/console/incidents/{incident_id}").text
    assert f'href="/console/tickets/{ticket_id}"' in incident_page

    page = client.get(f"/console/tickets/{ticket_id}")
    assert page.status_code == 200
    assert "Cây đổ chắn ngang đường" in page.text
    triage = page.text[page.text.index('id="triage"') : page.text.index('id="evidence"')]
    assert "Mức ưu tiên" in triage and "P" in triage
    evidence = page.text[page.text.index('id="evidence"') :]
    assert "<code>" in evidence, "what triage matched in the words"

    csrf = csrf_of(page.text)
    url = f"/console/tickets/{ticket_id}/triage"
    forged = client.post(
        url, data={"csrf": "x", "urgent": "true", "reason": "chắn lối xe cứu thương"}
    )
    assert forged.status_code == 403
    no_reason = client.post(url, data={"csrf": csrf, "urgent": "true", "reason": ""})
    assert no_reason.status_code == 400 and "reason" in no_reason.text

    done = client.post(
        url,
        data={
            "csrf": csrf,
            "category": "giao_thong",
            "urgent": "true",
            "priority": "1",
            "reason": "chắn lối xe cứu thương vào bệnh viện",
        },
    )
    assert done.status_code == 303, done.text
    after = client.get(done.headers["location"]).text
    corrections = after[after.index('id="corrections"') :]
    assert staff in corrections and "chắn lối xe cứu thương vào bệnh viện" in corrections
    assert "→ giao_thong P1 !" in corrections
    with psycopg.connect(live_stack.database.dsn) as conn:
        row = conn.execute(
            "SELECT corrected_by, to_category, to_priority, to_urgent FROM triage_corrections"
            " WHERE service_request_id = %s",
            (ticket_id,),
        ).fetchone()
    assert row == (staff, "giao_thong", 1, True), "audited where `ioc triage train` reads it"
    unchanged = client.post(url, data={"csrf": csrf, "urgent": "true", "reason": "bấm lại lần nữa"})
    assert unchanged.status_code == 409 and "Không sửa được" in unchanged.text
    assert client.get("/console/tickets/1022-khong-co").status_code == 404
