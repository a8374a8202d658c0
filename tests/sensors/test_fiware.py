"""The FIWARE parser against the official smart-data-models examples and the NGSI forms."""

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from ioc.models import SensorRegistry, load_sensor_registry
from ioc.sensors.fiware import ObservationError, entity, parse_entity, parse_observation
from tests.conftest import TEST_REGISTRY

WHEN = datetime(2026, 11, 20, 8, 0, tzinfo=UTC)
EXAMPLES = Path(__file__).resolve().parents[1] / "data" / "fiware"
FORMS = ("example.json", "example-normalized.json", "example.jsonld", "example-normalized.jsonld")


@pytest.fixture(scope="module")
def registry() -> SensorRegistry:
    return load_sensor_registry(TEST_REGISTRY)


def example(name: str) -> dict[str, Any]:
    return json.loads((EXAMPLES / name).read_text(encoding="utf-8"))


AQ = {"temperature": 12.2, "relativeHumidity": 0.54, "windSpeed": 0.64, "so2": 11.0}
WEATHER = {"temperature": 3.3, "atmosphericPressure": 938.9, "windSpeed": 2.0, "streamGauge": 0.5}
TRAFFIC = {"intensity": 197.0, "occupancy": 0.76, "averageVehicleSpeed": 52.6}
# (file, sensor, observed in UTC, canonical values expected among the measurements, warnings)
OFFICIAL = [
    # AirQualityObserved: co has no unit in key-values (µg/m³, the pollutants' unit) and is
    # 500 GP (mg/m³) in both normalized forms; the v2 normalized precipitation is a Boolean.
    ("AirQualityObserved.example.json", "es-madrid-aq-28079004", datetime(2016, 3, 15, 11),
     AQ | {"co": 500.0, "airQualityIndex": 65.0, "precipitation": 0.0}, ()),
    ("AirQualityObserved.example-normalized.json", "es-madrid-aq-28079004",
     datetime(2016, 3, 15, 11), AQ | {"co": 500_000.0, "no2": 69.0, "airQualityIndex": 65.0},
     ("precipitation: a boolean, not a number; dropped",)),
    ("AirQualityObserved.example.jsonld", "es-madrid-aq-28079004", datetime(2016, 3, 15, 11),
     AQ | {"co": 500.0, "no2": 69.0}, ()),
    ("AirQualityObserved.example-normalized.jsonld", "es-madrid-aq-28079004",
     datetime(2016, 3, 15, 11), AQ | {"co": 500_000.0, "no2": 69.0, "precipitation": 0.0}, ()),
    # FloodMonitoring: observationDateTime in +05:30.
    ("FloodMonitoring.example.json", "in-pune-fwr013", datetime(2020, 9, 16, 8),
     {"currentLevel": 0.98, "alertLevel": 10.0, "dangerLevel": 25.0, "measuredDistance": 3.22}, ()),
    ("FloodMonitoring.example-normalized.json", "in-pune-fwr013", datetime(2020, 9, 16, 8),
     {"currentLevel": 1.98, "alertLevel": 11.0, "referenceLevel": 4.2}, ()),
    ("FloodMonitoring.example.jsonld", "in-pune-fwr013", datetime(2020, 9, 16, 8),
     {"currentLevel": 0.98, "dangerLevel": 25.0}, ()),
    ("FloodMonitoring.example-normalized.jsonld", "in-pune-fwr013", datetime(2020, 9, 16, 8),
     {"currentLevel": 1.98, "dangerLevel": 26.0}, ()),
    # NoiseLevelObserved: the time is the end of the period, dateObservedTo.
    *[(f"NoiseLevelObserved.{form}", "es-vitoria-noise", datetime(2016, 12, 28, 12),
       {"LAeq": 67.8, "LAmax": 94.5}, ()) for form in FORMS],
    # TrafficFlowObserved: dateObservedTo, the end of the interval in dateObserved.
    *[(f"TrafficFlowObserved.{form}", "es-valladolid-traffic-60821110",
       datetime(2016, 12, 7, 11, 15), TRAFFIC, ()) for form in FORMS],
    # WeatherObserved: streamGauge is documented in centimetres (50 cm = 0.5 m).
    ("WeatherObserved.example.json", "es-valladolid-weather", datetime(2016, 11, 30, 7),
     WEATHER | {"relativeHumidity": 1.0, "precipitation": 0.0}, ()),
    ("WeatherObserved.example-normalized.json", "es-valladolid-weather",
     datetime(2016, 11, 30, 7), WEATHER | {"relativeHumidity": 0.15, "precipitation": 0.1}, ()),
    ("WeatherObserved.example.jsonld", "es-valladolid-weather", datetime(2016, 11, 30, 7),
     WEATHER | {"relativeHumidity": 1.0}, ()),
    ("WeatherObserved.example-normalized.jsonld", "es-valladolid-weather",
     datetime(2016, 11, 30, 7), WEATHER | {"relativeHumidity": 1.0}, ()),
]  # fmt: skip


def test_every_official_example_is_covered() -> None:
    assert sorted(row[0] for row in OFFICIAL) == sorted(
        path.name for path in EXAMPLES.glob("*.json*")
    )


@pytest.mark.parametrize(
    ("name", "sensor", "observed", "values", "warnings"), OFFICIAL, ids=[r[0] for r in OFFICIAL]
)
def test_official_examples_are_accepted_with_canonical_values(
    registry: SensorRegistry,
    name: str,
    sensor: str,
    observed: datetime,
    values: dict[str, float],
    warnings: tuple[str, ...],
) -> None:
    event = parse_entity(example(name), registry)
    assert event.id == sensor
    assert event.date_observed == observed.replace(tzinfo=UTC)
    assert {key: event.measurements.get(key) for key in values} == pytest.approx(values)
    assert event.warnings == warnings


def test_a_line_is_located_at_the_mean_of_its_vertices(registry: SensorRegistry) -> None:
    event = parse_entity(example("TrafficFlowObserved.example-normalized.json"), registry)
    assert event.location == pytest.approx((41.6578209, -4.7353261))
    polygon = entity("a", "AirQualityObserved", WHEN, pm25=5) | {
        "location": {
            "type": "Polygon",
            "coordinates": [
                [[105.0, 21.0], [106.0, 21.0], [106.0, 22.0], [105.0, 22.0], [105.0, 21.0]]
            ],
        }
    }
    assert parse_entity(polygon).location == pytest.approx((21.5, 105.5))


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
            intensity="120",
            congested=True,
        )
    )
    assert traffic.measurements == pytest.approx(
        {"averageVehicleSpeed": 36.0, "intensity": 120.0, "congested": 1.0}
    )
    weather = parse_entity(
        entity("w-1", "WeatherObserved", WHEN, windSpeed={"value": 36, "unitCode": "KMH"})
        | {"gustSpeed": 20, "atmosphericPressure": {"value": 101.3, "unitCode": "KPA"}}
    )
    assert weather.measurements == pytest.approx(
        {"windSpeed": 10.0, "gustSpeed": 20.0, "atmosphericPressure": 1013.0}
    )


@pytest.mark.parametrize(
    "unit_metadata",
    [{"unitCode": {"type": "Text", "value": "GP"}}, {"unitCode": "GP"}],
    ids=["v2-metadata", "plain-string"],
)
def test_a_unit_given_only_in_v2_metadata_is_applied(unit_metadata: dict[str, Any]) -> None:
    normalized = {
        "id": "aq-1",
        "type": "AirQualityObserved",
        "dateObserved": {"type": "DateTime", "value": "2026-11-20T08:00:00Z"},
        "pm25": {"type": "Number", "value": 1.2, "metadata": unit_metadata},
    }
    assert parse_entity(normalized).measurements == {"pm25": pytest.approx(1200.0)}


def test_ids_map_in_full_through_the_registry(registry: SensorRegistry) -> None:
    madrid, valencia = (
        parse_entity(
            entity("x", "AirQualityObserved", WHEN, pm25=5)
            | {"id": f"urn:ngsi-ld:AirQualityObserved:{city}:28079004"},
            registry,
        )
        for city in ("Madrid", "Valencia")
    )
    assert (madrid.id, valencia.id) == ("es-madrid-28079004", "es-valencia-28079004")
    # Without entity_ids the whole rest of the URN is the id: still two sensors, never "28079004".
    assert parse_entity({**entity("Madrid:28079004", "AirQualityObserved", WHEN, pm25=5)}).id == (
        "Madrid:28079004"
    )
    for entity_id in ("test-aq-1", "urn:ngsi-ld:AirQualityObserved:test-aq-1"):
        sent = entity("x", "AirQualityObserved", WHEN, pm25=5) | {"id": entity_id}
        assert parse_entity(sent, registry).id == "test-aq-1"
    ld = example("AirQualityObserved.example.jsonld")
    assert ld["id"].endswith(":00") and parse_entity(ld, registry).id == "es-madrid-aq-28079004"


def test_a_registry_entity_id_cannot_name_two_sensors() -> None:
    spec = {"name": "n", "type": "FloodMonitoring", "property": "currentLevel", "unit": "m",
            "alert_level": 1.0, "district": "d", "lat": 21.0, "lon": 105.0}  # fmt: skip
    with pytest.raises(ValueError, match="duplicate sensor ids or entity ids: b"):
        SensorRegistry.model_validate(
            {"sensors": [spec | {"id": "a", "entity_ids": ["b"]}, spec | {"id": "b"}]}
        )


@pytest.mark.parametrize(
    ("times", "expected"),
    [
        ({"dateObserved": "2026-11-20T08:00:00"}, "2026-11-20T08:00:00+00:00"),  # naive: UTC
        ({"dateObserved": "2026-11-20T07:55:00Z/2026-11-20T08:00:00+07:00"},
         "2026-11-20T01:00:00+00:00"),  # interval: its end
        ({"dateObservedTo": "2026-11-20T08:00:00Z", "dateObserved": "2026-11-20T07:00:00Z"},
         "2026-11-20T08:00:00+00:00"),
        ({"dateObserved": {"type": "Property", "value": {"@type": "DateTime",
                                                          "@value": "2026-11-20T08:00:00Z"}}},
         "2026-11-20T08:00:00+00:00"),
        ({"TimeInstant": "2026-11-20T06:00:00Z"}, "2026-11-20T06:00:00+00:00"),
    ],
    ids=["naive", "interval", "to-first", "ld-typed", "iot-agent"],
)  # fmt: skip
def test_observation_time_precedence(times: dict[str, Any], expected: str) -> None:
    sent = {"id": "aq-1", "type": "AirQualityObserved", "pm25": 5} | times
    assert parse_entity(sent).date_observed.isoformat() == expected


def test_ld_observed_at_is_used_when_the_model_gives_no_time() -> None:
    sent = {
        "id": "urn:ngsi-ld:AirQualityObserved:aq-1",
        "type": "AirQualityObserved",
        "pm25": {"type": "Property", "value": 5, "observedAt": "2026-11-20T08:00:00Z"},
        "pm10": {"type": "Property", "value": 9, "observedAt": "2026-11-20T08:01:00Z"},
        "TimeInstant": "2026-11-20T06:00:00Z",
        "@context": ["https://example.org/context.jsonld"],
    }
    assert parse_entity(sent).date_observed == datetime(2026, 11, 20, 8, 1, tzinfo=UTC)


def test_flood_level_is_derived_from_reference_and_distance() -> None:
    sent = entity("wl", "FloodMonitoring", WHEN, referenceLevel=4.2, measuredDistance=3.0)
    assert parse_entity(sent).measurements["currentLevel"] == pytest.approx(1.2)


def test_an_unusable_optional_attribute_is_dropped_with_a_warning(
    registry: SensorRegistry,
) -> None:
    sent = entity("test-aq-1", "AirQualityObserved", WHEN, pm25=20, no2="high", so2=-1)
    event = parse_entity(sent, registry)
    assert event.measurements == {"pm25": 20.0}
    assert event.warnings == (
        "no2: not a number; dropped",
        "so2: -1 µg/m³ outside [0, 10000]; dropped",
    )
    with pytest.raises(ObservationError, match="pm25: -1 µg/m³ outside"):  # its own property
        parse_entity(entity("test-aq-1", "AirQualityObserved", WHEN, pm25=-1, no2=5), registry)


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
            json.dumps(entity("test-aq-1", "AirQualityObserved", WHEN, pm25=-3)).encode(),
            "pm25: -3 µg/m³ outside",
        ),
        (
            json.dumps(entity("test-wl-1", "FloodMonitoring", WHEN, currentLevel=1000)).encode(),
            "currentLevel: 1000 m outside",
        ),
        (
            json.dumps(
                entity(
                    "test-wl-1", "FloodMonitoring", WHEN, currentLevel={"value": 1, "unit": "km"}
                )
            ).encode(),
            "unknown unit 'km'",
        ),
        (
            json.dumps(entity("test-aq-1", "AirQualityObserved", WHEN, pm25=float("nan"))).encode(),
            "pm25: not a finite number",
        ),
        (
            json.dumps(
                entity("test-aq-1", "AirQualityObserved", WHEN, precipitation=False)
            ).encode(),
            "no usable measured attribute .*precipitation: a boolean",
        ),
        (
            json.dumps(entity("test-aq-1", "AirQualityObserved", WHEN)).encode(),
            "no usable measured",
        ),
        (
            json.dumps(
                entity("test-aq-1", "AirQualityObserved", WHEN, pm25=5)
                | {"dateObserved": "yesterday"}
            ).encode(),
            "dateObserved: 'yesterday' is not",
        ),
        (
            json.dumps({"id": "test-aq-1", "type": "AirQualityObserved", "pm25": 5}).encode(),
            "dateObserved: no observation time",
        ),
        (
            json.dumps(
                entity("test-aq-1", "AirQualityObserved", WHEN, pm25=5)
                | {"location": {"type": "Point", "coordinates": [500, 21]}}
            ).encode(),
            "location: coordinates out of range",
        ),
        (
            json.dumps(
                entity("test-aq-1", "AirQualityObserved", WHEN, pm25=5)
                | {"location": {"type": "LineString", "coordinates": [[105, 21], "x"]}}
            ).encode(),
            "location: malformed LineString",
        ),
        (
            json.dumps(entity("nobody", "AirQualityObserved", WHEN, pm25=5)).encode(),
            "id: unknown sensor id 'urn:ngsi-ld:AirQualityObserved:nobody'",
        ),
        (
            json.dumps(entity("test-wl-1", "AirQualityObserved", WHEN, pm25=5)).encode(),
            "type: sensor 'test-wl-1' is a FloodMonitoring",
        ),
    ],
    ids=[
        "json",
        "array",
        "type",
        "negative",
        "1km",
        "unit",
        "nan",
        "boolean",
        "empty",
        "time",
        "no-time",
        "location",
        "geometry",
        "unknown",
        "wrong-type",
    ],
)
def test_bad_observations_are_rejected_with_the_attribute_named(
    registry: SensorRegistry, payload: bytes, reason: str
) -> None:
    with pytest.raises(ObservationError, match=reason.replace("(", r"\(")):
        parse_observation(payload, registry)


def test_iot_agent_time_instant_metadata_is_an_attribute_level_time() -> None:
    sent = {
        "id": "aq-1",
        "type": "AirQualityObserved",
        "pm25": {
            "type": "Number",
            "value": "12.5",
            "metadata": {"TimeInstant": {"type": "DateTime", "value": "2026-11-20T08:00:00Z"}},
        },
    }
    event = parse_entity(sent)
    assert (event.date_observed, event.measurements) == (WHEN, {"pm25": 12.5})
