"""MQTT → Kafka: what sensors publish to the MQTT broker, into `ioc.sensor.events`.

Devices publish one FIWARE entity as JSON (any form `ioc.sensors.fiware` reads) to
`ioc/sensors/<sensor-id>`. The bridge subscribes to `mqtt.topic_filter` and forwards every payload
byte for byte, keyed by the sensor id: the registered sensor the payload's `id` names when it is a
JSON object with a string id (resolved through the registry as the stream agent does, so a
sensor's readings share its partition; an unregistered `urn:ngsi-ld:FloodMonitoring:tn-wl-1` keys
as `tn-wl-1`), else the last topic level. Headers:
`mqtt_topic` and `received_at_ms`. It validates nothing else: the stream agent dead-letters a bad
payload with the reason, so nothing is dropped here. The one exception is a payload Kafka can never
take (over the size limit): it goes to the DLQ with the reason and its first 64 KiB.

Delivery is at-least-once with QoS 1 (the default). paho-mqtt's manual acknowledgements hold each
PUBACK until Kafka has acknowledged the record (acks=all), and the MQTT session is persistent (a
fixed client id, clean session off), so whatever the bridge had not acknowledged when it, the
broker or Kafka went away is delivered again; Kafka may then hold duplicates. Acknowledgements go
out in arrival order, and only on the connection the message came on (a message that arrived on an
earlier connection is redelivered by the broker instead). With QoS 2 the broker considers a
message delivered at PUBREC, before it is in Kafka, so a bridge crash can lose it; QoS 0 is
best-effort. Retained messages are sent again by the broker on each new subscription (once per
bridge start, and after the broker lost the session): devices should publish readings unretained.

Nothing stops the bridge but `stop`: paho's network thread reconnects with exponential backoff
(1 s to 30 s) and re-subscribes when the broker has no session for it; Kafka failures are retried
with backoff while the acknowledgements wait. One bridge per `mqtt.client_id`: a second connection
with the same id takes the session over.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import paho.mqtt.client as mqtt
from aiokafka.errors import KafkaError, MessageSizeTooLargeError, RecordTooLargeError
from paho.mqtt.enums import CallbackAPIVersion

from ioc.config import Settings
from ioc.kafka.clients import MAX_MESSAGE_BYTES, producer
from ioc.kafka.dlq import DeadLetter
from ioc.kafka.topics import DLQ, SENSOR_EVENTS
from ioc.models import SensorRegistry, load_sensor_registry
from ioc.models.registry import natural_sensor_id
from ioc.runtime import run_until_signal

if TYPE_CHECKING:
    from aiokafka import AIOKafkaProducer

log = logging.getLogger(__name__)

RECONNECT_MIN_S = 1
RECONNECT_MAX_S = 30
KEEPALIVE_S = 30
BATCH_MAX = 500
DEAD_LETTER_HEAD_BYTES = 64 * 1024
# Errors after which a record can never be written: dead-letter it instead of retrying forever.
NEVER_FITS = (MessageSizeTooLargeError, RecordTooLargeError)


def sensor_key(topic: str, payload: bytes, registry: SensorRegistry) -> str:
    """The sensor the payload's `id` names when it is a JSON object with a string id (its natural
    id when unregistered: the agent dead-letters it anyway), else the last topic level."""
    try:
        entity: Any = json.loads(payload)
    except (ValueError, RecursionError):  # not JSON, not UTF-8, absurdly nested
        entity = None
    if isinstance(entity, dict) and isinstance(entity.get("id"), str) and entity["id"].strip():
        entity_id = entity["id"].strip()
        spec = registry.resolve(entity_id)
        return spec.id if spec is not None else natural_sensor_id(entity_id)
    return topic.rstrip("/").rsplit("/", 1)[-1] or topic


@dataclass(frozen=True)
class Received:
    """One MQTT message, with what acknowledging it needs."""

    topic: str
    payload: bytes
    mid: int
    qos: int
    connection: int  # which connection it came on: acks are only valid there
    received_at_ms: int


@dataclass(frozen=True)
class Outgoing:
    topic: str
    key: bytes
    value: bytes | None
    headers: list[tuple[str, bytes]]


def _record(message: Received, registry: SensorRegistry) -> Outgoing:
    key = sensor_key(message.topic, message.payload, registry).encode()
    headers = [
        ("mqtt_topic", message.topic.encode()),
        ("received_at_ms", str(message.received_at_ms).encode()),
    ]
    if len(message.payload) + len(key) > MAX_MESSAGE_BYTES:
        reason = f"MQTT payload of {len(message.payload)} bytes over the Kafka limit"
        return _dead_letter(message, key, reason)
    return Outgoing(SENSOR_EVENTS, key, message.payload, headers)


def _dead_letter(message: Received, key: bytes, reason: str) -> Outgoing:
    log.warning("dead letter from MQTT topic %s: %s", message.topic, reason)
    letter = DeadLetter(
        value=message.payload[:DEAD_LETTER_HEAD_BYTES],
        key=key,
        reason=reason,
        source_topic=f"mqtt:{message.topic}",
        source_partition=-1,
        source_offset=-1,
        consumer="ioc-mqtt-bridge",
    )
    headers = [
        *letter.headers(),
        ("mqtt_topic", message.topic.encode()),
        ("received_at_ms", str(message.received_at_ms).encode()),
    ]
    return Outgoing(DLQ, letter.source_topic.encode(), letter.value, headers)


async def _pause(stop: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)


class MqttBridge:
    """Subscribes to the sensors' MQTT topics and produces each message to Kafka (see module)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.mqtt = settings.mqtt
        self.registry = load_sensor_registry(settings.streams.sensor_registry)  # for keys
        self.ready = threading.Event()  # set while connected and subscribed
        self.forwarded = 0  # messages Kafka acknowledged
        self._connection = 0  # incremented in paho's thread on every accepted CONNACK
        self._subscribed_once = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._queue: asyncio.Queue[Received] = asyncio.Queue()

    # paho's network thread -------------------------------------------------------------------

    def _client(self) -> mqtt.Client:
        client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=self.mqtt.client_id,
            clean_session=False,
            protocol=mqtt.MQTTv311,
            manual_ack=True,
        )
        client.suppress_exceptions = True  # a callback bug must not end the network thread
        if self.mqtt.username is not None:
            password = self.mqtt.password
            client.username_pw_set(
                self.mqtt.username, password.get_secret_value() if password else None
            )
        client.reconnect_delay_set(RECONNECT_MIN_S, RECONNECT_MAX_S)
        client.on_connect = self._on_connect
        client.on_connect_fail = self._on_connect_fail
        client.on_disconnect = self._on_disconnect
        client.on_subscribe = self._on_subscribe
        client.on_message = self._on_message
        return client

    def _on_connect(
        self, client: mqtt.Client, _userdata: Any, flags: Any, reason: Any, _properties: Any
    ) -> None:
        if reason.is_failure:
            log.warning("MQTT broker %s refused the bridge: %s", self._address, reason)
            return
        self._connection += 1
        log.info(
            "MQTT bridge connected to %s (session %s)",
            self._address,
            "resumed" if flags.session_present else "new",
        )
        if flags.session_present and self._subscribed_once:
            self.ready.set()  # the broker kept the subscription and the queued messages
            return
        result, _ = client.subscribe(self.mqtt.topic_filter, qos=self.mqtt.qos)
        if result != mqtt.MQTT_ERR_SUCCESS:
            log.warning("MQTT subscribe to %s failed: %s", self.mqtt.topic_filter, result)

    def _on_subscribe(
        self, _client: mqtt.Client, _userdata: Any, _mid: int, reasons: Any, _properties: Any
    ) -> None:
        if any(reason.is_failure for reason in reasons):
            log.error("MQTT broker refused the subscription to %s", self.mqtt.topic_filter)
            return
        self._subscribed_once = True
        self.ready.set()
        log.info("MQTT bridge subscribed to %s (QoS %d)", self.mqtt.topic_filter, self.mqtt.qos)

    def _on_connect_fail(self, _client: mqtt.Client, _userdata: Any) -> None:
        log.warning("MQTT broker %s unreachable; retrying with backoff", self._address)

    def _on_disconnect(
        self, _client: mqtt.Client, _userdata: Any, _flags: Any, reason: Any, _props: Any
    ) -> None:
        self.ready.clear()
        if reason.is_failure:
            log.warning("MQTT bridge lost %s (%s); reconnecting", self._address, reason)

    def _on_message(self, _client: mqtt.Client, _userdata: Any, message: mqtt.MQTTMessage) -> None:
        received = Received(
            topic=message.topic,
            payload=bytes(message.payload),
            mid=message.mid,
            qos=message.qos,
            connection=self._connection,
            received_at_ms=time.time_ns() // 1_000_000,
        )
        loop = self._loop
        if loop is None:
            return  # not acknowledged: the broker delivers it again
        with contextlib.suppress(RuntimeError):  # the loop closed while stopping: same
            loop.call_soon_threadsafe(self._queue.put_nowait, received)

    @property
    def _address(self) -> str:
        return f"{self.mqtt.host}:{self.mqtt.port}"

    # the event loop ---------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        self._loop = asyncio.get_running_loop()
        self._queue = asyncio.Queue()
        kafka = await self._start_producer(stop)
        if kafka is None:
            return
        client = self._client()
        client.connect_async(self.mqtt.host, self.mqtt.port, keepalive=KEEPALIVE_S)
        client.loop_start()
        try:
            while not stop.is_set():
                batch = await self._next_batch(stop)
                if batch and await self._deliver(kafka, batch, stop):
                    self._acknowledge(client, batch)
        finally:
            self.ready.clear()
            client.disconnect()
            await asyncio.to_thread(client.loop_stop)
            await kafka.stop()
            log.info("MQTT bridge stopped after forwarding %d message(s)", self.forwarded)

    async def _start_producer(self, stop: asyncio.Event) -> AIOKafkaProducer | None:
        delay = RECONNECT_MIN_S
        while not stop.is_set():
            kafka = producer(self.settings.kafka, client_id=self.mqtt.client_id)
            try:
                await kafka.start()
                return kafka
            except (KafkaError, OSError) as error:
                await kafka.stop()
                log.warning("Kafka unreachable (%s); retrying in %ds", error, delay)
                await _pause(stop, delay)
                delay = min(delay * 2, RECONNECT_MAX_S)
        return None

    async def _next_batch(self, stop: asyncio.Event) -> list[Received]:
        """The next message (or nothing once `stop` is set) and whatever else has arrived."""
        get = asyncio.ensure_future(self._queue.get())
        stopping = asyncio.ensure_future(stop.wait())
        await asyncio.wait({get, stopping}, return_when=asyncio.FIRST_COMPLETED)
        stopping.cancel()
        if not get.done():
            get.cancel()
            return []
        batch = [get.result()]
        while len(batch) < BATCH_MAX and not self._queue.empty():
            batch.append(self._queue.get_nowait())
        return batch

    async def _deliver(
        self, kafka: AIOKafkaProducer, batch: list[Received], stop: asyncio.Event
    ) -> bool:
        """Until Kafka has acknowledged every record of `batch`; False if stopped first."""
        pending = [(message, _record(message, self.registry)) for message in batch]
        delay = RECONNECT_MIN_S
        while pending:
            retry: list[tuple[Received, Outgoing]] = []
            sent: list[tuple[Received, Outgoing, asyncio.Future[Any]]] = []
            problem: BaseException | None = None
            for index, (message, record) in enumerate(pending):
                try:
                    future = await kafka.send(
                        self.settings.kafka.topic(record.topic),
                        key=record.key,
                        value=record.value,
                        headers=record.headers,
                    )
                except KafkaError as error:
                    if isinstance(error, NEVER_FITS) and record.topic != DLQ:
                        letter = _dead_letter(message, record.key, f"Kafka refused it: {error}")
                        retry.append((message, letter))
                        continue
                    problem = error
                    retry.extend(pending[index:])
                    break
                sent.append((message, record, future))
            results = await asyncio.gather(*(f for _, _, f in sent), return_exceptions=True)
            for (message, record, _), result in zip(sent, results, strict=True):
                if not isinstance(result, BaseException):
                    continue
                if isinstance(result, NEVER_FITS) and record.topic != DLQ:
                    retry.append((message, _dead_letter(message, record.key, str(result))))
                elif isinstance(result, NEVER_FITS):
                    log.error("dropped MQTT message from %s: %s", message.topic, result)
                else:
                    problem = result
                    retry.append((message, record))
            pending = retry
            if pending and problem is not None:
                if stop.is_set():
                    return False  # unacknowledged: the broker delivers them again
                log.warning(
                    "Kafka did not take %d MQTT message(s) (%s); retrying in %ds",
                    len(pending),
                    problem,
                    delay,
                )
                await _pause(stop, delay)
                delay = min(delay * 2, RECONNECT_MAX_S)
        self.forwarded += len(batch)
        return True

    def _acknowledge(self, client: mqtt.Client, batch: list[Received]) -> None:
        for message in batch:
            if message.qos > 0 and message.connection == self._connection:
                client.ack(message.mid, message.qos)


def run_bridge(settings: Settings) -> None:
    """`ioc sensors bridge`: run until SIGTERM/SIGINT."""
    run_until_signal(lambda: MqttBridge(settings))
