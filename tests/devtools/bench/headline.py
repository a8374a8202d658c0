"""What every bench's headline rows in `ioc bench all` must hold, checked by each bench's test."""

from __future__ import annotations

from ioc.devtools.bench.all import BENCHES, HIGHER, LOWER, QUICK, Preset, Row


def check_headline(row: Row, bench: str) -> None:
    """One row of `bench`: a positive figure against a named baseline, the right direction."""
    assert row.bench == bench and not row.failed, row
    assert row.figure > 0 and row.baseline > 0 and row.baseline_name, row
    assert row.ratio == row.figure / row.baseline
    assert row.better == (LOWER if row.metric.startswith("p99 ms") else HIGHER), row


def headline_rows(bench: str, result: object, preset: Preset = QUICK) -> list[Row]:
    """`bench`'s rows read from `result`, each checked by `check_headline`."""
    rows = BENCHES[bench].rows(result, preset)
    assert rows, f"{bench} gave no row"
    for row in rows:
        check_headline(row, bench)
    return rows
