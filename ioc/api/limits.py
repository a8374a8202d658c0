"""Rate limits at the HTTP edge: a token bucket per integration, or per client address.

A request presenting a known integration or staff key (`X-API-Key` or `Bearer`) draws on that
key's bucket, so each integration gets its own share wherever it calls from; anything else (no
key, a wrong key, Open311's `api_key` form field) draws on its client address's bucket, so a
flood of bad keys is limited too. Over the limit: 429 in Open311's error format, with
`Retry-After`. Checked before the body is read, so a flood costs the least it can.
"""

from __future__ import annotations

import hmac
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from pydantic import SecretStr
from starlette.types import ASGIApp, Receive, Scope, Send

from ioc.api.open311 import error_document

MAX_BUCKETS = 10_000  # idle, full buckets are forgotten beyond this many clients


@dataclass
class Bucket:
    tokens: float
    at: float


class RateLimiter:
    """Token buckets: `per_minute` refill, up to `burst` at once."""

    def __init__(
        self, per_minute: int, burst: int, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.rate = per_minute / 60
        self.burst = float(burst)
        self.clock = clock
        self.buckets: dict[str, Bucket] = {}

    def take(self, who: str) -> float:
        """0 when `who` may go ahead (a token is spent); else the seconds until it may."""
        now = self.clock()
        bucket = self.buckets.get(who)
        if bucket is None:
            if len(self.buckets) >= MAX_BUCKETS:
                self._forget_idle(now)
            bucket = self.buckets[who] = Bucket(self.burst, now)
        bucket.tokens = min(self.burst, bucket.tokens + (now - bucket.at) * self.rate)
        bucket.at = now
        if bucket.tokens >= 1:
            bucket.tokens -= 1
            return 0.0
        return (1 - bucket.tokens) / self.rate

    def _forget_idle(self, now: float) -> None:
        full_after = self.burst / self.rate
        self.buckets = {
            who: bucket for who, bucket in self.buckets.items() if now - bucket.at < full_after
        }


def _presented_key(scope: Scope) -> str | None:
    headers = dict(scope.get("headers") or ())
    key = headers.get(b"x-api-key")
    authorization = headers.get(b"authorization", b"")
    if key is None and authorization.lower().startswith(b"bearer "):
        key = authorization[7:].strip()
    return key.decode("latin-1") if key else None


class RateLimit:
    """ASGI middleware applying one `RateLimiter` to every HTTP request but health checks."""

    def __init__(
        self,
        app: ASGIApp,
        limiter: RateLimiter,
        keys: Mapping[str, SecretStr],
        exempt: frozenset[str] = frozenset({"/healthz"}),
    ) -> None:
        self.app = app
        self.limiter = limiter
        self.keys = keys  # owner name -> key: integrations and staff
        self.exempt = exempt

    def identity(self, scope: Scope) -> str:
        presented = _presented_key(scope)
        if presented:
            for owner, key in self.keys.items():
                if hmac.compare_digest(presented.encode(), key.get_secret_value().encode()):
                    return f"key:{owner}"
        client = scope.get("client")
        return f"address:{client[0] if client else 'unknown'}"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope.get("path") in self.exempt:
            await self.app(scope, receive, send)
            return
        wait_s = self.limiter.take(self.identity(scope))
        if not wait_s:
            await self.app(scope, receive, send)
            return
        retry_after = max(1, math.ceil(wait_s))
        body, media_type = error_document(
            scope.get("path", ""), 429, [f"rate limit exceeded: retry in {retry_after} s"]
        )
        await send(
            {
                "type": "http.response.start",
                "status": 429,
                "headers": [
                    (b"content-type", media_type.encode()),
                    (b"retry-after", str(retry_after).encode()),
                    (b"content-length", str(len(body)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})
