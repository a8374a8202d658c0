"""`ioc bench all`: every benchmark in turn, each on its own ephemeral stack with its baseline
measured in the same run, then one table of the headline figures and the machine they came from,
so the README can quote one run instead of seven taken on different days.

Sizes come from a preset: `DEFAULT` takes about 10–15 minutes on a 2-core machine, `QUICK` a few
minutes (a smoke run for tests; its figures are too small to quote). A bench that fails gets a
row saying why and the others still run. The ratio is always ioc / baseline: above 1 is better
for throughputs, below 1 for latencies (the `better` column says which).
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from rich.console import Console
from rich.table import Table

from ioc.config import get_settings
from ioc.devtools.bench.common import cpu_name, percentile

if TYPE_CHECKING:  # the benches import lazily: vision pulls torch, which `--help` must not wait for
    from ioc.devtools.bench.e2e import E2EResult
    from ioc.devtools.bench.replay import ReplayBench
    from ioc.devtools.bench.sensors import SensorBenchResult
    from ioc.devtools.bench.store import StoreBenchResult
    from ioc.devtools.bench.stream import StreamBenchResult
    from ioc.devtools.bench.tickets import TicketBenchResult
    from ioc.devtools.bench.vision import VisionBenchResult

HIGHER, LOWER = "higher", "lower"
ResultT = TypeVar("ResultT")


@dataclass(frozen=True)
class Preset:
    """Sizes for every bench (see each bench's own command for what they mean)."""

    name: str
    stream_count: int
    tickets_count: int
    tickets_rate: float
    tickets_seconds: float
    sensors_count: int
    sensors_fleet: int
    sensors_rate: float
    sensors_seconds: float
    vision_frames: int
    vision_batch: int | None  # None: vision.batch_size
    store_rows: int
    e2e_probes: int
    replay_minutes: float
    rounds: int


DEFAULT = Preset(
    name="default",
    stream_count=10_000,
    tickets_count=2000,
    tickets_rate=50.0,
    tickets_seconds=10.0,
    sensors_count=30_000,
    sensors_fleet=500,
    sensors_rate=1000.0,
    sensors_seconds=10.0,
    vision_frames=96,
    vision_batch=None,
    store_rows=100_000,
    e2e_probes=10,
    replay_minutes=30,
    rounds=3,
)
QUICK = Preset(
    name="quick",
    stream_count=2000,
    tickets_count=200,
    tickets_rate=20.0,
    tickets_seconds=2.0,
    sensors_count=2000,
    sensors_fleet=50,
    sensors_rate=200.0,
    sensors_seconds=3.0,
    vision_frames=4,
    vision_batch=2,
    store_rows=5000,
    e2e_probes=1,
    replay_minutes=2,
    rounds=1,
)


@dataclass(frozen=True)
class Row:
    """One figure against its baseline, or why the bench gave none."""

    bench: str
    metric: str = ""
    better: str = HIGHER
    figure: float = 0.0
    baseline_name: str = ""
    baseline: float = 0.0
    rounds: str = ""
    seconds: float = 0.0  # the whole bench, stack start included
    failed: str | None = None

    @property
    def ratio(self) -> float:
        return self.figure / self.baseline


@dataclass(frozen=True)
class Machine:
    cpu: str
    cores: int
    ram_gib: float
    gpu: str
    python: str
    os: str
    date_utc: str

    def line(self) -> str:
        return (
            f"{self.cpu} · {self.cores} cores · {self.ram_gib:.0f} GiB RAM · GPU: {self.gpu} ·"
            f" Python {self.python} · {self.os} · {self.date_utc}"
        )


def machine() -> Machine:
    """What the figures depend on, read from this machine."""
    ram = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return Machine(
        cpu=cpu_name(),
        cores=os.cpu_count() or 1,
        ram_gib=ram,
        gpu=_gpu(),
        python=platform.python_version(),
        os=platform.platform(terse=True),
        date_utc=datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
    )


def _gpu() -> str:
    try:
        import torch
    except ImportError:  # an install without the vision extra
        return "unknown (no torch)"
    if not torch.cuda.is_available():
        return "none"
    return ", ".join(torch.cuda.get_device_name(n) for n in range(torch.cuda.device_count()))


# --- Per bench: run it at the preset's sizes, then read its headline rows from its result -------
# Apart so that each bench's own test runs it through `run` and checks its `rows`, and
# `ioc bench all`'s test need not run every bench again.


@dataclass(frozen=True)
class Bench(Generic[ResultT]):
    """How `ioc bench all` runs one bench and reads its headline figures."""

    run: Callable[[Preset, Console], ResultT]
    rows: Callable[[ResultT, Preset], list[Row]]

    def measure(self, preset: Preset, console: Console) -> list[Row]:
        return self.rows(self.run(preset, console), preset)


def _run_stream(preset: Preset, console: Console) -> StreamBenchResult:
    from ioc.devtools.bench.stream import run_bench

    return run_bench(preset.stream_count, preset.rounds, console)


def _stream_rows(result: StreamBenchResult, preset: Preset) -> list[Row]:
    return [
        Row(
            "stream",
            "messages/s, Faust agent",
            HIGHER,
            result.faust_median,
            "plain aiokafka loop",
            result.plain_median,
            str(preset.rounds),
        ),
        Row(
            "stream",
            "messages/s, batched consumer",
            HIGHER,
            result.batched_median,
            "plain aiokafka loop",
            result.plain_median,
            str(preset.rounds),
        ),
    ]


def _run_tickets(preset: Preset, console: Console) -> TicketBenchResult:
    from ioc.devtools.bench.tickets import run_bench

    return run_bench(
        preset.tickets_count, preset.rounds, preset.tickets_rate, preset.tickets_seconds, console
    )


def _tickets_rows(result: TicketBenchResult, preset: Preset) -> list[Row]:
    return [
        Row(
            "tickets",
            "tickets/s, intake → DB",
            HIGHER,
            statistics.median(result.pipeline.throughput),
            "aiokafka + INSERT loop",
            statistics.median(result.baseline.throughput),
            str(preset.rounds),
        )
    ]


def _run_sensors(preset: Preset, console: Console) -> SensorBenchResult:
    from ioc.devtools.bench.sensors import run_bench

    return run_bench(
        preset.sensors_count,
        preset.rounds,
        preset.sensors_fleet,
        preset.sensors_rate,
        preset.sensors_seconds,
        console,
    )


def _sensors_rows(result: SensorBenchResult, preset: Preset) -> list[Row]:
    return [
        Row(
            "sensors",
            "events/s, agent → DB",
            HIGHER,
            result.pipeline.median,
            "aiokafka + COPY loop",
            result.baseline.median,
            str(preset.rounds),
        )
    ]


def _run_vision(preset: Preset, console: Console) -> VisionBenchResult:
    from ioc.devtools.bench.vision import run_bench

    vision = get_settings().vision
    batch = preset.vision_batch or vision.batch_size
    return run_bench(
        vision, vision.device, preset.vision_frames, batch, preset.rounds, None, console
    )


def _vision_rows(result: VisionBenchResult, preset: Preset) -> list[Row]:
    return [
        Row(
            "vision",
            f"frames/s, worker path on {result.device}",
            HIGHER,
            result.worker.median,
            "naive model.predict loop",
            result.naive.median,
            str(preset.rounds),
        )
    ]


def _run_store(preset: Preset, console: Console) -> StoreBenchResult:
    from ioc.devtools.bench.store import run_bench

    return run_bench(preset.store_rows, preset.rounds, 5000, console)


def _store_rows(result: StoreBenchResult, preset: Preset) -> list[Row]:
    return [
        Row(
            "store",
            "rows/s, CopySink",
            HIGHER,
            result.sink_median,
            "raw COPY",
            result.raw_median,
            str(preset.rounds),
        )
    ]


def _run_e2e(preset: Preset, console: Console) -> E2EResult:
    from ioc.devtools.bench.e2e import run_bench

    return run_bench(preset.e2e_probes, True, console)


def _e2e_rows(result: E2EResult, preset: Preset) -> list[Row]:
    from ioc.devtools.bench.e2e import KINDS_MEASURED, LABELS

    baseline = percentile(result.baseline_ms, 0.99)
    rows = []
    for kind in KINDS_MEASURED:
        measured = result.kinds[kind]
        p99 = measured.p(0.99)
        if p99 is None:
            raise RuntimeError(f"no {kind} probe was notified")
        rows.append(
            Row(
                "e2e",
                f"p99 ms, {LABELS[kind]}",
                LOWER,
                p99,
                "aiokafka round trip p99",
                baseline,
                f"{len(measured.latency_ms)}/{measured.sent} probes",
            )
        )
    return rows


def _run_replay(preset: Preset, console: Console) -> ReplayBench:
    from ioc.devtools.bench.replay import run_bench

    return run_bench(preset.replay_minutes, preset.rounds, console)


def _replay_rows(result: ReplayBench, preset: Preset) -> list[Row]:
    return [
        Row(
            "replay",
            f"events/s, replay --max of {preset.replay_minutes:g} min",
            HIGHER,
            result.messages / statistics.median(result.replay_s),
            "raw topic copy",
            result.messages / statistics.median(result.copy_s),
            str(preset.rounds),
        )
    ]


BENCHES: dict[str, Bench[Any]] = {
    "stream": Bench(_run_stream, _stream_rows),
    "tickets": Bench(_run_tickets, _tickets_rows),
    "sensors": Bench(_run_sensors, _sensors_rows),
    "vision": Bench(_run_vision, _vision_rows),
    "store": Bench(_run_store, _store_rows),
    "e2e": Bench(_run_e2e, _e2e_rows),
    "replay": Bench(_run_replay, _replay_rows),
}


@dataclass(frozen=True)
class AllBenchResult:
    machine: Machine
    preset: Preset
    rows: list[Row]
    seconds: float

    @property
    def failed(self) -> bool:
        return any(row.failed for row in self.rows)

    def as_dict(self) -> dict[str, Any]:
        return {
            "machine": asdict(self.machine),
            "preset": asdict(self.preset),
            "seconds": self.seconds,
            "ratio": "ioc / baseline",
            "rows": [
                asdict(row) | {"ratio": None if row.failed else row.ratio} for row in self.rows
            ],
        }


def bench_names(only: Sequence[str]) -> list[str]:
    """The benches named, in `BENCHES`' order; a name that is no bench is a ValueError."""
    unknown = sorted(set(only) - set(BENCHES))
    if unknown:
        raise ValueError(f"no such bench: {', '.join(unknown)}; there are {', '.join(BENCHES)}")
    return [name for name in BENCHES if name in only]


def run_all(
    preset: Preset,
    console: Console,
    json_path: Path | None = None,
    only: Sequence[str] = tuple(BENCHES),
) -> AllBenchResult:
    """The benches named in `only` (all by default) in turn, in `BENCHES`' order; a failure
    becomes its row and the next bench runs."""
    chosen = bench_names(only)
    host = machine()
    console.print(f"machine: {host.line()}")
    rows: list[Row] = []
    began = time.monotonic()
    for number, name in enumerate(chosen, 1):
        console.rule(f"[{number}/{len(chosen)}] ioc bench {name} · preset {preset.name}")
        started = time.monotonic()
        try:
            measured = BENCHES[name].measure(preset, console)
        except Exception as error:  # one bench's failure must not hide the others
            console.print(f"[red]ioc bench {name} failed: {error!r}[/]")
            measured = [Row(name, failed=f"failed: {error}")]
        seconds = time.monotonic() - started
        rows += [replace(row, seconds=seconds) for row in measured]
    result = AllBenchResult(host, preset, rows, time.monotonic() - began)
    render(result, console)
    if json_path is not None:
        json_path.write_text(json.dumps(result.as_dict(), indent=2) + "\n", encoding="utf-8")
    return result


def _figure(value: float) -> str:
    return f"{value:,.1f}" if value < 100 else f"{value:,.0f}"


def render(result: AllBenchResult, console: Console) -> None:
    table = Table(
        "bench",
        "metric",
        "ioc",
        "baseline",
        "baseline is",
        "ioc / baseline",
        "better",
        "rounds",
        "bench s",
        title=(
            f"ioc bench all · preset {result.preset.name} · {result.seconds / 60:,.1f} min\n"
            f"{result.machine.line()}"
        ),
    )
    for row in result.rows:
        if row.failed:
            table.add_row(row.bench, f"[red]{row.failed}[/]", *[""] * 6, f"{row.seconds:.0f}")
            continue
        table.add_row(
            row.bench,
            row.metric,
            _figure(row.figure),
            _figure(row.baseline),
            row.baseline_name,
            f"{row.ratio:.2f}×",
            row.better,
            row.rounds,
            f"{row.seconds:.0f}",
        )
    console.print(table)
