"""`ioc bench e2e`: the webhook receiver's matching, and one run with three probes per kind on an
ephemeral stack of its own (every worker, a real local webhook)."""

from __future__ import annotations

import io
import json
from dataclasses import replace
from pathlib import Path

import pytest
from rich.console import Console

from ioc.devtools.bench.all import BENCHES, QUICK
from ioc.devtools.bench.e2e import KINDS_MEASURED, Receiver, camera_registry_toml
from ioc.models.registry import load_camera_registry
from tests.devtools.bench.headline import headline_rows


def test_receiver_keeps_the_first_firing_per_member() -> None:
    receiver = Receiver()
    incident = {"members": [{"source_key": "a"}, {"source_key": "b"}]}
    receiver.record(json.dumps({"notification": "firing", "incident": incident}).encode(), 1.0)
    receiver.record(json.dumps({"notification": "firing", "incident": incident}).encode(), 2.0)
    receiver.record(
        json.dumps(
            {"notification": "resolved", "incident": {"members": [{"source_key": "c"}]}}
        ).encode(),
        3.0,
    )
    receiver.record(b"not json", 4.0)
    assert receiver.firing == {"a": 1.0, "b": 1.0}
    receiver.server.server_close()


def test_camera_registry_loads(tmp_path: Path) -> None:
    path = tmp_path / "cameras.toml"
    path.write_text(camera_registry_toml(["c-0", "c-1"]), encoding="utf-8")
    registry = load_camera_registry(path)
    assert [c.id for c in registry.cameras] == ["c-0", "c-1"]


@pytest.mark.integration
@pytest.mark.slow
@pytest.mark.timeout(900)
def test_bench_e2e_end_to_end() -> None:
    out = io.StringIO()
    console = Console(file=out, width=160)
    preset = replace(QUICK, e2e_probes=3)
    result = BENCHES["e2e"].run(preset, console)  # with background load, as `bench all`
    print(out.getvalue())
    for kind in KINDS_MEASURED:
        measured = result.kinds[kind]
        assert measured.sent == 3
        assert measured.latency_ms, f"no {kind} probe was notified"
        assert all(value > 0 for value in measured.latency_ms)
    assert result.baseline_ms and all(value > 0 for value in result.baseline_ms)
    assert result.background_sent > 0
    text = out.getvalue()
    assert "ioc bench e2e" in text and "baseline" in text
    assert set(result.as_dict()["kinds"]) == set(KINDS_MEASURED)
    rows = headline_rows("e2e", result, preset)
    notified = [f"{len(result.kinds[kind].latency_ms)}/3 probes" for kind in KINDS_MEASURED]
    assert [row.rounds for row in rows] == notified
