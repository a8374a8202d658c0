"""Kafka clients configured the same way in every `ioc` process.

Every client (aiokafka, kafka-python, Faust) is built here, so the broker address and its
security (SASL/SCRAM, TLS) are set in one place and a secured cluster needs no code change.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.conn import create_conn
from aiokafka.errors import SaslAuthenticationFailed, UnsupportedSaslMechanismError
from aiokafka.helpers import create_ssl_context

from ioc.config import KafkaSettings

if TYPE_CHECKING:
    from faust.types.auth import CredentialsT
    from kafka import KafkaAdminClient, KafkaConsumer

MAX_MESSAGE_BYTES = 8 * 1024 * 1024
SSL_PROTOCOLS = frozenset({"SSL", "SASL_SSL"})
SASL_PROTOCOLS = frozenset({"SASL_PLAINTEXT", "SASL_SSL"})
REFUSALS = (SaslAuthenticationFailed, UnsupportedSaslMechanismError, ssl.SSLCertVerificationError)


class KafkaRefused(RuntimeError):
    """The broker refused the credentials, or its certificate is not trusted: retrying the same
    settings cannot help, so this is raised at once instead of after a bootstrap timeout."""


class _NoPayloads(logging.Filter):
    """Drops aiokafka's debug line that prints every produced value (a ticket with its phone)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("Sending (key=")


def hide_produced_payloads() -> None:
    """Message values never reach the log, whatever the log level (idempotent; Faust's producer
    logs through the same aiokafka logger)."""
    logger = logging.getLogger("aiokafka.producer.producer")
    if not any(isinstance(existing, _NoPayloads) for existing in logger.filters):
        logger.addFilter(_NoPayloads())


def _path(value: Any) -> str | None:
    return str(value) if value else None


def _sasl_password(kafka: KafkaSettings) -> str | None:
    return kafka.sasl_password.get_secret_value() if kafka.sasl_password else None


def _sasl_options(kafka: KafkaSettings) -> dict[str, Any]:
    """SASL keyword arguments, named alike by aiokafka and kafka-python."""
    if kafka.security_protocol not in SASL_PROTOCOLS:
        return {}
    return {
        "sasl_mechanism": kafka.sasl_mechanism,
        "sasl_plain_username": kafka.sasl_username,
        "sasl_plain_password": _sasl_password(kafka),
    }


def ssl_context(kafka: KafkaSettings) -> ssl.SSLContext | None:
    """The TLS context of the SSL protocols (CA, optional client certificate); None otherwise."""
    if kafka.security_protocol not in SSL_PROTOCOLS:
        return None
    context = create_ssl_context(
        cafile=_path(kafka.ssl_cafile),
        certfile=_path(kafka.ssl_certfile),
        keyfile=_path(kafka.ssl_keyfile),
    )
    context.check_hostname = kafka.ssl_check_hostname
    return context


def aiokafka_security(kafka: KafkaSettings) -> dict[str, Any]:
    """Keyword arguments that make any aiokafka client authenticate as `kafka` says."""
    options: dict[str, Any] = {"security_protocol": kafka.security_protocol}
    context = ssl_context(kafka)
    if context is not None:
        options["ssl_context"] = context
    return options | _sasl_options(kafka)


def kafka_python_security(kafka: KafkaSettings) -> dict[str, Any]:
    """The same for kafka-python clients (admin, lag and test readers), which take file paths."""
    options: dict[str, Any] = {"security_protocol": kafka.security_protocol}
    if kafka.security_protocol in SSL_PROTOCOLS:
        options |= {
            "ssl_cafile": _path(kafka.ssl_cafile),
            "ssl_certfile": _path(kafka.ssl_certfile),
            "ssl_keyfile": _path(kafka.ssl_keyfile),
            "ssl_check_hostname": kafka.ssl_check_hostname,
        }
    return options | _sasl_options(kafka)


def faust_credentials(kafka: KafkaSettings) -> CredentialsT | None:
    """Faust's `broker_credentials` (its consumers, producer and topic creation use them)."""
    import faust

    context = ssl_context(kafka)
    if kafka.security_protocol in SASL_PROTOCOLS:
        # With an SSL context Faust switches the protocol to SASL_SSL, else SASL_PLAINTEXT.
        return faust.SASLCredentials(
            username=kafka.sasl_username,
            password=_sasl_password(kafka),
            ssl_context=context,
            mechanism=kafka.sasl_mechanism,
        )
    if context is not None:
        return faust.SSLCredentials(context)
    return None


def producer(kafka: KafkaSettings, client_id: str, **options: Any) -> AIOKafkaProducer:
    """acks=all; `options` are the caller's own (a request timeout)."""
    hide_produced_payloads()
    return AIOKafkaProducer(
        bootstrap_servers=kafka.bootstrap_servers,
        client_id=client_id,
        acks="all",
        linger_ms=5,
        max_request_size=MAX_MESSAGE_BYTES + 64 * 1024,
        **options,
        **aiokafka_security(kafka),
    )


def consumer(kafka: KafkaSettings, group_id: str, *topics: str) -> AIOKafkaConsumer:
    """At-least-once: offsets are committed by the caller after its outputs are acknowledged."""
    return aio_consumer(
        kafka,
        *topics,
        group_id=group_id,
        client_id=group_id,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        max_partition_fetch_bytes=MAX_MESSAGE_BYTES + 64 * 1024,
        session_timeout_ms=round(kafka.session_timeout_s * 1000),
        heartbeat_interval_ms=round(kafka.heartbeat_interval_s * 1000),
    )


def aio_consumer(kafka: KafkaSettings, *topics: str, **options: Any) -> AIOKafkaConsumer:
    """Any other aiokafka consumer (no group, its own fetch sizes): the caller's options with the
    broker address and security."""
    return AIOKafkaConsumer(
        *topics, bootstrap_servers=kafka.bootstrap_servers, **options, **aiokafka_security(kafka)
    )


def aio_admin(kafka: KafkaSettings, client_id: str) -> AIOKafkaAdminClient:
    return AIOKafkaAdminClient(
        bootstrap_servers=kafka.bootstrap_servers, client_id=client_id, **aiokafka_security(kafka)
    )


# Logins a broker accepted in this process: checked once, not on every client (lag samples
# build two every few seconds).
_ACCEPTED: set[tuple[Any, ...]] = set()


def _login(kafka: KafkaSettings) -> tuple[Any, ...]:
    return (
        kafka.bootstrap_servers,
        kafka.security_protocol,
        kafka.sasl_mechanism,
        kafka.sasl_username,
        _sasl_password(kafka),
        _path(kafka.ssl_cafile),
        _path(kafka.ssl_certfile),
        _path(kafka.ssl_keyfile),
        kafka.ssl_check_hostname,
    )


def check_refused(kafka: KafkaSettings, timeout_s: float = 10.0) -> None:
    """Raise `KafkaRefused` with the broker's reason when it refuses these credentials or TLS.

    kafka-python retries a failed authentication until its 30 s bootstrap timeout, then reports
    only "Unable to bootstrap"; one aiokafka connection to the first broker says why at once.
    Anything else (a broker still starting, unreachable) is left to the client's own retries.
    PLAINTEXT has nothing to refuse and is not checked.
    """
    if kafka.security_protocol == "PLAINTEXT" or _login(kafka) in _ACCEPTED:
        return
    host, port = kafka.first_host_port

    async def connect() -> None:
        connection = await asyncio.wait_for(
            create_conn(
                host,
                port,
                client_id="ioc-auth-check",
                request_timeout_ms=int(timeout_s * 1000),
                **aiokafka_security(kafka),
            ),
            timeout_s,
        )
        connection.close()

    with ThreadPoolExecutor(1) as thread:  # its own event loop, whatever the caller runs in
        try:
            thread.submit(asyncio.run, connect()).result()
            _ACCEPTED.add(_login(kafka))
        except REFUSALS as error:
            who = f" as {kafka.sasl_username}" if kafka.security_protocol in SASL_PROTOCOLS else ""
            raise KafkaRefused(
                f"Kafka at {host}:{port} refused the connection{who} "
                f"({kafka.security_protocol}): {error}"
            ) from None
        except Exception:  # not a refusal: the client retries as usual
            pass


def admin(kafka: KafkaSettings, client_id: str, **options: Any) -> KafkaAdminClient:
    """A blocking kafka-python admin client (topics, groups, offsets)."""
    from kafka import KafkaAdminClient

    check_refused(kafka)
    return KafkaAdminClient(
        bootstrap_servers=kafka.bootstrap_servers,
        client_id=client_id,
        **options,
        **kafka_python_security(kafka),
    )


def reader(kafka: KafkaSettings, **options: Any) -> KafkaConsumer:
    """A blocking kafka-python consumer, for offsets and reading a topic back."""
    from kafka import KafkaConsumer

    check_refused(kafka)
    return KafkaConsumer(
        bootstrap_servers=kafka.bootstrap_servers, **options, **kafka_python_security(kafka)
    )
