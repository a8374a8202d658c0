"""`ioc console user …`: the console's staff accounts, managed from a terminal on the IOC's
servers (the first admin has no console to be made from)."""

from __future__ import annotations

import getpass
import sys
from typing import Annotated

import psycopg
import typer
from rich.table import Table

from ioc.commandline import console, fail
from ioc.config import get_settings
from ioc.console import accounts
from ioc.console.accounts import AccountError, Role
from ioc.runtime import run_async

console_app = typer.Typer(help="The incident console served by `ioc api`.", no_args_is_help=True)
user_app = typer.Typer(help="Staff accounts: add, disable, enable, list.", no_args_is_help=True)
console_app.add_typer(user_app, name="user")


async def _connect() -> psycopg.AsyncConnection:
    return await psycopg.AsyncConnection.connect(get_settings().database.dsn, autocommit=True)


def _password(from_stdin: bool) -> str:
    """The first line of standard input (scripts), else asked twice on the terminal; never an
    argument or a variable (those show in process listings and shell histories)."""
    if from_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    first = getpass.getpass("Mật khẩu / password: ")
    if getpass.getpass("Nhắc lại / again: ") != first:
        fail("the two passwords differ")
    return first


@user_app.command("add")
def add_command(
    username: Annotated[str, typer.Argument(help="Sign-in name, e.g. lan.nguyen.")],
    name: Annotated[str, typer.Option("--name", help="Shown to colleagues, e.g. Nguyễn Thị Lan.")],
    role: Annotated[Role, typer.Option(help="operator, supervisor or admin.")] = Role.OPERATOR,
    password_stdin: Annotated[
        bool, typer.Option("--password-stdin", help="Read the password from standard input.")
    ] = False,
) -> None:
    """Add an account; the password is asked on the terminal (or read with --password-stdin)."""
    password = _password(password_stdin)
    cost = get_settings().console.password_cost

    async def run() -> None:
        async with await _connect() as conn:
            await accounts.create(conn, username, name, role, password, cost)

    try:
        run_async(run())
    except AccountError as error:
        fail(str(error))
    console.print(f"account {username} ({role}) added")


def _set_disabled(username: str, disabled: bool) -> None:
    async def run() -> None:
        async with await _connect() as conn:
            await accounts.set_disabled(conn, username, disabled)

    try:
        run_async(run())
    except AccountError as error:
        fail(str(error))


@user_app.command("disable")
def disable_command(username: str) -> None:
    """Disable an account and end its sessions at once."""
    _set_disabled(username, True)
    console.print(f"account {username} disabled; its sessions ended")


@user_app.command("enable")
def enable_command(username: str) -> None:
    """Enable a disabled account."""
    _set_disabled(username, False)
    console.print(f"account {username} enabled")


@user_app.command("list")
def list_command() -> None:
    """Every account, with its role and whether it is disabled."""

    async def run() -> list[dict[str, object]]:
        async with await _connect() as conn:
            return await accounts.listed(conn)

    table = Table("username", "name", "role", "disabled")
    for row in run_async(run()):
        table.add_row(
            str(row["username"]),
            str(row["display_name"]),
            str(row["role"]),
            "yes" if row["disabled"] else "",
        )
    console.print(table)
