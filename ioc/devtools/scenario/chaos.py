"""`ioc chaos`: steady mixed load while the streams, vision and alerts workers are SIGKILLed at
random moments and restarted, then proof that nothing was lost, doubled or paged twice.

The run has a stack of its own (free loopback ports, a temporary folder) and a webhook receiver
as the paging channel. Load: tickets (1 in `POISON_EVERY` is malformed on purpose), readings of
ordinary and of polluted sensors, and frames of a burning and of a quiet camera. Kills follow a
seeded shuffle (each worker in turn as often as the others) with random gaps; each killed worker
is started again and the next kill waits until every group is Stable again.

Checks, once the input stops and the pipeline drains:
- tickets and readings: each stored exactly once; incidents count each report once;
- frames: each judged once or counted as replaced by a newer frame of its camera (the worker's
  real-time design), none unaccounted;
- incidents: every valid ticket linked to one, every candidate fused, the burning camera and each
  polluted sensor have theirs;
- pages: every recorded page received, every open paging incident paged, and no page received
  twice (pages carry their id as `Idempotency-Key`: a resend is counted, and is a failure);
- dead letters: each malformed ticket dead-lettered with a reason, nothing else.
"""

from __future__ import annotations

import json
import random
import shutil
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from ioc.assets import SAMPLE_TICKETS_PATH, SAMPLES_DIR
from ioc.config import Settings
from ioc.devtools.bench.common import ephemeral_settings
from ioc.devtools.bench.e2e import Receiver
from ioc.devtools.scenario.workers import Workers
from ioc.devtools.stack import stack_down, stack_up
from ioc.kafka import topics
from ioc.models import FrameHeaders, Severity
from ioc.sensors import fiware

WORKERS = ("streams", "vision", "alerts")
POISON_EVERY = 25
TICKETS_PER_S = 1.0
READING_EVERY_S = 2.0  # per sensor; event time follows the wall clock
FRAME_EVERY_S = 2.0  # per camera
SENSORS = [f"chaos-air-{index}" for index in range(4)]
POLLUTED = [f"chaos-smog-{index}" for index in range(2)]
POLLUTED_PM25 = 300.0  # above the bundled rules' 150 µg/m³ threshold
FIRE_CAMERA, QUIET_CAMERA = "chaos-cam-fire", "chaos-cam-quiet"
READY_TIMEOUT_S = 300.0
DRAIN_TIMEOUT_S = 600.0
SETTLE_TIMEOUT_S = 240.0


@dataclass
class Load:
    """Input at steady rates from a thread, through a producer that retries through anything;
    it remembers what it sent."""

    settings: Settings
    tickets: list[str] = field(default_factory=list)
    poison: list[str] = field(default_factory=list)
    readings: dict[str, list[datetime]] = field(default_factory=dict)
    frames: Counter[str] = field(default_factory=Counter)

    def __post_init__(self) -> None:
        from kafka import KafkaProducer

        self.producer = KafkaProducer(
            bootstrap_servers=self.settings.kafka.bootstrap_servers,
            acks="all",
            retries=1_000_000,
            delivery_timeout_ms=600_000,
            max_block_ms=600_000,
            linger_ms=5,
            max_request_size=2 * 1024 * 1024,
        )
        self.futures: list[Any] = []
        self.samples = [json.loads(line) for line in SAMPLE_TICKETS_PATH.read_text().splitlines()]
        frames = SAMPLES_DIR / "frames"
        self.images = {
            FIRE_CAMERA: [p.read_bytes() for p in sorted((frames / "fire").glob("*.jpg"))],
            QUIET_CAMERA: [p.read_bytes() for p in sorted((frames / "negative").glob("*.jpg"))],
        }
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, name="chaos-load", daemon=True)

    def _send(self, topic: str, key: str, value: bytes, headers: list | None = None) -> None:
        future = self.producer.send(
            self.settings.kafka.topic(topic), key=key.encode(), value=value, headers=headers or []
        )
        self.futures.append(future)

    def ticket(self) -> None:
        number = len(self.tickets) + len(self.poison)
        ticket_id = f"chaos-{number:05d}"
        if number % POISON_EVERY == POISON_EVERY - 1:
            self._send(topics.HOTLINE_TICKETS, ticket_id, f'{{"poison": "{ticket_id}"'.encode())
            self.poison.append(ticket_id)
            return
        sample = self.samples[number % len(self.samples)]
        body = {
            "service_request_id": ticket_id,
            "requested_datetime": datetime.now(UTC).isoformat(),
            "channel": sample["channel"],
            "description": sample["description"],
            "lat": round(21.30 + 0.01 * (number % 40), 4),  # 1.1 km apart: never duplicates
            "long": round(105.50 + 0.01 * (number // 40), 4),
        }
        self._send(topics.HOTLINE_TICKETS, ticket_id, json.dumps(body, ensure_ascii=False).encode())
        self.tickets.append(ticket_id)

    def reading(self, sensor: str, observed: datetime) -> None:
        pm25 = POLLUTED_PM25 if sensor in POLLUTED else 20.0 + len(self.readings[sensor]) % 7
        entity = fiware.entity(sensor, "AirQualityObserved", observed, pm25=pm25)
        self._send(topics.SENSOR_EVENTS, sensor, json.dumps(entity).encode())
        self.readings[sensor].append(observed)

    def frame(self, camera: str) -> None:
        seq = self.frames[camera]
        headers = FrameHeaders(camera_id=camera, event_time=datetime.now(UTC), seq=seq)
        image = self.images[camera][seq % len(self.images[camera])]
        self._send(topics.CAMERA_FRAMES, camera, image, headers.to_kafka())
        self.frames[camera] += 1

    def _run(self) -> None:
        began = time.monotonic()
        started = datetime.now(UTC).replace(microsecond=0)
        self.readings = {sensor: [] for sensor in SENSORS + POLLUTED}
        while not self.stop.is_set():
            elapsed = time.monotonic() - began
            while len(self.tickets) + len(self.poison) < elapsed * TICKETS_PER_S:
                self.ticket()
            for sensor, sent in self.readings.items():
                while len(sent) < elapsed / READING_EVERY_S:
                    self.reading(sensor, started + timedelta(seconds=READING_EVERY_S * len(sent)))
            for camera in (FIRE_CAMERA, QUIET_CAMERA):
                while self.frames[camera] < elapsed / FRAME_EVERY_S:
                    self.frame(camera)
            time.sleep(0.05)  # pacing the load, not waiting for a result

    def start(self) -> None:
        self.thread.start()

    def finish(self) -> None:
        """Stop sending and wait until the broker has acknowledged everything."""
        self.stop.set()
        self.thread.join()
        self.producer.flush(timeout=600)
        for future in self.futures:
            future.get(timeout=1)  # raises if any send failed for good
        self.producer.close()


@dataclass(frozen=True)
class Check:
    name: str
    figures: str
    ok: bool


def registries(folder: Path) -> dict[str, str]:
    """The run's sensors and cameras, as IOC_* variables naming the files written here."""
    sensors = folder / "sensors.toml"
    sensors.write_text(
        "\n".join(
            f'[[sensors]]\nid = "{sensor}"\nname = "Chaos {sensor}"\ntype = "AirQualityObserved"\n'
            f'property = "pm25"\nunit = "µg/m³"\nalert_level = 150.0\ndistrict = "Chaos"\n'
            f"lat = {21.2 + 0.02 * index}\nlon = 105.3\n"
            for index, sensor in enumerate(SENSORS + POLLUTED)
        ),
        encoding="utf-8",
    )
    cameras = folder / "cameras.toml"
    cameras.write_text(
        "\n".join(
            f'[[cameras]]\nid = "{camera}"\nname = "Chaos {camera}"\n'
            f'url = {json.dumps(str(SAMPLES_DIR / "frames" / "fire"))}\ndistrict = "Chaos"\n'
            f"lat = 21.9\nlon = {105.9 + 0.05 * index}\nfps = 1\n"
            for index, camera in enumerate((FIRE_CAMERA, QUIET_CAMERA))
        ),
        encoding="utf-8",
    )
    return {
        "IOC_STREAMS__SENSOR_REGISTRY": str(sensors),
        "IOC_CAMERAS__REGISTRY": str(cameras),
    }


@contextmanager
def chaos_stack(root: Path, receiver: Receiver, console: Console) -> Iterator[Workers]:
    """Kafka, PostgreSQL and the three workers, ready; everything stopped afterwards."""
    env = registries(root) | {
        "IOC_ALERTS__WEBHOOK_URL": receiver.url,
        "IOC_ALERTS__CONSOLE": "false",
        "IOC_VISION__BATCH_WAIT_MS": "20",
        "IOC_VISION__EVIDENCE_DIR": str(root / "evidence"),
        "IOC_STREAMS__SENSOR_TICK_S": "2",
        "IOC_FUSION__CHECK_INTERVAL_S": "3",
        "IOC_FUSION__REPUBLISH_AFTER_S": "15",
    }
    with ephemeral_settings(root, **env) as settings:
        workers = Workers(settings)
        try:
            with console.status("starting a stack of its own and the three workers…"):
                stack_up(settings)
                workers.start()
                workers.wait_ready(READY_TIMEOUT_S)
            yield workers
        finally:
            workers.stop()
            stack_down(settings)


def kill_plan(kills: int, seed: int) -> list[str]:
    """Each worker in turn as often as the others, in a seeded random order."""
    plan = [WORKERS[index % len(WORKERS)] for index in range(kills)]
    random.Random(seed).shuffle(plan)
    return plan


def dead_letters(settings: Settings) -> list[tuple[dict[str, str], bytes]]:
    from kafka import KafkaConsumer, TopicPartition

    reader = KafkaConsumer(
        bootstrap_servers=settings.kafka.bootstrap_servers, consumer_timeout_ms=3000
    )
    try:
        name = settings.kafka.topic(topics.DLQ)
        parts = [TopicPartition(name, p) for p in reader.partitions_for_topic(name) or ()]
        reader.assign(parts)
        reader.seek_to_beginning(*parts)
        return [
            ({key: value.decode() for key, value in record.headers}, record.value or b"")
            for record in reader
        ]
    finally:
        reader.close()


def check(settings: Settings, load: Load, receiver: Receiver) -> list[Check]:
    """What the database, the DLQ and the receiver hold against what the load sent."""
    with psycopg.connect(settings.database.dsn, autocommit=True) as db:

        def one(sql: str, *params: Any) -> Any:
            row = db.execute(sql, params).fetchone()
            return row[0] if row else None

        stored = {
            row[0]
            for row in db.execute(
                "SELECT service_request_id FROM tickets WHERE service_request_id = ANY(%s)",
                (load.tickets,),
            )
        }
        unlinked = one(
            "SELECT count(*) FROM tickets WHERE service_request_id = ANY(%s)"
            " AND incident_id IS NULL",
            load.tickets,
        )
        miscounted = one(
            "SELECT count(*) FROM (SELECT i.reports, count(t.*) AS linked FROM incidents i"
            " JOIN tickets t ON t.incident_id = i.id GROUP BY i.id) AS c"
            " WHERE reports <> linked"
        )
        sent_readings = sum(len(times) for times in load.readings.values())
        readings, distinct_readings = db.execute(
            "SELECT count(*), count(DISTINCT (sensor_id, observed_at)) FROM sensor_readings"
        ).fetchone()
        sent_frames = sum(load.frames.values())
        frame_rows = db.execute(
            "SELECT camera_id, seq, dropped FROM camera_frames ORDER BY camera_id, seq"
        ).fetchall()
        unfused = one("SELECT count(*) FROM incidents WHERE fused_id IS NULL")
        fire = one(
            "SELECT count(*) FROM incidents WHERE source_key = %s AND kind = 'fire'", FIRE_CAMERA
        )
        polluted = one(
            "SELECT count(DISTINCT source_key) FROM incidents WHERE source_key = ANY(%s)"
            " AND kind = 'air_quality_poor'",
            POLLUTED,
        )
        paging = [s.value for s in Severity.at_least(settings.alerts.min_severity)]
        should_page = {
            row[0]
            for row in db.execute(
                "SELECT id FROM fused_incidents WHERE status = 'open' AND severity = ANY(%s)",
                (paging,),
            )
        }
        recorded = {
            row[0] for row in db.execute("SELECT id FROM alerts WHERE channel = 'webhook' AND ok")
        }
    lost = unaccounted_frames(frame_rows, load.frames)
    pages = receiver.received()
    keys = Counter(key for key, _ in pages)
    fired = {body["incident"]["id"] for _, body in pages if body.get("notification") == "firing"}
    letters = dead_letters(settings)
    poisoned = {
        ticket_id
        for headers, value in letters
        for ticket_id in load.poison
        if ticket_id.encode() in value and headers.get("reason")
    }
    other_letters = [
        headers.get("reason", "")
        for headers, value in letters
        if not any(ticket_id.encode() in value for ticket_id in load.poison)
    ]
    polluted_due = sum(
        1 for sensor in POLLUTED if len(load.readings[sensor]) * READING_EVERY_S > 6 * 60
    )
    return [
        Check(
            "tickets stored once",
            f"{len(load.tickets)} sent, {len(stored)} stored, "
            f"missing: {', '.join(sorted(set(load.tickets) - stored)) or 'none'}",
            stored == set(load.tickets),
        ),
        Check(
            "incidents count each report once",
            f"{miscounted} incidents whose reports differ from their linked tickets",
            miscounted == 0,
        ),
        Check(
            "readings stored once",
            f"{sent_readings} sent, {distinct_readings} stored, "
            f"{readings - distinct_readings} twice, {sent_readings - distinct_readings} missing",
            readings == distinct_readings == sent_readings,
        ),
        Check(
            "frames judged once or replaced",
            f"{sent_frames} sent, {len(frame_rows)} judged, "
            f"{sum(row[2] for row in frame_rows)} replaced by newer, "
            f"unaccounted: {', '.join(lost) or 'none'}",
            not lost,
        ),
        Check(
            "no incident missing",
            f"{unlinked} tickets without an incident, {unfused} candidates never fused, "
            f"fire camera {fire} incident(s), {polluted} of {polluted_due} polluted sensors due",
            unlinked == 0 and unfused == 0 and fire >= 1 and polluted >= polluted_due,
        ),
        Check(
            "every page delivered",
            f"{len(should_page)} open paging incidents, {len(should_page - fired)} never paged; "
            f"{len(recorded)} pages recorded, {len(recorded - set(keys))} not received",
            not should_page - fired and not recorded - set(keys),
        ),
        Check(
            "no page twice",
            f"{len(pages)} POSTs, {len(keys)} distinct pages, "
            f"{sum(n - 1 for n in keys.values())} resent",
            len(pages) == len(keys),
        ),
        Check(
            "bad input dead-lettered with a reason",
            f"{len(load.poison)} malformed sent, {len(poisoned)} dead-lettered, "
            f"{len(other_letters)} other dead letters",
            len(poisoned) == len(load.poison) and not other_letters,
        ),
    ]


def unaccounted_frames(rows: list[tuple[str, int, int]], sent: Counter[str]) -> list[str]:
    """Frames neither judged nor counted as replaced: each judged frame's `dropped` must cover
    the frames of its camera since the one judged before it (rows in camera, seq order)."""
    lost: list[str] = []
    judged: dict[str, list[tuple[int, int]]] = {}
    for camera, seq, dropped in rows:
        judged.setdefault(camera, []).append((seq, dropped))
    for camera, count in sent.items():
        previous = -1
        for seq, dropped in [*judged.get(camera, []), (count, 0)]:
            if seq - previous - 1 > dropped:
                lost.append(f"{camera} {previous + 1}..{seq - 1} ({dropped} counted)")
            previous = seq
    return lost


@dataclass
class ChaosResult:
    kills: Counter[str]
    seconds: float
    checks: list[Check]
    logs: Path

    @property
    def ok(self) -> bool:
        return all(c.ok for c in self.checks)


def settled(probe: Callable[[], list[Check]], timeout_s: float) -> list[Check]:
    """The checks once they all pass, or as they stand at the deadline: candidates a crash left
    unpublished are swept up after `fusion.republish_after_s`, and pages follow them."""
    deadline = time.monotonic() + timeout_s
    while True:
        checks = probe()
        if all(c.ok for c in checks) or time.monotonic() > deadline:
            return checks
        time.sleep(2.0)


def run_chaos(
    kills: int, seed: int, min_gap_s: float, max_gap_s: float, console: Console
) -> ChaosResult:
    plan = kill_plan(kills, seed)
    rng = random.Random(seed + 1)
    started = time.monotonic()
    folder = Path(tempfile.mkdtemp(prefix="ioc-chaos-"))
    with Receiver() as receiver, chaos_stack(folder, receiver, console) as workers:
        load = Load(workers.settings)
        load.start()
        done: Counter[str] = Counter()
        with Progress(console=console, transient=True) as progress:
            task = progress.add_task("kill -9 and restart", total=len(plan))
            for name in plan:
                time.sleep(rng.uniform(min_gap_s, max_gap_s))  # a random moment
                workers.crash_and_restart(name)
                done[name] += 1
                progress.update(task, advance=1, description=f"killed {name}")
                workers.wait_ready(READY_TIMEOUT_S)
        with console.status("stopping the load and draining the pipeline…"):
            load.finish()
            lags = workers.wait_drained(DRAIN_TIMEOUT_S)
            if any(lags.values()):
                raise RuntimeError(f"the pipeline did not drain: {lags}")
            checks = settled(lambda: check(workers.settings, load, receiver), SETTLE_TIMEOUT_S)
            workers.check_alive()
    result = ChaosResult(done, time.monotonic() - started, checks, folder / "stack" / "logs")
    if result.ok:  # a failed run keeps its worker logs and data for a look
        shutil.rmtree(folder, ignore_errors=True)
    return result


def render(result: ChaosResult, seed: int, console: Console) -> None:
    kills = ", ".join(f"{name} {result.kills[name]}" for name in WORKERS)
    table = Table(
        title=f"ioc chaos · {sum(result.kills.values())} kills ({kills}) · seed {seed} · "
        f"{result.seconds / 60:.1f} min"
    )
    table.add_column("check")
    table.add_column("figures")
    table.add_column("result")
    for item in result.checks:
        table.add_row(item.name, item.figures, "[green]ok[/]" if item.ok else "[red]FAILED[/]")
    console.print(table)
    if not result.ok:
        console.print(f"worker logs kept in {result.logs}")


__all__ = ["ChaosResult", "kill_plan", "render", "run_chaos"]
