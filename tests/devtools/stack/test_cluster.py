"""A native 3-broker cluster (`ioc stack up --brokers 3`) under broker faults: a killed partition
leader loses no acknowledged write, the intakes answer 503 while two brokers are down and recover
by themselves, and a consumer group rebalances with a broker down.

The module runs its own stack (three Kafka nodes and PostgreSQL, free loopback ports, its own
folder): its faults would otherwise hit the session's stack. Every wait is a condition with a
generous deadline; nothing asserts on a duration.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import threading
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import ConfigResource, ConfigResourceType, NewTopic
from kafka.errors import CommitFailedError, KafkaError, RebalanceInProgressError

from ioc.api.app import create_app
from ioc.config import Settings
from ioc.devtools.stack import stack_down, stack_status, stack_up
from ioc.devtools.stack.kafka import KafkaService, kafka_nodes
from ioc.devtools.stack.process import free_port
from ioc.kafka import topics
from ioc.sensors.fiware import entity
from tests.conftest import isolated_stack_env, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.slow]

BROKERS = 3
DEADLINE_S = 120.0
API_KEY = {"X-API-Key": "k-cluster"}


def cluster_ports() -> list[int]:
    """Client ports of the nodes, each with the next port free for its controller."""
    ports: list[int] = []
    while len(ports) < BROKERS:
        port = free_port(consecutive=2)
        if all(abs(port - other) > 1 for other in ports):
            ports.append(port)
    return ports


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Settings]:
    stack_dir = tmp_path_factory.mktemp("cluster-stack")
    env = isolated_stack_env(stack_dir, "http://127.0.0.1:9/unused") | {
        "IOC_STACK__KAFKA_BROKERS": str(BROKERS),
        "IOC_KAFKA__BOOTSTRAP_SERVERS": ",".join(f"127.0.0.1:{p}" for p in cluster_ports()),
        "IOC_STACK__START_TIMEOUT_S": "180",
    }
    with pytest.MonkeyPatch.context() as patch:
        for key, value in env.items():
            patch.setenv(key, value)
        settings = Settings()
        try:
            services, _, _ = stack_up(settings)
            assert {name for name in services if name.startswith("kafka")} == {
                "kafka-1",
                "kafka-2",
                "kafka-3",
            }
            yield settings
        finally:
            stack_down(settings)
    assert not any(node.process.running() for node in nodes(settings)), "a broker survived down"


def nodes(settings: Settings) -> list[KafkaService]:
    return kafka_nodes(settings.stack, settings.kafka)


@pytest.fixture(autouse=True)
def whole_cluster(cluster: Settings) -> Iterator[None]:
    """Each test starts and leaves with every broker up (a failed test restarts its victims)."""
    yield
    for node in nodes(cluster):
        node.up()


def admin(settings: Settings) -> KafkaAdminClient:
    return KafkaAdminClient(bootstrap_servers=settings.kafka.bootstrap_servers)


def partitions(settings: Settings, topic: str) -> list[dict[str, Any]]:
    client = admin(settings)
    try:
        (described,) = client.describe_topics([topic])
        return described["partitions"]
    finally:
        client.close()


def busiest_leader(settings: Settings, topic: str) -> KafkaService:
    """The node leading the most partitions of `topic`."""
    leaders = Counter(p["leader_id"] for p in partitions(settings, topic))
    return nodes(settings)[leaders.most_common(1)[0][0] - 1]


def kill(node: KafkaService) -> None:
    """kill -9: no controlled shutdown, nothing flushed."""
    pid = node.process.pid()
    assert pid is not None, f"{node.name} is not running"
    os.killpg(pid, signal.SIGKILL)
    wait_for(lambda: not node.process.running(), timeout=30, what=f"{node.name} to die")


def fully_replicated(settings: Settings, topic: str) -> bool:
    try:
        return all(len(p["isr_nodes"]) == BROKERS for p in partitions(settings, topic))
    except Exception:  # a broker still joining: ask again
        return False


def new_topic(settings: Settings, partitions_count: int = 6) -> str:
    """A topic of the test's own, laid out as the ioc topics are (RF 3, min ISR 2)."""
    name = f"cluster-test-{uuid.uuid4().hex[:8]}"
    client = admin(settings)
    try:
        client.create_topics(
            [
                NewTopic(
                    name,
                    num_partitions=partitions_count,
                    replication_factor=settings.kafka.replication_factor,
                    topic_configs={
                        "min.insync.replicas": str(settings.kafka.effective_min_insync_replicas)
                    },
                )
            ]
        )
    finally:
        client.close()
    wait_for(lambda: fully_replicated(settings, name), timeout=DEADLINE_S, what=f"{name} ready")
    return name


class Stream:
    """A producer (acks=all, retrying through a failover) sending numbered messages from a
    thread until stopped; it remembers which were acknowledged and which failed."""

    def __init__(self, settings: Settings, topic: str, prefix: str) -> None:
        self.topic, self.prefix = topic, prefix
        self.producer = KafkaProducer(
            bootstrap_servers=settings.kafka.bootstrap_servers,
            acks="all",
            retries=1_000_000,
            delivery_timeout_ms=300_000,
            request_timeout_ms=10_000,
            max_block_ms=300_000,
            reconnect_backoff_max_ms=2_000,
            linger_ms=5,
        )
        self.acked: set[str] = set()
        self.failed: list[str] = []
        self.sent = 0
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._run, name=f"stream-{prefix}", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while not self.stopping.wait(0.01):
            value = f"{self.prefix}-{self.sent:06d}"
            future = self.producer.send(self.topic, key=value.encode(), value=value.encode())
            future.add_callback(lambda _meta, value=value: self._acked(value))
            future.add_errback(lambda error, value=value: self._failed(value, error))
            self.sent += 1

    def _acked(self, value: str) -> None:
        with self.lock:
            self.acked.add(value)

    def _failed(self, value: str, error: Exception) -> None:
        with self.lock:
            self.failed.append(f"{value}: {error!r}")

    def acknowledged(self) -> set[str]:
        with self.lock:
            return set(self.acked)

    def finish(self) -> set[str]:
        """Stop sending, wait for every answer; return the acknowledged values."""
        self.stopping.set()
        self.thread.join(timeout=30)
        self.producer.flush(timeout=DEADLINE_S)
        self.producer.close()
        assert not self.failed, f"writes failed: {self.failed[:5]}"
        return self.acknowledged()


def test_the_cluster_is_laid_out_like_compose(cluster: Settings) -> None:
    """Three healthy brokers, one status row each; ioc topics with RF 3 and min ISR 2."""
    rows = {health.service: health for health in stack_status(cluster)}
    kafka_rows = {name: row for name, row in rows.items() if name.startswith("kafka")}
    assert sorted(kafka_rows) == ["kafka-1", "kafka-2", "kafka-3"]
    assert all(row.healthy and row.detail == "ok" for row in kafka_rows.values()), kafka_rows
    assert cluster.kafka.replication_factor == 3
    assert cluster.kafka.effective_min_insync_replicas == 2
    name = cluster.kafka.topic(topics.SENSOR_EVENTS)
    assert all(len(p["replica_nodes"]) == 3 for p in partitions(cluster, name))
    client = admin(cluster)
    try:
        described = client.describe_configs(
            [ConfigResource(ConfigResourceType.TOPIC, name)], config_filter="all"
        )
        values = {key: data["value"] for key, data in described["topic"][name].items()}
    finally:
        client.close()
    assert values["min.insync.replicas"] == "2"
    assert values["unclean.leader.election.enable"] == "false"


def test_killing_the_busiest_leader_loses_no_acknowledged_write(cluster: Settings) -> None:
    """Every write the producer saw acknowledged is in the topic's log once the victim is back.

    An assigned consumer reads the log afterwards. The test used to wait for a group member that
    lived through the kill, and in the project's CI that member had not seen every acknowledged
    write after 120 s, with its coordinator marked dead and the topic missing from the metadata
    in its log: the test could not tell a lost write from a stalled kafka-python reader. How a
    group copes with a broker down is `test_a_group_rebalances_with_a_broker_down`'s subject."""
    topic = new_topic(cluster)
    stream = Stream(cluster, topic, "kill")
    try:
        wait_for(lambda: len(stream.acknowledged()) >= 300, timeout=DEADLINE_S, what="the stream")
        victim = busiest_leader(cluster, topic)
        acked_before_kill = len(stream.acknowledged())
        kill(victim)

        def failed_over() -> bool:
            try:
                leaders = {p["leader_id"] for p in partitions(cluster, topic)}
            except Exception:
                return False
            return victim.node not in leaders and -1 not in leaders

        wait_for(failed_over, timeout=DEADLINE_S, what="new leaders for the victim's partitions")
        wait_for(
            lambda: len(stream.acknowledged()) >= acked_before_kill + 500,
            timeout=DEADLINE_S,
            what="acknowledged writes with a broker down",
        )
        assert victim.up() == "started"
        wait_for(lambda: fully_replicated(cluster, topic), timeout=DEADLINE_S, what="ISR of 3")
        settled = len(stream.acknowledged())
        wait_for(
            lambda: len(stream.acknowledged()) >= settled + 200,
            timeout=DEADLINE_S,
            what="writes after the restart",
        )
        acked = stream.finish()
    finally:
        stream.stopping.set()
    stored = Counter(record.value.decode() for record in read_topic(cluster, topic))
    lost = sorted(acked - set(stored))
    assert not lost, f"{len(lost)} of {len(acked)} acknowledged writes not in the log: {lost[:5]}"
    rewritten = sum(count - 1 for count in stored.values() if count > 1)
    print(f"kill -9 {victim.name}: {len(acked)} acknowledged, all in the log; {rewritten} twice")


def test_two_brokers_down_intakes_answer_503_and_recover(cluster: Settings) -> None:
    app = create_app(Settings(hotline={"api_keys": {"cluster-test": API_KEY["X-API-Key"]}}))
    down = nodes(cluster)[1:]

    def ticket() -> Any:
        body = {
            "description": f"Cột điện đổ chắn đường ({uuid.uuid4().hex[:6]})",
            "channel": "app",
            "lat": 21.5942,
            "long": 105.8482,
        }
        return client.post("/open311/v2/requests.json", json=body, headers=API_KEY)

    def reading(observed: dict[str, Any]) -> Any:
        return client.post("/sensors/v1/observations", json=observed, headers=API_KEY)

    def observation(minutes_ago: int) -> dict[str, Any]:
        at = datetime.now(UTC) - timedelta(minutes=minutes_ago)
        return entity("test-wl-1", "FloodMonitoring", at, currentLevel=1.25)

    with TestClient(app) as client:
        assert ticket().status_code == 201, "the healthy cluster takes tickets"
        for node in down:
            assert node.down()
        refused = [ticket(), reading(observation(minutes_ago=5))]
        for response in refused:
            assert response.status_code == 503, response.text
            assert int(response.headers["retry-after"]) > 0
            (problem,) = response.json()
            assert "Kafka did not confirm the write on 2 replica(s)" in problem["description"]
            assert "retry later" in problem["description"]
        print("503 reasons:", [r.json()[0]["description"] for r in refused])

        for node in down:
            assert node.up() == "started"
        accepted = wait_for(
            lambda: (response := ticket()).status_code == 201 and response,
            timeout=DEADLINE_S,
            what="the ticket intake to recover",
        )
        request_id = accepted.json()[0]["service_request_id"]
        observed = observation(minutes_ago=1)
        stored = reading(observed)
        assert stored.status_code == 202, stored.text

    tickets = read_topic(cluster, cluster.kafka.topic(topics.HOTLINE_TICKETS))
    assert request_id.encode() in {record.key for record in tickets}
    readings = read_topic(cluster, cluster.kafka.topic(topics.SENSOR_EVENTS))
    assert observed in [json.loads(record.value) for record in readings]


def read_topic(settings: Settings, topic: str) -> list[Any]:
    """Every record of `topic` up to its end now."""
    reader = KafkaConsumer(bootstrap_servers=settings.kafka.bootstrap_servers)
    try:
        known = wait_for(
            lambda: reader.partitions_for_topic(topic), timeout=DEADLINE_S, what=f"{topic} known"
        )
        parts = [TopicPartition(topic, p) for p in known]
        reader.assign(parts)
        reader.seek_to_beginning(*parts)
        ends = reader.end_offsets(parts)
        records: list[Any] = []

        def done() -> bool:
            for batch in reader.poll(timeout_ms=500).values():
                records.extend(batch)
            return all(reader.position(p) >= end for p, end in ends.items())

        wait_for(done, timeout=DEADLINE_S, what=f"{topic} read to its end")
        return records
    finally:
        reader.close()


def test_a_group_rebalances_with_a_broker_down(cluster: Settings) -> None:
    topic = new_topic(cluster)
    stream = Stream(cluster, topic, "rebalance")
    group = f"cluster-group-{uuid.uuid4().hex[:8]}"
    seen: Counter[str] = Counter()
    every = {TopicPartition(topic, p["partition_index"]) for p in partitions(cluster, topic)}

    def member() -> KafkaConsumer:
        """A member that joins knowing the topic. Joining first and learning the partitions from
        a later metadata refresh makes kafka-python 3.0.12 rejoin at once, and in about one run in
        four of this module (CI run 31 under load, then by hand without) that member stopped
        heartbeating and polling after the rejoin, was removed 45 s later and never came back.
        The consumers of `ioc` are aiokafka's; this client only drives the test."""
        consumer = KafkaConsumer(
            bootstrap_servers=cluster.kafka.bootstrap_servers,
            group_id=group,
            auto_offset_reset="earliest",
            enable_auto_commit=False,
            max_poll_records=50,
            metadata_max_age_ms=1000,
        )

        def knows_every_partition() -> bool:
            try:
                return consumer.partitions_for_topic(topic) == {p.partition for p in every}
            except KafkaError:  # asked the broker that is down: ask again
                return False

        wait_for(knows_every_partition, timeout=DEADLINE_S, what="the member to know the topic")
        consumer.subscribe([topic])
        members.append(consumer)
        return consumer

    def step() -> None:
        """One poll of every member, committing what it read (at-least-once). A commit refused
        because the group is rebalancing (CI run 138: a member joined between a poll and its
        commit) is not an error: the partitions' next owner reads those records again from the
        last commit, which is the at-least-once delivery this test checks."""
        for consumer in members:
            batches = consumer.poll(timeout_ms=200)
            for batch in batches.values():
                seen.update(record.value.decode() for record in batch)
            if batches:
                with contextlib.suppress(RebalanceInProgressError, CommitFailedError):
                    consumer.commit()

    def state() -> str:
        """What the group looked like, for a failure: CI run 31 (under load) saw the first member
        stop heartbeating 45 s after its assignment, with nothing read, and never rejoin."""
        found = [
            f"member {index}: assignment {sorted(tp.partition for tp in consumer.assignment())},"
            f" coordinator {getattr(consumer._coordinator, 'coordinator_id', '?')}"
            for index, consumer in enumerate(members)
        ]
        return f"{len(seen)} read, {len(stream.acknowledged())} acknowledged; " + "; ".join(found)

    def until(probe: Callable[[], bool | None], what: str) -> None:
        try:
            wait_for(probe, timeout=DEADLINE_S, what=what)
        except AssertionError as error:
            raise AssertionError(f"{error} ({state()})") from None

    members: list[KafkaConsumer] = []
    try:
        first = member()
        until(lambda: step() or len(seen) >= 200, "first member")
        victim = busiest_leader(cluster, topic)  # asked while every broker answers
        kill(victim)
        second = member()

        def shared() -> bool:
            step()
            mine, theirs = first.assignment(), second.assignment()
            return bool(mine) and bool(theirs) and not mine & theirs and mine | theirs == every

        until(shared, "the join rebalance with a broker down")
        count = len(seen)
        until(lambda: step() or len(seen) >= count + 200, "reading")
        members.remove(first)
        first.close()  # leaves the group: its partitions move to the second member
        until(lambda: step() or second.assignment() == every, "the leave rebalance, a broker down")
        acked = stream.finish()
        until(lambda: step() or acked <= set(seen), "the group to consume every acknowledged one")
        assert victim.up() == "started"
    finally:
        stream.stopping.set()
        for consumer in members:
            consumer.close()
    print(f"rebalanced with {victim.name} down: {len(acked)} messages consumed by the group")


def test_status_shows_the_nodes_up_started(cluster: Settings) -> None:
    """`ioc stack status` (and `down`, checked as the module ends) act on the nodes `up`
    started, without --brokers: a single-node view of the same stack dir sees three rows."""
    single = cluster.model_copy(
        update={"stack": cluster.stack.model_copy(update={"kafka_brokers": 1})}
    )
    names = [h.service for h in stack_status(single) if h.service.startswith("kafka")]
    assert names == ["kafka-1", "kafka-2", "kafka-3"]
