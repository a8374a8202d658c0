"""The link in a resolved notice that lets the reporter reopen their report.

Signed as the console's alert links are (`ioc.console.links`), under a key of its own derived
from `citizens.contact_key`. It names the incident, the report and the episode it resolved:
reopening starts another episode, so a link acts once, and it expires with the reopen window.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from pydantic import SecretStr

from ioc.citizens.contacts import derived_key
from ioc.console.links import LinkClaim, read, sign

REOPEN_PATH = "/citizen/reopen/"


@dataclass(frozen=True)
class ReopenClaim:
    incident_id: str
    ticket_id: str
    episode: int
    expires_at: datetime


def _key(secret: SecretStr) -> SecretStr:
    return SecretStr(derived_key(secret, "reopen").hex())


def reopen_token(secret: SecretStr, claim: ReopenClaim) -> str:
    return sign(
        _key(secret),
        LinkClaim(claim.incident_id, claim.ticket_id, claim.expires_at, str(claim.episode)),
    )


def read_reopen(secret: SecretStr, token: str, now: datetime) -> ReopenClaim:
    """The claim of a genuine, unexpired link; `LinkRefused` otherwise."""
    claim = read(_key(secret), token, now)
    return ReopenClaim(claim.incident_id, claim.recipient, int(claim.nonce), claim.expires_at)
