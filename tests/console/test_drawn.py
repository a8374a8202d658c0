"""The incident page's map and sparklines: the points it draws and where they come from, a
sensor's readings as an SVG line, titles from citizens embedded as data and never as markup, and
the tile server the only other origin images may come from."""

from __future__ import annotations

import asyncio
import json
import random
import re
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from fastapi.testclient import TestClient

from ioc.api.app import create_app
from ioc.config import Settings
from ioc.console.drawn import polyline
from ioc.incidents.composition import FusionRules
from ioc.incidents.fusion import fuse
from ioc.models import Incident
from ioc.models.base import deterministic_id
from ioc.store.writer import Store
from tests.console.conftest import COST, PASSWORD


def test_a_polyline_runs_left_to_right_lowest_at_the_bottom() -> None:
    assert polyline([1.0, 3.0, 2.0], width=100, height=10) == "0.0,10.0 50.0,0.0 100.0,5.0"
    assert polyline([4.0, 4.0], width=10, height=10) == "0.0,5.0 10.0,5.0", "flat: the middle"
    assert polyline([7.0], width=10, height=10) == "0.0,5.0"


@pytest.fixture(scope="module")
def client(live_stack: Settings) -> Iterator[TestClient]:
    settings = Settings(
        console={
            "password_cost": COST,
            "tile_url": "https://{s}.tiles.ioc.invalid/{z}/{x}/{y}.png",
            "tile_attribution": "© bản đồ thử",
        }
    )
    with TestClient(create_app(settings)) as test_client:
        yield test_client


def water_incident(settings: Settings) -> Incident:
    """A river gauge's high water, fused alone, with an hour of rising readings."""
    tag = uuid.uuid4().hex[:8]
    now = datetime.now(UTC)
    incident = Incident(
        id=deterministic_id("inc", "drawn", tag),
        kind="water_level_high",
        severity="high",
        source="sensor",
        source_key=f"gauge-{tag}",
        title='Mực nước sông Cầu cao <script>alert("x")</script>',
        event_time=now - timedelta(minutes=10),
        ingested_at_ms=1,
        district="Phường Túc Duyên",
        lat=random.uniform(9.0, 11.0),  # far from the session's floods: fused alone
        lon=random.uniform(104.5, 106.5),
    )
    readings = [
        (incident.source_key, now - timedelta(minutes=60 - i), "waterLevel", 1.0 + i / 10)
        for i in range(60)
    ]

    async def store() -> None:
        writer = Store(settings.database.dsn, 1)
        try:
            await writer.upsert_incident(incident)
            async with writer.connection() as conn:
                async with conn.cursor() as cur:
                    await cur.executemany(
                        "INSERT INTO sensor_readings (sensor_id, observed_at, property, value,"
                        " sensor_type, ingested_at) VALUES (%s, %s, %s, %s, 'WaterQualityObserved',"
                        " now())",
                        readings,
                    )
                await fuse(conn, incident, FusionRules.load(), "drawn-test")
        finally:
            await writer.close()

    asyncio.run(store())
    return incident


@pytest.mark.integration
def test_the_incident_page_draws_its_places_and_a_sensors_readings(
    client: TestClient, live_stack: Settings, staff: str
) -> None:
    incident = water_incident(live_stack)
    client.cookies.clear()
    client.post("/console/login", data={"username": staff, "password": PASSWORD})
    answer = client.get(f"/console/incidents/{incident.id}")
    assert answer.status_code == 200
    page = answer.text

    spark = re.search(
        rf'data-sensor="{incident.source_key}" data-property="waterLevel">.*?points="([^"]+)"'
        r".*?<figcaption>(.*?)</figcaption>",
        page,
        re.S,
    )
    assert spark, "a sparkline for the gauge's water level"
    points = spark.group(1).split()
    assert len(points) == 60 and points[0] == "0.0,48.0" and points[-1] == "240.0,0.0", "rising"
    assert "waterLevel: 6.90 (min 1.00, max 6.90; 60)" in spark.group(2)

    data = re.search(r'<script type="application/json" id="map-data">(.*?)</script>', page, re.S)
    assert data
    assert "<script>" not in data.group(1), "a title cannot close the data block"
    drawn = json.loads(data.group(1))
    assert drawn["tiles"] == "https://{s}.tiles.ioc.invalid/{z}/{x}/{y}.png"
    labels = [point["label"] for point in drawn["points"]]
    assert labels == [incident.title, f"{incident.source_key}: {incident.title}"]
    assert drawn["points"][0]["lat"] == pytest.approx(incident.lat)
    policy = answer.headers["content-security-policy"]
    assert "img-src 'self' data: blob: https://*.tiles.ioc.invalid;" in policy
    assert client.get("/console/static/leaflet-1.9.4/leaflet.js").status_code == 200
    assert client.get("/console/static/map.js").status_code == 200
