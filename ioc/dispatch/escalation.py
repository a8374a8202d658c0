"""Which pages of its severity's chain an active incident calls for at a moment: pure, so the
pager can be replayed and tested without a clock.

An open incident runs the chain from when it opened or reopened (`status_since`); the steps'
pages fall due at `after_minutes`, then every `repeat_minutes`. An acknowledgement stops it. An
acknowledged incident still unresolved after the chain's hold runs the chain again from that
moment, once per hold. Each page has a key (episode, cycle, step, round) that is the same
whenever it is computed, so a page is sent once.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from ioc.dispatch.roster import Chain
from ioc.models import FusedIncident, FusedStatus


@dataclass(frozen=True)
class DuePage:
    key: str
    role: str
    step: int  # 1-based, as staff count them
    round: int  # 1-based: the step's first page, its first repeat, …
    cycle: int  # 0: since it opened; n: the n-th hold after its acknowledgement
    due_at: datetime


def cycle_start(
    incident: FusedIncident, chain: Chain, now: datetime
) -> tuple[int, datetime] | None:
    """The chain's current run: (cycle, its start), or None when nobody is to be paged."""
    if incident.status == FusedStatus.OPEN:
        return 0, incident.status_since
    if (
        incident.status == FusedStatus.ACKNOWLEDGED
        and chain.hold_minutes is not None
        and incident.acknowledged_at is not None
    ):
        hold = timedelta(minutes=chain.hold_minutes)
        cycle = int((now - incident.acknowledged_at) / hold)
        if cycle >= 1:
            return cycle, incident.acknowledged_at + cycle * hold
    return None


def due_pages(incident: FusedIncident, chain: Chain, now: datetime) -> list[DuePage]:
    """Every page of the current run due by `now`, in the order they fell due."""
    run = cycle_start(incident, chain, now)
    if run is None:
        return []
    cycle, start = run
    pages = []
    for index, step in enumerate(chain.steps, start=1):
        for round_ in range(1, step.times + 1):
            repeat = timedelta(minutes=(step.repeat_minutes or 0) * (round_ - 1))
            due_at = start + timedelta(minutes=step.after_minutes) + repeat
            if due_at <= now:
                key = f"{incident.episode}:{cycle}:{index}:{round_}"
                pages.append(DuePage(key, step.role, index, round_, cycle, due_at))
    return sorted(pages, key=lambda page: (page.due_at, page.step))
