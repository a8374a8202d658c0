"""Staff accounts and their sessions, in the database (migration 0015).

Passwords are hashed with scrypt (standard library, memory-hard), each with its own salt. A
session is a random token in an HttpOnly cookie; the database keeps only its SHA-256, with the
CSRF token its forms must echo and an expiry. Disabling an account ends its sessions at once.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from functools import cache

from psycopg import AsyncConnection
from psycopg.rows import dict_row

USERNAME = re.compile(r"^[a-z0-9][a-z0-9._-]{1,62}$")
MIN_PASSWORD = 10
SCRYPT_R, SCRYPT_P = 8, 1  # with N = 2^cost (`console.password_cost`): 128 × 8 × N bytes
SCRYPT_MAXMEM = 300 * 1024 * 1024


class Role(StrEnum):
    """What a member of staff may do; each role may do what the ones before it may."""

    OPERATOR = "operator"  # acts on incidents
    SUPERVISOR = "supervisor"  # and sees reporters' contact data
    ADMIN = "admin"  # and manages accounts

    def at_least(self, other: Role) -> bool:
        order = list(Role)
        return order.index(self) >= order.index(other)


class AccountError(ValueError):
    """An account that cannot be made or changed as asked; the message says why."""


@dataclass(frozen=True)
class Staff:
    username: str
    display_name: str
    role: Role


@dataclass(frozen=True)
class Session:
    staff: Staff
    csrf_token: str
    expires_at: datetime


def hash_password(password: str, cost: int) -> str:
    """scrypt with N = 2^cost; the parameters are stored with the hash, so raising the cost
    later keeps the old hashes valid."""
    n, salt = 2**cost, secrets.token_bytes(16)
    digest = _scrypt(password, salt, n, SCRYPT_R, SCRYPT_P)
    return "$".join(["scrypt", str(n), str(SCRYPT_R), str(SCRYPT_P), _b64(salt), _b64(digest)])


def verify_password(password: str, stored: str) -> bool:
    try:
        scheme, n, r, p, salt, digest = stored.split("$")
        if scheme != "scrypt":
            return False
        found = _scrypt(password, base64.b64decode(salt), int(n), int(r), int(p))
    except ValueError:
        return False
    return hmac.compare_digest(found, base64.b64decode(digest))


def _scrypt(password: str, salt: bytes, n: int, r: int, p: int) -> bytes:
    return hashlib.scrypt(
        password.encode(), salt=salt, n=n, r=r, p=p, maxmem=SCRYPT_MAXMEM, dklen=32
    )


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


@cache
def _nobody(cost: int) -> str:
    """Compared against for an unknown username, so it takes as long as a wrong password."""
    return hash_password(secrets.token_urlsafe(16), cost)


def check_new(username: str, password: str) -> None:
    if not USERNAME.match(username):
        raise AccountError(
            "username: 2–63 characters, lower-case letters, digits, '.', '_' or '-', "
            "starting with a letter or digit"
        )
    if len(password) < MIN_PASSWORD:
        raise AccountError(f"password: at least {MIN_PASSWORD} characters")


async def create(
    conn: AsyncConnection,
    username: str,
    display_name: str,
    role: Role,
    password: str,
    cost: int,
) -> Staff:
    check_new(username, password)
    if not display_name.strip():
        raise AccountError("display name: required (shown in every incident's history)")
    cursor = await conn.execute(
        "INSERT INTO staff_accounts (username, display_name, role, password_hash)"
        " VALUES (%s, %s, %s, %s) ON CONFLICT (username) DO NOTHING",
        (username, display_name.strip(), str(role), hash_password(password, cost)),
    )
    if cursor.rowcount == 0:
        raise AccountError(f"username: {username} is taken")
    return Staff(username, display_name.strip(), role)


async def set_disabled(conn: AsyncConnection, username: str, disabled: bool) -> None:
    cursor = await conn.execute(
        "UPDATE staff_accounts SET disabled = %s, changed_at = now() WHERE username = %s",
        (disabled, username),
    )
    if cursor.rowcount == 0:
        raise AccountError(f"username: no account {username}")
    if disabled:
        await conn.execute("DELETE FROM staff_sessions WHERE username = %s", (username,))


async def listed(conn: AsyncConnection) -> list[dict[str, object]]:
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(
            "SELECT username, display_name, role, disabled, created_at FROM staff_accounts"
            " ORDER BY username"
        )
        return await cur.fetchall()


async def authenticate(
    conn: AsyncConnection, username: str, password: str, cost: int
) -> Staff | None:
    """The account, if the password is right and the account enabled; None otherwise (the same
    work either way)."""
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(
            "SELECT username, display_name, role, password_hash, disabled FROM staff_accounts"
            " WHERE username = %s",
            (username,),
        )
        row = await cur.fetchone()
    if row is None:
        verify_password(password, _nobody(cost))
        return None
    if not verify_password(password, row["password_hash"]) or row["disabled"]:
        return None
    return Staff(row["username"], row["display_name"], Role(row["role"]))


async def open_session(
    conn: AsyncConnection, staff: Staff, lifetime: timedelta
) -> tuple[str, Session]:
    """A new session: the cookie's token (kept only hashed) and the session it opens."""
    token = secrets.token_urlsafe(32)
    csrf = secrets.token_urlsafe(32)
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(
            "INSERT INTO staff_sessions (token_hash, username, csrf_token, expires_at)"
            " VALUES (%s, %s, %s, now() + %s) RETURNING expires_at",
            (_token_hash(token), staff.username, csrf, lifetime),
        )
        row = await cur.fetchone()
    assert row is not None
    expires = row["expires_at"]
    return token, Session(staff, csrf, expires)


async def session_of(conn: AsyncConnection, token: str) -> Session | None:
    """The live session of a cookie's token: not expired, its account enabled."""
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(
            "SELECT a.username, a.display_name, a.role, s.csrf_token, s.expires_at"
            " FROM staff_sessions s JOIN staff_accounts a USING (username)"
            " WHERE s.token_hash = %s AND s.expires_at > now() AND NOT a.disabled",
            (_token_hash(token),),
        )
        row = await cur.fetchone()
    if row is None:
        return None
    staff = Staff(row["username"], row["display_name"], Role(row["role"]))
    return Session(staff, row["csrf_token"], row["expires_at"])


async def close_session(conn: AsyncConnection, token: str) -> None:
    await conn.execute(
        "DELETE FROM staff_sessions WHERE token_hash = %s OR expires_at < now()",
        (_token_hash(token),),
    )


def _token_hash(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()
