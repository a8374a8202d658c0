"""Client options from the Kafka settings: PLAINTEXT adds nothing, the secured protocols give
every library (aiokafka, kafka-python, Faust) the same credentials and TLS."""

from __future__ import annotations

import ssl
from pathlib import Path

import faust
from faust.types.auth import AuthProtocol

from ioc.config import KafkaSettings
from ioc.kafka import clients as kafka_clients

CA = Path("/etc/ioc/kafka-ca.pem")  # passed on as a path, never read by these tests


def secured(**options: object) -> KafkaSettings:
    return KafkaSettings.model_validate(
        {
            "security_protocol": "SASL_SSL",
            "sasl_mechanism": "SCRAM-SHA-256",
            "sasl_username": "ioc",
            "sasl_password": "hunter2",
        }
        | options
    )


def test_plaintext_adds_nothing() -> None:
    kafka = KafkaSettings()
    assert kafka_clients.aiokafka_security(kafka) == {"security_protocol": "PLAINTEXT"}
    assert kafka_clients.kafka_python_security(kafka) == {"security_protocol": "PLAINTEXT"}
    assert kafka_clients.ssl_context(kafka) is None
    assert kafka_clients.faust_credentials(kafka) is None
    kafka_clients.check_refused(kafka)  # nothing to refuse: no connection is even tried


def test_sasl_ssl_for_aiokafka_and_kafka_python() -> None:
    aio = kafka_clients.aiokafka_security(secured(ssl_check_hostname=False))
    context = aio.pop("ssl_context")
    assert isinstance(context, ssl.SSLContext)
    assert context.verify_mode == ssl.CERT_REQUIRED and not context.check_hostname
    assert aio == {
        "security_protocol": "SASL_SSL",
        "sasl_mechanism": "SCRAM-SHA-256",
        "sasl_plain_username": "ioc",
        "sasl_plain_password": "hunter2",
    }
    assert kafka_clients.kafka_python_security(secured(ssl_cafile=CA)) == {
        "security_protocol": "SASL_SSL",
        "sasl_mechanism": "SCRAM-SHA-256",
        "sasl_plain_username": "ioc",
        "sasl_plain_password": "hunter2",
        "ssl_cafile": str(CA),
        "ssl_certfile": None,
        "ssl_keyfile": None,
        "ssl_check_hostname": True,
    }


def test_sasl_plaintext_has_no_tls() -> None:
    kafka = secured(security_protocol="SASL_PLAINTEXT")
    assert "ssl_context" not in kafka_clients.aiokafka_security(kafka)
    assert "ssl_cafile" not in kafka_clients.kafka_python_security(kafka)
    credentials = kafka_clients.faust_credentials(kafka)
    assert isinstance(credentials, faust.SASLCredentials)
    assert credentials.protocol is AuthProtocol.SASL_PLAINTEXT


def test_faust_gets_the_same_credentials() -> None:
    credentials = kafka_clients.faust_credentials(secured())
    assert isinstance(credentials, faust.SASLCredentials)
    assert credentials.protocol is AuthProtocol.SASL_SSL
    assert credentials.mechanism.value == "SCRAM-SHA-256"
    assert (credentials.username, credentials.password) == ("ioc", "hunter2")
    assert "hunter2" not in repr(credentials)
    tls_only = kafka_clients.faust_credentials(KafkaSettings(security_protocol="SSL"))
    assert isinstance(tls_only, faust.SSLCredentials)
    assert tls_only.protocol is AuthProtocol.SSL


def test_streams_app_is_built_with_the_credentials() -> None:
    from ioc.config import Settings
    from ioc.streams.app import create_app

    app = create_app(Settings(kafka=secured().model_dump(), streams={"pii_key": "test-key"}))
    assert isinstance(app.conf.broker_credentials, faust.SASLCredentials)
    assert app.conf.broker_credentials.protocol is AuthProtocol.SASL_SSL


def test_every_group_member_gives_up_a_dead_peers_partitions_after_the_same_session() -> None:
    """A worker killed without leaving holds its partitions for `kafka.session_timeout_s`: ioc's
    own consumers and Faust's group take the same, and heartbeat three times within it."""
    import asyncio

    from ioc.config import Settings
    from ioc.streams.app import create_app

    kafka = KafkaSettings(session_timeout_s=12)

    async def member_timeouts() -> tuple[int, int]:
        member = kafka_clients.consumer(kafka, "ioc-test", "ioc.test")
        try:
            return member._session_timeout_ms, member._heartbeat_interval_ms
        finally:
            await member.stop()

    assert asyncio.run(member_timeouts()) == (12_000, 4_000)
    app = create_app(Settings(kafka=kafka.model_dump(), streams={"pii_key": "test-key"}))
    assert app.conf.broker_session_timeout == 12.0
    assert app.conf.broker_heartbeat_interval == 4.0
    assert KafkaSettings().session_timeout_s == 10.0  # Faust's own 60 s held incidents a minute
