"""HTTP sensor intake through `ioc api` on the real stack: canonical units reach the database,
broker notifications and batches are taken entity by entity, bad entities are dead-lettered."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
from fastapi.testclient import TestClient

from ioc.api.app import create_app
from ioc.config import Settings
from ioc.kafka import topics
from ioc.sensors.fiware import entity
from tests.conftest import dead_letters, end_offsets, published_since, wait_for

pytestmark = pytest.mark.integration

URL = "/sensors/v1/observations"
KEY = {"X-API-Key": "k-sensors"}
EXAMPLES = Path(__file__).resolve().parents[1] / "data" / "fiware"
SENSOR_OF = {  # the official examples' models → their sensors in tests/data/sensors.toml
    "AirQualityObserved": "es-madrid-aq-28079004",
    "FloodMonitoring": "in-pune-fwr013",
    "NoiseLevelObserved": "es-vitoria-noise",
    "TrafficFlowObserved": "es-valladolid-traffic-60821110",
    "WeatherObserved": "es-valladolid-weather",
}


@pytest.fixture(scope="module")
def client(workers: Settings) -> Iterator[TestClient]:
    app = create_app(Settings(hotline={"api_keys": {"river-gauges": "k-sensors"}}))
    with TestClient(app) as test_client:
        yield test_client


def moment() -> datetime:
    """A unique observation time in the last days, so rows of this test are told apart."""
    return datetime.now(UTC) - timedelta(seconds=uuid.uuid4().int % 10**6)


def reading(db: psycopg.Connection, sensor: str, prop: str, at: datetime) -> float | None:
    row = db.execute(
        "SELECT value FROM sensor_readings"
        " WHERE sensor_id = %s AND property = %s AND observed_at = %s",
        (sensor, prop, at),
    ).fetchone()
    return row[0] if row else None


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
    assert response.status_code == 202
    assert response.json() == {"accepted": 2, "rejected": [], "warnings": []}

    def stored(sensor: str, prop: str, at: datetime) -> float:
        return wait_for(lambda: reading(db, sensor, prop, at), what=f"{sensor} reading")

    assert stored("test-wl-1", "currentLevel", first) == pytest.approx(2.5)
    assert stored("test-aq-1", "pm25", second) == pytest.approx(35.0)
    assert stored("test-wl-1", "currentLevel", second) == pytest.approx(1.75)


def example(name: str) -> dict[str, Any]:
    return json.loads((EXAMPLES / name).read_text(encoding="utf-8"))


def bad_entity(marker: str) -> dict[str, Any]:
    """A reading out of range, with a marker to find its dead letter by."""
    return entity("test-aq-1", "AirQualityObserved", moment(), pm25=-4) | {"source": marker}


def test_batches_with_no_good_entity_are_refused_with_each_reason(
    client: TestClient, settings: Settings
) -> None:
    before = end_offsets(settings, topics.SENSOR_EVENTS)
    at = moment()
    bad = [
        entity("test-aq-1", "AirQualityObserved", at, pm25=-4),
        entity("nobody", "FloodMonitoring", at, currentLevel=1.0),
        entity("test-wl-1", "FloodMonitoring", at, currentLevel={"value": 1, "unit": "km"}),
        entity("test-wl-1", "FloodMonitoring", at + timedelta(days=400), currentLevel=1.0),
    ]
    response = client.post(URL, json=bad, headers=KEY)
    assert response.status_code == 400
    reasons = " | ".join(item["description"] for item in response.json())
    assert "[0] pm25: -4 µg/m³ outside" in reasons
    assert "[1] id: unknown sensor id 'urn:ngsi-ld:FloodMonitoring:nobody'" in reasons
    assert "[2] currentLevel: unknown unit 'km'" in reasons
    assert "[3] dateObserved:" in reasons and "the device clock is wrong" in reasons
    single = client.post(URL, json=bad[0], headers=KEY)
    assert single.status_code == 400
    assert single.json()[0]["description"].startswith("pm25: -4 µg/m³ outside")
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


def test_a_mixed_batch_keeps_its_good_entities_and_dead_letters_the_bad(
    client: TestClient, settings: Settings, db: psycopg.Connection
) -> None:
    marker = f"batch-{uuid.uuid4()}"
    at = moment()
    good = entity("test-wl-1", "FloodMonitoring", at, currentLevel=1.25)
    response = client.post(URL, json=[good, bad_entity(marker)], headers=KEY)
    assert response.status_code == 202
    assert response.json() == {
        "accepted": 1,
        "rejected": [
            {
                "index": 1,
                "id": "urn:ngsi-ld:AirQualityObserved:test-aq-1",
                "reason": "pm25: -4 µg/m³ outside [0, 2000]",
            }
        ],
        "warnings": [],
    }
    assert wait_for(lambda: reading(db, "test-wl-1", "currentLevel", at)) == pytest.approx(1.25)
    (letter,) = wait_for(lambda: dead_letters(settings, marker.encode()), what="dead letter")
    assert letter.headers["reason"] == "invalid observation: pm25: -4 µg/m³ outside [0, 2000]"
    assert letter.headers["consumer"] == "ioc-api-sensors"
    assert letter.headers["source_key"] == "urn:ngsi-ld:AirQualityObserved:test-aq-1"
    assert json.loads(letter.value)["source"] == marker  # the entity as sent


@pytest.mark.parametrize(
    ("envelope", "form", "content_type"),
    [
        ("orion", "example-normalized.json", "application/json"),  # attrsFormat normalized
        ("orion", "example.json", "application/json"),  # attrsFormat keyValues
        ("orion-ld", "example-normalized.jsonld", "application/ld+json"),
        ("orion-ld", "example.jsonld", "application/ld+json"),
    ],
)
def test_broker_notifications_are_taken_entity_by_entity(
    client: TestClient,
    settings: Settings,
    db: psycopg.Connection,
    envelope: str,
    form: str,
    content_type: str,
) -> None:
    marker = f"{envelope}-{uuid.uuid4()}"
    data = [example(f"{model}.{form}") for model in SENSOR_OF]
    data.append(bad_entity(marker))
    body: dict[str, Any] = {"subscriptionId": "57458eb60962ef754e7c0998", "data": data}
    if envelope == "orion-ld":
        body = {
            "id": f"urn:ngsi-ld:Notification:{uuid.uuid4()}",
            "type": "Notification",
            "subscriptionId": "urn:ngsi-ld:Subscription:ioc",
            "notifiedAt": datetime.now(UTC).isoformat(),
        } | body
    before = end_offsets(settings, topics.SENSOR_EVENTS)
    response = client.post(
        URL, content=json.dumps(body).encode(), headers=KEY | {"content-type": content_type}
    )
    assert response.status_code == 202
    answer = response.json()
    assert answer["accepted"] == 5
    assert [(item["index"], item["reason"]) for item in answer["rejected"]] == [
        (5, "pm25: -4 µg/m³ outside [0, 2000]")
    ]
    published = published_since(settings, topics.SENSOR_EVENTS, before)
    assert sorted((r.key.decode(), json.loads(r.value)) for r in published) == sorted(
        (SENSOR_OF[item["type"]], item) for item in data[:5]
    ), "each accepted entity as sent, keyed by the sensor its id resolves to"
    # The stream agent resolves the ids as the intake did (LAeq is the same in every form).
    observed = datetime(2016, 12, 28, 12, tzinfo=UTC)
    assert wait_for(
        lambda: reading(db, "es-vitoria-noise", "LAeq", observed), what="noise reading"
    ) == pytest.approx(67.8)
    (letter,) = wait_for(lambda: dead_letters(settings, marker.encode()), what="dead letter")
    assert letter.headers["reason"] == "invalid observation: pm25: -4 µg/m³ outside [0, 2000]"
