"""Kafka security end to end: a local broker of its own whose client listener is SASL_SSL
(SCRAM-SHA-512 over TLS, certificate from the stack's self-signed CA), and every kind of `ioc`
client built from the same settings: kafka-python admin and readers, aiokafka, consumer lag and
the real streams worker (Faust). Wrong credentials and PLAINTEXT clients are refused."""

from __future__ import annotations

import asyncio
import os
import shutil
import time
import uuid
from collections.abc import Iterator

import pytest
from aiokafka.errors import KafkaConnectionError
from kafka.admin import NewTopic
from kafka.errors import KafkaTimeoutError
from pydantic import SecretStr

from ioc.config import KafkaSettings, Settings
from ioc.devtools.scenario.workers import Workers
from ioc.devtools.stack import stack_down, stack_status, stack_up
from ioc.devtools.stack.kafka import ensure_topics
from ioc.devtools.stack.process import free_port, log_tail
from ioc.kafka import clients as kafka_clients
from ioc.kafka.clients import KafkaRefused
from ioc.kafka.lag import consumer_lag
from ioc.kafka.topics import TOPICS
from ioc.services import worker_specs

pytestmark = [
    pytest.mark.integration,
    pytest.mark.slow,
    pytest.mark.skipif(
        shutil.which("openssl") is None,
        reason="openssl not installed (make install does it as root); the TLS listener needs it",
    ),
]

USER = "ioc-test"
PASSWORD = "scram]pass[=word"  # brackets and "=" survive the storage tool's --add-scram


@pytest.fixture(scope="module")
def secured(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Settings]:
    """The stack (Kafka + PostgreSQL for the streams worker) on free ports, configured through
    the environment as a deployment would be, so worker subprocesses read the same."""
    stack_dir = tmp_path_factory.mktemp("secured-stack")
    kafka_port = free_port(consecutive=3)  # client, controller, inter-broker listeners
    env = {
        "IOC_KAFKA__BOOTSTRAP_SERVERS": f"127.0.0.1:{kafka_port}",
        "IOC_KAFKA__SECURITY_PROTOCOL": "SASL_SSL",
        "IOC_KAFKA__SASL_MECHANISM": "SCRAM-SHA-512",
        "IOC_KAFKA__SASL_USERNAME": USER,
        "IOC_KAFKA__SSL_CAFILE": str(stack_dir / "kafka" / "tls" / "ca.pem"),
        "IOC_DATABASE__DSN": f"postgresql://ioc:ioc-test@127.0.0.1:{free_port()}/ioc",
        "IOC_STACK__DIR": str(stack_dir),
        "IOC_STREAMS__LAG_SAMPLE_S": "2",
    }
    password_file = stack_dir / "kafka-password"
    password_file.write_text(PASSWORD + "\n")
    env["IOC_KAFKA__SASL_PASSWORD_FILE"] = str(password_file)
    with pytest.MonkeyPatch.context() as patch:
        for key in [key for key in os.environ if key.startswith("IOC_")]:
            patch.delenv(key)
        for key, value in env.items():
            patch.setenv(key, value)
        settings = Settings()
        assert settings.kafka.sasl_password == SecretStr(PASSWORD), "read from the secret file"
        stack_up(settings)
        try:
            yield settings
        finally:
            stack_down(settings)


@pytest.fixture(scope="module")
def sent(secured: Settings) -> tuple[str, bytes]:
    """A topic made with the secured admin client, holding one message from the secured
    aiokafka producer."""
    topic, value = f"security-test.{uuid.uuid4().hex[:8]}", uuid.uuid4().bytes
    admin = kafka_clients.admin(secured.kafka, "security-test")
    try:
        admin.create_topics([NewTopic(topic, 1, 1)])
    finally:
        admin.close()

    async def produce() -> None:
        producer = kafka_clients.producer(secured.kafka, "security-test")
        await producer.start()
        try:
            await producer.send_and_wait(topic, key=b"k", value=value)
        finally:
            await producer.stop()

    asyncio.run(produce())
    return topic, value


def test_broker_listener_and_topics_use_the_credentials(secured: Settings) -> None:
    properties = (secured.stack.dir / "kafka" / "server.properties").read_text()
    assert "CLIENT:SASL_SSL" in properties
    assert "sasl.enabled.mechanisms=SCRAM-SHA-512" in properties
    assert PASSWORD not in properties, "SCRAM keeps only a salted hash, in the metadata log"
    assert all(health.healthy for health in stack_status(secured)), "probes log in too"
    names = {secured.kafka.topic(spec.name) for spec in TOPICS}
    assert ensure_topics(secured.kafka) == dict.fromkeys(names, "exists")


def test_aiokafka_round_trip_and_lag(secured: Settings, sent: tuple[str, bytes]) -> None:
    topic, value = sent

    async def consume() -> list[bytes]:
        consumer = kafka_clients.consumer(secured.kafka, "security-test-aio", topic)
        await consumer.start()
        try:
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                batches = await consumer.getmany(timeout_ms=500)
                if batches:
                    await consumer.commit()
                    return [record.value for records in batches.values() for record in records]
            return []
        finally:
            await consumer.stop()

    assert asyncio.run(consume()) == [value]
    lags = consumer_lag(
        secured.kafka, {"security-test-aio": [topic], "security-test-never-read": [topic]}
    )
    assert lags == {("security-test-aio", topic): 0, ("security-test-never-read", topic): 1}


def test_kafka_python_admin_and_reader(secured: Settings, sent: tuple[str, bytes]) -> None:
    from kafka import TopicPartition

    topic, value = sent
    admin = kafka_clients.admin(secured.kafka, "security-test")
    try:
        assert topic in admin.list_topics()
    finally:
        admin.close()
    reader = kafka_clients.reader(secured.kafka, consumer_timeout_ms=5000)
    try:
        partition = TopicPartition(topic, 0)
        assert reader.end_offsets([partition]) == {partition: 1}
        reader.assign([partition])
        reader.seek_to_beginning(partition)
        assert [record.value for record in reader] == [value]
    finally:
        reader.close()


def test_streams_worker_joins_its_group_over_sasl_ssl(secured: Settings) -> None:
    """The real Faust app (`broker_credentials` from the settings): its consumer group becomes
    Stable with a member, as seen by the secured admin client, and its lag can be read."""
    streams = worker_specs(secured)[0]
    workers = Workers(secured, specs=[streams])
    workers.start()
    try:
        try:
            workers.wait_ready(timeout_s=240)
        except Exception:
            print(log_tail(workers.log_file("streams"), 60))
            raise
        assert set(workers.lag()) == {"streams"}
    finally:
        workers.stop()
    assert PASSWORD not in workers.log_file("streams").read_text()


def test_wrong_password_is_refused_at_once(secured: Settings) -> None:
    wrong = secured.kafka.model_copy(update={"sasl_password": SecretStr("not-the-password")})
    started = time.monotonic()
    with pytest.raises(KafkaRefused, match="invalid credentials") as refused:
        ensure_topics(wrong)
    assert USER in str(refused.value) and "not-the-password" not in str(refused.value)
    with pytest.raises(KafkaRefused):
        consumer_lag(wrong, {"any": ["ioc.dlq"]})
    assert time.monotonic() - started < 20, "no bootstrap timeout waited for"
    _aiokafka_cannot_connect(wrong)


def test_untrusted_certificate_is_refused(secured: Settings) -> None:
    system_cas = secured.kafka.model_copy(update={"ssl_cafile": None})
    with pytest.raises(KafkaRefused, match="CERTIFICATE_VERIFY_FAILED"):
        kafka_clients.admin(system_cas, "security-test")


def test_plaintext_client_cannot_read(secured: Settings) -> None:
    plaintext = KafkaSettings(bootstrap_servers=secured.kafka.bootstrap_servers)
    _aiokafka_cannot_connect(plaintext)
    with pytest.raises(KafkaTimeoutError):
        kafka_clients.reader(plaintext, bootstrap_timeout_ms=3000)


def _aiokafka_cannot_connect(kafka: KafkaSettings) -> None:
    async def start() -> None:
        consumer = kafka_clients.aio_consumer(kafka)
        try:
            await consumer.start()
        finally:
            await consumer.stop()

    started = time.monotonic()
    with pytest.raises(KafkaConnectionError):
        asyncio.run(start())
    assert time.monotonic() - started < 20
