"""The on-call pager on a database of its own with real servers: the person on duty is paged
through their first contact, and through the second when the first fails (both on the console);
a role nobody holds shows as such; a page is sent once, and an acknowledgement ends the chain."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from fastapi.testclient import TestClient

from ioc.api.app import create_app
from ioc.config import NotifySettings, Settings
from ioc.console import accounts
from ioc.console.accounts import Role
from ioc.console.links import LinkMaker
from ioc.dispatch.pager import OnCallPager
from ioc.dispatch.roster import Roster
from ioc.incidents import lifecycle
from ioc.notify.channels import configured
from tests.conftest import migrated_database, wait_for
from tests.console.conftest import COST, PASSWORD, camera_fire
from tests.gateway import Gateway
from tests.smtp import SmtpSink

pytestmark = pytest.mark.integration
LINKS = {
    "console": {"link_key": "pager-test-" + "k" * 32},
    "alerts": {"api_url": "https://ioc.example"},
}


def roster_text(email: str) -> str:
    return f"""
version = 1
[roles.duty_desk]
name = "Trực ban 1022"
[roles.supervisor]
name = "Giám sát ca"
[people.lan]
name = "Nguyễn Thị Lan"
contacts = ["sms:0912000001", "email:{email}"]
[people.minh]
name = "Trần Văn Minh"
contacts = ["email:minh@ioc.invalid"]
[[shifts]]
role = "duty_desk"
person = "lan"
start = "00:00"
end = "00:00"
[[shifts]]
role = "supervisor"
person = "minh"
days = []
start = "00:00"
end = "00:00"
[chains.urgent]
steps = [{{ role = "duty_desk", after_minutes = 0 }}, {{ role = "supervisor", after_minutes = 0 }}]
"""


@pytest.fixture(scope="module")
def dsn(live_stack: Settings) -> str:
    return migrated_database(live_stack, "pager")


@pytest.fixture
def smtp() -> Iterator[SmtpSink]:
    sink = SmtpSink()
    yield sink
    sink.close()


@pytest.fixture
def gateway() -> Iterator[Gateway]:
    served = Gateway()
    served.reply = (503, {})  # the SMS gateway is down
    yield served
    served.close()


def pass_once(dsn: str, pager: OnCallPager) -> Any:
    async def main() -> Any:
        async with await psycopg.AsyncConnection.connect(dsn) as conn:
            return await pager.run_once(conn)

    return asyncio.run(main())


def test_the_person_on_duty_is_paged_through_the_second_channel_when_the_first_fails(
    dsn: str, smtp: SmtpSink, gateway: Gateway, tmp_path: Path
) -> None:
    email = f"lan.{uuid.uuid4().hex[:6]}@ioc.invalid"
    (tmp_path / "roster.toml").write_text(roster_text(email))
    roster = Roster.load(tmp_path / "roster.toml")
    notify = NotifySettings(
        sms_url=gateway.url, smtp_host="127.0.0.1", smtp_port=smtp.port, smtp_starttls=False
    )
    own = Settings(database={"dsn": dsn}, **LINKS)
    pager = OnCallPager(roster, configured(notify), LinkMaker(own))
    fire = camera_fire(own, f"Cháy chợ Đồng Quang {uuid.uuid4().hex[:6]}")

    summary = pass_once(dsn, pager)
    assert (summary.delivered, summary.failed) == (1, 1)
    assert len(gateway.posts) == 1 and gateway.posts[0][1]["to"] == "84912000001"
    (mail,) = wait_for(lambda: smtp.to(email), 10, "the page by e-mail")
    assert mail.subject.startswith(f"[KHẨN] {fire.title}")
    assert "Trực ban 1022: Cháy" in mail.text()
    assert "https://ioc.example/console/a/" in mail.text(), "one tap acknowledges"
    with psycopg.connect(dsn) as conn:
        rows = conn.execute(
            "SELECT person, channel, ok, error FROM oncall_pages WHERE incident_id = %s"
            " ORDER BY at",
            (fire.id,),
        ).fetchall()
    assert rows == [
        ("lan", "sms", False, "sms: HTTP 503"),
        ("lan", "email", True, None),
        ("—", "none", False, "không ai trực Giám sát ca"),
    ]
    assert pass_once(dsn, pager).delivered == 0, "a page is sent once"
    assert len(smtp.to(email)) == 1

    # Staff see who was paged, how, and what failed, on the incident's page.
    staff = f"op.{uuid.uuid4().hex[:6]}"

    async def add_staff() -> None:
        async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
            await accounts.create(conn, staff, "Lê Văn An", Role.OPERATOR, PASSWORD, COST)

    asyncio.run(add_staff())
    settings = Settings(
        database={"dsn": dsn},
        oncall={"roster": tmp_path / "roster.toml"},
        console={"password_cost": COST},
    )
    with TestClient(create_app(settings)) as client:
        signed_in = client.post(
            "/console/login", data={"username": staff, "password": PASSWORD, "next": "/console/"}
        )
        assert signed_in.status_code == 200, signed_in.text
        page = client.get(f"/console/incidents/{fire.id}").text
    assert "Báo động trực" in page
    assert "Nguyễn Thị Lan" in page and "lỗi: sms: HTTP 503" in page
    assert "không ai trực Giám sát ca" in page
    assert email not in page and "0912000001" not in page

    async def acknowledge() -> None:
        async with await psycopg.AsyncConnection.connect(dsn) as conn:
            await lifecycle.change_status(conn, fire.id, "ack", staff, None)

    asyncio.run(acknowledge())
    assert pass_once(dsn, pager).delivered == 0, "acknowledged: the chain stops"
