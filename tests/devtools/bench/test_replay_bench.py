"""`ioc bench replay` on a short stretch: it replays, copies the same messages, and reports both."""

from __future__ import annotations

import pytest
from rich.console import Console

from ioc.devtools.bench.replay import run_bench


@pytest.mark.slow
def test_the_replay_bench_measures_replay_and_raw_copy_of_the_same_messages() -> None:
    console = Console(record=True, width=140)
    bench = run_bench(minutes=2, rounds=1, console=console)
    assert bench.span_s > 100  # two recorded minutes, less the first tick's wait
    assert bench.messages > 300
    assert len(bench.replay_s) == len(bench.copy_s) == 1
    assert bench.replay_speedup > 1 and bench.copy_speedup > bench.replay_speedup
    text = console.export_text()
    assert "replay --max" in text and "raw topic copy" in text and "× real time" in text
