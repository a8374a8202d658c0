"""Vietnamese first, English on request: every Vietnamese text a template or a refusal passes
through the translator has its English, and a reader who picks English keeps it page to page."""

from __future__ import annotations

import asyncio
import re
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from fastapi.testclient import TestClient

import ioc.console.links as console_links
import ioc.console.tickets as console_tickets
import ioc.console.web as console_web
from ioc.api.app import create_app
from ioc.config import Settings
from ioc.console import accounts
from ioc.console.accounts import Role
from ioc.console.i18n import EN, translator
from ioc.console.web import SEVERITY_VI, STATUS_VI
from tests.console.conftest import COST, PASSWORD, camera_fire, reported_incident

TEMPLATES = Path(console_web.__file__).resolve().parent / "templates"
# `_("…")` in a template, and a Vietnamese literal handed to `_` through a list or a mapping.
CALL = re.compile(r"""_\(\s*(["'])(.+?)\1""")
VIETNAMESE_LITERAL = re.compile(r"""(["'])([^"'{}<>]*[À-ỹĐđ][^"'{}<>]*)\1""")
REFUSAL = re.compile(r"""(?:Refused\(\d+, |words\(request\)\(|"error": )"([^"]+)\"""")


def template_texts() -> set[str]:
    texts = set()
    for template in TEMPLATES.glob("*.html"):
        source = template.read_text()
        texts |= {match.group(2) for match in CALL.finditer(source)}
        for expression in re.findall(r"\{[{%](.*?)[%}]\}", source, re.S):
            texts |= {match.group(2) for match in VIETNAMESE_LITERAL.finditer(expression)}
    return texts


def test_every_vietnamese_text_of_the_console_has_its_english() -> None:
    texts = template_texts() | set(SEVERITY_VI.values()) | set(STATUS_VI.values())
    for module in (console_web, console_links, console_tickets):
        texts |= set(REFUSAL.findall(Path(module.__file__).read_text()))
    texts |= set(console_web.templates.env.globals["notice_vi"].values())
    assert len(texts) > 60, "the scan finds the texts"
    assert sorted(texts - set(EN)) == []


def test_placeholders_are_filled_in_either_language() -> None:
    assert translator("vi")("Không có sự cố {id}.", id="inc-1") == "Không có sự cố inc-1."
    assert translator("en")("Không có sự cố {id}.", id="inc-1") == "No incident inc-1."
    assert translator("en")("văn bản chưa dịch") == "văn bản chưa dịch", "unknown: as written"


@pytest.fixture(scope="module")
def client(live_stack: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(Settings(console={"password_cost": COST}))) as test_client:
        yield test_client


def member(settings: Settings, role: Role) -> str:
    """A new member of staff with this role (password `PASSWORD`)."""
    name = f"{role.value[:3]}.{uuid.uuid4().hex[:6]}"

    async def create() -> None:
        async with await psycopg.AsyncConnection.connect(
            settings.database.dsn, autocommit=True
        ) as conn:
            await accounts.create(conn, name, "Phạm Thu Hà", role, PASSWORD, COST)

    asyncio.run(create())
    return name


def sign_in(client: TestClient, name: str) -> None:
    client.cookies.clear()
    answer = client.post("/console/login", data={"username": name, "password": PASSWORD})
    assert answer.status_code == 200, answer.text


@pytest.mark.integration
def test_a_reader_who_picks_english_reads_english_until_switching_back(
    client: TestClient, live_stack: Settings
) -> None:
    client.cookies.clear()
    login = client.get("/console/login?lang=en")
    assert '<html lang="en">' in login.text and "Sign in" in login.text
    assert "Đăng nhập" not in login.text
    sign_in(client, member(live_stack, Role.OPERATOR))
    client.cookies.set("ioc_lang", "en", path="/console")
    fire = camera_fire(live_stack, f"Cháy xưởng gỗ {uuid.uuid4().hex[:6]}")
    queue = client.get("/console/").text
    assert "Open incidents" in queue and "Urgent" in queue and "Fire" in queue
    assert fire.title in queue, "what people wrote stays as written"
    page = client.get(f"/console/incidents/{fire.id}").text
    assert "Acknowledge" in page and "Assign unit" in page and "History" in page
    missing = client.get("/console/incidents/inc-nowhere").text
    assert "No incident inc-nowhere." in missing
    back = client.get("/console/?lang=vi")
    assert "Sự cố đang mở" in back.text and "Khẩn cấp" in back.text
    assert "English" in back.text, "the switch to English is offered"


@pytest.mark.integration
def test_only_supervisors_see_reporters_contacts(client: TestClient, live_stack: Settings) -> None:
    incident_id, _ = reported_incident(live_stack)
    sign_in(client, member(live_stack, Role.OPERATOR))
    operator_view = client.get(f"/console/incidents/{incident_id}?lang=vi").text
    assert "Người phản ánh" not in operator_view and "09******78" not in operator_view
    sign_in(client, member(live_stack, Role.SUPERVISOR))
    supervisor_view = client.get(f"/console/incidents/{incident_id}?lang=vi").text
    assert "Người phản ánh" in supervisor_view and "09******78" in supervisor_view
    assert "0912345678" not in supervisor_view, "masked at intake: nobody sees the number"
