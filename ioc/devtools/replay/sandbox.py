"""A replay sandbox: its own topics (a prefix), its own database schema, its own consumer group.

A sandbox named `lab` publishes to `sandbox.lab.ioc.*`, writes to schema `sandbox_lab` and runs
the streams app as group `ioc-sandbox-lab`, so a replay can never write to the live topics or
tables. The schema carries a marker comment: a schema of that name without it (someone's tables)
is never dropped, and the sandbox is refused.
"""

from __future__ import annotations

import json
import logging
import re
import time
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, quote, urlencode, urlsplit, urlunsplit

import psycopg
from pydantic import ValidationError

from ioc.config import ENV_PREFIX, Settings
from ioc.devtools.stack.kafka import ensure_topics
from ioc.kafka import clients as kafka_clients
from ioc.rulefiles import deep_merge
from ioc.services import worker_specs
from ioc.store.migrate import migrate

# Sections a rules file may change: rules and thresholds, never where data comes from or goes.
RULE_SECTIONS = frozenset({"streams", "hotline", "cameras", "vision", "fusion", "alerts"})
NAME = re.compile(r"^[a-z0-9][a-z0-9-]{0,39}$")
MARKER = "ioc replay sandbox"
TOPICS_GONE_TIMEOUT_S = 60.0
# Replayed messages keep their original timestamps: with the live retention the broker would
# delete a recording older than it as soon as it rolls the segment. A sandbox is emptied at the
# start of each replay instead.
RETENTION_HOURS = 24 * 365 * 100


class SandboxError(Exception):
    """The sandbox cannot be used (a bad name, a collision with live names, a rules file)."""


def with_search_path(dsn: str, schema: str) -> str:
    """`dsn` with the schema first on every connection's search path (public keeps extensions)."""
    parts = urlsplit(dsn)
    query = dict(parse_qsl(parts.query))
    options = query.get("options", "")
    query["options"] = f"{options} -c search_path={schema},public".strip()
    return urlunsplit(parts._replace(query=urlencode(query, quote_via=quote)))


def search_path_of(dsn: str) -> str | None:
    """The first schema a DSN's `options` put on the search path, if any."""
    options = dict(parse_qsl(urlsplit(dsn).query)).get("options", "")
    found = re.findall(r"search_path=([^,\s]+)", options)
    return found[-1] if found else None


def _group_ids(admin: Any) -> set[str]:
    return {group["group_id"] for group in admin.list_groups()}


def _flatten(values: dict[str, Any], prefix: str) -> dict[str, str]:
    env = {}
    for key, value in values.items():
        name = f"{prefix}{key.upper()}"
        if isinstance(value, dict) and prefix == ENV_PREFIX:
            env |= _flatten(value, f"{name}__")
        elif isinstance(value, dict | list):
            env[name] = json.dumps(value)
        elif isinstance(value, bool):
            env[name] = "true" if value else "false"
        else:
            env[name] = str(value)
    return env


@dataclass(frozen=True)
class RulesFile:
    """A settings file (the `IOC_SETTINGS_FILE` format) laid over the live settings for one
    replay: sensor, camera and fusion rules, thresholds, anything a rule change touches."""

    path: Path
    values: dict[str, Any]

    @classmethod
    def load(cls, path: Path, live: Settings) -> RulesFile:
        try:
            values = tomllib.loads(path.read_text())
        except (OSError, tomllib.TOMLDecodeError) as error:
            raise SandboxError(f"{path}: {error}") from None
        outside = sorted(set(values) - RULE_SECTIONS)
        if outside:
            raise SandboxError(
                f"{path}: a rules file changes rules ({', '.join(sorted(RULE_SECTIONS))}), "
                f"not {', '.join(outside)}"
            )
        try:
            Settings.model_validate(deep_merge(live.model_dump(), values))
        except ValidationError as error:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in item['loc'])}: {item['msg']}"
                for item in error.errors()[:5]
            )
            raise SandboxError(f"{path}: {problems}") from None
        return cls(path, values)

    def env(self) -> dict[str, str]:
        return _flatten(self.values, ENV_PREFIX)


@dataclass(frozen=True)
class Sandbox:
    name: str

    def __post_init__(self) -> None:
        if not NAME.match(self.name):
            raise SandboxError(
                f"sandbox name {self.name!r}: 1-40 of a-z, 0-9 and '-', starting with a letter "
                "or digit"
            )

    @property
    def topic_prefix(self) -> str:
        return f"sandbox.{self.name}."

    @property
    def schema(self) -> str:
        return "sandbox_" + self.name.replace("-", "_")

    @property
    def app_id(self) -> str:
        return f"ioc-sandbox-{self.name}"

    def overrides(self, live: Settings) -> dict[str, str]:
        """The settings (as environment) that turn a streams worker into this sandbox's: one
        partition, so processing order, and with it every incident, is the same on every
        replay (tickets are linked a batch at a time, in offset order); no wall-clock timers,
        the recording's ticks stand in."""
        return {
            "IOC_KAFKA__TOPIC_PREFIX": self.topic_prefix,
            "IOC_KAFKA__PARTITIONS": "1",
            "IOC_KAFKA__RETENTION_HOURS": str(RETENTION_HOURS),
            "IOC_DATABASE__DSN": with_search_path(live.database.dsn, self.schema),
            "IOC_STREAMS__APP_ID": self.app_id,
            "IOC_STREAMS__WALL_CLOCK_TIMERS": "false",
        }

    def settings(self, live: Settings) -> Settings:
        """This process's view of the sandbox (the worker gets `overrides` as environment)."""
        return live.model_copy(
            update={
                "kafka": live.kafka.model_copy(
                    update={
                        "topic_prefix": self.topic_prefix,
                        "partitions": 1,
                        "retention_hours": RETENTION_HOURS,
                    }
                ),
                "database": live.database.model_copy(
                    update={"dsn": with_search_path(live.database.dsn, self.schema)}
                ),
                "streams": live.streams.model_copy(
                    update={
                        "app_id": self.app_id,
                        "wall_clock_timers": False,
                    }
                ),
            }
        )

    def check(self, live: Settings) -> None:
        """Refuse a sandbox whose names are the live ones, or whose schema is not a sandbox's."""
        clashes = []
        if live.kafka.topic_prefix == self.topic_prefix:
            clashes.append(f"the live topics use prefix {self.topic_prefix!r}")
        if live.streams.app_id == self.app_id:
            clashes.append(f"the live streams group is {self.app_id!r}")
        if search_path_of(live.database.dsn) == self.schema:
            clashes.append(f"the live database schema is {self.schema!r}")
        if clashes:
            raise SandboxError(
                f"sandbox {self.name!r} would collide with live ones: " + "; ".join(clashes)
            )
        with psycopg.connect(live.database.dsn, autocommit=True) as conn:
            row = conn.execute(
                "SELECT obj_description(oid, 'pg_namespace') FROM pg_namespace WHERE nspname = %s",
                (self.schema,),
            ).fetchone()
        if row is not None and row[0] != f"{MARKER} {self.name}":
            raise SandboxError(
                f"schema {self.schema!r} exists and is not an ioc replay sandbox: refusing to "
                "touch it (pick another sandbox name)"
            )
        if self._in_use(live):
            raise SandboxError(f"sandbox {self.name!r} is in use by another replay")

    def _admin(self, live: Settings) -> Any:
        return kafka_clients.admin(live.kafka, "ioc-replay")

    def _in_use(self, live: Settings) -> bool:
        logging.getLogger("kafka.admin._groups").setLevel(logging.ERROR)
        admin = self._admin(live)
        try:
            if self.app_id not in _group_ids(admin):
                return False
            described = admin.describe_groups([self.app_id])
            return any(group["members"] for group in described.values())
        finally:
            admin.close()

    def _topics(self, admin: Any) -> list[str]:
        """This sandbox's topics: the prefixed ones and the streams app's changelogs."""
        return [
            name
            for name in admin.list_topics()
            if name.startswith(self.topic_prefix) or name.startswith(f"{self.app_id}-")
        ]

    def _delete(self, live: Settings) -> None:
        """Its topics (deleted asynchronously by the broker: waited for), offsets and schema."""
        admin = self._admin(live)
        try:
            stale = self._topics(admin)
            if stale:
                admin.delete_topics(stale)
            deadline = time.monotonic() + TOPICS_GONE_TIMEOUT_S
            while self._topics(admin):
                if time.monotonic() > deadline:
                    raise SandboxError(f"sandbox {self.name!r}: old topics not deleted in time")
                time.sleep(0.2)
            streams = worker_specs(self.settings(live))[0]  # every group the worker runs
            ours = set(streams.groups()) & _group_ids(admin)
            if ours:
                admin.delete_groups(sorted(ours))
        finally:
            admin.close()
        with psycopg.connect(live.database.dsn, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA IF EXISTS "{self.schema}" CASCADE')

    def reset(self, live: Settings) -> Settings:
        """An empty sandbox: its topics and consumer offsets deleted and created again, its
        schema dropped and migrated again. Returns its settings."""
        self._delete(live)
        with psycopg.connect(live.database.dsn, autocommit=True) as conn:
            conn.execute(f'CREATE SCHEMA "{self.schema}"')
            conn.execute(f"COMMENT ON SCHEMA \"{self.schema}\" IS '{MARKER} {self.name}'")
        sandbox = self.settings(live)
        migrate(sandbox.database.dsn, sandbox.storage)
        ensure_topics(sandbox.kafka)
        return sandbox

    def drop(self, live: Settings) -> None:
        """Delete the sandbox's topics, offsets and schema; refused like a replay would be."""
        self.check(live)
        self._delete(live)
