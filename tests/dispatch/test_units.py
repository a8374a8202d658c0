"""The units file and routing: an incident's kind or its tickets' categories pick the units,
those covering its commune first; the SLA clock starts at the assignment."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from pydantic import ValidationError

from ioc.dispatch.communes import Communes, CommunesError
from ioc.dispatch.units import Units
from ioc.models import FusedIncident, Member

WHEN = datetime(2026, 12, 6, 8, 0, tzinfo=UTC)


def incident(kind: str, district: str | None, severity: str = "urgent") -> FusedIncident:
    member = Member(
        id="inc-1",
        source="vision",
        source_key="cam-1",
        kind=kind,
        severity=severity,
        status="open",
        event_time=WHEN,
        title="thử",
    )
    return FusedIncident(
        id="inc-1",
        version=1,
        change="opened",
        kind=kind,
        severity=severity,
        status="open",
        title="thử",
        district=district,
        event_time=WHEN,
        opened_at=WHEN,
        status_since=WHEN,
        ingested_at_ms=1,
        sources=1,
        members=[member],
    )


@pytest.fixture(scope="module")
def units() -> Units:
    return Units.load()


def test_the_bundled_units_cover_the_units_staff_dispatch_to(units: Units) -> None:
    shorts = {unit.short for unit in units.units.values()}
    assert {"PCCC", "CSGT", "Điện lực", "Cấp nước", "Môi trường đô thị", "Y tế"} <= shorts
    assert any(unit.communes for unit in units.units.values())  # ward police


def short(found: list) -> list[str]:
    return [unit.short for unit in found]


def test_routing_by_kind_category_and_commune(units: Units) -> None:
    def routed(fused: FusedIncident, categories: list[str]) -> list[str]:
        return short(units.suggested(fused, categories, fused.district))

    assert routed(incident("fire", "Phường Gia Sàng"), []) == ["PCCC"]
    assert routed(incident("crowding", "Phường Gia Sàng"), []) == ["Công an phường Gia Sàng"]
    elsewhere = incident("crowding", "Xã Phúc Xuân")  # no unit of its own in the file
    assert routed(elsewhere, []) == []
    report = incident("citizen_report", "Phường Tân Thịnh", "high")
    assert routed(report, ["dien_nuoc_chieu_sang"]) == ["Cấp nước", "Điện lực"]
    assert routed(report, ["an_ninh_trat_tu"]) == ["Công an phường Tân Thịnh"]


def test_a_place_without_a_commune_is_routed_by_the_polygon_it_lies_in(units: Units) -> None:
    communes = Communes.load()
    crowd = incident("crowding", None).model_copy(update={"lat": 21.565, "lon": 105.85})
    commune = communes.of(crowd.district, crowd.lat, crowd.lon)
    assert commune == "Phường Gia Sàng"
    assert short(units.suggested(crowd, [], commune)) == ["Công an phường Gia Sàng"]
    # A commune the source named wins over the point; an unknown name is kept as given.
    assert communes.of("Phường Tân Thịnh", 21.565, 105.85) == "Phường Tân Thịnh"
    assert communes.of("Test district", 21.59, 105.84) == "Phường Phan Đình Phùng"
    assert communes.of("Xã Phúc Xuân", 22.5, 105.0) == "Xã Phúc Xuân"
    assert communes.of(None, None, None) is None


def test_polygons_with_holes_and_a_file_that_is_not_communes(tmp_path: Path) -> None:
    ring = [[105.0, 21.0], [106.0, 21.0], [106.0, 22.0], [105.0, 22.0], [105.0, 21.0]]
    hole = [[105.4, 21.4], [105.6, 21.4], [105.6, 21.6], [105.4, 21.6], [105.4, 21.4]]
    document = {
        "type": "FeatureCollection",
        "features": [
            {
                "type": "Feature",
                "properties": {"name": "Xã Vành Khuyên"},
                "geometry": {"type": "MultiPolygon", "coordinates": [[ring, hole]]},
            }
        ],
    }
    path = tmp_path / "communes.geojson"
    path.write_text(json.dumps(document))
    donut = Communes.load(path)
    assert donut.at(21.2, 105.2) == "Xã Vành Khuyên"
    assert donut.at(21.5, 105.5) is None, "in the hole"
    assert donut.at(23.0, 105.5) is None
    document["features"][0]["geometry"] = {"type": "Point", "coordinates": [105.0, 21.0]}
    path.write_text(json.dumps(document))
    with pytest.raises(CommunesError, match="a Point, not a polygon"):
        Communes.load(path)


def test_the_sla_clock_runs_from_the_assignment(units: Units) -> None:
    fire = incident("fire", "Phường Gia Sàng")
    assert units.due(fire) is None
    given = fire.model_copy(update={"unit": "pccc", "assigned_at": WHEN})
    assert units.due(given) == WHEN + timedelta(minutes=30)
    high = given.model_copy(update={"severity": "high"})
    assert units.due(high) == WHEN + timedelta(minutes=120)


def test_a_units_file_is_checked_when_loaded(tmp_path: Path) -> None:
    path = tmp_path / "units.toml"
    base = "version = 1\n[sla_minutes]\nurgent = 1\nhigh = 2\nnormal = 3\n"
    path.write_text(base + '[units.x]\nname = "X"\nshort = "X"\nphone = "114"\n')
    with pytest.raises(ValidationError, match="phone"):
        Units.load(path)
    path.write_text(base + '[units.x]\nname = "X"\nshort = "X"\nkinds = ["volcano"]\n')
    with pytest.raises(ValidationError, match="volcano"):
        Units.load(path)
    path.write_text(base + '[units.x]\nname = "X"\nshort = "X"\nkinds = ["fire"]\n')
    assert Units.load(path).units["x"].id == "x"
