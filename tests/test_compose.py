"""The container stack (docker-compose.yml and the files it mounts) agrees with the native one.

No Docker and no network: the files are parsed and compared with `ioc.config` and
`ioc.kafka.topics`.
"""

from __future__ import annotations

import itertools
import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from ioc.config import ENV_PREFIX, Settings
from ioc.kafka.topics import TOPICS, topic_configs

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
# Workers that run as several replicas, each taking a share of their topics' partitions.
SCALED_SERVICES = {"ioc-streams", "ioc-vision"}
# One instance only: every camera reader would read every camera; a second bridge with the same
# MQTT client id would take the persistent session over; migrations run once.
SINGLETONS = {"ioc-cameras", "ioc-sensors-bridge", "ioc-migrate"}

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


def brokers(services: dict[str, dict[str, Any]]) -> dict[str, dict[str, str]]:
    """The Kafka nodes: name -> environment."""
    return {
        name: environment(service)
        for name, service in services.items()
        if "KAFKA_NODE_ID" in environment(service)
    }


def compose_kafka(services: dict[str, dict[str, Any]], monkeypatch: pytest.MonkeyPatch) -> Any:
    """`KafkaSettings` as the ioc containers get them (the same in each, see below)."""
    return settings_from(monkeypatch, ioc_env(services["ioc-streams"])).kafka


def replicas(service: dict[str, Any]) -> int:
    return int((service.get("deploy") or {}).get("replicas", 1))


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

    # Every broker, on the listener it advertises to containers: any one may be down at start.
    bootstrap = [server.strip() for server in settings.kafka.bootstrap_servers.split(",")]
    nodes = brokers(services)
    assert len(nodes) >= 3
    assert sorted(bootstrap) == sorted(f"{node}:9092" for node in nodes)
    for server in bootstrap:
        node = server.rpartition(":")[0]
        assert f"PLAINTEXT://{server}" in nodes[node]["KAFKA_ADVERTISED_LISTENERS"].split(",")
    # Topics, Faust's changelogs and its tables agree on partitions in every process.
    assert settings.kafka == compose_kafka(services, clean_env)
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
    assert settings.streams.pii_key is not None
    assert settings.streams.pii_key.get_secret_value() == REQUIRED_VARIABLES["IOC_STREAMS__PII_KEY"]
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
    kafka = compose_kafka(services, clean_env)
    assert kafka.replication_factor == len(brokers(services)) == 3
    assert kafka.effective_min_insync_replicas == 2  # one broker down: writes go on, none lost
    assert kafka.topic_prefix == ""
    topics = created_topics(services["kafka-init"])
    assert set(topics) == {spec.name for spec in TOPICS}
    for spec in TOPICS:
        created = topics[spec.name]
        assert int(created["partitions"]) == kafka.partitions, spec.name
        assert int(created["replication-factor"]) == kafka.replication_factor, spec.name
        assert created["config"] == topic_configs(spec, kafka), spec.name


def test_kafka_brokers_match_the_native_broker(
    services: dict[str, dict[str, Any]], clean_env: pytest.MonkeyPatch
) -> None:
    settings = Settings()
    kafka = compose_kafka(services, clean_env)
    nodes = brokers(services)
    init = services["kafka-init"]
    image = f"apache/kafka:{settings.stack.kafka_version}"
    assert init["image"] == image
    largest = max(int(spec.config.get("max.message.bytes", 0)) for spec in TOPICS)
    voters = {f"{env['KAFKA_NODE_ID']}@{name}:9093" for name, env in nodes.items()}
    assert len({env["KAFKA_NODE_ID"] for env in nodes.values()}) == len(nodes), "node ids"
    assert len({env["CLUSTER_ID"] for env in nodes.values()}) == 1, "one cluster"
    data_volumes = []
    for name, env in nodes.items():
        broker = services[name]
        assert broker["image"] == image, name
        assert broker["hostname"] == name
        assert init["depends_on"][name]["condition"] == "service_healthy"
        # KRaft: every node a broker and a voter of the one controller quorum.
        assert env["KAFKA_PROCESS_ROLES"] == "broker,controller", name
        assert set(env["KAFKA_CONTROLLER_QUORUM_VOTERS"].split(",")) == voters, name
        assert "CONTROLLER://:9093" in env["KAFKA_LISTENERS"].split(",")
        assert f"PLAINTEXT://{name}:9092" in env["KAFKA_ADVERTISED_LISTENERS"].split(",")
        assert env["KAFKA_AUTO_CREATE_TOPICS_ENABLE"] == "false"
        # What kafka-init and Faust do not set themselves (Faust's changelogs, the offsets).
        assert int(env["KAFKA_NUM_PARTITIONS"]) == kafka.partitions, name
        assert int(env["KAFKA_DEFAULT_REPLICATION_FACTOR"]) == kafka.replication_factor, name
        assert int(env["KAFKA_MIN_INSYNC_REPLICAS"]) == kafka.effective_min_insync_replicas
        assert env["KAFKA_UNCLEAN_LEADER_ELECTION_ENABLE"] == "false", name
        for internal in ("OFFSETS_TOPIC", "TRANSACTION_STATE_LOG", "SHARE_COORDINATOR_STATE_TOPIC"):
            assert int(env[f"KAFKA_{internal}_REPLICATION_FACTOR"]) == kafka.replication_factor
        for internal in ("TRANSACTION_STATE_LOG", "SHARE_COORDINATOR_STATE_TOPIC"):
            assert int(env[f"KAFKA_{internal}_MIN_ISR"]) == kafka.effective_min_insync_replicas
        assert int(env["KAFKA_MESSAGE_MAX_BYTES"]) >= largest
        (volume,) = [v for v in broker["volumes"] if v.endswith(":" + env["KAFKA_LOG_DIRS"])]
        data_volumes.append(volume.split(":")[0])
    assert len(set(data_volumes)) == len(nodes), "each broker its own log volume"
    # The host listeners: the first broker on the native stack's port, none shared.
    host_ports = [port for name in nodes for port in services[name]["ports"]]
    assert len(set(host_ports)) == len(host_ports)
    assert "127.0.0.1:19092:19092" in services["kafka-1"]["ports"]
    assert "--bootstrap-server kafka-1:9092,kafka-2:9092,kafka-3:9092" in "\n".join(init["command"])


# --- scaling out ---


def test_scaled_workers_can_run_as_replicas(
    services: dict[str, dict[str, Any]], clean_env: pytest.MonkeyPatch
) -> None:
    partitions = compose_kafka(services, clean_env).partitions
    for name in SCALED_SERVICES:
        service = services[name]
        # Beyond the partition count, a replica of a consumer group would idle.
        assert 2 <= replicas(service) <= partitions, name
        # Two containers cannot share a name or a host port.
        assert "container_name" not in service, name
        assert not service.get("ports"), name
    # The only volume of a scaled worker is the evidence store, shared by design (the file
    # names come from the incident and frame, one snapshot writer owns the candidates).
    assert not services["ioc-streams"].get("volumes")
    evidence_dir = environment(services["ioc-vision"])["IOC_VISION__EVIDENCE_DIR"]
    assert [v.split(":")[1] for v in services["ioc-vision"]["volumes"]] == [evidence_dir]
    for name, service in services.items():
        if replicas(service) > 1:
            assert "container_name" not in service and not service.get("ports"), name
    for name in SINGLETONS:
        assert replicas(services[name]) == 1, name


def test_streams_replicas_keep_their_tables_off_shared_disk(
    services: dict[str, dict[str, Any]], clean_env: pytest.MonkeyPatch
) -> None:
    """Faust's tables live in memory and are rebuilt from their changelogs (topics partitioned
    and replicated like the inputs), its data dir in each container's own working directory:
    nothing a second replica writes to."""
    env = ioc_env(services["ioc-streams"])
    probe = (
        "import json; from ioc.config import Settings; from ioc.streams.app import create_app; "
        "c = create_app(Settings()).conf; print(json.dumps({'store': str(c.store), "
        "'datadir': str(c.datadir), 'partitions': c.topic_partitions, "
        "'replication': c.topic_replication_factor}))"
    )
    base = {k: v for k, v in os.environ.items() if not k.startswith(ENV_PREFIX)}
    result = subprocess.run(  # Faust in its own interpreter: nothing of it leaks into the tests
        [sys.executable, "-c", probe],
        env=base | env,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    conf = json.loads(result.stdout.strip().splitlines()[-1])
    kafka = compose_kafka(services, clean_env)
    assert conf["store"] == "memory:"
    assert conf["partitions"] == kafka.partitions
    assert conf["replication"] == kafka.replication_factor
    assert not Path(conf["datadir"]).is_absolute()
    workdirs = re.findall(r"^WORKDIR (\S+)$", (ROOT / "Dockerfile").read_text(), re.M)
    datadir = Path(workdirs[-1]) / conf["datadir"]
    for volume in services["ioc-streams"].get("volumes", []):
        target = Path(volume.split(":")[1])
        assert not datadir.is_relative_to(target), volume


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
