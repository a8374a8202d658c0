"""Candidates through the running workers' fusion, the alert service and a real Alertmanager to a
real webhook receiver and SMTP server: one notification per merged incident, none after the
acknowledgement, a resolved one at the end."""

from __future__ import annotations

import asyncio
import random
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest
import yaml

from ioc.alerts.alertmanager import AlertmanagerClient
from ioc.alerts.consumer import AlertConsumer
from ioc.config import Settings
from ioc.devtools.stack.alertmanager import AlertmanagerService
from ioc.incidents import lifecycle
from ioc.kafka import topics
from ioc.models import FusedIncident, Incident
from ioc.models.base import deterministic_id, utc_now
from ioc.store.writer import Store
from tests.alerts.conftest import (
    SHIPPED_CONFIG,
    WebhookSink,
    alertmanager_missing,
    config_for_tests,
    start_alertmanager,
)
from tests.conftest import CONSOLE_URL, wait_for
from tests.smtp import SmtpSink

pytestmark = pytest.mark.integration
GROUP_WAIT_S = 3  # long enough for the three candidates to be fused before the first page


@pytest.fixture(scope="module")
def paging_alertmanager(
    tmp_path_factory: pytest.TempPathFactory, webhook_sink: WebhookSink, smtp_sink: SmtpSink
) -> Iterator[AlertmanagerService]:
    if (reason := alertmanager_missing()) is not None:
        pytest.skip(reason)
    home = tmp_path_factory.mktemp("am-delivery")
    config = config_for_tests(
        yaml.safe_load(SHIPPED_CONFIG.read_text()), webhook_sink.url, smtp_sink.smarthost
    )
    for route in config["route"]["routes"]:
        if route.get("receiver") == "hotline-duty":
            route["group_wait"] = f"{GROUP_WAIT_S}s"
    (home / "alertmanager.yml").write_text(yaml.safe_dump(config, allow_unicode=True))
    service = start_alertmanager(home, home / "alertmanager.yml")
    yield service
    service.down()


@pytest.fixture(scope="module")
def alert_service(
    workers: Settings, paging_alertmanager: AlertmanagerService
) -> Iterator[Settings]:
    """The alert service, delivering through Alertmanager, in a thread of this process."""
    settings = workers.model_copy(
        update={
            "alerts": workers.alerts.model_copy(
                update={
                    "alertmanager_url": paging_alertmanager.url,
                    "group_id": f"ioc-alerts-am-{random.getrandbits(32):x}",
                }
            )
        }
    )
    loop = asyncio.new_event_loop()
    stop = asyncio.Event()

    async def serve() -> None:
        await AlertConsumer(settings).run(stop)

    thread = threading.Thread(target=loop.run_until_complete, args=(serve(),))
    thread.start()
    yield settings
    loop.call_soon_threadsafe(stop.set)
    thread.join(30)


def candidate(tag: str, name: str, source: str, kind: str, severity: str, **extra: Any) -> Incident:
    return Incident(
        id=deterministic_id("inc", tag, name),
        kind=kind,
        severity=severity,
        source=source,
        source_key=f"{name}-{tag}",
        title=f"Cháy thử nghiệm ({name})",
        event_time=utc_now() - timedelta(minutes=1),
        ingested_at_ms=int(datetime.now(UTC).timestamp() * 1000),
        district="Phường Thử Nghiệm",
        lat=11.0 + random.random(),
        lon=101.0,
        **extra,
    )


def publish(settings: Settings, producer: Any, incidents: list[Incident]) -> None:
    """As a source agent does: the row first, then the candidate message."""

    async def store() -> None:
        writer = Store(settings.database.dsn, 1)
        try:
            for incident in incidents:
                await writer.upsert_incident(incident)
        finally:
            await writer.close()

    asyncio.run(store())
    for incident in incidents:
        key = settings.fusion.region.encode()
        producer.send(topics.INCIDENT_CANDIDATES, key=key, value=incident.to_bytes()).get(30)


def act(settings: Settings, producer: Any, incident_id: str, action: str) -> FusedIncident:
    async def change() -> FusedIncident:
        async with await psycopg.AsyncConnection.connect(settings.database.dsn) as conn:
            return await lifecycle.change_status(conn, incident_id, action, "lan.nguyen", "test")

    incident = asyncio.run(change())
    producer.send(topics.INCIDENTS, key=incident.id.encode(), value=incident.to_bytes()).get(30)
    return incident


def silenced(settings: Settings, incident_id: str) -> bool:
    async def check() -> bool:
        client = AlertmanagerClient(settings.alerts.alertmanager_url or "")
        try:
            return any(
                silence["status"]["state"] == "active"
                and {"name": "incident_id", "value": incident_id}
                in [{"name": m["name"], "value": m["value"]} for m in silence["matchers"]]
                for silence in await client.silences()
            )
        finally:
            await client.close()

    return asyncio.run(check())


def test_one_page_per_merged_incident_none_after_ack_and_a_resolution(
    alert_service: Settings, producer: Any, webhook_sink: WebhookSink, smtp_sink: SmtpSink
) -> None:
    settings = alert_service
    tag = f"{random.getrandbits(40):x}"
    camera = candidate(tag, "cam", "vision", "fire", "urgent")
    lat = random.uniform(11.0, 12.0)
    camera = camera.model_copy(update={"lat": lat, "lon": 101.5})
    ticket = candidate(tag, "1022", "hotline", "fire", "urgent", reports=3)
    ticket = ticket.model_copy(update={"lat": lat + 0.0005, "lon": 101.5})
    publish(settings, producer, [camera, ticket])

    def hotline_pages() -> list[Any]:
        return [n for n in webhook_sink.about(camera.id, "/hotline") if n.payload["alerts"]]

    pages = wait_for(lambda: hotline_pages() or None, 60, "the hotline duty page")
    firing = [a for a in pages[0].payload["alerts"] if a["status"] == "firing"]
    assert [a["labels"]["sources"] for a in firing] == ["2"], "the camera and the 1022 reports"
    assert firing[0]["labels"]["kind"] == "fire" and firing[0]["labels"]["severity"] == "urgent"
    assert "KHẨN" in firing[0]["annotations"]["summary_vi"]
    (mail,) = wait_for(lambda: smtp_sink.about(camera.id) or None, 30, "the hotline duty e-mail")
    assert f"Nhận sự cố / acknowledge: {CONSOLE_URL}/console/a/" in mail.text(), "one tap acks"

    act(settings, producer, camera.id, "ack")
    wait_for(lambda: silenced(settings, camera.id) or None, 30, "the acknowledgement's silence")
    smoke = candidate(tag, "pm25", "sensor", "air_quality_poor", "high")
    publish(settings, producer, [smoke.model_copy(update={"lat": lat - 0.0005, "lon": 101.5})])

    def joined() -> bool:
        with psycopg.connect(settings.database.dsn) as conn:
            row = conn.execute(
                "SELECT sources FROM fused_incidents WHERE id = %s", (camera.id,)
            ).fetchone()
        return bool(row and row[0] == 3)

    wait_for(joined, 30, "the smoke sensor joining the incident")
    asyncio.run(asyncio.sleep(GROUP_WAIT_S + 3))
    assert len(hotline_pages()) == 1, "nobody is paged again once someone acknowledged"
    assert len(smtp_sink.about(camera.id)) == 1

    act(settings, producer, camera.id, "resolve")
    resolved = wait_for(
        lambda: [n for n in hotline_pages() if n.payload["status"] == "resolved"] or None,
        60,
        "the resolved notification",
    )
    assert len(resolved) == 1 and len(hotline_pages()) == 2
    with psycopg.connect(settings.database.dsn) as conn:
        sent = conn.execute(
            "SELECT notification FROM alerts WHERE incident_id = %s AND channel = 'alertmanager'"
            " AND ok ORDER BY notification",
            (camera.id,),
        ).fetchall()
    assert sent == [("firing",), ("resolved",)]
    assert not silenced(settings, camera.id), "the silence ends with the incident"
