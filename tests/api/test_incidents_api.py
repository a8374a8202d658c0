"""The staff incidents API on the real stack: keys say who acts, changes are recorded and
published, wrong moves get a 4xx with the reason."""

from __future__ import annotations

import asyncio
import json
import os
import random
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient

from ioc.api.app import create_app
from ioc.config import Settings
from ioc.incidents.composition import FusionRules
from ioc.incidents.fusion import fuse
from ioc.models import Incident
from ioc.models.base import deterministic_id
from ioc.store.writer import Store

KEYS = {"lan.nguyen": "k-lan", "minh.tran": "k-minh"}


@pytest.fixture(scope="module")
def client(workers: Settings) -> Iterator[TestClient]:
    app = create_app(Settings(alerts={"staff_keys": KEYS}))
    with TestClient(app) as test_client:
        yield test_client


@pytest.fixture
def incident_id(live_stack: Settings) -> str:
    """A fresh fire incident of its own, fused as the streams agent would."""
    tag = f"{random.getrandbits(40):x}"
    fire = Incident(
        id=deterministic_id("inc", "api", tag),
        kind="fire",
        severity="urgent",
        source="vision",
        source_key=f"cam-{tag}",
        title="Cháy kho hàng",
        event_time=datetime(2021, 1, 1, tzinfo=UTC) + timedelta(hours=random.randint(0, 9999)),
        ingested_at_ms=1,
        district="Phường Thử Nghiệm",
        lat=random.uniform(10, 20),
        lon=random.uniform(100, 110),
    )

    async def store() -> None:
        writer = Store(live_stack.database.dsn, 1)
        try:
            await writer.upsert_incident(fire)
            async with writer.connection() as conn:
                await fuse(conn, fire, FusionRules.load(), "api-test")
        finally:
            await writer.close()

    asyncio.run(store())
    return fire.id


def test_every_call_needs_a_staff_key(client: TestClient, incident_id: str) -> None:
    for method, path in [("GET", ""), ("GET", f"/{incident_id}"), ("POST", f"/{incident_id}/ack")]:
        response = client.request(method, f"/api/v1/incidents{path}")
        assert response.status_code == 401, path
        response = client.request(
            method, f"/api/v1/incidents{path}", headers={"X-API-Key": "k-wrong"}
        )
        assert response.status_code == 401, path


def test_staff_acknowledge_and_resolve_and_the_history_says_who(
    client: TestClient, incident_id: str
) -> None:
    lan = {"X-API-Key": "k-lan"}
    listed = client.get("/api/v1/incidents", headers=lan, params={"limit": 1000}).json()
    assert incident_id in {incident["id"] for incident in listed}

    acked = client.post(
        f"/api/v1/incidents/{incident_id}/ack", headers=lan, json={"reason": "đang xử lý"}
    )
    assert acked.status_code == 200, acked.text
    assert (acked.json()["status"], acked.json()["acknowledged_by"]) == (
        "acknowledged",
        "lan.nguyen",
    )

    again = client.post(f"/api/v1/incidents/{incident_id}/ack", headers=lan)
    assert again.status_code == 409 and "not open" in again.text

    minh = {"Authorization": "Bearer k-minh"}
    resolved = client.post(f"/api/v1/incidents/{incident_id}/resolve", headers=minh)
    assert (resolved.status_code, resolved.json()["resolved_by"]) == (200, "minh.tran")

    shown = client.get(f"/api/v1/incidents/{incident_id}", headers=lan).json()
    assert [(h["change"], h["actor"], h["reason"]) for h in shown["history"]] == [
        ("opened", "ioc", None),
        ("acknowledged", "lan.nguyen", "đang xử lý"),
        ("resolved", "minh.tran", None),
    ]
    still_open = client.get("/api/v1/incidents", headers=lan, params={"limit": 1000}).json()
    assert incident_id not in {incident["id"] for incident in still_open}


def test_a_false_alarm_is_a_typed_resolution_that_the_camera_rule_is_judged_by(
    client: TestClient, incident_id: str, db: Any
) -> None:
    lan = {"X-API-Key": "k-lan"}
    camera = client.get(f"/api/v1/incidents/{incident_id}", headers=lan).json()["members"][0]

    def record() -> tuple[int, int, int, Any] | None:
        return db.execute(
            "SELECT confirmed, false_alarms, unjudged, precision FROM camera_rule_precision"
            " WHERE camera_id = %s AND rule = 'fire'",
            (camera["source_key"],),
        ).fetchone()

    assert record() == (0, 0, 1, None)
    false = client.post(
        f"/api/v1/incidents/{incident_id}/false-alarm", headers=lan, json={"reason": "đèn xe"}
    )
    assert false.status_code == 200, false.text
    assert (false.json()["status"], false.json()["resolution"]) == ("resolved", "false_alarm")
    assert record() == (0, 1, 0, 0)
    twice = client.post(f"/api/v1/incidents/{incident_id}/false-alarm", headers=lan)
    assert twice.status_code == 409 and "already a false alarm" in twice.text

    reopened = client.post(f"/api/v1/incidents/{incident_id}/reopen", headers=lan)
    assert reopened.json()["resolution"] is None
    handled = client.post(f"/api/v1/incidents/{incident_id}/resolve", headers=lan)
    assert handled.json()["resolution"] == "handled"
    assert record() == (1, 0, 0, 1)
    relabel = client.post(f"/api/v1/incidents/{incident_id}/false-alarm", headers=lan)
    assert relabel.status_code == 409 and "reopen it first" in relabel.text
    history = client.get(f"/api/v1/incidents/{incident_id}", headers=lan).json()["history"]
    assert [h["change"] for h in history][-3:] == ["false_alarm", "reopened", "resolved"]


def test_bad_requests_get_the_reason(client: TestClient, incident_id: str) -> None:
    lan = {"X-API-Key": "k-lan"}
    unknown = client.get("/api/v1/incidents/inc-nope", headers=lan)
    assert unknown.status_code == 404 and "inc-nope" in unknown.text
    action = client.post(f"/api/v1/incidents/{incident_id}/explode", headers=lan)
    assert action.status_code == 404 and "ack" in action.text
    body = client.post(f"/api/v1/incidents/{incident_id}/ack", headers=lan, json={"why": "typo"})
    assert body.status_code == 400 and "reason" in body.text
    status = client.get("/api/v1/incidents", headers=lan, params={"status": "burning"})
    assert status.status_code == 400


def ioc(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ioc", "incidents", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env=os.environ | {"COLUMNS": "200"},
    )


def test_the_command_line_does_the_same(incident_id: str) -> None:
    acked = ioc("ack", incident_id, "--by", "hoa.le", "--reason", "đội PCCC đã nhận")
    assert acked.returncode == 0, acked.stderr
    assert "acknowledged by hoa.le" in acked.stdout
    refused = ioc("reopen", incident_id)
    assert refused.returncode == 1 and "acknowledged" in refused.stdout
    shown = json.loads(ioc("show", incident_id, "--json").stdout)
    assert shown["status"] == "acknowledged" and shown["history"][-1]["actor"] == "hoa.le"
    listed = json.loads(ioc("list", "--status", "acknowledged", "--limit", "1000", "--json").stdout)
    assert incident_id in {incident["id"] for incident in listed}
    table = ioc("list", "--status", "acknowledged", "--limit", "1000")
    assert table.returncode == 0 and incident_id in table.stdout
    assert ioc("show", "inc-nope").returncode == 1
    false = ioc("false-alarm", incident_id, "--by", "hoa.le", "--reason", "khói bếp")
    assert false.returncode == 0, false.stderr
    shown = json.loads(ioc("show", incident_id, "--json").stdout)
    assert (shown["resolution"], shown["resolved_by"]) == ("false_alarm", "hoa.le")


def test_in_progress_and_assignment_through_the_api_with_reasons_for_bad_ones(
    client: TestClient, incident_id: str
) -> None:
    lan, minh = {"X-API-Key": "k-lan"}, {"X-API-Key": "k-minh"}
    started = client.post(f"/api/v1/incidents/{incident_id}/in-progress", headers=lan)
    assert started.status_code == 200, started.text
    body = started.json()
    assert body["status"] == "acknowledged" and body["acknowledged_by"] == "lan.nguyen"
    assert body["work_started_at"] is not None and body["change"] == "in_progress"
    again = client.post(f"/api/v1/incidents/{incident_id}/in-progress", headers=lan)
    assert again.status_code == 409 and "already in progress" in again.text

    given = client.post(
        f"/api/v1/incidents/{incident_id}/assign", headers=minh, json={"unit": "pccc"}
    )
    assert given.status_code == 200 and given.json()["unit"] == "pccc"
    moved = client.post(
        f"/api/v1/incidents/{incident_id}/assign",
        headers=minh,
        json={"unit": "ca-phan-dinh-phung", "reason": "phường xử lý"},
    )
    assert moved.status_code == 200, moved.text
    history = client.get(f"/api/v1/incidents/{incident_id}", headers=lan).json()["history"]
    assert (
        history[-1]["change"] == "transferred"
        and "pccc → ca-phan-dinh-phung" in history[-1]["reason"]
    )
    for bad, reason in [
        ({"unit": "cuu_hoa"}, "unit: one of"),
        ({}, "unit: required"),
        ({"unit": "pccc", "reason": 5}, "reason: a string"),
    ]:
        refused = client.post(f"/api/v1/incidents/{incident_id}/assign", headers=minh, json=bad)
        assert refused.status_code == 400 and reason in refused.text
    same = client.post(
        f"/api/v1/incidents/{incident_id}/assign", headers=minh, json={"unit": "ca-phan-dinh-phung"}
    )
    assert same.status_code == 409 and "already with ca-phan-dinh-phung" in same.text


def test_the_command_line_starts_work_and_assigns(incident_id: str) -> None:
    started = ioc("start", incident_id, "--by", "hoa.le")
    assert started.returncode == 0 and "in_progress by hoa.le" in started.stdout
    given = ioc("assign", incident_id, "csgt", "--by", "hoa.le", "--reason", "tắc đường")
    assert given.returncode == 0 and "assigned by hoa.le" in given.stdout, given.stderr
    unknown = ioc("assign", incident_id, "cuu-hoa")
    assert unknown.returncode == 2 and "no unit 'cuu-hoa'" in unknown.stdout
    shown = json.loads(ioc("show", incident_id, "--json").stdout)
    assert shown["unit"] == "csgt" and shown["work_started_at"] is not None
