"""`ioc replay`: a recording republished into a sandbox and run through the streams app there.

Input topics (frames, detections, tickets, sensor events, with the recorded clock ticks) are
republished with their keys, headers and original timestamps, merged in timestamp order onto one
partition per topic, so the sandbox's agents see the same event times, windows and ticks as the
live ones did, in the same order on every replay. Derived topics (candidates, incidents, alerts,
dead letters) are produced again by the sandbox pipeline, never copied. The sandbox runs no alert
delivery: a replay never pages anyone.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

import psycopg
from psycopg.rows import dict_row

from ioc.config import Settings
from ioc.devtools.replay.recording import RecordedMessage, Recording
from ioc.devtools.replay.sandbox import RulesFile, Sandbox, SandboxError
from ioc.devtools.scenario.workers import Workers
from ioc.devtools.stack.process import log_tail
from ioc.kafka import topics
from ioc.kafka.clients import producer
from ioc.kafka.lag import consumer_lag
from ioc.runtime import run_async
from ioc.services import worker_specs

INPUT_TOPICS = (
    topics.CAMERA_FRAMES,
    topics.VISION_DETECTIONS,
    topics.HOTLINE_TICKETS,
    topics.SENSOR_EVENTS,
)
WORKER_START_TIMEOUT_S = 120.0
STALL_TIMEOUT_S = 120.0  # no progress for this long while messages wait: the sandbox is stuck
SEND_WINDOW = 2000  # produce futures in flight before waiting for their acknowledgements
# Lag is read this often while draining; two readings of no lag in a row end the replay. At 1 s,
# the poll alone was 1.5 s of an 8 s replay.
DRAIN_POLL_S = 0.25


def derived(message: RecordedMessage) -> bool:
    """A message a worker derived from inputs: the sandbox's workers derive it again."""
    return topics.is_derived(message.headers)


def logical_topic(name: str) -> str | None:
    """The `ioc.kafka.topics` name a recorded topic stands for (a sandbox's recording is
    prefixed)."""
    for spec in topics.TOPICS:
        if name == spec.name or name.endswith("." + spec.name):
            return spec.name
    return None


@dataclass(frozen=True)
class CandidateView:
    """A source's incident as the rules decided it, without processing-time fields."""

    id: str
    source: str
    source_key: str
    kind: str
    severity: str
    status: str
    event_time: datetime
    reports: int

    @property
    def head_key(self) -> str:
        return self.source_key


@dataclass(frozen=True)
class IncidentView:
    """A fused incident as a replay decided it, without processing-time fields (version
    counts, wall-clock stamps), so two replays of one recording can be compared field by field."""

    id: str
    kind: str
    severity: str
    status: str
    scope: str
    sources: int
    reports: int
    event_time: datetime
    district: str | None
    title: str
    head_key: str  # the earliest candidate's ticket, sensor or camera id
    members: tuple[str, ...]


@dataclass(frozen=True)
class Outcome:
    """What a sandbox holds after a replay. `incidents` are those staff act on: an incident
    merged into an earlier one is left out, because whether it ever existed depends on the order
    fusion saw the candidates in (a later candidate first opens its own), not on the inputs."""

    candidates: tuple[CandidateView, ...]
    incidents: tuple[IncidentView, ...]
    rows: dict[str, int]


OUTCOME_TABLES = ("sensor_readings", "detections", "tickets", "dead_letters")


def read_outcome(dsn: str) -> Outcome:
    with psycopg.connect(dsn, row_factory=dict_row) as conn:
        candidates = tuple(
            CandidateView(**row)
            for row in conn.execute(
                "SELECT id, source, source_key, kind, severity, status, event_time, reports"
                " FROM incidents ORDER BY event_time, id"
            )
        )
        incidents = []
        for row in conn.execute(
            "SELECT id, kind, severity, status, scope, sources, reports, event_time, district,"
            " title, members FROM fused_incidents WHERE status <> 'merged' ORDER BY event_time, id"
        ):
            members = sorted(row.pop("members"), key=lambda m: (m["event_time"], m["id"]))
            incidents.append(
                IncidentView(
                    **row,
                    head_key=members[0]["source_key"] if members else "",
                    members=tuple(sorted(m["id"] for m in members)),
                )
            )
        rows = {
            table: conn.execute(f"SELECT count(*) AS n FROM {table}").fetchone()["n"]  # type: ignore[index]
            for table in OUTCOME_TABLES
        }
    return Outcome(tuple(candidates), tuple(incidents), rows)


@dataclass
class ReplayResult:
    sandbox: Sandbox
    schema: str
    topic_prefix: str
    published: Counter[str] = field(default_factory=Counter)
    not_replayed: list[str] = field(default_factory=list)  # derived topics in the recording
    span_s: float = 0.0  # recorded time covered by what was republished
    processing_s: float = 0.0  # first message published → sandbox drained
    total_s: float = 0.0  # with sandbox set-up and worker start
    outcome: Outcome | None = None

    @property
    def messages(self) -> int:
        return sum(self.published.values())

    @property
    def speedup(self) -> float:
        """Recorded time per second of replay: 50 means an hour in 72 s."""
        return self.span_s / self.processing_s if self.processing_s else 0.0

    @property
    def rate(self) -> float:
        return self.messages / self.processing_s if self.processing_s else 0.0


@dataclass(frozen=True)
class Pace:
    """`speed` recorded seconds per wall second; None: as fast as the sandbox takes them."""

    speed: float | None


Progress = Callable[[int, int], None]  # (published, processed)


def replayable(recording: Recording) -> tuple[list[str], list[str]]:
    """(recorded topics to republish, recorded topics left out because the sandbox derives them)."""
    replay, derived = [], []
    for name in recording.manifest.topics:
        (replay if logical_topic(name) in INPUT_TOPICS else derived).append(name)
    return replay, derived


async def _republish(
    recording: Recording,
    names: list[str],
    sandbox: Settings,
    pace: Pace,
    published: Counter[str],
) -> None:
    client = producer(sandbox.kafka, "ioc-replay")
    await client.start()
    try:
        pending: list[asyncio.Future[Any]] = []
        first_ms: int | None = None
        started = time.monotonic()
        for message in recording.messages(names):
            if first_ms is None:
                first_ms = message.timestamp_ms
            if pace.speed is not None:
                due = (message.timestamp_ms - first_ms) / 1000 / pace.speed
                delay = due - (time.monotonic() - started)
                if delay > 0:
                    await asyncio.sleep(delay)
            name = logical_topic(message.topic)
            assert name is not None
            if derived(message):
                continue
            pending.append(
                await client.send(
                    sandbox.kafka.topic(name),
                    key=message.key,
                    value=message.value,
                    headers=list(message.headers),
                    partition=0,
                    timestamp_ms=message.timestamp_ms,
                )
            )
            published[name] += 1
            if len(pending) >= SEND_WINDOW:
                await asyncio.gather(*pending)
                pending.clear()
        await asyncio.gather(*pending)
    finally:
        await client.stop()


class Replayer:
    """One replay of one recording into one sandbox, from reset to outcome."""

    def __init__(
        self,
        live: Settings,
        sandbox: Sandbox,
        pace: Pace,
        rules: RulesFile | None = None,
        on_progress: Progress | None = None,
    ) -> None:
        self.live = live
        self.sandbox = sandbox
        self.pace = pace
        self.rules = rules
        self.on_progress = on_progress or (lambda published, processed: None)

    def run(self, recording: Recording) -> ReplayResult:
        began = time.monotonic()
        names, derived = replayable(recording)
        if not names:
            raise SandboxError(
                "the recording holds no input topic to replay "
                f"({', '.join(INPUT_TOPICS)}); it has {', '.join(derived) or 'nothing'}"
            )
        self.sandbox.check(self.live)
        settings = self.sandbox.reset(self.live)
        result = ReplayResult(self.sandbox, self.sandbox.schema, self.sandbox.topic_prefix)
        result.not_replayed = derived
        stamps = [p for p in recording.manifest.partitions if p.topic in names and p.count]
        if stamps:
            first = min(p.first_timestamp_ms for p in stamps)
            last = max(p.last_timestamp_ms for p in stamps)
            result.span_s = (last - first) / 1000
        env = (self.rules.env() if self.rules else {}) | self.sandbox.overrides(self.live)
        spec = replace(worker_specs(settings)[0], name=f"replay-{self.sandbox.name}")
        workers = Workers(settings, specs=[spec], env=env)
        try:
            workers.start()
            workers.wait_ready(WORKER_START_TIMEOUT_S)
            started = time.monotonic()
            run_async(self._publish_and_drain(recording, names, settings, workers, result))
            result.processing_s = time.monotonic() - started
        finally:
            workers.stop()
        result.outcome = read_outcome(settings.database.dsn)
        result.total_s = time.monotonic() - began
        return result

    async def _publish_and_drain(
        self,
        recording: Recording,
        names: list[str],
        settings: Settings,
        workers: Workers,
        result: ReplayResult,
    ) -> None:
        spec = workers.specs[0]
        # What the sandbox's streams app reads of the inputs (frames only wait there, to look at).
        inputs = {settings.kafka.topic(name) for name in INPUT_TOPICS}
        groups = spec.groups()

        async def lags() -> tuple[int, int]:
            found = await asyncio.to_thread(consumer_lag, settings.kafka, groups)
            waiting_inputs = sum(
                found[(group, t)] for group, names in groups.items() for t in names if t in inputs
            )
            return waiting_inputs, sum(found.values())

        publishing = asyncio.create_task(
            _republish(recording, names, settings, self.pace, result.published)
        )
        quiet, processed, last_change = 0, -1, time.monotonic()
        while True:
            await asyncio.sleep(DRAIN_POLL_S)
            workers.check_alive()
            if publishing.done():
                publishing.result()  # a failed publish fails the replay
            waiting_inputs, waiting = await lags()
            sent = result.messages
            done = max(0, sent - waiting_inputs)
            self.on_progress(sent, done)
            if done != processed:
                processed, last_change = done, time.monotonic()
            if publishing.done():
                quiet = quiet + 1 if waiting == 0 else 0
                if quiet >= 2:
                    return
            if waiting and time.monotonic() - last_change > STALL_TIMEOUT_S:
                raise SandboxError(
                    f"the sandbox made no progress for {STALL_TIMEOUT_S:.0f} s with {waiting} "
                    f"messages waiting. Log tail:\n{log_tail(workers.log_file(spec.name))}"
                )
