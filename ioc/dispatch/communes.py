"""The province's communes and wards as polygons (two-tier local government: the province, then
its communes), read from GeoJSON: which commune a point lies in, for routing an incident whose
source named no commune (a 1022 report with only coordinates) to that commune's units.

The bundled `communes.geojson` is schematic: a few of Thái Nguyên's central wards drawn around
their centres, for the demo and the tests. A site points `console.communes` at the province's
official boundaries (any FeatureCollection of Polygon or MultiPolygon features with a `name`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

COMMUNES_PATH = Path(__file__).resolve().parent / "communes.geojson"

Ring = tuple[tuple[float, float], ...]  # (lon, lat) pairs, GeoJSON's order


class CommunesError(ValueError):
    """A communes file that is not a FeatureCollection of named polygons."""


@dataclass(frozen=True)
class Commune:
    name: str
    polygons: tuple[tuple[Ring, ...], ...]  # each: the outer ring, then its holes

    def contains(self, lon: float, lat: float) -> bool:
        return any(
            _inside(rings[0], lon, lat) and not any(_inside(hole, lon, lat) for hole in rings[1:])
            for rings in self.polygons
        )


def _inside(ring: Ring, lon: float, lat: float) -> bool:
    """Ray casting: a ray east from the point crosses the ring's edges an odd number of times."""
    inside = False
    for (x1, y1), (x2, y2) in zip(ring, ring[1:] + ring[:1], strict=True):
        if (y1 > lat) != (y2 > lat) and lon < x1 + (lat - y1) * (x2 - x1) / (y2 - y1):
            inside = not inside
    return inside


@dataclass(frozen=True)
class Communes:
    communes: tuple[Commune, ...]

    @classmethod
    def load(cls, path: Path | None = None) -> Communes:
        source = path or COMMUNES_PATH
        try:
            document = json.loads(source.read_text(encoding="utf-8"))
            return cls(tuple(_commune(feature) for feature in document["features"]))
        except (KeyError, TypeError, ValueError, IndexError) as error:
            raise CommunesError(
                f"{source}: not a FeatureCollection of named polygons ({error})"
            ) from None

    def at(self, lat: float | None, lon: float | None) -> str | None:
        """The commune the point lies in; None outside them all or without a point."""
        if lat is None or lon is None:
            return None
        return next((c.name for c in self.communes if c.contains(lon, lat)), None)

    def of(self, named: str | None, lat: float | None, lon: float | None) -> str | None:
        """The commune a place is in: the one its source named when that is a commune of the
        file, else the one its point lies in, else the name as given."""
        if named in {commune.name for commune in self.communes}:
            return named
        return self.at(lat, lon) or named


def _commune(feature: dict) -> Commune:
    geometry, name = feature["geometry"], feature["properties"]["name"]
    if not isinstance(name, str) or not name:
        raise ValueError("a feature without a name")
    if geometry["type"] == "Polygon":
        polygons = [geometry["coordinates"]]
    elif geometry["type"] == "MultiPolygon":
        polygons = geometry["coordinates"]
    else:
        raise ValueError(f"{name}: a {geometry['type']}, not a polygon")
    return Commune(
        name,
        tuple(
            tuple(tuple((float(x), float(y)) for x, y, *_ in ring) for ring in polygon)
            for polygon in polygons
        ),
    )
