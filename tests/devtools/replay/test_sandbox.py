"""Sandbox names, settings and rules files (no services)."""

from __future__ import annotations

from pathlib import Path

import psycopg
import pytest

from ioc.config import Settings
from ioc.devtools.replay.sandbox import (
    RulesFile,
    Sandbox,
    SandboxError,
    search_path_of,
    with_search_path,
)


def test_a_sandbox_gets_its_own_topics_schema_and_group() -> None:
    sandbox = Sandbox("flood-2026")
    live = Settings()
    settings = sandbox.settings(live)
    assert settings.kafka.topic("ioc.sensor.events") == "sandbox.flood-2026.ioc.sensor.events"
    assert settings.streams.app_id == "ioc-sandbox-flood-2026" != live.streams.app_id
    assert search_path_of(settings.database.dsn) == "sandbox_flood_2026"
    assert not settings.streams.wall_clock_timers
    assert settings.kafka.partitions == 1
    # The worker process is told the same through its environment.
    env = sandbox.overrides(live)
    assert env["IOC_KAFKA__TOPIC_PREFIX"] == "sandbox.flood-2026."
    assert env["IOC_DATABASE__DSN"] == settings.database.dsn


@pytest.mark.parametrize("name", ["", "Live", "a b", "-x", "x" * 41, "../etc", "a.b"])
def test_names_that_cannot_be_a_sandbox_are_refused(name: str) -> None:
    with pytest.raises(SandboxError, match="sandbox name"):
        Sandbox(name)


def test_the_search_path_reaches_the_server_and_keeps_other_options() -> None:
    dsn = with_search_path(
        "postgresql://ioc:ioc@127.0.0.1:15432/ioc?options=-c%20statement_timeout%3D5000",
        "sandbox_x",
    )
    assert search_path_of(dsn) == "sandbox_x"
    info = psycopg.conninfo.conninfo_to_dict(dsn)
    assert info["options"] == "-c statement_timeout=5000 -c search_path=sandbox_x,public"
    assert Settings(database={"dsn": dsn}).database.dsn == dsn


def test_a_sandbox_named_like_the_live_pipeline_is_refused() -> None:
    live = Settings(kafka={"topic_prefix": "sandbox.x."}, streams={"app_id": "ioc-sandbox-x"})
    with pytest.raises(SandboxError, match="collide with live ones") as raised:
        Sandbox("x").check(live)
    assert "prefix" in str(raised.value) and "group" in str(raised.value)


def test_a_rules_file_changes_rules_only(tmp_path: Path) -> None:
    good = tmp_path / "good.toml"
    good.write_text("[streams]\nsensor_tick_s = 2.5\n[fusion]\nresolve_hold_s = 60\n")
    rules = RulesFile.load(good, Settings())
    assert rules.env() == {
        "IOC_STREAMS__SENSOR_TICK_S": "2.5",
        "IOC_FUSION__RESOLVE_HOLD_S": "60",
    }
    elsewhere = tmp_path / "elsewhere.toml"
    elsewhere.write_text('[kafka]\nbootstrap_servers = "prod:9092"\n')
    with pytest.raises(SandboxError, match="not kafka"):
        RulesFile.load(elsewhere, Settings())
    typo = tmp_path / "typo.toml"
    typo.write_text("[streams]\nsensor_tik_s = 2\n")
    with pytest.raises(SandboxError, match="sensor_tik_s"):
        RulesFile.load(typo, Settings())
    broken = tmp_path / "broken.toml"
    broken.write_text("[streams\n")
    with pytest.raises(SandboxError, match=r"broken\.toml"):
        RulesFile.load(broken, Settings())
