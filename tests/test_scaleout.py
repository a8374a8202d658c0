"""Scale-out: two streams workers and two vision workers in one consumer group each share the
partitions of one topic set, and what they store equals what one worker of each stores from the
same input.

Each run gets its own namespace on the session's broker and database (topic prefix, schema,
group ids), like a replay sandbox but with four partitions, so the two runs never see each
other's data. Wall-clock timers are off in both: results then depend on the input alone.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, NamedTuple

import psycopg
import pytest

from ioc.config import Settings
from ioc.devtools.replay.sandbox import with_search_path
from ioc.devtools.scenario.workers import Workers
from ioc.devtools.stack.kafka import ensure_topics
from ioc.kafka import topics
from ioc.models import FrameHeaders
from ioc.services import WorkerSpec, worker_specs
from ioc.store.migrate import migrate
from ioc.streams.keyed import partition_of
from tests.conftest import wait_for
from tests.test_pipeline import air, reading

pytestmark = [pytest.mark.integration, pytest.mark.slow]

PARTITIONS = 4
PREFIX = "scaleout."
BASE = datetime(2026, 11, 20, 1, 0, tzinfo=UTC)
SENSORS = {  # tests/data/sensors.toml; water levels breach 2.0 m, PM2.5 100 µg/m³
    "test-wl-1": "water",
    "test-wl-episode": "water",
    "test-aq-1": "air",
    "test-aq-restart": "air",
    "test-aq-late": "air",
    "test-aq-offline": "air",
}
CAMERAS = {  # tests/data/cameras.toml
    "cam-test-fire": ["negative/neg_00", "fire/fire_04", "fire/fire_05", "fire/fire_06"],
    "cam-test-frames": ["negative/neg_01", "negative/neg_02", "negative/neg_03", "negative/neg_04"],
    "cam-test-crowd": ["traffic/traffic_00", "traffic/traffic_01", "traffic/traffic_02"],
    "cam-tn-cho-thai": ["traffic/traffic_03", "traffic/traffic_04", "traffic/traffic_05"],
}


class Message(NamedTuple):
    topic: str
    key: str
    value: bytes
    headers: list[tuple[str, bytes]]


@pytest.fixture(scope="module")
def tickets(samples_dir: Path) -> list[Message]:
    lines = (samples_dir / "tickets_1022.jsonl").read_text(encoding="utf-8").splitlines()
    messages = []
    for line in lines:
        ticket = json.loads(line)
        ticket.pop("expected", None)
        key = ticket["service_request_id"]
        messages.append(Message(topics.HOTLINE_TICKETS, key, json.dumps(ticket).encode(), []))
    return messages


@pytest.fixture(scope="module")
def sensor_readings() -> list[Message]:
    """Eight minutes per sensor, one reading every 20 s, rising over the alert level and back."""
    messages = []
    for sensor, kind in SENSORS.items():
        for step in range(24):
            observed = BASE + timedelta(seconds=20 * step)
            rise = 1 - abs(step - 12) / 12  # 0 → 1 → 0
            if kind == "water":
                value = reading(sensor, round(1.0 + 1.6 * rise, 2), observed)
            else:
                value = air(sensor, round(30.0 + 110.0 * rise, 1), observed)
            messages.append(Message(topics.SENSOR_EVENTS, sensor, value, []))
    return messages


@pytest.fixture(scope="module")
def frame_rounds(samples_dir: Path) -> list[list[Message]]:
    """Round k holds the k-th frame of every camera that has one."""
    rounds: list[list[Message]] = []
    for seq in range(max(len(frames) for frames in CAMERAS.values())):
        batch = []
        for camera, frames in CAMERAS.items():
            if seq < len(frames):
                image = (samples_dir / "frames" / f"{frames[seq]}.jpg").read_bytes()
                headers = FrameHeaders(
                    camera_id=camera, event_time=BASE + timedelta(seconds=5 * seq), seq=seq
                )
                batch.append(Message(topics.CAMERA_FRAMES, camera, image, headers.to_kafka()))
        rounds.append(batch)
    return rounds


class Namespace(NamedTuple):
    settings: Settings
    env: dict[str, str]


def namespace(live: Settings, name: str) -> Namespace:
    """Own topics, schema and consumer groups on the session's broker and database."""
    schema = f"scaleout_{name}"
    with psycopg.connect(live.database.dsn, autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        conn.execute(f'CREATE SCHEMA "{schema}"')
    prefix, dsn = f"{PREFIX}{name}.", with_search_path(live.database.dsn, schema)
    app_id, vision_group, alerts_group = (
        f"ioc-scaleout-{name}-{part}" for part in ("streams", "vision", "alerts")
    )
    settings = live.model_copy(
        update={
            "kafka": live.kafka.model_copy(
                update={"topic_prefix": prefix, "partitions": PARTITIONS}
            ),
            "database": live.database.model_copy(update={"dsn": dsn}),
            "streams": live.streams.model_copy(
                update={"app_id": app_id, "wall_clock_timers": False}
            ),
            "vision": live.vision.model_copy(update={"group_id": vision_group}),
            "alerts": live.alerts.model_copy(update={"group_id": alerts_group}),
        }
    )
    migrate(dsn, settings.storage)
    ensure_topics(settings.kafka)
    env = {
        "IOC_KAFKA__TOPIC_PREFIX": prefix,
        "IOC_KAFKA__PARTITIONS": str(PARTITIONS),
        "IOC_DATABASE__DSN": dsn,
        "IOC_STREAMS__APP_ID": app_id,
        "IOC_STREAMS__WALL_CLOCK_TIMERS": "false",
        "IOC_VISION__GROUP_ID": vision_group,
        "IOC_ALERTS__GROUP_ID": alerts_group,
    }
    return Namespace(settings, env)


def scaled(settings: Settings, name: str, copies: int) -> list[WorkerSpec]:
    """`copies` streams workers and as many vision workers, each copy a member of the group."""
    specs = {spec.name: spec for spec in worker_specs(settings)}
    return [
        dataclasses.replace(specs[role], name=f"scaleout-{name}-{role}-{copy}")
        for role in ("streams", "vision")
        for copy in range(copies)
    ]


def members(settings: Settings, group: str) -> list[set[tuple[str, int]]]:
    """Each member's assigned (topic, partition)s, as the group coordinator has them."""
    from kafka import KafkaAdminClient

    admin = KafkaAdminClient(bootstrap_servers=settings.kafka.bootstrap_servers)
    try:
        (described,) = admin.describe_groups([group]).values()
    finally:
        admin.close()
    if described["group_state"] != "Stable":
        return []
    return [
        {
            (assigned["topic"], partition)
            for assigned in member["member_assignment"]["assigned_partitions"]
            for partition in assigned["partitions"]
        }
        for member in described["members"]
    ]


def snapshot(dsn: str) -> dict[str, list[tuple[Any, ...]]]:
    """What the workers stored, without the columns that record when or how fast."""
    queries = {
        "tickets": "SELECT service_request_id, category, priority, urgent, status, incident_id"
        " FROM tickets",
        "sensor_readings": "SELECT sensor_id, property, observed_at, value, late"
        " FROM sensor_readings",
        "sensor_windows": "SELECT sensor_id, property, window_start, count, min, max,"
        " round(mean::numeric, 6), last FROM sensor_windows",
        "camera_frames": "SELECT camera_id, seq, width, height, dropped FROM camera_frames",
        "detections": "SELECT camera_id, seq, class_name, count(*) FROM detections"
        " WHERE score >= 0.3 GROUP BY 1, 2, 3",
        "incidents": "SELECT id, kind, severity, source, source_key, status, reports, district"
        " FROM incidents",
        "fused_incidents": "SELECT id, kind, severity, status FROM fused_incidents",
    }
    with psycopg.connect(dsn, autocommit=True) as conn:
        return {
            table: sorted(conn.execute(sql).fetchall(), key=repr) for table, sql in queries.items()
        }


class Run(NamedTuple):
    stored: dict[str, list[tuple[Any, ...]]]
    assignments: dict[str, list[set[tuple[str, int]]]]
    with_input: set[tuple[str, int]]


def count(dsn: str, sql: str) -> int:
    with psycopg.connect(dsn, autocommit=True) as conn:
        return conn.execute(sql).fetchone()[0]


def run_pipeline(
    live: Settings,
    name: str,
    copies: int,
    tickets: list[Message],
    sensor_readings: list[Message],
    frame_rounds: list[list[Message]],
) -> Run:
    from kafka import KafkaProducer

    space = namespace(live, name)
    settings, dsn = space.settings, space.settings.database.dsn
    running = Workers(settings, scaled(settings, name, copies), env=space.env)
    # The groups that read the input topics: the streams worker's tickets and sensor readings
    # consumers, and the vision workers (the Faust app's own group reads derived topics).
    groups = (
        settings.streams.group_of("hotline"),
        settings.streams.group_of("sensors"),
        settings.vision.group_id,
    )
    producer = KafkaProducer(bootstrap_servers=live.kafka.bootstrap_servers, acks="all")
    running.start()
    try:
        running.wait_ready(timeout_s=240)
        assignments = {
            group: wait_for(
                lambda group=group: (
                    (found := members(settings, group)) and len(found) == copies and found
                ),
                timeout=120,
                what=f"{copies} members in {group}",
            )
            for group in groups
        }

        def send(message: Message) -> None:
            producer.send(
                settings.kafka.topic(message.topic),
                key=message.key.encode(),
                value=message.value,
                headers=message.headers,
            )

        for message in tickets + sensor_readings:
            send(message)
        sent_frames = 0
        for batch in frame_rounds:  # a camera's next frame only once its last is stored
            for message in batch:
                send(message)
            producer.flush()
            sent_frames += len(batch)
            wait_for(
                lambda sent=sent_frames: count(dsn, "SELECT count(*) FROM camera_frames") >= sent,
                timeout=120,
                what=f"{sent_frames} frames stored",
            )
        producer.flush()
        wait_for(
            lambda: count(dsn, "SELECT count(*) FROM tickets") == len(tickets),
            timeout=180,
            what="every ticket stored",
        )
        lags = running.wait_drained(timeout_s=180)
        assert not any(lags.values()), f"not drained: {lags}"
        # Outputs of the last commits (incident versions) may still be on their way: settled
        # is drained with the same results twice in a row.
        seen: list[Any] = []

        def settled() -> Any:
            running.wait_drained(timeout_s=60)
            seen.append(snapshot(dsn))
            return len(seen) > 1 and seen[-1] == seen[-2]

        wait_for(settled, timeout=180, what="the stored results to settle")
        with_input = {
            (settings.kafka.topic(message.topic), partition)
            for message in tickets + sensor_readings + [m for r in frame_rounds for m in r]
            for partition in [partition_of(message.key, PARTITIONS)]
        }
        return Run(seen[-1], assignments, with_input)
    finally:
        producer.close()
        running.stop()


@pytest.fixture(scope="module")
def one_each(
    live_stack: Settings,
    tickets: list[Message],
    sensor_readings: list[Message],
    frame_rounds: list[list[Message]],
) -> Iterator[Run]:
    yield run_pipeline(live_stack, "one", 1, tickets, sensor_readings, frame_rounds)


@pytest.fixture(scope="module")
def two_each(
    live_stack: Settings,
    tickets: list[Message],
    sensor_readings: list[Message],
    frame_rounds: list[list[Message]],
) -> Iterator[Run]:
    yield run_pipeline(live_stack, "two", 2, tickets, sensor_readings, frame_rounds)


def test_two_workers_of_each_kind_share_the_partitions_that_carry_the_input(
    two_each: Run,
) -> None:
    for group, assigned in two_each.assignments.items():
        # Only the sandbox's topics, whatever else a group may be given.
        first, second = ({tp for tp in member if tp[0].startswith(PREFIX)} for member in assigned)
        assert first and second, f"{group}: a member without partitions"
        assert not first & second, f"{group}: a partition owned twice"
        for member in (first, second):
            assert member & two_each.with_input, f"{group}: a member got no input partition"


def test_two_workers_of_each_kind_store_what_one_of_each_stores(
    one_each: Run, two_each: Run
) -> None:
    assert one_each.stored["tickets"], "the single run stored tickets"
    assert any(row[1] == "fire" for row in one_each.stored["incidents"]), "a fire was raised"
    assert one_each.stored["sensor_windows"], "windows were closed"
    for table, rows in one_each.stored.items():
        assert two_each.stored[table] == rows, table
