"""`ioc bench e2e`: input → notification latency through the whole pipeline (intake topics →
streams, vision and alerts workers → fusion → webhook), at a nominal background load, against a
plain aiokafka produce → consume round trip measured in the same run, on an ephemeral stack.

Probes: (a) a 1022 fire ticket, (b) a water-level sensor going above its alert level, (c) a
camera seeing fire. Each probe has ids of its own and a place ~5 km from every other probe, so
fusion never merges two probes. A probe's latency is the wall-clock time the bench's own HTTP
webhook receiver got the `firing` notification minus the time the bench sent the input that
completed the condition: the ticket; the second above-level reading (the first is dated one
hold time earlier, so the sensor rules' hold is passed in event time and is not in the figure);
the frame that completed the fire rule (found in `camera_frames` afterwards; the probe sends
fire frames until it is alerted).

Background load: ordinary (not fire, not flood) tickets and in-range readings at a steady rate
for the whole run. Baseline: one message at a time through a scratch topic, send → receive by a
plain consumer in the same process, during the same load.
"""

from __future__ import annotations

import asyncio
import json
import random
import tempfile
import threading
import time
import tomllib
import uuid
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import psycopg
from rich.console import Console
from rich.table import Table

from ioc.assets import SAMPLE_TICKETS_PATH, SAMPLES_DIR
from ioc.config import Settings
from ioc.devtools.bench.common import _create_baseline, ephemeral_settings, percentile
from ioc.devtools.bench.sensors import KINDS, registry_toml, sensor_specs
from ioc.devtools.scenario.workers import Workers
from ioc.devtools.stack import stack_down, stack_up
from ioc.kafka import topics
from ioc.kafka.clients import aio_consumer, producer
from ioc.models import FrameHeaders, SensorSpec
from ioc.models.base import utc_now
from ioc.runtime import run_async
from ioc.sensors.fiware import entity
from ioc.services import worker_specs

BASELINE_TOPIC = "bench.baseline.e2e"
KINDS_MEASURED = ("ticket", "sensor", "camera")
GOALS_MS = {"ticket": 1000.0, "sensor": 2000.0, "camera": 2000.0}
LABELS = {
    "ticket": "1022 fire ticket → webhook",
    "sensor": "water level above alert → webhook",
    "camera": "fire camera frame → webhook",
}
SENSOR_RULES = Path(__file__).resolve().parents[2] / "assets" / "demo_sensor_rules.toml"
TICKET_RATE = 20.0  # background tickets/s
READING_RATE = 200.0  # background readings/s
BACKGROUND_SENSORS = 200
PROBE_SPACING_DEG = 0.05  # ~5 km between probes, 10x fusion's 500 m (fire), >1.5x 3 km (flood)
PROBE_GAP_S = 0.5  # between probes of one kind
FRAME_GAP_S = 0.3  # between the frames of one camera probe
# A camera probe goes on sending fire frames, as a camera facing a fire does, until its alert
# arrives: under load the vision worker replaces a frame still waiting with a newer one (it works
# on the present), so a fixed burst of the rule's window could leave the rule one frame short.
MAX_FRAMES_PER_PROBE = 40
WAIT_S = 60.0  # for a kind's last notification
WORKERS_READY_S = 240.0


@dataclass
class KindResult:
    sent: int = 0
    latency_ms: list[float] = field(default_factory=list)

    def p(self, q: float) -> float | None:
        return percentile(self.latency_ms, q) if self.latency_ms else None


@dataclass
class E2EResult:
    kinds: dict[str, KindResult]
    baseline_ms: list[float]
    probes: int
    load: bool
    sensor_hold_s: float
    ticket_rate: float
    reading_rate: float
    background_sent: int = 0

    def as_dict(self) -> dict[str, Any]:
        def stats(values: list[float], sent: int) -> dict[str, Any]:
            return {
                "sent": sent,
                "measured": len(values),
                "p50_ms": percentile(values, 0.5) if values else None,
                "p99_ms": percentile(values, 0.99) if values else None,
                "latency_ms": values,
            }

        return {
            "probes": self.probes,
            "load": {
                "enabled": self.load,
                "tickets_per_s": self.ticket_rate if self.load else 0,
                "readings_per_s": self.reading_rate if self.load else 0,
                "messages_sent": self.background_sent,
            },
            "sensor_hold_s": self.sensor_hold_s,
            "kinds": {
                kind: stats(r.latency_ms, r.sent)
                | {"goal_p99_ms": GOALS_MS[kind], "goal_met": self.goal_met(kind)}
                for kind, r in self.kinds.items()
            },
            "baseline": stats(self.baseline_ms, len(self.baseline_ms)),
        }

    def goal_met(self, kind: str) -> bool:
        result = self.kinds[kind]
        p99 = result.p(0.99)
        return p99 is not None and len(result.latency_ms) == result.sent and p99 < GOALS_MS[kind]


# --- The webhook receiver ----------------------------------------------------------------------


class Receiver:
    """A local HTTP endpoint the alerts worker posts to: every page with its idempotency key,
    and the first `firing` time per source key."""

    def __init__(self) -> None:
        self.firing: dict[str, float] = {}
        self.pages: list[tuple[str, dict[str, Any]]] = []
        self.lock = threading.Lock()
        self.posts = 0
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                received = time.time()
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                self.send_response(200)
                self.end_headers()
                receiver.record(body, received, self.headers.get("Idempotency-Key", ""))

            def log_message(self, format: str, *args: Any) -> None:
                return None

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host!s}:{port}/hook"

    def record(self, body: bytes, received: float, key: str = "") -> None:
        with suppress(ValueError, KeyError, TypeError):
            payload = json.loads(body)
            with self.lock:
                self.posts += 1
                self.pages.append((key, payload))
                if payload.get("notification") != "firing":
                    return
                for member in payload["incident"].get("members", []):
                    self.firing.setdefault(member["source_key"], received)

    def got(self, key: str) -> float | None:
        with self.lock:
            return self.firing.get(key)

    def received(self) -> list[tuple[str, dict[str, Any]]]:
        with self.lock:
            return list(self.pages)

    def __enter__(self) -> Receiver:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


# --- Inputs -------------------------------------------------------------------------------------


def _samples() -> list[dict]:
    return [json.loads(line) for line in SAMPLE_TICKETS_PATH.read_text().splitlines()]


def _ticket(sample: dict, ticket_id: str, lat: float, lon: float) -> bytes:
    body = {
        "service_request_id": ticket_id,
        "requested_datetime": utc_now().isoformat(),
        "channel": sample["channel"],
        "description": sample["description"],
        "address_string": sample["address_string"],
        "lat": round(lat, 6),
        "long": round(lon, 6),
        "phone": "0900000000",
    }
    return json.dumps(body, ensure_ascii=False).encode()


def fire_sample() -> dict:
    return next(
        s
        for s in _samples()
        if s.get("expected", {}).get("category") == "chay_no" and s["expected"].get("urgent")
    )


def ordinary_samples() -> list[dict]:
    """Tickets that open no fire or flood incident, so they never fuse with a probe."""
    return [
        s
        for s in _samples()
        if s.get("expected", {}).get("category") not in ("chay_no", "ngap_lut_thien_tai")
    ]


def probe_sensors(count: int, run: str) -> list[SensorSpec]:
    prop, unit, alert_level = KINDS["FloodMonitoring"]
    return [
        SensorSpec(
            id=f"e2e-{run}-wl-{index:03d}",
            name=f"E2E water level {index}",
            type="FloodMonitoring",
            property=prop,
            unit=unit,
            alert_level=alert_level,
            district="Bench",
            lat=23.0,
            lon=round(104.0 + index * PROBE_SPACING_DEG, 6),
        )
        for index in range(count)
    ]


def camera_registry_toml(ids: list[str]) -> str:
    url = json.dumps(str(SAMPLES_DIR / "frames" / "fire"))
    return "\n".join(
        f'[[cameras]]\nid = "{camera_id}"\nname = "E2E camera {index}"\nurl = {url}\n'
        f'district = "Bench"\nlat = 22.5\nlon = {104.0 + index * PROBE_SPACING_DEG:.6f}\nfps = 1\n'
        for index, camera_id in enumerate(ids)
    )


def fire_frames() -> list[bytes]:
    return [path.read_bytes() for path in sorted((SAMPLES_DIR / "frames" / "fire").glob("*.jpg"))]


def hold_seconds(rules_path: Path = SENSOR_RULES) -> float:
    rules = tomllib.loads(rules_path.read_text(encoding="utf-8"))
    return float(rules["types"]["FloodMonitoring"]["levels"]["hold_minutes"]) * 60


# --- The run ------------------------------------------------------------------------------------


@contextmanager
def e2e_stack(settings: Settings, console: Console) -> Iterator[Workers]:
    """Kafka, PostgreSQL, the scratch topic and the three workers (streams, vision, alerts)."""
    with console.status("starting an ephemeral stack…"):
        stack_up(settings)
    workers = Workers(settings, worker_specs(settings))
    try:
        _create_baseline(settings, BASELINE_TOPIC, "SELECT 1")
        with console.status("starting the streams, vision and alerts workers…"):
            workers.start()
            workers.wait_ready(timeout_s=WORKERS_READY_S)
        yield workers
    finally:
        workers.stop()
        stack_down(settings)


class Bench:
    def __init__(
        self, settings: Settings, receiver: Receiver, workers: Workers, run: str, hold_s: float
    ) -> None:
        self.settings = settings
        self.receiver = receiver
        self.workers = workers
        self.run = run
        self.hold_s = hold_s
        self.client: Any = None  # made in the event loop
        self.background_sent = 0

    async def background(self, stop: asyncio.Event, sensors: list[SensorSpec]) -> None:
        """Ordinary tickets and in-range readings at their rates until `stop`."""
        rng = random.Random(self.run)
        samples = ordinary_samples()
        started = time.monotonic()
        tickets = readings = 0
        nth: dict[str, int] = {}
        origin = utc_now() - timedelta(seconds=10)
        while not stop.is_set():
            elapsed = time.monotonic() - started
            while tickets < elapsed * TICKET_RATE:
                ticket_id = f"E2E-BG-{self.run}-{tickets}"
                value = _ticket(
                    rng.choice(samples), ticket_id, 21.3 + rng.random() * 0.5, 105.5 + rng.random()
                )
                await self.client.send(topics.HOTLINE_TICKETS, key=ticket_id.encode(), value=value)
                tickets += 1
            while readings < elapsed * READING_RATE:
                spec = sensors[readings % len(sensors)]
                step = nth[spec.id] = nth.get(spec.id, -1) + 1
                level = round(spec.alert_level - 1.0 + rng.uniform(0, 0.04), 3)
                # one reading per sensor per second of event time, ending near now
                body = entity(
                    spec.id, spec.type, origin + timedelta(seconds=step), currentLevel=level
                )
                await self.client.send(
                    topics.SENSOR_EVENTS, key=spec.id.encode(), value=json.dumps(body).encode()
                )
                readings += 1
            self.background_sent = tickets + readings
            await asyncio.sleep(0.01)

    async def wait_for(self, sent: dict[str, float], result: KindResult) -> None:
        deadline = time.monotonic() + WAIT_S
        while time.monotonic() < deadline:
            if all(self.receiver.got(key) is not None for key in sent):
                break
            self.workers.check_alive()
            await asyncio.sleep(0.1)
        for key, at in sent.items():
            received = self.receiver.got(key)
            if received is not None:
                result.latency_ms.append((received - at) * 1000)

    async def tickets(self, probes: int) -> KindResult:
        sample, result, sent = fire_sample(), KindResult(probes), {}
        for index in range(probes):
            ticket_id = f"E2E-FIRE-{self.run}-{index}"
            value = _ticket(sample, ticket_id, 22.0, 104.0 + index * PROBE_SPACING_DEG)
            sent[ticket_id] = time.time()
            await self.client.send(topics.HOTLINE_TICKETS, key=ticket_id.encode(), value=value)
            await asyncio.sleep(PROBE_GAP_S)
        await self.wait_for(sent, result)
        return result

    async def sensors(self, specs: list[SensorSpec]) -> KindResult:
        result, sent = KindResult(len(specs)), {}
        for spec in specs:
            now = utc_now()
            level = spec.alert_level + 0.6
            first = entity(
                spec.id, spec.type, now - timedelta(seconds=self.hold_s + 1), currentLevel=level
            )
            second = entity(spec.id, spec.type, now, currentLevel=level)
            await (
                await self.client.send(
                    topics.SENSOR_EVENTS, key=spec.id.encode(), value=json.dumps(first).encode()
                )
            )
            sent[spec.id] = time.time()
            await self.client.send(
                topics.SENSOR_EVENTS, key=spec.id.encode(), value=json.dumps(second).encode()
            )
            await asyncio.sleep(PROBE_GAP_S)
        await self.wait_for(sent, result)
        return result

    async def cameras(self, ids: list[str]) -> tuple[KindResult, dict[str, list[float]]]:
        """Fire frames per camera until it is alerted (at most `MAX_FRAMES_PER_PROBE`); the send
        time of each, by camera, in seq order."""
        frames = fire_frames()
        result, sent, frame_times = KindResult(len(ids)), {}, {}
        for index, camera_id in enumerate(ids):
            times = frame_times[camera_id] = []
            for seq in range(MAX_FRAMES_PER_PROBE):
                if self.receiver.got(camera_id) is not None:
                    break
                headers = FrameHeaders(camera_id=camera_id, event_time=utc_now(), seq=seq)
                times.append(time.time())
                await self.client.send(
                    topics.CAMERA_FRAMES,
                    key=camera_id.encode(),
                    value=frames[(index + seq) % len(frames)],
                    headers=headers.to_kafka(),
                )
                await asyncio.sleep(FRAME_GAP_S)
            sent[camera_id] = times[0]  # corrected to the completing frame afterwards
        await self.wait_for(sent, KindResult())
        return result, frame_times

    async def baseline(self, count: int, rate: float) -> list[float]:
        """Send one message, wait for the plain consumer to get it, next; ms each."""
        consumer = aio_consumer(
            self.settings.kafka,
            BASELINE_TOPIC,
            group_id=f"bench-e2e-baseline-{self.run}",
            auto_offset_reset="latest",
        )
        await consumer.start()
        try:
            while not consumer.assignment():
                await consumer.getmany(timeout_ms=100)
            await consumer.seek_to_end()
            out = []
            for index in range(count):
                key = f"{self.run}-{index}".encode()
                started = time.time()
                await self.client.send(BASELINE_TOPIC, key=key, value=key)
                got = False
                while not got:
                    batches = await consumer.getmany(timeout_ms=1000)
                    got = any(r.key == key for records in batches.values() for r in records)
                out.append((time.time() - started) * 1000)
                await asyncio.sleep(1 / rate)
            return out
        finally:
            await consumer.stop()


def camera_latencies(
    conn: psycopg.Connection,
    receiver: Receiver,
    frame_times: dict[str, list[float]],
    needed: int,
) -> list[float]:
    """Per camera that fired: receive time minus the send time of its `needed`-th frame with
    detections (by seq), or of its `needed`-th frame when the table says nothing."""
    out = []
    for camera_id, times in frame_times.items():
        received = receiver.got(camera_id)
        if received is None:
            continue
        rows = conn.execute(
            "SELECT seq FROM camera_frames WHERE camera_id = %s AND detections > 0 ORDER BY seq",
            (camera_id,),
        ).fetchall()
        seqs = [int(seq) for (seq,) in rows]
        seq = seqs[needed - 1] if len(seqs) >= needed else needed - 1
        out.append((received - times[min(seq, len(times) - 1)]) * 1000)
    return out


def frames_needed() -> int:
    from ioc.rules.camera.registry import CameraRuleSet

    with suppress(Exception):
        return int(CameraRuleSet.load(None).for_camera("").fire.frames)
    return 3


async def _measure(
    bench: Bench,
    probes: int,
    load: bool,
    sensors: list[SensorSpec],
    cams: list[str],
    background: list[SensorSpec],
    console: Console,
) -> tuple[dict[str, KindResult], dict[str, list[float]], list[float]]:
    stop = asyncio.Event()
    bench.client = producer(bench.settings.kafka, "ioc-bench-e2e")
    await bench.client.start()
    loader = asyncio.create_task(bench.background(stop, background)) if load else None
    try:
        if load:
            await asyncio.sleep(3.0)  # settle at the nominal load
        with console.status("baseline: produce → consume round trips…"):
            baseline = await bench.baseline(max(probes, 50), rate=20.0)
        kinds: dict[str, KindResult] = {}
        with console.status("1022 fire tickets…"):
            kinds["ticket"] = await bench.tickets(probes)
        with console.status("water-level sensors…"):
            kinds["sensor"] = await bench.sensors(sensors)
        with console.status("fire cameras…"):
            kinds["camera"], frame_times = await bench.cameras(cams)
        return kinds, frame_times, baseline
    finally:
        stop.set()
        if loader is not None:
            await loader
        await bench.client.stop()


def run_bench(probes: int, load: bool, console: Console, as_json: bool = False) -> E2EResult:
    run = uuid.uuid4().hex[:8]
    hold_s = hold_seconds()
    sensors = probe_sensors(probes, run)
    background = sensor_specs(BACKGROUND_SENSORS, f"e2e-bg-{run}-", ("FloodMonitoring",))
    cams = [f"e2e-{run}-cam-{index:03d}" for index in range(probes)]
    with tempfile.TemporaryDirectory(prefix="ioc-bench-e2e-") as root, Receiver() as receiver:
        sensor_registry = Path(root) / "sensors.toml"
        sensor_registry.write_text(registry_toml(sensors + background), encoding="utf-8")
        camera_registry = Path(root) / "cameras.toml"
        camera_registry.write_text(camera_registry_toml(cams), encoding="utf-8")
        env = {
            "IOC_STREAMS__SENSOR_REGISTRY": str(sensor_registry),
            "IOC_STREAMS__SENSOR_RULES": str(SENSOR_RULES),
            "IOC_CAMERAS__REGISTRY": str(camera_registry),
            "IOC_ALERTS__WEBHOOK_URL": receiver.url,
        }
        with (
            ephemeral_settings(Path(root), **env) as settings,
            e2e_stack(settings, console) as workers,
        ):
            bench = Bench(settings, receiver, workers, run, hold_s)
            kinds, frame_times, baseline = run_async(
                _measure(bench, probes, load, sensors, cams, background, console)
            )
            with psycopg.connect(settings.database.dsn, autocommit=True) as conn:
                kinds["camera"].latency_ms = camera_latencies(
                    conn, receiver, frame_times, frames_needed()
                )
    result = E2EResult(
        kinds, baseline, probes, load, hold_s, TICKET_RATE, READING_RATE, bench.background_sent
    )
    if as_json:
        console.print_json(json.dumps(result.as_dict()))
    else:
        render(result, console)
    return result


def _ms(value: float | None) -> str:
    return f"{value:,.1f}" if value is not None else "–"


def render(result: E2EResult, console: Console) -> None:
    load = (
        f"background {result.ticket_rate:g} tickets/s + {result.reading_rate:g} readings/s"
        if result.load
        else "no background load"
    )
    table = Table(
        "input → notification",
        "measured",
        "p50 ms",
        "p99 ms",
        "p99 / baseline p99",
        "goal p99",
        title=f"ioc bench e2e · {result.probes} probes per kind · {load}",
    )
    base_p50 = percentile(result.baseline_ms, 0.5) if result.baseline_ms else None
    base_p99 = percentile(result.baseline_ms, 0.99) if result.baseline_ms else None
    for kind in KINDS_MEASURED:
        measured = result.kinds[kind]
        p99 = measured.p(0.99)
        ratio = f"{p99 / base_p99:,.1f}×" if p99 is not None and base_p99 else "–"
        goal = f"< {GOALS_MS[kind]:,.0f} " + (
            "[green]met[/]" if result.goal_met(kind) else "[red]not met[/]"
        )
        table.add_row(
            LABELS[kind],
            f"{len(measured.latency_ms)}/{measured.sent}",
            _ms(measured.p(0.5)),
            _ms(p99),
            ratio,
            goal,
        )
    table.add_row(
        "baseline: aiokafka produce → consume",
        f"{len(result.baseline_ms)}",
        _ms(base_p50),
        _ms(base_p99),
        "1.0×",
        "",
    )
    console.print(table)
    console.print(
        f"sensor probes: the rules' hold ({result.sensor_hold_s:g} s, demo rules) is passed in"
        " event time and not counted; camera probes: from the frame that completed the fire rule."
    )
    if result.load:
        console.print(f"background messages sent during the run: {result.background_sent:,}")
