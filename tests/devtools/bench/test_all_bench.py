"""`ioc bench stream` on a tiny run, its shared routing step, and `ioc bench all --quick` on the
benches without a test of their own: a row each with positive figures, ratio = ioc / baseline,
and the machine named. The other benches' tests run them as `bench all` does (`BENCHES[...].run`)
and check their rows, so this test does not run them a second time (that took 136 s of CI)."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace

import pytest
from rich.console import Console
from typer.testing import CliRunner

from ioc.cli import app
from ioc.devtools.bench import stream
from ioc.devtools.bench.all import BENCHES, QUICK, bench_names, run_all
from tests.devtools.bench.headline import check_headline, headline_rows

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def _record(value: bytes) -> SimpleNamespace:
    return SimpleNamespace(topic="in", partition=0, offset=7, key=b"k", value=value)


def test_route_forwards_valid_tickets_and_dead_letters_redacted_bad_ones() -> None:
    good, bad = stream.bench_messages(stream.BAD_EVERY, "route")[-2:]
    assert stream.route(_record(good.value)) == (True, good.value, [])
    valid, value, headers = stream.route(_record(bad.value))
    assert not valid and value is not None
    assert json.loads(bad.value)["phone"] not in value.decode()  # the reporter's contact
    assert dict(headers)["reason"] and dict(headers)["consumer"] == stream.CONSUMER.encode()


@pytest.mark.timeout(300)
def test_bench_stream_measures_both_runtimes_and_the_plain_loop_on_the_same_messages() -> None:
    console = Console(record=True, width=200)
    preset = replace(QUICK, stream_count=400)
    result = BENCHES["stream"].run(preset, console)
    assert len(result.faust) == len(result.batched) == len(result.plain) == 1
    assert result.faust_median > 0 and result.batched_median > 0 and result.plain_median > 0
    assert result.ratio == pytest.approx(result.faust_median / result.plain_median)
    assert result.batched_ratio == pytest.approx(result.batched_median / result.plain_median)
    assert result.dead_letters == 400 // stream.BAD_EVERY
    text = console.export_text()
    assert "ioc bench stream" in text and "plain aiokafka loop" in text
    assert f"{result.ratio:.2f}×" in text and f"{result.batched_ratio:.2f}×" in text
    faust, batched = headline_rows("stream", result, preset)
    assert (faust.figure, batched.figure) == (result.faust_median, result.batched_median)


# The benches no other test runs; vision's own test calls it with its own settings.
UNTESTED_ELSEWHERE = ("tickets", "vision", "store")


@pytest.mark.timeout(900)
def test_bench_all_quick_gives_every_bench_a_row_and_names_the_machine(tmp_path: Path) -> None:
    console = Console(record=True, width=200)
    result = run_all(QUICK, console, tmp_path / "all.json", only=UNTESTED_ELSEWHERE)
    text = console.export_text()
    print(text)
    assert not result.failed, [row.failed for row in result.rows if row.failed]
    assert [row.bench for row in result.rows] == list(UNTESTED_ELSEWHERE)
    for row in result.rows:
        check_headline(row, row.bench)
        assert f"{row.ratio:.2f}×" in text and row.seconds > 0
    host = result.machine
    assert host.cores > 0 and host.ram_gib > 0 and host.cpu and host.gpu and host.python
    assert "ioc bench all" in text and "ioc / baseline" in text and host.line() in text
    assert "[1/3] ioc bench tickets" in text and "[3/3] ioc bench store" in text
    written = json.loads((tmp_path / "all.json").read_text())
    assert written["machine"]["cores"] == host.cores
    assert [row["ratio"] for row in written["rows"]] == pytest.approx(
        [row.ratio for row in result.rows]
    )


def test_only_keeps_the_benches_order_and_names_an_unknown_bench() -> None:
    assert bench_names(["replay", "stream"]) == ["stream", "replay"]
    assert bench_names(list(BENCHES)) == list(BENCHES)
    with pytest.raises(ValueError, match="no such bench: nope; there are stream, tickets"):
        bench_names(["store", "nope"])
    refused = CliRunner().invoke(app, ["bench", "all", "--quick", "--only", "nope"])
    assert refused.exit_code == 2
    assert "no such bench: nope" in refused.output
