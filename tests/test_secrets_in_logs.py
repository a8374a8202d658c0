"""Reporter contact data and secrets never reach a log.

A realistic run drives every edge that sees them: `ioc api` as deployed (its own process, at
debug level) takes 1022 reports with phone numbers, e-mail and names under an integrator's key,
a status change, a wrong key, a rejected report and staff calls with a staff key; rejected
messages straight on the intake topic are dead-lettered; the streams, vision and alert workers
store, fuse and alert. Then every log of the run (workers, stack services, the API server, this
test's own logging) is searched for each phone number in several spellings, the e-mail, the
names, the keys, the reporter-hash key, the database password and the webhook URL.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import random
import re
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import psycopg
import pytest

from ioc.alerts.channels import post_json
from ioc.config import Settings, required_secret
from ioc.devtools.scenario.workers import Workers
from ioc.devtools.stack.process import free_port, log_tail
from ioc.hotline.privacy import normalise_phone
from ioc.kafka import topics
from tests.conftest import WebhookReceiver, dead_letters, wait_for

pytestmark = pytest.mark.integration

V2 = "/open311/v2"
INCIDENTS = "/api/v1/incidents"
API_KEY = "k-9f4c2e7a1b3d5e60"
STAFF_KEY = "s-3a7e9c1f5b2d8e46"
WRONG_KEY = "k-9f4c2e7a1b3d5e61"  # a near miss of API_KEY: a typo'd key is not logged either
# Reporter contact data as citizens and integrators spell it.
PHONES = ("0916 274 583", "+84 983 615 297", "0358.742.916", "84 377 508 264", "0708-451-369")
EMAIL = "tran.leakcheck@example.vn"
NAMES = ("Quyênleak", "Trầnleakcheck")


@dataclass(frozen=True)
class ApiServer:
    url: str
    log: Path


@pytest.fixture(scope="module")
def api_server(workers: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ApiServer]:
    """`ioc api` in its own process at debug level, with an integrator's and a staff member's
    key from the environment; everything it prints goes to one log file."""
    port = free_port()
    log = tmp_path_factory.mktemp("api") / "api.log"
    env = os.environ | {
        "IOC_HOTLINE__API_PORT": str(port),
        "IOC_HOTLINE__API_KEYS": json.dumps({"leak-check": API_KEY}),
        "IOC_ALERTS__STAFF_KEYS": json.dumps({"lan.nguyen": STAFF_KEY}),
        "IOC_LOG_LEVEL": "debug",
        "PYTHONUNBUFFERED": "1",
    }
    with log.open("ab") as out:
        child = subprocess.Popen(
            [sys.executable, "-m", "ioc", "api"],
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
        )
    url = f"http://127.0.0.1:{port}"

    def healthy() -> bool:
        if child.poll() is not None:
            raise AssertionError(f"ioc api exited with {child.returncode}:\n{log_tail(log)}")
        try:
            return httpx.get(f"{url}/healthz", timeout=2.0).status_code == 200
        except httpx.TransportError:
            return False

    try:
        wait_for(healthy, timeout=60, what="ioc api to answer /healthz")
        yield ApiServer(url, log)
    finally:
        child.terminate()
        try:
            child.wait(15)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()


def spellings(phone: str) -> set[str]:
    """The ways one number may be written: as given, digits only, grouped, +84 and 84 forms."""
    national = normalise_phone(phone)
    core = national[1:]
    grouped = f"{core[:3]} {core[3:6]} {core[6:]}"
    return {
        phone,
        national,
        f"{national[:4]} {national[4:7]} {national[7:]}",
        f"+84{core}",
        f"84{core}",
        f"+84 {grouped}",
    }


def squeezed(text: str) -> str:
    """Separators and line breaks out, so a number split by a formatter or a wrapped console
    line is still one string of digits."""
    return re.sub(r"[\s.()\-]", "", text)


def mentions(text: str, needle: str) -> bool:
    """`needle` is in `text`, even across a wrapped console line."""
    return squeezed(needle) in squeezed(text)


def secrets_of(settings: Settings) -> dict[str, str]:
    found = {
        "API key": API_KEY,
        "staff key": STAFF_KEY,
        "wrong API key": WRONG_KEY,
        "streams.pii_key": required_secret(settings.streams.pii_key, "streams.pii_key"),
    }
    password = urlsplit(settings.database.dsn).password
    if password:
        found["database password"] = password
    if settings.alerts.webhook_url:  # its path and query are the credential of many webhooks
        found["webhook URL"] = settings.alerts.webhook_url
    return found


def leaks(text: str, settings: Settings) -> list[str]:
    """What of the contact data and secrets `text` contains, described."""
    found: list[str] = []
    flat = squeezed(text)
    for phone in PHONES:
        found += [f"phone {s!r}" for s in sorted(spellings(phone)) if s in text]
        core = normalise_phone(phone)[1:]
        if re.search(rf"{core}(?!\d)", flat):
            found.append(f"phone {phone!r} (digits {core})")
    lowered = text.casefold()
    if EMAIL.casefold() in lowered or EMAIL.split("@")[0] in lowered:
        found.append(f"e-mail {EMAIL!r}")
    found += [f"name {name!r}" for name in NAMES if name.casefold() in lowered]
    for what, secret in secrets_of(settings).items():
        # A whole token: a client id such as `ioc-test-bridge-1` is not the password `ioc-test`.
        if re.search(rf"(?<![\w-]){re.escape(secret)}(?![\w-])", text):
            found.append(what)
    return found


def run_logs(workers: Workers, api: ApiServer) -> dict[str, str]:
    """Every log of the run: the workers' and the stack services' (not Kafka's data files, which
    are the topics themselves) and the API server's."""
    stack_dir = workers.settings.stack.dir
    files = {str(path.relative_to(stack_dir)): path for path in stack_dir.glob("*/*.log")}
    files["ioc api"] = api.log
    return {name: path.read_text(errors="replace") for name, path in sorted(files.items())}


def place() -> tuple[float, float]:
    """Around Đà Nẵng, far from the other tests' reports and from each other."""
    return round(16.05 + random.uniform(-0.3, 0.3), 5), round(108.2 + random.uniform(-0.3, 0.3), 5)


def report(phone: str, description: str, **fields: Any) -> dict[str, Any]:
    lat, long = place()
    return {
        "description": f"{description} ({uuid.uuid4().hex[:6]})",
        "channel": "app",
        "lat": lat,
        "long": long,
        "phone": phone,
        "email": EMAIL,
        "first_name": NAMES[0],
        "last_name": NAMES[1],
        **fields,
    }


def stored_tickets(db: psycopg.Connection, ids: list[str]) -> dict[str, tuple[Any, ...]]:
    rows = db.execute(
        "SELECT t.service_request_id, t.reporter_masked, i.fused_id FROM tickets t "
        "LEFT JOIN incidents i ON i.id = t.incident_id WHERE t.service_request_id = ANY(%s)",
        (ids,),
    ).fetchall()
    return {row[0]: row for row in rows if row[2] is not None}


def post_reports(api: httpx.Client) -> list[str]:
    """Reports through every intake form (JSON, form, the api_key field, a key in the URL); the
    ids of the accepted ones. A wrong key and a report outside Vietnam are refused."""
    key = {"X-API-Key": API_KEY}
    fire = report(
        PHONES[0],
        f"Cháy nhà dân, khói đen, có người mắc kẹt, gọi lại {PHONES[0]} hoặc {EMAIL}",
        service_code="chay_no",
    )
    flood = report(PHONES[1], f"Ngập sâu 50cm, xe chết máy, liên hệ {PHONES[1]}")
    lamp = report(
        PHONES[4], "Đèn đường hỏng cả dãy phố", api_key=API_KEY, service_code="dien_nuoc_chieu_sang"
    )
    accepted = [
        api.post(f"{V2}/requests.json", json=fire, headers=key),
        api.post(f"{V2}/requests.json", data=flood, headers=key),
        api.post(f"{V2}/requests.json", data=lamp),  # Open311's api_key form field
        # A careless client that puts the key and the phone in a POST's URL as well.
        api.post(
            f"{V2}/requests.json",
            params={"api_key": API_KEY, "phone": PHONES[4]},
            json=report(PHONES[4], "Rác thải đổ trộm ven đường", service_code="moi_truong"),
            headers=key,
        ),
    ]
    assert [r.status_code for r in accepted] == [201] * 4, [r.text for r in accepted]
    wrong = api.post(f"{V2}/requests.json", json=fire, headers={"X-API-Key": WRONG_KEY})
    assert wrong.status_code == 401, wrong.text
    outside = api.post(f"{V2}/requests.json", json=fire | {"lat": 48.85}, headers=key)
    assert outside.status_code == 400, outside.text
    return [r.json()[0]["service_request_id"] for r in accepted]


def post_invalid(producer: Any, intake: str) -> dict[str, Any]:
    """Reports straight on the intake topic that the stream side rejects, each with contact data:
    one outside Vietnam, one whose phone is a JSON number, one not JSON at all. Marker (the
    request id, kept through redaction) -> where it landed."""
    run = uuid.uuid4().hex[:8]
    when = {"requested_datetime": "2026-11-23T08:00:00+07:00"}
    outside = report(PHONES[2], f"Cây đổ chắn đường, gọi {PHONES[2]}", lat=48.85)
    number = report("", "Mất nước sinh hoạt cả khu")
    number["phone"] = int("84" + normalise_phone(PHONES[3])[1:])
    invalid = {
        f"LEAK-{run}-1": json.dumps(outside | when | {"service_request_id": f"LEAK-{run}-1"}),
        f"LEAK-{run}-2": json.dumps(number | when | {"service_request_id": f"LEAK-{run}-2"}),
        f"LEAK-{run}-3": f'{{"service_request_id": "LEAK-{run}-3", "phone": "{PHONES[3]}", '
        f'"email": "{EMAIL}", "description": "gọi {PHONES[2]}"',
    }
    return {
        marker: producer.send(intake, key=marker.encode(), value=value.encode()).get(timeout=30)
        for marker, value in invalid.items()
    }


def staff_and_status_calls(api: httpx.Client, fused_id: str, ticket_id: str) -> None:
    """Staff read and acknowledge the incident (X-API-Key and Bearer), an integrator moves a
    ticket; notes and reasons quote the caller's number, and a client sends its key on a read."""
    staff = {"X-API-Key": STAFF_KEY}
    bearer = {"Authorization": f"Bearer {STAFF_KEY}"}
    assert api.get(INCIDENTS, headers=staff).status_code == 200
    assert api.get(f"{INCIDENTS}/{fused_id}", headers=bearer).status_code == 200
    ack = api.post(
        f"{INCIDENTS}/{fused_id}/ack",
        json={"reason": f"Đã gọi lại người báo {PHONES[0]}"},
        headers=bearer,
    )
    assert ack.status_code == 200, ack.text
    assert api.get(INCIDENTS, headers={"X-API-Key": WRONG_KEY}).status_code == 401
    moved = api.post(
        f"{V2}/requests/{ticket_id}/status.json",
        data={"api_key": API_KEY, "status": "assigned", "status_notes": f"hẹn {PHONES[4]}"},
    )
    assert moved.status_code == 200, moved.text
    read = api.get(
        f"{V2}/requests.json", params={"service_request_id": ticket_id, "api_key": API_KEY}
    )
    assert read.status_code in (200, 400), read.text


def test_a_full_run_logs_no_contact_data_and_no_secret(
    api_server: ApiServer,
    worker_processes: Workers,
    workers: Settings,
    producer: Any,
    webhook: WebhookReceiver,
    db: psycopg.Connection,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    intake = workers.kafka.topic(topics.HOTLINE_TICKETS)
    with httpx.Client(base_url=api_server.url, timeout=30.0) as api:
        ids = post_reports(api)
        sent = post_invalid(producer, intake)

        tickets = wait_for(
            lambda: (found := stored_tickets(db, ids)) and len(found) == len(ids) and found,
            what="the reports stored and fused",
        )
        assert all(row[1] and "*" in row[1] for row in tickets.values()), "masked reporters"
        fire = tickets[ids[0]][2]
        wait_for(
            lambda: mentions(worker_processes.log_file("alerts").read_text(), fire),
            what=f"the console alert of {fire}",
        )
        staff_and_status_calls(api, fire, ids[2])
        for request_id in ids:
            answer = api.get(f"{V2}/requests/{request_id}.json")
            assert answer.status_code == 200 and not leaks(answer.text, workers), answer.text

    letters = {
        marker: wait_for(
            lambda marker=marker: dead_letters(workers, marker.encode()),
            what=f"the dead letter of {marker}",
        )
        for marker in sent
    }
    wait_for(
        lambda: all(
            db.execute(
                "SELECT 1 FROM dead_letters WHERE source_topic = %s AND source_partition = %s "
                "AND source_offset = %s",
                (intake, where.partition, where.offset),
            ).fetchone()
            for where in sent.values()
        ),
        what="the dead letters recorded",
    )
    for marker, [letter] in letters.items():
        assert not leaks(letter.value.decode(errors="replace"), workers), (marker, letter.value)
    hooks = [json.dumps(p, ensure_ascii=False) for p in webhook.received if fire in json.dumps(p)]
    assert hooks and not any(leaks(payload, workers) for payload in hooks), hooks

    def api_logged_everything() -> dict[str, str] | None:
        logs = run_logs(worker_processes, api_server)
        done = f"incident {fire}: " in logs["ioc api"] and f"{ids[2]} moved" in logs["ioc api"]
        return logs if done else None

    logs = wait_for(api_logged_everything, timeout=30, what="the API's log lines")
    # The search looks at the right logs: each is there and shows this run's work.
    assert {"logs/streams.log", "logs/vision.log", "logs/alerts.log"} <= set(logs), list(logs)
    assert all(logs[name].strip() for name in logs), [name for name in logs if not logs[name]]
    for request_id in ids:
        assert f"ticket {request_id} accepted from leak-check" in logs["ioc api"]
    assert "request from leak-check rejected" in logs["ioc api"]
    # uvicorn's access lines are there: the GET's key masked, the POST's URL without its query.
    assert "GET /open311/v2/requests.json?service_request_id=" in logs["ioc api"]
    assert "&api_key=***" in logs["ioc api"]
    assert '"POST /open311/v2/requests.json HTTP/1.1" 201' in logs["ioc api"]
    streams_log = logs["logs/streams.log"]
    for where in sent.values():
        assert f"dead letter from {intake}[{where.partition}]@{where.offset}" in streams_log
    assert mentions(logs["logs/alerts.log"], fire)

    # And this process's log; its own clients (httpx, kafka-python) log what the test sends.
    logs["pytest (this test)"] = "\n".join(
        f"{record.name}: {record.getMessage()}"
        for record in caplog.records
        if not record.name.startswith(("httpx", "httpcore", "kafka"))
    )
    found = {
        name: (what, [line for line in text.splitlines() if leaks(line, workers)][:5])
        for name, text in logs.items()
        if (what := leaks(text, workers))
    }
    assert not found, found


def test_a_refused_webhook_fails_without_quoting_its_url() -> None:
    """The delivery error is logged and stored: it must not carry the webhook's secret path."""
    url = "https://hooks.example.vn/services/T0001/B0002/s3cr3t-hook-token?token=abc123"

    async def refuse() -> None:
        transport = httpx.MockTransport(lambda request: httpx.Response(404))
        async with httpx.AsyncClient(transport=transport) as client:
            await post_json(client, url, {"type": "ioc.incident"}, retries=2)

    with pytest.raises(httpx.HTTPStatusError) as refused:
        asyncio.run(refuse())
    assert str(refused.value) == "HTTP 404"
