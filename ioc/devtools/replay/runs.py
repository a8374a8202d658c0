"""`ioc replay`: one replay, or two under two rule configurations and their incident diff."""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    Task,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.text import Text

from ioc.config import Settings
from ioc.devtools.replay.compare import OutcomeDiff, diff_outcomes
from ioc.devtools.replay.labels import read_labels, score
from ioc.devtools.replay.record import record
from ioc.devtools.replay.recording import Recording, open_recording
from ioc.devtools.replay.replay import INPUT_TOPICS, Pace, Replayer, ReplayResult, replayable
from ioc.devtools.replay.report import render_diff, render_result, render_scores
from ioc.devtools.replay.sandbox import RulesFile, Sandbox
from ioc.runtime import run_async


class RateColumn(ProgressColumn):
    """Events per second over rich's recent window."""

    def render(self, task: Task) -> Text:
        speed = task.finished_speed or task.speed
        return Text(f"{speed:,.0f} ev/s" if speed else "– ev/s", style="cyan")


@contextmanager
def from_kafka(
    settings: Settings,
    start: datetime,
    end: datetime,
    console: Console,
) -> Iterator[Recording]:
    """`--kafka`: the live topics' range recorded to a temporary folder, replayed, removed."""
    out = settings.stack.dir / "recordings" / f"kafka-{time.strftime('%Y%m%d-%H%M%S')}"
    try:
        with console.status("recording the range from Kafka…"):
            names = [settings.kafka.topic(name) for name in INPUT_TOPICS]
            run_async(record(settings.kafka, names, start, end, out))
        yield open_recording(out)
    finally:
        shutil.rmtree(out, ignore_errors=True)


def replay_once(
    settings: Settings,
    recording: Recording,
    sandbox: Sandbox,
    pace: Pace,
    rules: RulesFile | None,
    console: Console,
    label: str = "replay",
) -> ReplayResult:
    names, _ = replayable(recording)
    total = sum(p.count for p in recording.manifest.partitions if p.topic in names)
    with Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        RateColumn(),
        TimeRemainingColumn(),
        TimeElapsedColumn(),
        console=console,
    ) as progress:
        published = progress.add_task(f"{label}: setting up sandbox {sandbox.name}", total=total)
        processed = progress.add_task(f"{label}: processed", total=total)

        def show(sent: int, done: int) -> None:
            progress.update(published, completed=sent, description=f"{label}: published")
            progress.update(processed, completed=done)

        result = Replayer(settings, sandbox, pace, rules, show).run(recording)
        progress.update(published, completed=result.messages)
        progress.update(processed, completed=result.messages)
    return result


def compare(
    settings: Settings,
    recording: Recording,
    sandbox_name: str,
    rules: tuple[Path, Path],
    pace: Pace,
    console: Console,
) -> OutcomeDiff:
    """The recording under rules A then rules B, each in its own sandbox; their incident diff,
    and on a labelled set (`ioc record --labels`) how each fares on staff's judgements."""
    results = []
    for suffix, path in zip(("a", "b"), rules, strict=True):
        sandbox = Sandbox(f"{sandbox_name}-{suffix}")
        loaded = RulesFile.load(path, settings)
        results.append(
            replay_once(settings, recording, sandbox, pace, loaded, console, suffix.upper())
        )
        render_result(results[-1], console)
    a, b = (result.outcome for result in results)
    assert a is not None and b is not None
    found = diff_outcomes(a, b)
    render_diff(found, str(rules[0]), str(rules[1]), console)
    labels = read_labels(recording.path)
    if labels:
        render_scores(score(labels, a), score(labels, b), console)
    return found
