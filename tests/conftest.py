"""Shared fixtures. Integration tests run against a real local stack (Kafka + PostgreSQL) started
once per session on free loopback ports in a temporary folder, and the real `ioc` workers."""

from __future__ import annotations

import asyncio
import json
import os
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, NamedTuple, TypeVar

import paho.mqtt.publish as mqtt_publish
import psycopg
import pytest
from kafka import KafkaConsumer, TopicPartition

from ioc.assets import SAMPLES_DIR
from ioc.config import MqttSettings, Settings, StackSettings
from ioc.devtools.scenario.workers import Workers
from ioc.devtools.stack.mosquitto import MosquittoService
from ioc.devtools.stack.process import free_port, log_tail
from ioc.kafka import topics
from ioc.sensors.bridge import MqttBridge
from tests.smtp import SmtpSink

REPO = Path(__file__).resolve().parents[1]
TEST_RULES = Path(__file__).resolve().parent / "data" / "sensor_rules.toml"
TEST_REGISTRY = Path(__file__).resolve().parent / "data" / "sensors.toml"
TEST_CAMERAS = Path(__file__).resolve().parent / "data" / "cameras.toml"
TEST_CAMERA_RULES = Path(__file__).resolve().parent / "data" / "camera_rules.toml"
SHARED_SAMPLES = REPO.parent / "shared" / "samples"

T = TypeVar("T")


@pytest.fixture(scope="session")
def samples_dir() -> Path:
    """The shared samples when present (CI, developers), else the copies shipped in the package."""
    return SHARED_SAMPLES if (SHARED_SAMPLES / "frames").is_dir() else SAMPLES_DIR


def wait_for(probe: Callable[[], T | None], timeout: float = 60.0, what: str = "condition") -> T:
    """Poll until `probe` returns something truthy; fail with `what` on timeout (no bare sleeps)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = probe()
        if result:
            return result
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")


class DeadLetterRecord(NamedTuple):
    headers: dict[str, str]
    value: bytes


def letters_marker() -> str:
    """A random marker of letters only, to find a message again after the DLQ's redaction: a
    uuid's hex often holds a run of digits that reads as a phone number and is masked (1 marker
    in 85 was, and its test failed)."""
    return uuid.uuid4().hex.translate(str.maketrans("0123456789", "ghijklmnop"))


def dead_letters(settings: Settings, marker: bytes) -> list[DeadLetterRecord]:
    """DLQ records whose (possibly redacted) value contains `marker`."""
    from kafka import KafkaConsumer, TopicPartition

    reader = KafkaConsumer(
        bootstrap_servers=settings.kafka.bootstrap_servers, consumer_timeout_ms=1500
    )
    try:
        partitions = [
            TopicPartition(topics.DLQ, p) for p in reader.partitions_for_topic(topics.DLQ) or ()
        ]
        reader.assign(partitions)
        reader.seek_to_beginning(*partitions)
        return [
            DeadLetterRecord({key: value.decode() for key, value in record.headers}, record.value)
            for record in reader
            if record.value and marker in record.value
        ]
    finally:
        reader.close()


def end_offsets(settings: Settings, topic: str) -> dict[Any, int]:
    """Per partition, where the next message of `topic` will land (to prove nothing was sent)."""
    from kafka import KafkaConsumer, TopicPartition

    reader = KafkaConsumer(bootstrap_servers=settings.kafka.bootstrap_servers)
    try:
        parts = [TopicPartition(topic, p) for p in reader.partitions_for_topic(topic) or ()]
        return reader.end_offsets(parts)
    finally:
        reader.close()


def published_since(settings: Settings, topic: str, since: dict[Any, int]) -> list[Any]:
    """Records of `topic` after the `since` offsets (from `end_offsets`), clock ticks aside."""
    from kafka import KafkaConsumer

    from ioc.streams.keyed import is_tick

    reader = KafkaConsumer(bootstrap_servers=settings.kafka.bootstrap_servers)
    try:
        ends = end_offsets(settings, topic)
        reader.assign(list(ends))
        for partition, offset in since.items():
            reader.seek(partition, offset)
        records: list[Any] = []
        deadline = time.monotonic() + 30
        while any(reader.position(p) < end for p, end in ends.items()):
            if time.monotonic() > deadline:
                raise AssertionError(f"could not read {topic} up to {ends}")
            for batch in reader.poll(timeout_ms=500).values():
                records.extend(batch)
        return [
            r
            for r in records
            if r.offset < ends[next(p for p in ends if p.partition == r.partition)]
            and not is_tick(r.headers)
        ]
    finally:
        reader.close()


def caught_up(settings: Settings, group: str, topic: str) -> bool:
    """The group has committed everything in the topic: what it will do, it has done."""
    from kafka import KafkaAdminClient, KafkaConsumer, TopicPartition

    admin = KafkaAdminClient(bootstrap_servers=settings.kafka.bootstrap_servers)
    reader = KafkaConsumer(bootstrap_servers=settings.kafka.bootstrap_servers)
    try:
        committed = admin.list_group_offsets([group]).get(group, {})
        parts = [TopicPartition(topic, p) for p in reader.partitions_for_topic(topic) or ()]
        ends = reader.end_offsets(parts)
        return all(
            committed.get(tp) and committed[tp].offset >= ends[tp] for tp in parts if ends[tp]
        )
    finally:
        reader.close()
        admin.close()


class WebhookReceiver:
    """A real HTTP endpoint that records what the alert consumer POSTs."""

    def __init__(self) -> None:
        self.received: list[dict[str, Any]] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                receiver.received.append(json.loads(body))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                return None

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/alerts"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def incidents(self) -> list[dict[str, Any]]:
        return [payload["incident"] for payload in self.received]

    def close(self) -> None:
        self.server.shutdown()


@pytest.fixture(scope="session")
def webhook() -> Iterator[WebhookReceiver]:
    receiver = WebhookReceiver()
    yield receiver
    receiver.close()


def isolated_stack_env(stack_dir: Path, webhook_url: str) -> dict[str, str]:
    """IOC_* variables for a stack of its own in `stack_dir`, on free loopback ports."""
    kafka_port = free_port(consecutive=2)
    pg_port = free_port()
    return {
        "IOC_KAFKA__BOOTSTRAP_SERVERS": f"127.0.0.1:{kafka_port}",
        "IOC_DATABASE__DSN": f"postgresql://ioc:ioc-test@127.0.0.1:{pg_port}/ioc",
        "IOC_STACK__DIR": str(stack_dir),
        "IOC_STREAMS__PII_KEY": f"test-pii-{uuid.uuid4().hex}",
        "IOC_STREAMS__SENSOR_REGISTRY": str(TEST_REGISTRY),
        "IOC_STREAMS__SENSOR_RULES": str(TEST_RULES),
        "IOC_CAMERAS__REGISTRY": str(TEST_CAMERAS),
        "IOC_CAMERAS__RULES": str(TEST_CAMERA_RULES),
        "IOC_ALERTS__WEBHOOK_URL": webhook_url,
        "IOC_VISION__BATCH_WAIT_MS": "20",
        "IOC_VISION__EVIDENCE_DIR": str(stack_dir / "evidence"),
        "IOC_HOTLINE__SLA_CHECK_INTERVAL_S": "1",
        "IOC_STREAMS__SENSOR_TICK_S": "2",
        "IOC_STREAMS__LAG_SAMPLE_S": "2",
    }


# The session's API, as the browser tests serve it: the alerts worker's links (to act on an
# incident, to reopen a report) point there.
CONSOLE_PORT = free_port()
CONSOLE_URL = f"http://127.0.0.1:{CONSOLE_PORT}"
LINK_KEY = "session-links-" + "k" * 32
CONTACT_KEY = "session-contacts-" + "c" * 32


@pytest.fixture(scope="session")
def citizen_mail() -> Iterator[SmtpSink]:
    """The SMTP server the session's citizen loop sends reporters' e-mail through."""
    sink = SmtpSink()
    yield sink
    sink.close()


def citizen_loop_env(smtp_port: int) -> dict[str, str]:
    """The citizen loop on, telling reporters by e-mail through a test's SMTP server."""
    return {
        "IOC_CITIZENS__CONTACT_KEY": CONTACT_KEY,
        "IOC_NOTIFY__SMTP_HOST": "127.0.0.1",
        "IOC_NOTIFY__SMTP_PORT": str(smtp_port),
        "IOC_NOTIFY__SMTP_STARTTLS": "false",  # aiosmtpd here speaks plain SMTP
        "IOC_CITIZENS__POLL_S": "1",
        "IOC_CITIZENS__PUBLIC_URL": CONSOLE_URL,
        "IOC_CONSOLE__LINK_KEY": LINK_KEY,
        "IOC_ALERTS__API_URL": CONSOLE_URL,
    }


@pytest.fixture(scope="session")
def stack_env(
    tmp_path_factory: pytest.TempPathFactory, webhook: WebhookReceiver, citizen_mail: SmtpSink
) -> Iterator[dict[str, str]]:
    """IOC_* variables for an isolated stack; exported so worker subprocesses read the same."""
    env = isolated_stack_env(tmp_path_factory.mktemp("stack"), webhook.url)
    env |= citizen_loop_env(citizen_mail.port)
    saved = {key: os.environ.get(key) for key in env}
    os.environ.update(env)
    yield env
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


@pytest.fixture(scope="session")
def settings(stack_env: dict[str, str]) -> Settings:
    return Settings()


@pytest.fixture(scope="session")
def live_stack(settings: Settings) -> Iterator[Settings]:
    from ioc.devtools.stack import stack_down, stack_up

    stack_up(settings)
    yield settings
    stack_down(settings)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    """A failed test that ran the workers shows their log tails (CI keeps nothing else)."""
    outcome = yield
    report = outcome.get_result()
    if not report.failed:
        return
    for running in getattr(item, "funcargs", {}).values():
        if not isinstance(running, Workers):
            continue
        for spec in running.specs:
            report.sections.append(
                (f"{spec.name} worker log tail", log_tail(running.log_file(spec.name), 60))
            )


@contextmanager
def started_workers(settings: Settings, env: dict[str, str] | None = None) -> Iterator[Workers]:
    """The real streams, vision and alert workers, ready (their groups own the partitions)."""
    running = Workers(settings, env=env)
    running.start()
    try:
        running.wait_ready(timeout_s=240)
        yield running
    finally:
        running.stop()


METRICS_PORT = free_port()  # the session's streams worker serves its /metrics here
VISION_METRICS_PORT = free_port()
ALERTS_METRICS_PORT = free_port()


@pytest.fixture(scope="session")
def worker_processes(live_stack: Settings) -> Iterator[Workers]:
    env = {
        "IOC_STREAMS__METRICS_PORT": str(METRICS_PORT),
        "IOC_VISION__METRICS_PORT": str(VISION_METRICS_PORT),
        "IOC_ALERTS__METRICS_PORT": str(ALERTS_METRICS_PORT),
    }
    with started_workers(live_stack, env) as running:
        yield running


@pytest.fixture(scope="session")
def workers(worker_processes: Workers) -> Settings:
    return worker_processes.settings


@pytest.fixture(scope="session")
def producer(workers: Settings) -> Iterator[Any]:
    """A plain Kafka producer for test inputs, once the workers are ready."""
    from kafka import KafkaProducer

    client = KafkaProducer(bootstrap_servers=workers.kafka.bootstrap_servers, acks="all")
    yield client
    client.close()


def migrated_database(settings: Settings, prefix: str) -> str:
    """The DSN of a new database in the session's PostgreSQL, migrated like production: for a
    test of a worker's pass that reads every row of a table, which the session's own workers
    fill and act on too."""
    from ioc.store.migrate import migrate

    name = f"{prefix}_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(settings.database.dsn, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    dsn = f"{settings.database.dsn.rsplit('/', 1)[0]}/{name}"
    migrate(dsn)
    return dsn


@pytest.fixture
def db(live_stack: Settings) -> Iterator[psycopg.Connection]:
    with psycopg.connect(live_stack.database.dsn, autocommit=True) as conn:
        yield conn


# --- MQTT: a real Mosquitto and the bridge into Kafka, for the tests of that edge ---


def mosquitto_service(tmp: Path, port: int) -> MosquittoService:
    return MosquittoService(StackSettings(dir=tmp, start_timeout_s=20), MqttSettings(port=port))


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MosquittoService]:
    service = mosquitto_service(tmp_path_factory.mktemp("mqtt-stack"), free_port())
    assert service.up() == "started"
    yield service
    service.down()


class SensorTopic:
    """Everything produced to `ioc.sensor.events` after it was opened, read as it arrives."""

    def __init__(self, settings: Settings) -> None:
        self.reader = KafkaConsumer(bootstrap_servers=settings.kafka.bootstrap_servers)
        parts = [
            TopicPartition(topics.SENSOR_EVENTS, p)
            for p in self.reader.partitions_for_topic(topics.SENSOR_EVENTS) or ()
        ]
        assert parts, "the session stack has no sensor topic"
        self.reader.assign(parts)
        self.reader.seek_to_end(*parts)
        for part in parts:
            self.reader.position(part)  # resolve the end offsets now, before anything is sent
        self.records: list[Any] = []

    def with_key(self, key: str) -> list[Any]:
        for batch in self.reader.poll(timeout_ms=300).values():
            self.records.extend(batch)
        return [record for record in self.records if record.key == key.encode()]

    def close(self) -> None:
        self.reader.close()


@pytest.fixture(scope="module")
def sensor_topic(live_stack: Settings) -> Iterator[SensorTopic]:
    reader = SensorTopic(live_stack)
    yield reader
    reader.close()


class BridgeThread:
    """The bridge in its own event loop, as `ioc sensors bridge` runs it (signals aside)."""

    def __init__(self, bridge: MqttBridge) -> None:
        self.bridge = bridge
        self.loop = asyncio.new_event_loop()
        self.stop_event = asyncio.Event()
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._main, name="mqtt-bridge", daemon=True)

    def _main(self) -> None:
        try:
            self.loop.run_until_complete(self.bridge.run(self.stop_event))
        except BaseException as error:
            self.error = error
        finally:
            self.loop.close()

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        if self.thread.is_alive():
            self.loop.call_soon_threadsafe(self.stop_event.set)
        self.thread.join(timeout=60)


@pytest.fixture(scope="module")
def bridge(
    broker: MosquittoService, live_stack: Settings, sensor_topic: SensorTopic
) -> Iterator[BridgeThread]:
    mqtt = MqttSettings(port=broker.port, client_id=f"ioc-test-bridge-{uuid.uuid4().hex[:8]}")
    running = BridgeThread(MqttBridge(live_stack.model_copy(update={"mqtt": mqtt})))
    running.start()
    wait_for(running.bridge.ready.is_set, timeout=30, what="the bridge to subscribe")
    yield running
    running.stop()
    assert not running.thread.is_alive(), "the bridge did not stop"
    assert running.error is None, f"the bridge failed: {running.error!r}"


def publish(broker: MosquittoService, topic: str, payload: bytes) -> None:
    """A device: one QoS 1 message, returns once the broker acknowledged it."""
    mqtt_publish.single(topic, payload, qos=1, hostname=broker.host, port=broker.port)
