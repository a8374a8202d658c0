"""The walls as code: the committed JSON is the generator's output, and every panel is wired to
the IOC datasource with SQL whose macros the expander knows."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from ioc.cli import app
from ioc.grafana.dashboards import DATASOURCE_TYPE, DATASOURCE_UID, TIMEZONE, Dashboard, Panel
from ioc.grafana.macros import expand
from ioc.grafana.publish import REPO_DASHBOARDS, stale_files, write_dashboards
from ioc.grafana.walls import walls
from tests.conftest import REPO

WALLS = walls()
PANELS = [(wall, panel) for wall in WALLS for panel in wall.panels]
NOW = datetime(2026, 11, 23, 3, 0, tzinfo=UTC)


def test_committed_json_matches_the_generator() -> None:
    assert stale_files(WALLS, REPO_DASHBOARDS) == [], "run `ioc grafana generate` and commit"


def test_generate_check_and_write(tmp_path: Path) -> None:
    runner = CliRunner()
    assert runner.invoke(app, ["grafana", "generate", "--check"]).exit_code == 0
    assert runner.invoke(app, ["grafana", "generate", "--check", "--out", str(tmp_path)]).exit_code
    (tmp_path / "old-wall.json").write_text("{}")
    result = runner.invoke(app, ["grafana", "generate", "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(f"{w.uid}.json" for w in WALLS)
    assert write_dashboards(WALLS, tmp_path) == [], "a second run changes nothing"
    text = (tmp_path / "ioc-overview.json").read_text()
    assert text.endswith("}\n") and "Tổng quan" in text, "UTF-8 as is, trailing newline"


@pytest.mark.parametrize("command", [[], ["generate"], ["push"]])
def test_every_grafana_command_has_help(command: list[str]) -> None:
    result = CliRunner().invoke(app, ["grafana", *command, "--help"])
    assert result.exit_code == 0 and "Usage" in result.output


def test_six_walls_with_unique_uids_and_vietnam_time() -> None:
    assert [wall.uid for wall in WALLS] == [
        "ioc-overview",
        "ioc-incidents",
        "ioc-hotline-1022",
        "ioc-environment",
        "ioc-cameras-ai",
        "ioc-pipeline-health",
    ]
    for wall in WALLS:
        model = json.loads((REPO_DASHBOARDS / f"{wall.uid}.json").read_text())
        assert model["timezone"] == TIMEZONE
        assert model["schemaVersion"] >= 39
        assert "id" not in model, "provisioned and pushed by uid"
        ids = [panel["id"] for panel in model["panels"]]
        assert len(ids) == len(set(ids))


@pytest.mark.parametrize(("wall", "panel"), PANELS, ids=[f"{w.uid}:{p.title}" for w, p in PANELS])
def test_every_panel_reads_the_ioc_datasource_with_sql(wall: Dashboard, panel: Panel) -> None:
    model = json.loads((REPO_DASHBOARDS / f"{wall.uid}.json").read_text())
    (found,) = [item for item in model["panels"] if item["title"] == panel.title]
    assert found["datasource"] == {"type": DATASOURCE_TYPE, "uid": DATASOURCE_UID}
    (target,) = found["targets"]
    assert target["datasource"]["uid"] == DATASOURCE_UID
    assert target["rawQuery"] and target["rawSql"].lstrip().upper().startswith(("SELECT", "WITH"))
    assert target["format"] == ("time_series" if panel.shape == "time_series" else "table")
    grid = found["gridPos"]
    assert grid["x"] + grid["w"] <= 24
    # Every macro in it is one the expander (and Grafana) knows.
    expanded = expand(target["rawSql"], time_from=NOW - timedelta(hours=6), time_to=NOW)
    assert "$__" not in expanded


def test_time_series_panels_group_by_time_and_order_by_it() -> None:
    for _, panel in PANELS:
        if panel.shape == "time_series":
            assert "$__timeGroup" in panel.sql and "ORDER BY 1" in panel.sql, panel.title


def test_required_walls_content() -> None:
    """The issue's list, wall by wall."""
    by_uid = {wall.uid: wall for wall in WALLS}
    overview = by_uid["ioc-overview"]
    assert [p.type for p in overview.panels].count("stat") == 5
    (geomap,) = [p for p in overview.panels if p.type == "geomap"]
    layer = geomap.options["layers"][0]
    assert layer["config"]["style"]["color"]["field"] == "severity_level"
    assert layer["location"] == {"latitude": "lat", "longitude": "lon", "mode": "coords"}
    assert any(p.type == "table" and "status = 'open'" in p.sql for p in overview.panels)
    hotline_sql = " ".join(p.sql for p in by_uid["ioc-hotline-1022"].panels)
    for needle in ("category", "channel", "FROM ticket_areas", "sla_due", "sla_breached_at"):
        assert needle in hotline_sql
    # Grafana's role may not read the reporter's data (migration 0008): the area comes from a view.
    for personal in ("address", "reporter_", "description", "status_notes", "media_url"):
        assert personal not in hotline_sql
    camera_sql = " ".join(p.sql for p in by_uid["ioc-cameras-ai"].panels)
    assert "camera_id AS metric" in camera_sql and "latency_ms" in camera_sql
    incidents_sql = " ".join(p.sql for p in by_uid["ioc-incidents"].panels)
    for needle in ("FROM fused_incidents", "FROM fused_incident_events", "acknowledged_at"):
        assert needle in incidents_sql
    pipeline_sql = " ".join(p.sql for p in by_uid["ioc-pipeline-health"].panels)
    assert "ingested_at" in pipeline_sql and "NOT ok" in pipeline_sql


def test_sensor_thresholds_come_from_the_registry_and_rules() -> None:
    environment = next(wall for wall in WALLS if wall.uid == "ioc-environment")
    water = environment.to_json()["panels"][0]
    overrides = {
        o["matcher"]["options"]: o["properties"] for o in water["fieldConfig"]["overrides"]
    }
    steps = next(
        p["value"]["steps"] for p in overrides["tn-wl-cau-gia-bay"] if p["id"] == "thresholds"
    )
    # Registry alert_level 3.0 m (high), rules danger = alert + 1 m (urgent).
    assert [(s["color"], s["value"]) for s in steps] == [
        ("green", None),
        ("orange", 3.0),
        ("red", 4.0),
    ]
    pm25 = environment.to_json()["panels"][1]
    (aq,) = pm25["fieldConfig"]["overrides"]
    steps = next(p["value"]["steps"] for p in aq["properties"] if p["id"] == "thresholds")
    assert steps[-1] == {"color": "orange", "value": 150.0}


def test_a_registry_change_changes_the_thresholds(tmp_path: Path) -> None:
    registry = tmp_path / "sensors.toml"
    registry.write_text(
        (REPO / "ioc" / "assets" / "sensors.toml")
        .read_text()
        .replace("alert_level = 3.0", "alert_level = 3.4")
    )
    changed = walls(registry_path=registry)
    assert stale_files(changed, REPO_DASHBOARDS) == ["ioc-environment.json"]


def test_provisioning_serves_these_dashboards() -> None:
    provisioning = REPO / "grafana" / "provisioning"
    (source,) = yaml.safe_load((provisioning / "datasources" / "ioc.yaml").read_text())[
        "datasources"
    ]
    assert (source["uid"], source["type"]) == (DATASOURCE_UID, DATASOURCE_TYPE)
    assert source["jsonData"]["timescaledb"] is True
    (provider,) = yaml.safe_load((provisioning / "dashboards" / "ioc.yaml").read_text())[
        "providers"
    ]
    assert provider["type"] == "file"
    compose = yaml.safe_load((REPO / "docker-compose.yml").read_text())
    mounts = compose["services"]["grafana"]["volumes"]
    assert f"./grafana/dashboards:{provider['options']['path']}:ro" in mounts
