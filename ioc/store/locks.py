"""PostgreSQL advisory locks by name: one worker at a time for a pass that several workers run
(the citizen loop, the on-call pager), and a transaction's locks on grid cells (ticket linking)."""

from __future__ import annotations

import hashlib
from collections.abc import Awaitable, Callable
from typing import TypeVar

from psycopg import AsyncConnection

T = TypeVar("T")


def advisory_key(name: str) -> int:
    """A signed 64-bit key for `pg_advisory_lock` and `pg_advisory_xact_lock`."""
    return int.from_bytes(hashlib.blake2b(name.encode(), digest_size=8).digest(), signed=True)


async def alone(conn: AsyncConnection, name: str, work: Callable[[], Awaitable[T]]) -> T | None:
    """`work` while this session holds the lock `name`; None, without waiting, when another
    session holds it. A session lock, not a transaction's: `work` commits as it goes."""
    key = advisory_key(name)
    async with conn.transaction():
        cursor = await conn.execute("SELECT pg_try_advisory_lock(%s)", (key,))
        row = await cursor.fetchone()
    if not (row and _first(row)):
        return None
    try:
        return await work()
    finally:
        async with conn.transaction():
            await conn.execute("SELECT pg_advisory_unlock(%s)", (key,))


def _first(row: object) -> object:
    """A row's first value, whatever the connection's row factory."""
    return next(iter(row.values())) if isinstance(row, dict) else row[0]  # type: ignore[index]
