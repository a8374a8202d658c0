"""The MQTT bridge against a real Mosquitto and the session's real Kafka, and the broker as a stack
service: messages arrive keyed by sensor id with their exact bytes, also across a broker restart."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from ioc.config import MqttSettings, Settings
from ioc.devtools.stack import StackError, stack_services, stack_status, stack_up
from ioc.devtools.stack import mosquitto as mosquitto_module
from ioc.devtools.stack.mosquitto import MosquittoService
from ioc.devtools.stack.process import free_port, port_open
from ioc.kafka import topics
from ioc.kafka.clients import MAX_MESSAGE_BYTES
from ioc.models import load_sensor_registry
from ioc.sensors.bridge import MqttBridge, sensor_key
from tests.conftest import (
    TEST_REGISTRY,
    BridgeThread,
    SensorTopic,
    dead_letters,
    mosquitto_service,
    publish,
    wait_for,
)

pytestmark = pytest.mark.integration


def arrived(sensor_topic: SensorTopic, key: str, timeout: float = 30) -> list[Any]:
    """The records keyed `key`, once there is one."""
    return wait_for(
        lambda: sensor_topic.with_key(key),
        timeout=timeout,
        what=f"a record keyed {key!r} on {topics.SENSOR_EVENTS}",
    )


def test_json_observation_arrives_keyed_by_its_sensor_id(
    broker: MosquittoService, bridge: BridgeThread, sensor_topic: SensorTopic
) -> None:
    sensor = f"tn-wl-{uuid.uuid4().hex[:8]}"
    payload = (
        b'{"id": "urn:ngsi-ld:FloodMonitoring:%s", "type": "FloodMonitoring",'
        b' "dateObserved": "2026-11-20T08:00:00+07:00", "currentLevel": 1.25}' % sensor.encode()
    )
    before_ms = time.time_ns() // 1_000_000
    publish(broker, f"ioc/sensors/{sensor}", payload)

    [record] = arrived(sensor_topic, sensor)
    assert record.value == payload
    headers = {key: value.decode() for key, value in record.headers}
    assert headers["mqtt_topic"] == f"ioc/sensors/{sensor}"
    assert before_ms <= int(headers["received_at_ms"]) <= time.time_ns() // 1_000_000


def test_payload_id_wins_over_the_topic(
    broker: MosquittoService, bridge: BridgeThread, sensor_topic: SensorTopic
) -> None:
    sensor = f"aq-{uuid.uuid4().hex[:8]}"
    payload = b'{"id": "%s", "type": "AirQualityObserved", "pm25": 12}' % sensor.encode()
    publish(broker, "ioc/sensors/gateway-7", payload)
    [record] = arrived(sensor_topic, sensor)
    assert record.value == payload


@pytest.mark.parametrize(
    "payload",
    [b"\xff\xfe level=1.2 \x00", b"[1, 2, 3]", b'{"id": 42, "currentLevel": 1}', b""],
    ids=["not-json", "json-array", "numeric-id", "empty"],
)
def test_other_payloads_are_forwarded_unchanged_keyed_by_topic(
    broker: MosquittoService, bridge: BridgeThread, sensor_topic: SensorTopic, payload: bytes
) -> None:
    sensor = f"raw-{uuid.uuid4().hex[:8]}"
    publish(broker, f"ioc/sensors/{sensor}", payload)
    [record] = arrived(sensor_topic, sensor)
    assert (record.value or b"") == payload


def test_payload_kafka_can_never_take_is_dead_lettered_with_the_reason(
    broker: MosquittoService, bridge: BridgeThread, live_stack: Settings
) -> None:
    sensor = f"big-{uuid.uuid4().hex[:8]}"
    marker = f"marker-{sensor}".encode()
    publish(broker, f"ioc/sensors/{sensor}", marker + b"x" * (MAX_MESSAGE_BYTES + 1))
    [letter] = wait_for(lambda: dead_letters(live_stack, marker), timeout=30, what="a dead letter")
    assert "over the Kafka limit" in letter.headers["reason"]
    assert letter.headers["source_topic"] == f"mqtt:ioc/sensors/{sensor}"
    assert letter.headers["source_key"] == sensor
    assert letter.value.startswith(marker)


def test_bridge_reconnects_after_a_broker_restart(
    broker: MosquittoService, bridge: BridgeThread, sensor_topic: SensorTopic
) -> None:
    before = f"rs-before-{uuid.uuid4().hex[:8]}"
    publish(broker, f"ioc/sensors/{before}", b"1")
    arrived(sensor_topic, before)

    assert broker.down()
    wait_for(lambda: not bridge.bridge.ready.is_set(), timeout=30, what="the bridge to notice")
    assert broker.up() == "started"

    # Published before the bridge is back: the broker queues it in the bridge's persistent session.
    during = f"rs-during-{uuid.uuid4().hex[:8]}"
    publish(broker, f"ioc/sensors/{during}", b"2")
    wait_for(bridge.bridge.ready.is_set, timeout=60, what="the bridge to reconnect")
    arrived(sensor_topic, during)

    after = f"rs-after-{uuid.uuid4().hex[:8]}"
    publish(broker, f"ioc/sensors/{after}", b"3")
    arrived(sensor_topic, after)
    assert bridge.thread.is_alive() and bridge.error is None


class KafkaNeverAcknowledges(MqttBridge):
    """A bridge whose Kafka never acknowledges: it holds the message until stopped."""

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings)
        self.holding = threading.Event()

    async def _deliver(self, kafka: Any, batch: list[Any], stop: asyncio.Event) -> bool:
        self.holding.set()
        await stop.wait()
        return False


def test_message_kafka_did_not_acknowledge_is_delivered_again(
    broker: MosquittoService, live_stack: Settings, sensor_topic: SensorTopic
) -> None:
    prefix = f"ioc/redelivery-{uuid.uuid4().hex[:8]}"  # away from the module bridge's filter
    mqtt = MqttSettings(port=broker.port, topic_filter=f"{prefix}/#", client_id=prefix[4:])
    settings = live_stack.model_copy(update={"mqtt": mqtt})
    sensor = f"rd-{uuid.uuid4().hex[:8]}"

    first = BridgeThread(KafkaNeverAcknowledges(settings))
    first.start()
    try:
        wait_for(first.bridge.ready.is_set, timeout=30, what="the first bridge to subscribe")
        publish(broker, f"{prefix}/{sensor}", b"held")
        wait_for(first.bridge.holding.is_set, timeout=30, what="the first bridge to hold it")
    finally:
        first.stop()
    assert first.error is None
    assert not sensor_topic.with_key(sensor)

    second = BridgeThread(MqttBridge(settings))  # same client id: the broker kept the session
    second.start()
    try:
        [record] = arrived(sensor_topic, sensor)
        assert record.value == b"held"
    finally:
        second.stop()
    assert second.error is None


def test_sensor_key_resolves_ids_as_the_stream_agent_does() -> None:
    registry = load_sensor_registry(TEST_REGISTRY)

    def key(payload: bytes) -> str:
        return sensor_key("ioc/sensors/t", payload, registry)

    assert key(b'{"id": "urn:ngsi-ld:WeatherObserved:w-1"}') == "w-1"
    assert key(b'{"id": "  w-2 "}') == "w-2"
    assert key(b'{"id": "urn:ngsi-ld:AirQualityObserved:Madrid:28079004"}') == "es-madrid-28079004"
    assert key(b'{"id": "TrafficFlowObserved-Valladolid-osm-60821110"}') == (
        "es-valladolid-traffic-60821110"
    )
    assert key(b'{"id": "   "}') == "t"
    assert key(b'"w-3"') == "t"
    assert key(b"[" * 100_000) == "t"


# The broker as a stack service.


def test_up_again_is_harmless(broker: MosquittoService) -> None:
    assert broker.up() == "already running"
    health = broker.health()
    assert health.running and health.healthy, health


def test_down_stops_it(tmp_path: Path) -> None:
    service = mosquitto_service(tmp_path, free_port())
    assert service.up() == "started"
    try:
        assert (tmp_path / "mosquitto" / "mosquitto.conf").is_file()
        assert "running" in (tmp_path / "mosquitto" / "mosquitto.log").read_text()
    finally:
        assert service.down()
    assert not port_open(service.host, service.port)
    health = service.health()
    assert not health.running and not health.healthy
    assert service.down() is False


def test_taken_port_fails_fast_with_a_reason(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        service = mosquitto_service(tmp_path, taken.getsockname()[1])
        started = time.monotonic()
        with pytest.raises(StackError, match="is taken by another process; set IOC_MQTT__PORT"):
            service.up()
        assert time.monotonic() - started < 5
    assert not service.process.running()


def test_missing_binary_says_how_to_install(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setattr(mosquitto_module, "SEARCH_PATH", ())
    with pytest.raises(StackError, match="apt-get install mosquitto"):
        mosquitto_service(tmp_path, free_port()).up()


def test_stack_up_starts_it_only_when_enabled(live_stack: Settings) -> None:
    assert "mosquitto" not in {service.name for service in stack_services(live_stack)}
    enabled = live_stack.model_copy(
        update={
            "stack": live_stack.stack.model_copy(update={"mosquitto": True}),
            "mqtt": MqttSettings(port=free_port()),
        }
    )
    try:
        services, _, _ = stack_up(enabled)
        assert services == {
            "kafka": "already running",
            "postgres": "already running",
            "mosquitto": "started",
        }
        health = {h.service: h for h in stack_status(enabled)}["mosquitto"]
        assert (
            health.running and health.healthy and health.address == f"127.0.0.1:{enabled.mqtt.port}"
        )
    finally:
        MosquittoService(enabled.stack, enabled.mqtt).down()  # the session's Kafka stays up
