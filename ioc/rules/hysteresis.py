"""Hysteresis: the one way a camera or sensor rule opens and resolves an episode.

A condition opens its episode once it has been met without a break for `hold`; an open episode
resolves once its condition has been unmet without a break for `clear`. A blip either way starts
the count again, so a flickering detection or a noisy gauge neither pages nor clears on one
sample. Times are event times, so a replay judges as the live run did. Whether the condition is
"met" is the rule's to say, and may differ by state (a river opens above its alert level and
clears below a lower one).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

Action = Literal["open", "resolve"]


@dataclass(frozen=True)
class Step:
    """The counters after one observation, and what it calls for."""

    since: datetime | None  # met without a break since (counted while closed)
    clear_since: datetime | None  # unmet without a break since (counted while open)
    action: Action | None


@dataclass(frozen=True)
class Hysteresis:
    hold: timedelta
    clear: timedelta

    def step(
        self,
        is_open: bool,
        met: bool,
        at: datetime,
        since: datetime | None,
        clear_since: datetime | None,
    ) -> Step:
        if not is_open:
            since = (since or at) if met else None
            opens = since is not None and at - since >= self.hold
            return Step(since, clear_since, "open" if opens else None)
        clear_since = None if met else (clear_since or at)
        resolves = clear_since is not None and at - clear_since >= self.clear
        return Step(since, clear_since, "resolve" if resolves else None)


__all__ = ["Action", "Hysteresis", "Step"]
