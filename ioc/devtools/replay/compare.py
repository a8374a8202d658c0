"""The incident diff between two replays of one recording under two rule configurations.

Both levels are compared: the source incidents the rules raised (a sensor's breach, a camera's
fire) and the fused incidents staff act on. Incidents are matched by id first (ids derive from
inputs, so an incident both rule sets raise from the same start has the same id). What is left is
matched by kind and first source (the same ticket, sensor or camera): the same incident opened at
another time by a changed hold or level. The rest opened only under one rule set.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Generic, Protocol, TypeVar

from ioc.devtools.replay.replay import CandidateView, IncidentView, Outcome

CANDIDATE_FIELDS = ("event_time", "severity", "status", "reports", "kind")
INCIDENT_FIELDS = ("event_time", "severity", "status", "sources", "scope", "reports", "kind")


class View(Protocol):
    @property
    def id(self) -> str: ...
    @property
    def kind(self) -> str: ...
    @property
    def status(self) -> str: ...
    @property
    def event_time(self) -> datetime: ...
    @property
    def head_key(self) -> str: ...


V = TypeVar("V", bound=View)


@dataclass(frozen=True)
class Change(Generic[V]):
    a: V
    b: V
    fields: tuple[str, ...]  # those that differ

    @property
    def shift_s(self) -> float:
        """B's start minus A's: positive when B opens it later."""
        return (self.b.event_time - self.a.event_time).total_seconds()


@dataclass
class Diff(Generic[V]):
    only_a: list[V] = field(default_factory=list)
    only_b: list[V] = field(default_factory=list)
    changed: list[Change[V]] = field(default_factory=list)
    same: int = 0

    @property
    def empty(self) -> bool:
        return not (self.only_a or self.only_b or self.changed)


def _order(view: View) -> tuple[datetime, str]:
    return view.event_time, view.id


def diff(a: Sequence[V], b: Sequence[V], fields: Sequence[str]) -> Diff[V]:
    result: Diff[V] = Diff()
    left = {view.id: view for view in a}
    right = {view.id: view for view in b}

    def pair(x: V, y: V) -> None:
        differ = tuple(name for name in fields if getattr(x, name) != getattr(y, name))
        if differ:
            result.changed.append(Change(x, y, differ))
        else:
            result.same += 1

    for view_id in sorted(left.keys() & right.keys()):
        pair(left.pop(view_id), right.pop(view_id))
    # The closest pairs in time first: the same gauge's incident moved by a changed hold.
    pairs = sorted(
        (abs((x.event_time - y.event_time).total_seconds()), _order(x), _order(y), x, y)
        for x in left.values()
        for y in right.values()
        if x.kind == y.kind and x.head_key == y.head_key
    )
    for _, _, _, x, y in pairs:
        if x.id in left and y.id in right:
            pair(left.pop(x.id), right.pop(y.id))
    result.only_a = sorted(left.values(), key=_order)
    result.only_b = sorted(right.values(), key=_order)
    result.changed.sort(key=lambda change: _order(change.a))
    return result


@dataclass(frozen=True)
class OutcomeDiff:
    candidates: Diff[CandidateView]
    incidents: Diff[IncidentView]

    @property
    def empty(self) -> bool:
        return self.candidates.empty and self.incidents.empty


def diff_outcomes(a: Outcome, b: Outcome) -> OutcomeDiff:
    return OutcomeDiff(
        diff(a.candidates, b.candidates, CANDIDATE_FIELDS),
        diff(a.incidents, b.incidents, INCIDENT_FIELDS),
    )
