"""A single-node Apache Kafka (KRaft, combined broker+controller) from the broker's own jars.

The jars are resolved from a Maven repository against a checksummed lock file
(`kafka-<version>.artifacts`, one `group:artifact:version sha256` per line) and cached outside
the repository, so every clone on a machine shares one download.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import subprocess
import urllib.request
import uuid
from dataclasses import dataclass
from pathlib import Path

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

from ioc.config import KafkaSettings, StackSettings
from ioc.stack.java import find_java
from ioc.stack.process import Health, ManagedProcess, StackError, port_open
from ioc.topics import TOPICS, topic_configs

LOCK_DIR = Path(__file__).resolve().parent

LOG4J2_PROPERTIES = """\
status = warn
appender.out.type = Console
appender.out.name = OUT
appender.out.layout.type = PatternLayout
appender.out.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = INFO
rootLogger.appenderRef.out.ref = OUT
logger.state.name = state.change.logger
logger.state.level = WARN
logger.request.name = kafka.request.logger
logger.request.level = WARN
"""


@dataclass(frozen=True)
class Artifact:
    group: str
    artifact: str
    version: str
    sha256: str

    @property
    def file_name(self) -> str:
        return f"{self.artifact}-{self.version}.jar"

    def url(self, repository: str) -> str:
        path = "/".join([*self.group.split("."), self.artifact, self.version, self.file_name])
        return f"{repository.rstrip('/')}/{path}"


def read_lock(version: str) -> list[Artifact]:
    lock = LOCK_DIR / f"kafka-{version}.artifacts"
    artifacts = []
    for line in lock.read_text().splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        coordinates, sha256 = line.split()
        group, artifact, art_version = coordinates.split(":")
        artifacts.append(Artifact(group, artifact, art_version, sha256))
    return artifacts


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def ensure_jars(stack: StackSettings) -> Path:
    """Download missing jars into the cache, each verified against the lock; return their dir."""
    libs = stack.cache_dir / "kafka" / stack.kafka_version / "libs"
    libs.mkdir(parents=True, exist_ok=True)
    artifacts = read_lock(stack.kafka_version)
    missing = [a for a in artifacts if not (libs / a.file_name).exists()]
    if not missing:
        return libs
    with Progress(
        TextColumn("[bold]Kafka jars"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.description}"),
    ) as progress:
        task = progress.add_task("", total=len(missing))
        for artifact in missing:
            progress.update(task, description=artifact.file_name)
            target = libs / artifact.file_name
            partial = target.with_suffix(".part")
            try:
                with urllib.request.urlopen(
                    artifact.url(stack.maven_repository), timeout=60
                ) as response:
                    partial.write_bytes(response.read())
            except OSError as error:
                raise StackError(
                    f"cannot download {artifact.url(stack.maven_repository)}: {error}"
                ) from error
            actual = _sha256(partial)
            if actual != artifact.sha256:
                partial.unlink()
                raise StackError(
                    f"checksum mismatch for {artifact.file_name}: "
                    f"expected {artifact.sha256}, got {actual}"
                )
            partial.rename(target)
            progress.advance(task)
    return libs


class KafkaService:
    """The local broker, listening on `kafka.bootstrap_servers` (loopback)."""

    name = "kafka"

    def __init__(self, stack: StackSettings, kafka: KafkaSettings) -> None:
        self.stack = stack
        self.kafka = kafka
        self.host, self.port = kafka.first_host_port
        self.controller_port = self.port + 1
        self.home = stack.dir / "kafka"
        self.properties = self.home / "server.properties"
        self.process = ManagedProcess(
            "kafka", self.home / "kafka.pid", self.home / "kafka.log", marker=str(self.properties)
        )

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    def _write_config(self) -> None:
        data = self.home / "data"
        data.mkdir(parents=True, exist_ok=True)
        settings = {
            "process.roles": "broker,controller",
            "node.id": "1",
            "controller.quorum.voters": f"1@{self.host}:{self.controller_port}",
            "listeners": f"PLAINTEXT://{self.host}:{self.port},CONTROLLER://{self.host}:{self.controller_port}",
            "advertised.listeners": f"PLAINTEXT://{self.host}:{self.port}",
            "controller.listener.names": "CONTROLLER",
            "inter.broker.listener.name": "PLAINTEXT",
            "listener.security.protocol.map": "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
            "log.dirs": str(data.resolve()),
            "num.partitions": str(self.kafka.partitions),
            "auto.create.topics.enable": "false",
            "offsets.topic.replication.factor": "1",
            "offsets.topic.num.partitions": "10",
            "transaction.state.log.replication.factor": "1",
            "transaction.state.log.min.isr": "1",
            "share.coordinator.state.topic.replication.factor": "1",
            "share.coordinator.state.topic.min.isr": "1",
            "group.initial.rebalance.delay.ms": "0",
            "message.max.bytes": str(8 * 1024 * 1024),
        }
        self.properties.write_text("".join(f"{key}={value}\n" for key, value in settings.items()))
        (self.home / "log4j2.properties").write_text(LOG4J2_PROPERTIES)

    def _java_argv(self, java: Path, libs: Path, main: str, *args: str) -> list[str]:
        return [
            str(java),
            f"-Xmx{self.stack.kafka_heap}",
            "-Xss1m",
            "-XX:+UseG1GC",
            "-Djava.awt.headless=true",
            f"-Dlog4j2.configurationFile={(self.home / 'log4j2.properties').resolve()}",
            "-cp",
            f"{libs.resolve()}/*",
            main,
            *args,
        ]

    def _format_storage(self, java: Path, libs: Path) -> None:
        if (self.home / "data" / "meta.properties").exists():
            return
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        argv = self._java_argv(
            java,
            libs,
            "kafka.tools.StorageTool",
            "format",
            f"--cluster-id={cluster_id}",  # an id may start with "-": never a separate argument
            "-c",
            str(self.properties.resolve()),
            "--ignore-formatted",
        )
        result = subprocess.run(argv, capture_output=True, text=True, timeout=120)
        if result.returncode != 0:
            raise StackError(f"kafka storage format failed:\n{result.stdout}\n{result.stderr}")

    def up(self) -> str:
        if self.process.running():
            return "already running"
        if port_open(self.host, self.port):
            raise StackError(
                f"{self.address} is taken by another process; set IOC_KAFKA__BOOTSTRAP_SERVERS"
            )
        java = find_java(self.stack.java_home)
        libs = ensure_jars(self.stack)
        self.home.mkdir(parents=True, exist_ok=True)
        self._write_config()
        self._format_storage(java, libs)
        self.process.start(
            self._java_argv(java, libs, "kafka.Kafka", str(self.properties.resolve()))
        )
        self.process.wait_ready(lambda: port_open(self.host, self.port), self.stack.start_timeout_s)
        self.process.wait_ready(self._metadata_ok, self.stack.start_timeout_s)
        return "started"

    def _metadata_ok(self) -> bool:
        try:
            self.list_topics()
        except Exception:
            return False
        return True

    def list_topics(self) -> set[str]:
        from kafka import KafkaAdminClient

        admin = KafkaAdminClient(
            bootstrap_servers=self.kafka.bootstrap_servers,
            request_timeout_ms=5000,
            client_id="ioc-stack",
        )
        try:
            return set(admin.list_topics())
        finally:
            admin.close()

    def down(self) -> bool:
        return self.process.stop()

    def health(self) -> Health:
        running = self.process.running()
        healthy = self._metadata_ok() if port_open(self.host, self.port) else False
        detail = "ok" if healthy else ("starting or unhealthy" if running else "stopped")
        return Health(self.name, self.address, running, healthy, detail)


def ensure_topics(kafka: KafkaSettings) -> dict[str, str]:
    """Create the ioc topics (under `kafka.topic_prefix`) that are missing; return each topic's
    outcome."""
    from kafka import KafkaAdminClient
    from kafka.admin import NewTopic
    from kafka.errors import TopicAlreadyExistsError

    admin = KafkaAdminClient(bootstrap_servers=kafka.bootstrap_servers, client_id="ioc-topics")
    try:
        existing = set(admin.list_topics())
        names = {spec.name: kafka.topic(spec.name) for spec in TOPICS}
        outcome = {names[spec.name]: "exists" for spec in TOPICS if names[spec.name] in existing}
        new = [
            NewTopic(
                name=names[spec.name],
                num_partitions=kafka.partitions,
                replication_factor=kafka.replication_factor,
                topic_configs=topic_configs(spec, kafka.retention_hours),
            )
            for spec in TOPICS
            if names[spec.name] not in existing
        ]
        if new:
            with contextlib.suppress(TopicAlreadyExistsError):  # a concurrent starter won
                admin.create_topics(new)
            outcome |= {topic.name: "created" for topic in new}
        return outcome
    finally:
        admin.close()
