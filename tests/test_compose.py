"""The container stack (docker-compose.yml and the files it mounts) agrees with the native one.

No Docker and no network: the files are parsed and compared with `ioc.config` and `ioc.topics`.
"""

from __future__ import annotations

import itertools
import os
import re
import shlex
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from ioc.config import ENV_PREFIX, Settings
from ioc.topics import TOPICS, topic_configs

ROOT = Path(__file__).resolve().parents[1]
COMPOSE_FILE = ROOT / "docker-compose.yml"
DATASOURCE_FILE = ROOT / "grafana" / "provisioning" / "datasources" / "ioc.yaml"
DASHBOARD_PROVIDER_FILE = ROOT / "grafana" / "provisioning" / "dashboards" / "ioc.yaml"
ALERTMANAGER_FILE = ROOT / "deploy" / "alertmanager" / "alertmanager.yml"

IOC_SERVICES = {
    "ioc-migrate",
    "ioc-streams",
    "ioc-vision",
    "ioc-cameras",
    "ioc-alerts",
    "ioc-api",
    "ioc-sensors-bridge",
}
# Values for the `${NAME:?message}` variables Compose insists on; everything else takes its default.
REQUIRED_VARIABLES = {
    "IOC_STREAMS__PII_KEY": "test-pii-key",
    "IOC_HOTLINE__API_KEYS": '{"test-system": "k"}',
}

_VARIABLE = re.compile(
    r"\$\$|\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?+])(?P<arg>[^}]*))?\}"
)


def interpolate(text: str) -> str:
    """Compose's `${...}` substitution, with an empty environment plus REQUIRED_VARIABLES."""

    def substitute(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        name, op, arg = match.group("name", "op", "arg")
        value = REQUIRED_VARIABLES.get(name)
        if op in (":?", "?"):
            if value is None:
                pytest.fail(f"docker-compose.yml requires ${name}: give it a test value above")
            return value
        if op in (":-", "-"):
            return arg if value is None else value
        if op in (":+", "+"):
            return "" if value is None else arg
        return value or ""

    return _VARIABLE.sub(substitute, text)


def environment(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) if "=" in item else (item, "") for item in env)
    return {
        key: str(value).lower() if isinstance(value, bool) else str(value)
        for key, value in env.items()
    }


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return yaml.safe_load(interpolate(COMPOSE_FILE.read_text()))


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return compose["services"]


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """No IOC_* variable of the developer's shell leaks into the settings under test."""
    for key in list(os.environ):
        if key.startswith(ENV_PREFIX):
            monkeypatch.delenv(key)
    return monkeypatch


def settings_from(monkeypatch: pytest.MonkeyPatch, env: dict[str, str]) -> Settings:
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return Settings()


def ioc_env(service: dict[str, Any]) -> dict[str, str]:
    return {k: v for k, v in environment(service).items() if k.startswith(ENV_PREFIX)}


# --- the ioc services and the settings model ---


def test_ioc_services_are_the_expected_ones(services: dict[str, dict[str, Any]]) -> None:
    with_ioc_env = {name for name, service in services.items() if ioc_env(service)}
    assert with_ioc_env == IOC_SERVICES
    commands = {name: services[name]["command"] for name in IOC_SERVICES}
    assert commands == {
        "ioc-migrate": ["db", "migrate"],
        "ioc-streams": ["streams", "run"],
        "ioc-vision": ["vision", "run"],
        "ioc-cameras": ["cameras", "run"],
        "ioc-alerts": ["alerts", "run"],
        "ioc-api": ["api"],
        "ioc-sensors-bridge": ["sensors", "bridge"],
    }
    for name in IOC_SERVICES:
        build = services[name]["build"]
        assert build["context"] == "."
        assert (ROOT / build["context"] / build.get("dockerfile", "Dockerfile")).is_file()
    assert "vision" in services["ioc-vision"]["build"]["args"]["EXTRAS"].split(",")


@pytest.mark.parametrize("name", sorted(IOC_SERVICES))
def test_ioc_env_is_accepted_by_settings(
    name: str, services: dict[str, dict[str, Any]], clean_env: pytest.MonkeyPatch
) -> None:
    env = ioc_env(services[name])
    settings = settings_from(clean_env, env)

    assert settings.kafka.bootstrap_servers == "kafka:9092"
    host, port = settings.kafka.first_host_port
    assert host in services and port == 9092
    assert settings.stack.kafka is False
    assert settings.stack.postgres is False

    dsn = urlsplit(settings.database.dsn)
    assert (dsn.hostname, dsn.port) == ("timescaledb", 5432)
    db_env = environment(services["timescaledb"])
    assert dsn.username == db_env["POSTGRES_USER"]
    assert dsn.password == db_env["POSTGRES_PASSWORD"]
    assert dsn.path.lstrip("/") == db_env["POSTGRES_DB"]

    # Alertmanager has its own API: it is not the generic webhook of AlertSettings.
    assert "alertmanager" not in (settings.alerts.webhook_url or "")


def test_streams_get_the_pii_key_from_the_environment(
    services: dict[str, dict[str, Any]], clean_env: pytest.MonkeyPatch
) -> None:
    settings = settings_from(clean_env, ioc_env(services["ioc-streams"]))
    assert settings.streams.pii_key == REQUIRED_VARIABLES["IOC_STREAMS__PII_KEY"]
    raw = COMPOSE_FILE.read_text()
    assert "${IOC_STREAMS__PII_KEY:?" in raw, "the PII key must be required, never defaulted"


def test_a_misspelt_setting_is_rejected(
    services: dict[str, dict[str, Any]], clean_env: pytest.MonkeyPatch
) -> None:
    """The check above can fail: a name Settings does not know is an error, not ignored."""
    env = ioc_env(services["ioc-streams"]) | {"IOC_KAFKA__BOOTSTRAP_SERVER": "kafka:9092"}
    with pytest.raises(ValueError, match="IOC_KAFKA__BOOTSTRAP_SERVER"):
        settings_from(clean_env, env)


def test_compose_variables_named_ioc_are_settings(services: dict[str, dict[str, Any]]) -> None:
    """Exporting a variable for Compose must not break a native `ioc` run in the same shell."""
    referenced = {
        match.group("name")
        for match in _VARIABLE.finditer(COMPOSE_FILE.read_text())
        if match.group("name") and match.group("name").startswith(ENV_PREFIX)
    }
    passed_through = set().union(*(ioc_env(services[name]) for name in IOC_SERVICES))
    assert referenced <= passed_through, referenced - passed_through


# --- Kafka topics ---


def created_topics(kafka_init: dict[str, Any]) -> dict[str, dict[str, Any]]:
    command = kafka_init["command"]
    script = command if isinstance(command, str) else "\n".join(command)
    topics: dict[str, dict[str, Any]] = {}
    for line in script.splitlines():
        words = shlex.split(line)
        if "--create" not in words:
            continue
        assert "--if-not-exists" in words, line
        options: dict[str, Any] = {"config": {}}
        for flag, value in itertools.pairwise(words):
            if flag == "--config":
                key, _, val = value.partition("=")
                options["config"][key] = val
            elif flag in {"--topic", "--partitions", "--replication-factor"}:
                options[flag.lstrip("-")] = value
        assert options["topic"] not in topics, f"{options['topic']} created twice"
        topics[options.pop("topic")] = options
    return topics


def test_kafka_init_creates_exactly_the_ioc_topics(
    services: dict[str, dict[str, Any]], clean_env: pytest.MonkeyPatch
) -> None:
    kafka = Settings().kafka
    topics = created_topics(services["kafka-init"])
    assert set(topics) == {spec.name for spec in TOPICS}
    for spec in TOPICS:
        created = topics[spec.name]
        assert int(created["partitions"]) == kafka.partitions, spec.name
        assert int(created["replication-factor"]) == kafka.replication_factor, spec.name
        assert created["config"] == topic_configs(spec, kafka.retention_hours), spec.name


def test_kafka_matches_the_native_broker(
    services: dict[str, dict[str, Any]], clean_env: pytest.MonkeyPatch
) -> None:
    settings = Settings()
    broker, init = services["kafka"], services["kafka-init"]
    assert broker["image"] == init["image"] == f"apache/kafka:{settings.stack.kafka_version}"
    assert init["depends_on"]["kafka"]["condition"] == "service_healthy"
    env = environment(broker)
    assert env["KAFKA_PROCESS_ROLES"] == "broker,controller"
    assert env["KAFKA_AUTO_CREATE_TOPICS_ENABLE"] == "false"
    assert "PLAINTEXT://kafka:9092" in env["KAFKA_ADVERTISED_LISTENERS"].split(",")
    largest = max(int(spec.config.get("max.message.bytes", 0)) for spec in TOPICS)
    assert int(env["KAFKA_MESSAGE_MAX_BYTES"]) >= largest
    assert any(volume.endswith(":" + env["KAFKA_LOG_DIRS"]) for volume in broker["volumes"])


# --- Grafana, Alertmanager ---


def test_grafana_datasource_points_at_the_compose_database(
    services: dict[str, dict[str, Any]],
) -> None:
    datasources = yaml.safe_load(DATASOURCE_FILE.read_text())["datasources"]
    (source,) = [ds for ds in datasources if ds["name"] == "IOC TimescaleDB"]
    assert source["uid"] == "ioc-timescaledb"
    assert source["type"] in {"grafana-postgresql-datasource", "postgres"}

    host, _, port = source["url"].rpartition(":")
    assert host in services and host == "timescaledb" and port == "5432"
    db_env = environment(services["timescaledb"])
    assert source["user"] == db_env["POSTGRES_USER"]
    assert source["jsonData"]["database"] == db_env["POSTGRES_DB"]
    assert source["jsonData"]["timescaledb"] is True
    assert source["jsonData"]["sslmode"] == "disable"
    pg_major = re.search(r"-pg(\d+)$", services["timescaledb"]["image"]).group(1)
    assert source["jsonData"]["postgresVersion"] == int(pg_major) * 100
    assert source["secureJsonData"]["password"], "the password belongs in secureJsonData"
    assert "password" not in source and "password" not in source["jsonData"]


def test_grafana_mounts_the_provisioning_and_dashboards(
    services: dict[str, dict[str, Any]],
) -> None:
    mounts = dict(volume.split(":")[:2] for volume in services["grafana"]["volumes"])
    assert mounts["./grafana/provisioning"] == "/etc/grafana/provisioning"
    providers = yaml.safe_load(DASHBOARD_PROVIDER_FILE.read_text())["providers"]
    (provider,) = providers
    assert provider["type"] == "file"
    assert mounts["./grafana/dashboards"] == provider["options"]["path"]
    assert (ROOT / "grafana" / "dashboards").is_dir()
    assert services["grafana"]["image"].startswith("grafana/grafana-oss:12.")


def test_alerts_go_through_alertmanager(services: dict[str, dict[str, Any]]) -> None:
    env = environment(services["ioc-alerts"])
    settings = Settings(alerts={"alertmanager_url": env["IOC_ALERTS__ALERTMANAGER_URL"]})
    assert settings.alerts.alertmanager_url == "http://alertmanager:9093"
    assert "alertmanager" in services["ioc-alerts"]["depends_on"]


def test_alertmanager_config_parses(services: dict[str, dict[str, Any]]) -> None:
    config = yaml.safe_load(ALERTMANAGER_FILE.read_text())
    receivers = {receiver["name"] for receiver in config["receivers"]}
    assert config["route"]["receiver"] in receivers
    mounts = dict(volume.split(":")[:2] for volume in services["alertmanager"]["volumes"])
    assert mounts["./deploy/alertmanager/alertmanager.yml"] == "/etc/alertmanager/alertmanager.yml"


def test_relative_mounts_exist(services: dict[str, dict[str, Any]]) -> None:
    for name, service in services.items():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("."):
                assert (ROOT / source).exists(), f"{name}: {source} is missing"


# --- the image ---


def test_dockerfile_and_dockerignore() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert re.search(r"^ARG PYTHON_IMAGE=python:3\.12-slim$", dockerfile, re.M)
    assert re.search(r"^ARG EXTRAS=", dockerfile, re.M)
    assert "YOLO_OFFLINE=1" in dockerfile
    assert re.search(r"^USER (?!root)\S+", dockerfile, re.M)
    assert 'ENTRYPOINT ["ioc"]' in dockerfile
    ignored = set((ROOT / ".dockerignore").read_text().split())
    assert {".venv", ".stack", ".git", ".env"} <= ignored
