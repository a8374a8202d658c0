"""Batches and broker notifications are judged entity by entity, and `ioc sensors check`."""

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from ioc.cli import app
from ioc.models import SensorRegistry, load_sensor_registry
from ioc.sensors.fiware import ObservationError, entity
from ioc.sensors.ngsi import judge, unwrap
from tests.conftest import TEST_REGISTRY

EXAMPLES = Path(__file__).resolve().parents[1] / "data" / "fiware"
NOW = datetime(2026, 11, 20, 8, 0, tzinfo=UTC)
MAX_FUTURE = timedelta(minutes=5)


def example(name: str) -> dict[str, Any]:
    return json.loads((EXAMPLES / name).read_text(encoding="utf-8"))


def orion_v2(entities: list[Any]) -> dict[str, Any]:
    """An Orion NGSI-v2 notification as documented (attrsFormat normalized or keyValues)."""
    return {"subscriptionId": "57458eb60962ef754e7c0998", "data": entities}


def orion_ld(entities: list[Any]) -> dict[str, Any]:
    """An NGSI-LD notification as Orion-LD sends it."""
    return {
        "id": "urn:ngsi-ld:Notification:5fd0fa684eb81930c97005f3",
        "type": "Notification",
        "subscriptionId": "urn:ngsi-ld:Subscription:5fd0f69b4eb81930c97005db",
        "notifiedAt": "2026-11-20T08:00:00.000Z",
        "data": entities,
    }


@pytest.fixture(scope="module")
def registry() -> SensorRegistry:
    return load_sensor_registry(TEST_REGISTRY)


def test_notifications_are_judged_entity_by_entity(registry: SensorRegistry) -> None:
    bad = entity("test-aq-1", "AirQualityObserved", NOW, pm25=-4)
    v2 = unwrap(
        orion_v2([example("FloodMonitoring.example-normalized.json"), bad, "not an entity"])
    )
    judged = judge(v2, registry, NOW, MAX_FUTURE)
    assert v2.kind == "notification"
    assert [(item.event.id if item.event else None, item.reason) for item in judged] == [
        ("in-pune-fwr013", None),
        (None, "pm25: -4 µg/m³ outside [0, 2000]"),
        (None, "(root): a JSON object is required"),
    ]
    assert judged[1].entity_id == "urn:ngsi-ld:AirQualityObserved:test-aq-1"
    ld = unwrap(
        orion_ld(
            [
                example("NoiseLevelObserved.example.jsonld"),
                example("WeatherObserved.example-normalized.jsonld"),
            ]
        )
    )
    assert [item.event.id for item in judge(ld, registry, NOW, MAX_FUTURE) if item.event] == [
        "es-vitoria-noise",
        "es-valladolid-weather",
    ]


def test_a_device_clock_ahead_is_a_reason(registry: SensorRegistry) -> None:
    ahead = entity("test-wl-1", "FloodMonitoring", NOW + timedelta(hours=1), currentLevel=1.0)
    (judged,) = judge(unwrap(ahead), registry, NOW, MAX_FUTURE)
    assert judged.event is None and "the device clock is wrong" in (judged.reason or "")


@pytest.mark.parametrize(
    ("decoded", "kind", "count"),
    [({"id": "a"}, "entity", 1), ([{}, {}], "batch", 2), (orion_v2([]), "notification", 0)],
)
def test_payload_forms(decoded: Any, kind: str, count: int) -> None:
    payload = unwrap(decoded)
    assert (payload.kind, len(payload.entities)) == (kind, count)


def test_neither_entity_batch_nor_notification_is_refused() -> None:
    with pytest.raises(ObservationError, match="data: a notification carries a list"):
        unwrap({"subscriptionId": "s", "data": {"id": "a"}})
    with pytest.raises(ObservationError, match=r"\(root\): an entity, a list"):
        unwrap("text")


def check(*arguments: str, stdin: str | None = None) -> tuple[int, str]:
    result = CliRunner().invoke(
        app, ["sensors", "check", *arguments, "--registry", str(TEST_REGISTRY)], input=stdin
    )
    return result.exit_code, result.output


@pytest.mark.parametrize("path", sorted(EXAMPLES.glob("*.json*")), ids=lambda path: path.name)
def test_check_accepts_every_official_example(path: Path) -> None:
    code, output = check(str(path), "--json")
    (line,) = [json.loads(text) for text in output.splitlines()]
    assert code == 0 and line["accepted"] is True and line["reason"] is None
    assert line["id"] == example(path.name)["id"]
    assert line["sensor"] in {
        "es-madrid-aq-28079004",
        "in-pune-fwr013",
        "es-vitoria-noise",
        "es-valladolid-traffic-60821110",
        "es-valladolid-weather",
    }


def test_check_reports_values_warnings_and_reasons_per_entity() -> None:
    notification = orion_v2(
        [
            example("AirQualityObserved.example-normalized.json"),
            entity("nobody", "FloodMonitoring", NOW, currentLevel=1.0),
        ]
    )
    code, output = check("-", "--json", stdin=json.dumps(notification))
    good, bad = (json.loads(text) for text in output.splitlines())
    assert code == 1
    assert good["sensor"] == "es-madrid-aq-28079004" and good["accepted"] is True
    assert good["measurements"]["co"] == pytest.approx(500_000.0)
    assert good["warnings"] == ["precipitation: a boolean, not a number; dropped"]
    assert bad == {
        "id": "urn:ngsi-ld:FloodMonitoring:nobody",
        "sensor": None,
        "accepted": False,
        "reason": "id: unknown sensor id 'urn:ngsi-ld:FloodMonitoring:nobody': "
        "not in the sensor registry",
        "measurements": {},
        "warnings": [],
    }
    code, output = check("-", stdin=json.dumps(notification))  # the table
    assert code == 1 and "es-madrid-aq-28079004" in output and "rejected" in output


def test_check_fails_on_a_file_that_is_not_json(tmp_path: Path) -> None:
    path = tmp_path / "bad.json"
    path.write_text("{oops", encoding="utf-8")
    code, output = check(str(path), "--json")
    assert code == 1 and "(root): invalid JSON" in output
