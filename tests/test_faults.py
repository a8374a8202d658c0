"""Fault tests: the pipeline under a killed worker, a restarted broker, a stopped database and a
burst of ten times the nominal rate, with input flowing the whole time. Each test sends its own
tickets, sensor readings (and, for the burst, camera frames) and proves that every one of them
is stored exactly once, every sensor window counts exactly its readings, and nothing went to the
dead-letter topic.

The module runs its own stack (broker, database, workers): the faults would otherwise hit the
session's stack under the other tests.

Nominal rates (a district-sized load on this test stack): 1 ticket/s, 8 sensors at one reading per
2 s, 4 cameras at one frame per 2 s.
"""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest

from ioc.config import Settings
from ioc.devtools.scenario.workers import Workers
from ioc.devtools.stack import stack_down, stack_up
from ioc.devtools.stack.kafka import KafkaService
from ioc.devtools.stack.postgres import PostgresService
from ioc.kafka import topics
from ioc.models import FrameHeaders
from ioc.sensors import fiware
from tests.conftest import (
    WebhookReceiver,
    dead_letters,
    isolated_stack_env,
    started_workers,
    wait_for,
)

pytestmark = [pytest.mark.integration, pytest.mark.slow]

PHASES = ("kill", "broker", "database", "burst")
SENSORS_PER_PHASE = 8
CAMERAS = ("cam-tn-cho-thai", "cam-tn-ql3-gia-sang", "cam-tn-kcn-song-cong", "cam-test-health")
TICKETS_PER_S = 1.0
READINGS_PER_S = SENSORS_PER_PHASE / 2.0
FRAMES_PER_S = len(CAMERAS) / 2.0
READING_STEP_S = 10  # event time between two readings of a sensor: six per one-minute window
CLOSE_AFTER = timedelta(minutes=5)  # a last reading this far ahead closes every window
BURST_S = 30  # long enough for lag to build in every group and for stale frames to be skipped


def sensor_ids(phase: str) -> list[str]:
    return [f"fault-{phase}-{index}" for index in range(SENSORS_PER_PHASE)]


def write_registry(path: Path) -> Path:
    """The phases' sensors: each phase has its own, so windows never mix phases."""
    entries = []
    for phase_index, phase in enumerate(PHASES):
        for index, sensor in enumerate(sensor_ids(phase)):
            entries.append(
                f'[[sensors]]\nid = "{sensor}"\nname = "Fault test {phase} {index}"\n'
                'type = "AirQualityObserved"\nproperty = "pm25"\nunit = "µg/m³"\n'
                f'alert_level = 100.0\ndistrict = "Test district"\n'
                f"lat = {21.40 + 0.01 * phase_index}\nlon = {105.70 + 0.01 * index}\n"
            )
    path.write_text("\n".join(entries), encoding="utf-8")
    return path


@dataclass
class Load:
    """One phase's input, sent at steady rates from a thread through a producer that retries
    through a broker outage; it remembers everything it sent."""

    settings: Settings
    phase: str
    frames: list[bytes]
    descriptions: list[str]
    rate: float = 1.0  # times the nominal rates
    tickets: list[str] = field(default_factory=list)
    readings: Counter[str] = field(default_factory=Counter)
    frames_sent: Counter[str] = field(default_factory=Counter)
    with_frames: bool = False
    started: datetime = field(default_factory=lambda: datetime.now(UTC))

    def __post_init__(self) -> None:
        from kafka import KafkaProducer

        self.producer = KafkaProducer(
            bootstrap_servers=self.settings.kafka.bootstrap_servers,
            acks="all",
            retries=1_000_000,
            delivery_timeout_ms=600_000,
            request_timeout_ms=10_000,
            max_block_ms=600_000,
            reconnect_backoff_max_ms=2_000,
            linger_ms=5,
            max_request_size=2 * 1024 * 1024,
        )
        self.futures: list[Any] = []
        self.stop_sending = threading.Event()
        self.thread = threading.Thread(target=self._run, name=f"load-{self.phase}", daemon=True)
        # Event time of the readings: an hour back, minute-aligned, so windows are predictable.
        self.reading_base = (self.started - timedelta(hours=1)).replace(second=0, microsecond=0)

    def start(self) -> Load:
        self.thread.start()
        return self

    def _send(self, topic: str, key: str, value: bytes, headers: list | None = None) -> None:
        self.futures.append(
            self.producer.send(topic, key=key.encode(), value=value, headers=headers or [])
        )

    def _ticket(self) -> None:
        number = len(self.tickets)
        ticket_id = f"{self.phase}-{number:05d}"
        lat = 21.30 + 0.01 * (number % 50)  # 1.1 km apart: no two are duplicates of each other
        lon = 105.50 + 0.2 * PHASES.index(self.phase) + 0.01 * (number // 50)
        value = {
            "service_request_id": ticket_id,
            "requested_datetime": datetime.now(UTC).isoformat(),
            "channel": "phone",
            "description": self.descriptions[number % len(self.descriptions)],
            "lat": round(lat, 4),
            "long": round(lon, 4),
        }
        self._send(
            self.settings.kafka.topic(topics.HOTLINE_TICKETS), ticket_id, json.dumps(value).encode()
        )
        self.tickets.append(ticket_id)

    def _reading(self) -> None:
        sensors = sensor_ids(self.phase)
        sensor = sensors[sum(self.readings.values()) % len(sensors)]
        step = self.readings[sensor]
        observed = self.reading_base + timedelta(seconds=READING_STEP_S * step)
        self._send_reading(sensor, observed, 20.0 + step % 7)
        self.readings[sensor] += 1

    def _send_reading(self, sensor: str, observed: datetime, pm25: float) -> None:
        entity = fiware.entity(sensor, "AirQualityObserved", observed, pm25=pm25)
        self._send(
            self.settings.kafka.topic(topics.SENSOR_EVENTS), sensor, json.dumps(entity).encode()
        )

    def _frame(self) -> None:
        count = sum(self.frames_sent.values())
        camera = CAMERAS[count % len(CAMERAS)]
        seq = self.frames_sent[camera]
        headers = FrameHeaders(camera_id=camera, event_time=datetime.now(UTC), seq=seq)
        image = self.frames[count % len(self.frames)]
        self._send(
            self.settings.kafka.topic(topics.CAMERA_FRAMES), camera, image, headers.to_kafka()
        )
        self.frames_sent[camera] += 1

    def _run(self) -> None:
        due = Counter[str]()
        rates = {
            self._ticket: TICKETS_PER_S,
            self._reading: READINGS_PER_S,
            **({self._frame: FRAMES_PER_S} if self.with_frames else {}),
        }
        began = time.monotonic()
        while not self.stop_sending.is_set():
            elapsed = time.monotonic() - began
            for send, per_s in rates.items():
                while due[send.__name__] < elapsed * per_s * self.rate:
                    send()
                    due[send.__name__] += 1
            time.sleep(0.05)

    def finish(self) -> None:
        """Stop sending, close every sensor's windows, and wait until the broker has all of it."""
        self.stop_sending.set()
        self.thread.join()
        for sensor in sensor_ids(self.phase):
            last = self.reading_base + timedelta(seconds=READING_STEP_S * self.readings[sensor])
            self._send_reading(sensor, last + CLOSE_AFTER, 1.0)
            self.readings[sensor] += 1
        self.producer.flush(timeout=600)
        for future in self.futures:
            future.get(timeout=1)  # raises if any send failed for good
        self.producer.close()

    def expected_windows(self, sensor: str) -> list[int]:
        """Counts of the closed one-minute windows: the readings before the closing one."""
        readings = self.readings[sensor] - 1
        per_window = 60 // READING_STEP_S
        full, rest = divmod(readings, per_window)
        return [per_window] * full + ([rest] if rest else [])


def verify(settings: Settings, workers: Workers, load: Load) -> dict[str, Any]:
    """Everything the load sent is stored exactly once and nothing was dead-lettered."""
    lags = workers.wait_drained(timeout_s=300)
    assert not any(lags.values()), f"the pipeline did not drain: {lags}"
    workers.check_alive()
    with psycopg.connect(settings.database.dsn, autocommit=True) as db:
        stored = {
            row[0]
            for row in db.execute(
                "SELECT service_request_id FROM tickets WHERE service_request_id LIKE %s",
                (f"{load.phase}-%",),
            )
        }
        missing = sorted(set(load.tickets) - stored)
        assert not missing, f"{len(missing)} tickets lost: {missing[:5]}"
        assert len(stored) == len(load.tickets)
        incidents = db.execute(
            "SELECT i.id, i.reports, count(t.*) FROM incidents i"
            " JOIN tickets t ON t.incident_id = i.id"
            " WHERE t.service_request_id LIKE %s GROUP BY i.id, i.reports",
            (f"{load.phase}-%",),
        ).fetchall()
        urgent = db.execute(
            "SELECT count(*) FROM tickets WHERE service_request_id LIKE %s AND incident_id IS NOT"
            " NULL",
            (f"{load.phase}-%",),
        ).fetchone()[0]
        assert incidents, "the load raised incidents"
        doubled = [(id_, reports) for id_, reports, tickets in incidents if reports != tickets]
        assert not doubled, f"incidents counting a report twice: {doubled[:5]}"
        assert sum(tickets for _, _, tickets in incidents) == urgent
        for sensor, sent in load.readings.items():
            count = db.execute(
                "SELECT count(*) FROM sensor_readings WHERE sensor_id = %s", (sensor,)
            ).fetchone()[0]
            assert count == sent, f"{sensor}: {sent} readings sent, {count} stored"
            windows = [
                row[0]
                for row in db.execute(
                    "SELECT count FROM sensor_windows WHERE sensor_id = %s ORDER BY window_start",
                    (sensor,),
                )
            ]
            assert windows == load.expected_windows(sensor), f"{sensor}: windows {windows}"
    letters = dead_letters(settings, f'"{load.phase}-'.encode()) + dead_letters(
        settings, f"fault-{load.phase}-".encode()
    )
    assert not letters, f"dead letters: {[letter.headers.get('reason') for letter in letters]}"
    return {"tickets": len(load.tickets), "readings": sum(load.readings.values())}


@pytest.fixture(scope="module")
def fault_settings(
    tmp_path_factory: pytest.TempPathFactory, webhook: WebhookReceiver
) -> Iterator[Settings]:
    stack_dir = tmp_path_factory.mktemp("faults")
    env = isolated_stack_env(stack_dir, webhook.url)
    env["IOC_STREAMS__SENSOR_REGISTRY"] = str(write_registry(stack_dir / "sensors.toml"))
    with pytest.MonkeyPatch.context() as patch:
        for key, value in env.items():
            patch.setenv(key, value)
        settings = Settings()
        stack_up(settings)
        try:
            yield settings
        finally:
            stack_down(settings)


@pytest.fixture(scope="module")
def fault_workers(fault_settings: Settings) -> Iterator[Workers]:
    with started_workers(fault_settings) as running:  # the module's IOC_* are exported
        yield running


@pytest.fixture(scope="module")
def descriptions(samples_dir: Path) -> list[str]:
    lines = (samples_dir / "tickets_1022.jsonl").read_text(encoding="utf-8").splitlines()
    return [json.loads(line)["description"] for line in lines]


@pytest.fixture(scope="module")
def frames(samples_dir: Path) -> list[bytes]:
    paths = sorted((samples_dir / "frames" / "traffic").glob("*.jpg"))
    paths += sorted((samples_dir / "frames" / "negative").glob("*.jpg"))
    return [path.read_bytes() for path in paths]


def load(
    settings: Settings,
    phase: str,
    frames: list[bytes],
    descriptions: list[str],
    rate: float = 1.0,
    with_frames: bool = False,
) -> Load:
    return Load(settings, phase, frames, descriptions, rate=rate, with_frames=with_frames).start()


def test_a_killed_streams_worker_restarts_and_loses_or_doubles_nothing(
    fault_settings: Settings,
    fault_workers: Workers,
    frames: list[bytes],
    descriptions: list[str],
) -> None:
    running = load(fault_settings, "kill", frames, descriptions)
    time.sleep(15)
    fault_workers.crash_and_restart("streams")  # SIGKILL: nothing flushed, offsets uncommitted
    fault_workers.wait_ready(timeout_s=240)
    time.sleep(10)
    running.finish()
    verify(fault_settings, fault_workers, running)


def test_a_restarted_broker_lets_producers_and_consumers_resume(
    fault_settings: Settings,
    fault_workers: Workers,
    frames: list[bytes],
    descriptions: list[str],
) -> None:
    broker = KafkaService(fault_settings.stack, fault_settings.kafka)
    running = load(fault_settings, "broker", frames, descriptions)
    time.sleep(10)
    assert broker.down()
    time.sleep(5)
    assert broker.up() == "started"
    time.sleep(15)
    running.finish()
    verify(fault_settings, fault_workers, running)


def test_a_database_stopped_for_30_s_loses_nothing(
    fault_settings: Settings,
    fault_workers: Workers,
    frames: list[bytes],
    descriptions: list[str],
) -> None:
    database = PostgresService(fault_settings.stack, fault_settings.database)
    running = load(fault_settings, "database", frames, descriptions)
    time.sleep(10)
    assert database.down()
    time.sleep(30)
    database.up()
    time.sleep(10)
    running.finish()
    verify(fault_settings, fault_workers, running)


def test_a_burst_of_ten_times_the_rate_drains_and_vision_accounts_for_every_frame(
    fault_settings: Settings,
    fault_workers: Workers,
    frames: list[bytes],
    descriptions: list[str],
) -> None:
    running = load(fault_settings, "burst", frames, descriptions, rate=10.0, with_frames=True)
    peak: dict[str, int] = Counter()
    deadline = time.monotonic() + BURST_S
    while time.monotonic() < deadline:
        for name, lag in fault_workers.lag().items():
            peak[name] = max(peak[name], lag)
        time.sleep(2)
    running.finish()
    drain_started = time.monotonic()
    verify(fault_settings, fault_workers, running)
    drained_s = time.monotonic() - drain_started
    assert max(peak.values()) > 0, f"lag never grew: {dict(peak)}"

    with psycopg.connect(fault_settings.database.dsn, autocommit=True) as db:
        accounted = dict(
            db.execute(
                "SELECT camera_id, count(*) + sum(dropped) FROM camera_frames"
                " WHERE camera_id = ANY(%s) GROUP BY camera_id",
                (list(CAMERAS),),
            ).fetchall()
        )
        dropped = db.execute(
            "SELECT coalesce(sum(dropped), 0) FROM camera_frames WHERE camera_id = ANY(%s)",
            (list(CAMERAS),),
        ).fetchone()[0]
    assert accounted == dict(running.frames_sent), "every frame inferred or counted as dropped"
    assert dropped > 0, "at ten times the rate on this CPU the worker skips stale frames"
    reported = wait_for(
        lambda: "dropped as stale" in fault_workers.log_file("vision").read_text(),
        timeout=40,
        what="the vision worker's report of dropped frames",
    )
    assert reported
    print(  # the figures, for the closing note (pytest -s)
        f"burst: {len(running.tickets)} tickets, {sum(running.readings.values())} readings, "
        f"{sum(running.frames_sent.values())} frames in {BURST_S} s; peak lag {dict(peak)}; "
        f"drained and verified in {drained_s:.0f} s; {dropped} stale frames dropped"
    )
