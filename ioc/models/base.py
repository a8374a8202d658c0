"""Base model and helpers for wire schemas."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from pydantic import AwareDatetime, BaseModel, ConfigDict

# Where the IOC is: ticket ids, deadlines and walls read in Vietnam time (UTC+7, no DST).
VIETNAM_TIME = ZoneInfo("Asia/Ho_Chi_Minh")


class WireModel(BaseModel):
    """A message schema: strict about unknown fields, JSON in and out."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    def to_bytes(self) -> bytes:
        return self.model_dump_json(by_alias=True).encode()


def utc_now() -> datetime:
    return datetime.now(UTC)


def epoch_ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


def from_epoch_ms(value: int) -> datetime:
    return datetime.fromtimestamp(value / 1000, UTC)


def deterministic_id(prefix: str, *parts: object) -> str:
    """A short id derived from inputs, so retries and replays upsert instead of duplicating."""
    digest = hashlib.sha256("|".join(str(part) for part in parts).encode()).hexdigest()
    return f"{prefix}-{digest[:16]}"


__all__ = [
    "VIETNAM_TIME",
    "AwareDatetime",
    "WireModel",
    "deterministic_id",
    "epoch_ms",
    "from_epoch_ms",
    "utc_now",
]
