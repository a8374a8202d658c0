"""`ioc bench replay` on a short stretch: it replays, copies the same messages, and reports both."""

from __future__ import annotations

import pytest
from rich.console import Console

from ioc.devtools.bench.all import BENCHES, QUICK
from tests.devtools.bench.headline import headline_rows


@pytest.mark.slow
def test_the_replay_bench_measures_replay_and_raw_copy_of_the_same_messages() -> None:
    console = Console(record=True, width=140)
    assert (QUICK.replay_minutes, QUICK.rounds) == (2, 1)
    bench = BENCHES["replay"].run(QUICK, console)
    assert bench.span_s > 100  # two recorded minutes, less the first tick's wait
    assert bench.messages > 300
    assert len(bench.replay_s) == len(bench.copy_s) == 1
    assert bench.replay_speedup > 1 and bench.copy_speedup > bench.replay_speedup
    text = console.export_text()
    assert "replay --max" in text and "raw topic copy" in text and "× real time" in text
    (row,) = headline_rows("replay", bench)
    assert row.figure < row.baseline  # the raw copy does less than a replay
