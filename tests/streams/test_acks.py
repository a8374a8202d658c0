"""At-least-once across a SIGKILL, in the scenario of faust-streaming #606: a slow first event,
fast later ones, a commit while the slow one is still in flight, then kill -9.

The `actors` path (several actors on one stream, as the hotline agent ran before) commits past the
slow event, so the restarted worker never sees it: that case is a strict xfail, which turns into
a failure the day a faust-streaming release fixes #606 (then `ioc.streams.acks` can be revisited).
The `ordered` path (`ioc.streams.acks`), which the streams agents use, must redeliver it.
"""

from __future__ import annotations

import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from kafka import KafkaAdminClient, KafkaProducer, TopicPartition
from kafka.admin import NewTopic

from ioc.config import Settings
from tests.conftest import REPO, wait_for

pytestmark = pytest.mark.integration

FAST = [f"fast-{index}" for index in range(1, 6)]


class EventLost(AssertionError):
    """The event in flight at the kill never came back: its offset was committed."""


class Harness:
    """The regression worker as a child process, its log, and the group's committed offsets."""

    def __init__(self, settings: Settings, mode: str, folder: Path) -> None:
        run = uuid.uuid4().hex[:8]
        self.bootstrap = settings.kafka.bootstrap_servers
        self.group = f"ioc-regression-{mode}-{run}"
        self.topic = f"regression.events.{run}"
        self.probe_topic = f"regression.probe.{run}"
        self.log = folder / "processed.log"
        self.release = folder / "release"
        self.folder = folder
        self.child: subprocess.Popen[bytes] | None = None
        self.mode = mode
        self.admin = KafkaAdminClient(bootstrap_servers=self.bootstrap)
        self.admin.create_topics([NewTopic(name, 1, 1) for name in (self.topic, self.probe_topic)])
        self.producer = KafkaProducer(bootstrap_servers=self.bootstrap, acks="all")

    def send(self, topic: str, *values: str) -> None:
        for value in values:
            self.producer.send(topic, value.encode()).get(timeout=30)

    def start(self) -> None:
        argv = [
            sys.executable,
            "-m",
            "tests.streams.ack_worker",
            self.mode,
            self.bootstrap,
            self.group,
            self.topic,
            self.probe_topic,
            str(self.log),
            str(self.release),
            str(self.folder / "faust-data"),
        ]
        output = (self.folder / "worker.log").open("ab")
        self.child = subprocess.Popen(argv, cwd=REPO, stdout=output, stderr=subprocess.STDOUT)

    def kill(self) -> None:
        assert self.child is not None
        self.child.kill()
        self.child.wait()

    def stop(self) -> None:
        if self.child is not None and self.child.poll() is None:
            self.child.terminate()
            try:
                self.child.wait(30)
            except subprocess.TimeoutExpired:
                self.kill()
        self.producer.close()
        self.admin.close()

    def lines(self) -> list[str]:
        return self.log.read_text().splitlines() if self.log.exists() else []

    def committed(self, topic: str) -> int:
        offsets = self.admin.list_group_offsets([self.group]).get(self.group, {})
        entry = offsets.get(TopicPartition(topic, 0))
        return entry.offset if entry is not None else -1

    def alive(self) -> bool:
        assert self.child is not None
        if self.child.poll() is not None:
            raise AssertionError(
                f"the regression worker exited: {(self.folder / 'worker.log').read_text()[-3000:]}"
            )
        return True


@pytest.fixture
def harness(
    request: pytest.FixtureRequest, live_stack: Settings, tmp_path: Path
) -> Iterator[Harness]:
    running = Harness(live_stack, request.param, tmp_path)
    yield running
    running.stop()


@pytest.mark.parametrize(
    "harness",
    [
        pytest.param(
            "actors",
            marks=pytest.mark.xfail(
                strict=True,
                raises=EventLost,
                reason="faust-streaming #606: commits past an event in flight",
            ),
        ),
        "ordered",
    ],
    indirect=True,
)
def test_an_event_in_flight_at_a_kill_is_processed_after_the_restart(harness: Harness) -> None:
    harness.send(harness.topic, "slow", *FAST)
    harness.start()
    wait_for(
        lambda: (
            harness.alive()
            and {"started slow", *(f"done {value}" for value in FAST)} <= set(harness.lines())
        ),
        timeout=120,
        what="the fast events done while the slow one is in flight",
    )
    # A commit after the fast events were done: the probe's offset is committed with them.
    harness.send(harness.probe_topic, "probe")
    wait_for(
        lambda: harness.alive() and harness.committed(harness.probe_topic) == 1,
        timeout=60,
        what="a commit after the fast events",
    )
    assert "done slow" not in harness.lines()
    harness.kill()

    harness.release.touch()
    harness.start()
    harness.send(harness.probe_topic, "probe after the restart")
    wait_for(
        lambda: (
            harness.alive()
            and harness.committed(harness.probe_topic) == 2
            and harness.committed(harness.topic) == 1 + len(FAST)
        ),
        timeout=120,
        what="the restarted worker to commit everything",
    )
    if "done slow" not in harness.lines():
        raise EventLost("the event in flight at the kill was lost")
