"""Who is on call, read from `roster.toml`, and the escalation chain of each severity: which role
is paged when, and who holds that role at a given moment (shifts in Vietnam time, past midnight
allowed)."""

from __future__ import annotations

import tomllib
from datetime import datetime, time, timedelta
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from ioc.models.base import VIETNAM_TIME
from ioc.notify.channels import AddressKind

ROSTER_PATH = Path(__file__).resolve().parent / "roster.toml"
Day = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
DAYS: tuple[Day, ...] = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
CHANNEL_REACHES = {"email": AddressKind.EMAIL, "sms": AddressKind.PHONE, "zalo": AddressKind.PHONE}


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Role(_Strict):
    name: str = Field(min_length=1)


class Person(_Strict):
    name: str = Field(min_length=1)
    contacts: list[str] = Field(min_length=1, description='"email:…", "sms:…" or "zalo:…"')

    @model_validator(mode="after")
    def _known_channels(self) -> Person:
        for contact in self.contacts:
            channel, _, address = contact.partition(":")
            if channel not in CHANNEL_REACHES or not address:
                raise ValueError(f"contact {contact!r}: expected email:…, sms:… or zalo:…")
        return self

    def reachable(self) -> list[tuple[str, str]]:
        """(channel, address) in the order to try them."""
        return [tuple(contact.split(":", 1)) for contact in self.contacts]  # type: ignore[misc]


class Shift(_Strict):
    role: str
    person: str
    days: list[Day] = Field(default_factory=lambda: list(DAYS))
    start: time
    end: time = Field(description="At or before `start`: the shift runs past midnight.")

    def covers(self, moment: datetime) -> bool:
        """On shift at `moment`: a shift past midnight belongs to the day it started."""
        local = moment.astimezone(VIETNAM_TIME)
        clock, day = local.time(), DAYS[local.weekday()]
        if self.start < self.end:
            return day in self.days and self.start <= clock < self.end
        if clock >= self.start:
            return day in self.days
        yesterday = DAYS[(local - timedelta(days=1)).weekday()]
        return yesterday in self.days and clock < self.end


class Step(_Strict):
    role: str
    after_minutes: float = Field(ge=0)
    repeat_minutes: float | None = Field(None, gt=0)
    times: int = Field(1, ge=1, le=20)

    @model_validator(mode="after")
    def _repeat_with_times(self) -> Step:
        if self.times > 1 and self.repeat_minutes is None:
            raise ValueError(f"step {self.role}: times > 1 needs repeat_minutes")
        return self


class Chain(_Strict):
    steps: list[Step] = Field(min_length=1)
    hold_minutes: float | None = Field(
        None, gt=0, description="Acknowledged and unresolved this long: the chain starts again."
    )


class Roster(_Strict):
    version: Literal[1]
    roles: dict[str, Role] = Field(min_length=1)
    people: dict[str, Person] = Field(min_length=1)
    shifts: list[Shift] = Field(min_length=1)
    chains: dict[Literal["urgent", "high", "normal"], Chain]

    @model_validator(mode="after")
    def _references(self) -> Roster:
        for shift in self.shifts:
            if shift.role not in self.roles:
                raise ValueError(f"a shift names the unknown role {shift.role!r}")
            if shift.person not in self.people:
                raise ValueError(f"a shift names the unknown person {shift.person!r}")
        staffed = {shift.role for shift in self.shifts}
        for severity, chain in self.chains.items():
            for step in chain.steps:
                if step.role not in self.roles:
                    raise ValueError(f"chains.{severity} names the unknown role {step.role!r}")
                if step.role not in staffed:
                    raise ValueError(f"chains.{severity}: nobody ever holds {step.role!r}")
        return self

    @classmethod
    def load(cls, path: Path | None = None) -> Roster:
        with (path or ROSTER_PATH).open("rb") as file:
            return cls.model_validate(tomllib.load(file))

    def on_duty(self, role: str, moment: datetime) -> list[str]:
        """The people holding `role` at `moment` (ids, in the file's order, each once)."""
        found = [
            shift.person for shift in self.shifts if shift.role == role and shift.covers(moment)
        ]
        return list(dict.fromkeys(found))
