"""A local Apache Kafka (KRaft, each node a combined broker+controller) from the broker's own jars.

One node by default; with `stack.kafka_brokers` = 3 a cluster like docker-compose.yml's: node n
serves the n-th address of `kafka.bootstrap_servers` (its controller the port after), all nodes
are voters of one controller quorum and share one cluster id, and the brokers default to
replication factor 3, min.insync.replicas 2 and no unclean leader election. A cluster is
PLAINTEXT only (SASL and TLS are served by the single node below): it exists to prove that one
broker can be lost without losing an acknowledged write, which needs no credentials.

The jars are resolved from a Maven repository against a checksummed lock file
(`kafka-<version>.artifacts`, one `group:artifact:version sha256` per line) and cached outside
the repository, so every clone on a machine shares one download.

With `kafka.security_protocol` other than PLAINTEXT the broker serves what the clients will use
in production: its client listener (`kafka.bootstrap_servers`) takes that protocol, SCRAM users
are SASL-authenticated (the one user of the settings, created when the storage is formatted),
and TLS uses a CA and server certificate generated with `openssl` into `<stack dir>/kafka/tls`
(clients trust `ca.pem` through `IOC_KAFKA__SSL_CAFILE`). Inter-broker traffic then goes over a
loopback PLAINTEXT listener on the port after the controller's (client port + 2), so the broker
needs no credentials of its own. No authorizer is configured: any authenticated user may do
anything, so no ACLs are needed (and there is no `super.users`).
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import ipaddress
import secrets
import shutil
import subprocess
import urllib.request
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

from ioc.config import KafkaSettings, StackSettings
from ioc.devtools.stack.java import find_java
from ioc.devtools.stack.process import Health, ManagedProcess, StackError, port_open
from ioc.kafka import clients as kafka_clients
from ioc.kafka.clients import SASL_PROTOCOLS, SSL_PROTOCOLS, KafkaRefused
from ioc.kafka.topics import TOPICS, topic_configs

if TYPE_CHECKING:
    from kafka import KafkaAdminClient

T = TypeVar("T")
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


def node_name(node: int, nodes: int) -> str:
    """`kafka` for the single node (its folder and health row), `kafka-<n>` in a cluster."""
    return "kafka" if nodes == 1 else f"kafka-{node}"


class KafkaService:
    """One local Kafka node (loopback): the single broker at the first address of
    `kafka.bootstrap_servers`, or node `node` of a cluster of `stack.kafka_brokers`."""

    def __init__(self, stack: StackSettings, kafka: KafkaSettings, node: int = 1) -> None:
        self.stack = stack
        self.kafka = kafka
        self.node = node
        self.nodes = stack.kafka_brokers
        self.name = node_name(node, self.nodes)
        self.host, self.port = kafka.addresses[node - 1]
        self.controller_port = self.port + 1
        self.internal_port = self.port + 2  # inter-broker, only when the client port is secured
        self.home = stack.dir / self.name
        self.tls_dir = self.home / "tls"
        self.scram_marker = self.home / "scram-user"  # who the storage was formatted with
        self.properties = self.home / "server.properties"
        self.process = ManagedProcess(
            "kafka", self.home / "kafka.pid", self.home / "kafka.log", marker=str(self.properties)
        )

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def secured(self) -> bool:
        return self.kafka.security_protocol != "PLAINTEXT"

    @property
    def ca_file(self) -> Path:
        """The CA that signed the broker's certificate: what `kafka.ssl_cafile` must name."""
        return self.tls_dir / "ca.pem"

    @property
    def voters(self) -> str:
        """`controller.quorum.voters`: every node of the cluster, by id and controller port."""
        addresses = self.kafka.addresses[: self.nodes]
        return ",".join(f"{n}@{host}:{port + 1}" for n, (host, port) in enumerate(addresses, 1))

    def sibling(self, node: int) -> KafkaService:
        """Another node of this node's cluster."""
        return KafkaService(self.stack, self.kafka, node)

    def _check_security(self) -> None:
        """Refuse what the local broker cannot serve, before anything is written."""
        protocol = self.kafka.security_protocol
        if self.secured and self.nodes > 1:
            raise StackError(
                f"the local {self.nodes}-broker cluster is PLAINTEXT only; {protocol} is served "
                "by the single local broker (IOC_STACK__KAFKA_BROKERS=1)"
            )
        if self.kafka.replication_factor > self.nodes:
            raise StackError(
                f"replication factor {self.kafka.replication_factor} needs as many local "
                f"brokers: `ioc stack up --brokers {self.kafka.replication_factor}`"
            )
        if protocol in SASL_PROTOCOLS and not self.kafka.sasl_mechanism.startswith("SCRAM-"):
            raise StackError("the local broker serves SCRAM-SHA-256/512 only, not PLAIN")
        if protocol in SSL_PROTOCOLS and self.kafka.ssl_cafile is None:
            raise StackError(
                f"{protocol} needs the local broker's CA: set "
                f"IOC_KAFKA__SSL_CAFILE={self.ca_file.resolve()} (created by this `stack up`)"
            )
        password = self.kafka.sasl_password
        if protocol in SASL_PROTOCOLS and password and set(password.get_secret_value()) & set(',"'):
            # StorageTool's --add-scram splits on commas, quotes delimit the value.
            raise StackError('the local broker cannot create a SCRAM password with , or "')

    def _listeners(self) -> dict[str, str]:
        host, protocol = self.host, self.kafka.security_protocol
        controller = f"CONTROLLER://{host}:{self.controller_port}"
        if not self.secured:
            return {
                "listeners": f"PLAINTEXT://{host}:{self.port},{controller}",
                "advertised.listeners": f"PLAINTEXT://{host}:{self.port}",
                "inter.broker.listener.name": "PLAINTEXT",
                "listener.security.protocol.map": "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
            }
        internal = f"INTERNAL://{host}:{self.internal_port}"
        listeners = {
            "listeners": f"CLIENT://{host}:{self.port},{internal},{controller}",
            "advertised.listeners": f"CLIENT://{host}:{self.port},{internal}",
            "inter.broker.listener.name": "INTERNAL",
            "listener.security.protocol.map": (
                f"CONTROLLER:PLAINTEXT,INTERNAL:PLAINTEXT,CLIENT:{protocol}"
            ),
        }
        if protocol in SASL_PROTOCOLS:
            mechanism = self.kafka.sasl_mechanism
            listeners |= {
                "listener.name.client.sasl.enabled.mechanisms": mechanism,
                f"listener.name.client.{mechanism.lower()}.sasl.jaas.config": (
                    "org.apache.kafka.common.security.scram.ScramLoginModule required;"
                ),
            }
        if protocol in SSL_PROTOCOLS:
            listeners |= {
                "listener.name.client.ssl.keystore.type": "PEM",
                "listener.name.client.ssl.keystore.location": str(self._ensure_tls().resolve()),
            }
        return listeners

    def _ensure_tls(self) -> Path:
        """A CA and a server certificate for the broker's host, made once with `openssl` (kept,
        so clients go on trusting `ca.pem`); returns the PEM keystore (key, then chain)."""
        keystore = self.tls_dir / "server-keystore.pem"
        if keystore.exists():
            return keystore
        openssl = shutil.which("openssl")
        if openssl is None:
            raise StackError("a TLS listener on the local broker needs `openssl` on PATH")
        self.tls_dir.mkdir(parents=True, exist_ok=True)
        try:
            name = f"IP:{ipaddress.ip_address(self.host)}"
        except ValueError:
            name = f"DNS:{self.host}"
        (self.tls_dir / "server.ext").write_text(
            f"subjectAltName=IP:127.0.0.1,DNS:localhost,{name}\n"
            "basicConstraints=CA:FALSE\n"
            "keyUsage=critical,digitalSignature,keyEncipherment\n"
            "extendedKeyUsage=serverAuth\n"
        )
        # Run in tls_dir: file names without spaces, so each command splits on whitespace.
        commands = [
            "req -x509 -newkey rsa:2048 -nodes -days 3650 -subj /CN=ioc-local-stack-CA "
            "-keyout ca.key -out ca.pem -addext basicConstraints=critical,CA:TRUE "
            "-addext keyUsage=critical,keyCertSign,cRLSign",
            f"req -newkey rsa:2048 -nodes -subj /CN={self.host} -keyout server.key -out server.csr",
            f"x509 -req -in server.csr -CA ca.pem -CAkey ca.key -set_serial "
            f"0x{secrets.token_hex(16)} -days 825 -extfile server.ext -out server.pem",
        ]
        for command in commands:
            result = subprocess.run(
                [openssl, *command.split()],
                cwd=self.tls_dir,
                capture_output=True,
                text=True,
                timeout=60,
            )
            if result.returncode != 0:
                raise StackError(f"openssl {command}\nfailed: {result.stderr}")
        server_key, ca_key = self.tls_dir / "server.key", self.tls_dir / "ca.key"
        partial = keystore.with_suffix(".part")
        chain = [server_key, self.tls_dir / "server.pem", self.ca_file]
        partial.write_text("".join(path.read_text() for path in chain))
        for secret in (ca_key, server_key, partial):
            secret.chmod(0o600)
        partial.rename(keystore)
        return keystore

    def _write_config(self) -> None:
        data = self.home / "data"
        data.mkdir(parents=True, exist_ok=True)
        # As docker-compose.yml's brokers: what Faust's changelogs and the internal topics get.
        replicas = str(self.kafka.replication_factor)
        min_isr = str(self.kafka.effective_min_insync_replicas)
        settings = {
            "process.roles": "broker,controller",
            "node.id": str(self.node),
            "controller.quorum.voters": self.voters,
            **self._listeners(),
            "controller.listener.names": "CONTROLLER",
            "log.dirs": str(data.resolve()),
            "num.partitions": str(self.kafka.partitions),
            "default.replication.factor": replicas,
            "min.insync.replicas": min_isr,
            # Never elect an out-of-sync replica: that would drop acknowledged writes silently.
            "unclean.leader.election.enable": "false",
            "auto.create.topics.enable": "false",
            "offsets.topic.replication.factor": replicas,
            "offsets.topic.num.partitions": "10",
            "transaction.state.log.replication.factor": replicas,
            "transaction.state.log.min.isr": min_isr,
            "share.coordinator.state.topic.replication.factor": replicas,
            "share.coordinator.state.topic.min.isr": min_isr,
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
        """Format the KRaft storage once; a SCRAM user can only be added here (no admin user
        exists yet to add it later), so a stack formatted for another user is refused."""
        kafka = self.kafka
        scram_user = (
            f"{kafka.sasl_mechanism} {kafka.sasl_username}"
            if kafka.security_protocol in SASL_PROTOCOLS
            else ""
        )
        if (self.home / "data" / "meta.properties").exists():
            formatted = self.scram_marker.read_text() if self.scram_marker.exists() else ""
            if formatted != scram_user:
                raise StackError(
                    f"{self.home} was formatted for SCRAM user {formatted or '(none)'!r}, not "
                    f"{scram_user or '(none)'!r}: stop the stack and remove {self.home} (its "
                    "topics are lost) or use another IOC_STACK__DIR"
                )
            return
        cluster_id = self._cluster_id()
        scram: list[str] = []
        if scram_user and kafka.sasl_password:
            password = kafka.sasl_password.get_secret_value()
            scram = [
                "--add-scram",
                f'{kafka.sasl_mechanism}=[name="{kafka.sasl_username}",password="{password}"]',
            ]
        argv = self._java_argv(
            java,
            libs,
            "kafka.tools.StorageTool",
            "format",
            f"--cluster-id={cluster_id}",  # an id may start with "-": never a separate argument
            "-c",
            str(self.properties.resolve()),
            "--ignore-formatted",
            *scram,
        )
        result = subprocess.run(argv, capture_output=True, text=True, timeout=120)
        if result.returncode != 0:
            raise StackError(f"kafka storage format failed:\n{result.stdout}\n{result.stderr}")
        self.scram_marker.write_text(scram_user)

    def _cluster_id(self) -> str:
        """The id the cluster's formatted nodes share (a node joins only its own cluster), or
        a new one."""
        for node in range(1, self.nodes + 1):
            meta = self.sibling(node).home / "data" / "meta.properties"
            if meta.exists():
                for line in meta.read_text().splitlines():
                    if line.startswith("cluster.id="):
                        return line.partition("=")[2].strip()
        return base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")

    def up(self) -> str:
        """Start the node and wait until it serves metadata with every broker of the cluster
        registered; a node whose peers are not running yet cannot (its quorum has no majority),
        so it is only waited for until its controller listens: the last node started waits for
        the whole cluster."""
        if self.process.running():
            return "already running"
        if port_open(self.host, self.port):
            raise StackError(
                f"{self.address} is taken by another process; set IOC_KAFKA__BOOTSTRAP_SERVERS"
            )
        if self.secured and port_open(self.host, self.internal_port):
            raise StackError(
                f"{self.host}:{self.internal_port} (the inter-broker listener, client port + 2) "
                "is taken by another process; set IOC_KAFKA__BOOTSTRAP_SERVERS"
            )
        self._check_security()
        java = find_java(self.stack.java_home)
        libs = ensure_jars(self.stack)
        self.home.mkdir(parents=True, exist_ok=True)
        self._write_config()
        self._format_storage(java, libs)
        self.process.start(
            self._java_argv(java, libs, "kafka.Kafka", str(self.properties.resolve()))
        )
        timeout = self.stack.start_timeout_s
        peers = [self.sibling(node) for node in range(1, self.nodes + 1) if node != self.node]
        if not all(peer.process.running() for peer in peers):
            self.process.wait_ready(lambda: port_open(self.host, self.controller_port), timeout)
            return "started"
        self.process.wait_ready(lambda: port_open(self.host, self.port), timeout)
        self.process.wait_ready(lambda: (self._brokers_seen() or 0) >= self.nodes, timeout)
        return "started"

    def _brokers_seen(self) -> int | None:
        """Brokers registered in the metadata this node answers with (None: no answer); a
        refused login or certificate fails at once (no use waiting)."""
        try:
            return len(self._admin_call(lambda admin: admin.describe_cluster()["brokers"]))
        except KafkaRefused as error:
            raise StackError(str(error)) from None
        except Exception:
            return None

    def list_topics(self) -> set[str]:
        """Over the client listener, with the clients' credentials (a probe of what they get)."""
        return set(self._admin_call(lambda admin: admin.list_topics()))

    def _admin_call(self, call: Callable[[KafkaAdminClient], T]) -> T:
        """`call` on an admin client that bootstraps from this node only."""
        own = self.kafka.model_copy(update={"bootstrap_servers": self.address})
        admin = kafka_clients.admin(own, "ioc-stack", request_timeout_ms=5000)
        try:
            return call(admin)
        finally:
            admin.close()

    def down(self) -> bool:
        return self.process.stop()

    def health(self) -> Health:
        running = self.process.running()
        try:
            seen = self._brokers_seen() if port_open(self.host, self.port) else None
        except StackError as error:
            return Health(self.name, self.address, running, False, str(error))
        if seen is None:
            detail = "starting or unhealthy" if running else "stopped"
        elif seen < self.nodes:
            detail = f"ok; {seen} of {self.nodes} brokers registered"
        else:
            detail = "ok"
        return Health(self.name, self.address, running, seen is not None, detail)


def kafka_nodes(stack: StackSettings, kafka: KafkaSettings) -> list[KafkaService]:
    """The local Kafka's nodes per settings, in start order."""
    return [KafkaService(stack, kafka, node) for node in range(1, stack.kafka_brokers + 1)]


def stop_together(nodes: list[KafkaService]) -> dict[str, bool]:
    """Stop the nodes at once, returning whether each was running: stopped one after another,
    the last would have lost its controller quorum and hang in its shutdown until killed."""
    with ThreadPoolExecutor(max(1, len(nodes))) as pool:
        stopped = pool.map(KafkaService.down, nodes)
        return dict(zip([node.name for node in nodes], stopped, strict=True))


def ensure_topics(kafka: KafkaSettings) -> dict[str, str]:
    """Create the ioc topics (under `kafka.topic_prefix`) that are missing; return each topic's
    outcome."""
    from kafka.admin import NewTopic
    from kafka.errors import TopicAlreadyExistsError

    admin = kafka_clients.admin(kafka, "ioc-topics")
    try:
        existing = set(admin.list_topics())
        names = {spec.name: kafka.topic(spec.name) for spec in TOPICS}
        outcome = {names[spec.name]: "exists" for spec in TOPICS if names[spec.name] in existing}
        new = [
            NewTopic(
                name=names[spec.name],
                num_partitions=kafka.partitions,
                replication_factor=kafka.replication_factor,
                topic_configs=topic_configs(spec, kafka),
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
