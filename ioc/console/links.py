"""Signed, expiring links to act on an incident from its alert: one tap acknowledges it.

A link carries its claim (the incident, the recipient it was sent to, its expiry and a random
nonce) and an HMAC-SHA256 of the claim under `console.link_key`, so it cannot be made or altered
without the key. The console accepts a link once: the nonce is recorded when it is used
(`console_link_uses`), so a link forwarded or replayed after use is refused. Only the standard
library is used: the alerts worker makes the links without the web stack.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from pydantic import SecretStr

from ioc.config import Settings

LINK_PATH = "/console/a/"


class LinkRefused(ValueError):
    """A link the console does not accept; `reason` is what the page tells the person."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status, self.reason = status, reason


@dataclass(frozen=True)
class LinkClaim:
    incident_id: str
    recipient: str
    expires_at: datetime
    nonce: str


def sign(key: SecretStr, claim: LinkClaim) -> str:
    body = json.dumps(
        {
            "i": claim.incident_id,
            "r": claim.recipient,
            "e": int(claim.expires_at.timestamp()),
            "n": claim.nonce,
        },
        separators=(",", ":"),
        ensure_ascii=False,
    ).encode()
    return f"{_b64(body)}.{_b64(_mac(key, body))}"


def read(key: SecretStr, token: str, now: datetime) -> LinkClaim:
    """The claim of a genuine link still in date; `LinkRefused` otherwise."""
    body_part, _, mac_part = token.partition(".")
    try:
        body, mac = _unb64(body_part), _unb64(mac_part)
    except (ValueError, binascii.Error):
        raise LinkRefused(403, "Liên kết không hợp lệ.") from None
    if not hmac.compare_digest(mac, _mac(key, body)):
        raise LinkRefused(403, "Liên kết không hợp lệ.")
    fields = json.loads(body)
    claim = LinkClaim(
        fields["i"], fields["r"], datetime.fromtimestamp(fields["e"], UTC), fields["n"]
    )
    if now >= claim.expires_at:
        raise LinkRefused(410, "Liên kết đã hết hạn. Hãy mở sự cố trong bảng điều hành.")
    return claim


@dataclass(frozen=True)
class LinkMaker:
    """Makes the links alerts carry; makes none without `console.link_key` and `alerts.api_url`
    (then alerts carry no link)."""

    settings: Settings

    def link(self, incident_id: str, recipient: str) -> str | None:
        key, base = self.settings.console.link_key, self.settings.alerts.api_url
        if key is None or base is None:
            return None
        expires = datetime.now(UTC) + timedelta(hours=self.settings.console.link_hours)
        claim = LinkClaim(incident_id, recipient, expires, secrets.token_urlsafe(12))
        return f"{base.rstrip('/')}{LINK_PATH}{sign(key, claim)}"


def _mac(key: SecretStr, body: bytes) -> bytes:
    return hmac.new(key.get_secret_value().encode(), body, hashlib.sha256).digest()


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    if not text:
        raise ValueError("empty")
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
