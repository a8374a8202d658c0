"""The native local stack: Kafka (KRaft: one node or a cluster), PostgreSQL and optionally
Mosquitto and Alertmanager, without Docker."""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable
from pathlib import Path

from ioc.config import Settings
from ioc.devtools.stack.alertmanager import AlertmanagerService
from ioc.devtools.stack.kafka import KafkaService, ensure_topics, kafka_nodes, stop_together
from ioc.devtools.stack.mosquitto import MosquittoService
from ioc.devtools.stack.postgres import PostgresService
from ioc.devtools.stack.process import Health, StackError
from ioc.store.migrate import MigrationReport, migrate

Service = KafkaService | PostgresService | MosquittoService | AlertmanagerService

# The Kafka node addresses `up` started, one a line: `down` and `status` act on that cluster
# without being told --brokers again (a forgotten flag would leave two brokers running).
KAFKA_NODES_FILE = "kafka-nodes"
PII_KEY_FILE = "pii_key"

__all__ = [
    "Health",
    "Service",
    "StackError",
    "stack_down",
    "stack_services",
    "stack_status",
    "stack_up",
]


def stack_services(settings: Settings) -> list[Service]:
    """The services to run here, per settings (an external DSN or broker is not started)."""
    services: list[Service] = []
    if settings.stack.kafka:
        services.extend(kafka_nodes(settings.stack, settings.kafka))
    if settings.stack.postgres:
        services.append(PostgresService(settings.stack, settings.database))
    if settings.stack.mosquitto:
        services.append(MosquittoService(settings.stack, settings.mqtt))
    if settings.stack.alertmanager:
        services.append(AlertmanagerService(settings.stack))
    return services


def _as_started(settings: Settings) -> Settings:
    """`settings` with the Kafka nodes the last `up` in this stack dir started, if it did."""
    record = settings.stack.dir / KAFKA_NODES_FILE
    if not settings.stack.kafka or not record.exists():
        return settings
    addresses = record.read_text().split()
    return settings.model_copy(
        update={
            "stack": settings.stack.model_copy(update={"kafka_brokers": len(addresses)}),
            "kafka": settings.kafka.model_copy(update={"bootstrap_servers": ",".join(addresses)}),
        }
    )


def stack_up(
    settings: Settings, progress: Callable[[str], object] = lambda _: None
) -> tuple[dict[str, str], dict[str, str], MigrationReport]:
    """Start what is not running, then create topics and apply migrations (all idempotent);
    `progress` is told each step."""
    settings.stack.dir.mkdir(parents=True, exist_ok=True)
    ensure_pii_key(settings.stack.dir)
    outcome: dict[str, str] = {}
    for service in stack_services(settings):
        progress(f"starting {service.name}…")
        outcome[service.name] = service.up()
    if settings.stack.kafka:
        nodes = kafka_nodes(settings.stack, settings.kafka)
        (settings.stack.dir / KAFKA_NODES_FILE).write_text(
            "".join(f"{node.address}\n" for node in nodes)
        )
    progress("creating topics…")
    topics = ensure_topics(settings.kafka)
    progress("applying migrations…")
    report = migrate(settings.database.dsn, settings.storage)
    return outcome, topics, report


def ensure_pii_key(stack_dir: Path) -> Path:
    """The native stack's key for reporter hashes (`streams.pii_key`): random, made once, and
    readable by its owner only. Its workers read it through IOC_STREAMS__PII_KEY_FILE
    (`ioc.devtools.scenario.workers`); a deployment sets its own."""
    path = stack_dir / PII_KEY_FILE
    try:
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return path
    with os.fdopen(descriptor, "w") as key:
        key.write(secrets.token_hex(32))
    return path


def stack_down(settings: Settings) -> dict[str, bool]:
    """Stop what `up` started, Kafka first so no client writes into a stopping database."""
    settings = _as_started(settings)
    services = stack_services(settings)
    nodes = [service for service in services if isinstance(service, KafkaService)]
    stopped = stop_together(nodes)
    stopped |= {service.name: service.down() for service in services if service not in nodes}
    (settings.stack.dir / KAFKA_NODES_FILE).unlink(missing_ok=True)
    return stopped


def stack_status(settings: Settings) -> list[Health]:
    """One row per service, one per Kafka node."""
    return [service.health() for service in stack_services(_as_started(settings))]
