"""Log in as a member of one of the group roles of migration 0008 (ioc_writer, ioc_grafana)."""

from __future__ import annotations

import secrets
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo


@contextmanager
def login(dsn: str, group: str) -> Iterator[psycopg.Connection]:
    """A connection as a fresh LOGIN user (random password) that is only a member of `group`;
    the user is dropped afterwards. Roles are cluster-wide: names are unique per call."""
    name = f"test_{group}_{uuid.uuid4().hex[:8]}"
    password = secrets.token_urlsafe(18)
    with psycopg.connect(dsn, autocommit=True) as admin:
        admin.execute(
            sql.SQL("CREATE ROLE {} LOGIN PASSWORD {} IN ROLE {}").format(
                sql.Identifier(name), sql.Literal(password), sql.Identifier(group)
            )
        )
        try:
            params = conninfo_to_dict(dsn) | {"user": name, "password": password}
            with psycopg.connect(make_conninfo(**params), autocommit=True) as conn:
                yield conn
        finally:
            admin.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(name)))
