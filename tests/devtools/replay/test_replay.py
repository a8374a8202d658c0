"""Replays against the real local stack: a recorded stretch of the demo's mix republished into a
sandbox and run through the real streams worker there."""

from __future__ import annotations

import asyncio
import gzip
import json
import os
import re
import shutil
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest

from ioc.assets import CAMERA_REGISTRY_PATH, SAMPLES_DIR, SENSOR_REGISTRY_PATH
from ioc.config import Settings
from ioc.devtools.replay.labels import LABELS_FILE, Label
from ioc.devtools.replay.mix import detector_for, write_demo_mix
from ioc.devtools.replay.recording import Recording, open_recording
from ioc.devtools.replay.replay import Outcome, Pace, Replayer, read_outcome
from ioc.devtools.replay.sandbox import RulesFile, Sandbox, SandboxError
from ioc.incidents.composition import FusionRules
from ioc.incidents.fusion import fuse
from ioc.kafka import topics
from ioc.models import Incident, IncidentKind, IncidentSource, Severity
from ioc.models.base import deterministic_id
from ioc.models.incidents import IncidentStatus
from ioc.rules.camera.registry import RULES_PATH as CAMERA_RULES_PATH
from ioc.rules.sensor.registry import RULES_PATH as SENSOR_RULES_PATH
from ioc.store.writer import Store
from tests.conftest import end_offsets, published_since, wait_for

pytestmark = pytest.mark.integration

RECORDED_S = 600.0
START = datetime(2026, 11, 2, 1, 0, tzinfo=UTC)  # 08:00 in Thái Nguyên, weeks ago


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


@pytest.fixture(scope="module")
def rules_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A: the bundled registries and production rules (the test stack runs test ones).
    B: the same with a river's rate of rise needing 2 m in 10 min instead of 0.2 m, so the
    rising Gia Bảy gauge opens its incident only when it passes its alert level, later."""
    folder = tmp_path_factory.mktemp("rules")
    base = (
        f'[streams]\nsensor_registry = "{SENSOR_REGISTRY_PATH}"\n'
        f'sensor_rules = "{{rules}}"\n'
        f'[cameras]\nregistry = "{CAMERA_REGISTRY_PATH}"\nrules = "{CAMERA_RULES_PATH}"\n'
    )
    slower = _write(
        folder / "slower_rise.toml",
        "extends_bundled = true\n[types.FloodMonitoring.rate_of_rise]\nrise = 2.0\n",
    )
    a = _write(folder / "a.toml", base.format(rules=SENSOR_RULES_PATH))
    b = _write(folder / "b.toml", base.format(rules=slower))
    return a, b


@pytest.fixture(scope="module")
def recording(live_stack: Settings, tmp_path_factory: pytest.TempPathFactory) -> Recording:
    """Ten minutes of the demo's mix, its detections made by the real detector."""
    settings = live_stack.model_copy(
        update={
            "streams": live_stack.streams.model_copy(
                update={"sensor_registry": SENSOR_REGISTRY_PATH}
            )
        }
    )
    out = tmp_path_factory.mktemp("mix") / "recording"
    write_demo_mix(out, settings, SAMPLES_DIR, START, RECORDED_S, detector_for(settings))
    return open_recording(out)


def _live_offsets(settings: Settings) -> dict[str, dict[Any, int]]:
    return {spec.name: end_offsets(settings, spec.name) for spec in topics.TOPICS}


def _assert_live_untouched(settings: Settings, before: dict[str, dict[Any, int]]) -> None:
    """Nothing from the recording on any live topic (the live workers of other tests may still
    be adding their own) and no live row from the recording's time range or tickets."""
    recorded_day = START.strftime("%Y-%m-%dT").encode()
    for name, offsets in before.items():
        leaked = [
            record
            for record in published_since(settings, name, offsets)
            if recorded_day in (record.value or b"") or (record.key or b"").endswith(b"-r0000")
        ]
        assert leaked == [], name
    window = (START, START + timedelta(seconds=RECORDED_S))
    with psycopg.connect(settings.database.dsn) as conn:
        for table, column in (
            ("incidents", "event_time"),
            ("fused_incidents", "event_time"),
            ("sensor_readings", "observed_at"),
            ("detections", "event_time"),
        ):
            found = conn.execute(
                f"SELECT count(*) FROM {table} WHERE {column} BETWEEN %s AND %s", window
            ).fetchone()
            assert found == (0,), table
        tickets = conn.execute(
            "SELECT count(*) FROM tickets WHERE service_request_id LIKE %s", ("%-r0000",)
        ).fetchone()
        assert tickets == (0,)


def test_replaying_twice_gives_identical_incidents_and_never_touches_live(
    live_stack: Settings, recording: Recording, rules_files: tuple[Path, Path]
) -> None:
    rules = RulesFile.load(rules_files[0], live_stack)
    before = _live_offsets(live_stack)
    first = Replayer(live_stack, Sandbox("twice"), Pace(None), rules).run(recording)
    second = Replayer(live_stack, Sandbox("twice"), Pace(None), rules).run(recording)

    assert first.outcome is not None and second.outcome is not None
    assert first.outcome == second.outcome
    outcome = first.outcome
    kinds = {incident.kind for incident in outcome.incidents}
    assert {"fire", "flood"} <= kinds, kinds
    assert "water_level_high" in {candidate.kind for candidate in outcome.candidates}
    assert any(incident.sources >= 2 for incident in outcome.incidents), outcome.incidents
    # The mix's bad tickets and readings, dead-lettered again in the sandbox.
    assert outcome.rows["dead_letters"] == 4
    assert outcome.rows["tickets"] > 100
    # Event times are the recording's, not the replay's.
    assert all(
        START <= c.event_time <= START + timedelta(seconds=RECORDED_S) for c in outcome.candidates
    )
    assert first.published == second.published
    assert first.messages == sum(
        p.count for p in recording.manifest.partitions
    )  # the mix records input topics only
    _assert_live_untouched(live_stack, before)


def _candidate(name: str, source: IncidentSource, kind: IncidentKind, **state: Any) -> Incident:
    """One state of a candidate near Hồ Núi Cốc; `north_m` places it along a meridian."""
    north_m = state.pop("north_m")
    return Incident(
        id=deterministic_id("inc", "order", name),
        kind=kind,
        severity=Severity.HIGH,
        source=source,
        source_key=name,
        title=f"{kind} {name}",
        event_time=START + timedelta(minutes=state.pop("minutes", 0)),
        ingested_at_ms=1,
        district="Phường Thử Nghiệm",
        lat=21.6 + north_m / 111_320,
        lon=105.7,
        **state,
    )


async def _fuse_in_order(settings: Settings, states: list[Incident]) -> None:
    """Each state stored as its source stores it, then fused, as the streams worker does."""
    store = Store(settings.database.dsn, 2)
    try:
        for state in states:
            await store.upsert_incident(state)
            async with store.connection() as conn:
                await fuse(conn, state, FusionRules.load(), "order")
    finally:
        await store.close()


def test_the_outcome_does_not_depend_on_the_order_fusion_saw_the_candidates(
    live_stack: Settings,
) -> None:
    """Sources publish concurrently, so a replay's fusion may see a later candidate first. A
    camera fire `a`; a smoke sensor `c` too far from it; a 1022 report `b` between them, whose
    second ticket raises its count; `c` clears. In the second order `c` and `a` open incidents
    of their own before `b` joins them into `b`'s (the earliest)."""
    a = _candidate("a", IncidentSource.VISION, IncidentKind.FIRE, north_m=0, minutes=2)
    b1, b2 = (
        _candidate("b", IncidentSource.HOTLINE, IncidentKind.FIRE, north_m=400, reports=n)
        for n in (1, 2)
    )
    c1, c2 = (
        _candidate(
            "c",
            IncidentSource.SENSOR,
            IncidentKind.AIR_QUALITY_POOR,
            north_m=800,
            minutes=5,
            status=status,
        )
        for status in (IncidentStatus.OPEN, IncidentStatus.RESOLVED)
    )
    outcomes: list[Outcome] = []
    for order in ([a, b1, b2, c1, c2], [c1, a, c2, b1, b2]):
        sandbox = Sandbox("order")
        sandbox.check(live_stack)
        settings = sandbox.reset(live_stack)
        asyncio.run(_fuse_in_order(settings, order))
        outcomes.append(read_outcome(settings.database.dsn))
        sandbox.drop(live_stack)

    assert outcomes[0] == outcomes[1]
    (incident,) = outcomes[0].incidents
    assert incident.id == b1.id and incident.members == tuple(sorted((a.id, b1.id, c1.id)))
    assert (incident.sources, incident.reports, incident.status) == (3, 2, "open")


def test_compare_prints_the_incident_diff_and_the_score_on_staff_labels(
    live_stack: Settings, recording: Recording, rules_files: tuple[Path, Path], tmp_path: Path
) -> None:
    """The recording made a labelled set: staff called the market camera's fire a false alarm
    and confirmed a wrong-way driver there that no rule raises."""
    a, b = rules_files
    labelled = tmp_path / "labelled"
    shutil.copytree(recording.path, labelled)
    end = START + timedelta(seconds=RECORDED_S)
    labels = [
        Label("inc-1", "cam-tn-cho-thai", "fire", "false_alarm", START, end),
        Label("inc-2", "cam-tn-cho-thai", "wrong_way", "handled", START, end),
    ]
    document = {"labels": [vars(entry) for entry in labels]}
    (labelled / LABELS_FILE).write_text(json.dumps(document, default=str))
    run = subprocess.run(
        [
            *(sys.executable, "-m", "ioc", "replay", str(labelled), "--max"),
            *("--sandbox", "rules", "--compare", str(a), str(b)),
        ],
        capture_output=True,
        text=True,
        timeout=600,
        env=dict(os.environ) | {"COLUMNS": "200"},
    )
    assert run.returncode == 0, run.stdout + run.stderr
    out = run.stdout
    # The gauge's rate-of-rise incident is gone under B; its level incident is in both.
    assert re.search(r"raised\): \d+ the same, 1 only in A, 0 only in B, 0 changed", out), out
    only_a = out[out.index("Source incidents (what the rules raised): opened only in A") :]
    only_a = only_a[: only_a.index("Incidents (what staff act on)")]
    assert "water_level_high" in only_a and "tn-wl-cau-gia-bay" in only_a, out
    # Staff would see the flood it joined stay local: one candidate fewer than district-wide.
    changed = out[out.index("Incidents (what staff act on): changed") :]
    assert "flood" in changed and "scope district → local" in changed, out
    # The sensor change leaves the cameras alone: both keep the false alarm, both miss the other.
    assert re.search(r"false alarms raised again\W+1/1\W+1/1", out), out
    assert re.search(r"confirmed incidents raised\W+0/1\W+0/1", out), out
    assert re.search(r"precision on the labels\W+0\.00\W+0\.00", out), out


def test_an_edited_recording_is_refused_before_anything_runs(
    live_stack: Settings, recording: Recording, tmp_path: Path
) -> None:
    copy = tmp_path / "edited"
    shutil.copytree(recording.path, copy)
    victim = next(p for p in recording.manifest.partitions if p.topic == topics.HOTLINE_TICKETS)
    path = copy / victim.file
    lines = gzip.decompress(path.read_bytes()).splitlines(keepends=True)
    lines[3] = lines[3].replace(b'"timestamp_ms":', b'"timestamp_ms":1')
    path.write_bytes(gzip.compress(b"".join(lines), mtime=0))

    run = subprocess.run(
        [sys.executable, "-m", "ioc", "replay", str(copy), "--sandbox", "edited"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 1
    assert victim.file in run.stdout and "offset" in run.stdout, run.stdout
    with psycopg.connect(live_stack.database.dsn) as conn:
        schemas = conn.execute(
            "SELECT count(*) FROM pg_namespace WHERE nspname = 'sandbox_edited'"
        ).fetchone()
    assert schemas == (0,)


def test_a_schema_that_is_not_a_sandbox_is_never_touched(
    live_stack: Settings, recording: Recording
) -> None:
    with psycopg.connect(live_stack.database.dsn, autocommit=True) as conn:
        conn.execute("CREATE SCHEMA IF NOT EXISTS sandbox_taken")
        conn.execute("CREATE TABLE IF NOT EXISTS sandbox_taken.precious (n int)")
    with pytest.raises(SandboxError, match="not an ioc replay sandbox"):
        Replayer(live_stack, Sandbox("taken"), Pace(None)).run(recording)
    with psycopg.connect(live_stack.database.dsn) as conn:
        assert conn.execute("SELECT to_regclass('sandbox_taken.precious')").fetchone() != (None,)


def test_speed_keeps_the_recorded_pacing(live_stack: Settings, tmp_path: Path) -> None:
    """At 10× a recording spanning 20 s cannot take less than 2 s to publish."""
    from ioc.devtools.replay.recording import RecordedMessage, RecordingWriter

    start = datetime(2026, 11, 20, 1, 0, tzinfo=UTC)
    writer = RecordingWriter(tmp_path / "paced", start, start + timedelta(seconds=21))
    for second in range(21):
        writer.add(
            RecordedMessage(
                topics.HOTLINE_TICKETS,
                0,
                second,
                int(start.timestamp() * 1000) + second * 1000,
                b"k",
                b"{}",
                (),
            )
        )
    writer.close()
    result = Replayer(live_stack, Sandbox("paced"), Pace(10.0)).run(
        open_recording(tmp_path / "paced")
    )
    assert result.messages == 21
    assert result.processing_s >= 2.0
    assert result.outcome is not None and result.outcome.rows["dead_letters"] == 21


def test_a_range_of_the_live_topics_replays_without_a_recording(live_stack: Settings) -> None:
    """`--kafka`: what the live topics hold in [from, to) goes through a sandbox; the range is
    picked by timestamp, so messages outside it stay out. The "live" pipeline here is one under
    a topic prefix of its own, so that only this test's messages are in its topics."""
    from kafka import KafkaProducer

    from ioc.devtools.stack.kafka import ensure_topics

    live = live_stack.model_copy(
        update={"kafka": live_stack.kafka.model_copy(update={"topic_prefix": "range-test."})}
    )
    ensure_topics(live.kafka)
    day = datetime(2026, 11, 19, 1, 0, tzinfo=UTC)
    client = KafkaProducer(bootstrap_servers=live.kafka.bootstrap_servers, acks="all")
    for minute in (-5, 1, 2, 3, 30):  # three inside a 10-minute window, two outside
        at_ms = int((day + timedelta(minutes=minute)).timestamp() * 1000)
        tickets = live.kafka.topic(topics.HOTLINE_TICKETS)
        client.send(tickets, key=b"kafka-range", value=b"{", timestamp_ms=at_ms)
    client.flush()
    client.close()
    run = subprocess.run(
        [
            *(sys.executable, "-m", "ioc", "replay", "--kafka", "--sandbox", "from-kafka"),
            *("--from", day.isoformat(), "--to", (day + timedelta(minutes=10)).isoformat()),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        env=dict(os.environ) | {"COLUMNS": "200", "IOC_KAFKA__TOPIC_PREFIX": "range-test."},
    )
    assert run.returncode == 0, run.stdout + run.stderr
    assert re.search(r"sandbox\.from-kafka\.ioc\.hotline\.tickets\s*│\s*3\b", run.stdout), (
        run.stdout
    )
    with psycopg.connect(live.database.dsn) as conn:
        letters = conn.execute("SELECT count(*) FROM sandbox_from_kafka.dead_letters").fetchone()
    assert letters == (3,)


def test_drop_deletes_the_sandbox_topics_and_schema(live_stack: Settings, tmp_path: Path) -> None:
    from kafka import KafkaAdminClient

    from ioc.devtools.replay.recording import RecordedMessage, RecordingWriter

    writer = RecordingWriter(tmp_path / "tiny", START, START + timedelta(seconds=1))
    writer.add(
        RecordedMessage(topics.HOTLINE_TICKETS, 0, 0, int(START.timestamp() * 1000), b"k", b"{")
    )
    writer.close()
    Replayer(live_stack, Sandbox("to-drop"), Pace(None)).run(open_recording(tmp_path / "tiny"))

    def leftovers() -> tuple[list[str], Any]:
        admin = KafkaAdminClient(bootstrap_servers=live_stack.kafka.bootstrap_servers)
        try:
            names = [
                t for t in admin.list_topics() if "sandbox.to-drop." in t or "sandbox-to-drop-" in t
            ]
        finally:
            admin.close()
        with psycopg.connect(live_stack.database.dsn) as conn:
            schema = conn.execute("SELECT to_regnamespace('sandbox_to_drop')").fetchone()
        return names, schema

    names, schema = leftovers()
    assert names and schema != (None,)
    run = subprocess.run(
        [sys.executable, "-m", "ioc", "replay", "--drop", "--sandbox", "to-drop"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    assert wait_for(lambda: leftovers() == ([], (None,)) or None, 30, "sandbox gone")
