"""`ioc bench console`: what a member of staff waits for in the console, on an ephemeral stack
holding a busy day's open incidents, against the same rows read straight from the database in
the same run.

Seeded: `--incidents` open and acknowledged incidents (each with a 1022 report), one operator.
Measured, one request at a time over HTTP (uvicorn, as `ioc api` serves it), alternating which
side goes first each round: the queue's refresh (`GET /console/queue`: session check, listing,
filters, SLA clocks, the template) against its baseline, the listing query alone on a pooled
connection; and an incident's page against the queries it runs, alone. The figures are medians
of per-round medians; the ratio is baseline latency / console latency (1.0: the console costs no
more than its queries). The queue refreshes every `console.queue_refresh_s` in every operator's
browser, so its rate says how many operators one API process serves.
"""

from __future__ import annotations

import statistics
import tempfile
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import psycopg
import uvicorn
from rich.console import Console
from rich.table import Table

from ioc.api.app import create_app
from ioc.config import Settings
from ioc.console import accounts
from ioc.console.accounts import Role
from ioc.devtools.bench.common import ephemeral_settings
from ioc.devtools.stack import stack_down, stack_up
from ioc.devtools.stack.process import free_port
from ioc.incidents import lifecycle
from ioc.models import FusedIncident, FusedStatus, Member
from ioc.runtime import run_async

PASSWORD = "bench-password-1"
COST = 10  # scrypt N = 2^10: sign-in is not what is measured
STAFF = "bench.operator"


@dataclass(frozen=True)
class Timing:
    console: list[float]  # per-round median seconds
    baseline: list[float]

    @property
    def console_ms(self) -> float:
        return statistics.median(self.console) * 1000

    @property
    def baseline_ms(self) -> float:
        return statistics.median(self.baseline) * 1000

    @property
    def ratio(self) -> float:
        return self.baseline_ms / self.console_ms


@dataclass(frozen=True)
class ConsoleBenchResult:
    incidents: int
    requests: int
    queue: Timing
    incident: Timing
    refresh_s: float

    @property
    def operators(self) -> int:
        """Operators one API process serves, each refreshing every `refresh_s`."""
        return int(self.refresh_s / (self.queue.console_ms / 1000))


def seeded(count: int, now: datetime) -> list[FusedIncident]:
    incidents = []
    for n in range(count):
        opened = now - timedelta(minutes=n % 600)
        member = Member(
            id=f"bench-inc-{n:05d}",
            source="hotline",
            source_key=f"TN-BENCH-{n:05d}",
            kind="citizen_report",
            severity=("urgent", "high", "normal")[n % 3],
            status="open",
            event_time=opened,
            title=f"Phản ánh thử {n}",
        )
        incidents.append(
            FusedIncident(
                id=member.id,
                version=1,
                change="opened",
                kind=member.kind,
                severity=member.severity,
                status=FusedStatus.ACKNOWLEDGED if n % 4 == 0 else FusedStatus.OPEN,
                title=f"Sự cố thử {n}: đèn đường hỏng, cây đổ, ngập nhẹ",
                district=("Phường Phan Đình Phùng", "Phường Gia Sàng", "Phường Tân Thịnh")[n % 3],
                lat=21.55 + (n % 50) * 0.002,
                lon=105.80 + (n // 50 % 50) * 0.002,
                event_time=opened,
                opened_at=opened,
                status_since=opened,
                ingested_at_ms=int(opened.timestamp() * 1000),
                sources=1,
                reports=1,
                members=[member],
                acknowledged_by=STAFF if n % 4 == 0 else None,
                acknowledged_at=opened if n % 4 == 0 else None,
                unit="pccc" if n % 5 == 0 else None,
                assigned_at=opened if n % 5 == 0 else None,
            )
        )
    return incidents


async def seed(settings: Settings, count: int) -> str:
    """The incidents and the operator; the id of one incident to open."""
    incidents = seeded(count, datetime.now(UTC))
    async with await psycopg.AsyncConnection.connect(settings.database.dsn) as conn:
        async with conn.transaction(), conn.cursor() as cur:
            for incident in incidents:
                await lifecycle.save(cur, incident)
        async with conn.transaction():
            await accounts.create(conn, STAFF, "Người thử tải", Role.OPERATOR, PASSWORD, COST)
    return incidents[count // 2].id


@contextmanager
def served(settings: Settings) -> Iterator[str]:
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(create_app(settings), host="127.0.0.1", port=port, log_level="warning")
    )
    thread = threading.Thread(target=server.run, name="bench-console", daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not server.started:
        if time.monotonic() > deadline:
            raise RuntimeError("the API did not start within 60 s")
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)


async def timed(step: Callable[[], Awaitable[object]], requests: int) -> float:
    """Median seconds of `requests` calls, one at a time."""
    seconds = []
    for _ in range(requests):
        started = time.perf_counter()
        await step()
        seconds.append(time.perf_counter() - started)
    return statistics.median(seconds)


async def measure(
    settings: Settings, base: str, incident_id: str, requests: int, rounds: int
) -> tuple[Timing, Timing]:
    async with httpx.AsyncClient(base_url=base, timeout=30) as http:
        signed = await http.post(
            "/console/login", data={"username": STAFF, "password": PASSWORD, "next": "/console/"}
        )
        if signed.status_code != 303:
            raise RuntimeError(f"sign-in failed: HTTP {signed.status_code}")

        async def queue_page() -> None:
            (await http.get("/console/queue")).raise_for_status()

        async def incident_page() -> None:
            (await http.get(f"/console/incidents/{incident_id}")).raise_for_status()

        async with await psycopg.AsyncConnection.connect(
            settings.database.dsn, autocommit=True
        ) as conn:
            active = [FusedStatus.OPEN, FusedStatus.ACKNOWLEDGED]

            async def queue_rows() -> None:
                await lifecycle.listed(conn, active, 500)

            async def incident_rows() -> None:
                incident = await lifecycle.get(conn, incident_id)
                await lifecycle.history(conn, incident_id)
                await lifecycle.tickets(conn, incident)
                await lifecycle.evidence_files(conn, incident)
                await lifecycle.deliveries(conn, incident_id)

            queue = Timing([], [])
            page = Timing([], [])
            for index in range(rounds):
                pairs = [(queue_page, queue.console), (queue_rows, queue.baseline)]
                pairs += [(incident_page, page.console), (incident_rows, page.baseline)]
                if index % 2:
                    pairs.reverse()
                for step, figures in pairs:
                    figures.append(await timed(step, requests))
    return queue, page


def run_bench(incidents: int, requests: int, rounds: int, console: Console) -> ConsoleBenchResult:
    with (
        tempfile.TemporaryDirectory(prefix="ioc-bench-console-") as root,
        ephemeral_settings(Path(root)) as stack_settings,
    ):
        with console.status("starting an ephemeral stack…"):
            stack_up(stack_settings)
        try:
            fast = stack_settings.console.model_copy(update={"password_cost": COST})
            # The pages are measured, not the rate limit (600 a minute from one address).
            unlimited = stack_settings.hotline.model_copy(
                update={"rate_limit_per_minute": 10**9, "rate_limit_burst": 10**9}
            )
            settings = stack_settings.model_copy(update={"console": fast, "hotline": unlimited})
            with console.status(f"seeding {incidents} open incidents…"):
                incident_id = run_async(seed(settings, incidents))
            with served(settings) as base, console.status("measuring…"):
                queue, page = run_async(measure(settings, base, incident_id, requests, rounds))
        finally:
            stack_down(stack_settings)
    result = ConsoleBenchResult(incidents, requests, queue, page, settings.console.queue_refresh_s)
    report(result, console)
    return result


def report(result: ConsoleBenchResult, console: Console) -> None:
    table = Table(
        title=f"Console, {result.incidents} open incidents, {result.requests} requests × rounds"
    )
    for column in ("page", "console (median ms)", "baseline: its queries (ms)", "ratio"):
        table.add_column(column)
    for name, timing in (("queue refresh", result.queue), ("incident page", result.incident)):
        table.add_row(
            name, f"{timing.console_ms:.1f}", f"{timing.baseline_ms:.1f}", f"{timing.ratio:.2f}×"
        )
    console.print(table)
    console.print(
        f"One API process refreshes the queue for about {result.operators} operators at once "
        f"(every {result.refresh_s:.0f} s each)."
    )
