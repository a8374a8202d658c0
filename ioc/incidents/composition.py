"""What a fused incident is: the fusion rules (which kinds are one real-world incident, how close
is the same one) and the composition of an incident from its members, a function of the member
set only, so that the incidents do not depend on the order the candidates arrived in."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, model_validator

from ioc.models import IncidentKind, Member, Severity
from ioc.models.incidents import IncidentSource
from ioc.rulefiles import read_layered

RULES_PATH = Path(__file__).resolve().parent / "fusion_rules.toml"


class FusionGroup(BaseModel):
    """Kinds that describe one kind of real-world incident, and how close is the same one."""

    model_config = ConfigDict(extra="forbid")

    kinds: list[IncidentKind] = Field(min_length=1)
    primary: IncidentKind = Field(description="The merged incident's kind when one member has it.")
    distance_m: float = Field(gt=0)
    window_minutes: float = Field(gt=0)
    raise_per_source: int = Field(1, ge=0, le=2)
    district_wide_members: int | None = Field(None, ge=2)
    raise_at_devices: int | None = Field(
        None,
        ge=2,
        description="Members from this many devices raise the severity one step: several at "
        "once is an area's outage, not one device's fault.",
    )

    raise_near: list[IncidentKind] = Field(
        default_factory=list,
        description="A candidate of these kinds within `raise_near_m` and the group's window of "
        "a member raises the severity one step: a camera lost next to a fire is evidence lost.",
    )
    raise_near_m: float = Field(1000.0, gt=0)

    @model_validator(mode="after")
    def _primary_in_kinds(self) -> FusionGroup:
        if self.primary not in self.kinds:
            raise ValueError(f"primary {self.primary} is not one of the group's kinds")
        own = sorted(set(self.raise_near) & set(self.kinds))
        if own:
            raise ValueError(f"raise_near names the group's own kinds: {', '.join(own)}")
        return self


class FusionRules(BaseModel):
    model_config = ConfigDict(extra="forbid")

    version: int
    extends_bundled: bool = False
    groups: dict[str, FusionGroup] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _one_group_per_kind(self) -> FusionRules:
        seen: dict[IncidentKind, str] = {}
        for name, group in self.groups.items():
            for kind in group.kinds:
                if kind in seen:
                    raise ValueError(f"kind {kind} is in groups {seen[kind]} and {name}")
                seen[kind] = name
        return self

    @classmethod
    def load(cls, path: Path | None = None) -> FusionRules:
        return cls.model_validate(read_layered(path, RULES_PATH))

    def group_of(self, kind: IncidentKind) -> FusionGroup | None:
        return next((g for g in self.groups.values() if kind in g.kinds), None)


@dataclass(frozen=True)
class Composition:
    """What a fused incident is, derived from its members alone."""

    head: Member
    kind: IncidentKind
    severity: Severity
    title: str
    sources: int
    reports: int
    scope: str


def earliest(members: list[Member]) -> Member:
    return min(members, key=lambda m: (m.event_time, m.id))


def compose(members: list[Member], group: FusionGroup | None, near: bool = False) -> Composition:
    """The incident's kind, severity, title and counts: a function of the member set, and of
    whether a candidate of the group's `raise_near` kinds is near them (`near`; fusion asks the
    database, from both sides, so that the order of arrival does not matter)."""
    head = earliest(members)
    primary = [m for m in members if group is not None and m.kind == group.primary]
    named = earliest(primary) if primary else head
    sources = len({m.source for m in members})
    devices = len({(m.source, m.source_key) for m in members})
    base = min((m.severity for m in members), key=lambda s: s.rank)
    steps = (sources - 1) * (group.raise_per_source if group else 0)
    together = group is not None and devices >= (group.raise_at_devices or devices + 1)
    severity = list(Severity)[max(0, base.rank - steps - int(together) - int(near))]
    wide_at = group.district_wide_members if group is not None else None
    notes = [f"{devices} thiết bị cùng lúc"] * together + ["gần sự cố đang xảy ra"] * near
    return Composition(
        head=head,
        kind=named.kind,
        severity=severity,
        title=" · ".join([*notes, named.title]),
        sources=sources,
        reports=sum(m.reports for m in members if m.source == IncidentSource.HOTLINE),
        scope="district" if wide_at is not None and len(members) >= wide_at else "local",
    )


__all__ = ["RULES_PATH", "Composition", "FusionGroup", "FusionRules", "compose", "earliest"]
