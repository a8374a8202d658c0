"""Staff accounts and sessions on the real database: scrypt hashes, sessions kept only hashed,
disabled accounts and expired sessions refused."""

from __future__ import annotations

import asyncio
import hashlib
import os
import subprocess
import sys
import uuid
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import TypeVar

import psycopg
import pytest

from ioc.config import Settings
from ioc.console import accounts
from ioc.console.accounts import AccountError, Role

pytestmark = pytest.mark.integration
COST = 10  # scrypt N = 2^10 here: the hashing is tested, not its cost
T = TypeVar("T")


def with_conn(dsn: str, work: Callable[[psycopg.AsyncConnection], Awaitable[T]]) -> T:
    async def run() -> T:
        async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
            return await work(conn)

    return asyncio.run(run())


def username() -> str:
    return f"t.{uuid.uuid4().hex[:10]}"


def test_a_password_hash_is_salted_keeps_its_cost_and_verifies_only_the_password() -> None:
    first, second = (accounts.hash_password("mật khẩu dài 123", COST) for _ in range(2))
    assert first != second  # a salt each
    assert first.startswith("scrypt$1024$8$1$")
    assert accounts.verify_password("mật khẩu dài 123", first)
    assert not accounts.verify_password("mật khẩu dài 124", first)
    assert not accounts.verify_password("mật khẩu dài 123", "md5$abc")
    assert not accounts.verify_password("mật khẩu dài 123", "garbage")


def test_accounts_are_checked_when_made(live_stack: Settings) -> None:
    dsn, name = live_stack.database.dsn, username()

    async def make(conn: psycopg.AsyncConnection) -> None:
        await accounts.create(conn, name, "Nguyễn Thị Lan", Role.OPERATOR, "đủ dài rồi 1", COST)
        with pytest.raises(AccountError, match="taken"):
            await accounts.create(conn, name, "Ai đó", Role.OPERATOR, "đủ dài rồi 1", COST)
        with pytest.raises(AccountError, match="username"):
            await accounts.create(conn, "Lan Nguyen", "Lan", Role.OPERATOR, "đủ dài rồi 1", COST)
        with pytest.raises(AccountError, match="at least 10"):
            await accounts.create(conn, username(), "Lan", Role.OPERATOR, "ngắn", COST)
        with pytest.raises(AccountError, match="display name"):
            await accounts.create(conn, username(), "  ", Role.OPERATOR, "đủ dài rồi 1", COST)

    with_conn(dsn, make)


def test_sign_in_sessions_and_disabling(live_stack: Settings) -> None:
    dsn, name = live_stack.database.dsn, username()

    async def scenario(conn: psycopg.AsyncConnection) -> None:
        await accounts.create(conn, name, "Trần Văn Minh", Role.SUPERVISOR, "mật khẩu tốt 42", COST)
        assert await accounts.authenticate(conn, name, "mật khẩu sai 42", COST) is None
        assert await accounts.authenticate(conn, "khong.co.ai", "mật khẩu tốt 42", COST) is None
        staff = await accounts.authenticate(conn, name, "mật khẩu tốt 42", COST)
        assert staff == accounts.Staff(name, "Trần Văn Minh", Role.SUPERVISOR)

        token, session = await accounts.open_session(conn, staff, timedelta(hours=1))
        assert await accounts.session_of(conn, token) == session
        assert await accounts.session_of(conn, token + "x") is None
        stored = await (
            await conn.execute("SELECT token_hash FROM staff_sessions WHERE username = %s", (name,))
        ).fetchall()
        assert stored == [(hashlib.sha256(token.encode()).digest(),)]  # never the token itself

        expired, _ = await accounts.open_session(conn, staff, timedelta(seconds=-1))
        assert await accounts.session_of(conn, expired) is None

        await accounts.set_disabled(conn, name, True)
        assert await accounts.session_of(conn, token) is None
        assert await accounts.authenticate(conn, name, "mật khẩu tốt 42", COST) is None
        await accounts.set_disabled(conn, name, False)
        assert await accounts.session_of(conn, token) is None  # disabling ended it for good
        again, _ = await accounts.open_session(conn, staff, timedelta(hours=1))
        await accounts.close_session(conn, again)
        assert await accounts.session_of(conn, again) is None

    with_conn(dsn, scenario)


def test_the_cli_adds_an_account_with_the_password_from_standard_input(
    live_stack: Settings,
) -> None:
    name = username()
    env = dict(os.environ) | {
        "IOC_DATABASE__DSN": live_stack.database.dsn,
        "IOC_CONSOLE__PASSWORD_COST": str(COST),
    }
    command = [sys.executable, "-m", "ioc", "console", "user"]
    done = subprocess.run(
        [*command, "add", name, "--name", "Lê Hoa", "--role", "admin", "--password-stdin"],
        input="mật khẩu từ đầu vào chuẩn\n",
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    staff = with_conn(
        live_stack.database.dsn,
        lambda conn: accounts.authenticate(conn, name, "mật khẩu từ đầu vào chuẩn", COST),
    )
    assert staff is not None and staff.role is Role.ADMIN
    again = subprocess.run(
        [*command, "add", name, "--name", "Lê Hoa", "--password-stdin"],
        input="mật khẩu khác hẳn\n",
        capture_output=True,
        text=True,
        env=env,
    )
    assert again.returncode == 1 and "is taken" in again.stdout
    listed = subprocess.run([*command, "list"], capture_output=True, text=True, env=env)
    assert name in listed.stdout and "admin" in listed.stdout
