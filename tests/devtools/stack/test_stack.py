"""The native stack as a user drives it: up, status, up again, failures that say why."""

from __future__ import annotations

import socket
from pathlib import Path

import psycopg
import pytest
from kafka import KafkaAdminClient

from ioc.config import Settings
from ioc.devtools.stack import StackError, stack_down, stack_status, stack_up
from ioc.devtools.stack.kafka import KafkaService, read_lock
from ioc.devtools.stack.postgres import PostgresService
from ioc.devtools.stack.process import free_port
from ioc.kafka.topics import TOPICS

pytestmark = pytest.mark.integration


def test_status_reports_each_service_healthy(live_stack: Settings) -> None:
    healths = {h.service: h for h in stack_status(live_stack)}
    assert set(healths) == {"kafka", "postgres"}
    assert all(h.running and h.healthy for h in healths.values())
    assert healths["postgres"].detail.startswith("PostgreSQL 18")
    assert healths["kafka"].address == live_stack.kafka.bootstrap_servers


def test_up_again_is_harmless(live_stack: Settings) -> None:
    services, topics, report = stack_up(live_stack)
    assert services == {"kafka": "already running", "postgres": "already running"}
    assert set(topics.values()) == {"exists"}
    assert report.applied == []


def test_topics_exist_with_configured_partitions(live_stack: Settings) -> None:
    admin = KafkaAdminClient(bootstrap_servers=live_stack.kafka.bootstrap_servers)
    try:
        described = {t["name"]: t for t in admin.describe_topics([spec.name for spec in TOPICS])}
    finally:
        admin.close()
    assert set(described) == {spec.name for spec in TOPICS}
    assert all(len(t["partitions"]) == live_stack.kafka.partitions for t in described.values())


def test_schema_is_migrated(db: psycopg.Connection) -> None:
    tables = {
        r[0] for r in db.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
    }
    assert {
        "tickets",
        "sensor_readings",
        "detections",
        "incidents",
        "alerts",
        "schema_migrations",
    } <= tables


def isolated(tmp_path: Path, **sections: dict) -> Settings:
    return Settings(stack={"dir": tmp_path / "stack"}, **sections)


def test_taken_port_fails_fast_with_reason(tmp_path: Path) -> None:
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        port = squatter.getsockname()[1]
        settings = isolated(
            tmp_path,
            database={"dsn": f"postgresql://ioc:x@127.0.0.1:{port}/ioc"},
            kafka={"bootstrap_servers": f"127.0.0.1:{port}"},
        )
        with pytest.raises(StackError, match="taken by another process"):
            PostgresService(settings.stack, settings.database).up()
        with pytest.raises(StackError, match="taken by another process"):
            KafkaService(settings.stack, settings.kafka).up()


def test_free_ports_stay_out_of_the_range_outgoing_connections_use() -> None:
    low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    picked = [free_port(consecutive=2) for _ in range(50)]
    assert all(port + 1 < low for port in picked), "an outgoing connection could take the port"
    spans = [p + n for p in picked for n in (0, 1)]
    assert len(spans) == len(set(spans)), "a port range was handed out twice"
    for port in spans:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", port))


def test_kafka_that_cannot_start_says_why(tmp_path: Path, live_stack: Settings) -> None:
    settings = isolated(tmp_path, kafka={"bootstrap_servers": f"127.0.0.1:{free_port(2)}"})
    settings.stack.cache_dir = live_stack.stack.cache_dir
    settings.stack.kafka_heap = "1k"  # the JVM refuses to start with this heap
    with pytest.raises(StackError, match="heap"):
        KafkaService(settings.stack, settings.kafka).up()


def test_down_stops_only_what_up_started(tmp_path: Path, live_stack: Settings) -> None:
    other = isolated(
        tmp_path, kafka=live_stack.kafka.model_dump(), database=live_stack.database.model_dump()
    )
    assert stack_down(other) == {"kafka": False, "postgres": False}
    assert all(h.healthy for h in stack_status(live_stack)), "the running stack is untouched"


def test_lock_pins_every_jar_with_a_checksum() -> None:
    artifacts = read_lock("4.1.2")
    names = {a.artifact for a in artifacts}
    assert {"kafka_2.13", "kafka-clients", "kafka-server", "kafka-raft", "scala-library"} <= names
    assert all(len(a.sha256) == 64 for a in artifacts)
