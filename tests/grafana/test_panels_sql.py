"""Every panel's SQL, macros expanded as Grafana would, run against the real database after the
demo scenario has flowed through the real pipeline (Kafka, streams, vision and alert workers);
each returns rows of the shape its panel draws. Panels run as Grafana's database user would: a
login that is only a member of ioc_grafana (read-only, no personal data)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from zoneinfo import ZoneInfo

import psycopg
import pytest

from ioc.config import Settings
from ioc.devtools.scenario.plan import Scheduled, build_plan
from ioc.devtools.scenario.publisher import publish
from ioc.grafana.dashboards import TIMEZONE, Panel
from ioc.grafana.macros import expand
from ioc.grafana.walls import walls
from ioc.kafka import topics
from ioc.sensors import fiware
from tests.conftest import TEST_REGISTRY, wait_for
from tests.store.roles import login

pytestmark = pytest.mark.integration

DURATION_S = 30.0
NUMBERS = (int, float, Decimal)
# Panels whose rows depend on time passing beyond a short scenario; their shape is still
# checked whenever they return rows.
MAY_BE_EMPTY = {
    "Vi phạm SLA": "SLA deadlines are hours after the scenario's tickets",
    "Sự cố cảm biến đang mở": "production rules hold 2-5 min and offline takes 15 min",
    "Thời gian tiếp nhận": "nobody acknowledges an incident in the scenario",
}
# Thresholds are drawn per sensor of the registry the workers use (the tests' registry).
PANELS = [(wall.uid, panel) for wall in walls(registry_path=TEST_REGISTRY) for panel in wall.panels]


def sensor_messages(start: datetime) -> list[Scheduled]:
    """The scenario's sensor stream for the tests' registry (the workers' registry): a water
    level and a PM2.5 sensor reporting every 2 s, below their alert levels."""
    messages = []
    for step in range(int(DURATION_S / 2)):
        observed = start + timedelta(seconds=2 * step)
        for sensor_id, sensor_type, reading in (
            ("test-wl-1", "FloodMonitoring", {"currentLevel": 1.2 + 0.01 * step}),
            ("test-aq-1", "AirQualityObserved", {"pm25": 40.0 + step}),
        ):
            entity = fiware.entity(sensor_id, sensor_type, observed, **reading)
            messages.append(
                Scheduled(
                    2 * step, topics.SENSOR_EVENTS, sensor_id.encode(), json.dumps(entity).encode()
                )
            )
    return messages


def count(db: psycopg.Connection, sql: str, *params: object) -> int:
    row = db.execute(sql, params).fetchone()
    return int(row[0]) if row else 0


@pytest.fixture(scope="module")
def scenario(workers: Settings, samples_dir: Path) -> datetime:
    """Publish the demo scenario (frames of three cameras, the 1022 tickets and a second report)
    in real time, with sensors of the workers' registry; wait until it is in the database."""
    start = datetime.now(UTC)
    plan = build_plan(samples_dir, DURATION_S, 2.0, 2.0, start=start)
    # The plan's sensors are the bundled registry's, unknown to the test workers; its bad
    # tickets and frame stay, for the dead-letter panels.
    kept = [item for item in plan if item.topic != topics.SENSOR_EVENTS]
    bad = sum(item.bad for item in kept)
    plan = sorted(kept + sensor_messages(start), key=lambda item: item.at_s)
    asyncio.run(publish(plan, workers.kafka, show_progress=False))
    tickets = sum(item.topic == topics.HOTLINE_TICKETS and not item.bad for item in plan)
    with psycopg.connect(workers.database.dsn, autocommit=True) as db:
        checks = {
            "the scenario's tickets": (
                "SELECT count(*) >= %s FROM tickets WHERE requested_at >= %s",
                tickets,
                start,
            ),
            "readings of both sensors": (
                "SELECT count(DISTINCT sensor_id) = %s FROM sensor_readings"
                " WHERE observed_at >= %s AND sensor_id IN ('test-wl-1', 'test-aq-1')",
                2,
                start,
            ),
            "fire or smoke detections on the market camera": (
                "SELECT count(*) > %s FROM detections WHERE camera_id = 'cam-tn-cho-thai'"
                " AND class_name IN ('fire', 'smoke') AND event_time >= %s",
                0,
                start,
            ),
            "an alert for a camera incident": (
                "SELECT count(*) > %s FROM alerts AS a JOIN incidents AS i"
                " ON i.id = a.incident_id WHERE i.source = 'vision' AND a.ok"
                " AND a.delivered_at >= %s",
                0,
                start - timedelta(minutes=30),
            ),
            "the scenario's dead letters recorded": (
                "SELECT count(*) >= %s FROM dead_letters WHERE failed_at >= %s",
                bad,
                start,
            ),
            "hotline incidents with a location": (
                "SELECT count(*) > %s FROM incidents WHERE source = 'hotline'"
                " AND lat IS NOT NULL AND opened_at >= %s",
                0,
                start,
            ),
        }
        for what, (sql, *params) in checks.items():
            wait_for(lambda sql=sql, params=params: count(db, sql, *params), 180, what)
    return start


@pytest.fixture(scope="module")
def timescaledb(live_stack: Settings) -> bool:
    with psycopg.connect(live_stack.database.dsn) as conn:
        return bool(
            conn.execute("SELECT 1 FROM pg_extension WHERE extname = 'timescaledb'").fetchone()
        )


@pytest.fixture(scope="module")
def grafana_db(live_stack: Settings) -> Iterator[psycopg.Connection]:
    """A connection as a login that is only a member of ioc_grafana."""
    with login(live_stack.database.dsn, "ioc_grafana") as conn:
        yield conn


def test_grafana_login_reads_no_personal_data(grafana_db: psycopg.Connection) -> None:
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        grafana_db.execute("SELECT address FROM tickets")


def run_panel(
    db: psycopg.Connection, panel: Panel, start: datetime, timescaledb: bool
) -> tuple[list[str], list[tuple]]:
    sql = expand(
        panel.sql,
        time_from=start - timedelta(hours=6),
        time_to=datetime.now(UTC) + timedelta(minutes=1),
        interval=timedelta(minutes=1),
        timescaledb=timescaledb,
    )
    cursor = db.execute(sql)
    assert cursor.description is not None
    return [column.name for column in cursor.description], cursor.fetchall()


@pytest.mark.parametrize(("uid", "panel"), PANELS, ids=[f"{u}:{p.title}" for u, p in PANELS])
def test_panel_sql_returns_the_shape_its_panel_draws(
    uid: str,
    panel: Panel,
    scenario: datetime,
    grafana_db: psycopg.Connection,
    timescaledb: bool,
) -> None:
    columns, rows = run_panel(grafana_db, panel, scenario, timescaledb)
    if panel.title not in MAY_BE_EMPTY:
        assert rows, f"{uid}: {panel.title} returned no rows"
    if panel.shape == "stat":
        assert len(columns) == 1 and len(rows) == 1
        assert isinstance(rows[0][0], NUMBERS)
    elif panel.shape == "time_series":
        assert columns[0] == "time"
        text = [name for name in columns[1:] if name == "metric"]
        values = [name for name in columns[1:] if name != "metric"]
        assert len(text) <= 1 and values
        for row in rows:
            assert isinstance(row[0], datetime)
            for name, value in zip(columns[1:], row[1:], strict=True):
                kinds = str if name == "metric" else NUMBERS
                assert value is None or isinstance(value, kinds), (name, value)
        assert [row[0] for row in rows] == sorted(row[0] for row in rows), "ordered by time"
    else:
        assert columns == list(panel.columns)
        if panel.shape == "geomap":
            for row in rows:
                point = dict(zip(columns, row, strict=True))
                assert isinstance(point["lat"], float) and isinstance(point["lon"], float)
                assert point["severity_level"] in {1, 2, 3}


def test_panels_show_the_scenario(
    scenario: datetime, grafana_db: psycopg.Connection, timescaledb: bool
) -> None:
    """A few values, not only shapes: what an operator would see after the scenario."""
    by_title = {panel.title: panel for _, panel in PANELS}

    def rows(title: str) -> list[tuple]:
        return run_panel(grafana_db, by_title[title], scenario, timescaledb)[1]

    vietnam = ZoneInfo(TIMEZONE)
    if scenario.astimezone(vietnam).date() == datetime.now(vietnam).date():
        assert rows("Phản ánh hôm nay")[0][0] >= 33, "the scenario's tickets, received today"
    assert rows("Sự cố đang mở")[0][0] >= 1
    assert rows("Sự cố đang xử lý")[0][0] >= 1, "fused from the scenario's candidates"
    assert "opened" in {row[1] for row in rows("Thay đổi trạng thái")}
    assert rows("Camera trực tuyến")[0][0] >= 1
    assert {"test-wl-1"} <= {row[1] for row in rows("Mực nước")}
    assert {"test-aq-1"} <= {row[1] for row in rows("Bụi mịn PM2.5")}
    assert "cam-tn-cho-thai" in {row[1] for row in rows("Phát hiện mỗi phút theo camera")}
    channels = {row[1] for row in rows("Phản ánh theo kênh")}
    assert {"phone", "app"} <= channels
    assert {"tickets", "sensor_readings", "camera_frames", "incidents", "alerts"} <= {
        row[1] for row in rows("Thông lượng ghi CSDL")
    }
