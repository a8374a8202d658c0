import json
from datetime import UTC, datetime

import pytest

from ioc.sensors.fiware import ObservationError, entity, parse_entity, parse_observation

WHEN = datetime(2026, 11, 20, 8, 0, tzinfo=UTC)


def test_units_are_normalised_to_one_unit_per_quantity() -> None:
    flood = parse_entity(
        entity("wl-1", "FloodMonitoring", WHEN, currentLevel={"value": 310, "unitCode": "CMT"})
    )
    assert flood.id == "wl-1" and flood.measurements == {"currentLevel": pytest.approx(3.1)}
    air = parse_entity(
        entity("aq-1", "AirQualityObserved", WHEN, pm25={"value": 0.08, "unit": "mg/m³"}, pm10=40)
    )
    assert air.measurements == {"pm25": pytest.approx(80.0), "pm10": 40.0}
    traffic = parse_entity(
        entity(
            "tf-1",
            "TrafficFlowObserved",
            WHEN,
            averageVehicleSpeed={"value": 10, "unitCode": "MTS"},
            intensity=120,
        )
    )
    assert traffic.measurements["averageVehicleSpeed"] == pytest.approx(36.0)


def test_plain_ids_and_ngsi_urns_name_the_same_sensor_and_location_is_read() -> None:
    event = parse_observation(
        json.dumps(
            {
                "id": "urn:ngsi-ld:AirQualityObserved:aq-1",
                "type": "AirQualityObserved",
                "dateObserved": WHEN.isoformat(),
                "no2": 20,
                "location": {"type": "Point", "coordinates": [105.84, 21.59]},
            }
        ).encode()
    )
    assert event.id == "aq-1" and event.location == (21.59, 105.84)


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (b"not json", "invalid JSON"),
        (b"[1, 2]", "a JSON object is required"),
        (
            json.dumps({"id": "a", "type": "Parking", "dateObserved": WHEN.isoformat()}).encode(),
            "type",
        ),
        (
            json.dumps(entity("a", "AirQualityObserved", WHEN, pm25=-3)).encode(),
            "pm25: -3 µg/m³ outside",
        ),
        (
            json.dumps(entity("a", "FloodMonitoring", WHEN, currentLevel=1000)).encode(),
            "currentLevel: 1000 m outside",
        ),
        (
            json.dumps(
                entity("a", "FloodMonitoring", WHEN, currentLevel={"value": 1, "unit": "km"})
            ).encode(),
            "unknown unit 'km'",
        ),
        (
            json.dumps(entity("a", "AirQualityObserved", WHEN, pm25="high")).encode(),
            "not a finite number",
        ),
        (json.dumps(entity("a", "AirQualityObserved", WHEN)).encode(), "no measured attribute"),
        (
            json.dumps(
                entity("a", "AirQualityObserved", WHEN, pm25=5) | {"dateObserved": "yesterday"}
            ).encode(),
            "dateObserved",
        ),
        (
            json.dumps(
                entity("a", "AirQualityObserved", WHEN, pm25=5)
                | {"location": {"type": "Point", "coordinates": [500, 21]}}
            ).encode(),
            "location",
        ),
    ],
    ids=["json", "array", "type", "negative", "1km", "unit", "text", "empty", "time", "location"],
)
def test_bad_observations_are_rejected_with_the_attribute_named(
    payload: bytes, reason: str
) -> None:
    with pytest.raises(ObservationError, match=reason.replace("(", r"\(")):
        parse_observation(payload)
