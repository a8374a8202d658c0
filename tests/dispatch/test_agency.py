"""Open311's `agency_responsible`: a report's incident, once given to a unit, names that unit in
GET /requests (JSON and the spec's XML); before, the field is empty."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from xml.etree import ElementTree

import psycopg
import pytest
from fastapi.testclient import TestClient

from ioc.api.app import create_app
from ioc.config import Settings
from ioc.incidents import lifecycle
from tests.console.conftest import camera_fire

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def client(live_stack: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(Settings())) as test_client:
        yield test_client


def test_a_report_names_the_unit_its_incident_is_given_to(
    client: TestClient, live_stack: Settings
) -> None:
    fire = camera_fire(live_stack, f"Cháy nhà kho {uuid.uuid4().hex[:6]}")
    ticket = f"TN-agency-{uuid.uuid4().hex[:8]}"
    dsn = live_stack.database.dsn
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO tickets (service_request_id, requested_at, channel, description,"
            " urgent, ingested_at, category, incident_id)"
            " VALUES (%s, now(), 'phone', 'Cháy ở kho', true, now(), 'chay_no', %s)",
            (ticket, fire.id),
        )
    path = f"/open311/v2/requests/{ticket}"
    assert client.get(f"{path}.json").json()[0]["agency_responsible"] is None

    async def give() -> None:
        async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
            await lifecycle.assign(conn, fire.id, "pccc", "lan.nguyen", None)

    asyncio.run(give())
    name = "Phòng Cảnh sát PCCC và CNCH, Công an tỉnh Thái Nguyên"
    assert client.get(f"{path}.json").json()[0]["agency_responsible"] == name
    xml = ElementTree.fromstring(client.get(f"{path}.xml").content)
    assert xml.findtext("request/agency_responsible") == name
