"""The native local stack: Kafka (KRaft), PostgreSQL and optionally Mosquitto and Alertmanager,
without Docker."""

from __future__ import annotations

from ioc.config import Settings
from ioc.stack.alertmanager import AlertmanagerService
from ioc.stack.kafka import KafkaService, ensure_topics
from ioc.stack.mosquitto import MosquittoService
from ioc.stack.postgres import PostgresService
from ioc.stack.process import Health, StackError
from ioc.store.migrate import MigrationReport, migrate

Service = KafkaService | PostgresService | MosquittoService | AlertmanagerService

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
        services.append(KafkaService(settings.stack, settings.kafka))
    if settings.stack.postgres:
        services.append(PostgresService(settings.stack, settings.database))
    if settings.stack.mosquitto:
        services.append(MosquittoService(settings.stack, settings.mqtt))
    if settings.stack.alertmanager:
        services.append(AlertmanagerService(settings.stack))
    return services


def stack_up(settings: Settings) -> tuple[dict[str, str], dict[str, str], MigrationReport]:
    """Start what is not running, then create topics and apply migrations (all idempotent)."""
    settings.stack.dir.mkdir(parents=True, exist_ok=True)
    outcome = {service.name: service.up() for service in stack_services(settings)}
    topics = ensure_topics(settings.kafka)
    report = migrate(settings.database.dsn, settings.storage)
    return outcome, topics, report


def stack_down(settings: Settings) -> dict[str, bool]:
    """Stop what `up` started, Kafka first so no client writes into a stopping database."""
    return {service.name: service.down() for service in stack_services(settings)}


def stack_status(settings: Settings) -> list[Health]:
    return [service.health() for service in stack_services(settings)]
