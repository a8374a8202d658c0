"""HTTP sensor intake through `ioc api` on the real stack: canonical units reach the database."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import psycopg
import pytest
from fastapi.testclient import TestClient

from ioc import topics
from ioc.api import create_app
from ioc.config import Settings
from ioc.sensors.fiware import entity
from tests.conftest import end_offsets, published_since, wait_for

pytestmark = pytest.mark.integration

URL = "/sensors/v1/observations"
KEY = {"X-API-Key": "k-sensors"}


@pytest.fixture(scope="module")
def client(workers: Settings) -> Iterator[TestClient]:
    app = create_app(Settings(hotline={"api_keys": {"river-gauges": "k-sensors"}}))
    with TestClient(app) as test_client:
        yield test_client


def moment() -> datetime:
    """A unique observation time in the last days, so rows of this test are told apart."""
    return datetime.now(UTC) - timedelta(seconds=uuid.uuid4().int % 10**6)


def test_single_and_batch_observations_are_stored_in_canonical_units(
    client: TestClient, db: psycopg.Connection
) -> None:
    first, second = moment(), moment()
    one = entity(
        "test-wl-1", "FloodMonitoring", first, currentLevel={"value": 250, "unitCode": "CMT"}
    )
    assert client.post(URL, json=one, headers=KEY).status_code == 202
    batch = [
        entity("test-aq-1", "AirQualityObserved", second, pm25={"value": 0.035, "unit": "mg/m³"}),
        entity("test-wl-1", "FloodMonitoring", second, currentLevel=1.75),
    ]
    response = client.post(URL, json=batch, headers=KEY)
    assert response.status_code == 202 and response.json() == {"accepted": 2}

    def value(sensor: str, at: datetime) -> float | None:
        row = db.execute(
            "SELECT value FROM sensor_readings WHERE sensor_id = %s AND observed_at = %s",
            (sensor, at),
        ).fetchone()
        return row[0] if row else None

    assert wait_for(lambda: value("test-wl-1", first), what="reading") == pytest.approx(2.5)
    assert wait_for(lambda: value("test-aq-1", second), what="reading") == pytest.approx(35.0)
    assert wait_for(lambda: value("test-wl-1", second), what="reading") == pytest.approx(1.75)


def test_bad_batches_are_refused_whole_with_each_reason(
    client: TestClient, settings: Settings
) -> None:
    before = end_offsets(settings, topics.SENSOR_EVENTS)
    at = moment()
    bad = [
        entity("test-wl-1", "FloodMonitoring", at, currentLevel=2.0),
        entity("test-aq-1", "AirQualityObserved", at, pm25=-4),
        entity("nobody", "FloodMonitoring", at, currentLevel=1.0),
        entity("test-wl-1", "FloodMonitoring", at, currentLevel={"value": 1, "unit": "km"}),
        entity("test-wl-1", "FloodMonitoring", at + timedelta(days=400), currentLevel=1.0),
    ]
    response = client.post(URL, json=bad, headers=KEY)
    assert response.status_code == 400
    reasons = " | ".join(item["description"] for item in response.json())
    assert "[1] pm25: -4 µg/m³ outside" in reasons
    assert "[2] id: unknown sensor 'nobody'" in reasons
    assert "[3] currentLevel: unknown unit 'km'" in reasons
    assert "[4] dateObserved:" in reasons and "the device clock is wrong" in reasons
    assert client.post(URL, json=bad[0]).status_code == 401
    assert (
        client.post(
            URL, content=b"{oops", headers=KEY | {"content-type": "application/json"}
        ).status_code
        == 400
    )
    assert published_since(settings, topics.SENSOR_EVENTS, before) == [], (
        "nothing of a refused batch is published (clock ticks aside)"
    )
